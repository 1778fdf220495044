"""Running a fine-tune safely (05_finetune.py): where its files go, when they replace the old
ones, how a run continues, and the report at the end. A first reading can skip this.

Files, beside OUT (models/chat_model.pt):
    chat_model.new.pt   the best model of this run so far; it replaces OUT when the run ends,
                        finished or stopped with Ctrl-C, never before: a crash or a bad run
                        leaves the old chat_model.pt as it was
    chat_log.new.jsonl  this run's log, which replaces chat_log.jsonl with it
    chat_last.pt        the weights being trained, the optimizer and the position: --resume
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict
from pathlib import Path

import torch

import config
import tatar_text
from tatargpt import chat, checkpoints, fileio, lora
from tatargpt.errors import UserError

# Answers are greedy with the course's repetition penalty (config.SAMPLING), as the demos
# generate them; a plain greedy answer of a small model can loop until the length limit.
REPETITION_PENALTY = config.SAMPLING.repetition_penalty


class Staging:
    def __init__(self, out: Path, overwrite: bool, resume: bool):
        self.out = out
        self.stage = out.with_name(f"{out.stem}.new{out.suffix}")
        self.last = out.with_name(f"{out.stem.removesuffix('_model')}_last.pt")
        self.log_path = out.with_name(f"{out.stem.removesuffix('_model')}_log.jsonl")
        self.stage_log = self.log_path.with_name(self.log_path.stem + ".new.jsonl")
        if resume:
            if not self.last.is_file():
                raise UserError(f"nothing to resume: no {self.last}. Start a run with: "
                                f"python 05_finetune.py")
            if not self.stage_log.is_file() and self.log_path.is_file():
                self.stage_log.write_bytes(self.log_path.read_bytes())
            return
        if out.exists() and not overwrite:
            raise UserError(f"{out} exists: a new fine-tune would replace it. Use --overwrite "
                            f"(the old model stays until the new run ends) or --resume to "
                            f"continue the run that wrote it")
        out.parent.mkdir(parents=True, exist_ok=True)
        for stale in (self.stage, self.last):
            stale.unlink(missing_ok=True)
        self.stage_log.write_text("", encoding="utf-8")

    def log(self, row: dict) -> None:
        with open(self.stage_log, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")

    def save_best(self, model, base: dict, cfg: config.FinetuneConfig, it: int, best: float,
                  before: dict) -> None:
        """The model as it is now, LoRA merged in: a checkpoint every tool loads."""
        state = lora.merged_state_dict(model)
        keep = {k: v for k, v in base.items()
                if k not in ("model", "trained_weights", "optimizer", "metrics")}
        fileio.atomic_save({
            **keep,
            "model": state,
            "finetune": {"iter": it, "val_answer_loss": best, "base_checkpoint": cfg.checkpoint,
                         "base_fingerprint": checkpoints.checkpoint_fingerprint(base),
                         "config": asdict(cfg), "before": before,
                         "method": f"LoRA rank {cfg.lora_rank}" if cfg.lora_rank else "full"},
            # best_val_loss is part of checkpoint_fingerprint: with it changed, no file written
            # about the base model (eval.json) is taken to describe this one.
            "best_val_loss": best,
        }, self.stage)

    def save_last(self, model, optimizer, cfg: config.FinetuneConfig, it: int,
                  best: float) -> None:
        trainable = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
        fileio.atomic_save({"trainable": trainable, "optimizer": optimizer.state_dict(),
                            "iter": it, "best": best, "config": asdict(cfg)}, self.last)

    def resume_into(self, model, optimizer, cfg: config.FinetuneConfig) -> tuple[int, float]:
        state = torch.load(self.last, map_location="cpu", weights_only=True)
        same = ("checkpoint", "lora_rank", "lora_alpha", "lora_targets", "sft_dir")
        changed = [k for k in same if state["config"].get(k) != getattr(cfg, k)]
        if changed:
            raise UserError(f"{self.last} was written with other settings "
                            f"({', '.join(changed)}): continue with the same ones, or start "
                            f"again with --overwrite")
        missing = set(state["trainable"]) ^ {n for n, p in model.named_parameters()
                                              if p.requires_grad}
        if missing:
            raise UserError(f"{self.last} does not fit this model ({len(missing)} weights "
                            f"differ): start again with --overwrite")
        model.load_state_dict(state["trainable"], strict=False)
        optimizer.load_state_dict(state["optimizer"])
        print(f"resuming at iteration {state['iter']} (best val answer loss {state['best']:.4f})")
        return state["iter"], state["best"]

    def promote(self) -> None:
        """This run's best model and log replace the old ones (both, or neither)."""
        if self.stage.is_file():
            os.replace(self.stage, self.out)
        if self.stage_log.is_file():
            os.replace(self.stage_log, self.log_path)

    def add_report(self, before: dict, after: dict, seconds: float, trainable: int,
                   parameters: int) -> None:
        with contextlib.suppress(OSError), open(self.log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"type": "report", "before": before, "after": after,
                                "seconds": round(seconds, 1), "trainable": trainable,
                                "parameters": parameters}) + "\n")


@torch.no_grad()
def answer_stats(model, tokenizer, examples, n: int = 24, max_new_tokens: int = 64) -> dict:
    """Greedy answers (with the course's repetition penalty) to the first user message of `n`
    held-out conversations: the share that ends with <|end|> (not at the length limit), and
    of the letters written, the share that is Cyrillic and the share of ә ө ү җ ң һ."""
    ended, letters, cyrillic, tatar = 0, 0, 0, 0
    for _ids, _mask, messages in examples[:n]:
        out = list(chat.stream_reply(model, tokenizer, messages[:1], max_new_tokens,
                                     temperature=0, repetition_penalty=REPETITION_PENALTY))
        ended += bool(out) and out[-1] == tokenizer.end_id
        n_letters, n_cyrillic, n_tatar = tatar_text.letter_counts(tokenizer.decode(
            [i for i in out if i != tokenizer.end_id]))
        letters, cyrillic, tatar = letters + n_letters, cyrillic + n_cyrillic, tatar + n_tatar
    count = min(n, len(examples))
    return {"prompts": count, "ended": ended / max(1, count),
            "cyrillic": cyrillic / max(1, letters), "tatar_letters": tatar / max(1, letters)}


def print_report(before: dict, after: dict, cfg: config.FinetuneConfig, trainable: int,
                 total: int, seconds: float, n_train: int, n_val: int) -> None:
    def bpc(x):
        return f"{x:.3f}" if x is not None else "—"

    method = (f"LoRA rank {cfg.lora_rank} (alpha {cfg.lora_alpha}, {cfg.lora_targets})"
              if cfg.lora_rank else "full fine-tune")
    print(f"\n{method}: {cfg.max_iters} steps on {n_train:,} conversations in {seconds:.0f} s\n")
    print(f"{'':<44}{'base model':>12}{'fine-tuned':>12}")
    print(f"{'val answer loss (nats per answer token)':<44}{before['answer_loss']:>12.3f}"
          f"{after['answer_loss']:>12.3f}   ({n_val} val conversations)")
    print(f"{'pretraining val bits per character':<44}{bpc(before['pretraining_bpc']):>12}"
          f"{bpc(after['pretraining_bpc']):>12}   (forgetting: higher is worse)")
    print(f"{'answers ending with <|end|>':<44}{before['ended']:>12.0%}{after['ended']:>12.0%}"
          f"   (greedy, {after['prompts']} val prompts)")
    print(f"{'Cyrillic share of the letters answered':<44}{before['cyrillic']:>12.0%}"
          f"{after['cyrillic']:>12.0%}")
    print(f"{'ә ө ү җ ң һ share of the letters':<44}{before['tatar_letters']:>12.1%}"
          f"{after['tatar_letters']:>12.1%}")
    print(f"{'trainable parameters':<44}{'':>12}{trainable:>12,}   "
          f"({trainable / max(1, total):.1%} of {total:,})")
    print(f"\nwrote {cfg.out}; talk to it: python app.py --checkpoint {cfg.out}")
