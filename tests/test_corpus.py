"""The bundled corpus (data/sample) passes its quality gates, and the gates catch what they
are for: Russian or Latin lines, templates, an over-used opening, broken vowel harmony.

Also the Tatar facts of tatar_text.py that the gates, 01_prepare_data.py and 04_evaluate.py
share: the harmony rule, flipped suffixes, minimal pairs, the Tatar-letter share.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

import tatar_text
from conftest import ROOT, load_script

check = load_script("scripts/check_corpus.py")
SENTENCES = check.read_sentences(sorted((ROOT / "data" / "sample").glob("*.txt")))


def gates(sentences, part=True) -> dict[str, check.Gate]:
    return {g.name: g for g in check.gates(sentences, part=part)}


@pytest.fixture(scope="module")
def corpus_gates() -> dict[str, check.Gate]:
    return gates(SENTENCES, part=False)


GATE_NAMES = ["sentences", "size", "distinct sentences", "most common 3-word opening",
              "template pairs (5+ words, one word apart)", "vowel harmony of suffixes",
              *(f"letter {c}" for c in "әөүҗңһ"), "sentences with ә ө ү җ ң һ",
              "sentences with Latin letters", "sentences a quarter Latin or more",
              "Russian-looking sentences",
              "sentences of 25+ words", "questions"]


@pytest.mark.parametrize("name", GATE_NAMES)
def test_the_bundled_corpus_passes(corpus_gates, name):
    gate = corpus_gates[name]
    assert gate.ok, f"{name}: {gate.value} (need {gate.limit}); e.g. {gate.examples[:3]}"


def test_every_file_is_named_in_the_readme_and_the_cli_agrees(capsys):
    readme = (ROOT / "data" / "sample" / "README.md").read_text(encoding="utf-8")
    for path in (ROOT / "data" / "sample").glob("*.txt"):
        assert f"`{path.name}`" in readme, path.name
    assert f"{len(SENTENCES):,} sentences" in readme
    assert check.main([]) == 0
    assert "❌" not in capsys.readouterr().out


def test_the_gates_catch_russian_latin_templates_and_openings():
    base = random.Random(0).sample(SENTENCES, 2000)
    russian = ["Сегодня мы пошли в кино, и фильм был очень хороший."] * 1 + [
        f"Он сказал, что в {n} году это было не так." for n in range(1990, 2010)]
    assert not gates(base + russian)["Russian-looking sentences"].ok
    # A few Latin names and abbreviations pass; more than 1 % of the lines does not, and
    # neither does one mostly Latin line.
    base = [s for s in base if not check.LATIN.search(s)]  # the corpus has a few already
    abbreviations = [f"{s} USB" for s in base[:15]]
    assert gates(base + abbreviations)["sentences with Latin letters"].ok
    assert not gates(base + [f"{s} Wi-Fi" for s in base[:40]])[
        "sentences with Latin letters"].ok
    assert gates(base + abbreviations)["sentences a quarter Latin or more"].ok
    assert not gates(base + ["Бу this sentence is written in latin letters."])[
        "sentences a quarter Latin or more"].ok
    nouns = ["алма", "груша", "кишер", "бәрәңге", "кабак", "чия", "карлыган", "кәбестә"] * 10
    templated = [f"Безнең бакчада быел бик күп {n} {i} үсте." for i, n in enumerate(nouns)]
    assert not gates(base + templated)["template pairs (5+ words, one word apart)"].ok
    opened = [f"Бервакыт безнең авылда {s}" for s in base[:40]]
    assert not gates(base + opened)["most common 3-word opening"].ok
    assert not gates(base + base[:100])["distinct sentences"].ok


def test_random_suffixes_fail_the_harmony_gate():
    """Natural Tatar keeps the rule in ~90 %+ of checkable words; random suffixes in ~half."""
    rng = random.Random(1)

    def scramble(sentence: str) -> str:
        out = []
        for w in sentence.split():
            flipped = tatar_text.flip_suffix(w.strip(".,!?»«—:;"))
            out.append(w.replace(w.strip(".,!?»«—:;"), flipped)
                       if flipped and rng.random() < 0.5 else w)
        return " ".join(out)

    scrambled = [scramble(s) for s in SENTENCES[:3000]]
    ok, bad, _ = check.harmony(scrambled)
    assert 0.4 < ok / (ok + bad) < 0.65
    assert not gates(scrambled)["vowel harmony of suffixes"].ok


@pytest.mark.parametrize("word, verdict", [
    ("китапларда", True), ("китаплардә", False), ("мәктәпкә", True), ("мәктәпка", False),
    ("Казанның", True), ("Казаннең", False), ("өйләрне", True), ("өйләрны", False),
    ("сәгатькә", True),  # a final soft sign: a front stem
    ("елда", None),  # е at the start: [jɯl], its harmony is not written
    ("да", None), ("бара", None), ("Россиядә", None),
])
def test_the_harmony_rule(word, verdict):
    assert tatar_text.suffix_harmony(word) is verdict


def test_flip_suffix_and_minimal_pairs():
    assert tatar_text.flip_suffix("китапларда") == "китаплардә"
    assert tatar_text.flip_suffix("өйләрне") == "өйләрны"
    assert tatar_text.flip_suffix("КАЗАНДА") == "КАЗАНДӘ"
    assert tatar_text.flip_suffix("китаплардә") is None  # already wrong: no minimal pair
    pairs = tatar_text.minimal_pairs(SENTENCES[:500], max_pairs=50, seed=3)
    assert len(pairs) == 50 and pairs == tatar_text.minimal_pairs(SENTENCES[:500], 50, seed=3)
    for sentence, flipped, word, new in pairs:
        assert sentence != flipped and len(sentence) == len(flipped)
        assert any(sentence[:i] + new + sentence[i + len(word):] == flipped
                   for i in range(len(sentence)) if sentence.startswith(word, i))
        assert tatar_text.suffix_harmony(word) and tatar_text.suffix_harmony(new) is False


def test_tatar_letter_share_and_russian_detection():
    assert tatar_text.tatar_letter_share("Это обычный русский текст.") == 0.0
    share = tatar_text.tatar_letter_share("\n".join(SENTENCES))
    assert 0.07 < share < 0.15
    assert tatar_text.looks_russian("Он сказал, что это очень хорошая книга.")
    assert not tatar_text.looks_russian("Бабай урманда утын кисте.")  # Tatar without ә ө …
    assert sum(map(tatar_text.looks_russian, SENTENCES)) <= len(SENTENCES) * 0.002


def test_the_fine_tuning_answers_pass_the_same_gates():
    """What the model learns to write in stage 5 (data/sft/*.jsonl, the assistant's messages)
    is held to the corpus's standard; only the long-sentence gate is off: answers are short."""
    import json

    answers, counts = [], {}
    for path in sorted((ROOT / "data" / "sft").glob("*.jsonl")):
        lines = path.read_text(encoding="utf-8").splitlines()
        counts[path.name] = len(lines)
        answers += [m["content"] for line in lines for m in json.loads(line)["messages"]
                    if m["role"] == "assistant"]
    failed = [f"{g.name}: {g.value} (need {g.limit})" for g in check.gates(answers, part=True)
              if not g.ok and g.name != "sentences of 25+ words"]
    assert not failed, failed
    readme = (ROOT / "data" / "sft" / "README.md").read_text(encoding="utf-8")
    for name, n in counts.items():
        assert f"| `{name}` | {n} |" in readme, name
    assert f"{sum(counts.values()):,} conversations" in readme


def test_the_sweep_table_bolds_the_better_model_of_each_pair():
    """docs/QUICK_RUN.md (scripts/sweep_quick.py): the winner of each GPT | n-gram pair is
    the bold one: lower bits per character, higher harmony accuracy."""
    sweep = load_script("scripts/sweep_quick.py")
    assert sweep.pair(2.301, 2.275, ".3f", lower=True) == "2.301 | **2.275**"
    assert sweep.pair(1.884, 1.895, ".3f", lower=True) == "**1.884** | 1.895"
    assert sweep.pair(0.988, 0.983, ".1%") == "**98.8%** | 98.3%"
    assert sweep.pair(0.9, 1.0, ".1%") == "90.0% | **100.0%**"
    assert sweep.pair(1.0, 1.0, ".1%") == "100.0% | 100.0%"
    assert sweep.main(["--sample-dir", "/no/such/folder"]) == 2


def test_the_sweep_commands_in_the_docs_name_runs_it_has():
    """Every `scripts/sweep_quick.py` command in README.md and docs/*.md parses, and its
    --runs and --seeds are ones the script accepts: the tables' commands regenerate them."""
    import shlex

    sweep = load_script("scripts/sweep_quick.py")
    parser = sweep.build_parser()
    found = 0
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for line in doc.read_text(encoding="utf-8").splitlines():
            if not line.startswith("python scripts/sweep_quick.py "):
                continue
            args = parser.parse_args(shlex.split(line)[2:])
            names = [n.strip() for n in args.runs.split(",") if n.strip()]
            unknown = [n for n in names if n not in sweep.RUNS]
            assert not unknown, f"{doc.name}: unknown runs {unknown} in: {line}"
            sweep.parse_seeds(args.seeds)
            found += 1
    assert found >= 5  # docs/QUICK_RUN.md regenerates each of its tables this way


def test_the_sweep_averages_the_seeds_of_a_run(capsys, monkeypatch, tmp_path):
    """scripts/sweep_quick.py --seeds: one row per seed, then the mean of the GPT's figures
    (the n-gram's are the seed's own, the same in each), and the seed flag left out of it."""
    sweep = load_script("scripts/sweep_quick.py")

    def row(seed: int, bpc: float, natural: float, harmony: float, seconds: float) -> dict:
        files = [{"path": "/x/natural.txt", "sentences": 10, "chars": 300, "pairs": 20,
                  "gpt": {"bpc": natural, "harmony_accuracy": harmony},
                  "ngram": {"bpc": 2.116, "harmony_accuracy": 0.99}}]
        return {"name": f"quick settings, seed {seed}", "vocab": 4096,
                "flags": ["--compile", "--seed", str(seed), "--ema", "0"],
                "seconds": seconds, "iters": 1500, "best_iter": 1500, "params": 1_115_008,
                "gpt_bpc": bpc, "ngram_bpc": 1.817, "gpt_harmony": harmony,
                "ngram_harmony": 0.998, "tokens_per_word": 1.9, "eval_files": files,
                "train_chars": 4_746_319}

    rows = [row(1337, 1.668, 2.129, 0.995, 372.0), row(7, 1.678, 2.101, 0.985, 394.0)]
    mean = sweep.mean_of_seeds("quick settings", rows)
    assert mean["name"] == "quick settings: mean of 2 seeds"
    assert mean["flags"] == ["--compile", "--ema", "0"]
    assert mean["gpt_bpc"] == pytest.approx(1.673) and mean["seconds"] == pytest.approx(383.0)
    assert mean["gpt_harmony"] == pytest.approx(0.99)
    natural = mean["eval_files"][0]
    assert natural["gpt"]["bpc"] == pytest.approx(2.115)
    assert natural["ngram"] == {"bpc": 2.116, "harmony_accuracy": 0.99}
    assert rows[0]["gpt_bpc"] == 1.668  # the seeds' own rows are left as they were
    args = sweep.argparse.Namespace(runs="quick settings", seeds="1337,7", sample_dir="data/sample",
                                    eval_file=[Path("natural.txt")], out="/tmp/q.md", preset="tiny")
    table = sweep.render([*rows, mean], args)
    assert "--seeds 1337,7" in table
    line = next(x for x in table.splitlines() if x.startswith("| quick settings: mean"))
    assert "| **1.673** | 1.817 |" in line and "| **2.115** | 2.116 |" in line
    assert sweep.parse_seeds("1337, 7") == [1337, 7] and sweep.parse_seeds("") == []
    # main: each run once per seed, with --seed S on top of its flags, then the mean row.
    calls = []

    def fake_run(name, vocab, tok_flags, flags, work, preset, eval_files):
        calls.append((name, flags))
        seed = int(flags[flags.index("--seed") + 1])
        return {**row(seed, 1.6 + seed / 1000, 2.1, 0.99, 300.0), "name": name,
                "flags": [*tok_flags, *flags]}

    out = tmp_path / "sweep.md"
    monkeypatch.setattr(sweep, "run", lambda cmd, log: None)  # 01_prepare_data.py: not needed
    monkeypatch.setattr(sweep, "one_run", fake_run)
    assert sweep.main(["--runs", "quick settings", "--seeds", "1,3", "--out", str(out)]) == 0
    assert calls == [("quick settings, seed 1", ["--compile", "--seed", "1"]),
                     ("quick settings, seed 3", ["--compile", "--seed", "3"])]
    table = out.read_text(encoding="utf-8")
    assert "| quick settings: mean of 2 seeds | " in table and "| **1.602** | 1.817 |" in table
    for bad in ("7,x", "7,7", "-1"):
        assert sweep.main(["--seeds", bad]) == 2
        assert "--seeds" in capsys.readouterr().err
