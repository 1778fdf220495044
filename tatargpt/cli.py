"""Command-line flags: one way to declare them, and the ones every model-loading script shares.

A script lists its flags as a dataclass, each field made by `option` with its help beside it;
`add_options` turns the fields into argparse flags (--field-name, typed by the annotation,
defaulted from the field). The stages' settings (config.py's dataclasses) go through
`config.add_flags` the same way.

    @dataclass
    class Options:
        out: str = option("docs/EXAMPLES.md", "the Markdown file to write")
        val_lines: int = option(1000, "val.txt lines scored for the overall figure", "N")
        eval_file: list[Path] = option([], "also score this text (repeatable)", "PATH")
        checklist: bool = option(False, "print the grading checklist")
"""

from __future__ import annotations

import argparse
import dataclasses
import typing


def option(default, help: str, metavar: str | None = None, shown: str | None = None,
           **argparse_kwargs):
    """A dataclass field that is also a command-line flag; `shown` is the default as the help
    says it (when the value itself is not for reading); extra keywords go to argparse's
    add_argument (choices, type…)."""
    meta = {"help": help, "metavar": metavar, "shown": shown, **argparse_kwargs}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def add_options(parser, cls) -> None:
    """One flag per `option` field of dataclass `cls` (see add_flag)."""
    hints = typing.get_type_hints(cls)
    defaults = cls()
    for f in dataclasses.fields(cls):
        if "help" in f.metadata:
            kwargs = {k: v for k, v in f.metadata.items() if v is not None}
            add_flag(parser, f.name, hints[f.name], getattr(defaults, f.name), **kwargs)


def add_flag(parser, name: str, kind, default, help: str, shown: str | None = None,
             **kwargs) -> None:
    """--name-with-dashes for a field `name` of type `kind`: a bool is a switch, a list[X] a
    repeatable flag, X | None an optional X; the default is shown in the help."""
    flag = "--" + name.replace("_", "-")
    if kind is bool:  # a switch; action=argparse.BooleanOptionalAction also gives --no-NAME
        kwargs.setdefault("action", "store_true")
        parser.add_argument(flag, default=default, help=help, **kwargs)
        return
    args = typing.get_args(kind)
    if typing.get_origin(kind) is list:
        kwargs.setdefault("type", args[0])
        kwargs["action"] = "append"
    elif type(None) in args:  # X | None
        kwargs.setdefault("type", next(a for a in args if a is not type(None)))
    else:
        kwargs.setdefault("type", kind)
    if shown or default not in (None, []):
        help += f" (default: {shown or '%(default)s'})"
    parser.add_argument(flag, default=default, help=help, **kwargs)


def add_model_args(parser: argparse.ArgumentParser, what: str = "the model",
                   device: bool = True, seed: int | None = None,
                   seed_help: str = "sampling seed") -> None:
    """The flags of every script that loads a trained model, with one spelling, one default
    and one help text: --checkpoint, --tokenizer, --device (unless `device` is False) and
    --seed (when a default `seed` is given)."""
    from tatargpt.checkpoints import DEFAULT_CHECKPOINT, DEFAULT_TOKENIZER  # (torch: only here)

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

