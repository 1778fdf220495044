"""Stage 5 — teach the base model to answer: supervised fine-tuning (SFT) on conversations.

Reads   models/best_model.pt   the pretrained model (03_train.py)
        tokenizer/             its tokenizer, with the chat tokens <|user|> <|assistant|> <|end|>
        data/sft/*.jsonl       conversations, one {"messages": [{"role", "content"}, …]} a line
        data/processed/val.txt pretraining text, to measure what fine-tuning makes it forget
Writes  models/chat_model.pt   the fine-tuned model: a checkpoint like best_model.pt, so every
                               tool of the course loads it (utils.chat talks to it)
        models/chat_log.jsonl  train and val answer loss
        models/chat_last.pt    the state to continue from with --resume

    python 05_finetune.py                      # full fine-tune: every weight learns
    python 05_finetune.py --lora-rank 8        # LoRA: small adapters on a frozen model
    python 05_finetune.py --overwrite          # again, replacing chat_model.pt when done

Pretraining taught the model Tatar; it continues any text. Fine-tuning shows it thousands of
conversations in one template (tatargpt/chat.py), and the loss counts only the assistant's
tokens and the <|end|> after them (the mask): the model learns to answer in that format and
to stop, not to imitate the user. It learns the form of an answer, not new facts.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path

import torch

import config
import utils
from tatargpt import chat, checkpoints, cli, devices, lora, scoring
from tatargpt.cli import option
from tatargpt.finetune_run import Staging, answer_stats, print_report

SETTINGS = {f.name for f in fields(config.FinetuneConfig)}
MAX_TOO_LONG = 0.05  # the share of conversations longer than the context that is left out

# -----------------------------------------------------------------------------
# Data: conversations → (ids, mask), split by a stable hash
# -----------------------------------------------------------------------------


def load_conversations(cfg: config.FinetuneConfig, tokenizer, block_size: int):
    """(train, val): lists of (ids, mask, messages) for every conversation in sft_dir.

    A conversation longer than the context cannot be learnt whole. A few of them (a tokenizer
    trained on a small corpus needs more tokens per word) are left out with a notice; more
    than MAX_TOO_LONG of the set means the data or the model does not fit: an error."""
    files = sorted(Path(cfg.sft_dir).glob("*.jsonl"))
    if not files:
        raise utils.UserError(f"no *.jsonl files in {cfg.sft_dir}: the course's conversations "
                              f"are in data/sft/ of the repository (or give --sft-dir)")
    train, val, too_long = [], [], []
    for path in files:
        for where, messages in chat.read_conversations(path):
            ids, mask = chat.render_conversation(tokenizer, messages)
            if len(ids) > block_size + 1:
                too_long.append(f"{where} ({len(ids)} tokens)")
                continue
            (val if chat.is_val(messages, cfg.val_percent) else train).append(
                (ids, mask, messages))
    total = len(train) + len(val) + len(too_long)
    if too_long and len(too_long) > MAX_TOO_LONG * total:
        raise utils.UserError(
            f"{too_long[0]}: longer than the model's context of {block_size} tokens (+1), and "
            f"so are {len(too_long) - 1} more of the {total} conversations: shorten or split "
            f"them, or fine-tune a model with a longer context")
    if too_long:
        print(f"notice: {len(too_long)} conversation(s) longer than the context of {block_size} "
              f"tokens left out: {'; '.join(too_long[:3])}{' …' if len(too_long) > 3 else ''}")
    if not train or not val:
        raise utils.UserError(f"{cfg.sft_dir} holds {len(train) + len(val)} usable "
                              f"conversation(s): too few for both a train and a val part; add "
                              f"more")
    return train, val


def make_batch(examples, pad_id: int, device: torch.device):
    """Inputs (B, T) and targets (B, T): targets are the next tokens, with -100 (ignored by
    the loss) wherever the mask is 0 and in the padding."""
    width = max(len(ids) for ids, _, _ in examples) - 1
    x = torch.full((len(examples), width), pad_id, dtype=torch.long)
    y = torch.full((len(examples), width), -100, dtype=torch.long)
    for row, (ids, mask, _) in enumerate(examples):
        ids, mask = torch.tensor(ids), torch.tensor(mask)
        x[row, : len(ids) - 1] = ids[:-1]
        y[row, : len(ids) - 1] = torch.where(mask[1:] == 1, ids[1:], -100)
    return x.to(device), y.to(device)


@torch.no_grad()
def answer_loss(model, examples, pad_id: int, device, autocast, batch_size: int = 32) -> float:
    """Mean loss per answer token (nats) over `examples`: the SFT validation figure."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(examples), batch_size):
        x, y = make_batch(examples[i:i + batch_size], pad_id, device)
        with autocast:
            logits, _ = model(x, all_logits=True)
        nll = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), y.flatten(),
                                                ignore_index=-100, reduction="sum")
        total, count = total + float(nll), count + int((y != -100).sum())
    model.train(was_training)
    return total / max(1, count)


def lr_at(it: int, cfg: config.FinetuneConfig) -> float:
    """Linear warm-up, then cosine decay from the peak (lr, or lora_lr for adapters) to
    min_lr (scaled by the same factor)."""
    peak = cfg.lora_lr if cfg.lora_rank else cfg.lr
    floor = cfg.min_lr * peak / cfg.lr
    if it < cfg.warmup_iters:
        return peak * (it + 1) / cfg.warmup_iters
    progress = (it - cfg.warmup_iters) / max(1, cfg.max_iters - cfg.warmup_iters)
    return floor + 0.5 * (1 + math.cos(math.pi * min(1.0, progress))) * (peak - floor)


def pretraining_bpc(model, tokenizer, cfg: config.FinetuneConfig) -> float | None:
    """Bits per character on the first val.txt sentences: how well the model still predicts
    plain Tatar text (None when there is no val.txt or forget_sentences is 0)."""
    from tatargpt import fileio

    path = Path(cfg.data_dir) / "processed" / "val.txt"
    text = fileio.read_sentences(path, cfg.data_dir, cfg.forget_sentences, required=False)
    if not text or not cfg.forget_sentences:
        return None
    nats = sum(scoring.sentence_nlls(model, tokenizer, text))
    return scoring.nats_to_bpc(nats, sum(len(s) + 1 for s in text))


# -----------------------------------------------------------------------------
# Fine-tuning
# -----------------------------------------------------------------------------


@dataclass
class RunOptions:
    overwrite: bool = option(False, "fine-tune again although OUT exists; the old model stays "
                                    "until the new run has finished (or is stopped)")
    resume: bool = option(False, "continue the run that wrote OUT (from chat_last.pt)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cli.add_options(parser, config.FinetuneConfig)
    for action in parser._actions:  # a flag not given takes the base model's preset's value
        if action.dest in SETTINGS:
            presets = [f"{p}: {v[action.dest]}" for p, v in config.FINETUNE_PRESETS.items()
                       if action.dest in v]
            action.help = action.help.replace(
                "%(default)s", f"{action.default}" + "".join(f"; {p}" for p in presets))
            action.default = None
    cli.add_options(parser, RunOptions)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if k in SETTINGS and v is not None}
    return utils.run_cli(lambda: finetune(overrides, args.overwrite, args.resume),
                         "the fine-tuned model is as it was")


def settings(overrides: dict) -> config.FinetuneConfig:
    """The settings of this run: the flags given, else the base model's preset's, else the
    defaults; refused when they cannot work."""
    checkpoint = overrides.get("checkpoint", config.FinetuneConfig.checkpoint)
    preset = (checkpoints.load_checkpoint(checkpoint).get("train_config") or {}).get("preset")
    cfg = config.get_finetune_config(preset, **overrides)
    if cfg.max_iters < 1 or cfg.eval_interval < 1 or cfg.batch_size < 1:
        raise utils.UserError("--max-iters, --eval-interval and --batch-size must be at least 1")
    if min(cfg.lr, cfg.lora_lr) <= 0 or cfg.min_lr < 0 or cfg.lora_rank < 0:
        raise utils.UserError("--lr and --lora-lr must be above 0, --min-lr and --lora-rank "
                              "0 or more")
    targets = [t.strip() for t in cfg.lora_targets.split(",") if t.strip()]
    if cfg.lora_rank and (not targets or set(targets) - set(lora.TARGETS)):
        raise utils.UserError(f"--lora-targets {cfg.lora_targets!r}: choose from "
                              f"{', '.join(lora.TARGETS)}, separated by commas")
    if not 0 < cfg.val_percent < 100:
        raise utils.UserError(f"--val-percent must be 1 to 99, got {cfg.val_percent}")
    return cfg


def measure(model, tokenizer, val, cfg: config.FinetuneConfig, autocast, answer: float | None
            = None) -> dict:
    """The figures of the final table for one model (the base, or the fine-tuned one)."""
    device = next(model.parameters()).device
    if answer is None:
        answer = answer_loss(model, val, tokenizer.pad_id, device, autocast)
    return {"answer_loss": answer, "pretraining_bpc": pretraining_bpc(model, tokenizer, cfg),
            **answer_stats(model, tokenizer, val, cfg.check_prompts)}


def load(cfg: config.FinetuneConfig):
    """(model, its checkpoint, tokenizer, autocast dtype, train and val conversations)."""
    device, why = devices.select_device(cfg.device)
    model, ckpt = utils.load_model(cfg.checkpoint, device)
    tokenizer = utils.load_tokenizer(cfg.tokenizer_dir)
    checkpoints.check_tokenizer_matches(ckpt, tokenizer, cfg.checkpoint)
    chat.require_chat_tokens(tokenizer)
    dtype, dtype_why = devices.pick_dtype(device, cfg.dtype, model.config)
    train, val = load_conversations(cfg, tokenizer, model.config.block_size)
    print(f"{len(train):,} train and {len(val):,} val conversations from {cfg.sft_dir}; "
          f"device {device} ({why}), {devices.dtype_name(dtype)} ({dtype_why})")
    return model, ckpt, tokenizer, dtype, train, val


def finetune(overrides: dict, overwrite: bool, resume: bool) -> int:
    cfg = settings(overrides)
    staging = Staging(Path(cfg.out), overwrite, resume)
    model, ckpt, tokenizer, dtype, train, val = load(cfg)
    device, pad = next(model.parameters()).device, tokenizer.pad_id
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)
    before = measure(model, tokenizer, val, cfg, autocast)
    if cfg.lora_rank:  # freeze the model; only the adapters learn
        lora.add_lora(model, cfg.lora_rank, cfg.lora_alpha, cfg.lora_targets.split(","))
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    start, best = staging.resume_into(model, optimizer, cfg) if resume else (0, math.inf)
    rng = random.Random(cfg.seed + start)
    devices.set_seed(cfg.seed + start)
    model.train()
    started, it = time.perf_counter(), start
    try:
        for it in range(start, cfg.max_iters + 1):
            last = it == cfg.max_iters
            if it % cfg.eval_interval == 0 or last:  # evaluate, keep the best, save
                val_loss = answer_loss(model, val, pad, device, autocast)
                if val_loss < best:
                    best = val_loss
                    staging.save_best(model, ckpt, cfg, it, best, before)
                staging.save_last(model, optimizer, cfg, it, best)
                staging.log({"type": "eval", "iter": it, "val_answer_loss": val_loss})
                print(f"iter {it:5d}  val answer loss {val_loss:.4f}  (best {best:.4f})")
            if last:
                break
            lr = lr_at(it, cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr
            x, y = make_batch(rng.sample(train, min(cfg.batch_size, len(train))), pad, device)
            with autocast:
                _, loss = model(x, y)  # mean over the answer tokens only (-100 is ignored)
            scaler.scale(loss).backward()
            if cfg.grad_clip:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(trainable, cfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            if it % 10 == 0:
                staging.log({"type": "train", "iter": it, "loss": loss.item(), "lr": lr})
            if it % max(1, cfg.eval_interval // 2) == 0:
                print(f"iter {it:5d}  train answer loss {loss.item():.4f}  lr {lr:.2e}")
    except KeyboardInterrupt:
        staging.promote()
        print(f"\nstopped at iteration {it}; {cfg.out} holds the best model so far "
              f"(val answer loss {best:.4f}); continue with --resume", file=sys.stderr)
        return 130
    staging.promote()
    seconds = time.perf_counter() - started
    tuned, _ = utils.load_model(cfg.out, device)
    after = measure(tuned, tokenizer, val, cfg, autocast, answer=best)
    counts = (lora.trainable_parameters(model), tuned.num_params())
    print_report(before, after, cfg, *counts, seconds, len(train), len(val))
    staging.add_report(before, after, seconds, *counts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
