"""Stage 3 — train Tatar-GPT on the token files.

Reads   data/processed/{train,val}.bin + meta.json   (02_train_tokenizer.py)
        tokenizer/tokenizer.json                     (only its hash and vocabulary size)
Writes  models/best_model.pt   the checkpoint with the lowest validation loss
        models/last.pt         the latest state, for --resume
        models/train_log.jsonl one JSON object per logged step and per evaluation
        models/loss_curve.png  train/val loss and learning rate

    python 03_train.py --preset tiny --max-iters 300     # a few minutes on a laptop CPU
    python 03_train.py                                   # the reference 23M run (use a GPU)
    torchrun --standalone --nproc_per_node=2 03_train.py # data-parallel on 2 GPUs

Each step draws random windows of block_size+1 tokens from train.bin (memory-mapped: the
file is never read whole), accumulates gradients over `grad_accum` micro-batches under
autocast, clips the gradient norm and takes an AdamW step. The learning rate warms up
linearly, then follows a cosine down to min_lr.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import config
import utils
from model import GPT

# ---------------------------------------------------------------------------
# Command line: one flag per TrainConfig field
# ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Train Tatar-GPT on data/processed/*.bin (see README.md).",
        epilog="Defaults come from config.TrainConfig and the preset's TRAIN_PRESETS entry.",
    )
    for f in fields(config.TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        help_text = config.TRAIN_HELP[f.name]
        if f.type in ("bool", bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                                help=help_text)
        elif f.name == "preset":
            parser.add_argument(flag, choices=list(config.PRESETS), default=None,
                                help=f"{help_text} (default: {f.default})")
        else:
            kind = {"int": int, "float": float, "str": str}[str(f.type)]
            parser.add_argument(flag, type=kind, default=None,
                                help=f"{help_text} (default: {f.default})")
    return parser


def config_from_args(args: argparse.Namespace) -> config.TrainConfig:
    given = {k: v for k, v in vars(args).items() if v is not None}
    return config.get_train_config(given.pop("preset", "small"), **given)


def check_train_config(cfg: config.TrainConfig) -> None:
    for name in ("max_iters", "eval_interval", "eval_iters", "log_interval", "batch_size",
                 "grad_accum"):
        if getattr(cfg, name) <= 0:
            raise utils.UserError(f"--{name.replace('_', '-')} must be positive, "
                                  f"got {getattr(cfg, name)}")
    if cfg.lr <= 0 or cfg.min_lr < 0 or cfg.min_lr > cfg.lr:
        raise utils.UserError(f"need 0 ≤ --min-lr ≤ --lr and --lr > 0; got lr={cfg.lr}, "
                              f"min_lr={cfg.min_lr}")
    if cfg.patience < 0 or cfg.warmup_iters < 0:
        raise utils.UserError("--patience and --warmup-iters must be ≥ 0")


# ---------------------------------------------------------------------------
# Several processes (torchrun) or one
# ---------------------------------------------------------------------------


class Dist:
    """Rank information; a single process is rank 0 of a world of 1."""

    def __init__(self):
        self.enabled = "RANK" in os.environ and "WORLD_SIZE" in os.environ
        self.rank = int(os.environ.get("RANK", 0))
        self.local_rank = int(os.environ.get("LOCAL_RANK", 0))
        self.world_size = int(os.environ.get("WORLD_SIZE", 1))
        self.master = self.rank == 0

    def setup(self, device: torch.device) -> torch.device:
        if not self.enabled:
            return device
        if device.type == "cuda":
            device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(device)
            backend = "nccl"
        else:
            backend = "gloo"
        torch.distributed.init_process_group(backend=backend)
        return device

    def any(self, flag: bool) -> bool:
        """True on every rank when `flag` is True on at least one rank."""
        if not self.enabled:
            return flag
        t = torch.tensor([float(flag)])
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return bool(t.item())

    def teardown(self) -> None:
        if self.enabled and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


# ---------------------------------------------------------------------------
# Data: random windows from memory-mapped token files
# ---------------------------------------------------------------------------


class Batches:
    """Random (x, y) windows of block_size tokens from a uint16 token file.

    np.memmap pages in only the windows that are read, so a file larger than memory works.
    """

    def __init__(self, path: Path, block_size: int, batch_size: int, device: torch.device,
                 seed: int):
        self.data = np.memmap(path, dtype=np.uint16, mode="r")
        if len(self.data) < block_size + 2:
            raise utils.UserError(
                f"{path} holds {len(self.data)} tokens, fewer than one training window of "
                f"{block_size + 1}. Use a larger corpus or a preset with a smaller context."
            )
        self.block_size, self.batch_size, self.device = block_size, batch_size, device
        self.rng = np.random.default_rng(seed)

    def next(self, rng: np.random.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        rng = rng or self.rng
        starts = rng.integers(0, len(self.data) - self.block_size - 1, size=self.batch_size)
        windows = np.stack([self.data[s : s + self.block_size + 1] for s in starts])
        windows = torch.from_numpy(windows.astype(np.int64))  # (B, T+1)
        x, y = windows[:, :-1].contiguous(), windows[:, 1:].contiguous()
        if self.device.type == "cuda":  # pinned memory lets the copy overlap with compute
            return (x.pin_memory().to(self.device, non_blocking=True),
                    y.pin_memory().to(self.device, non_blocking=True))
        return x.to(self.device), y.to(self.device)


def lr_at(it: int, cfg: config.TrainConfig) -> float:
    """Linear warm-up to cfg.lr, then cosine decay to cfg.min_lr at lr_decay_iters."""
    if it < cfg.warmup_iters:
        return cfg.lr * (it + 1) / (cfg.warmup_iters + 1)
    decay_iters = cfg.lr_decay_iters or cfg.max_iters
    if it >= decay_iters:
        return cfg.min_lr
    progress = (it - cfg.warmup_iters) / max(1, decay_iters - cfg.warmup_iters)
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (cfg.lr - cfg.min_lr)


@torch.no_grad()
def evaluate(model: GPT, splits: dict[str, Batches], cfg: config.TrainConfig, autocast,
             meta: dict) -> dict:
    """Mean loss over eval_iters batches of each split; the same batches every time."""
    model.eval()
    out = {}
    for name, batches in splits.items():
        rng = np.random.default_rng(cfg.seed + 1_000_003)  # fixed windows: comparable evals
        losses = []
        for _ in range(cfg.eval_iters):
            x, y = batches.next(rng)
            with autocast:
                _, loss = model(x, y)
            losses.append(loss.item())
        out[f"{name}_loss"] = float(np.mean(losses))
    model.train()
    out["val_ppl"] = math.exp(min(out["val_loss"], 50.0))
    # Bits per character: total nats of the val tokens spread over the val characters.
    out["val_bpc"] = out["val_loss"] * meta["val_tokens"] / meta["val_chars"] / math.log(2)
    return out


# ---------------------------------------------------------------------------
# Checkpoints, log, plot
# ---------------------------------------------------------------------------


def save_checkpoint(path: Path, state: dict) -> None:
    """torch.save through a temp file and a rename: a crash never leaves half a checkpoint."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def read_log(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def plot_loss_curve(log_path: Path, png_path: Path) -> bool:
    """Draw train/val loss and the learning rate from train_log.jsonl; False if no data."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_log(log_path)
    train = [r for r in rows if r["type"] == "train"]
    evals = [r for r in rows if r["type"] == "eval"]
    if not train and not evals:
        return False
    fig, (ax_loss, ax_lr) = plt.subplots(2, 1, figsize=(8, 6), sharex=True,
                                         gridspec_kw={"height_ratios": [3, 1]})
    if train:
        ax_loss.plot([r["iter"] for r in train], [r["loss"] for r in train],
                     color="tab:blue", alpha=0.35, label="train (batch)")
        ax_lr.plot([r["iter"] for r in train], [r["lr"] for r in train], color="tab:green")
    if evals:
        its = [r["iter"] for r in evals]
        ax_loss.plot(its, [r["train_loss"] for r in evals], "o-", color="tab:blue",
                     label="train (eval)")
        ax_loss.plot(its, [r["val_loss"] for r in evals], "o-", color="tab:orange",
                     label="val (eval)")
    ax_loss.set_ylabel("loss (nats/token)")
    ax_loss.set_title("Tatar-GPT — өйрәнү графигы (training curve)")
    ax_loss.legend()
    ax_loss.grid(alpha=0.3)
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_xlabel("iteration")
    ax_lr.grid(alpha=0.3)
    fig.tight_layout()
    tmp = png_path.with_name(png_path.name + ".tmp")
    fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    os.replace(tmp, png_path)
    return True


# ---------------------------------------------------------------------------
# Setting up: inputs, device, model, optimizer
# ---------------------------------------------------------------------------


def load_inputs(cfg: config.TrainConfig) -> tuple[dict, utils.Tokenizer, dict]:
    """meta.json (checked against the tokenizer), the tokenizer, and corpus stats if present."""
    tokenizer = utils.load_tokenizer(cfg.tokenizer_dir)
    meta = utils.check_token_files(cfg.data_dir, cfg.tokenizer_dir)
    if meta["vocab_size"] != tokenizer.vocab_size:
        raise utils.UserError(
            f"meta.json says vocab_size {meta['vocab_size']} but the tokenizer has "
            f"{tokenizer.vocab_size}. Re-run: python 02_train_tokenizer.py"
        )
    stats_path = Path(cfg.data_dir) / "processed" / "stats.json"
    stats = json.loads(stats_path.read_text(encoding="utf-8")) if stats_path.is_file() else {}
    return meta, tokenizer, stats


def make_optimizer(model: GPT, cfg: config.TrainConfig, device: torch.device):
    groups = model.optim_groups(cfg.weight_decay)
    try:  # the fused kernel does the whole update in one pass where the backend has it
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))


def make_scaler(device: torch.device, dtype: torch.dtype):
    """Loss scaling keeps fp16 gradients from underflowing; bf16 and fp32 need none."""
    enabled = dtype == torch.float16
    try:
        return torch.amp.GradScaler(device.type, enabled=enabled)
    except (RuntimeError, TypeError, ValueError) as e:
        tqdm.write(f"notice: no GradScaler on {device.type} ({e}); fp16 without loss scaling")
        return torch.amp.GradScaler(device.type, enabled=False)


def maybe_compile(model: GPT, cfg: config.TrainConfig, batches: Batches, autocast, log):
    """torch.compile the model, trying it on one batch; on failure keep the eager model."""
    if not cfg.compile:
        return model
    log("compiling the model with torch.compile (the first step takes a while)…")
    try:
        compiled = torch.compile(model)
        x, y = batches.next(np.random.default_rng(0))
        with autocast:
            _, loss = compiled(x, y)
        loss.backward()
        model.zero_grad(set_to_none=True)
        return compiled
    except Exception as e:  # compilers fail in many ways (no C compiler, unsupported op, …)
        log(f"notice: torch.compile failed ({type(e).__name__}: {str(e)[:200]}); "
            f"training without it")
        model.zero_grad(set_to_none=True)
        return model


def estimate_duration(model: GPT, batches: Batches, cfg: config.TrainConfig, autocast,
                      optimizer, device: torch.device, log) -> None:
    """Time a few real micro-batches and print how long cfg.max_iters iterations would take."""
    model.train()

    def micro_step() -> None:
        x, y = batches.next(np.random.default_rng(0))
        with autocast:
            _, loss = model(x, y)
        loss.backward()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(2):  # warm-up: allocations, kernel choices and the optimizer state
        micro_step()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    n = 3
    sync()
    t0 = time.perf_counter()
    for _ in range(n):
        micro_step()
    sync()
    micro = (time.perf_counter() - t0) / n
    t0 = time.perf_counter()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    sync()
    step = time.perf_counter() - t0
    per_iter = micro * cfg.grad_accum + step
    # Each evaluation runs 2 × eval_iters forward passes, about a third of a training micro-step.
    evals = cfg.max_iters // cfg.eval_interval + 1
    total = per_iter * cfg.max_iters + evals * 2 * cfg.eval_iters * micro / 3
    hours, rest = divmod(int(total), 3600)
    log(f"expected training time on {device}: about {hours} h {rest // 60} min for "
        f"{cfg.max_iters:,} iterations (measured {micro:.2f} s per micro-batch of "
        f"{cfg.batch_size}×{batches.block_size} tokens, {cfg.grad_accum} per iteration)")


# ---------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------


def train(cfg: config.TrainConfig, dist: Dist, estimate: bool = False) -> int:
    log = tqdm.write if dist.master else (lambda *a, **k: None)
    out_dir = Path(cfg.out_dir)
    log_path, png_path = out_dir / "train_log.jsonl", out_dir / "loss_curve.png"
    last_path, best_path = out_dir / "last.pt", out_dir / "best_model.pt"

    meta, tokenizer, stats = load_inputs(cfg)
    device, why = utils.select_device(cfg.device)
    device = dist.setup(device)
    dtype, dtype_why = utils.pick_dtype(device, cfg.dtype)
    log(f"device: {device} ({why})")
    log(f"precision: {utils.dtype_name(dtype)} ({dtype_why})")

    resume_state = None
    if cfg.resume:
        resume_state = utils.load_checkpoint(last_path, device)
        if resume_state.get("tokenizer_hash") != tokenizer.hash:
            raise utils.UserError(f"{last_path} was trained with a different tokenizer; "
                                  f"start a fresh run without --resume")
        model_cfg = config.ModelConfig.from_dict(resume_state["model_config"])
        log(f"resuming from {last_path} at iteration {resume_state['iter']}")
    else:
        # The vocabulary comes from the tokenizer: a small corpus may not fill 8192.
        model_cfg = config.get_preset(cfg.preset, vocab_size=tokenizer.vocab_size)
    model_cfg.gradient_checkpointing = cfg.gradient_checkpointing
    if model_cfg.vocab_size != meta["vocab_size"]:
        raise utils.UserError(
            f"the model's vocabulary ({model_cfg.vocab_size}) does not match the token files "
            f"({meta['vocab_size']}). Start a fresh run without --resume."
        )

    utils.set_seed(cfg.seed)
    model = GPT(model_cfg).to(device)
    processed = Path(cfg.data_dir) / "processed"
    train_batches = Batches(processed / "train.bin", model_cfg.block_size, cfg.batch_size,
                            device, seed=cfg.seed + dist.rank)  # each rank its own windows
    val_batches = Batches(processed / "val.bin", model_cfg.block_size, cfg.batch_size,
                          device, seed=cfg.seed)
    optimizer = make_optimizer(model, cfg, device)
    scaler = make_scaler(device, dtype)
    autocast = (torch.autocast(device.type, dtype=dtype) if dtype != torch.float32
                else nullcontext())

    if estimate:
        estimate_duration(model, train_batches, cfg, autocast, optimizer, device, log)
        return 0

    it, best_val, bad_evals, tokens_seen, train_time = 0, float("inf"), 0, 0, 0.0
    if resume_state is not None:
        model.load_state_dict(resume_state["model"])
        optimizer.load_state_dict(resume_state["optimizer"])
        if resume_state.get("scaler"):
            scaler.load_state_dict(resume_state["scaler"])
        it, best_val = resume_state["iter"], resume_state["best_val_loss"]
        bad_evals = resume_state.get("bad_evals", 0)
        tokens_seen = resume_state.get("tokens_seen", 0)
        train_time = resume_state.get("train_time_s", 0.0)
        utils.set_rng_state(resume_state["rng"])
        data_rng = resume_state["data_rng"]
        if dist.rank < len(data_rng):
            train_batches.rng.bit_generator.state = data_rng[dist.rank]
        else:  # saved by fewer processes: this rank starts a fresh stream of windows
            train_batches.rng = np.random.default_rng(cfg.seed + dist.rank + 7919 * it)
        if dist.master:  # drop log rows written after the saved state
            rows = [r for r in read_log(log_path) if r["iter"] <= it]
            log_path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    elif dist.master:
        out_dir.mkdir(parents=True, exist_ok=True)
        log_path.write_text("", encoding="utf-8")

    raw_model = model
    model = maybe_compile(model, cfg, train_batches, autocast, log)
    if dist.enabled:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    tokens_per_iter = cfg.batch_size * model_cfg.block_size * cfg.grad_accum * dist.world_size
    log(f"model: preset {cfg.preset}, {raw_model.num_params() / 1e6:.2f}M parameters, "
        f"context {model_cfg.block_size}, vocab {model_cfg.vocab_size}"
        f"{', gradient checkpointing' if model_cfg.gradient_checkpointing else ''}")
    log(f"batch: {cfg.batch_size} × {cfg.grad_accum} accumulation × {dist.world_size} "
        f"process(es) = {tokens_per_iter:,} tokens per iteration; "
        f"train.bin {meta['train_tokens']:,} tokens")

    def checkpoint_state(metrics: dict, gather: bool = True) -> dict:
        data_rng = [train_batches.rng.bit_generator.state]
        if dist.enabled and gather:  # rank 0 saves every rank's data position: exact resume
            gathered = [None] * dist.world_size
            torch.distributed.all_gather_object(gathered, data_rng[0])
            data_rng = gathered
        return {
            "format": utils.CHECKPOINT_FORMAT,
            "model": raw_model.state_dict(),
            "model_config": model_cfg.to_dict(),
            "train_config": cfg.to_dict(),
            "tokenizer_hash": tokenizer.hash,
            "vocab_size": model_cfg.vocab_size,
            "iter": it,
            "best_val_loss": best_val,
            "bad_evals": bad_evals,
            "metrics": metrics,
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict() if scaler.is_enabled() else None,
            "rng": utils.rng_state(),
            "data_rng": data_rng,
            "device": str(device),
            "dtype": utils.dtype_name(dtype),
            "world_size": dist.world_size,
            "tokens_seen": tokens_seen,
            "train_time_s": train_time,
            "init": "random (trained from scratch, no pretrained weights)",
            "data_stats": stats,
            "meta": meta,
            "torch_version": str(torch.__version__),
        }

    def append_log(row: dict) -> None:
        if dist.master:
            with open(log_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")

    def run_eval() -> dict:
        """Evaluate on rank 0, save checkpoints, and tell whether to stop early (all ranks)."""
        nonlocal best_val, bad_evals
        stop = False
        metrics = {}
        if dist.master:
            metrics = evaluate(raw_model, {"train": train_batches, "val": val_batches}, cfg,
                               autocast, meta)
            improved = metrics["val_loss"] < best_val
            if improved:
                best_val, bad_evals = metrics["val_loss"], 0
            else:
                bad_evals += 1
            append_log({"type": "eval", "iter": it, **metrics, "time_s": round(train_time, 2)})
            log(f"eval  iter {it:>6} | train {metrics['train_loss']:.4f} | "
                f"val {metrics['val_loss']:.4f} | ppl {metrics['val_ppl']:.2f} | "
                f"bpc {metrics['val_bpc']:.3f}{' | best' if improved else ''}")
            stop = cfg.patience > 0 and bad_evals >= cfg.patience
        state = checkpoint_state(metrics)  # every rank takes part in gathering data_rng
        if dist.master:
            save_checkpoint(last_path, state)
            if metrics["val_loss"] <= best_val:
                save_checkpoint(best_path, state)
        return {"stop": dist.any(stop)}

    if resume_state is None and it == 0:
        run_eval()

    bar = tqdm(total=cfg.max_iters, initial=it, disable=not dist.master, desc="training",
               unit="it", dynamic_ncols=True)
    status = 0
    try:
        while it < cfg.max_iters:
            lr = lr_at(it, cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr
            t0 = time.perf_counter()
            loss_sum = 0.0
            for micro in range(cfg.grad_accum):
                # DDP: all-reduce the gradients only on the last micro-batch.
                sync = (not dist.enabled or micro == cfg.grad_accum - 1)
                with (nullcontext() if sync else model.no_sync()):
                    x, y = train_batches.next()
                    with autocast:
                        _, loss = model(x, y)
                    scaler.scale(loss / cfg.grad_accum).backward()
                loss_sum += loss.item()
            loss_value = loss_sum / cfg.grad_accum
            if dist.any(not math.isfinite(loss_value)):
                log(f"error: the loss became {loss_value} at iteration {it + 1}. Training "
                    f"stopped; {last_path} keeps the last good state. Try a lower --lr, "
                    f"or --dtype float32.")
                status = 1
                break
            if cfg.grad_clip > 0:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            it += 1
            dt = time.perf_counter() - t0
            train_time += dt
            tokens_seen += tokens_per_iter
            bar.update(1)
            if it % cfg.log_interval == 0 or it == cfg.max_iters:
                tok_s = tokens_per_iter / max(dt, 1e-9)
                bar.set_postfix(loss=f"{loss_value:.3f}", lr=f"{lr:.2e}",
                                tok_s=f"{tok_s:,.0f}")
                append_log({"type": "train", "iter": it, "loss": loss_value, "lr": lr,
                            "tokens_per_s": round(tok_s, 1), "time_s": round(train_time, 2)})
            if it % cfg.eval_interval == 0 or it == cfg.max_iters:
                if run_eval()["stop"]:
                    log(f"early stopping: no val improvement in {cfg.patience} evaluations")
                    break
    except KeyboardInterrupt:
        bar.close()
        if dist.master:
            # No collective here: other ranks may be gone already.
            save_checkpoint(last_path, checkpoint_state({}, gather=False))
            print(f"\ninterrupted at iteration {it}; saved {last_path}. "
                  f"Continue with: python 03_train.py --resume (same flags)", file=sys.stderr)
        return 130
    bar.close()

    if dist.master:
        if plot_loss_curve(log_path, png_path):
            log(f"loss curve: {png_path}")
        if status == 0:
            log(f"done: {it} iterations in {train_time:.0f} s; best val loss {best_val:.4f} "
                f"(perplexity {math.exp(min(best_val, 50)):.2f}); checkpoint {best_path}")
            log("next: python quick_test.py   |   python app.py   |   "
                "jupyter notebook demo_inference.ipynb")
    return status


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    parser.add_argument("--estimate", action="store_true",
                        help="time a few micro-batches, print the expected training time, exit")
    args = parser.parse_args(argv)
    estimate = args.__dict__.pop("estimate")
    dist = Dist()
    try:
        try:
            cfg = config_from_args(args)
        except ValueError as e:  # an unknown preset or an inconsistent setting
            raise utils.UserError(str(e)) from e
        check_train_config(cfg)
        if cfg.plot:
            out = Path(cfg.out_dir)
            if not plot_loss_curve(out / "train_log.jsonl", out / "loss_curve.png"):
                raise utils.UserError(f"no training log at {out / 'train_log.jsonl'}; "
                                      f"train first: python 03_train.py")
            print(f"wrote {out / 'loss_curve.png'}")
            return 0
        return train(cfg, dist, estimate)
    except utils.UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        dist.teardown()


if __name__ == "__main__":
    sys.exit(main())
