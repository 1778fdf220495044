"""Stage 1: get a Tatar corpus and turn it into clean training text.

Inputs, chosen with flags (see `python 01_prepare_data.py --help`):
  - Leipzig Corpora Collection archives by name, downloaded from Wortschatz Leipzig
    (default: `config.DataConfig.corpus`, i.e. tat_mixed_2015_1M; `--corpus NAME` to choose);
  - an archive already on disk (`--archive PATH`);
  - plain UTF-8 text, one sentence or paragraph per line (`--text-file PATH`);
  - the small bundled sample corpus, data/sample/*.txt (`--source sample`).
  When a download fails, the script says how to get the archive by hand and falls back to
  the sample corpus (`--no-fallback`: stop with exit code 1 instead).

Outputs, under DATA_DIR (default data/):
  raw/NAME.tar.gz          the downloaded archive; a valid one is reused, never fetched twice
  processed/train.txt      one clean sentence per line
  processed/val.txt        the validation sentences, same format
  processed/stats.json     sources, line and character counts, every drop reason, the val rule

Reading: only the NAME-sentences.txt member of a Leipzig archive (lines `id<TAB>sentence`),
streamed straight out of the .tar.gz; nothing from the archive is written to disk.

Cleaning, line by line in constant memory: Unicode NFC; control and format characters
removed (whitespace ones such as tab become spaces); whitespace collapsed; lines shorter
than --min-chars or longer than --max-chars dropped; lines without letters, or whose
letters are less than --min-cyrillic-share Cyrillic, dropped (Tatar and Russian share the
alphabet, so Russian stays); exact duplicates dropped (the script remembers an 8-byte
hash of each kept line, not the line).

Train/val split: the blake2b hash of a clean line, read as a fraction in [0, 1), sends the
line to val when it is below --val-fraction. The split depends on the line alone, never on
its position (Leipzig files are sorted, so a positional split would be biased): shuffling
the input gives the same split, and adding lines moves no existing line. When this rule
gives fewer than --min-val-lines val lines, the threshold is raised so that
min(--min-val-lines, 10 % of the kept lines) go to val: still the lines with the smallest
hashes, so the split stays a function of the corpus and not of the line order.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import heapq
import http.client
import json
import os
import re
import sys
import tarfile
import textwrap
import time
import unicodedata
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO

from tqdm import tqdm

import config
import tatar_text
import utils
from config import DataConfig

DEFAULT_SAMPLE_DIR = Path(__file__).resolve().parent / "data" / "sample"
NEXT_COMMAND = "python 02_train_tokenizer.py"
# Other Leipzig Tatar corpora that public references confirm (names are checked before offered).
EXAMPLE_CORPORA = ("tat_news_2015_1M", "tat_web_2018_1M")
DROP_REASONS = ("malformed", "too_short", "too_long", "no_letters", "not_cyrillic", "duplicate")
# Below this share of ә ө ү җ ң һ among its Cyrillic letters a text is not Tatar: natural Tatar
# has about 8–12 %, Russian none.
MIN_TATAR_LETTER_SHARE = 0.02
# The UTF-8 of ә ө ү җ ң һ and their capitals, and the lead bytes of U+0400-U+04FF (Cyrillic):
# counted in the raw blocks, a few C-level scans per MiB.
TATAR_LETTER_BYTES = tuple(c.encode("utf-8") for c in
                           tatar_text.TATAR_LETTERS + tatar_text.TATAR_LETTERS.upper())
CYRILLIC_LEAD_BYTES = tuple(bytes([b]) for b in range(0xD0, 0xD4))

CHUNK_BYTES = 1 << 16  # download
BLOCK_BYTES = 1 << 20  # reading a corpus
PROGRESS_EVERY = 1 << 14  # lines between progress-bar updates
GZIP_MAGIC = b"\x1f\x8b"
USER_AGENT = "tatar-gpt/1.0 (course data preparation; python urllib)"

# Control (Cc) and format (Cf) characters that are not whitespace, as of Unicode 14 (the tests
# compare this list with unicodedata): C0/C1 controls, soft hyphen, Arabic number signs,
# zero-width space and joiners, bidi marks, word joiner, BOM, interlinear annotations,
# Egyptian and shorthand format controls, musical beams, tag characters.
# Whitespace controls (tab, newline, ...) are not here: the whitespace collapse turns them
# into spaces, so words they separated stay separate.
INVISIBLE = re.compile(
    "[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f\xad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891"
    "\u08e2\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb"
    "\U000110bd\U000110cd\U00013430-\U00013438\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    "\U000e0001\U000e0020-\U000e007f]"
)
# Cyrillic letters: the Cyrillic (U+0400-U+04FF) and Cyrillic Supplement (U+0500-U+052F)
# blocks without their few non-letters (U+0482 thousands sign, U+0483-U+0489 combining marks).
CYRILLIC_LETTERS = re.compile("[\u0400-\u0481\u048a-\u052f]+")
# Letters: word characters that are not digits or "_" (str.isalpha, give or take numerals
# such as "½"); runs, because one match per word is much faster than one per character.
LETTERS = re.compile(r"[^\W\d_]+")
FOREIGN_LETTER = re.compile("[^\\W\\d_\u0400-\u0481\u048a-\u052f]")
# ASCII non-letters, UTF-8 continuation bytes, and D0-D3, the lead bytes of U+0400-U+04FF.
# UTF-8 with no other byte holds no letter outside Cyrillic: bytes.translate checks that in C,
# faster than FOREIGN_LETTER, for the many lines with no Latin letters and no «», — or №.
CYRILLIC_SAFE_BYTES = bytes(
    [b for b in range(0x80) if not chr(b).isalpha()] + [*range(0x80, 0xC0), *range(0xD0, 0xD4)]
)


UserError = utils.UserError  # a problem the user can fix: one line, exit code 2


class ArchiveError(UserError):
    """A file is not a readable Leipzig corpus archive."""


class KeptExisting(Exception):
    """A download failed and the corpus already prepared is kept (explained when raised)."""


class DownloadError(Exception):
    """An archive could not be downloaded, even after retries."""

    def __init__(self, url: str, reason: str):
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason


class RetryableError(Exception):
    """A download attempt failed in a way that another attempt may fix."""


@dataclass
class Source:
    """Where lines come from; `tabbed` sources hold Leipzig `id<TAB>sentence` lines."""

    kind: str  # leipzig | archive | text-file | sample
    name: str
    paths: list[Path]
    url: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    letters: dict[str, int] = field(default_factory=lambda: {"tatar": 0, "cyrillic": 0})

    @property
    def tatar_letter_share(self) -> float:
        return self.letters["tatar"] / self.letters["cyrillic"] if self.letters["cyrillic"] else 0.0

    @property
    def tabbed(self) -> bool:
        return self.kind in ("leipzig", "archive")


@dataclass
class DownloadOptions:
    connect_timeout: float
    read_timeout: float
    retries: int  # extra attempts after the first
    backoff: float  # seconds; attempt n+1 starts n * backoff seconds after attempt n failed


# ---------------------------------------------------------------------------
# Download
# ---------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------
# Sources
# ---------------------------------------------------------------------------


def sample_source(sample_dir: Path) -> Source:
    paths = sorted(sample_dir.glob("*.txt"))
    if not paths:
        raise UserError(f"the bundled sample corpus is missing: no *.txt files in {sample_dir}. "
                        f"Restore data/sample/ from the repository or pass --sample-dir DIR.")
    return Source("sample", "sample", paths)


def archive_source(path: Path) -> Source:
    if not path.is_file():
        raise UserError(f"archive not found: {path}. Check the path given to --archive.")
    return Source("archive", path.name.removesuffix(".tar.gz"), [path])


def text_source(path: Path) -> Source:
    if not path.is_file():
        raise UserError(f"text file not found: {path}. Check the path given to --text-file.")
    return Source("text-file", path.name, [path])


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


def gather_sources(args: argparse.Namespace, cfg: DataConfig,
                   opts: DownloadOptions) -> tuple[list[Source], list[str]]:
    """The sources to read, downloading Leipzig archives; also the download failures.

    Raises DownloadError (after printing the help paragraph) under --no-fallback.
    """
    if args.source == "sample":
        return [sample_source(args.sample_dir)], []
    sources = [archive_source(p) for p in args.archive or []]
    sources += [text_source(p) for p in args.text_file or []]
    corpora = args.corpus or ([] if sources else list(cfg.corpus))
    raw_dir = args.data_dir / "raw"
    failures = []
    for name in corpora:
        url = corpus_url(cfg.base_url, name)
        try:
            path = fetch_corpus(name, url, raw_dir, opts)
        except DownloadError as e:
            print("\n" + download_help(e, name, raw_dir), file=sys.stderr)
            if args.no_fallback:
                print("Stopping, as --no-fallback asks.", file=sys.stderr)
                raise
            failures.append(f"{e.url}: {e.reason}")
            continue
        sources.append(Source("leipzig", name, [path], url))
    if failures:
        keep_existing_corpus(args.data_dir / "processed")
    if failures and not sources:
        sample = sample_source(args.sample_dir)
        print(textwrap.fill(f"Falling back to the bundled sample corpus ({len(sample.paths)} "
                            f"files in {args.sample_dir}): enough to try the pipeline, too "
                            f"small for a good model.", width=100) + "\n", file=sys.stderr)
        sources = [sample]
    elif failures:
        print(f"Going on without the {len(failures)} corpus(es) that failed.\n",
              file=sys.stderr)
    return sources, failures


def existing_corpus(processed: Path) -> str | None:
    """A description of the corpus already prepared in `processed`, unless it is the bundled
    sample (which a fallback may replace freely) or there is none."""
    if not (processed / "train.txt").is_file():
        return None
    try:
        stats = json.loads((processed / "stats.json").read_text(encoding="utf-8"))
        kinds = {s["kind"] for s in stats["sources"]}
        names = ", ".join(s["name"] for s in stats["sources"])
        lines = f"{stats['kept_lines']:,} lines"
    except (OSError, ValueError, KeyError, TypeError):
        return "of unknown origin (no readable stats.json)"
    return None if kinds == {"sample"} else f"{names}, {lines}"


def keep_existing_corpus(processed: Path) -> None:
    """A failed download must not replace a corpus prepared earlier with less: stop instead."""
    existing = existing_corpus(processed)
    if existing is None:
        return
    print("\n" + textwrap.fill(
        f"{processed} already holds a prepared corpus ({existing}), so it is kept: a failed "
        f"download never replaces it with less. Run again when the download works, give the "
        f"archive with --archive PATH, or replace the corpus on purpose with --source sample.",
        width=100), file=sys.stderr)
    raise KeptExisting


# ---------------------------------------------------------------------------
# Reading and cleaning
# ---------------------------------------------------------------------------


def read_lines(source: Source, path: Path) -> Iterator[str]:
    """The lines of one file of a source, decoded, without their newline.

    Reads blocks of 1 MiB and decodes each in one call, a little faster than a text stream,
    and an error can still name its line. Leipzig text is UTF-8 with the odd broken byte,
    which becomes U+FFFD; your own text file must be UTF-8 (a clear error beats a corpus of
    U+FFFD from a cp1251 file).
    """
    errors = "replace" if source.tabbed else "strict"
    context = open_sentences_member(path) if source.tabbed else open(path, "rb")
    lines_before = 0
    with context as f:
        rest = b""
        while block := f.read(BLOCK_BYTES):
            block = rest + block
            end = block.rfind(b"\n") + 1  # decode whole lines only: UTF-8 never splits at \n
            rest = block[end:]
            whole = block[:end]
            source.letters["tatar"] += sum(map(whole.count, TATAR_LETTER_BYTES))
            source.letters["cyrillic"] += sum(map(whole.count, CYRILLIC_LEAD_BYTES))
            lines = decode(whole, errors, path, lines_before).split("\n")
            lines.pop()  # the empty string after the last newline
            lines_before += len(lines)
            yield from lines
        if rest:  # a last line without a newline
            source.letters["tatar"] += sum(map(rest.count, TATAR_LETTER_BYTES))
            source.letters["cyrillic"] += sum(map(rest.count, CYRILLIC_LEAD_BYTES))
            yield decode(rest, errors, path, lines_before)


def decode(data: bytes, errors: str, path: Path, lines_before: int) -> str:
    try:
        return data.decode("utf-8", errors)
    except UnicodeDecodeError as e:
        line = lines_before + data.count(b"\n", 0, e.start) + 1
        raise UserError(
            f"{path} is not UTF-8 text (line {line}: {e.reason}). Convert it first, e.g. "
            f"iconv -f cp1251 -t utf-8 {path} > {path.stem}.utf8.txt"
        ) from e


def normalize(text: str) -> str:
    """Invisible characters removed, whitespace collapsed to single spaces and stripped, NFC."""
    # Fast path: most lines are printable (no controls, no whitespace but " "), so a strip is
    # all they need. str.isprintable is a C loop, far cheaper than a regex or a split.
    if not text.isprintable():
        text = " ".join(INVISIBLE.sub("", text).split())
    elif "  " in text:
        text = " ".join(text.split())
    else:
        text = text.strip(" ")
    return unicodedata.normalize("NFC", text)


def drop_reason(line: str, data: bytes, cfg: DataConfig) -> str | None:
    """Why a normalized line (DATA: its UTF-8) is not training text, or None to keep it."""
    if len(line) < cfg.min_chars:
        return "too_short"
    if len(line) > cfg.max_chars:
        return "too_long"
    # Fast path: no letter outside Cyrillic means a share of 1 (if there is a letter at all).
    if not data.translate(None, CYRILLIC_SAFE_BYTES) or FOREIGN_LETTER.search(line) is None:
        return None if CYRILLIC_LETTERS.search(line) else "no_letters"
    letters = sum(map(len, LETTERS.findall(line)))
    cyrillic = sum(map(len, CYRILLIC_LETTERS.findall(line)))
    if cyrillic < cfg.min_cyrillic_share * letters:
        return "not_cyrillic"
    return None


def line_digest(data: bytes) -> bytes:
    """8-byte blake2b of a clean line's UTF-8: its identity for de-duplication and the split."""
    return hashlib.blake2b(data, digest_size=8).digest()


def fraction_cut(fraction: float) -> bytes:
    """The split threshold as 8 big-endian bytes.

    A digest is a 64-bit number; `digest < cut` compares the bytes, which is the same as
    `digest / 2**64 < fraction` without turning every digest into an int.
    """
    return int(fraction * 2**64).to_bytes(8, "big")


def cut_fraction(cut: bytes) -> float:
    return int.from_bytes(cut, "big") / 2**64


class SplitWriter:
    """The train and val files (index 0 and 1, so `digest < cut` picks one), with counts."""

    def __init__(self, train_path: Path, val_path: Path):
        self.paths = (train_path, val_path)
        self.files = [open(p, "wb", buffering=1 << 20) for p in self.paths]
        self.lines = [0, 0]
        self.chars = [0, 0]

    def close(self) -> None:
        """Close both files; the first error (a full disk on the last flush) is raised after
        both are closed, so that no file handle is left open."""
        errors = []
        for f in self.files:
            try:
                f.close()
            except OSError as e:
                errors.append(e)
        if errors:
            raise errors[0]


def clean_source(source: Source, cfg: DataConfig, seen: set[bytes], out: SplitWriter,
                 cut: bytes) -> None:
    """Stream every line of SOURCE through the cleaning rules into OUT; count in source.counts.

    `seen` holds the digests of the lines kept so far, from every source.
    """
    drops = dict.fromkeys(DROP_REASONS, 0)
    read = kept = 0
    files, lines, chars = out.files, out.lines, out.chars
    tabbed = source.tabbed
    with tqdm(desc=source.name, unit=" lines", unit_scale=True, leave=False, delay=1) as bar:
        for path in source.paths:
            for text in read_lines(source, path):
                read += 1
                if read % PROGRESS_EVERY == 0:  # a bar update per line costs a few %
                    bar.update(PROGRESS_EVERY)
                if tabbed:
                    _, tab, text = text.partition("\t")
                    if not tab:
                        drops["malformed"] += 1
                        continue
                line = normalize(text)
                data = line.encode("utf-8")
                reason = drop_reason(line, data, cfg)
                if reason is None:
                    digest = hashlib.blake2b(data, digest_size=8).digest()  # line_digest
                    if digest not in seen:
                        seen.add(digest)
                        split = digest < cut  # False (0): train, True (1): val
                        files[split].write(data + b"\n")
                        lines[split] += 1
                        chars[split] += len(line)
                        kept += 1
                        continue
                    reason = "duplicate"
                drops[reason] += 1
        bar.update(read % PROGRESS_EVERY)
    source.counts = {"lines_read": read, "kept": kept, **drops}


def apply_min_val_rule(out: SplitWriter, cfg: DataConfig, cut: bytes, resplit: Path) -> bytes:
    """Raise the cut when val is too small; return the cut used.

    Val needs min(min_val_lines, 10 % of the kept lines). If it has fewer, the cut moves just
    past the k-th smallest digest and the train lines below it move to val. Every val line
    is below the old cut and every train line above it, so the k smallest digests are the
    val lines plus the smallest train ones.
    """
    have = out.lines[1]
    target = min(cfg.min_val_lines, sum(out.lines) // 10)
    if have >= target:
        return cut
    out.close()
    train_path, val_path = out.paths
    with open(train_path, "rb") as f:
        kth = heapq.nsmallest(target - have, (line_digest(row[:-1]) for row in f))[-1]
    cut = (int.from_bytes(kth, "big") + 1).to_bytes(8, "big")
    lines, chars = [0, out.lines[1]], [0, out.chars[1]]
    with open(train_path, "rb") as f, open(resplit, "wb") as new_train, \
            open(val_path, "ab") as val:
        for row in f:
            split = line_digest(row[:-1]) < cut
            (val if split else new_train).write(row)
            lines[split] += 1
            chars[split] += len(row[:-1].decode("utf-8"))
    os.replace(resplit, train_path)
    out.lines[:], out.chars[:] = lines, chars
    return cut


# ---------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------


def prepare(sources: list[Source], processed: Path, cfg: DataConfig, extra_stats: dict,
            started: float, allow_non_tatar: bool = False) -> dict:
    """Clean and split all sources into processed/{train,val}.txt and stats.json, atomically.

    Everything goes to *.tmp files first and replaces the previous outputs only at the end,
    so a failure anywhere (a full disk, Ctrl-C, a text that is not Tatar) leaves the previous
    good files in place and no temporary file behind.
    """
    names = ("train.txt", "val.txt", "stats.json")  # stats last: it marks a complete set
    final = {name: processed / name for name in names}
    resplit = processed / "train.txt.resplit.tmp"
    with utils.atomic_paths([final[n] for n in names]) as tmps:
        tmp = dict(zip(names, tmps, strict=True))
        out = SplitWriter(tmp["train.txt"], tmp["val.txt"])
        cut = fraction_cut(cfg.val_fraction)
        try:
            # The digests of the kept lines, not the lines: ~100 bytes each with the set overhead.
            seen: set[bytes] = set()
            for source in sources:
                clean_source(source, cfg, seen, out, cut)
            if not seen:
                raise UserError(
                    "no line survived cleaning, so there is nothing to train on. Check the "
                    "input (is it Tatar text, one sentence per line?) and the --min-chars, "
                    "--max-chars and --min-cyrillic-share limits."
                )
            check_tatar(sources, allow_non_tatar)
            cut = apply_min_val_rule(out, cfg, cut, resplit)
            out.close()
        finally:
            with contextlib.suppress(OSError):  # the first error is the one to report
                out.close()
            with contextlib.suppress(OSError):
                resplit.unlink(missing_ok=True)
        stats = build_stats(sources, out, cfg, cut_fraction(cut), final, extra_stats)
        stats["seconds"] = round(time.perf_counter() - started, 3)  # download included
        tmp["stats.json"].write_text(json.dumps(stats, ensure_ascii=False, indent=2) + "\n",
                                     encoding="utf-8")
    return stats


def check_tatar(sources: list[Source], allow_non_tatar: bool) -> None:
    """Refuse a source that is evidently not Tatar (Russian has none of ә ө ү җ ң һ)."""
    for source in sources:
        share = source.tatar_letter_share
        if share >= MIN_TATAR_LETTER_SHARE:
            continue
        message = (f"{source.name}: only {share:.2%} of its Cyrillic letters are ә ө ү җ ң һ "
                   f"(Tatar text has about 8–12 %), so it does not look like Tatar — Russian, "
                   f"perhaps.")
        if not allow_non_tatar:
            raise UserError(f"{message} Check the file; to train on it anyway, add "
                            f"--allow-non-tatar.")
        print(f"WARNING: {message} Using it anyway, as --allow-non-tatar asks.",
              file=sys.stderr)


def build_stats(sources: list[Source], out: SplitWriter, cfg: DataConfig, threshold: float,
                final: dict[str, Path], extra: dict) -> dict:
    dropped = {r: sum(s.counts[r] for s in sources) for r in DROP_REASONS}
    tatar, cyrillic = (sum(s.letters[k] for s in sources) for k in ("tatar", "cyrillic"))
    return {
        "sources": [
            {"kind": s.kind, "name": s.name, "url": s.url, "paths": [str(p) for p in s.paths],
             "lines_read": s.counts["lines_read"], "kept": s.counts["kept"],
             "dropped": {r: s.counts[r] for r in DROP_REASONS},
             "tatar_letter_share": round(s.tatar_letter_share, 5)}
            for s in sources
        ],
        **extra,
        # ә ө ү җ ң һ among the Cyrillic letters read: ~0.08-0.12 for Tatar, 0 for Russian.
        "tatar_letter_share": round(tatar / cyrillic, 5) if cyrillic else 0.0,
        "input_lines": sum(s.counts["lines_read"] for s in sources),
        "kept_lines": sum(out.lines),
        "dropped": dropped,
        "train": {"path": str(final["train.txt"]), "lines": out.lines[0], "chars": out.chars[0]},
        "val": {"path": str(final["val.txt"]), "lines": out.lines[1], "chars": out.chars[1]},
        "val_rule": {
            "rule": "val if blake2b(UTF-8 line, digest_size=8) / 2**64 < threshold",
            "val_fraction": cfg.val_fraction,
            "min_val_lines": cfg.min_val_lines,
            "threshold": threshold,
            "raised": threshold > cfg.val_fraction,
        },
        "cleaning": {"normalization": "NFC", "min_chars": cfg.min_chars,
                     "max_chars": cfg.max_chars, "min_cyrillic_share": cfg.min_cyrillic_share},
    }


def print_summary(stats: dict, data_dir: Path) -> None:
    """A short table per source, the split, and the next command."""
    columns = ("lines read", "kept", *DROP_REASONS)
    rows = [(s["name"], s["lines_read"], s["kept"], *s["dropped"].values())
            for s in stats["sources"]]
    if len(rows) > 1:
        rows.append(("total", stats["input_lines"], stats["kept_lines"],
                     *stats["dropped"].values()))
    name_width = max(len("source"), *(len(r[0]) for r in rows))
    widths = [max(len(c), *(len(f"{r[i + 1]:,}") for r in rows)) for i, c in enumerate(columns)]
    print()
    header = (c.rjust(w) for c, w in zip(columns, widths, strict=True))
    print("  ".join(["source".ljust(name_width), *header]))
    for row in rows:
        cells = (f"{v:,}".rjust(w) for v, w in zip(row[1:], widths, strict=True))
        print("  ".join([row[0].ljust(name_width), *cells]))
    print()
    for split in ("train", "val"):
        s = stats[split]
        print(f"{split:<5} {s['lines']:>11,} lines {s['chars']:>14,} chars  {s['path']}")
    rule = stats["val_rule"]
    note = (f", raised from {rule['val_fraction']:g} to keep a few hundred val lines"
            if rule["raised"] else "")
    print(f"val rule: hash fraction < {rule['threshold']:.6g}{note}")
    print(f"Tatar letters (ә ө ү җ ң һ): {stats['tatar_letter_share']:.1%} of the Cyrillic letters")
    if stats.get("fallback"):
        print("note: this is the bundled sample corpus, as the download failed (see above)")
    print(f"done in {stats['seconds']:.2f} s")
    next_command = NEXT_COMMAND
    if data_dir != Path("data"):
        next_command += f" --data-dir {data_dir}"
    print(f"\nNext: {next_command}")


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    cfg = DataConfig()
    parser = argparse.ArgumentParser(
        description="Download a Tatar corpus (Leipzig Corpora Collection) and turn it into clean\n"
                    "train/val text: processed/{train,val}.txt and stats.json in --data-dir.",
        epilog="Examples:\n"
               "  python 01_prepare_data.py                       # download the default corpus\n"
               "  python 01_prepare_data.py --corpus tat_news_2015_1M\n"
               "  python 01_prepare_data.py --archive ~/Downloads/tat_mixed_2015_1M.tar.gz\n"
               "  python 01_prepare_data.py --source sample       # the small bundled corpus\n"
               "\nWhen a download fails, the script says how to fetch the archive by hand and\n"
               "falls back to the bundled sample corpus (exit code 1 with --no-fallback).\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = parser.add_argument_group("sources")
    src.add_argument("--source", choices=("leipzig", "sample"), default="leipzig",
                     help="leipzig: download Leipzig archives (default); sample: the bundled "
                          "data/sample/*.txt, one sentence per line")
    src.add_argument("--corpus", action="append", metavar="NAME",
                     help=f"Leipzig corpus to download, repeatable; replaces the default "
                          f"{', '.join(cfg.corpus)}. Others: {', '.join(EXAMPLE_CORPORA)}")
    config.add_flags(src, DataConfig, config.DATA_HELP, ("base_url",))
    src.add_argument("--archive", action="append", type=Path, metavar="PATH",
                     help="an already downloaded Leipzig .tar.gz, repeatable; no download "
                          "unless --corpus is given too")
    src.add_argument("--text-file", action="append", type=Path, metavar="PATH",
                     help="plain UTF-8 text, one sentence or paragraph per line, repeatable; "
                          "no download unless --corpus is given too")
    src.add_argument("--sample-dir", type=Path, default=DEFAULT_SAMPLE_DIR, metavar="DIR",
                     help="the bundled sample corpus (default: data/sample next to this script)")
    src.add_argument("--allow-non-tatar", action="store_true",
                     help="train on a source even when it has (almost) none of the Tatar "
                          "letters ә ө ү җ ң һ; without it such a source is refused")
    src.add_argument("--no-fallback", action="store_true",
                     help="when a download fails, exit with code 1 instead of falling back to "
                          "the sample corpus")
    paths = parser.add_argument_group("paths")
    paths.add_argument("--data-dir", type=Path, default=Path("data"), metavar="DIR",
                       help="downloads go to DIR/raw/, outputs to DIR/processed/ "
                            "(default: %(default)s)")
    clean = parser.add_argument_group("cleaning and split")
    config.add_flags(clean, DataConfig, config.DATA_HELP,
                     ("min_chars", "max_chars", "min_cyrillic_share", "val_fraction",
                      "min_val_lines"))
    net = parser.add_argument_group("download")
    config.add_flags(net, DataConfig, config.DATA_HELP,
                     ("timeout", "connect_timeout", "retries", "backoff"))
    args = parser.parse_args(argv)

    if args.source == "sample" and (args.corpus or args.archive or args.text_file):
        parser.error("--source sample cannot be combined with --corpus, --archive or --text-file")
    if not 0.0 <= args.val_fraction < 1.0:
        parser.error(f"--val-fraction must be in [0, 1), got {args.val_fraction}")
    if not 0.0 <= args.min_cyrillic_share <= 1.0:
        parser.error(f"--min-cyrillic-share must be in [0, 1], got {args.min_cyrillic_share}")
    if not 0 <= args.min_chars <= args.max_chars:
        parser.error("need 0 <= --min-chars <= --max-chars")
    if args.retries < 0 or args.backoff < 0 or args.min_val_lines < 0:
        parser.error("--retries, --backoff and --min-val-lines cannot be negative")
    if args.timeout <= 0 or args.connect_timeout <= 0:
        parser.error("timeouts must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return utils.run_cli(lambda: run(args), "the files in data/processed are as they were")


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    cfg = replace(DataConfig(), **{name: getattr(args, name) for name in config.DATA_HELP})
    opts = DownloadOptions(cfg.connect_timeout, cfg.timeout, cfg.retries, cfg.backoff)
    try:
        sources, failures = gather_sources(args, cfg, opts)
    except (DownloadError, KeptExisting):
        return 1  # gather_sources has explained it
    fallback = bool(failures) and sources[0].kind == "sample"
    extra = {"download_failures": failures, "fallback": fallback}
    stats = prepare(sources, args.data_dir / "processed", cfg, extra, started,
                    args.allow_non_tatar)
    print_summary(stats, args.data_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
