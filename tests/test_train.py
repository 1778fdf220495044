"""03_train.py and the training helpers of utils.py, on the tiny preset and CPU."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
from contextlib import nullcontext
from dataclasses import replace
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import torch

import config
import utils
from conftest import load_script
from model import GPT
from tatargpt import checkpoints, devices, tokenization, training_run
from tatargpt.weight_average import WeightAverage

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
                     "--batch-size", "8", "--block-size", "64") == 0
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
    assert ckpt["tokenizer_hash"] == tokenization.tokenizer_hash(tiny_data.tokenizer_dir)
    assert ckpt["dtype"] == "float32" and ckpt["device"] == "cpu"


@pytest.mark.parametrize("optimizer", config.OPTIMIZERS)
def test_same_seed_same_losses_and_resume_is_exact(tiny_data, tmp_path, optimizer):
    straight, straight2, halves = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    common = ["--eval-interval", "5", "--lr-decay-iters", "12", "--block-size", "64",
              "--optimizer", optimizer]
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
    a = torch.load(straight / "last.pt", weights_only=True)
    b = torch.load(halves / "last.pt", weights_only=True)
    assert a["train_config"]["ema"] > 0  # the tiny preset's: the average resumes exactly too
    for key in ("model", "trained_weights"):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key])


def test_checkpoint_round_trip_through_load_model(tiny_data, tmp_path):
    out = tmp_path / "models"
    assert run_train(tiny_data, out, "--max-iters", "4", "--eval-interval", "4") == 0
    model, ckpt = utils.load_model(out / "best_model.pt", device="cpu")
    assert not model.training
    assert model.config == config.ModelConfig.from_dict(ckpt["model_config"])
    assert "optimizer" not in ckpt and "model" not in ckpt  # the weights live in the model
    fresh = GPT(model.config)
    fresh.load_state_dict(torch.load(out / "best_model.pt", weights_only=True)["model"])
    fresh.eval()
    idx = torch.randint(0, model.config.vocab_size, (2, 16))
    assert torch.equal(model(idx, all_logits=True)[0], fresh(idx, all_logits=True)[0])
    tok = utils.load_tokenizer(tiny_data.tokenizer_dir)
    checkpoints.check_tokenizer_matches(ckpt, tok)
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
    with pytest.raises(utils.UserError, match="is damaged or not a checkpoint"):
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
    # Short windows: on a CPU that only emulates bf16 every bf16 token costs ~10 fp32 ones.
    assert run_train(tiny_data, out, "--max-iters", "20", "--eval-interval", "20",
                     "--dtype", "bfloat16", "--gradient-checkpointing",
                     "--batch-size", "8", "--block-size", "64") == 0
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
    monkeypatch.setattr(devices, "mps_available", lambda: False)
    assert devices.select_device("auto")[0].type == "cpu"
    monkeypatch.setattr(devices, "mps_available", lambda: True)
    device, why = devices.select_device("auto")
    assert device.type == "mps" and "MPS" in why
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "Test GPU")
    device, why = devices.select_device("auto")
    assert device.type == "cuda" and "Test GPU" in why


def test_unavailable_device_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "mps_available", lambda: False)
    with pytest.raises(utils.UserError, match="no CUDA GPU"):
        devices.select_device("cuda")
    with pytest.raises(utils.UserError, match="MPS is not available"):
        devices.select_device("mps")
    with pytest.raises(utils.UserError, match="unknown device"):
        devices.select_device("tpu")


def test_dtype_choice_per_device(monkeypatch):
    cuda, mps, cpu = torch.device("cuda"), torch.device("mps"), torch.device("cpu")

    def gpu(native: bool):
        # torch's default includes emulation: a T4 (sm_75) says True unless asked for native.
        return lambda including_emulation=True: native or including_emulation

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", gpu(native=True))
    assert devices.pick_dtype(cuda)[0] == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", gpu(native=False))
    dtype, why = devices.pick_dtype(cuda)
    assert dtype == torch.float16 and "loss scaling" in why
    monkeypatch.setattr(torch.amp, "is_autocast_available", lambda d: d == "mps")
    assert devices.pick_dtype(mps)[0] == torch.float16
    monkeypatch.setattr(torch.amp, "is_autocast_available", lambda d: False)
    dtype, why = devices.pick_dtype(mps)
    assert dtype == torch.float32 and why.startswith("notice")
    # CPU: decided by the measured speed of bf16 matmuls, not by the processor's flags.
    monkeypatch.setattr(devices, "cpu_bf16_speedup", lambda *a: 1.9)
    dtype, why = devices.pick_dtype(cpu)
    assert dtype == torch.bfloat16 and "1.90× as fast" in why
    monkeypatch.setattr(devices, "cpu_bf16_speedup", lambda *a: 0.56)
    dtype, why = devices.pick_dtype(cpu)
    assert dtype == torch.float32 and "0.56× as fast" in why
    assert devices.pick_dtype(cpu, "bfloat16")[0] == torch.bfloat16
    with pytest.raises(utils.UserError):
        devices.pick_dtype(cpu, "float16")


def test_cpu_bf16_measurement_is_real_and_quick():
    devices.cpu_bf16_speedup.cache_clear()
    speedup = devices.cpu_bf16_speedup(128, 512)
    assert 0.05 < speedup < 50
    assert devices.cpu_bf16_speedup(128, 512) == speedup  # measured once per process


def test_lr_schedule_warmup_then_cosine_to_min():
    cfg = config.get_train_config("small", max_iters=1000, warmup_iters=100)
    lrs = [train_mod.lr_at(i, cfg) for i in range(1001)]
    assert lrs[0] < lrs[50] < lrs[99] <= cfg.lr
    assert max(lrs) == pytest.approx(cfg.lr, rel=1e-2)
    assert all(a >= b for a, b in zip(lrs[100:], lrs[101:], strict=False))
    assert lrs[1000] == pytest.approx(cfg.min_lr)
    assert config.TrainConfig().lr == 3e-4 and config.TrainConfig().min_lr == 3e-5


# -- the GPU and Mac paths, shown on a CPU ------------------------------------------------------


def test_dist_any_builds_its_flag_on_the_training_device(monkeypatch):
    """NCCL all-reduces CUDA tensors only: the flag must live on the training device."""
    seen = []

    class Reduced(Exception):
        pass

    def all_reduce(t, op=None):
        seen.append(t.device)
        raise Reduced  # a meta tensor has no value to read back

    monkeypatch.setattr(torch.distributed, "all_reduce", all_reduce)
    dist = training_run.Dist()
    dist.enabled, dist.device = True, torch.device("meta")
    for call in (lambda: dist.any(True), lambda: dist.min(5)):
        with pytest.raises(Reduced):
            call()
    assert [d.type for d in seen] == ["meta", "meta"]


def test_resume_state_is_read_on_the_cpu_and_cuda_states_are_trimmed(tiny_data, tmp_path,
                                                                       monkeypatch):
    out = tmp_path / "models"
    assert run_train(tiny_data, out, "--max-iters", "2", "--eval-interval", "2") == 0
    # A checkpoint saved on a machine with three GPUs …
    state = torch.load(out / "last.pt", weights_only=True)
    cuda_states = [torch.full((16,), i, dtype=torch.uint8) for i in range(3)]
    state["rng"]["cuda"] = cuda_states
    state["rng_ranks"][0]["cuda"] = cuda_states
    torch.save(state, out / "last.pt")
    loads = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: loads.append(k.get("map_location"))
                        or real_load(*a, **k))
    # … resumed on a machine with one.
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [])
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", restored.extend)
    assert run_train(tiny_data, out, "--max-iters", "4", "--resume") == 0
    assert loads[0] == "cpu"
    assert len(restored) == 1 and torch.equal(restored[0], cuda_states[0])
    assert restored[0].device.type == "cpu"


def test_torchrun_on_apple_mps_is_refused(monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(torch.distributed, "init_process_group",
                        lambda **k: pytest.fail("must refuse before joining a group"))
    with pytest.raises(utils.UserError, match="cannot all-reduce MPS tensors"):
        training_run.Dist().setup(torch.device("mps"))


def test_checkpointing_with_dropout_on_mps_is_refused():
    mps = torch.device("mps")
    with_dropout = config.get_preset("small", gradient_checkpointing=True)
    with pytest.raises(utils.UserError, match="does not restore the MPS random state"):
        training_run.check_device_support(mps, with_dropout)
    training_run.check_device_support(mps, replace(with_dropout, dropout=0.0))
    training_run.check_device_support(torch.device("cpu"), with_dropout)


def test_fused_adamw_only_on_cuda():
    model = GPT(config.get_preset("tiny", vocab_size=64))
    cfg = config.get_train_config("tiny")
    cpu = train_mod.make_optimizer(model, cfg, torch.device("cpu"))
    assert cpu.defaults["foreach"] and not cpu.defaults["fused"]
    # (fused=True on CPU tensors is accepted by torch: the choice itself is what is checked)
    cuda = train_mod.make_optimizer(model, cfg, torch.device("cuda"))
    assert cuda.defaults["fused"]


def test_muon_orthogonalizes_the_update():
    """Newton–Schulz keeps the singular vectors of the matrix and moves its singular values
    (here 5–20× apart) close to one, for wide and tall matrices, in fp32 and bf16."""
    from tatargpt.muon import orthogonalize

    gen = torch.Generator().manual_seed(0)
    for shape in ((48, 160), (160, 48), (96, 64)):
        m = torch.randn(*shape, generator=gen) * torch.logspace(-1, 0, shape[1])
        u, s, vh = torch.linalg.svd(m, full_matrices=False)
        assert s.max() / s.min() > 5
        for dtype, tol in ((torch.float32, 1e-4), (torch.bfloat16, 5e-2)):
            o = orthogonalize(m.to(dtype)).float()
            assert o.shape == m.shape
            inner = u.mT @ o @ vh.mT  # diagonal when o has m's singular vectors
            diag = inner.diagonal()
            assert (inner - torch.diag(diag)).abs().max() < tol
            assert diag.min() > 0.6 and diag.max() < 1.2, (shape, dtype, diag)
    # A stack of matrices (how Muon.step batches the matrices of one shape): each on its own.
    stack = torch.randn(3, 40, 24, generator=gen) * torch.logspace(-1, 0, 24)
    batched = orthogonalize(stack)
    for m, o in zip(stack, batched, strict=True):
        assert torch.allclose(o, orthogonalize(m), atol=1e-5)


def test_muon_steps_the_block_matrices_and_adamw_the_rest():
    model = GPT(config.get_preset("tiny", vocab_size=64))
    cfg = config.get_train_config("tiny", optimizer="muon")
    opt = train_mod.make_optimizer(model, cfg, torch.device("cpu"), torch.bfloat16)
    muon = {id(p) for g in opt.muon.param_groups for p in g["params"]}
    adamw = {id(p) for g in opt.adamw.param_groups for p in g["params"]}
    blocks = {id(p) for n, p in model.named_parameters() if n.startswith("blocks.") and p.dim() == 2}
    assert muon == blocks and not muon & adamw
    assert muon | adamw == {id(p) for p in model.parameters()}
    assert id(model.wte.weight) in adamw and opt.muon.ns_dtype == torch.bfloat16
    assert train_mod.make_optimizer(model, cfg, torch.device("cpu")).muon.ns_dtype == \
        torch.float32
    # The schedule sets the learning rate of every group; one step moves every weight.
    for g in opt.param_groups:
        g["lr"] = 1e-2
    before = [p.detach().clone() for p in model.parameters()]
    x = torch.randint(0, 64, (2, 16))
    model(x, x)[1].backward()
    opt.step()
    assert all(not torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))
    with pytest.raises(ValueError, match="not Muon"):
        opt.load_state_dict(torch.optim.AdamW(model.parameters()).state_dict())


def test_weight_average_follows_the_weights_and_swaps_in_and_out():
    model = GPT(config.get_preset("tiny", vocab_size=64))
    params = list(model.parameters())
    start = [p.detach().clone() for p in params]
    avg = WeightAverage(model, decay=0.5)
    # The decay starts low (the random initial weights fade fast) and grows to `decay`.
    assert avg.decay_at(0) == pytest.approx(0.1) and avg.decay_at(100) == 0.5
    assert WeightAverage(model, 0.99).decay_at(10_000) == 0.99
    with torch.no_grad():
        for p in params:
            p.add_(1.0)
    avg.update(0)  # 0.1 · start + 0.9 · (start + 1)
    avg.update(100)  # 0.5 · that + 0.5 · (start + 1)
    expected = [w + 0.95 for w in start]
    assert all(torch.allclose(a, e) for a, e in zip(avg.average, expected, strict=True))
    trained = [p.detach().clone() for p in params]
    with avg.swapped_in():
        assert all(torch.equal(p, e) for p, e in zip(params, avg.average, strict=True))
    assert all(torch.equal(p, t) for p, t in zip(params, trained, strict=True))
    # The state dict has the model's keys (the tied LM head too) holding the average …
    state = avg.state_dict()
    assert state.keys() == model.state_dict().keys()
    assert torch.allclose(state["lm_head.weight"], start[0] + 0.95)
    assert torch.equal(state["lm_head.weight"], state["wte.weight"])
    # … and loads back into an average.
    other = WeightAverage(model, decay=0.5)
    other.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(other.average, avg.average, strict=True))


def test_ema_evaluates_and_saves_the_average_and_trains_as_without(tiny_data, tmp_path):
    plain, averaged = tmp_path / "plain", tmp_path / "ema"
    common = ["--max-iters", "8", "--eval-interval", "8", "--block-size", "64"]
    assert run_train(tiny_data, plain, *common, "--ema", "0") == 0
    assert run_train(tiny_data, averaged, *common, "--ema", "0.9") == 0
    a = torch.load(plain / "best_model.pt", weights_only=True)
    b = torch.load(averaged / "best_model.pt", weights_only=True)
    assert a["trained_weights"] is None and b["train_config"]["ema"] == 0.9
    # Averaging changes nothing in training: the same steps, the same weights …
    assert all(torch.equal(a["model"][k], b["trained_weights"][k]) for k in a["model"])
    assert [r["loss"] for r in read_log(plain) if r["type"] == "train"] == \
        [r["loss"] for r in read_log(averaged) if r["type"] == "train"]
    # … but the checkpoint's model, the one every later stage loads, is their average, and it
    # is the model that was evaluated.
    assert not torch.equal(b["model"]["wte.weight"], b["trained_weights"]["wte.weight"])
    model, _ = utils.load_model(averaged / "best_model.pt")
    assert torch.equal(model.wte.weight, b["model"]["wte.weight"])
    cfg = config.get_train_config("tiny", **{k: v for k, v in b["train_config"].items()
                                              if k != "preset"})
    bos = b["meta"]["bos_id"]
    processed = tiny_data.data_dir / "processed"
    splits = {name: train_mod.Batches(processed / f"{name}.bin", 64, cfg.batch_size,
                                      torch.device("cpu"), seed=cfg.seed, bos_id=bos)
              for name in ("train", "val")}
    metrics = train_mod.evaluate(model, splits, cfg, nullcontext(), b["meta"])
    assert metrics["val_loss"] == pytest.approx(b["best_val_loss"], abs=1e-6)
    assert b["best_val_loss"] != a["best_val_loss"]


def test_the_device_is_read_once_per_logged_step(tiny_data, tmp_path, monkeypatch):
    """.item(), float() or bool() of a tensor makes the CPU wait for the GPU: the training loop
    does it per logged step and per evaluation, not per step or per micro-batch."""
    reads = []
    here = str(ROOT / "03_train.py")
    for name in ("item", "__float__", "__bool__", "tolist"):
        real = getattr(torch.Tensor, name)

        def spy(self, *a, _real=real, _name=name, **k):
            if sys._getframe(1).f_code.co_filename == here:
                reads.append(_name)
            return _real(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, spy)
    out = tmp_path / "models"
    assert run_train(tiny_data, out, "--max-iters", "40", "--grad-accum", "2",
                     "--log-interval", "10", "--eval-interval", "20", "--block-size", "32") == 0
    # 4 logged steps × (the non-finite flag + the loss) + 3 evaluations × 2 splits.
    assert len(reads) == 4 * 2 + 3 * 2, reads


def test_ranks_get_their_own_dropout_seeds(tiny_data, tmp_path, monkeypatch):
    seeds = []
    monkeypatch.setattr(devices, "set_seed", seeds.append)
    dist = training_run.Dist()
    dist.rank = 1
    cfg = config.get_train_config("tiny", data_dir=str(tiny_data.data_dir),
                                  tokenizer_dir=str(tiny_data.tokenizer_dir), device="cpu")
    tok = utils.load_tokenizer(tiny_data.tokenizer_dir)
    meta = tokenization.check_token_files(tiny_data.data_dir, tiny_data.tokenizer_dir)
    model_cfg = config.get_preset("tiny", vocab_size=tok.vocab_size)
    train_mod.build_run(cfg, model_cfg, dist, meta, tok, {}, training_run.RunFiles(tmp_path, False),
                        lambda *a: None, 0.0)
    assert seeds == [cfg.seed, cfg.seed + 1]  # the same initial weights, then its own masks


# -- CPU speed: attention dropout apart from residual dropout -----------------------------------


@pytest.mark.parametrize("attn_dropout", [0.0, 0.1])
def test_residual_dropout_keeps_the_fused_attention_kernel(monkeypatch, attn_dropout):
    seen = []
    real = torch.nn.functional.scaled_dot_product_attention

    def spy(*a, dropout_p=0.0, **k):
        seen.append(dropout_p)
        return real(*a, dropout_p=dropout_p, **k)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    cfg = config.get_preset("tiny", vocab_size=64, block_size=16, dropout=0.1,
                            attn_dropout=attn_dropout)
    model = GPT(cfg).train()
    x = torch.randint(0, 64, (2, 16))
    model(x, x)
    assert seen == [attn_dropout] * cfg.n_layer
    assert config.get_preset("small").dropout == 0.1
    assert config.get_preset("small").attn_dropout == 0.0


# -- the model's shape from the command line ------------------------------------------------------


def test_shape_flags_apply_on_top_of_the_preset_and_are_recorded(tiny_data, tmp_path):
    out = tmp_path / "models"
    shape = ["--n-layer", "2", "--n-head", "4", "--n-embd", "64", "--ffn-hidden", "96",
             "--block-size", "64", "--norm", "rmsnorm", "--mlp", "swiglu", "--n-kv-head", "2",
             "--sliding-window", "32", "--dropout", "0.05", "--attn-dropout", "0.1"]
    assert run_train(tiny_data, out, "--max-iters", "2", "--eval-interval", "2", *shape) == 0
    ckpt = torch.load(out / "last.pt", weights_only=True)
    mc = config.ModelConfig.from_dict(ckpt["model_config"])
    assert (mc.n_layer, mc.n_head, mc.n_embd, mc.ffn_hidden, mc.block_size) == (2, 4, 64, 96, 64)
    assert (mc.norm, mc.mlp, mc.n_kv_head, mc.sliding_window) == ("rmsnorm", "swiglu", 2, 32)
    assert (mc.dropout, mc.attn_dropout, mc.pos_encoding) == (0.05, 0.1, "rope")  # rope: tiny's
    model, _ = utils.load_model(out / "last.pt")
    assert model.num_params() == config.param_breakdown(mc)["total"]
    assert ckpt["train_config"]["preset"] == "tiny"


def test_bad_shape_flags_get_one_clear_message(tiny_data, tmp_path, capsys):
    assert run_train(tiny_data, tmp_path / "m", "--n-head", "3") == 2
    err = capsys.readouterr().err
    assert "model shape is not valid" in err and "divisible by n_head" in err
    with pytest.raises(SystemExit):
        train_mod.main(["--norm", "batchnorm"])
    capsys.readouterr()


def test_time_budget_plans_the_iterations(tiny_data, tmp_path, capsys):
    out = tmp_path / "models"
    assert run_train(tiny_data, out, "--time-budget", "0.1", "--max-iters", "100000",
                     "--eval-interval", "25", "--block-size", "32") == 0
    printed = capsys.readouterr().out
    plan = re.search(r"time budget 0.1 min: ([\d.]+) s per iteration and ([\d.]+) s per "
                     r"evaluation measured; training for ([\d,]+) iterations", printed)
    assert plan, printed
    planned = int(plan[3].replace(",", ""))
    per_iter, per_eval = float(plan[1]), float(plan[2])
    # After each evaluation the plan is made again from the average step time so far.
    for again in re.finditer(r"steps took ([\d.]+) s on average; training for ([\d,]+) "
                             r"iterations instead of", printed):
        per_iter, planned = float(again[1]), int(again[2].replace(",", ""))
    # What was planned fills the budget with steps and evaluations, and no more.
    assert 6 <= planned < 100000
    assert planned * per_iter + (planned / 25) * per_eval <= 6 * 1.5
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert ckpt["iter"] == planned and ckpt["finished"]
    assert ckpt["train_config"]["max_iters"] == planned  # the cosine ended there too
    assert train_mod.lr_at(planned, config.TrainConfig(**ckpt["train_config"])) == \
        pytest.approx(ckpt["train_config"]["min_lr"])


# -- nothing lost ---------------------------------------------------------------------------------


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture
def trained_out(tiny_data, tmp_path) -> Path:
    out = tmp_path / "models"
    assert run_train(tiny_data, out, "--max-iters", "4", "--eval-interval", "2") == 0
    (out / "eval.json").write_text("{}")  # 04_evaluate.py's figures of this model
    return out


def test_a_fresh_run_over_a_trained_model_is_refused(tiny_data, trained_out, capsys):
    before = snapshot(trained_out)
    assert run_train(tiny_data, trained_out, "--max-iters", "4") == 2
    err = capsys.readouterr().err
    assert "already holds a trained model" in err
    for advice in ("--resume", "--out-dir", "--overwrite"):
        assert advice in err
    assert snapshot(trained_out) == before


def test_overwrite_keeps_the_old_model_until_the_new_run_has_trained(tiny_data, trained_out,
                                                                     capsys):
    before = snapshot(trained_out)
    # A run that fails before its first evaluation leaves everything as it was.
    assert run_train(tiny_data, trained_out, "--overwrite", "--lr", "1e6", "--warmup-iters",
                     "0", "--max-iters", "6", "--eval-interval", "3", "--log-interval",
                     "1") == 1
    assert "the previous model is untouched" in capsys.readouterr().out
    assert snapshot(trained_out) == before
    assert not (trained_out / ".incoming").exists()
    # A run that passes its first evaluation replaces the old files, and drops eval.json.
    assert run_train(tiny_data, trained_out, "--overwrite", "--max-iters", "6",
                     "--eval-interval", "3") == 0
    ckpt = torch.load(trained_out / "last.pt", weights_only=True)
    assert ckpt["iter"] == 6
    assert [r["iter"] for r in evals(trained_out)] == [0, 3, 6]
    assert sorted(p.name for p in trained_out.iterdir()) == [
        "best_model.pt", "last.pt", "loss_curve.png", "train_log.jsonl"]


def test_ctrl_c_of_an_overwriting_run_before_its_evaluation_keeps_the_old(tiny_data, trained_out,
                                                                          monkeypatch, capsys):
    before = snapshot(trained_out)
    real = train_mod.train_step

    def step(run):
        if run.progress.it == 2:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C during the third step
        return real(run)

    monkeypatch.setattr(train_mod, "train_step", step)
    assert run_train(tiny_data, trained_out, "--overwrite", "--max-iters", "10",
                     "--eval-interval", "5") == 130
    err = capsys.readouterr().err
    assert "nothing of it was kept" in err and "untouched" in err
    assert snapshot(trained_out) == before


def test_ctrl_c_finishes_the_step_then_saves(tiny_data, tmp_path, monkeypatch, capsys):
    out = tmp_path / "models"
    real = train_mod.train_step

    def step(run):
        if run.progress.it == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return real(run)

    monkeypatch.setattr(train_mod, "train_step", step)
    assert run_train(tiny_data, out, "--max-iters", "20", "--eval-interval", "10") == 130
    err = capsys.readouterr().err
    assert "interrupted at iteration 4; saved" in err and "--resume" in err
    assert torch.load(out / "last.pt", weights_only=True)["iter"] == 4
    assert "Traceback" not in err


def test_ctrl_c_during_the_first_evaluation_is_no_traceback(tiny_data, tmp_path, monkeypatch,
                                                            capsys):
    out = tmp_path / "models"
    real = train_mod.evaluate

    def evaluate(*a, **k):
        os.kill(os.getpid(), signal.SIGINT)
        return real(*a, **k)

    monkeypatch.setattr(train_mod, "evaluate", evaluate)
    assert run_train(tiny_data, out, "--max-iters", "20") == 130
    err = capsys.readouterr().err
    assert "interrupted at iteration 0; saved" in err and "Traceback" not in err
    assert torch.load(out / "last.pt", weights_only=True)["iter"] == 0


def test_ctrl_c_during_an_evaluation_stops_at_the_next_batch(tiny_data, tmp_path, monkeypatch,
                                                          capsys):
    """An interrupted evaluation is thrown away, so Ctrl-C does not wait for the rest of it;
    the resumed run evaluates that iteration again before its next step."""
    out = tmp_path / "models"
    real_evaluate, real_forward = train_mod.evaluate, GPT.forward
    seen = {"evaluating": False, "batches": 0}

    def evaluate(*a, **k):
        seen["evaluating"] = True
        try:
            return real_evaluate(*a, **k)
        finally:
            seen["evaluating"] = False

    def forward(self, *a, **k):
        if seen["evaluating"]:
            seen["batches"] += 1
            if seen["batches"] == 1:
                os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C during the first batch
        return real_forward(self, *a, **k)

    monkeypatch.setattr(train_mod, "evaluate", evaluate)
    monkeypatch.setattr(GPT, "forward", forward)
    assert run_train(tiny_data, out, "--max-iters", "4", "--eval-iters", "50") == 130
    err = capsys.readouterr().err
    assert seen["batches"] == 1, seen  # of 2 × 7 batches: it stopped after the one in flight
    assert "interrupted at iteration 0; saved" in err and "Traceback" not in err
    saved = torch.load(out / "last.pt", weights_only=True)
    assert saved["iter"] == 0 and saved["evaluated_iter"] == -1
    assert not evals(out)  # nothing of the cut evaluation was logged
    monkeypatch.setattr(GPT, "forward", real_forward)
    assert run_train(tiny_data, out, "--max-iters", "4", "--eval-iters", "50", "--resume") == 0
    assert [r["iter"] for r in evals(out)] == [0, 4]  # iteration 0 evaluated on resuming


def test_a_checkpoint_saved_before_evaluated_iter_existed_still_resumes(tiny_data, trained_out,
                                                                          tmp_path, capsys):
    """Checkpoints written before the loop recorded its last evaluation (no "evaluated_iter")
    were always saved by an evaluation: they count as evaluated, load and resume."""
    old = tmp_path / "old"
    shutil.copytree(trained_out, old)
    for name in ("last.pt", "best_model.pt"):
        state = torch.load(old / name, weights_only=True)
        del state["evaluated_iter"]
        torch.save(state, old / name)
    assert status(capsys, old, tiny_data.tokenizer_dir, "--preset", "tiny")[0] == "done"
    model, _ = utils.load_model(old / "best_model.pt")
    assert model.config.n_layer == 3
    assert run_train(tiny_data, old, "--resume", "--max-iters", "6") == 0
    assert [r["iter"] for r in evals(old)][-2:] == [4, 6]  # no second evaluation of iteration 4


def test_an_evaluation_reads_each_val_token_at_most_once(tiny_data):
    """A small val split is read in one pass of consecutive windows, not eval_iters × batch
    random windows that read it many times over; train gets as many windows."""
    processed, cpu = Path(tiny_data.data_dir) / "processed", torch.device("cpu")
    T = 256
    splits = {name: train_mod.Batches(processed / f"{name}.bin", T, 8, cpu, seed=0,
                                      bos_id=config.BOS_ID) for name in ("train", "val")}
    n_val = len(splits["val"].data)
    cfg = config.get_train_config("tiny", batch_size=8, eval_iters=10_000)
    windows = train_mod.eval_windows(splits, cfg)
    targets = np.concatenate([np.arange(s + 1, s + T + 1) for s in windows["val"]])
    assert len(np.unique(targets)) == len(targets)  # no val token predicted twice
    assert len(windows["val"]) == (n_val - 1) // T  # and the whole split once
    assert targets.max() < n_val
    assert len(windows["train"]) == len(windows["val"])
    again = train_mod.eval_windows(splits, cfg)  # the same windows every time
    assert all(np.array_equal(windows[name], again[name]) for name in windows)
    capped = train_mod.eval_windows(splits, replace(cfg, eval_iters=1))
    assert len(capped["val"]) == len(capped["train"]) == 8  # at most eval_iters batches
    # The reported loss is the mean over exactly those windows.
    model = GPT(config.get_preset("tiny", vocab_size=utils.load_tokenizer(
        tiny_data.tokenizer_dir).vocab_size)).eval()
    meta = tokenization.read_meta(tiny_data.data_dir)
    got = train_mod.evaluate(model, splits, replace(cfg, eval_iters=1), nullcontext(), meta)
    x, y = splits["val"].windows(capped["val"])
    model.eval()  # evaluate() leaves the model in training mode
    with torch.no_grad():
        assert got["val_loss"] == pytest.approx(model(x, y)[1].item(), rel=1e-5)
    assert got["eval_tokens"] == 8 * T


def test_resume_refuses_a_contradicting_model_and_reports_other_changes(tiny_data, trained_out,
                                                                        capsys):
    before = snapshot(trained_out)
    assert run_train(tiny_data, trained_out, "--resume", "--preset", "llama") == 2
    err = capsys.readouterr().err
    assert "--preset llama (the checkpoint is tiny)" in err and "--overwrite" in err
    assert run_train(tiny_data, trained_out, "--resume", "--n-layer", "5") == 2
    assert "--n-layer 5 (the checkpoint has 3)" in capsys.readouterr().err
    saved_opt = torch.load(trained_out / "last.pt", weights_only=True)["train_config"]["optimizer"]
    other = next(o for o in config.OPTIMIZERS if o != saved_opt)
    assert run_train(tiny_data, trained_out, "--resume", "--optimizer", other) == 2
    assert f"--optimizer {other} (the checkpoint holds the state of {saved_opt})" in \
        capsys.readouterr().err
    assert snapshot(trained_out) == before
    # Flags not given keep the checkpoint's values; flags given are reported.
    saved_lr = torch.load(trained_out / "last.pt", weights_only=True)["train_config"]["lr"]
    assert saved_lr != 1e-3
    assert run_train(tiny_data, trained_out, "--resume", "--max-iters", "6", "--lr", "1e-3") == 0
    assert f"--lr {saved_lr:g} → 0.001" in capsys.readouterr().out
    ckpt = torch.load(trained_out / "last.pt", weights_only=True)
    assert ckpt["iter"] == 6 and ckpt["train_config"]["eval_interval"] == 2
    assert ckpt["train_config"]["lr"] == 1e-3


@pytest.mark.parametrize("damage, message", [
    ("no-keys", "lacks optimizer"),
    ("shape", "of another shape"),
])
def test_resume_from_an_unfit_checkpoint_says_what_is_wrong(tiny_data, trained_out, capsys,
                                                            damage, message):
    state = torch.load(trained_out / "last.pt", weights_only=True)
    if damage == "no-keys":
        del state["optimizer"]
    else:
        state["model"]["wte.weight"] = state["model"]["wte.weight"][:, :64].clone()
    torch.save(state, trained_out / "last.pt")
    assert run_train(tiny_data, trained_out, "--resume") == 2
    err = capsys.readouterr().err
    assert message in err and "different tokenizer" not in err and "Traceback" not in err


def test_a_cut_log_line_does_not_break_resume_or_plot(tiny_data, trained_out, capsys):
    log = trained_out / "train_log.jsonl"
    log.write_text(log.read_text() + '{"type": "train", "iter": 5, "lo')
    assert run_train(tiny_data, trained_out, "--plot") == 0
    assert run_train(tiny_data, trained_out, "--resume", "--max-iters", "6") == 0
    assert "skipped 1 damaged line" in capsys.readouterr().err
    assert [r["iter"] for r in evals(trained_out)] == [0, 2, 4, 6]


def test_an_untrusted_checkpoint_is_refused_in_our_words(tmp_path):
    evil = tmp_path / "evil.pt"
    torch.save({"format": checkpoints.CHECKPOINT_FORMAT, "payload": Path("x")}, evil)
    with pytest.raises(utils.UserError) as e:
        checkpoints.load_checkpoint(evil)
    assert "could run code" in str(e.value) and "weights_only" not in str(e.value)
    cut = tmp_path / "cut.pt"
    torch.save({"format": checkpoints.CHECKPOINT_FORMAT, "x": torch.zeros(1000)}, cut)
    cut.write_bytes(cut.read_bytes()[:1500])
    with pytest.raises(utils.UserError, match="damaged or truncated") as e:
        checkpoints.load_checkpoint(cut)
    assert "weights_only" not in str(e.value)


def test_load_model_reads_on_the_cpu_and_moves_only_the_model(tiny_checkpoint, monkeypatch):
    maps = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: maps.append(k.get("map_location"))
                        or real_load(*a, **k))
    model, ckpt = utils.load_model(tiny_checkpoint.checkpoint, device="meta")
    assert maps == ["cpu"]
    assert {p.device.type for p in model.parameters()} == {"meta"}
    assert "optimizer" not in ckpt and "model" not in ckpt


# -- bad input: one clear message ------------------------------------------------------------------


def copy_data(tiny_data, tmp_path) -> Path:
    data = tmp_path / "data"
    shutil.copytree(tiny_data.data_dir, data)
    return data


@pytest.mark.parametrize("damage, message", [
    ("odd", "bytes, but meta.json expects"),
    ("empty", "holds 0 bytes, but meta.json expects"),
    ("big-id", "holds token id 65535"),
    ("meta", "meta.json is damaged"),
])
def test_damaged_token_files_are_refused_naming_the_fix(tiny_data, tmp_path, capsys, damage,
                                                        message):
    data = copy_data(tiny_data, tmp_path)
    processed = data / "processed"
    train_bin = processed / "train.bin"
    if damage == "odd":
        train_bin.write_bytes(train_bin.read_bytes()[:-1])
    elif damage == "empty":
        train_bin.write_bytes(b"")
    elif damage == "big-id":
        raw = bytearray(train_bin.read_bytes())
        raw[10:12] = b"\xff\xff"
        train_bin.write_bytes(bytes(raw))
    else:
        (processed / "meta.json").write_text('{"vocab_size": 4')
    code = train_mod.main(["--data-dir", str(data), "--tokenizer-dir",
                           str(tiny_data.tokenizer_dir), "--out-dir", str(tmp_path / "m"), *FAST])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert message in err and "02_train_tokenizer.py" in err


def test_a_corrupt_tokenizer_is_one_message(tiny_data, tmp_path, capsys):
    tok = tmp_path / "tok"
    tok.mkdir()
    (tok / "tokenizer.json").write_text('{"version": "1.0", "model": ')
    code = train_mod.main(["--data-dir", str(tiny_data.data_dir), "--tokenizer-dir", str(tok),
                           "--out-dir", str(tmp_path / "m"), *FAST])
    err = capsys.readouterr().err
    assert code == 2 and "tokenizer.json is damaged" in err and "02_train_tokenizer.py" in err


@pytest.mark.parametrize("flags, message", [
    (["--lr", "nan"], "--lr must be a finite number"),
    (["--weight-decay", "-1"], "--weight-decay must be a finite number ≥ 0"),
    (["--resume", "--overwrite"], "choose one of them"),
    (["--time-budget", "inf"], "--time-budget must be a finite number"),
    (["--ema", "1"], "--ema is the decay of the weights' average"),
])
def test_bad_numbers_are_refused(tiny_data, tmp_path, capsys, flags, message):
    assert run_train(tiny_data, tmp_path / "m", *flags) == 2
    assert message in capsys.readouterr().err


def test_an_out_dir_that_is_a_file_or_full_disk_is_one_message(tiny_data, tmp_path, capsys):
    blocker = tmp_path / "models"
    blocker.write_text("a file, not a folder")
    assert run_train(tiny_data, blocker, "--max-iters", "2") == 1
    err = capsys.readouterr().err
    assert "error: cannot use" in err and "Traceback" not in err
    # A full disk while saving: last.pt.tmp leads to /dev/full (writes fail with ENOSPC).
    out = tmp_path / "full"
    out.mkdir()
    (out / "last.pt.tmp").symlink_to("/dev/full")
    assert run_train(tiny_data, out, "--max-iters", "2") == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "free some space" in err
    assert not (out / "last.pt.tmp").exists() and not (out / "last.pt").exists()


def status(capsys, out_dir: Path, tokenizer_dir: Path, *extra: str) -> list[str]:
    assert train_mod.main(["--status", "--out-dir", str(out_dir), "--tokenizer-dir",
                           str(tokenizer_dir), *extra]) == 0
    return capsys.readouterr().out.rstrip("\n").split("\t")


def test_status_says_what_a_rerun_would_find(tiny_data, trained_out, tmp_path, capsys):
    """run_pipeline.sh decides resume / skip / refuse from this line; nothing is written."""
    tok = tiny_data.tokenizer_dir
    before = snapshot(trained_out)
    assert status(capsys, tmp_path / "empty", tok) == ["fresh", ""]
    assert status(capsys, trained_out, tok, "--preset", "tiny") == ["done",
                                                                    "preset tiny, 4 iterations"]
    assert status(capsys, trained_out, tok, "--preset", "tiny", "--max-iters", "10")[0] == \
        "resume"
    assert status(capsys, trained_out, tok, "--preset", "small") == ["other",
                                                                     "preset tiny, 4 iterations"]
    other_tok = tmp_path / "other_tokenizer"
    other_tok.mkdir()
    (other_tok / "tokenizer.json").write_bytes((tok / "tokenizer.json").read_bytes() + b" ")
    assert status(capsys, trained_out, other_tok) == ["stale", ""]
    assert snapshot(trained_out) == before
    broken = tmp_path / "broken"
    shutil.copytree(trained_out, broken)
    (broken / "last.pt").write_bytes(b"not a checkpoint")
    assert status(capsys, broken, tok, "--preset", "tiny") == ["stale",
                                                               "preset tiny, 4 iterations"]
    # Ctrl-C during the last evaluation: trained to the end, but that evaluation runs again.
    cut = tmp_path / "cut"
    shutil.copytree(trained_out, cut)
    state = torch.load(cut / "last.pt", weights_only=True)
    state.update(evaluated_iter=state["iter"] - 2, finished=False)
    torch.save(state, cut / "last.pt")
    assert status(capsys, cut, tok, "--preset", "tiny")[0] == "resume"


def test_summary_prints_the_best_checkpoints_figures(tiny_data, trained_out, tmp_path, capsys):
    assert train_mod.main(["--summary", "--out-dir", str(trained_out)]) == 0
    out = capsys.readouterr().out
    ckpt = torch.load(trained_out / "best_model.pt", weights_only=True)
    assert f"best_model.pt (preset tiny, iteration {ckpt['iter']})" in out
    assert f"val loss {ckpt['metrics']['val_loss']:.4f}" in out
    assert "eval.json is damaged" in out  # the fixture's eval.json is "{}"
    assert train_mod.main(["--summary", "--out-dir", str(tmp_path / "none")]) == 2
    assert "no readable checkpoint" in capsys.readouterr().err


def test_shuffled_windows_hold_whole_sentences_in_a_random_order(tmp_path):
    """--shuffle-sentences (the default): a training window is whole sentences, <bos> … <eos>,
    drawn at random, not the sentences that follow the first one in train.bin; the last one is
    cut where the window ends. --no-shuffle-sentences reads train.bin in its own order."""
    bos, eos = config.BOS_ID, config.EOS_ID
    sentences = [[bos, *range(10 + 7 * i, 10 + 7 * i + 2 + i % 4), eos] for i in range(60)]
    path = tmp_path / "train.bin"
    np.concatenate(sentences).astype(np.uint16).tofile(path)
    known = {tuple(s) for s in sentences}
    T, cpu = 24, torch.device("cpu")
    shuffled = train_mod.Batches(path, T, 16, cpu, seed=0, bos_id=bos, shuffle=True)
    x, y = shuffled.next()
    assert x.shape == y.shape == (16, T) and torch.equal(x[:, 1:], y[:, :-1])
    in_order = 0
    for row in torch.cat([x, y[:, -1:]], dim=1).tolist():
        starts = [i for i, t in enumerate(row) if t == bos] + [len(row)]
        assert starts[0] == 0
        parts = [tuple(row[a:b]) for a, b in pairwise(starts)]
        assert all(p in known for p in parts[:-1])  # whole sentences …
        assert any(s[:len(parts[-1])] == parts[-1] for s in known)  # … and a cut last one
        firsts = [sentences.index(list(p)) for p in parts[:-1]]
        in_order += all(b == a + 1 for a, b in pairwise(firsts))
    assert in_order < 4  # in corpus order only by chance
    assert shuffled.sentence_ids(x) is None  # attention spans the window
    isolated = train_mod.Batches(path, T, 16, cpu, seed=0, bos_id=bos, shuffle=True,
                                 isolate_at=bos)  # --isolate-sentences
    ids = isolated.sentence_ids(x)
    for row, sentence in zip(x.tolist(), ids.tolist(), strict=True):
        starts = [i for i, t in enumerate(row) if t == bos]
        assert sentence == [sum(s <= i for s in starts) for i in range(T)]
    plain = train_mod.Batches(path, T, 16, cpu, seed=0, bos_id=bos)
    x, _ = plain.next()
    data = np.fromfile(path, dtype=np.uint16)
    for row in x.tolist():  # a slice of train.bin as it is
        start = next(i for i in plain.starts if list(data[i:i + T]) == row)
        assert data[start] == bos
