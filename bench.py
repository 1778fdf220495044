"""Benchmark Tatar-GPT on this machine: training speed, MFU, generation speed, peak memory.

For one preset (default `small`, batch 8 × 256) on one device (--device cpu | cuda | mps) it
measures

1. the matmul peak, the yardstick of model FLOPs utilisation (MFU): in each precision (fp32,
   bf16; fp16 on a GPU), the best FLOP/s of the matmuls a training step runs (each linear
   layer's forward product and its two backward products, at the step's own shapes) and of
   a large square one. Measured with the step's own kernels: on some CPUs a bf16 `a @ b`
   takes a path 10–100× slower than the `F.linear` that autocast training runs, and a peak
   taken from the slow path is no ceiling at all (an MFU above 100 % is a wrong figure);
2. training tokens/s: forward + backward + gradient clipping + AdamW step, in fp32 and in
   each autocast precision, for the model as shipped (residual dropout, no attention
   dropout), with every dropout at 0, with attention dropout 0.1, and with learned positions
   instead of RoPE; and the precision `--dtype auto` picks (devices.pick_dtype) next to fp32;
   MFU = model.flops_per_token() × tokens/s over the peak of the same precision;
3. the real training loop: 03_train.py's `train_step` (gradient accumulation, GradScaler,
   the optimizer 03_train.py builds for the device) in the automatic precision;
4. batch-1 greedy generation tokens/s (16-token prompt, 240 new tokens) with and without
   the KV cache, next to two ceilings: at batch 1 every weight is read once per token, so
   tokens/s ≤ read bandwidth / weight bytes; and the time of the weight-times-vector
   products alone, without any of the small ops;
5. peak memory of a training step with and without gradient checkpointing: on the CPU the
   peak RSS (VmHWM) of a fresh spawned process per variant; on CUDA
   torch.cuda.max_memory_allocated.

Every time is the median of several repetitions after warm-up, measured between two device
synchronisations (a GPU runs behind the Python that feeds it); the training variants are
interleaved step by step, so that other processes slow them alike. On a shared machine
timings move by 10–20 % between runs: compare figures from the same run.

    python bench.py                           # small preset on the CPU: about 5 minutes on 2 cores
    python bench.py --device cuda             # the same on a GPU (seconds)
    python bench.py --quick                   # tiny preset, small sizes: a smoke run
    python bench.py --only train,generate     # some sections: peak, train, loop, generate, memory

Prints a table and writes the figures as JSON to --out (default bench_results/bench.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, replace
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch

import config
import utils
from model import GPT
from tatargpt import cli, devices, fileio, training_run
from tatargpt.cli import option

SECTIONS = ("peak", "train", "loop", "optimizer", "generate", "memory")
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
CPU = torch.device("cpu")


def load_train_script():
    """03_train.py (its name starts with a digit, so it is loaded by path)."""
    import importlib.util

    name = "stage_03_train"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).parent / "03_train.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def timed(fn: Callable[[], object], warmup: int, repeats: int,
          device: torch.device = CPU) -> list[float]:
    """Seconds taken by each of `repeats` calls of fn, after `warmup` untimed calls; each time
    is taken between two synchronisations of the device."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        devices.sync(device)
        start = time.perf_counter()
        fn()
        devices.sync(device)
        times.append(time.perf_counter() - start)
    return times


def machine_info(device: torch.device) -> dict:
    cpu, flags = platform.processor(), set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name") and not cpu:
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    info = {
        "device": str(device),
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_bf16_flags": sorted(flags & {"avx512_bf16", "amx_bf16"}),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["capability"] = ".".join(map(str, torch.cuda.get_device_capability(device)))
    return info


def precisions_for(device: torch.device) -> list[str]:
    if device.type == "cpu":
        return ["fp32", "bf16"]
    if device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False):
        return ["fp32", "bf16", "fp16"]
    return ["fp32", "fp16"]


def autocast_for(device: torch.device, precision: str):
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device.type, dtype=PRECISIONS[precision])


def make_train_step(model: GPT, batch: int, seq: int, precision: str,
                    device: torch.device = CPU) -> Callable[[], torch.Tensor]:
    """A closure doing one full training step on a fixed random batch; returns the loss
    (on the device: reading it would add a synchronisation to every step)."""
    train_mod = load_train_script()
    tc = config.TrainConfig()
    optimizer = train_mod.make_optimizer(model, tc, device)
    scaler = train_mod.make_scaler(device, PRECISIONS[precision])
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, model.config.vocab_size, (batch, seq), generator=g).to(device)
    y = torch.randint(0, model.config.vocab_size, (batch, seq), generator=g).to(device)
    autocast = autocast_for(device, precision)

    def step() -> torch.Tensor:
        with autocast:
            loss = model(x, y)[1]  # drop the logits now: held, they would add B·T·V floats
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    return step


# ---------------------------------------------------------------------------
# 1–2. Matmul peak, training throughput and MFU
# ---------------------------------------------------------------------------


def matmul_shapes(cfg: config.ModelConfig, batch: int, seq: int) -> list[tuple[int, int, int]]:
    """(rows, inputs, outputs) of every distinct linear layer of a training step, rows being
    the step's batch × seq tokens."""
    model = GPT(cfg)
    return sorted({(batch * seq, m.in_features, m.out_features) for m in model.modules()
                   if isinstance(m, torch.nn.Linear)})


def linear_products(x: torch.Tensor, w: torch.Tensor, grad: torch.Tensor,
                    backward: bool) -> dict[str, Callable[[], torch.Tensor]]:
    products = {"forward": lambda: torch.nn.functional.linear(x, w)}
    if backward:
        products["input grad"] = lambda: grad @ w
        products["weight grad"] = lambda: grad.t() @ x
    return products


def matmul_peak(precision: str, shapes: list[tuple[int, int, int]], square: int,
                repeats: int, device: torch.device = CPU, budget_s: float = 0.5) -> dict:
    """The best FLOP/s of the products of a linear layer at each shape, in this precision.

    For x (M, K) and a weight W (N, K): the forward F.linear(x, W), the input gradient
    g @ W and the weight gradient gᵀ @ x (g is (M, N)): the three products autograd runs
    for one linear layer, with the layouts it runs them in; and the forward of a
    square × square × square layer. Each product is timed up to `repeats` times (fewer when
    one call takes long: about budget_s per product); the fastest call counts, as other
    processes can only make a call slower.
    """
    dtype, per_shape = PRECISIONS[precision], {}
    g = torch.Generator().manual_seed(0)
    for m, k, n in [*shapes, (square, square, square)]:
        x = torch.randn(m, k, generator=g).to(device, dtype)
        w = torch.randn(n, k, generator=g).to(device, dtype)
        grad = torch.randn(m, n, generator=g).to(device, dtype)
        products = linear_products(x, w, grad, backward=(m, k, n) in shapes)
        best = {}
        for name, fn in products.items():
            first = timed(fn, warmup=1, repeats=1, device=device)[0]
            more = min(repeats - 1, int(budget_s / max(first, 1e-9)))
            best[name] = 2 * m * k * n / min([first, *timed(fn, 0, more, device)])
        per_shape[f"{m}x{k}x{n}"] = best
    flops = max(v for best in per_shape.values() for v in best.values())
    where = max(per_shape, key=lambda key: max(per_shape[key].values()))
    return {"best": flops, "shape": where, "per_shape": per_shape}


def train_throughput(cfg: config.ModelConfig, variants: dict[str, tuple[dict, str]],
                     batch: int, seq: int, warmup: int, repeats: int,
                     device: torch.device = CPU) -> dict[str, dict]:
    """Tokens/s of a training step for each variant {name: (config overrides, precision)}.

    The variants take turns step by step, so a burst of load elsewhere hits all of them.
    """
    steps, models = {}, {}
    for name, (overrides, precision) in variants.items():
        torch.manual_seed(0)
        models[name] = GPT(replace(cfg, **overrides)).to(device).train()
        steps[name] = make_train_step(models[name], batch, seq, precision, device)
    for _ in range(warmup):
        for step in steps.values():
            step()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, step in steps.items():
            times[name] += timed(step, warmup=0, repeats=1, device=device)
    results = {}
    for name, (overrides, precision) in variants.items():
        median = statistics.median(times[name])
        results[name] = {
            "precision": precision,
            "overrides": overrides,
            "tokens_per_s": batch * seq / median,
            "step_s_median": median,
            "step_s_all": times[name],
            "flops_per_token": models[name].flops_per_token(seq),
        }
    return results


# ---------------------------------------------------------------------------
# 3. The real training loop
# ---------------------------------------------------------------------------


def loop_throughput(cfg: config.ModelConfig, batch: int, grad_accum: int, steps: int,
                    device: torch.device) -> dict:
    """Tokens/s of 03_train.py's train_step, in the precision `--dtype auto` picks, on random
    tokens in a token file (memory-mapped, like train.bin)."""
    train_mod = load_train_script()
    dtype, why = devices.pick_dtype(device, "auto", cfg)
    tc = config.get_train_config("small", batch_size=batch, grad_accum=grad_accum)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "train.bin"
        rng = np.random.default_rng(0)
        rng.integers(4, cfg.vocab_size, size=200_000, dtype=np.uint16).tofile(data)
        batches = train_mod.Batches(data, cfg.block_size, batch, device, seed=0)
        torch.manual_seed(0)
        model = GPT(cfg).to(device).train()
        dist = training_run.Dist()
        dist.enabled = False
        autocast = autocast_for(device, {v: k for k, v in PRECISIONS.items()}[dtype])
        run = training_run.Run(
            tc, cfg, dist, device, dtype, why, model, model,
            train_mod.make_optimizer(model, tc, device), train_mod.make_scaler(device, dtype),
            autocast, batches, batches, {}, "", {}, training_run.RunFiles(Path(tmp), False),
            lambda *a: None, training_run.Progress(), time.perf_counter())
        times = timed(lambda: train_mod.train_step(run), warmup=2, repeats=steps, device=device)
    tokens = batch * cfg.block_size * grad_accum
    return {"precision": devices.dtype_name(dtype), "why": why, "grad_accum": grad_accum,
            "tokens_per_step": tokens, "tokens_per_s": tokens / statistics.median(times),
            "step_s_all": times}


# ---------------------------------------------------------------------------
# 4. Generation
# ---------------------------------------------------------------------------


def read_bandwidth(megabytes: int, repeats: int, device: torch.device) -> float:
    """Bytes/s of reading a float32 array much larger than the caches (a sum)."""
    a = torch.ones(megabytes * 2**20 // 4, device=device)
    times = timed(lambda: a.sum(), warmup=2, repeats=repeats, device=device)
    return a.numel() * 4 / statistics.median(times)


@torch.inference_mode()
def matvec_time(model: GPT, repeats: int, device: torch.device) -> float:
    """Seconds per token of the batch-1 matmuls alone: each Linear's weight times one vector.

    Generation cannot beat this with these kernels; the rest of a step is the small ops.
    """
    weights = [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear)]
    vectors = {w.size(1): torch.randn(1, w.size(1), dtype=w.dtype, device=device)
               for w in weights}

    def run() -> None:
        for w in weights:
            torch.nn.functional.linear(vectors[w.size(1)], w)

    return statistics.median(timed(run, warmup=2, repeats=repeats, device=device))


def generation_speed(model: GPT, prompt_len: int, new_tokens: int, use_cache: bool,
                     repeats: int, device: torch.device = CPU) -> dict:
    """Greedy batch-1 generation tokens/s (prompt processing included, as a user waits it)."""
    prompt = torch.randint(0, model.config.vocab_size, (1, prompt_len),
                           generator=torch.Generator().manual_seed(0)).to(device)

    def run() -> None:
        model.generate(prompt, new_tokens, temperature=0, use_cache=use_cache)

    times = timed(run, warmup=1, repeats=repeats, device=device)
    return {"tokens_per_s": new_tokens / statistics.median(times), "run_s_all": times}


# ---------------------------------------------------------------------------
# 5. Peak memory
# ---------------------------------------------------------------------------


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB.

    Linux: VmHWM from /proc/self/status. Not ru_maxrss: Linux carries that one over from the
    parent through fork and exec, so a child of a big parent would start at the parent's size.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**10  # kB
    scale = 1 / 2**20 if sys.platform == "darwin" else 1 / 2**10  # bytes on macOS, else KiB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def memory_child(cfg_dict: dict, batch: int, seq: int, precision: str, steps: int,
                 threads: int) -> dict:
    """Runs in a fresh process: peak RSS after building, and after `steps` training steps."""
    torch.set_num_threads(threads)  # a spawned process starts from torch's default
    torch.manual_seed(0)
    model = GPT(config.ModelConfig.from_dict(cfg_dict)).train()
    step = make_train_step(model, batch, seq, precision)
    baseline = peak_rss_mb()  # torch, the model and its (still empty) optimizer
    for _ in range(steps):  # the first step allocates gradients and AdamW's moments
        step()
    # max(): the kernel's RSS counters are batched per thread and can lag by a few hundred kB.
    return {"model_only_mb": baseline, "peak_mb": max(baseline, peak_rss_mb())}


def peak_memory(cfg: config.ModelConfig, checkpointing: bool, batch: int, seq: int,
                precision: str, steps: int, device: torch.device) -> dict:
    cfg = replace(cfg, gradient_checkpointing=checkpointing)
    if device.type == "cuda":  # the allocator's own count, in this process
        torch.manual_seed(0)
        model = GPT(cfg).to(device).train()
        step = make_train_step(model, batch, seq, precision, device)
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        baseline = torch.cuda.max_memory_allocated(device) / 2**20
        for _ in range(steps):
            step()
        torch.cuda.synchronize(device)
        result = {"model_only_mb": baseline,
                  "peak_mb": torch.cuda.max_memory_allocated(device) / 2**20}
        del model, step
        torch.cuda.empty_cache()
    else:
        with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
            result = pool.submit(memory_child, cfg.to_dict(), batch, seq, precision, steps,
                                 torch.get_num_threads()).result()
    result["step_increase_mb"] = result["peak_mb"] - result["model_only_mb"]
    return result


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------


def fmt(value: float, unit: str) -> str:
    if unit == "%":
        return f"{value:.1f} %"
    if unit == "×":
        return f"{value:.2f}×"
    if unit in ("GFLOP/s", "GB/s"):
        return f"{value:,.1f} {unit}"
    return f"{value:,.0f} {unit}"


def print_table(rows: list[tuple[str, float, str, str]]) -> None:
    if not rows:
        print("nothing measured")
        return
    width = max(len(r[0]) for r in rows)
    values = [fmt(r[1], r[2]) for r in rows]
    vwidth = max(len(v) for v in values)
    print(f"{'measurement':<{width}}  {'value':>{vwidth}}  note")
    print(f"{'-' * width}  {'-' * vwidth}  {'-' * 4}")
    for (name, _, _, note), value in zip(rows, values, strict=True):
        print(f"{name:<{width}}  {value:>{vwidth}}  {note}")


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------


@dataclass
class Options:
    device: str = option("cpu", "cpu | cuda | mps")
    preset: str | None = option(None, "model preset (default: small; tiny with --quick)",
                                choices=list(config.PRESETS))
    batch_size: int | None = option(None, "training sequences per step (default: 8 on a CPU, "
                                          "32 on a GPU; 2 with --quick)")
    seq_len: int | None = option(None, "training tokens per sequence (default: 256; 64 with "
                                       "--quick)")
    repeats: int | None = option(None, "timed repetitions per figure (default: 5; 2 with "
                                       "--quick)")
    prompt_len: int = option(16, "generation prompt tokens")
    new_tokens: int | None = option(None, "generated tokens per run (default: 240; 24 with "
                                          "--quick)")
    matmul_size: int | None = option(None, "side of the square matmuls timed for the peak "
                                           "(default: 2048 on a CPU, 8192 on a GPU; 256 with "
                                           "--quick)")
    threads: int | None = option(None, "torch.set_num_threads (default: torch's own choice)")
    only: str = option(",".join(SECTIONS), f"comma-separated sections to run: "
                                           f"{', '.join(SECTIONS)}")
    quick: bool = option(False, "smoke run: tiny preset, small sizes, few repetitions")
    out: Path = option(Path("bench_results/bench.json"), "where to write the JSON results")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Measure training and generation speed and training memory on one device.")
    cli.add_options(parser, Options)
    return parser


@dataclass
class Settings:
    """What to measure, resolved from the flags (--quick changes the defaults)."""

    cfg: config.ModelConfig
    preset: str
    device: torch.device
    batch: int
    seq: int
    repeats: int
    prompt_len: int
    new_tokens: int
    matmul_n: int
    quick: bool

    @property
    def shape(self) -> str:
        return f"{self.batch}×{self.seq} tokens"


Row = tuple[str, float, str, str]  # measurement, value, unit, note


def run_peak(s: Settings, results: dict) -> list[Row]:
    shapes = matmul_shapes(s.cfg, s.batch, s.seq)
    peaks = {p: matmul_peak(p, shapes, s.matmul_n, max(20, s.repeats), s.device)
             for p in precisions_for(s.device)}
    # MFU divides by the best: a ceiling is the fastest the hardware was seen to go.
    results["matmul_peak_flops"] = {p: peak["best"] for p, peak in peaks.items()}
    results["matmul_peak"] = peaks
    return [(f"matmul peak {p}", peak["best"] / 1e9, "GFLOP/s",
             f"best of the step's {len(shapes)} linear shapes × 3 products and a "
             f"{s.matmul_n}³ square; fastest at {peak['shape']}")
            for p, peak in peaks.items()]


def run_train(s: Settings, results: dict) -> list[Row]:
    auto_dtype, why = devices.pick_dtype(s.device, "auto", s.cfg)
    auto = {v: k for k, v in PRECISIONS.items()}[auto_dtype]
    variants = {p: ({}, p) for p in precisions_for(s.device)}
    # Dropout priced in the automatic precision: residual dropout as shipped, none, and
    # attention-probability dropout (which sends SDPA on a CPU to its unfused kernel).
    variants[f"{auto}, every dropout 0"] = ({"dropout": 0.0, "attn_dropout": 0.0}, auto)
    variants[f"{auto}, attention dropout 0.1"] = ({"attn_dropout": 0.1}, auto)
    if s.cfg.pos_encoding == "rope":
        variants["fp32, learned positions"] = ({"pos_encoding": "learned"}, "fp32")
    train = train_throughput(s.cfg, variants, s.batch, s.seq, warmup=2, repeats=s.repeats,
                             device=s.device)
    results["train"] = train
    results["auto_precision"] = {"precision": auto, "why": why,
                                 "vs_fp32": train[auto]["tokens_per_s"]
                                 / train["fp32"]["tokens_per_s"]}
    shipped = train[auto]["tokens_per_s"]
    results["dropout_cost"] = {
        "shipped_vs_no_dropout": shipped / train[f"{auto}, every dropout 0"]["tokens_per_s"],
        "attention_dropout_vs_no_dropout":
            train[f"{auto}, attention dropout 0.1"]["tokens_per_s"]
            / train[f"{auto}, every dropout 0"]["tokens_per_s"]}
    rows = []
    for name, r in train.items():
        o = {**{"dropout": s.cfg.dropout, "attn_dropout": s.cfg.attn_dropout}, **r["overrides"]}
        rows.append((f"train {name}", r["tokens_per_s"], "tok/s",
                     f"{s.shape}/step, dropout {o['dropout']}, attention dropout "
                     f"{o['attn_dropout']}, median of {s.repeats} steps"))
        peak = results.get("matmul_peak_flops", {}).get(r["precision"])
        if peak:
            r["mfu"] = r["flops_per_token"] * r["tokens_per_s"] / peak
            rows.append((f"  MFU {name}", 100 * r["mfu"], "%",
                         f"{r['flops_per_token'] / 1e6:.0f} MFLOP/token vs the "
                         f"{r['precision']} matmul peak"))
    rows += [
        ("  auto precision / fp32", results["auto_precision"]["vs_fp32"], "×",
         f"--dtype auto picks {auto}: {why}"),
        ("  as shipped / every dropout 0", results["dropout_cost"]["shipped_vs_no_dropout"], "×",
         f"{auto}; residual dropout {s.cfg.dropout}, attention dropout {s.cfg.attn_dropout}"),
        ("  attention dropout 0.1 / every dropout 0",
         results["dropout_cost"]["attention_dropout_vs_no_dropout"], "×",
         f"{auto}; what attention-probability dropout would cost"),
    ]
    return rows


def run_loop(s: Settings, results: dict) -> list[Row]:
    grad_accum = 2
    loop = loop_throughput(s.cfg, s.batch, grad_accum, max(3, s.repeats), s.device)
    results["loop"] = loop
    return [("03_train.py train_step", loop["tokens_per_s"], "tok/s",
             f"{s.batch}×{s.cfg.block_size} × {grad_accum} accumulation, {loop['precision']} "
             f"(auto), GradScaler and the device's AdamW, median")]


def run_optimizer(s: Settings, results: dict) -> list[Row]:
    """One optimizer step of the whole model: AdamW, and Muon for the blocks' matrices with
    AdamW for the rest (--optimizer muon), its Newton–Schulz iterations in each precision."""
    train = load_train_script()
    torch.manual_seed(0)
    model = GPT(s.cfg).to(s.device)
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    steps = {}
    for name, optimizer, dtype in (("adamw", "adamw", torch.float32),
                                   ("muon, fp32 Newton–Schulz", "muon", torch.float32),
                                   ("muon, bf16 Newton–Schulz", "muon", torch.bfloat16)):
        cfg = config.TrainConfig(optimizer=optimizer)
        opt = train.make_optimizer(model, cfg, s.device, dtype)
        times = timed(opt.step, warmup=2, repeats=max(5, s.repeats), device=s.device)
        steps[name] = statistics.median(times)
    results["optimizer_step_s"] = steps
    rows = [(f"optimizer step {name}", 1e3 * sec, "ms", f"{s.preset}, median")
            for name, sec in steps.items()]
    return rows + [(f"  {name} / adamw", sec / steps["adamw"], "×", "")
                   for name, sec in steps.items() if name != "adamw"]


def run_generate(s: Settings, results: dict) -> list[Row]:
    torch.manual_seed(0)
    model = GPT(s.cfg).to(s.device).eval()
    bandwidth = read_bandwidth(32 if s.quick else 512, max(5, s.repeats), s.device)
    # Batch 1 reads every weight once per token: the tied embedding once (as the LM head),
    # a learned position embedding only one row.
    wpe = model.wpe.weight.numel() if model.wpe is not None else 0
    weight_bytes = (model.num_params() - wpe) * model.wte.weight.element_size()
    matvec_s = matvec_time(model, max(10, s.repeats), s.device)
    gen = {
        "read_bandwidth_bytes_per_s": bandwidth,
        "weight_bytes": weight_bytes,
        "bandwidth_ceiling_tokens_per_s": bandwidth / weight_bytes,
        "matvec_only_tokens_per_s": 1 / matvec_s,
        "prompt_len": s.prompt_len,
        "new_tokens": s.new_tokens,
    }
    for use_cache in (True, False):
        runs = s.repeats if use_cache else min(s.repeats, 3)  # the slow one runs less often
        gen["kv_cache" if use_cache else "no_cache"] = generation_speed(
            model, s.prompt_len, s.new_tokens, use_cache, runs, s.device)
    gen["speedup"] = gen["kv_cache"]["tokens_per_s"] / gen["no_cache"]["tokens_per_s"]
    results["generate"] = gen
    note = f"batch 1, {s.prompt_len}-token prompt, {s.new_tokens} new, greedy, median"
    return [
        ("generate with KV cache", gen["kv_cache"]["tokens_per_s"], "tok/s", note),
        ("generate without cache", gen["no_cache"]["tokens_per_s"], "tok/s", note),
        ("  cache speed-up", gen["speedup"], "×", "with / without"),
        ("memory read bandwidth", bandwidth / 1e9, "GB/s", "sum of a large fp32 array, median"),
        ("  decode ceiling", gen["bandwidth_ceiling_tokens_per_s"], "tok/s",
         f"bandwidth / {weight_bytes / 1e6:.1f} MB of weights read per token"),
        ("  matvecs alone", gen["matvec_only_tokens_per_s"], "tok/s",
         "every weight × one vector (F.linear), no other op: the floor of a decode step"),
    ]


def run_memory(s: Settings, results: dict) -> list[Row]:
    if s.device.type == "mps":
        return [("peak memory", float("nan"), "MB", "not measured on MPS")]
    # The peak RSS of the same step moves by up to ~15 % between processes (the allocator
    # keeps freed memory in patterns that depend on timing), so on the CPU each variant runs
    # in several fresh processes, alternating, and the median is reported.
    runs = 1 if s.quick or s.device.type == "cuda" else 3
    variants = (("no checkpointing", False), ("gradient checkpointing", True))
    samples: dict[str, list[dict]] = {name: [] for name, _ in variants}
    for _ in range(runs):
        for name, ckpt in variants:
            samples[name].append(peak_memory(s.cfg, ckpt, s.batch, s.seq, "fp32", 2, s.device))
    what = ("torch.cuda.max_memory_allocated" if s.device.type == "cuda"
            else f"peak RSS (VmHWM) of a fresh spawned process, median of {runs} per variant")
    memory: dict = {"method": f"{what}; model-only = right after building the model and "
                              f"optimizer; 2 fp32 training steps"}
    for name, _ in variants:
        memory[name] = {key: statistics.median(r[key] for r in samples[name])
                        for key in samples[name][0]}
        memory[name]["peak_mb_all"] = [r["peak_mb"] for r in samples[name]]
    plain, ckpt = memory["no checkpointing"], memory["gradient checkpointing"]
    memory["peak_reduction"] = 1 - ckpt["peak_mb"] / plain["peak_mb"]
    # A tiny model's step can stay within memory that the process had already peaked at.
    memory["increase_reduction"] = (1 - ckpt["step_increase_mb"] / plain["step_increase_mb"]
                                    if plain["step_increase_mb"] > 0 else None)
    results["memory"] = memory
    rows = [(f"peak memory, {name}", memory[name]["peak_mb"], "MB",
             f"fp32 {s.shape}; +{memory[name]['step_increase_mb']:,.0f} MB over "
             f"model-only {memory[name]['model_only_mb']:,.0f} MB")
            for name, _ in variants]
    increase = memory["increase_reduction"]
    rows.append(("  checkpointing saves", 100 * memory["peak_reduction"], "%",
                 "of the peak" + ("" if increase is None else
                                  f"; {100 * increase:.1f} % of the increase over model-only")))
    return rows


SECTION_RUNNERS = {"peak": run_peak, "train": run_train, "loop": run_loop,
                   "optimizer": run_optimizer,
                   "generate": run_generate, "memory": run_memory}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sections = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        print(f"error: unknown section(s) {', '.join(unknown)}; choose from "
              f"{', '.join(SECTIONS)} (e.g. --only train,generate)", file=sys.stderr)
        return 2
    try:
        device, _ = devices.select_device(args.device)
    except utils.UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    gpu = device.type != "cpu"
    quick = args.quick
    preset = args.preset or ("tiny" if quick else "small")
    cfg = config.get_preset(preset)
    s = Settings(
        cfg=cfg, preset=preset, device=device, quick=quick,
        batch=args.batch_size or (2 if quick else 32 if gpu else 8),
        seq=args.seq_len or (64 if quick else cfg.block_size),
        repeats=args.repeats or (2 if quick else 10 if gpu else 5),
        prompt_len=args.prompt_len,
        new_tokens=args.new_tokens or (24 if quick else 240),
        matmul_n=args.matmul_size or (256 if quick else 8192 if gpu else 2048),
    )
    if not 1 <= s.seq <= cfg.block_size:
        print(f"error: --seq-len must be in 1…{cfg.block_size} (the context of {preset})",
              file=sys.stderr)
        return 2
    if min(s.batch, s.repeats, s.prompt_len, s.new_tokens, s.matmul_n) < 1:
        print("error: sizes and --repeats must be ≥ 1", file=sys.stderr)
        return 2
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")  # as 03_train.py trains: TF32 on Ampere+

    info = machine_info(device)
    where = info.get("gpu") or info["cpu"] or "CPU"
    print(f"Tatar-GPT bench: preset {preset} on {device} ({where}), "
          f"{info['torch_threads']} torch threads, torch {info['torch']}")
    results: dict = {"machine": info, "preset": preset, "model_config": cfg.to_dict(),
                     "batch_size": s.batch, "seq_len": s.seq, "repeats": s.repeats,
                     "load_average_before": list(os.getloadavg())}
    rows: list[Row] = []
    for name in SECTIONS:  # in this order: MFU needs the peak first
        if name in sections:
            rows += SECTION_RUNNERS[name](s, results)
    results["load_average_after"] = list(os.getloadavg())
    results["table"] = [{"measurement": n.strip(), "value": v, "unit": u, "note": note}
                        for n, v, u, note in rows]

    print()
    print_table(rows)
    busy = max(results["load_average_before"][0], results["load_average_after"][0])
    if device.type == "cpu" and busy > 0.5 * (os.cpu_count() or 1) + 1:
        print(f"\nnote: load average {busy:.1f} on {os.cpu_count()} CPUs: other processes "
              f"were running, so these timings are pessimistic; run again when it is idle.")
    fileio.atomic_write_text(args.out, json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
