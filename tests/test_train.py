"""03_train.py and the training helpers of utils.py, on the tiny preset and CPU."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import config
import utils
from conftest import load_script
from model import GPT

ROOT = Path(__file__).resolve().parent.parent
train_mod = load_script("03_train.py")

FAST = ["--preset", "tiny", "--batch-size", "4", "--eval-iters", "2", "--device", "cpu",
        "--dtype", "float32"]


def run_train(data, out_dir: Path, *extra: str) -> int:
    return train_mod.main([
        "--data-dir", str(data.data_dir), "--tokenizer-dir", str(data.tokenizer_dir),
        "--out-dir", str(out_dir), *FAST, *extra,
    ])


def read_log(out_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (out_dir / "train_log.jsonl").read_text().splitlines()]


def evals(out_dir: Path) -> list[dict]:
    return [r for r in read_log(out_dir) if r["type"] == "eval"]


def test_loss_falls_clearly(tiny_data, tmp_path):
    out = tmp_path / "models"
    assert run_train(tiny_data, out, "--max-iters", "50", "--eval-interval", "25",
                     "--batch-size", "8") == 0
    rows = evals(out)
    assert [r["iter"] for r in rows] == [0, 25, 50]
    vocab = utils.load_tokenizer(tiny_data.tokenizer_dir).vocab_size
    # A fresh model predicts about uniformly: val loss ≈ ln(V) …
    assert abs(rows[0]["val_loss"] - math.log(vocab)) < 0.3
    # … and 50 steps on real Tatar text take it down by well over a nat.
    assert rows[-1]["val_loss"] < rows[0]["val_loss"] - 1.5
    assert rows[-1]["val_bpc"] < rows[0]["val_bpc"]
    ckpt = torch.load(out / "best_model.pt", weights_only=True)
    assert ckpt["iter"] == 50 and ckpt["best_val_loss"] == pytest.approx(rows[-1]["val_loss"])
    assert ckpt["tokenizer_hash"] == utils.tokenizer_hash(tiny_data.tokenizer_dir)
    assert ckpt["dtype"] == "float32" and ckpt["device"] == "cpu"


def test_same_seed_same_losses_and_resume_is_exact(tiny_data, tmp_path):
    straight, straight2, halves = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    common = ["--eval-interval", "5", "--lr-decay-iters", "12"]
    assert run_train(tiny_data, straight, "--max-iters", "12", *common) == 0
    assert run_train(tiny_data, straight2, "--max-iters", "12", *common) == 0
    assert run_train(tiny_data, halves, "--max-iters", "6", *common) == 0
    assert torch.load(halves / "last.pt", weights_only=True)["iter"] == 6
    assert run_train(tiny_data, halves, "--max-iters", "12", "--resume", *common) == 0

    def losses(out):
        return [(r["iter"], r["loss"]) for r in read_log(out) if r["type"] == "train"]

    assert losses(straight) == losses(straight2)
    resumed = dict(losses(halves))  # also logs step 6, where the first half ended
    assert [(it, resumed[it]) for it, _ in losses(straight)] == losses(straight)
    assert evals(straight)[-1]["val_loss"] == evals(halves)[-1]["val_loss"]
    a = torch.load(straight / "last.pt", weights_only=True)["model"]
    b = torch.load(halves / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoint_round_trip_through_load_model(tiny_data, tmp_path):
    out = tmp_path / "models"
    assert run_train(tiny_data, out, "--max-iters", "4", "--eval-interval", "4") == 0
    model, ckpt = utils.load_model(out / "best_model.pt", device="cpu")
    assert not model.training
    assert model.config == config.ModelConfig.from_dict(ckpt["model_config"])
    fresh = GPT(model.config)
    fresh.load_state_dict(ckpt["model"])
    fresh.eval()
    idx = torch.randint(0, model.config.vocab_size, (2, 16))
    assert torch.equal(model(idx, all_logits=True)[0], fresh(idx, all_logits=True)[0])
    tok = utils.load_tokenizer(tiny_data.tokenizer_dir)
    utils.check_tokenizer_matches(ckpt, tok)
    text = utils.generate_text(model, tok, "Казан", max_new_tokens=5, temperature=0)
    assert text.startswith("Казан")


def test_missing_and_mismatched_inputs_are_refused(tiny_data, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    code = train_mod.main(["--data-dir", str(empty), "--tokenizer-dir",
                           str(tiny_data.tokenizer_dir), "--out-dir", str(tmp_path / "m")])
    assert code == 2
    assert "02_train_tokenizer.py" in capsys.readouterr().err

    # A tokenizer trained with another vocabulary size is a different tokenizer.
    other = tmp_path / "other_tok"
    other.mkdir()
    shutil.copy(tiny_data.tokenizer_dir / "tokenizer.json", other / "tokenizer.json")
    with open(other / "tokenizer.json", "a") as f:
        f.write("\n")  # same content for the parser, a different file: a different hash
    code = train_mod.main(["--data-dir", str(tiny_data.data_dir), "--tokenizer-dir",
                           str(other), "--out-dir", str(tmp_path / "m")] + FAST)
    err = capsys.readouterr().err
    assert code == 2
    assert "different tokenizer" in err and "Traceback" not in err

    with pytest.raises(utils.UserError, match="no checkpoint"):
        utils.load_model(tmp_path / "nothing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(utils.UserError, match="not a readable checkpoint"):
        utils.load_model(bad)


def test_bad_flags_get_clear_errors(tiny_data, tmp_path, capsys):
    base = ["--data-dir", str(tiny_data.data_dir), "--tokenizer-dir",
            str(tiny_data.tokenizer_dir), "--out-dir", str(tmp_path / "m")]
    assert train_mod.main(base + ["--batch-size", "0"]) == 2
    assert "--batch-size must be positive" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert train_mod.main(base + ["--device", "cuda"]) == 2
        assert "no CUDA GPU" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train_mod.main(base + ["--preset", "huge"])


def test_bf16_autocast_and_gradient_checkpointing_train(tiny_data, tmp_path):
    out = tmp_path / "models"
    assert run_train(tiny_data, out, "--max-iters", "20", "--eval-interval", "20",
                     "--dtype", "bfloat16", "--gradient-checkpointing",
                     "--batch-size", "8") == 0
    rows = evals(out)
    assert rows[-1]["val_loss"] < rows[0]["val_loss"] - 0.5
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert ckpt["dtype"] == "bfloat16"
    assert ckpt["model_config"]["gradient_checkpointing"] is True


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tiny_data, tmp_path, monkeypatch, capsys):
    out = tmp_path / "models"
    real_forward = GPT.forward
    calls = {"n": 0}

    def forward(self, idx, targets=None, **kw):
        logits, loss = real_forward(self, idx, targets, **kw)
        if targets is not None and self.training:
            calls["n"] += 1
            if calls["n"] > 6:
                loss = loss * float("nan")
        return logits, loss

    monkeypatch.setattr(GPT, "forward", forward)
    assert run_train(tiny_data, out, "--max-iters", "20", "--eval-interval", "5") == 1
    assert "the loss became nan" in capsys.readouterr().out
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert ckpt["iter"] == 5  # the last evaluation before the NaN at step 7
    assert all(torch.isfinite(t).all() for t in ckpt["model"].values())


def test_loss_curve_png_is_valid(tiny_data, tmp_path):
    out = tmp_path / "models"
    assert run_train(tiny_data, out, "--max-iters", "10", "--eval-interval", "5") == 0
    png = (out / "loss_curve.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == (800, 600)
    assert 10_000 < len(png) < 1_000_000
    (out / "loss_curve.png").unlink()
    assert run_train(tiny_data, out, "--plot") == 0  # redraw from the log alone
    assert (out / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ctrl_c_saves_last_checkpoint(tiny_data, tmp_path):
    out = tmp_path / "models"
    cmd = [sys.executable, str(ROOT / "03_train.py"), "--data-dir", str(tiny_data.data_dir),
           "--tokenizer-dir", str(tiny_data.tokenizer_dir), "--out-dir", str(out), *FAST,
           "--max-iters", "100000", "--eval-interval", "100000", "--log-interval", "1"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    log = out / "train_log.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline:
        if log.is_file() and sum(1 for line in log.read_text().splitlines()
                                 if '"train"' in line) >= 3:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "--resume" in err
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert ckpt["iter"] >= 3


@pytest.mark.slow
def test_ddp_two_processes_on_cpu(tiny_data, tmp_path):
    torchrun = Path(sys.executable).parent / "torchrun"
    out = tmp_path / "models"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [str(torchrun), "--standalone", "--nproc_per_node=2", str(ROOT / "03_train.py"),
         "--data-dir", str(tiny_data.data_dir), "--tokenizer-dir", str(tiny_data.tokenizer_dir),
         "--out-dir", str(out), *FAST, "--max-iters", "3", "--eval-interval", "3"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = torch.load(out / "best_model.pt", weights_only=True)
    assert ckpt["world_size"] == 2 and ckpt["iter"] == 3
    assert len(ckpt["data_rng"]) == 2 and ckpt["data_rng"][0] != ckpt["data_rng"][1]
    # Only rank 0 logs: one eval row per evaluation, not one per process.
    assert [r["iter"] for r in evals(out)] == [0, 3]
    assert sorted(p.name for p in out.iterdir()) == [
        "best_model.pt", "last.pt", "loss_curve.png", "train_log.jsonl"]


# -- device and precision choice (the CUDA/MPS branches, checked on a CPU machine) --------------


def test_device_auto_prefers_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(utils, "mps_available", lambda: False)
    assert utils.select_device("auto")[0].type == "cpu"
    monkeypatch.setattr(utils, "mps_available", lambda: True)
    device, why = utils.select_device("auto")
    assert device.type == "mps" and "MPS" in why
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "Test GPU")
    device, why = utils.select_device("auto")
    assert device.type == "cuda" and "Test GPU" in why


def test_unavailable_device_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(utils, "mps_available", lambda: False)
    with pytest.raises(utils.UserError, match="no CUDA GPU"):
        utils.select_device("cuda")
    with pytest.raises(utils.UserError, match="MPS is not available"):
        utils.select_device("mps")
    with pytest.raises(utils.UserError, match="unknown device"):
        utils.select_device("tpu")


def test_dtype_choice_per_device(monkeypatch):
    cuda, mps, cpu = torch.device("cuda"), torch.device("mps"), torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert utils.pick_dtype(cuda)[0] == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert utils.pick_dtype(cuda)[0] == torch.float16
    monkeypatch.setattr(torch.amp, "is_autocast_available", lambda d: d == "mps")
    assert utils.pick_dtype(mps)[0] == torch.float16
    monkeypatch.setattr(torch.amp, "is_autocast_available", lambda d: False)
    dtype, why = utils.pick_dtype(mps)
    assert dtype == torch.float32 and why.startswith("notice")
    monkeypatch.setattr(utils, "cpu_has_native_bf16", lambda: True)
    assert utils.pick_dtype(cpu)[0] == torch.bfloat16
    monkeypatch.setattr(utils, "cpu_has_native_bf16", lambda: False)
    assert utils.pick_dtype(cpu)[0] == torch.float32
    assert utils.pick_dtype(cpu, "bfloat16")[0] == torch.bfloat16
    with pytest.raises(utils.UserError):
        utils.pick_dtype(cpu, "float16")


def test_lr_schedule_warmup_then_cosine_to_min():
    cfg = config.get_train_config("small", max_iters=1000, warmup_iters=100)
    lrs = [train_mod.lr_at(i, cfg) for i in range(1001)]
    assert lrs[0] < lrs[50] < lrs[99] <= cfg.lr
    assert max(lrs) == pytest.approx(cfg.lr, rel=1e-2)
    assert all(a >= b for a, b in zip(lrs[100:], lrs[101:], strict=False))
    assert lrs[1000] == pytest.approx(cfg.min_lr)
    assert config.TrainConfig().lr == 3e-4 and config.TrainConfig().min_lr == 3e-5
