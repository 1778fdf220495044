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
streamed straight out of the .tar.gz; nothing from the archive is written to disk. What a
first reading can skip is in tatargpt/: leipzig.py (download, retries, resume, archives),
corpus_sources.py (the sources asked for, the fallback of a failed download, reading lines),
corpus_stats.py (the stats.json record and the summary).

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
import hashlib
import heapq
import json
import os
import re
import sys
import time
import unicodedata
from dataclasses import replace
from pathlib import Path

from tqdm import tqdm

import config
import utils
from config import DataConfig
from tatargpt import cli, fileio, leipzig
from tatargpt.corpus_sources import (
    KeptExisting,
    PathOptions,
    Source,
    SourceOptions,
    gather_sources,
    read_lines,
)
from tatargpt.corpus_stats import DROP_REASONS, build_stats, print_summary

UserError = utils.UserError  # a problem the user can fix: one line, exit code 2
PROGRESS_EVERY = 1 << 14  # lines between progress-bar updates
# Below this share of ә ө ү җ ң һ among its Cyrillic letters a text is not Tatar: natural Tatar
# has about 8–12 %, Russian none.
MIN_TATAR_LETTER_SHARE = 0.02
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


# ---------------------------------------------------------------------------
# Cleaning, de-duplication and the train/val split
# ---------------------------------------------------------------------------


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
    with fileio.atomic_paths([final[n] for n in names]) as tmps:
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
        stats = build_stats(sources, out.lines, out.chars, cfg, cut_fraction(cut), final,
                            extra_stats)
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


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
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
    cli.add_options(src, SourceOptions)
    config.add_flags(src, DataConfig, config.DATA_HELP, ("base_url",))
    cli.add_options(parser.add_argument_group("paths"), PathOptions)
    clean = parser.add_argument_group("cleaning and split")
    config.add_flags(clean, DataConfig, config.DATA_HELP,
                     ("min_chars", "max_chars", "min_cyrillic_share", "val_fraction",
                      "min_val_lines"))
    net = parser.add_argument_group("download")
    config.add_flags(net, DataConfig, config.DATA_HELP,
                     ("timeout", "connect_timeout", "retries", "backoff"))
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = build_parser()
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


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    cfg = replace(DataConfig(), **{name: getattr(args, name) for name in config.DATA_HELP})
    opts = leipzig.DownloadOptions(cfg.connect_timeout, cfg.timeout, cfg.retries, cfg.backoff)
    try:
        sources, failures = gather_sources(args, cfg, opts)
    except (leipzig.DownloadError, KeptExisting):
        return 1  # gather_sources has explained it
    fallback = bool(failures) and sources[0].kind == "sample"
    extra = {"download_failures": failures, "fallback": fallback}
    stats = prepare(sources, args.data_dir / "processed", cfg, extra, started,
                    args.allow_non_tatar)
    print_summary(stats, args.data_dir)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return utils.run_cli(lambda: run(args), "the files in data/processed are as they were")


if __name__ == "__main__":
    sys.exit(main())
