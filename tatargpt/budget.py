"""--time-budget without --preset: the model size the budget affords on this machine.

A first reading can skip this file; docs/TIME_BUDGET.md tells the lesson. In short: for a
fixed amount of compute, a model learns most when it sees about 20 training tokens per
parameter (Hoffmann et al., 2022, "Chinchilla"). A bigger model that sees only a handful of
steps is worse than a smaller one trained to the end. So the planner times one training
micro-batch of each preset of `config.BUDGET_LADDER` on this machine, smallest first, and takes
the largest one that can still see `config.TOKENS_PER_PARAM` tokens per parameter in the time
left for training. When not even the smallest can, it takes the smallest: a small model trained
longer beats a big one trained for a few steps.

Everything that decides is in `choose`, a pure function of the measured speeds (tests give it
made-up ones); `measure_tokens_per_s` is the only part that runs the model.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

import config
from model import GPT
from tatargpt import devices


@dataclass
class Option:
    """One preset as this budget would train it."""

    preset: str
    params: int  # with this tokenizer's vocabulary
    tokens_per_s: float | None  # measured; None = not timed (it could not fit anyway)
    tokens: float  # training tokens the budget allows (an upper bound when not timed)

    @property
    def per_param(self) -> float:
        return self.tokens / self.params


@dataclass
class Plan:
    """The chosen preset, the options it was chosen from, and why, in one line."""

    preset: str
    options: list[Option]
    train_seconds: float
    train_tokens: int  # the size of train.bin

    @property
    def chosen(self) -> Option:
        return next(o for o in self.options if o.preset == self.preset)

    def passes(self, option: Option | None = None) -> float:
        return (option or self.chosen).tokens / max(1, self.train_tokens)

    def line(self, minutes: float) -> str:
        o = self.chosen
        others = "; ".join(
            f"{x.preset} ({x.params / 1e6:.2f}M) {'~' if x.tokens_per_s else '<'}"
            f"{x.per_param:.2g}" for x in self.options if x.preset != o.preset)
        return (f"time budget {minutes:g} min: preset {o.preset} ({o.params / 1e6:.2f}M "
                f"parameters) — at {o.tokens_per_s:,.0f} tokens/s measured here, "
                f"{self.train_seconds / 60:.1f} min of training allow about "
                f"{o.tokens / 1e6:.1f}M tokens: {o.per_param:.1f} per parameter "
                f"(compute-optimal ≈ {config.TOKENS_PER_PARAM}), {self.passes():.1f} passes over "
                f"train.bin's {self.train_tokens:,} tokens"
                + (f"; tokens per parameter of the others: {others}" if others else ""))


def train_seconds(minutes: float, spent: float) -> float:
    """Seconds of the budget left for training steps: the evaluations' share and what was
    spent already (loading, timing) come off."""
    return max(0.0, minutes * 60 * (1 - config.BUDGET_EVAL_SHARE) - spent)


def choose(ladder: list[tuple[str, int]], seconds: float, train_tokens: int, speed) -> Plan:
    """The largest preset of `ladder` ([(name, parameters)], smallest first) that sees at least
    config.TOKENS_PER_PARAM tokens per parameter in `seconds`; else the smallest.

    speed(name) -> tokens/s times a preset; it is called smallest first and no further than
    needed. The preset after the last one timed is listed untimed, with the most tokens it
    could see: FLOPS_HEADROOM × the speed the last timed one predicts for its size (speed
    falls as parameters grow). It is timed only when that bound reaches the target.
    """
    target = config.TOKENS_PER_PARAM
    options: list[Option] = []
    chosen = ladder[0][0]
    last: Option | None = None
    for name, params in ladder:
        if last is not None:
            bound = last.tokens * last.params / params * config.FLOPS_HEADROOM
            if last.per_param < target or bound < target * params:
                options.append(Option(name, params, None, bound))
                break
        rate = speed(name)
        last = Option(name, params, rate, rate * seconds)
        options.append(last)
        if last.per_param >= target:
            chosen = name
    return Plan(chosen, options, seconds, train_tokens)


def space_evaluations(left: float, per_iter: float, per_eval: float, budget: float,
                      interval: int) -> tuple[int, int]:
    """(iterations, evaluation interval) that fill `left` seconds with steps of `per_iter`
    and evaluations of `per_eval` (one every `interval` steps, spaced out further when they
    would take more than BUDGET_EVAL_SHARE of `budget`)."""
    most = max(1, int(config.BUDGET_EVAL_SHARE * budget / max(per_eval, 1e-9)))
    interval = max(interval, math.ceil(max(left, 0.0) / max(per_iter, 1e-9) / most))
    return max(0, int(left / (per_iter + per_eval / interval))), interval


def measure_tokens_per_s(model_cfg: config.ModelConfig, batch_size: int,
                         device: torch.device, dtype: torch.dtype) -> float:
    """Tokens per second of one training micro-batch (forward and backward, random tokens),
    after a one-sequence warm-up (allocations, kernel choices)."""
    devices.set_seed(0)
    model = GPT(model_cfg).to(device)
    model.train()
    autocast = (torch.autocast(device.type, dtype=dtype) if dtype != torch.float32
                else torch.autocast(device.type, enabled=False))

    def step(rows: int) -> float:
        x = torch.randint(0, model_cfg.vocab_size, (rows, model_cfg.block_size), device=device)
        devices.sync(device)
        t0 = time.perf_counter()
        with autocast:
            _, loss = model(x, x)
        loss.backward()
        devices.sync(device)
        return time.perf_counter() - t0

    step(1)
    seconds = step(batch_size)
    model.zero_grad(set_to_none=True)
    return batch_size * model_cfg.block_size / max(seconds, 1e-9)


def ladder(vocab_size: int, shape: dict, names=None) -> list[tuple[str, int]]:
    """[(preset, parameters)] of config.BUDGET_LADDER (or `names`) with this vocabulary and
    the model flags given on the command line."""
    out = []
    for name in names or config.BUDGET_LADDER:
        with torch.device("meta"):  # counted without allocating the weights
            out.append((name, GPT(config.get_preset(name, vocab_size=vocab_size, **shape))
                        .num_params()))
    return out


def useful(option: Option) -> bool:
    """Whether a preset sees enough tokens to learn something: at least one per parameter."""
    return option.per_param >= config.MIN_TOKENS_PER_PARAM and math.isfinite(option.tokens)
