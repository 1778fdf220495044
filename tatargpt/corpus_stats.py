"""What `01_prepare_data.py` records about a prepared corpus, and the summary it prints.

`build_stats` makes the stats.json record: per source the lines read, kept and dropped (by
reason) and its share of Tatar letters; the train and val line and character counts; the
val rule with its threshold; the cleaning limits. `print_summary` turns that record into a
short table and the next command to run.
"""

from __future__ import annotations

from pathlib import Path

from config import DataConfig
from tatargpt.corpus_sources import Source

# Why a line is not training text, in the order stats.json and the summary list them.
DROP_REASONS = ("malformed", "too_short", "too_long", "no_letters", "not_cyrillic", "duplicate")
NEXT_COMMAND = "python 02_train_tokenizer.py"


def build_stats(sources: list[Source], lines: list[int], chars: list[int], cfg: DataConfig,
                threshold: float, final: dict[str, Path], extra: dict) -> dict:
    """The stats.json record; LINES and CHARS are the [train, val] counts."""
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
        "kept_lines": sum(lines),
        "dropped": dropped,
        "train": {"path": str(final["train.txt"]), "lines": lines[0], "chars": chars[0]},
        "val": {"path": str(final["val.txt"]), "lines": lines[1], "chars": chars[1]},
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
