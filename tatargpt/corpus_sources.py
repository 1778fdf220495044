"""Where the lines of `01_prepare_data.py` come from, and how they are read.

Gathers the sources a run asked for (Leipzig archives, downloaded through
`tatargpt.leipzig`; archives on disk; plain text files; the bundled sample corpus), handles
a failed download (keep a corpus prepared earlier, else fall back to the sample), and reads a
source's lines in 1 MiB blocks while counting its Tatar and Cyrillic letters.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import tatar_text
from config import DataConfig
from tatargpt import leipzig
from tatargpt.cli import option
from tatargpt.errors import UserError

BLOCK_BYTES = 1 << 20  # read and decoded at once
# The UTF-8 of ә ө ү җ ң һ and their capitals, and the lead bytes of U+0400-U+04FF (Cyrillic):
# counted in the raw blocks, a few C-level scans per MiB.
TATAR_LETTER_BYTES = tuple(c.encode("utf-8") for c in
                           tatar_text.TATAR_LETTERS + tatar_text.TATAR_LETTERS.upper())
CYRILLIC_LEAD_BYTES = tuple(bytes([b]) for b in range(0xD0, 0xD4))
DEFAULT_SAMPLE_DIR = Path(__file__).resolve().parent.parent / "data" / "sample"


# The flags of 01_prepare_data.py that choose the sources (the cleaning and download settings
# are config.DataConfig's).
@dataclass
class SourceOptions:
    source: str = option("leipzig", "leipzig: download Leipzig archives; sample: the bundled "
                                    "data/sample/*.txt, one sentence per line",
                         choices=("leipzig", "sample"))
    corpus: list[str] = option([], f"Leipzig corpus to download, repeatable; replaces the "
                                   f"default {', '.join(DataConfig().corpus)}. Others: "
                                   f"{', '.join(leipzig.EXAMPLE_CORPORA)}", "NAME")
    archive: list[Path] = option([], "an already downloaded Leipzig .tar.gz, repeatable; no "
                                     "download unless --corpus is given too", "PATH")
    text_file: list[Path] = option([], "plain UTF-8 text, one sentence or paragraph per line, "
                                       "repeatable; no download unless --corpus is given too",
                                   "PATH")
    sample_dir: Path = option(DEFAULT_SAMPLE_DIR, "the bundled sample corpus", "DIR",
                              shown="data/sample next to this script")
    allow_non_tatar: bool = option(False, "train on a source even when it has (almost) none "
                                          "of the Tatar letters ә ө ү җ ң һ; without it such "
                                          "a source is refused")
    no_fallback: bool = option(False, "when a download fails, exit with code 1 instead of "
                                      "falling back to the sample corpus")


@dataclass
class PathOptions:
    data_dir: Path = option(Path("data"), "downloads go to DIR/raw/, outputs to DIR/processed/",
                            "DIR")


class KeptExisting(Exception):
    """A download failed and the corpus already prepared is kept (explained when raised)."""


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


def gather_sources(args: argparse.Namespace, cfg: DataConfig,
                   opts: leipzig.DownloadOptions) -> tuple[list[Source], list[str]]:
    """The sources to read, downloading Leipzig archives; also the download failures.

    Raises leipzig.DownloadError (after printing the help paragraph) under --no-fallback.
    """
    if args.source == "sample":
        return [sample_source(args.sample_dir)], []
    sources = [archive_source(p) for p in args.archive or []]
    sources += [text_source(p) for p in args.text_file or []]
    corpora = args.corpus or ([] if sources else list(cfg.corpus))
    raw_dir = args.data_dir / "raw"
    failures = []
    for name in corpora:
        url = leipzig.corpus_url(cfg.base_url, name)
        try:
            path = leipzig.fetch_corpus(name, url, raw_dir, opts)
        except leipzig.DownloadError as e:
            print("\n" + leipzig.download_help(e, name, raw_dir), file=sys.stderr)
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


def read_lines(source: Source, path: Path) -> Iterator[str]:
    """The lines of one file of a source, decoded, without their newline.

    Reads blocks of 1 MiB and decodes each in one call, a little faster than a text stream,
    and an error can still name its line. Leipzig text is UTF-8 with the odd broken byte,
    which becomes U+FFFD; your own text file must be UTF-8 (a clear error beats a corpus of
    U+FFFD from a cp1251 file).
    """
    errors = "replace" if source.tabbed else "strict"
    context = leipzig.open_sentences_member(path) if source.tabbed else open(path, "rb")
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
