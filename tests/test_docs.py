"""The documentation does not drift from the code.

- every script a document names exists;
- every `--flag` shown after a script in a command (`python X.py … --flag`,
  `bash run_pipeline.sh … --flag`, `torchrun … 03_train.py … --flag`) is in that script's
  `--help` (each script's help is run once, as a subprocess, like a user would);
- every relative link and image resolves, anchors included;
- the parameter table in docs/ARCHITECTURE.md is exactly `config.param_table()`;
- README.md shows exactly the test command that `.ci/run` runs;
- docs/EXAMPLES.md says which corpus, preset and iterations its outputs come from;
- README.md's layout names every script of the repository.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import config
from conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SCRIPT_RE = re.compile(r"(?<![\w./-])((?:[\w.-]+/)*[\w.-]+\.(?:py|sh|ipynb))(?![\w/])")
FENCE_RE = re.compile(r"^(`{3,}|~{3,})[^\n]*\n(.*?)^\1\s*$", re.M | re.S)
INLINE_RE = re.compile(r"`((?:[^`\n]|\n(?!\s*\n))+)`")  # may wrap, not across a blank line
LINK_RE = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HELP_FLAG_RE = re.compile(r"(?<![\w-])--[A-Za-z0-9][\w-]*")
SEPARATORS = {"&&", "||", ";", "|", ">", ">>", "2>&1", "&"}
PARAM_START, PARAM_END = "<!-- param-table:start -->", "<!-- param-table:end -->"


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


# ---------------------------------------------------------------------------
# Commands shown in the documents
# ---------------------------------------------------------------------------


def code_snippets(text: str) -> list[tuple[str, bool]]:
    """(line, is_inline) for the lines of fenced code blocks (continuations joined) and for
    inline code."""
    snippets = []
    for match in FENCE_RE.finditer(text):
        snippets += [(line, False)
                     for line in re.sub(r"\\\n\s*", " ", match.group(2)).splitlines()]
    rest = FENCE_RE.sub("", text)
    snippets += [(" ".join(code.split()), True) for code in INLINE_RE.findall(rest)]
    return snippets


def split_words(line: str) -> list[str]:
    line = line.strip().lstrip("!$ ")
    try:
        return shlex.split(line, comments=True)
    except ValueError:  # unbalanced quotes in prose-like code: a plain split is enough
        return line.split("#")[0].split()


def is_python(word: str) -> bool:
    return Path(word).name in ("python", "python3") or re.fullmatch(r"python3\.\d+", word)


def commands(line: str, inline: bool = False) -> list[tuple[str, list[str]]]:
    """(script, flags) for each `python X.py`, `bash X.sh`, `torchrun … X.py` in a line,
    and for inline code that starts with a script (`03_train.py --resume`)."""
    words = split_words(line)
    found = []
    i = 0
    while i < len(words):
        w = words[i]
        script = None
        if inline and i == 0 and w.endswith((".py", ".sh")):
            script, i = w, 1
        elif is_python(w) and i + 1 < len(words) and words[i + 1].endswith(".py"):
            script, i = words[i + 1], i + 2
        elif w in ("bash", "sh") and i + 1 < len(words) and words[i + 1].endswith(".sh"):
            script, i = words[i + 1], i + 2
        elif Path(w).name == "torchrun":
            j = i + 1
            while j < len(words) and words[j].startswith("-"):
                j += 1
            if j < len(words) and words[j].endswith(".py"):
                script, i = words[j], j + 1
        if script is None:
            i += 1
            continue
        flags: list[str] = []
        current = script
        while i < len(words) and words[i] not in SEPARATORS:
            word = words[i]
            if word == "--":
                if Path(current).name != "run_pipeline.sh":
                    break
                # run_pipeline.sh passes what follows `--` to 03_train.py.
                found.append((current, flags))
                current, flags = "03_train.py", []
            elif word.startswith("--"):
                flags.append(word.split("=", 1)[0])
            i += 1
        found.append((current, flags))
    return found


def doc_commands() -> list[tuple[str, str, list[str]]]:
    """(document, script, flags) for every command in README.md and docs/*.md."""
    out = []
    for doc in DOCS:
        for line, inline in code_snippets(read(doc)):
            for script, flags in commands(line, inline):
                out.append((rel(doc), script, flags))
    return out


def run_help(script: str) -> str:
    if script.endswith(".sh"):
        # Only a shell script that handles --help itself may be run with it.
        if "--help" not in read(ROOT / script):
            return ""
        argv = ["bash", script, "--help"]
    else:
        argv = [sys.executable, script, "--help"]
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{' '.join(argv)} failed:\n{result.stderr[-2000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def helps() -> dict[str, set[str]]:
    """The flags in the --help of each script shown with flags; one subprocess per script,
    in parallel, the slowest (app.py imports gradio) first."""
    scripts = sorted({script for _, script, flags in doc_commands()
                      if flags and (ROOT / script).is_file()},
                     key=lambda name: (name != "app.py", name))
    with ThreadPoolExecutor(max_workers=4) as pool:
        texts = dict(zip(scripts, pool.map(run_help, scripts), strict=True))
    return {script: set(HELP_FLAG_RE.findall(text)) for script, text in texts.items()}


# ---------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------


def test_the_documents_exist():
    names = {rel(d) for d in DOCS}
    for doc in ("README.md", "docs/QUICKSTART.md", "docs/ARCHITECTURE.md", "docs/EXAMPLES.md",
                "docs/SUBMISSION.md", "docs/TROUBLESHOOTING.md", "docs/EVALUATION.md",
                "docs/PROJECT_SUMMARY.md", "docs/QUICK_RUN.md"):
        assert doc in names, f"{doc} is missing"


def test_every_named_script_exists():
    missing = []
    for doc in DOCS:
        for name in set(SCRIPT_RE.findall(read(doc))):
            if "/" in name:
                ok = (ROOT / name).is_file()
            else:  # a bare name: anywhere in the repository
                ok = any(p for p in ROOT.rglob(name)
                         if ".venv" not in p.parts and ".git" not in p.parts)
            if not ok:
                missing.append(f"{rel(doc)}: {name}")
    assert not missing, "documents name files that do not exist:\n" + "\n".join(missing)


def test_the_command_parser_sees_the_commands():
    """Guards the parser itself: the main commands of the course are found with their flags."""
    found = {(script, tuple(flags)) for _, script, flags in doc_commands()}
    assert ("run_pipeline.sh", ("--quick",)) in found
    assert any(s == "03_train.py" and "--preset" in f for s, f in found)
    assert any(s == "app.py" for s, _ in found)
    assert commands("config.py   presets; `python config.py` prints sizes") == []
    assert commands("03_train.py --resume", inline=True) == [("03_train.py", ["--resume"])]
    assert commands("bash run_pipeline.sh --quick -- --batch-size 8 # note --x") == [
        ("run_pipeline.sh", ["--quick"]), ("03_train.py", ["--batch-size"])]
    assert commands("torchrun --standalone --nproc_per_node=2 03_train.py --preset tiny") == [
        ("03_train.py", ["--preset"])]


def test_every_documented_flag_is_in_the_scripts_help(helps):
    wrong = []
    for doc, script, flags in doc_commands():
        if not flags:
            continue
        if script not in helps:
            wrong.append(f"{doc}: {script} does not exist")
            continue
        wrong += [f"{doc}: {script} {flag}" for flag in flags if flag not in helps[script]]
    assert not wrong, "flags shown in the docs that the scripts do not have:\n" + "\n".join(
        sorted(set(wrong)))


def anchors(doc: Path) -> set[str]:
    """GitHub's anchors of a document's headings: lower case, punctuation dropped, - for space."""
    text = FENCE_RE.sub("", read(doc))
    slugs = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        n, candidate = 0, slug
        while candidate in slugs:  # repeated headings get -1, -2, …
            n += 1
            candidate = f"{slug}-{n}"
        slugs.add(candidate)
    return slugs


def test_every_relative_link_resolves():
    broken = []
    for doc in DOCS:
        for target in LINK_RE.findall(read(doc)):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):
                continue  # a URL
            file_part, _, fragment = target.partition("#")
            path = (doc.parent / file_part).resolve() if file_part else doc
            if not path.exists():
                broken.append(f"{rel(doc)}: {target}")
            elif fragment and path.suffix == ".md" and fragment not in anchors(path):
                broken.append(f"{rel(doc)}: {target} (no such heading)")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_architecture_param_table_is_config_param_table():
    text = read(ROOT / "docs" / "ARCHITECTURE.md")
    assert PARAM_START in text and PARAM_END in text
    table = text.split(PARAM_START, 1)[1].split(PARAM_END, 1)[0].strip("\n")
    assert table == config.param_table(), (
        "docs/ARCHITECTURE.md's parameter table is stale: paste the output of "
        "`python config.py --markdown` between the param-table markers")


def test_readme_shows_the_ci_test_command():
    ci_lines = [line.strip() for line in read(ROOT / ".ci" / "run").splitlines()
                if line.strip() and not line.strip().startswith("#")]
    ci_command = ci_lines[-1]
    assert ci_command == "bash run_tests.sh"
    readme_lines = [line.strip() for block in FENCE_RE.finditer(read(ROOT / "README.md"))
                    for line in block.group(2).splitlines()]
    assert ci_command in readme_lines, f"README.md should show `{ci_command}` in a code block"


def test_examples_state_corpus_preset_and_iterations():
    text = read(ROOT / "docs" / "EXAMPLES.md")
    assert "scripts/make_examples.py" in text
    preset = re.search(r"preset \*\*(\w+)\*\*", text)
    assert preset and preset.group(1) in config.PRESETS, "EXAMPLES.md names no preset"
    assert re.search(r"\*\*[\d,]+ iterations\*\*", text), "EXAMPLES.md states no iterations"
    assert re.search(r"corpus: \S", text), "EXAMPLES.md names no corpus"


def test_readme_layout_names_every_script():
    readme = read(ROOT / "README.md")
    scripts = [p for pattern in ("*.py", "*.sh", "*.ipynb", "scripts/*", ".ci/*")
               for p in ROOT.glob(pattern) if p.is_file()]
    missing = [rel(p) for p in scripts if rel(p) not in readme]
    assert not missing, "README.md's layout does not list: " + ", ".join(sorted(missing))


def test_project_summary_states_its_source_and_figures():
    text = read(ROOT / "docs" / "PROJECT_SUMMARY.md")
    assert "Written by scripts/make_summary.py" in text
    assert re.search(r"preset \*\*(\w+)\*\*", text)
    assert re.search(r"\*\*[\d,]+ iterations\*\*", text)
    assert "corpus: " in text and "trained on " in text
    assert "python scripts/make_summary.py --checkpoint" in text


def test_generated_docs_come_from_the_checkpoint(tiny_checkpoint, tmp_path):
    """make_examples.py and make_summary.py on the session's checkpoint: their figures are
    the checkpoint's."""
    import torch

    from conftest import load_script

    paths = ["--checkpoint", str(tiny_checkpoint.checkpoint), "--tokenizer",
             str(tiny_checkpoint.tokenizer_dir), "--data-dir", str(tiny_checkpoint.data_dir)]
    assert load_script("scripts/make_examples.py").main(
        [*paths, "--out", str(tmp_path / "examples.md"), "--val-lines", "50"]) == 0
    assert load_script("scripts/make_summary.py").main(
        [*paths, "--out", str(tmp_path / "summary.md")]) == 0
    ckpt = torch.load(tiny_checkpoint.checkpoint, map_location="cpu", weights_only=True)
    examples, summary = read(tmp_path / "examples.md"), read(tmp_path / "summary.md")
    for text in (examples, summary):
        assert f"**{ckpt['iter']:,} iterations**" in text
    assert f"| val loss / perplexity | {ckpt['best_val_loss']:.4f} nats per token" in summary
    for item in ("Trained from scratch", "Decoder-only transformer", "Context ≥ 256 tokens",
                 "Low-resource language", "Adequate generation", "beats the n-gram baseline"):
        assert item in summary
    assert "## What works well" in summary and "## What to improve" in summary
