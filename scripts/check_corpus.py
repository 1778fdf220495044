"""Quality gates of the bundled Tatar corpus (data/sample/*.txt), one ✅/❌ line each.

    python scripts/check_corpus.py                     # the whole bundled corpus
    python scripts/check_corpus.py my_topic.txt --part # one part of it: size gates off

A corpus written for a course can look fine sentence by sentence and still teach a model
the wrong things: one opening repeated hundreds of times, sentence templates with the nouns
swapped, Russian lines, suffixes that break vowel harmony. Each gate below measures one of
these over the whole corpus. tests/test_corpus.py runs them; exit code 1 when one fails.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import tatar_text  # noqa: E402  (the repository root is on the path only now)
from tatargpt import cli  # noqa: E402
from tatargpt.cli import option  # noqa: E402

SAMPLE_DIR = ROOT / "data" / "sample"
LATIN = re.compile(r"[A-Za-z]")

# Per-letter shares of all letters, as percentages: generous bands around natural Tatar.
LETTER_BANDS = {"ә": (3.0, 9.0), "ө": (0.5, 2.5), "ү": (0.7, 3.5), "җ": (0.2, 1.3),
                "ң": (0.5, 2.5), "һ": (0.2, 1.5)}


@dataclass
class Gate:
    name: str
    ok: bool
    value: str
    limit: str
    examples: list[str]


def read_sentences(paths: list[Path]) -> list[str]:
    lines = []
    for path in paths:
        lines += [line.strip() for line in path.read_text(encoding="utf-8").splitlines()
                  if line.strip()]
    return lines


def opening(sentence: str, n: int = 3) -> str:
    return " ".join(w.lower() for w in re.findall(r"[^\W\d_]+|\d+", sentence)[:n])


def near_duplicates(sentences: list[str], min_words: int = 5) -> list[str]:
    """Sentences of min_words+ words equal to another one but for a single word: templates."""
    owners: dict[tuple, set[int]] = {}
    split = [s.lower().split() for s in sentences]
    for i, ws in enumerate(split):
        if len(ws) < min_words:
            continue
        for j in range(len(ws)):
            owners.setdefault((*ws[:j], "_", *ws[j + 1:]), set()).add(i)
    hits = {i for group in owners.values() if len(group) > 1 for i in group}
    return [sentences[i] for i in sorted(hits)]


def harmony(sentences: list[str]) -> tuple[int, int, Counter]:
    ok = bad = 0
    broken: Counter = Counter()
    for s in sentences:
        for w in tatar_text.words(s):
            verdict = tatar_text.suffix_harmony(w)
            if verdict is True:
                ok += 1
            elif verdict is False:
                bad += 1
                broken[w] += 1
    return ok, bad, broken


def gates(sentences: list[str], part: bool = False) -> list[Gate]:
    n = len(sentences)
    text = "\n".join(sentences)
    size = len(text.encode("utf-8")) + 1
    result = []
    if not part:
        result.append(Gate("sentences", n >= 12_000, f"{n:,}", "≥ 12,000", []))
        result.append(Gate("size", size >= 800_000, f"{size / 1000:,.0f} KB", "≥ 800 KB", []))

    counts = Counter(sentences)
    distinct = len(counts) / max(1, n)
    repeated = [s for s, c in counts.most_common(5) if c > 1]
    result.append(Gate("distinct sentences", distinct >= 0.98, f"{distinct:.2%}", "≥ 98 %",
                       repeated))

    openings = Counter(opening(s) for s in sentences)
    top, top_count = openings.most_common(1)[0] if openings else ("", 0)
    share = top_count / max(1, n)
    result.append(Gate("most common 3-word opening", share <= 0.005,
                       f"{share:.2%} ({top_count}× «{top}»)", "≤ 0.5 %",
                       [f"{c}× {o}" for o, c in openings.most_common(5)]))

    templated = near_duplicates(sentences)
    long_ones = sum(1 for s in sentences if len(s.split()) >= 5)
    t_share = len(templated) / max(1, long_ones)
    result.append(Gate("template pairs (5+ words, one word apart)", t_share <= 0.03,
                       f"{t_share:.2%} ({len(templated)})", "≤ 3 %", templated[:6]))

    ok, bad, broken = harmony(sentences)
    h = ok / max(1, ok + bad)
    result.append(Gate("vowel harmony of suffixes", h >= 0.93,
                       f"{h:.1%} of {ok + bad:,} checkable words", "≥ 93 %",
                       [f"{c}× {w}" for w, c in broken.most_common(8)]))

    lower = text.lower()
    letters = sum(1 for c in lower if c.isalpha())
    for letter, (lo, hi) in LETTER_BANDS.items():
        rate = 100 * lower.count(letter) / max(1, letters)
        result.append(Gate(f"letter {letter}", lo <= rate <= hi, f"{rate:.2f} % of letters",
                           f"{lo}–{hi} %", []))
    with_tatar = sum(1 for s in sentences if any(c in s.lower() for c in tatar_text.TATAR_LETTERS))
    w_share = with_tatar / max(1, n)
    result.append(Gate("sentences with ә ө ү җ ң һ", w_share >= 0.85, f"{w_share:.1%}",
                       "≥ 85 %", []))

    # Real Tatar text writes some names, units and abbreviations in Latin letters (IT, Wi-Fi,
    # km/h): a few sentences may, but no sentence may be mostly Latin.
    latin = [s for s in sentences if LATIN.search(s)]
    l_share = len(latin) / max(1, n)
    result.append(Gate("sentences with Latin letters", l_share <= 0.01,
                       f"{l_share:.2%} ({len(latin)})", "≤ 1 %", latin[:5]))
    mostly = [s for s in latin if len(LATIN.findall(s)) * 4 > sum(c.isalpha() for c in s)]
    result.append(Gate("sentences a quarter Latin or more", not mostly, str(len(mostly)), "0",
                       mostly[:5]))
    russian = [s for s in sentences if tatar_text.looks_russian(s)]
    result.append(Gate("Russian-looking sentences", len(russian) <= n * 0.002,
                       str(len(russian)), "≤ 0.2 %", russian[:5]))

    lengths = [len(s.split()) for s in sentences]
    long_share = sum(1 for k in lengths if k >= 25) / max(1, n)
    result.append(Gate("sentences of 25+ words", long_share >= 0.02, f"{long_share:.1%}",
                       "≥ 2 %", []))
    questions = sum(1 for s in sentences if s.rstrip("»\"").endswith("?")) / max(1, n)
    result.append(Gate("questions", questions >= 0.02, f"{questions:.1%}", "≥ 2 %", []))
    return result


@dataclass
class Options:
    part: bool = option(False, "check a part of the corpus: skip the size gates")
    examples: bool = option(False, "print examples of failures")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Quality gates of the bundled Tatar corpus.")
    parser.add_argument("paths", nargs="*", type=Path,
                        help="text files or folders (default: data/sample)")
    cli.add_options(parser, Options)
    args = parser.parse_args(argv)
    paths: list[Path] = []
    for p in args.paths or [SAMPLE_DIR]:
        paths += sorted(p.glob("*.txt")) if p.is_dir() else [p]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing or not paths:
        print(f"error: no such text file: {', '.join(missing) or 'none given'}", file=sys.stderr)
        return 2
    sentences = read_sentences(paths)
    result = gates(sentences, part=args.part)
    print(f"{len(sentences):,} sentences in {len(paths)} file(s)")
    for g in result:
        print(f"{'✅' if g.ok else '❌'} {g.name:<42} {g.value:<36} (need {g.limit})")
        if g.examples and (args.examples or not g.ok):
            for example in g.examples:
                print(f"      {example[:110]}")
    return 0 if all(g.ok for g in result) else 1


if __name__ == "__main__":
    sys.exit(main())
