"""run_pipeline.sh end to end, in a temporary copy of the repository, as a student runs it."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import config
from conftest import ROOT

FLAGS = ["--quick", "--text-file", "--preset", "--corpus", "--device", "--max-iters",
         "--time-budget", "--from-stage", "--only-stage", "--finetune-iters", "--force", "--help"]
ARTIFACTS = [
    "data/processed/train.txt", "data/processed/val.txt", "data/processed/stats.json",
    "data/processed/train.bin", "data/processed/val.bin", "data/processed/meta.json",
    "tokenizer/tokenizer.json", "tokenizer/tokenizer_config.json",
    "models/best_model.pt", "models/last.pt", "models/train_log.jsonl", "models/loss_curve.png",
    "models/eval.json", "models/eval.png", "models/chat_model.pt", "models/chat_log.jsonl",
]
STAGES = ("stage 1 (data)", "stage 2 (tokenizer)", "stage 3 (training)", "stage 4 (evaluation)",
          "stage 5 (fine-tuning)", "stage 6 (checklist)")


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens: the download fails at once, like offline."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/corpora/"


def repo_copy(dest: Path) -> Path:
    """The files a fresh clone has (tracked and not ignored), and this test's virtualenv."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.splitlines()
    for name in files:
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    (dest / ".venv").symlink_to(Path(sys.prefix))
    return dest


def pipeline(repo: Path, *args: str, env: dict | None = None,
             no_compile: bool = False) -> subprocess.CompletedProcess:
    """bash run_pipeline.sh ARGS in `repo`. The quick run compiles the model (half a minute the
    first time): only the test of the default run does; the others train with no_compile."""
    if no_compile:
        args = (*args, "--no-compile") if "--" in args else (*args, "--", "--no-compile")
    return subprocess.run(["bash", "run_pipeline.sh", *args], cwd=repo, capture_output=True,
                          text=True, timeout=900, env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    return repo_copy(tmp_path_factory.mktemp("clone"))


def test_unknown_flag_exits_2_with_usage(repo):
    run = pipeline(repo, "--no-such-flag")
    assert run.returncode == 2
    assert "unknown flag: --no-such-flag" in run.stderr and "Usage:" in run.stderr


def test_help_lists_every_flag(repo):
    run = pipeline(repo, "--help")
    assert run.returncode == 0
    for flag in FLAGS:
        assert flag in run.stdout, flag


@pytest.mark.parametrize("args, message", [
    (["--max-iters", "ten"], "--max-iters needs a positive whole number"),
    (["--only-stage", "7"], "stages are numbered 1 to 6"),
    (["--max-iters"], "--max-iters needs a value"),
    (["--time-budget", "0"], "--time-budget needs a positive number"),
    (["--device", "tpu"], "--device must be auto, cpu, cuda or mps"),
    (["--corpus", "tatar"], "'tatar' is not a Leipzig corpus name"),
    (["--text-file", "no/such.txt"], "--text-file no/such.txt: no such file"),
    (["--preset", "nonexistent"], "unknown preset 'nonexistent'; choose one of: tiny small"),
])
def test_bad_flags_are_refused_before_any_stage(tmp_path, args, message):
    repo = repo_copy(tmp_path)
    run = pipeline(repo, *args)
    assert run.returncode == 2
    assert message in run.stderr and "Traceback" not in run.stderr
    assert "stage 1" not in run.stdout and not (repo / "data" / "processed").exists()


QUICK_TEST_ITERS = "200"  # the suite's shortened quick run; the full one is in the notes
FINETUNE_TEST_ITERS = "30"  # and its shortened fine-tune


def quick_model_ok(out: str) -> None:
    """What even a shortened quick run must show: the checklist passes, the n-gram comparison
    is reported, and no sample falls into a loop of one word."""
    assert "required: 5/5 passed" in out, out[-3000:]
    assert "Bonus: beats the n-gram baseline (val bpc)" in out
    assert "Bonus: fine-tuned to answer (SFT, 05_finetune.py)" in out
    samples = out[out.index("Samples ("):out.index("Held-out sentences")]
    for line in samples.splitlines():
        words = line.split()
        assert not any(words[i] == words[i + 1] == words[i + 2] for i in range(len(words) - 2)), \
            line


@pytest.mark.slow
def test_offline_default_run_then_skip_then_guard(repo):
    offline = {"LEIPZIG_BASE_URL": closed_port_url()}

    # 1. No flags but a shorter training, no network: falls back to the sample and the quick
    #    settings and ends green. (Whether the full quick run beats its n-gram baseline is
    #    measured by scripts/sweep_quick.py: minutes, not a test.)
    first = pipeline(repo, "--max-iters", QUICK_TEST_ITERS, "--finetune-iters",
                     FINETUNE_TEST_ITERS, env=offline)
    out = first.stdout
    assert first.returncode == 0, out[-4000:] + first.stderr[-4000:]
    assert "could not be downloaded" in out and "quick settings" in out
    # ... and compiles the model (config.QUICK_RUN), or says why it could not.
    assert "compiling the model with torch.compile" in out
    for name in ARTIFACTS:
        assert (repo / name).is_file(), name
    quick_model_ok(out)
    preset = config.QUICK_RUN["preset"]
    assert f"03_train.py --preset {preset}" in out
    for stage in STAGES:
        assert stage in out
    assert f"checkpoint: models/best_model.pt (preset {preset}, iteration" in out
    assert "val.txt bits per char: GPT" in out
    assert "http://localhost:7860" in out
    checkpoint_time = (repo / "models/best_model.pt").stat().st_mtime_ns

    # 2. The same command again: every stage is up to date and skipped.
    second = pipeline(repo, "--max-iters", QUICK_TEST_ITERS, "--finetune-iters",
                      FINETUNE_TEST_ITERS, env=offline)
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stdout.count("up to date:") == 4
    assert (repo / "models/best_model.pt").stat().st_mtime_ns == checkpoint_time
    assert "required: 5/5 passed" in second.stdout

    # 3. Another corpus would take the trained model's tokenizer away: refused, all kept.
    text = repo / "mine.txt"
    text.write_text("\n".join((repo / "data/sample/tales_fables.txt").read_text(
        encoding="utf-8").splitlines()[:400]) + "\n", encoding="utf-8")
    before = {p: p.read_bytes() for p in (repo / "models").iterdir() if p.is_file()}
    third = pipeline(repo, "--quick", "--text-file", str(text))
    assert third.returncode == 2
    assert "models/ holds a trained model" in third.stderr and "--force" in third.stderr
    assert {p: p.read_bytes() for p in (repo / "models").iterdir() if p.is_file()} == before


@pytest.fixture(scope="module")
def text_file_run(repo, tmp_path_factory) -> dict:
    """The quick settings on a text file of one's own, through every stage, replacing the
    model already in models/ (--force); what the run wrote, read right after it."""
    text = tmp_path_factory.mktemp("text") / "mine.txt"
    lines = (repo / "data/sample/stories_village.txt").read_text(encoding="utf-8").splitlines()
    text.write_text("\n".join(lines) + "\n", encoding="utf-8")
    run = pipeline(repo, "--quick", "--text-file", str(text), "--force", "--max-iters", "100",
                   "--finetune-iters", "20", no_compile=True)
    return {"text": text, "lines": lines, "run": run,
            "stats": json.loads((repo / "data/processed/stats.json").read_text(encoding="utf-8")),
            "last": torch.load(repo / "models/last.pt", weights_only=True)}


@pytest.mark.slow
def test_own_text_file_through_every_stage_with_force(text_file_run):
    run, stats, ckpt = text_file_run["run"], text_file_run["stats"], text_file_run["last"]
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert [s["kind"] for s in stats["sources"]] == ["text-file"]
    assert stats["input_lines"] == len(text_file_run["lines"])
    assert ckpt["iter"] == 100 and ckpt["data_stats"]["sources"][0]["name"] == "mine.txt"
    assert "models/ holds an earlier model" in run.stdout  # --force: replaced, once trained


@pytest.mark.slow
def test_unfinished_training_resumes_on_rerun(repo, text_file_run):
    """Training that stopped before max-iters continues from models/last.pt on the next run:
    the text-file run above trained 100 iterations; asked for 110, the rerun goes on."""
    assert text_file_run["run"].returncode == 0
    rerun = pipeline(repo, "--quick", "--text-file", str(text_file_run["text"]), "--max-iters",
                     "110", "--only-stage", "3", no_compile=True)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "resuming from models/last.pt" in rerun.stdout
    ckpt = torch.load(repo / "models/last.pt", weights_only=True)
    assert ckpt["iter"] == 110
    rows = [json.loads(line) for line in (repo / "models/train_log.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in rows if r["type"] == "eval"][0] == 0  # one log, continued


@pytest.mark.slow
def test_ctrl_c_under_force_says_how_to_really_continue(repo):
    proc = subprocess.Popen(["bash", "run_pipeline.sh", "--quick", "--force", "--max-iters",
                             "100000", "--only-stage", "3", "--", "--eval-interval", "5",
                             "--no-compile"],
                            cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    log = repo / "models" / "train_log.jsonl"
    old_log = log.stat().st_ino if log.is_file() else None
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # until the new run's log has replaced the old one
        try:
            new_log = log.stat().st_ino != old_log and sum(
                '"eval"' in r for r in log.read_text().splitlines()) >= 2
        except FileNotFoundError:
            new_log = False
        if new_log and not (repo / "models/.incoming").exists():
            break
        time.sleep(0.3)
    else:
        pytest.fail("the new run never replaced models/train_log.jsonl")
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the terminal: the whole process group
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "WITHOUT --force" in err
    again = next(line.strip() for line in err.splitlines()
                 if line.strip().startswith("bash run_pipeline.sh"))
    assert "--force" not in again
    saved = torch.load(repo / "models/last.pt", weights_only=True)["iter"]
    rerun = subprocess.run(shlex.split(again)[:-4] + ["--max-iters", str(saved + 5), "--",
                                                      "--no-compile"], cwd=repo,
                           capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "resuming from models/last.pt" in rerun.stdout


@pytest.mark.slow
def test_time_budget_without_preset_lets_training_choose(repo):
    """--time-budget is for the whole pipeline: training gets what is left after a reserve
    for stages 4-6, and without --preset 03_train.py chooses the model size."""
    run = pipeline(repo, "--time-budget", "1.2", "--only-stage", "3", "--force", "--",
                   "--block-size", "32", "--batch-size", "4", "--eval-iters", "2")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    split = re.search(r"time budget 1.2 min for the whole pipeline: \d+ s spent so far, "
                      r"1.0 min kept for stages 4-6, ([\d.]+) min for training", run.stdout)
    assert split, run.stdout[-3000:]
    train_minutes = float(split[1])
    assert 0.1 <= train_minutes <= 0.2
    assert f"03_train.py --device auto --time-budget {split[1]} " in run.stdout  # no --preset
    assert re.search(rf"time budget {train_minutes:g} min: preset tiny \(", run.stdout)
    assert torch.load(repo / "models/last.pt", weights_only=True)["train_config"]["preset"] \
        == "tiny"


def test_checklist_stage_without_checkpoint_fails_clearly(tmp_path):
    repo = repo_copy(tmp_path)
    run = pipeline(repo, "--only-stage", "6")
    assert run.returncode == 2
    assert "no checkpoint at models/best_model.pt" in run.stderr


def test_gpu_check_without_a_gpu_says_so_and_passes():
    env = {**os.environ, "TATARGPT_PYTHON": sys.executable}
    run = subprocess.run(["bash", "scripts/gpu_check.sh"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, env=env)
    assert run.returncode == 0
    assert "No CUDA GPU is visible" in run.stdout and "✅" not in run.stdout


@pytest.mark.slow
def test_gpu_check_runs_its_checks_on_a_cpu(tmp_path):
    """The GPU script cannot run here, but its logic can: every check on the CPU, shortened."""
    env = {**os.environ, "TATARGPT_PYTHON": sys.executable, "GPU_CHECK_OUT": str(tmp_path)}
    # 100 iterations keep the checklist's perplexity well under its limit (vocabulary / 10);
    # the fine-tune's 10 steps check that stage 5 runs, not how well it teaches.
    run = subprocess.run(["bash", "scripts/gpu_check.sh", "--device", "cpu", "--iters", "100",
                          "--finetune-iters", "10"],
                         cwd=ROOT, capture_output=True, text=True, timeout=900, env=env)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    lines = run.stdout.splitlines()
    for n in (1, 3, 4, 5, 6):
        assert any(line.startswith(f"✅ {n} ") for line in lines), run.stdout
    assert any(line.startswith("–  2 fp16") and "skipped" in line for line in lines)
    assert "fine-tune: 10 steps" in (tmp_path / "pipeline.log").read_text()
    bench = json.loads((tmp_path / "bench.json").read_text())
    assert bench["machine"]["device"] == "cpu" and bench["loop"]["tokens_per_s"] > 0
