"""Download a Leipzig Corpora Collection archive and read the sentences out of it.

The machinery behind `01_prepare_data.py`'s first step, which a first reading can skip:
HTTP with separate connect and read timeouts, retries with a growing pause, resuming a
partial download with a Range request, refusing an HTML error page or a truncated file, and
reading the NAME-sentences.txt member of a .tar.gz without extracting anything.

A download goes to raw/NAME.tar.gz through raw/NAME.tar.gz.part: the archive appears only
whole and valid, and a partial file left by a network failure is resumed by the next run.
"""

from __future__ import annotations

import contextlib
import gzip
import http.client
import os
import re
import sys
import tarfile
import textwrap
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tqdm import tqdm

from tatargpt.errors import UserError

CHUNK_BYTES = 1 << 16
GZIP_MAGIC = b"\x1f\x8b"
USER_AGENT = "tatar-gpt/1.0 (course data preparation; python urllib)"
# Other Leipzig Tatar corpora that public references confirm (names are checked before offered).
EXAMPLE_CORPORA = ("tat_news_2015_1M", "tat_web_2018_1M")


class ArchiveError(UserError):
    """A file is not a readable Leipzig corpus archive."""


class DownloadError(Exception):
    """An archive could not be downloaded, even after retries."""

    def __init__(self, url: str, reason: str):
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason


class RetryableError(Exception):
    """A download attempt failed in a way that another attempt may fix."""


@dataclass
class DownloadOptions:
    """Timeouts and retries of a download: the --connect-timeout, --timeout, --retries and
    --backoff flags."""

    connect_timeout: float
    read_timeout: float
    retries: int  # extra attempts after the first
    backoff: float  # seconds; attempt n+1 starts n * backoff seconds after attempt n failed


class _ReadTimeout:
    """urllib handler mixin: connect with the connect timeout, then read with the read timeout.

    urllib has one timeout for both; a dead host should fail fast, a slow server get time.
    """

    def __init__(self, read_timeout: float) -> None:
        super().__init__()
        self.read_timeout = read_timeout

    def do_open(self, http_class, req, **kwargs):
        read_timeout = self.read_timeout

        class Connection(http_class):
            def connect(self) -> None:
                super().connect()
                self.sock.settimeout(read_timeout)

        return super().do_open(Connection, req, **kwargs)


class _HTTPHandler(_ReadTimeout, urllib.request.HTTPHandler):
    pass


class _HTTPSHandler(_ReadTimeout, urllib.request.HTTPSHandler):
    pass


def corpus_url(base_url: str, name: str) -> str:
    return base_url.rstrip("/") + "/" + name + ".tar.gz"


def fetch_corpus(name: str, url: str, raw_dir: Path, opts: DownloadOptions) -> Path:
    """Return raw/NAME.tar.gz, downloading it unless a valid copy is already there."""
    dest = raw_dir / f"{name}.tar.gz"
    if dest.exists():
        try:
            verify_archive(dest)
        except ArchiveError as e:
            print(f"{dest} is damaged ({e}); downloading it again.", file=sys.stderr)
            dest.unlink()
        else:
            print(f"Reusing {dest} (already downloaded and valid).")
            return dest
    raw_dir.mkdir(parents=True, exist_ok=True)
    print(f"Downloading {url}\n         to {dest}")
    download(url, dest, opts)
    return dest


def download(url: str, dest: Path, opts: DownloadOptions) -> None:
    """Download URL to DEST through DEST.part, resuming and retrying; DEST appears only whole.

    A partial DEST.part is kept after network failures, so that the next run resumes it.
    """
    part = dest.with_name(dest.name + ".part")
    opener = urllib.request.build_opener(
        _HTTPHandler(opts.read_timeout), _HTTPSHandler(opts.read_timeout)
    )
    attempts = opts.retries + 1
    for attempt in range(1, attempts + 1):
        try:
            resumed = download_once(opener, url, part, opts.connect_timeout)
            try:
                verify_archive(part)
            except ArchiveError as e:
                part.unlink(missing_ok=True)
                if not resumed:  # a fresh copy is bad: the server's file is, a retry won't help
                    raise DownloadError(url, f"the file it sent is not a valid archive: {e}") from e
                raise RetryableError(f"the resumed file is not a valid archive ({e})") from e
            os.replace(part, dest)
            return
        except (RetryableError, OSError, http.client.HTTPException) as e:
            reason = describe_error(e)
            if attempt == attempts:
                raise DownloadError(url, reason) from e
            wait = opts.backoff * attempt
            print(f"Download failed: {reason}. Retrying in {wait:g} s "
                  f"(attempt {attempt + 1} of {attempts}).", file=sys.stderr)
            time.sleep(wait)


def download_once(opener: urllib.request.OpenerDirector, url: str, part: Path,
                  connect_timeout: float) -> bool:
    """One attempt: fetch the rest of PART (all of it when empty). Return True if resumed.

    Raises DownloadError for what another attempt cannot fix (HTTP 404, an HTML page),
    RetryableError or OSError for what it may fix (a dropped connection, a timeout).
    """
    start = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT}
    if start:
        headers["Range"] = f"bytes={start}-"
    try:
        response = opener.open(urllib.request.Request(url, headers=headers),
                               timeout=connect_timeout)
    except urllib.error.HTTPError as e:
        e.close()
        if e.code == 416 and start:
            return True  # nothing after `start`: the part is complete, or bad; the caller checks
        if 400 <= e.code < 500 and e.code not in (408, 429):
            raise DownloadError(url, f"HTTP {e.code} {e.reason}") from e
        raise
    with response:
        content_type = response.headers.get("Content-Type", "")
        if "text/html" in content_type:
            part.unlink(missing_ok=True)
            raise DownloadError(url, f"the server sent an HTML page (HTTP {response.status}, "
                                     f"{content_type}) instead of the archive")
        if response.status == 206:
            match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != start:
                part.unlink(missing_ok=True)
                raise RetryableError("the server resumed the download at the wrong offset")
        else:
            start = 0  # a 200 answer to a Range request is the whole file: start over
        length = response.headers.get("Content-Length")
        total = start + int(length) if length and length.isdigit() else None
        first = response.read(CHUNK_BYTES)
        if start == 0 and not first.startswith(GZIP_MAGIC):
            part.unlink(missing_ok=True)
            raise DownloadError(url, not_gzip_reason(first))
        size = start
        with open(part, "ab" if start else "wb") as f, tqdm(
            total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024,
            desc=part.name.removesuffix(".part"),
        ) as bar:
            chunk = first
            while chunk:
                f.write(chunk)
                size += len(chunk)
                bar.update(len(chunk))
                chunk = response.read(CHUNK_BYTES)
    # http.client returns b"" when the connection closes early instead of raising.
    if total is not None and size < total:
        raise RetryableError(f"the connection closed after {size:,} of {total:,} bytes")
    return start > 0


def not_gzip_reason(first_bytes: bytes) -> str:
    if first_bytes.lstrip().startswith(b"<"):  # <!DOCTYPE html>, <html>: an error page
        return "the server sent an HTML page instead of the archive"
    return f"the server sent something that is not a .tar.gz (it starts with {first_bytes[:8]!r})"


def describe_error(error: BaseException) -> str:
    """A short human reason for a network error."""
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        if not isinstance(error.reason, BaseException):
            return str(error.reason)
        error = error.reason  # e.g. ConnectionRefusedError, socket.gaierror (DNS)
    if isinstance(error, TimeoutError):
        return "timed out"
    return str(error) or type(error).__name__


@contextlib.contextmanager
def open_sentences_member(path: Path) -> Iterator[IO[bytes]]:
    """Open the NAME-sentences.txt member of a Leipzig archive, without extracting anything.

    Errors of a damaged archive, also those raised later while reading, become ArchiveError.
    """
    try:
        with tarfile.open(path, "r:gz") as tar:
            member = next((m for m in tar if m.isfile() and m.name.endswith("-sentences.txt")),
                          None)
            if member is None:
                raise ArchiveError(f"{path} has no *-sentences.txt member, so it is not a "
                                   f"Leipzig corpus archive")
            yield tar.extractfile(member)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise ArchiveError(f"{path} is not a valid .tar.gz archive "
                           f"({str(e) or type(e).__name__})") from e


def verify_archive(path: Path) -> None:
    """Raise ArchiveError unless the sentences member of PATH reads to its end."""
    with open_sentences_member(path) as f:
        while f.read(1 << 20):
            pass


def download_help(error: DownloadError, name: str, raw_dir: Path) -> str:
    """The one paragraph that says what failed and how to get the corpus anyway."""
    dest = raw_dir / f"{name}.tar.gz"
    part = dest.with_name(dest.name + ".part")
    kept = (f" The partial download {part} is kept; running the script again resumes it."
            if part.exists() else "")
    text = (
        f"Could not download the Leipzig corpus {name} from {error.url}: {error.reason}.{kept} "
        f"To use this corpus, download {error.url} by hand (a browser works) and save it as "
        f"{dest}, then run this script again; or save it anywhere and pass --archive PATH. "
        f"To try the pipeline without it, run with --source sample."
    )
    return textwrap.fill(text, width=100, break_long_words=False, break_on_hyphens=False)

