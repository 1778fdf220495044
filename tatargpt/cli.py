"""Command-line flags shared by the scripts that load a trained model."""

from __future__ import annotations

import argparse

from tatargpt.checkpoints import DEFAULT_CHECKPOINT, DEFAULT_TOKENIZER


def add_model_args(parser: argparse.ArgumentParser, what: str = "the model",
                   device: bool = True, seed: int | None = None,
                   seed_help: str = "sampling seed") -> None:
    """The flags of every script that loads a trained model, with one spelling, one default
    and one help text: --checkpoint, --tokenizer, --device (unless `device` is False) and
    --seed (when a default `seed` is given)."""
    parser.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT,
                        help=f"{what}: a checkpoint, a folder written by export_hf.py, or its "
                             f"Hugging Face Hub id (default: %(default)s)")
    parser.add_argument("--tokenizer", default=DEFAULT_TOKENIZER,
                        help="the tokenizer folder it was trained with; an exported folder "
                             "brings its own (default: %(default)s)")
    if device:
        parser.add_argument("--device", default="auto",
                            help="auto (CUDA, then MPS, then CPU) | cpu | cuda | mps "
                                 "(default: %(default)s)")
    if seed is not None:
        parser.add_argument("--seed", type=int, default=seed,
                            help=f"{seed_help} (default: %(default)s)")

