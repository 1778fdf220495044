"""run_pipeline.sh end to end, in a temporary copy of the repository, as a student runs it."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import ROOT

FLAGS = ["--quick", "--preset", "--corpus", "--device", "--max-iters", "--from-stage",
         "--only-stage", "--force", "--help"]
ARTIFACTS = [
    "data/processed/train.txt", "data/processed/val.txt", "data/processed/stats.json",
    "data/processed/train.bin", "data/processed/val.bin", "data/processed/meta.json",
    "tokenizer/tokenizer.json", "tokenizer/tokenizer_config.json",
    "models/best_model.pt", "models/last.pt", "models/train_log.jsonl", "models/loss_curve.png",
]


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


def pipeline(repo: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
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


def test_bad_flag_values_exit_2(repo):
    assert pipeline(repo, "--max-iters", "ten").returncode == 2
    assert pipeline(repo, "--only-stage", "7").returncode == 2
    assert pipeline(repo, "--max-iters").returncode == 2


@pytest.mark.slow
def test_offline_default_run_then_skip_then_force(repo):
    offline = {"LEIPZIG_BASE_URL": closed_port_url()}

    # 1. No flags, no network: falls back to the sample and the quick settings, ends green.
    first = pipeline(repo, "--max-iters", "100", env=offline)
    out = first.stdout
    assert first.returncode == 0, out[-4000:] + first.stderr[-4000:]
    assert "could not be downloaded" in out and "quick settings" in out
    for name in ARTIFACTS:
        assert (repo / name).is_file(), name
    assert "required: 5/5 passed" in out
    assert "03_train.py --preset tiny" in out
    for stage in ("stage 1 (data)", "stage 2 (tokenizer)", "stage 3 (training)",
                  "stage 4 (checklist)"):
        assert stage in out
    assert "checkpoint: models/best_model.pt (preset tiny, iteration" in out
    assert torch.load(repo / "models/last.pt", weights_only=True)["iter"] == 100
    assert "http://localhost:7860" in out
    checkpoint_time = (repo / "models/best_model.pt").stat().st_mtime_ns

    # 2. The same command again: every stage is up to date and skipped.
    second = pipeline(repo, "--max-iters", "100", env=offline)
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stdout.count("up to date:") == 3
    assert (repo / "models/best_model.pt").stat().st_mtime_ns == checkpoint_time
    assert "required: 5/5 passed" in second.stdout

    # 3. --force redoes every stage, training included.
    third = pipeline(repo, "--quick", "--force", "--max-iters", "100")
    assert third.returncode == 0, third.stderr[-3000:]
    assert "up to date:" not in third.stdout
    assert (repo / "models/best_model.pt").stat().st_mtime_ns != checkpoint_time
    assert "required: 5/5 passed" in third.stdout


@pytest.mark.slow
def test_unfinished_training_resumes_on_rerun(repo):
    """Training that stopped before max-iters continues from models/last.pt on the next run."""
    for stage in ("1", "2"):
        assert pipeline(repo, "--quick", "--force", "--only-stage", stage).returncode == 0
    assert pipeline(repo, "--quick", "--force", "--max-iters", "20",
                    "--only-stage", "3").returncode == 0
    rerun = pipeline(repo, "--quick", "--max-iters", "40", "--only-stage", "3")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "resuming from models/last.pt" in rerun.stdout
    ckpt = torch.load(repo / "models/last.pt", weights_only=True)
    assert ckpt["iter"] == 40
    rows = [json.loads(line) for line in (repo / "models/train_log.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in rows if r["type"] == "eval"][0] == 0  # one log, continued


def test_checklist_stage_without_checkpoint_fails_clearly(tmp_path):
    repo = repo_copy(tmp_path)
    run = pipeline(repo, "--only-stage", "4")
    assert run.returncode == 2
    assert "no checkpoint at models/best_model.pt" in run.stderr
