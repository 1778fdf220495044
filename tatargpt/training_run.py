"""Running a training: everything 03_train.py needs that is not the training itself.

03_train.py is the lesson (data, model, optimizer, the loop). This module is what makes a
run safe and convenient, and a first reading can skip it:

- command line: one flag per TrainConfig and ModelConfig field (`build_parser`);
- several processes under torchrun (`Dist`);
- the files of a run (`RunFiles`): a fresh run over a trained model is refused, and
  --overwrite writes into OUT_DIR/.incoming/ until its first evaluation, then promotes;
- what a folder holds (`model_status` for --status, `print_summary`, `plot_loss_curve`);
- resuming: the checkpoint read on the CPU and checked, the settings reconciled with the
  flags given now (`load_resume_state`, `resolve_configs`, `restore`), the state saved
  (`checkpoint_state`);
- --estimate and --time-budget (`estimate_duration`, `plan_time_budget`);
- Ctrl-C (`GracefulStop`, `interrupted`) and a loss that stops being finite.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import sys
import threading
import time
import typing
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import config
from model import GPT
from tatargpt import budget, checkpoints, devices, fileio, scoring, tokenization
from tatargpt.cli import add_flag
from tatargpt.errors import UserError
from tatargpt.weight_average import WeightAverage

# ---------------------------------------------------------------------------
# Command line: one flag per TrainConfig field, and one per ModelConfig field
# ---------------------------------------------------------------------------


MODEL_CHOICES = {"norm": config.NORMS, "mlp": config.MLPS, "pos_encoding": config.POS_ENCODINGS,
                 "attention": config.ATTENTIONS}

INVOCATION_FIELDS = {"preset", "data_dir", "tokenizer_dir", "out_dir", "device", "compile",
                     "resume", "overwrite", "time_budget", "plot"}

def flag(name: str) -> str:
    return "--" + name.replace("_", "-")



def optional_int(text: str) -> int | None:
    """An int, or None for 'none' (n_kv_head, sliding_window)."""
    if text.strip().lower() in ("none", "off", "0"):
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number or 'none', got {text!r}") from None



def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Train Tatar-GPT on data/processed/*.bin (see README.md).",
        epilog="Defaults come from config.TrainConfig, the preset's TRAIN_PRESETS entry and "
               "config.PRESETS; with --resume, from the checkpoint.",
    )
    # Every flag defaults to None: what was not given comes from the preset (or a resumed
    # checkpoint), so the help shows the dataclass's default (TrainConfig) or small's (shape).
    hints = typing.get_type_hints(config.TrainConfig)
    for f in fields(config.TrainConfig):
        kwargs = ({"choices": list(config.PRESETS)} if f.name == "preset" else
                  {"choices": list(config.OPTIMIZERS)} if f.name == "optimizer" else {})
        if hints[f.name] is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["shown"] = str(f.default)
        add_flag(parser, f.name, hints[f.name], None, config.TRAIN_HELP[f.name], **kwargs)
    shape = parser.add_argument_group(
        "model shape", "applied on top of --preset and recorded in the checkpoint; "
                       "defaults are the preset's (small shown)")
    small = config.get_preset("small")
    hints = typing.get_type_hints(config.ModelConfig)
    for f in fields(config.ModelConfig):
        if f.name not in config.MODEL_HELP:
            continue
        kind = hints[f.name]
        kwargs = {"action": argparse.BooleanOptionalAction} if kind is bool else {}
        if type(None) in typing.get_args(kind):
            kwargs.update(type=optional_int, metavar="N|none")
        elif f.name in MODEL_CHOICES:
            kwargs["choices"] = MODEL_CHOICES[f.name]
        add_flag(shape, f.name, kind, None,
                 f"{config.MODEL_HELP[f.name]} (small: {getattr(small, f.name)})", **kwargs)
    parser.add_argument("--estimate", action="store_true",
                        help="time a few micro-batches, print the expected training time, exit")
    parser.add_argument("--status", action="store_true",
                        help="print what OUT_DIR holds as one line and exit: fresh | stale | "
                             "other | done | resume, a tab, and the model that would be lost by "
                             "replacing the tokenizer (empty if none); see model_status")
    parser.add_argument("--summary", action="store_true",
                        help="print the figures of OUT_DIR/best_model.pt (and of eval.json "
                             "beside it) and exit")
    return parser



def parse_config(args: argparse.Namespace) -> tuple[config.TrainConfig, dict, set[str]]:
    """(TrainConfig, model-shape overrides, names of the training flags given explicitly)."""
    given = {k: v for k, v in vars(args).items() if v is not None}
    shape = {k: given.pop(k) for k in list(given) if k in config.MODEL_HELP}
    explicit = set(given)
    try:
        cfg = config.get_train_config(given.pop("preset", "small"), **given)
    except ValueError as e:
        raise UserError(str(e)) from e
    return cfg, shape, explicit



def check_train_config(cfg: config.TrainConfig) -> None:
    for name in ("max_iters", "eval_interval", "eval_iters", "log_interval", "batch_size",
                 "grad_accum"):
        if getattr(cfg, name) <= 0:
            raise UserError(f"{flag(name)} must be positive, got {getattr(cfg, name)}")
    for name in ("lr", "min_lr", "weight_decay", "beta1", "beta2", "grad_clip", "time_budget"):
        value = getattr(cfg, name)
        if not math.isfinite(value) or value < 0:
            raise UserError(f"{flag(name)} must be a finite number ≥ 0, got {value}")
    if cfg.lr <= 0 or cfg.min_lr > cfg.lr:
        raise UserError(f"need 0 ≤ --min-lr ≤ --lr and --lr > 0; got lr={cfg.lr}, "
                        f"min_lr={cfg.min_lr}")
    if not (cfg.beta1 < 1 and cfg.beta2 < 1):
        raise UserError(f"--beta1 and --beta2 must be below 1; got {cfg.beta1}, "
                        f"{cfg.beta2}")
    if cfg.patience < 0 or cfg.warmup_iters < 0 or cfg.lr_decay_iters < 0:
        raise UserError("--patience, --warmup-iters and --lr-decay-iters must be ≥ 0")
    if not (math.isfinite(cfg.ema) and 0 <= cfg.ema < 1):
        raise UserError(f"--ema is the decay of the weights' average: at least 0 (off) and "
                        f"below 1, e.g. 0.99; got {cfg.ema}")
    if cfg.resume and cfg.overwrite:
        raise UserError("--resume continues the run in --out-dir and --overwrite starts "
                        "a new one there: choose one of them")


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
        self.device = torch.device("cpu")

    def setup(self, device: torch.device) -> torch.device:
        """Join the process group; return this rank's device."""
        if self.enabled and device.type == "mps":
            raise UserError(
                "torchrun with Apple MPS is not possible: gloo, the only backend on a Mac, "
                "cannot all-reduce MPS tensors. One process already uses the whole Apple GPU: "
                "run python 03_train.py without torchrun (or add --device cpu to try DDP).")
        if self.enabled:
            if device.type == "cuda":
                device = torch.device("cuda", self.local_rank)
                torch.cuda.set_device(device)
            torch.distributed.init_process_group(backend="nccl" if device.type == "cuda"
                                                 else "gloo")
        self.device = device
        return device

    def any(self, value: bool) -> bool:
        """True on every rank when `value` is True on at least one rank."""
        if not self.enabled:
            return value
        # NCCL reduces CUDA tensors only: the flag lives on the training device.
        t = torch.tensor([float(value)], device=self.device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return bool(t.item())

    def min(self, value: int) -> int:
        """The smallest `value` of all ranks, on every rank."""
        if not self.enabled:
            return value
        t = torch.tensor([value], dtype=torch.long, device=self.device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MIN)
        return int(t.item())

    def max(self, value: int) -> int:
        """The largest `value` of all ranks, on every rank."""
        return -self.min(-value)

    def gather(self, obj) -> list:
        """`obj` of every rank, in rank order (every rank must call this)."""
        if not self.enabled:
            return [obj]
        out = [None] * self.world_size
        torch.distributed.all_gather_object(out, obj)
        return out

    def teardown(self, finished: bool) -> None:
        """Leave the process group. After a run that finished on this rank, first wait until
        every rank has finished (a barrier), so that no process closes its connections and
        exits while another still sends to it or writes its checkpoint. A rank that failed
        leaves at once: torchrun then stops the others."""
        if not (self.enabled and torch.distributed.is_initialized()):
            return
        if finished:
            try:
                torch.distributed.barrier(
                    device_ids=[self.device.index] if self.device.type == "cuda" else None)
            except RuntimeError as err:  # another rank is gone; torchrun reports its failure
                print(f"rank {self.rank}: another process left before the end ({err})",
                      file=sys.stderr)
        torch.distributed.destroy_process_group()


# ---------------------------------------------------------------------------
# The files of a run: checkpoints, log, plot
# ---------------------------------------------------------------------------


CHECKPOINTS = ("best_model.pt", "last.pt")

RUN_FILES = (*CHECKPOINTS, "train_log.jsonl", "loss_curve.png")

STALE_WITH_THE_MODEL = ("eval.json", "eval.png")  # 04_evaluate.py's figures of the old model

class RunFiles:
    """Where a run writes.

    A run with --overwrite into a folder that holds a model writes into OUT_DIR/.incoming/
    until its first evaluation after training steps; `promote` then moves its files over the
    old ones. A run that fails or is stopped before that leaves the old model untouched.
    """

    def __init__(self, out_dir: Path, staged: bool):
        self.out_dir, self.staged = out_dir, staged
        self.write_to(out_dir / ".incoming" if staged else out_dir)

    def write_to(self, folder: Path) -> None:
        """The folder this run writes into, and the paths of its files there."""
        self.dir = folder
        self.best, self.last, self.log, self.png = (folder / name for name in RUN_FILES)

    def start(self) -> None:
        """An empty log in a clean folder (the staging folder of a crashed run is removed)."""
        if self.staged:
            shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True, exist_ok=True)
        fileio.atomic_write_text(self.log, "")

    def promote(self) -> None:
        """Replace the previous run's files with this run's."""
        if not self.staged:
            return
        for name in RUN_FILES:
            if (self.dir / name).is_file():
                os.replace(self.dir / name, self.out_dir / name)
            else:
                (self.out_dir / name).unlink(missing_ok=True)
        for name in STALE_WITH_THE_MODEL:
            (self.out_dir / name).unlink(missing_ok=True)
        shutil.rmtree(self.dir, ignore_errors=True)
        self.write_to(self.out_dir)
        self.staged = False

    def discard(self) -> None:
        """Drop the files of a run that never got as far as replacing the old ones."""
        if self.staged:
            shutil.rmtree(self.dir, ignore_errors=True)



def run_files(cfg: config.TrainConfig, estimate: bool) -> RunFiles:
    """The files of this run; a fresh run over a trained model is refused without --overwrite."""
    out_dir = Path(cfg.out_dir)
    held = [name for name in CHECKPOINTS if (out_dir / name).is_file()]
    if cfg.resume or estimate or not held:
        return RunFiles(out_dir, staged=False)
    if not cfg.overwrite:
        raise UserError(
            f"{out_dir} already holds a trained model ({', '.join(held)}), and a fresh run "
            f"would replace it. Continue that run: python 03_train.py --resume --out-dir "
            f"{out_dir}; train beside it: --out-dir {out_dir}_2; or replace it: add "
            f"--overwrite (the old files stay until the new run has passed its first "
            f"evaluation).")
    return RunFiles(out_dir, staged=True)



def append_log(path: Path, row: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


# ---------------------------------------------------------------------------
# What a folder holds (--status, --summary, --plot: run_pipeline.sh asks these)
# ---------------------------------------------------------------------------


def _peek(path: Path) -> dict | None:
    """A checkpoint's contents, or None when it is missing, damaged or not ours."""
    try:
        return checkpoints.load_checkpoint(path)
    except (UserError, OSError):  # for a status, simply not usable
        return None



def model_status(out_dir: Path, tokenizer_dir: Path, preset: str | None,
                 max_iters: int | None) -> tuple[str, str]:
    """(state, held) of a training folder, as a rerun with these settings would find it.

    state: "fresh" (no checkpoint), "stale" (last.pt unreadable, or made with another
    tokenizer than the one in `tokenizer_dir`: nothing to continue), "other" (a model of
    another preset than `preset`), "done" (trained to `max_iters`, or to its own when none is
    given, and best_model.pt exists) or "resume". held: "preset P, N iterations" when
    best_model.pt was trained with this tokenizer (redoing the tokenizer would orphan it),
    else "".
    """
    last, best = out_dir / "last.pt", out_dir / "best_model.pt"
    try:
        current = tokenization.tokenizer_hash(tokenizer_dir)
    except OSError:
        current = None
    best_ckpt = _peek(best)
    held = ""
    if best_ckpt is not None and current and best_ckpt.get("tokenizer_hash") == current:
        held = (f"preset {best_ckpt.get('train_config', {}).get('preset', '?')}, "
                f"{best_ckpt.get('iter', '?')} iterations")
    if not (last.is_file() or best.is_file()):
        return "fresh", held
    ckpt = _peek(last)
    if ckpt is None or current is None or ckpt.get("tokenizer_hash") != current:
        return "stale", held
    tc = ckpt.get("train_config") or {}
    if preset is not None and tc.get("preset") != preset:
        return "other", held
    target = max_iters or tc.get("max_iters", 0)
    finished = ckpt.get("finished") and not max_iters
    # An evaluation cut short by Ctrl-C runs again on --resume: not done until it has.
    evaluated = ckpt.get("evaluated_iter", ckpt.get("iter")) == ckpt.get("iter")
    if (finished or ckpt.get("iter", 0) >= target) and evaluated and best.is_file():
        return "done", held
    return "resume", held



def print_summary(out_dir: Path) -> None:
    """The best checkpoint's iteration and val figures, and 04_evaluate.py's comparison."""
    best = out_dir / "best_model.pt"
    ckpt = _peek(best)
    if ckpt is None:
        raise UserError(f"no readable checkpoint at {best}; train first: "
                        f"python 03_train.py --out-dir {out_dir}")
    tc = ckpt.get("train_config") or {}
    print(f"  checkpoint: {best} (preset {tc.get('preset', '?')}, "
          f"iteration {ckpt.get('iter', '?')})")
    m = ckpt.get("metrics") or {}
    if "val_loss" in m:
        bpc = f" | bits per char {m['val_bpc']:.3f}" if "val_bpc" in m else ""
        print(f"  val loss {m['val_loss']:.4f} | perplexity "
              f"{scoring.nats_to_ppl(m['val_loss']):.2f}{bpc}")
    ev_path = out_dir / "eval.json"
    if ev_path.is_file():
        try:
            e = fileio.read_json(ev_path, f"python 04_evaluate.py --checkpoint {best}")
            print(f"  val.txt bits per char: GPT {e['gpt']['bpc']:.3f} vs "
                  f"{e['ngram']['order']}-gram {e['ngram']['bpc']:.3f}; vowel-harmony pairs: "
                  f"GPT {e['gpt']['harmony_accuracy']:.1%} vs n-gram "
                  f"{e['ngram']['harmony_accuracy']:.1%}")
        except (UserError, KeyError, TypeError, ValueError):
            print(f"  {ev_path} is damaged; re-create it: python 04_evaluate.py")



def plot_loss_curve(log_path: Path, png_path: Path) -> bool:
    """Draw train/val loss and the learning rate from train_log.jsonl; False if no data."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = checkpoints.read_train_log(log_path)
    train = [r for r in rows if r["type"] == "train" and "loss" in r and "lr" in r]
    evals = [r for r in rows if r["type"] == "eval" and "val_loss" in r and "train_loss" in r]
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
    with fileio.atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return True


# ---------------------------------------------------------------------------
# Setting up: inputs, configs, device support, compilation
# ---------------------------------------------------------------------------


RESUME_KEYS = ("model", "model_config", "train_config", "optimizer", "iter", "best_val_loss",
               "rng", "data_rng", "tokenizer_hash")

def load_inputs(cfg: config.TrainConfig) -> tuple[tokenization.Tokenizer, dict, dict]:
    """The tokenizer, meta.json (checked against it and the token files), and corpus stats."""
    tokenizer = tokenization.load_tokenizer(cfg.tokenizer_dir)
    meta = tokenization.check_token_files(cfg.data_dir, cfg.tokenizer_dir)
    stats_path = Path(cfg.data_dir) / "processed" / "stats.json"
    stats = {}
    if stats_path.is_file():
        try:
            stats = fileio.read_json(stats_path, "python 01_prepare_data.py")
        except UserError as e:  # only copied into the checkpoint: a notice is enough
            tqdm.write(f"notice: {e}")
    return tokenizer, meta, stats



def load_resume_state(path: Path, tokenizer: tokenization.Tokenizer) -> dict:
    """last.pt, read into CPU memory (random states must be CPU tensors), checked."""
    if not path.is_file():
        raise UserError(f"--resume: there is no {path} to continue. Start a fresh run "
                        f"without --resume.")
    state = checkpoints.load_checkpoint(path)
    missing = [k for k in RESUME_KEYS if k not in state]
    if missing:
        raise UserError(f"{path} lacks {', '.join(missing)}, so it is not a training "
                        f"state that can be resumed (made by another version of "
                        f"03_train.py?). Start a new run with --overwrite.")
    if state["tokenizer_hash"] != tokenizer.hash:
        raise UserError(f"{path} was trained with a different tokenizer than "
                        f"{tokenizer.path}/tokenizer.json. Point --tokenizer-dir at the "
                        f"one it was trained with, or start a new run with --overwrite.")
    return state



def resolve_configs(cfg: config.TrainConfig, shape: dict, explicit: set[str],
                    tokenizer: tokenization.Tokenizer, meta: dict, state: dict | None,
                    log) -> tuple[config.TrainConfig, config.ModelConfig]:
    """The configs this run trains with.

    Fresh: the preset, the shape flags on top, the tokenizer's vocabulary size. Resumed: the
    checkpoint's model (shape flags that contradict it are refused) and its training settings,
    except the flags given now, which are reported.
    """
    if state is None:
        try:
            model_cfg = config.get_preset(cfg.preset, vocab_size=tokenizer.vocab_size, **shape)
        except (ValueError, TypeError) as e:
            raise UserError(f"the model shape is not valid: {e}") from e
    else:
        saved_train, model_cfg = state["train_config"], config.ModelConfig.from_dict(
            state["model_config"])
        conflicts = [f"{flag(k)} {v} (the checkpoint has {getattr(model_cfg, k)})"
                     for k, v in shape.items() if getattr(model_cfg, k) != v]
        if "preset" in explicit and cfg.preset != saved_train.get("preset"):
            conflicts.insert(0, f"--preset {cfg.preset} (the checkpoint is "
                                f"{saved_train.get('preset')})")
        saved_optimizer = saved_train.get("optimizer", "adamw")  # (older checkpoints: AdamW)
        if "optimizer" in explicit and cfg.optimizer != saved_optimizer:
            conflicts.append(f"--optimizer {cfg.optimizer} (the checkpoint holds the state of "
                             f"{saved_optimizer})")
        if conflicts:
            raise UserError(
                f"--resume continues the model saved in {cfg.out_dir}, but "
                f"{'; '.join(conflicts)}. Drop those flags to continue it, or train the new "
                f"model as a new run: --overwrite, or another --out-dir.")
        values, changed = {}, []
        for f in fields(config.TrainConfig):
            mine = getattr(cfg, f.name)
            if f.name in INVOCATION_FIELDS or f.name not in saved_train:
                values[f.name] = mine
            elif f.name in explicit and mine != saved_train[f.name]:
                values[f.name] = mine
                changed.append(f"{flag(f.name)} {saved_train[f.name]} → {mine}")
            else:
                values[f.name] = saved_train[f.name]
        values["preset"] = saved_train.get("preset", cfg.preset)
        if "time_budget" in explicit:
            log(f"notice: --time-budget plans a fresh run only; resuming keeps its plan of "
                f"{values['max_iters']:,} iterations")
        if changed:
            log("resuming with changed settings: " + "; ".join(changed))
        cfg = config.TrainConfig(**values)
    model_cfg.gradient_checkpointing = cfg.gradient_checkpointing
    if model_cfg.vocab_size != meta["vocab_size"]:
        raise UserError(
            f"the model's vocabulary ({model_cfg.vocab_size}) does not match the token files "
            f"({meta['vocab_size']}). Start a new run with --overwrite.")
    return cfg, model_cfg



def check_device_support(device: torch.device, model_cfg: config.ModelConfig) -> None:
    if device.type == "mps" and model_cfg.gradient_checkpointing and (
            model_cfg.dropout > 0 or model_cfg.attn_dropout > 0):
        raise UserError(
            "gradient checkpointing with dropout on Apple MPS would train on wrong gradients: "
            "torch's checkpoint does not restore the MPS random state, so the recomputed "
            "forward pass draws other dropout masks. Add --dropout 0 --attn-dropout 0, or "
            "train without --gradient-checkpointing.")



def maybe_compile(model: GPT, cfg: config.TrainConfig, batches, autocast, log):
    """torch.compile the model, trying it on one batch; on failure keep the eager model."""
    if not cfg.compile:
        return model
    log("compiling the model with torch.compile (the first step takes a while)…")
    try:
        compiled = torch.compile(model)
        x, y = batches.next(np.random.default_rng(0))
        with autocast:
            _, loss = compiled(x, y, sentences=batches.sentence_ids(x))
        loss.backward()
        model.zero_grad(set_to_none=True)
        return compiled
    except Exception as e:  # compilers fail in many ways (no C compiler, unsupported op, …)
        log(f"notice: torch.compile failed ({type(e).__name__}: {str(e)[:200]}); "
            f"training without it")
        model.zero_grad(set_to_none=True)
        return model


# ---------------------------------------------------------------------------
# The state of a run, saved in every checkpoint and restored by --resume
# ---------------------------------------------------------------------------


@dataclass
class Progress:
    """What changes as training goes on; saved in every checkpoint."""

    it: int = 0
    evaluated: int = -1  # the iteration last evaluated and saved (-1: none yet)
    best_val: float = float("inf")
    bad_evals: int = 0
    tokens_seen: int = 0
    train_time: float = 0.0
    finished: bool = False



@dataclass
class BudgetClock:
    """--time-budget: when the plan is made and from which measurements."""

    warm_at: int = 1  # iterations untimed (allocations, kernel choice)
    warm_time: float | None = None
    measure: int = 5  # iterations timed after that, at most
    cap: int | None = None  # an explicit --max-iters: the plan never goes beyond it



@dataclass
class Run:
    """Everything one training run works with."""

    cfg: config.TrainConfig
    model_cfg: config.ModelConfig
    dist: Dist
    device: torch.device
    dtype: torch.dtype
    dtype_why: str
    model: GPT  # the plain model: its state_dict is what checkpoints hold
    net: torch.nn.Module  # what the loop calls: the model, compiled and/or wrapped in DDP
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    autocast: object
    train_batches: object  # 03_train.py's Batches
    val_batches: object
    meta: dict
    tokenizer_hash: str
    stats: dict
    files: RunFiles
    log: object
    progress: Progress
    started: float  # time.perf_counter() when train() began
    eval_seconds: float = 0.0  # how long the last evaluation and save took
    in_step: bool = False  # True while parameters are being updated (not a state to save)
    stop: GracefulStop | None = None
    budget: BudgetClock = field(default_factory=BudgetClock)
    average: WeightAverage | None = None  # --ema: the averaged weights, evaluated and saved

    @property
    def tokens_per_iter(self) -> int:
        return (self.cfg.batch_size * self.model_cfg.block_size * self.cfg.grad_accum
                * self.dist.world_size)



def checkpoint_state(run: Run, metrics: dict, gather: bool = True) -> dict:
    """Everything needed to continue exactly, and to describe the model later.

    With several processes every rank must call this (gather=True): rank 0 saves every rank's
    random states and data position.
    """
    p = run.progress
    rng, data_rng = devices.rng_state(), run.train_batches.rng.bit_generator.state
    ranks = run.dist.gather((rng, data_rng)) if gather else [(rng, data_rng)]
    return {
        "format": checkpoints.CHECKPOINT_FORMAT,
        # With --ema the model later stages load is the average; training goes on from its own.
        "model": run.average.state_dict() if run.average else run.model.state_dict(),
        "trained_weights": run.model.state_dict() if run.average else None,
        "model_config": run.model_cfg.to_dict(),
        "train_config": run.cfg.to_dict(),
        "tokenizer_hash": run.tokenizer_hash,
        "vocab_size": run.model_cfg.vocab_size,
        "iter": p.it,
        "evaluated_iter": p.evaluated,
        "best_val_loss": p.best_val,
        "bad_evals": p.bad_evals,
        "finished": p.finished,
        "metrics": metrics,
        "optimizer": run.optimizer.state_dict(),
        "scaler": run.scaler.state_dict() if run.scaler.is_enabled() else None,
        "rng": rng,  # this rank's (rank 0's in the saved file)
        "rng_ranks": [r for r, _ in ranks],
        "data_rng": [d for _, d in ranks],
        "device": str(run.device),
        "dtype": devices.dtype_name(run.dtype),
        "dtype_reason": run.dtype_why,
        "world_size": run.dist.world_size,
        "tokens_seen": p.tokens_seen,
        "train_time_s": p.train_time,
        "init": "random (trained from scratch, no pretrained weights)",
        "data_stats": run.stats,
        "meta": run.meta,
        "torch_version": str(torch.__version__),
    }



def restore(run: Run, state: dict) -> None:
    """Put a resumed run back exactly where last.pt left it."""
    try:
        run.model.load_state_dict(state.get("trained_weights") or state["model"])
        run.optimizer.load_state_dict(state["optimizer"])
        if run.average is not None:  # the saved average (saved without --ema: the weights)
            run.average.load_state_dict(state["model"])
    except (RuntimeError, ValueError, KeyError) as e:
        raise UserError(
            f"{run.files.last} holds a model or optimizer of another shape than this run "
            f"builds ({str(e).splitlines()[0][:160]}). Start a new run with --overwrite."
        ) from e
    if state.get("scaler") and run.scaler.is_enabled():
        run.scaler.load_state_dict(state["scaler"])
    p, rank = run.progress, run.dist.rank
    p.it, p.best_val = state["iter"], state["best_val_loss"]
    p.evaluated = state.get("evaluated_iter", p.it)  # older checkpoints: saved by evaluations
    p.bad_evals = state.get("bad_evals", 0)
    p.tokens_seen = state.get("tokens_seen", 0)
    p.train_time = state.get("train_time_s", 0.0)
    rngs = state.get("rng_ranks") or [state["rng"]]
    if rank < len(rngs):
        devices.set_rng_state(rngs[rank])
    else:  # saved by fewer processes: this rank starts fresh, but differently from the others
        devices.set_seed(run.cfg.seed + rank + 7919 * p.it)
    data_rng = state["data_rng"]
    if rank < len(data_rng):
        run.train_batches.rng.bit_generator.state = data_rng[rank]
    else:
        run.train_batches.rng = np.random.default_rng(run.cfg.seed + rank + 7919 * p.it)
    if run.dist.master:  # drop log rows written after the saved state
        rows = [r for r in checkpoints.read_train_log(run.files.log) if r["iter"] <= p.it]
        fileio.atomic_write_text(run.files.log, "".join(json.dumps(r) + "\n" for r in rows))
    run.log(f"resuming from {run.files.last} at iteration {p.it}")


# ---------------------------------------------------------------------------
# --estimate and --time-budget
# ---------------------------------------------------------------------------


def estimate_duration(run: Run, eval_batches: int) -> None:
    """Time a few real micro-batches and print how long cfg.max_iters iterations would take;
    an evaluation runs `eval_batches` forward passes."""
    cfg, model, device = run.cfg, run.model, run.device
    model.train()

    def micro_step() -> None:
        x, y = run.train_batches.next(np.random.default_rng(0))
        with run.autocast:
            _, loss = model(x, y, sentences=run.train_batches.sentence_ids(x))
        loss.backward()

    for _ in range(2):  # warm-up: allocations, kernel choices and the optimizer state
        micro_step()
        run.optimizer.step()
        run.optimizer.zero_grad(set_to_none=True)
    n = 3
    devices.sync(device)
    t0 = time.perf_counter()
    for _ in range(n):
        micro_step()
    devices.sync(device)
    micro = (time.perf_counter() - t0) / n
    t0 = time.perf_counter()
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    devices.sync(device)
    step = time.perf_counter() - t0
    per_iter = micro * cfg.grad_accum + step
    # A forward pass of an evaluation costs about a third of a training micro-step.
    evals = cfg.max_iters // cfg.eval_interval + 1
    total = per_iter * cfg.max_iters + evals * eval_batches * micro / 3
    hours, rest = divmod(int(total), 3600)
    run.log(f"expected training time on {device}: about {hours} h {rest // 60} min for "
            f"{cfg.max_iters:,} iterations (measured {micro:.2f} s per micro-batch of "
            f"{cfg.batch_size}×{run.train_batches.block_size} tokens, {cfg.grad_accum} per "
            f"iteration)")



def budget_preset(cfg: config.TrainConfig, shape: dict, explicit: set[str], meta: dict,
                  dist: Dist, started: float, log) -> config.TrainConfig:
    """A fresh --time-budget run: without --preset the budget chooses it (tatargpt/budget.py)
    and says why in one line; an explicit preset too big to learn anything in the budget gets
    a warning that names the one that would."""
    if dist.enabled:  # each process would time itself, and might choose differently
        if "preset" not in explicit:
            raise UserError("--time-budget chooses the preset by timing one process; under "
                            "torchrun give --preset too (e.g. --preset small)")
        return cfg
    device, _ = devices.select_device(cfg.device)
    vocab = meta["vocab_size"]
    measured: dict[str, float] = {}

    def speed(name: str) -> float:
        if name not in measured:
            model_cfg = config.get_preset(name, vocab_size=vocab, **shape)
            dtype, _ = devices.pick_dtype(device, cfg.dtype, model_cfg)
            batch = (cfg.batch_size if "batch_size" in explicit
                     else config.get_train_config(name).batch_size)
            measured[name] = budget.measure_tokens_per_s(model_cfg, batch, device, dtype)
        return measured[name]

    def plan() -> budget.Plan:
        return budget.choose(budget.ladder(vocab, shape),
                             budget.train_seconds(cfg.time_budget, time.perf_counter() - started),
                             meta["train_tokens"], speed)

    if "preset" not in explicit:
        chosen = plan()
        log(chosen.line(cfg.time_budget))
        given = {k: getattr(cfg, k) for k in explicit}
        return config.get_train_config(chosen.preset, **given)
    seconds = budget.train_seconds(cfg.time_budget, time.perf_counter() - started)
    params = budget.ladder(vocab, shape, [cfg.preset])[0][1]
    mine = budget.Option(cfg.preset, params, speed(cfg.preset), speed(cfg.preset) * seconds)
    if not budget.useful(mine):
        better = plan()
        log(f"warning: in {cfg.time_budget:g} min this machine trains preset {cfg.preset} "
            f"({params / 1e6:.1f}M parameters) on about {mine.tokens / 1e6:.2g}M tokens, "
            f"{mine.per_param:.2g} per parameter: too few steps to learn much. "
            f"--preset {better.preset} would see {better.chosen.per_param:.1f} per parameter; "
            f"without --preset the budget chooses (docs/TIME_BUDGET.md)")
    return cfg



def plan_time_budget(run: Run, bar: tqdm) -> config.TrainConfig | None:
    """After a few timed steps: the training settings with the max_iters (and warm-up) that
    end the run within --time-budget; None until it has measured enough, and after."""
    cfg, p = run.cfg, run.progress
    clock = run.budget
    if clock.warm_time is None:
        if p.it >= clock.warm_at:
            devices.sync(run.device)
            clock.warm_time, clock.warm_at = time.perf_counter(), p.it
        return None
    if clock.measure <= 0:
        return None
    budget_s = cfg.time_budget * 60
    devices.sync(run.device)
    now = time.perf_counter()
    timed = p.it - clock.warm_at
    enough = timed >= clock.measure or (not run.dist.enabled
                                         and now - clock.warm_time >= 0.05 * budget_s)
    if not enough:
        return None
    clock.measure = 0
    per_iter = (now - clock.warm_time) / timed
    cfg, left, data_bound = budget_iterations(run, per_iter, now, bar)
    if data_bound:
        left = (cfg.max_iters - run.progress.it) * per_iter
    end = time.strftime("%H:%M", time.localtime(time.time() + max(0.0, left)))
    run.log(f"time budget {cfg.time_budget:g} min: {per_iter:.2f} s per iteration and "
            f"{run.eval_seconds:.1f} s per evaluation measured; training for "
            f"{cfg.max_iters:,} iterations (evaluation every {cfg.eval_interval}, warm-up "
            f"{cfg.warmup_iters}), ending about {end}")
    if data_bound:
        run.log(f"time budget: that is {config.BUDGET_MAX_PASSES} passes over train.bin's "
                f"{run.meta['train_tokens']:,} tokens, where a small corpus stops teaching "
                f"more; the run ends early. More text would help more than more time "
                f"(docs/TIME_BUDGET.md)")
    return cfg


def budget_iterations(run: Run, per_iter: float, now: float,
                      bar: tqdm) -> tuple[config.TrainConfig, float, bool]:
    """The settings whose max_iters (and evaluation interval) fill what is left of the budget
    at `now`, at `per_iter` seconds a step, but read train.bin at most BUDGET_MAX_PASSES
    times; the seconds left; and whether that limit of the data, not the time, decided."""
    cfg, p = run.cfg, run.progress
    budget_s = cfg.time_budget * 60
    per_eval = run.eval_seconds  # the last evaluation and its save
    left = budget_s - (now - run.started) - per_eval  # the final evaluation always runs
    # Evaluations may take BUDGET_EVAL_SHARE of the budget: space them out when they would
    # take more at the preset's interval (a slow one on a big val split).
    n, interval = budget.space_evaluations(left, per_iter, per_eval, budget_s, cfg.eval_interval)
    interval = run.dist.max(interval)
    passes = math.ceil(config.BUDGET_MAX_PASSES * run.meta["train_tokens"] / run.tokens_per_iter)
    planned = min(p.it + n, passes, run.budget.cap or passes)
    data_bound = planned == passes < p.it + n
    planned = run.dist.min(planned)
    cfg = replace(cfg, max_iters=max(planned, p.it), eval_interval=interval,
                  warmup_iters=min(cfg.warmup_iters, planned // 5) if p.it < cfg.warmup_iters
                  else cfg.warmup_iters)
    bar.total = cfg.max_iters
    bar.refresh()
    return cfg, left, data_bound


def replan_time_budget(run: Run, bar: tqdm) -> config.TrainConfig | None:
    """After each evaluation of a planned run: the plan again, from the average step time so
    far (the first few steps can be faster or slower than the rest); None when it holds."""
    p = run.progress
    if run.budget.measure > 0 or p.it == 0 or p.train_time <= 0:
        return None
    per_iter = p.train_time / p.it
    cfg, _, _ = budget_iterations(run, per_iter, time.perf_counter(), bar)
    if abs(cfg.max_iters - run.cfg.max_iters) <= max(2, 0.02 * run.cfg.max_iters):
        bar.total = run.cfg.max_iters
        return None
    run.log(f"time budget: steps took {per_iter:.2f} s on average; training for "
            f"{cfg.max_iters:,} iterations instead of {run.cfg.max_iters:,}")
    return cfg


# ---------------------------------------------------------------------------
# Stopping: Ctrl-C and a loss that is no longer finite
# ---------------------------------------------------------------------------


class GracefulStop:
    """Ctrl-C once: finish the current step, save last.pt, exit. Twice: stop at once.

    Only for a single process in the main thread; under torchrun Ctrl-C stops at once (the
    ranks could not agree on a step to stop after without a collective per step).
    """

    def __init__(self, enabled: bool):
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.requested = False
        self._previous = None

    def __enter__(self) -> GracefulStop:
        if self.enabled:
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def _handler(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        tqdm.write("stopping after this step (press Ctrl-C again to stop at once)…",
                   file=sys.stderr)

    def __exit__(self, *exc) -> None:
        if self.enabled:
            signal.signal(signal.SIGINT, self._previous)



def stop_on_nonfinite(run: Run, loss: float) -> int:
    """The loss became NaN or infinite: stop before anything is saved; exit status 1."""
    kept = ("the previous model is untouched" if run.files.staged
            else f"{run.files.last} keeps the last good state (its last evaluation)")
    run.log(f"error: the loss became {loss} by iteration {run.progress.it}. Training stopped; "
            f"{kept}. Try a lower --lr, or --dtype float32.")
    return 1



def interrupted(run: Run) -> int:
    """Ctrl-C: save what can be saved and say how to go on; exit status 130."""
    p, files = run.progress, run.files
    if files.staged:
        message = (f"interrupted at iteration {p.it}, before this run's first evaluation: "
                   f"nothing of it was kept, and the model in {files.out_dir} is untouched.")
    elif run.in_step:
        message = (f"stopped in the middle of a step at iteration {p.it}: that state is not "
                   f"saved; {files.last} keeps its last save.")
    else:
        if run.dist.master:
            # No collective here: the other ranks may be gone already.
            fileio.atomic_save(checkpoint_state(run, {}, gather=False), files.last)
        message = f"interrupted at iteration {p.it}; saved {files.last}."
    if run.dist.master:
        paths = "".join(f" {flag(k)} {getattr(run.cfg, k)}"
                        for k in ("data_dir", "tokenizer_dir", "out_dir")
                        if getattr(run.cfg, k) != getattr(config.TrainConfig, k))
        again = ("Run the same command to start again." if files.staged
                 else f"Continue with: python 03_train.py --resume{paths}")
        print(f"\n{message} {again}", file=sys.stderr)
    return 130


# ---------------------------------------------------------------------------
# Answers without training, and the beginning and end of a run
# ---------------------------------------------------------------------------


def print_folder(args: argparse.Namespace, summary: bool) -> None:
    """--summary: the best checkpoint's figures; --status: one line for run_pipeline.sh."""
    out_dir = Path(args.out_dir or config.TrainConfig.out_dir)
    if summary:
        print_summary(out_dir)
    else:
        tok = Path(args.tokenizer_dir or config.TrainConfig.tokenizer_dir)
        print("\t".join(model_status(out_dir, tok, args.preset, args.max_iters)))


def plot_only(cfg: config.TrainConfig) -> None:
    """--plot: draw OUT_DIR/loss_curve.png from the log."""
    out = Path(cfg.out_dir)
    if not plot_loss_curve(out / "train_log.jsonl", out / "loss_curve.png"):
        raise UserError(f"no training log with rows at {out / 'train_log.jsonl'}; "
                        f"train first: python 03_train.py")
    print(f"wrote {out / 'loss_curve.png'}")


def start(cfg: config.TrainConfig, shape: dict, explicit: set[str], estimate: bool,
          log, dist: Dist, started: float
          ) -> tuple[config.TrainConfig, config.ModelConfig, dict | None, RunFiles, tuple]:
    """Before anything is built: the inputs checked, the folder's files, the resume state,
    the preset a --time-budget affords, and the settings this run trains with. Returns (cfg,
    model_cfg, state or None, files, (tokenizer, meta, stats))."""
    tokenizer, meta, stats = load_inputs(cfg)
    files = run_files(cfg, estimate)
    state = load_resume_state(files.last, tokenizer) if cfg.resume else None
    if cfg.time_budget > 0 and state is None and not estimate:
        cfg = budget_preset(cfg, shape, explicit, meta, dist, started, log)
    cfg, model_cfg = resolve_configs(cfg, shape, explicit, tokenizer, meta, state, log)
    return cfg, model_cfg, state, files, (tokenizer, meta, stats)


def describe(run: Run, shape: dict, resumed: bool) -> None:
    """The model and batch this run trains, in two lines."""
    cfg, model_cfg = run.cfg, run.model_cfg
    changes = "".join(f", {flag(k)} {v}" for k, v in shape.items()) if not resumed else ""
    run.log(f"model: preset {cfg.preset}{changes}: {run.model.num_params() / 1e6:.2f}M "
            f"parameters, context {model_cfg.block_size}, vocab {model_cfg.vocab_size}"
            f"{', gradient checkpointing' if model_cfg.gradient_checkpointing else ''}")
    run.log(f"batch: {cfg.batch_size} × {cfg.grad_accum} accumulation × "
            f"{run.dist.world_size} process(es) = {run.tokens_per_iter:,} tokens per iteration; "
            f"train.bin {run.meta['train_tokens']:,} tokens")


def finish(run: Run, status: int) -> None:
    """After the loop: the loss curve, and what the run reached."""
    files, p = run.files, run.progress
    if not run.dist.master or files.staged:
        return
    if plot_loss_curve(files.log, files.png):
        run.log(f"loss curve: {files.png}")
    if status == 0:
        run.log(f"done: {p.it} iterations in {p.train_time:.0f} s; best val loss "
                f"{p.best_val:.4f} (perplexity {scoring.nats_to_ppl(p.best_val):.2f}); "
                f"checkpoint {files.best}")
        run.log("next: python 04_evaluate.py   |   python quick_test.py   |   python app.py")
