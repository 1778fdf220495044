"""demo_inference.ipynb: runs top to bottom on the tiny checkpoint, is stored clean, and says
what to do when there is no checkpoint.

The notebook is executed by a real Jupyter kernel through nbclient, as a student would run it;
the kernel inherits the TATARGPT_* environment variables set here.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

import config
import utils

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "demo_inference.ipynb"
NB_TOKENS = 40  # greedy tokens of the KV-cache cell: enough to time, short enough to be quick


def execute(nb: nbformat.NotebookNode) -> None:
    """Run every cell in order in a fresh python3 kernel started in the repository root."""
    NotebookClient(nb, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(ROOT)}}).execute()


def code_cell(nb: nbformat.NotebookNode, snippet: str) -> nbformat.NotebookNode:
    """The first code cell whose source contains `snippet`."""
    for cell in nb.cells:
        if cell.cell_type == "code" and snippet in cell.source:
            return cell
    raise AssertionError(f"no code cell contains {snippet!r}")


def text_of(cell: nbformat.NotebookNode) -> str:
    """Everything a cell printed or displayed as plain text."""
    parts = []
    for out in cell.outputs:
        if out.output_type == "stream":
            parts.append(out.text)
        elif "data" in out and "text/plain" in out.data:
            parts.append(out.data["text/plain"] + "\n")
    return "".join(parts)


@pytest.fixture(scope="module")
def executed(tiny_checkpoint, tiny_chat) -> nbformat.NotebookNode:
    """The notebook after a full run on the session's tiny checkpoint (with its fine-tuned
    chat_model.pt beside it)."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TATARGPT_CHECKPOINT", str(tiny_checkpoint.checkpoint))
        mp.setenv("TATARGPT_TOKENIZER", str(tiny_checkpoint.tokenizer_dir))
        mp.setenv("TATARGPT_VAL", str(tiny_checkpoint.data_dir / "processed" / "val.txt"))
        mp.setenv("TATARGPT_NB_TOKENS", str(NB_TOKENS))
        # One thread: on a busy 2-core runner, torch's thread pool fighting other processes
        # made this run several times slower, and the tiny model gains nothing from threads.
        mp.setenv("OMP_NUM_THREADS", "1")
        execute(nb)  # raises CellExecutionError, with the cell and its traceback, on any error
    return nb


def test_every_cell_runs(executed):
    code = [c for c in executed.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    card = text_of(code_cell(executed, "utils.model_card"))
    assert re.search(r"preset: tiny", card) and re.search(r"parameters: [\d,]+", card)
    tokens = text_of(code_cell(executed, "decode(encode(text)) == text"))
    assert "decode(encode(text)) == text: True" in tokens


def test_generation_cells_print_every_prompt(executed):
    out = text_of(code_cell(executed, "for prompt in prompts:"))
    for prompt in ("«Казан —»", "«Казан шәһәре»", "«Татарстанның башкаласы Казан»"):
        assert prompt in out
    greedy = text_of(code_cell(executed, "greedy twice gives the same text"))
    assert "greedy twice gives the same text: True" in greedy
    assert len(re.findall(r"seed \d: Бүген һава", greedy)) == 3


def test_perplexity_table(executed, tiny_checkpoint):
    out = text_of(code_cell(executed, "natural word order wins"))
    rows = [re.split(r"\s{2,}", line.strip()) for line in out.splitlines()
            if re.match(r"\d+\s+(natural|shuffled)\s", line)]
    naturals = {r[0]: r for r in rows if r[1] == "natural"}
    shuffles = {r[0]: r for r in rows if r[1] == "shuffled"}
    assert len(naturals) >= 8 and naturals.keys() == shuffles.keys()
    for pair, nat in naturals.items():
        shuf = shuffles[pair]
        assert sorted(nat[2].split()) == sorted(shuf[2].split()) and nat[2] != shuf[2]
        for row in (nat, shuf):
            assert float(row[3]) > 1 and 0 < float(row[4]) < 20
    wins = re.search(r"natural word order wins in (\d+) of (\d+) pairs", out)
    assert wins and int(wins[2]) == len(naturals) and 0 <= int(wins[1]) <= int(wins[2])

    # The kernel's numbers are the ones utils computes for the same model and sentence.
    model, _ = utils.load_model(tiny_checkpoint.checkpoint, device="cpu")
    tok = utils.load_tokenizer(tiny_checkpoint.tokenizer_dir)
    first = naturals["1"]
    assert math.isclose(float(first[3]), utils.perplexity(model, tok, first[2]), rel_tol=1e-3)
    assert math.isclose(float(first[4]), utils.bits_per_char(model, tok, first[2]),
                        abs_tol=1e-3)


@pytest.mark.parametrize("snippet", ["train_log.jsonl", "model.attention_maps"])
def test_figures_are_png_images(executed, snippet):
    images = [o.data["image/png"] for o in code_cell(executed, snippet).outputs
              if "data" in o and "image/png" in o.data]
    assert len(images) == 1 and len(images[0]) > 10_000  # base64 of a real plot, not a blank


def test_kv_cache_cell(executed):
    out = text_of(code_cell(executed, "use_cache=use_cache"))
    assert f"greedy generation of {NB_TOKENS} tokens" in out
    assert "same tokens with and without the cache: True" in out
    rates = [float(x) for x in re.findall(r"\(\s*([\d.]+) tokens/s\)", out)]
    speedup = re.search(r"speed-up: ([\d.]+)×", out)
    assert len(rates) == 2 and all(r > 0 for r in rates)
    assert speedup and float(speedup[1]) > 0


def test_notebook_is_stored_clean():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert set(nb.metadata) <= {"kernelspec", "language_info"}
    assert nb.metadata.kernelspec.name == "python3"
    for cell in nb.cells:
        assert "widgets" not in cell.metadata
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]


def test_missing_checkpoint_gives_one_line_message(tmp_path, monkeypatch):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    load = code_cell(nb, "utils.load_model")
    nb.cells = nb.cells[: nb.cells.index(load) + 1]  # only the setup cells
    monkeypatch.setenv("TATARGPT_CHECKPOINT", str(tmp_path / "models" / "best_model.pt"))
    monkeypatch.setenv("TATARGPT_TOKENIZER", str(tmp_path / "tokenizer"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    with pytest.raises(CellExecutionError):
        execute(nb)
    load = nb.cells[-1]
    errors = [o for o in load.outputs if o.output_type == "error"]
    assert len(errors) == 1 and errors[0].ename == "SetupError"
    assert errors[0].traceback == [
        f"SetupError: no checkpoint at {tmp_path / 'models' / 'best_model.pt'}: "
        f"run `bash run_pipeline.sh --quick` first"
    ]
    assert "bash run_pipeline.sh --quick" in text_of(load)
    earlier = [c for c in nb.cells[:-1] if c.cell_type == "code"]
    assert not [o for c in earlier for o in c.outputs if o.output_type == "error"]


def test_baseline_section_compares_with_the_ngram(executed, tiny_checkpoint):
    import ngram

    out = text_of(code_cell(executed, "ngram.CharNgram(6)"))
    gpt = re.search(r"GPT\s+([\d.]+) bits per character", out)
    base = re.search(r"6-gram Kneser-Ney baseline ([\d.]+) bits per character", out)
    assert gpt and base, out
    processed = tiny_checkpoint.data_dir / "processed"
    train = [s for s in (processed / "train.txt").read_text(encoding="utf-8").splitlines() if s]
    val = [s for s in (processed / "val.txt").read_text(encoding="utf-8").splitlines() if s][:300]
    assert float(base[1]) == pytest.approx(ngram.CharNgram(6).fit(train).bits_per_char(val),
                                           abs=1e-3)
    model, _ = utils.load_model(tiny_checkpoint.checkpoint)
    tok = utils.load_tokenizer(tiny_checkpoint.tokenizer_dir)
    assert float(gpt[1]) == pytest.approx(utils.bits_per_char(model, tok, val), abs=1e-3)
    verdict = "beats" if float(gpt[1]) < float(base[1]) else "does not beat"
    assert f"the GPT {verdict} the n-gram" in out

    pairs = text_of(code_cell(executed, "tatar_text.minimal_pairs"))
    known = re.search(r"harmony pairs known: GPT (\d+)%, n-gram (\d+)% of (\d+) pairs", pairs)
    assert known and int(known[3]) >= 50
    assert len(re.findall(r" → ", pairs)) == 8  # the table of pairs


def test_chat_section_answers_the_course_prompts(executed):
    cells = [c for c in executed.cells if c.cell_type == "code"]
    template = next(text_of(c) for c in cells if "render_prompt" in "".join(c.source))
    assert template.startswith("<bos> <|user|> ")
    assert template.count("<|end|> <|assistant|>") == 2 and template.count("<|user|>") == 2
    assert template.rstrip().endswith("<|end|> <|assistant|>")
    out = next(text_of(c) for c in cells if "CHAT_PATH" in "".join(c.source))
    assert "chat_model.pt: full" in out
    for question in config.CHAT_PROMPTS:
        assert f"👤 {question}\n🤖 " in out
    assert "👤 Ә җәен?" in out
