"""Stage 3 — train Tatar-GPT on the token files.

Reads   data/processed/{train,val}.bin + meta.json   (02_train_tokenizer.py)
        tokenizer/tokenizer.json                     (only its hash and vocabulary size)
Writes  models/best_model.pt   the checkpoint with the lowest validation loss
        models/last.pt         the latest state, for --resume
        models/train_log.jsonl one JSON object per logged step and per evaluation
        models/loss_curve.png  train/val loss and learning rate

    python 03_train.py --preset tiny --max-iters 300     # a few minutes on a laptop CPU
    python 03_train.py                                   # the reference 23M run (use a GPU)
    python 03_train.py --preset tiny --n-layer 4 --attn-dropout 0.1   # shape flags on top
    python 03_train.py --time-budget 60                  # as many steps as fit in an hour
    torchrun --standalone --nproc_per_node=2 03_train.py # data-parallel on 2 GPUs
    python 03_train.py --status --preset tiny            # what a rerun would do (one line)
    python 03_train.py --summary                         # the trained model's figures

Each step draws random windows of block_size+1 tokens from train.bin (memory-mapped: the
file is never read whole), accumulates gradients over `grad_accum` micro-batches under
autocast, clips the gradient norm and takes an optimizer step: AdamW, or with --optimizer
muon (the tiny preset's) Muon for the blocks' weight matrices and AdamW for the rest
(tatargpt/muon.py). The learning rate warms up linearly, then follows a cosine down to min_lr.

Nothing is lost by running a command twice: a fresh run into a folder that holds a model
is refused (continue it with --resume, or replace it with --overwrite, which keeps the old
files until the new run has passed its first evaluation). Ctrl-C finishes the current step
(or stops an evaluation at its next batch), saves last.pt and says how to continue.

This file is the lesson: data, learning rate, evaluation, model and optimizer, one step, the
loop. Flags, resuming, staged overwrites, Ctrl-C, time budgets, torchrun: training_run.py.
"""

from __future__ import annotations

import math
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import config
import utils
from model import GPT
from tatargpt import devices, fileio, scoring
from tatargpt import training_run as tr
from tatargpt.muon import Muon, MuonAdamW
from tatargpt.weight_average import WeightAverage

# -- Data: windows of tokens, memory-mapped -------------------------------------------------------


class Batches:
    """Random (x, y) windows of block_size tokens from a uint16 token file.

    With `bos_id`, every window starts at a sentence's <bos> (and runs on into the sentences
    after it): the model is then trained the way it is used — a prompt, or a sentence that is
    scored, begins with <bos> at position 0 — instead of mostly from the middle of a word.
    With `shuffle` too, the sentences after the first are drawn at random as well: neighbours
    in a corpus are related (a story's next line; Leipzig's sorted lines), and a model that
    learns to lean on them predicts a sentence on its own worse.
    np.memmap pages in only the windows that are read, so a file larger than memory works.
    """

    def __init__(self, path: Path, block_size: int, batch_size: int, device: torch.device,
                 seed: int, bos_id: int | None = None, shuffle: bool = False,
                 isolate_at: int | None = None):
        self.data = np.memmap(path, dtype=np.uint16, mode="r")
        self.isolate_at = isolate_at  # with a token id: each sentence begins at that token
        if len(self.data) < block_size + 2:
            raise utils.UserError(
                f"{path} holds {len(self.data)} tokens, fewer than one training window of "
                f"{block_size + 1}. Use a larger corpus or a smaller context (--block-size)."
            )
        self.block_size, self.batch_size, self.device = block_size, batch_size, device
        self.rng = np.random.default_rng(seed)
        self.starts = None  # the <bos> positions with a whole window after them
        self.sentences = None  # with shuffle: where each sentence begins, and the file's end
        if bos_id is not None:
            bos = np.flatnonzero(self.data == bos_id)
            starts = bos[bos < len(self.data) - block_size - 1]
            self.starts = starts if len(starts) else None
            if shuffle and len(bos):
                self.sentences = np.append(bos, len(self.data))

    def random_starts(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.starts is not None:
            return self.starts[rng.integers(0, len(self.starts), size=n)]
        return rng.integers(0, len(self.data) - self.block_size - 1, size=n)

    def next(self, rng: np.random.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        rng = rng or self.rng
        if self.sentences is not None:
            return self.to_device(np.stack([self.shuffled_window(rng)
                                            for _ in range(self.batch_size)]))
        return self.windows(self.random_starts(rng, self.batch_size))

    def shuffled_window(self, rng: np.random.Generator) -> np.ndarray:
        """block_size + 1 tokens: whole sentences (<bos> … <eos>) drawn at random, one after
        another; the last one is cut where the window ends."""
        need, parts = self.block_size + 1, []
        while need > 0:
            for i in rng.integers(0, len(self.sentences) - 1, size=8):
                part = self.data[self.sentences[i] : self.sentences[i + 1]][:need]
                parts.append(part)
                need -= len(part)
                if need == 0:
                    break
        return np.concatenate(parts)

    def sentence_ids(self, x: torch.Tensor) -> torch.Tensor | None:
        """For GPT.forward(sentences=...): the sentence of its window each token of x belongs
        to (the count of <bos> up to it), so that it attends only to its own sentence; None
        (attention across the whole window) unless the batches were made with `isolate_at`."""
        if self.isolate_at is None:
            return None
        return (x == self.isolate_at).cumsum(dim=1)

    def windows(self, starts: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, y) of the windows of block_size + 1 tokens that begin at `starts`."""
        return self.to_device(np.stack([self.data[s : s + self.block_size + 1] for s in starts]))

    def to_device(self, windows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
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


# -- Evaluation: the mean loss on val (and on as much train) --------------------------------------


def eval_windows(splits: dict[str, Batches], cfg: config.TrainConfig) -> dict[str, np.ndarray]:
    """The start of every window an evaluation reads, per split: the same ones every time.

    val: one pass over val.bin in consecutive windows (each token is predicted once), at
    most eval_iters batches of them; a small val split is read once, not many times over.
    train: as many windows, drawn at random positions (train.bin is the larger file).
    """
    val = splits["val"]
    n_val = (len(val.data) - 1) // val.block_size
    n = max(1, min(n_val, cfg.eval_iters * cfg.batch_size))
    rng = np.random.default_rng(cfg.seed + 1_000_003)
    starts = {}
    for name, batches in splits.items():
        if name == "val":
            starts[name] = np.arange(n) * val.block_size
        else:
            starts[name] = batches.random_starts(rng, n)
    return starts


def eval_batches(windows: dict[str, np.ndarray], batch_size: int) -> int:
    return sum(math.ceil(len(w) / batch_size) for w in windows.values())


@torch.no_grad()
def evaluate(model: GPT, splits: dict[str, Batches], cfg: config.TrainConfig, autocast,
             meta: dict, stop: tr.GracefulStop | None = None) -> dict:
    """Mean loss per token over the windows of eval_windows, for each split.

    Ctrl-C stops it at the next batch: an evaluation cut short is thrown away anyway.
    """
    model.eval()
    out = {}
    windows = eval_windows(splits, cfg)
    bar = tqdm(total=eval_batches(windows, cfg.batch_size), desc="evaluating", unit="batch", leave=False, delay=3,
               dynamic_ncols=True, disable=None)
    for name, batches in splits.items():
        total = torch.zeros((), device=batches.device)  # summed on the device: one read
        for i in range(0, len(windows[name]), cfg.batch_size):
            if stop is not None and stop.requested:
                bar.close()
                raise KeyboardInterrupt
            starts = windows[name][i : i + cfg.batch_size]
            x, y = batches.windows(starts)
            with autocast:
                _, loss = model(x, y, sentences=batches.sentence_ids(x))
            total += loss.float() * len(starts)
            bar.update(1)
        out[f"{name}_loss"] = total.item() / len(windows[name])
    bar.close()
    model.train()
    out["val_ppl"] = scoring.nats_to_ppl(out["val_loss"])
    # Bits per character: total nats of the val tokens spread over the val characters.
    out["val_bpc"] = scoring.nats_to_bpc(out["val_loss"] * meta["val_tokens"], meta["val_chars"])
    out["eval_tokens"] = len(windows["val"]) * splits["val"].block_size
    return out


# -- Model and optimizer --------------------------------------------------------------------------


def make_optimizer(model: GPT, cfg: config.TrainConfig, device: torch.device,
                   dtype: torch.dtype = torch.float32):
    """AdamW; the fused kernel on CUDA only (elsewhere it may ignore the fp16 scaler's
    found-inf signal), the multi-tensor one everywhere else. With cfg.optimizer "muon", the
    weight matrices AdamW would decay take Muon steps instead, at the same learning rate;
    Muon's Newton–Schulz iterations run in bf16 where the run computes in bf16 (a device
    where bf16 is fast), else in fp32."""
    groups = model.optim_groups(cfg.weight_decay)
    kernel = {"fused": True} if device.type == "cuda" else {"foreach": True}
    if cfg.optimizer == "muon":
        decayed, rest = groups[0]["params"], groups[1:]
        matrices = Muon(decayed, lr=cfg.lr, weight_decay=cfg.weight_decay,
                        ns_dtype=torch.bfloat16 if dtype == torch.bfloat16 else torch.float32)
        others = torch.optim.AdamW(rest, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), **kernel)
        return MuonAdamW(matrices, others)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), **kernel)


def make_scaler(device: torch.device, dtype: torch.dtype):
    """Loss scaling keeps fp16 gradients from underflowing; bf16 and fp32 need none."""
    enabled = dtype == torch.float16
    try:
        return torch.amp.GradScaler(device.type, enabled=enabled)
    except (RuntimeError, TypeError, ValueError) as e:
        tqdm.write(f"notice: no GradScaler on {device.type} ({e}); fp16 without loss scaling")
        return torch.amp.GradScaler(device.type, enabled=False)


def build_run(cfg: config.TrainConfig, model_cfg: config.ModelConfig, dist: tr.Dist, meta: dict,
              tokenizer: utils.Tokenizer, stats: dict, files: tr.RunFiles, log,
              started: float) -> tr.Run:
    """Device, precision, model, data, optimizer: a run ready for its first step."""
    device, why = devices.select_device(cfg.device)
    device = dist.setup(device)
    tr.check_device_support(device, model_cfg)
    dtype, dtype_why = devices.pick_dtype(device, cfg.dtype, model_cfg)
    log(f"device: {device} ({why})")
    log(f"precision: {devices.dtype_name(dtype)} ({dtype_why})")
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")  # TF32 for fp32 matmuls on Ampere and later

    devices.set_seed(cfg.seed)  # the same initial weights on every rank
    model = GPT(model_cfg).to(device)
    if dist.rank:
        devices.set_seed(cfg.seed + dist.rank)  # but each rank its own dropout masks
    processed = Path(cfg.data_dir) / "processed"
    bos = meta.get("bos_id", config.BOS_ID) if cfg.sentence_starts else None
    isolate = meta.get("bos_id", config.BOS_ID) if cfg.isolate_sentences else None
    train_batches = Batches(processed / "train.bin", model_cfg.block_size, cfg.batch_size,
                            device, seed=cfg.seed + dist.rank, bos_id=bos,  # own windows per rank
                            shuffle=cfg.shuffle_sentences, isolate_at=isolate)
    val_batches = Batches(processed / "val.bin", model_cfg.block_size, cfg.batch_size,
                          device, seed=cfg.seed, bos_id=bos, isolate_at=isolate)
    autocast = (torch.autocast(device.type, dtype=dtype) if dtype != torch.float32
                else nullcontext())
    net = tr.maybe_compile(model, cfg, train_batches, autocast, log)
    if dist.enabled:
        net = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None)
    return tr.Run(cfg, model_cfg, dist, device, dtype, dtype_why, model, net,
               make_optimizer(model, cfg, device, dtype), make_scaler(device, dtype), autocast,
               train_batches, val_batches, meta, tokenizer.hash, stats, files, log,
               tr.Progress(), started,
               average=WeightAverage(model, cfg.ema) if cfg.ema > 0 else None)


# -- Training: one step, and the loop -------------------------------------------------------------


def train_step(run: tr.Run) -> torch.Tensor:
    """One optimizer step: grad_accum micro-batches under autocast, clipping, AdamW.

    Returns the step's mean loss as a tensor on the device: reading it (.item()) would make
    the CPU wait for the GPU instead of queueing the next micro-batch.
    """
    cfg, run.in_step = run.cfg, True
    loss_sum = torch.zeros((), device=run.device)
    for micro in range(cfg.grad_accum):
        last = micro == cfg.grad_accum - 1
        # DDP all-reduces the gradients on the last micro-batch only.
        with nullcontext() if last or not run.dist.enabled else run.net.no_sync():
            x, y = run.train_batches.next()
            with run.autocast:
                _, loss = run.net(x, y, sentences=run.train_batches.sentence_ids(x))
            run.scaler.scale(loss / cfg.grad_accum).backward()
        loss_sum += loss.detach().float()
    if cfg.grad_clip > 0:
        run.scaler.unscale_(run.optimizer)
        torch.nn.utils.clip_grad_norm_(run.net.parameters(), cfg.grad_clip)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.optimizer.zero_grad(set_to_none=True)
    if run.average is not None:
        run.average.update(run.progress.it)
    run.in_step = False
    return loss_sum / cfg.grad_accum


def evaluate_and_save(run: tr.Run) -> bool:
    """Evaluate on rank 0, save last.pt (and best_model.pt when val improved); True when
    early stopping says stop (on every rank)."""
    start, p, cfg = time.perf_counter(), run.progress, run.cfg
    metrics, improved, stop = {}, False, False
    if run.dist.master:
        with run.average.swapped_in() if run.average else nullcontext():
            metrics = evaluate(run.model, {"train": run.train_batches, "val": run.val_batches},
                               cfg, run.autocast, run.meta, run.stop)
        improved = metrics["val_loss"] < p.best_val
        if improved:
            p.best_val, p.bad_evals = metrics["val_loss"], 0
        else:
            p.bad_evals += 1
        tr.append_log(run.files.log, {"type": "eval", "iter": p.it, **metrics,
                                      "time_s": round(p.train_time, 2)})
        run.log(f"eval  iter {p.it:>6} | train {metrics['train_loss']:.4f} | "
                f"val {metrics['val_loss']:.4f} | ppl {metrics['val_ppl']:.2f} | "
                f"bpc {metrics['val_bpc']:.3f}{' | best' if improved else ''}")
        stop = cfg.patience > 0 and p.bad_evals >= cfg.patience
    stop = run.dist.any(stop)
    p.finished = stop or p.it >= cfg.max_iters
    p.evaluated = p.it
    state = tr.checkpoint_state(run, metrics)  # every rank takes part in the gathering
    if run.dist.master:
        fileio.atomic_save(state, run.files.last)
        if improved:
            fileio.atomic_save(state, run.files.best)
        if run.files.staged and p.it > 0:
            run.files.promote()
            run.log(f"the new run has trained: its files now replace the old ones in "
                    f"{run.files.out_dir}")
    run.eval_seconds = time.perf_counter() - start
    return stop


def train_loop(run: tr.Run) -> int:
    """Evaluate and save, step, log until max_iters (or early stopping); the exit status.

    The evaluation runs inside the loop, at iteration 0, every eval_interval steps and at the
    last step; one cut short by Ctrl-C runs again when the run is resumed. The device is read
    once per logged step, not once per step: the loss and a flag that remembers any
    non-finite loss stay on it in between.
    """
    cfg, p = run.cfg, run.progress
    bar = tqdm(total=cfg.max_iters, initial=p.it, desc="training", unit="it",
               dynamic_ncols=True, disable=None if run.dist.master else True)
    nonfinite = torch.zeros((), dtype=torch.bool, device=run.device)
    clock, steps = time.perf_counter(), 0
    while True:
        last_step = p.it >= cfg.max_iters
        if (p.it % cfg.eval_interval == 0 or last_step) and p.evaluated < p.it:
            if evaluate_and_save(run):
                run.log(f"early stopping: no val improvement in {cfg.patience} evaluations")
                break
            if cfg.time_budget > 0 and not cfg.resume and not last_step:
                # --time-budget: the plan again, from the steps timed so far.
                replanned = tr.replan_time_budget(run, bar)
                if replanned is not None:
                    cfg = run.cfg = replanned
                    last_step = p.it >= cfg.max_iters
            clock = time.perf_counter()  # evaluation time is not training time
        if last_step:
            break
        if run.stop is not None and run.stop.requested:
            raise KeyboardInterrupt
        lr = lr_at(p.it, cfg)
        for group in run.optimizer.param_groups:
            group["lr"] = lr
        loss = train_step(run)
        nonfinite |= ~torch.isfinite(loss)
        p.it, p.tokens_seen, steps = p.it + 1, p.tokens_seen + run.tokens_per_iter, steps + 1
        bar.update(1)
        if cfg.time_budget > 0 and not cfg.resume:
            # --time-budget: after a few timed steps, max_iters is planned once, here.
            planned = tr.plan_time_budget(run, bar)
            if planned is not None:
                cfg = run.cfg = planned
        last_step = p.it >= cfg.max_iters
        if p.it % cfg.log_interval == 0 or p.it % cfg.eval_interval == 0 or last_step:
            devices.sync(run.device)
            now = time.perf_counter()
            p.train_time += now - clock
            tok_s = run.tokens_per_iter * steps / max(now - clock, 1e-9)
            clock, steps = now, 0
            if run.dist.any(bool(nonfinite)):
                bar.close()
                return tr.stop_on_nonfinite(run, loss.item())
            value = loss.item()
            bar.set_postfix(loss=f"{value:.3f}", lr=f"{lr:.2e}", tok_s=f"{tok_s:,.0f}")
            if run.dist.master:
                tr.append_log(run.files.log, {
                    "type": "train", "iter": p.it, "loss": value, "lr": lr,
                    "tokens_per_s": round(tok_s, 1), "time_s": round(p.train_time, 2)})
    bar.close()
    return 0


def train(cfg: config.TrainConfig, shape: dict, explicit: set[str], dist: tr.Dist,
          estimate: bool = False) -> int:
    """Set up (inputs, settings, device, model, data, optimizer), then the loop."""
    started = time.perf_counter()
    log = tqdm.write if dist.master else (lambda *a, **k: None)
    cfg, model_cfg, state, files, (tokenizer, meta, stats) = tr.start(cfg, shape, explicit,
                                                                     estimate, log, dist, started)
    run = build_run(cfg, model_cfg, dist, meta, tokenizer, stats, files, log, started)
    if "max_iters" in explicit:
        run.budget.cap = cfg.max_iters  # --time-budget never plans beyond an explicit max
    if estimate:
        splits = {"train": run.train_batches, "val": run.val_batches}
        tr.estimate_duration(run, eval_batches(eval_windows(splits, cfg), cfg.batch_size))
        return 0
    tr.describe(run, shape, resumed=state is not None)
    if state is not None:
        tr.restore(run, state)
    elif dist.master:
        files.start()
    try:
        with tr.GracefulStop(enabled=not dist.enabled) as run.stop:
            try:
                status = train_loop(run)
            except KeyboardInterrupt:
                return tr.interrupted(run)
    finally:
        if dist.master:
            files.discard()  # a staged run that never replaced the old files leaves nothing
    tr.finish(run, status)
    return status


def main(argv: list[str] | None = None) -> int:
    args = tr.build_parser().parse_args(argv)
    estimate, status, summary = (args.__dict__.pop(k) for k in ("estimate", "status", "summary"))
    dist = tr.Dist()

    def work() -> int:
        if status or summary:  # what a folder holds: run_pipeline.sh asks this
            tr.print_folder(args, summary)
            return 0
        cfg, shape, explicit = tr.parse_config(args)
        tr.check_train_config(cfg)
        if cfg.plot:
            tr.plot_only(cfg)
            return 0
        return train(cfg, shape, explicit, dist, estimate)

    exit_code = 1
    try:
        exit_code = utils.run_cli(work, "training had not begun, so nothing was written")
        return exit_code
    finally:
        dist.teardown(finished=exit_code == 0)


if __name__ == "__main__":
    sys.exit(main())
