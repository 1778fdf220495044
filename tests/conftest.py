"""Shared fixtures: the bundled sample corpus prepared once, and one tiny trained checkpoint.

Everything runs the stages as a student does (01 → 02 → 03), only with small settings and
temporary folders, once per test session.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "tests" / "artifacts"  # screenshots and the like, git-ignored

# Settings of the checkpoint shared by the demo tests (quick_test, app, notebook).
TINY_TRAIN_ARGS = ["--preset", "tiny", "--max-iters", "100", "--eval-interval", "50",
                   "--eval-iters", "4", "--batch-size", "8", "--device", "cpu"]


def load_script(filename: str):
    """Import a numbered stage script (its name is not a valid module name) once."""
    name = "stage_" + Path(filename).stem.replace("-", "_")
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / filename)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@dataclass
class Prepared:
    data_dir: Path
    tokenizer_dir: Path


@dataclass
class Trained(Prepared):
    checkpoint: Path
    out_dir: Path


@dataclass
class FineTuned(Trained):
    chat_checkpoint: Path


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Prepared:
    """data/processed/* and tokenizer/ made from the bundled sample by 01 and 02."""
    base = tmp_path_factory.mktemp("pipeline")
    data_dir, tokenizer_dir = base / "data", base / "tokenizer"
    assert load_script("01_prepare_data.py").main(
        ["--source", "sample", "--data-dir", str(data_dir)]) == 0
    assert load_script("02_train_tokenizer.py").main(
        ["--data-dir", str(data_dir), "--tokenizer-dir", str(tokenizer_dir)]) == 0
    return Prepared(data_dir, tokenizer_dir)


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_data) -> Trained:
    """One tiny model trained on the sample corpus, shared by every demo test."""
    out_dir = tiny_data.data_dir.parent / "models"
    assert load_script("03_train.py").main(
        ["--data-dir", str(tiny_data.data_dir), "--tokenizer-dir", str(tiny_data.tokenizer_dir),
         "--out-dir", str(out_dir), *TINY_TRAIN_ARGS]) == 0
    return Trained(tiny_data.data_dir, tiny_data.tokenizer_dir, out_dir / "best_model.pt",
                   out_dir)


@pytest.fixture(scope="session")
def tiny_chat(tiny_checkpoint) -> FineTuned:
    """The tiny model fine-tuned on the bundled conversations (05_finetune.py, a few steps):
    chat_model.pt beside best_model.pt, where app.py and quick_test.py look for it."""
    out = tiny_checkpoint.out_dir / "chat_model.pt"
    assert load_script("05_finetune.py").main(
        ["--checkpoint", str(tiny_checkpoint.checkpoint), "--tokenizer-dir",
         str(tiny_checkpoint.tokenizer_dir), "--data-dir", str(tiny_checkpoint.data_dir),
         "--out", str(out), "--device", "cpu", "--max-iters", "40", "--eval-interval", "20",
         "--forget-sentences", "20", "--check-prompts", "2"]) == 0
    return FineTuned(tiny_checkpoint.data_dir, tiny_checkpoint.tokenizer_dir,
                     tiny_checkpoint.checkpoint, tiny_checkpoint.out_dir, out)
