"""quick_test.py run as a student runs it, on the session's tiny checkpoint."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, load_script

ROWS = [
    "Trained from scratch", "Decoder-only transformer", "Context ≥ 256 tokens",
    "Low-resource language", "Adequate generation", "rotary position embeddings",
    "mixed precision", "gradient checkpointing", "FlashAttention", "Apple MPS autodetection",
    "architecture presets", "beats the n-gram baseline",
]


def run_quick_test(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "quick_test.py"), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def checklist_run(tiny_checkpoint):
    evaluate = load_script("04_evaluate.py")
    assert evaluate.main(["--checkpoint", str(tiny_checkpoint.checkpoint), "--tokenizer",
                          str(tiny_checkpoint.tokenizer_dir), "--data-dir",
                          str(tiny_checkpoint.data_dir), "--device", "cpu"]) == 0
    return run_quick_test("--checkpoint", str(tiny_checkpoint.checkpoint),
                          "--tokenizer", str(tiny_checkpoint.tokenizer_dir),
                          "--data-dir", str(tiny_checkpoint.data_dir), "--checklist")


def test_checklist_passes_and_prints_every_row(checklist_run, tiny_checkpoint):
    out = checklist_run.stdout
    assert checklist_run.returncode == 0, out + checklist_run.stderr
    table = out[out.index("Grading checklist"):]
    ev = json.loads((tiny_checkpoint.out_dir / "eval.json").read_text(encoding="utf-8"))
    for row in ROWS:
        line = next((ln for ln in table.splitlines() if row in ln), None)
        assert line is not None, f"row {row!r} missing"
        # This checkpoint trained 100 steps: whether it beats the n-gram is eval.json's to say.
        expected = ev["beats_ngram_bpc"] if row == "beats the n-gram baseline" else True
        assert line.startswith("| ✅" if expected else "| ❌"), line
    assert "required: 5/5 passed" in out


def test_the_mixed_precision_row_checks_the_path_and_reports_the_checkpoint(checklist_run,
                                                                             tiny_checkpoint):
    line = next(ln for ln in checklist_run.stdout.splitlines() if "mixed precision" in ln)
    ckpt = torch.load(tiny_checkpoint.checkpoint, map_location="cpu", weights_only=True)
    assert "bfloat16 autocast on cpu" in line and "gradient cosine" in line
    assert f"this checkpoint was trained in {ckpt['dtype']}" in line


def test_model_card_samples_and_perplexity_are_printed(checklist_run, tiny_checkpoint):
    out = checklist_run.stdout
    assert "preset               tiny" in out
    assert "context              256 tokens" in out
    for prompt in ["Казан шәһәре", "Татарстан", "Габдулла Тукай", "Мин татарча", "Яз көне"]:
        assert f"«{prompt}»" in out
        for t in ("0.3", "0.8", "1.2"):
            assert f"  T={t}: {prompt}" in out
    first_val = (tiny_checkpoint.data_dir / "processed" / "val.txt").read_text(
        encoding="utf-8").splitlines()[0]
    assert first_val[:70] in out
    assert "all 5 together: perplexity" in out


def test_same_seed_same_samples(tiny_checkpoint, checklist_run):
    again = run_quick_test("--checkpoint", str(tiny_checkpoint.checkpoint),
                           "--tokenizer", str(tiny_checkpoint.tokenizer_dir),
                           "--data-dir", str(tiny_checkpoint.data_dir))
    assert again.returncode == 0
    samples = checklist_run.stdout[checklist_run.stdout.index("Samples"):
                                   checklist_run.stdout.index("Held-out")]
    assert samples in again.stdout


def test_missing_training_log_fails_a_required_item(tiny_checkpoint, tmp_path):
    lonely = tmp_path / "best_model.pt"
    shutil.copy(tiny_checkpoint.checkpoint, lonely)  # no train_log.jsonl beside it
    run = run_quick_test("--checkpoint", str(lonely), "--tokenizer",
                         str(tiny_checkpoint.tokenizer_dir), "--data-dir",
                         str(tiny_checkpoint.data_dir), "--checklist")
    assert run.returncode == 1
    assert "| ❌ | Trained from scratch" in run.stdout


@pytest.mark.parametrize("problem", ["max-new-tokens", "val-not-utf8", "tokenizer"])
def test_bad_inputs_get_one_message(tiny_checkpoint, tmp_path, problem):
    args = ["--checkpoint", str(tiny_checkpoint.checkpoint), "--tokenizer",
            str(tiny_checkpoint.tokenizer_dir), "--data-dir", str(tiny_checkpoint.data_dir)]
    if problem == "max-new-tokens":
        args += ["--max-new-tokens", "-1"]
        expect = "--max-new-tokens and --val-sentences must be 0 or more"
    elif problem == "val-not-utf8":
        (tmp_path / "processed").mkdir()
        (tmp_path / "processed" / "val.txt").write_bytes("Казан\n".encode("cp1251"))
        args[-1] = str(tmp_path)
        expect = "val.txt is not UTF-8 text"
    else:
        (tmp_path / "tokenizer.json").write_text("{ not json")
        args[3] = str(tmp_path)
        expect = "tokenizer.json is damaged"
    run = run_quick_test(*args)
    assert run.returncode == 2 and expect in run.stderr
    assert "Traceback" not in run.stderr


def test_without_checkpoint_one_clear_message_and_exit_2(tmp_path):
    run = run_quick_test("--checkpoint", str(tmp_path / "none.pt"))
    assert run.returncode == 2
    assert "no checkpoint at" in run.stderr and "python 03_train.py" in run.stderr
    assert "Traceback" not in run.stderr


def test_the_chat_row_asks_the_fine_tuned_model(tiny_chat, tmp_path):
    quick_test = load_script("quick_test.py")
    import utils

    tok = utils.load_tokenizer(tiny_chat.tokenizer_dir)
    row = quick_test.check_chat(tiny_chat.checkpoint, tok, torch.device("cpu"))
    assert not row.required and row.item.startswith("Bonus: fine-tuned to answer")
    assert "answers end with <|end|>" in row.evidence and "chat_model.pt" in row.evidence
    ended = int(row.evidence.split(": ", 1)[1].split("/")[0])
    assert not row.ok or ended == 4  # passing needs every answer to end its turn
    missing = quick_test.check_chat(tmp_path / "best_model.pt", tok, torch.device("cpu"))
    assert not missing.ok and "python 05_finetune.py" in missing.evidence
