"""Write docs/EXAMPLES.md: generations and perplexities of a real checkpoint.

    python scripts/make_examples.py --checkpoint models/best_model.pt --tokenizer tokenizer \\
        --data-dir data --out docs/EXAMPLES.md

The whole file is written by this script, never by hand: which checkpoint (corpus, preset,
iterations, device, validation figures stored in it), the prompts, the sampling settings and
seed, the outputs as generated, the perplexity of held-out sentences next to the same words
shuffled, and the command that regenerated the file. Generation is seeded, so the same
checkpoint on the same device gives the same file.
"""

from __future__ import annotations

import argparse
import math
import random
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # utils.py and model.py live in the repository root

import config  # noqa: E402  (after the path set-up above)
import utils  # noqa: E402
from tatargpt import cli, fileio, scoring  # noqa: E402
from tatargpt.cli import option  # noqa: E402

S = config.SAMPLING
# (label, keyword arguments of utils.generate_text)
SETTINGS = [
    ("greedy (temperature 0)", {"temperature": 0.0}),
    (f"temperature {S.temperature:g}, top-k {S.top_k}, top-p {S.top_p:g}, repetition penalty "
     f"{S.repetition_penalty:g}: the shared defaults config.SAMPLING, as in app.py",
     {"temperature": S.temperature, "top_k": S.top_k, "top_p": S.top_p,
      "repetition_penalty": S.repetition_penalty}),
    ("temperature 1.0, top-p 0.9", {"temperature": 1.0, "top_p": 0.9}),
]


@dataclass
class Options:
    data_dir: str = option("data", "folder with processed/val.txt")
    out: str = option("docs/EXAMPLES.md", "the Markdown file to write")
    max_new_tokens: int = option(config.SAMPLING.max_new_tokens, "tokens generated per prompt",
                                 "N")
    val_sentences: int = option(8, "held-out sentences in the perplexity table", "N")
    val_lines: int = option(1000, "val.txt lines scored for the overall figure", "N")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Write docs/EXAMPLES.md from a checkpoint.")
    cli.add_model_args(parser, "the model to describe",
                       seed=config.SAMPLING.seed,
                       seed_help="sampling seed, and the seed of the word shuffles")
    cli.add_options(parser, Options)
    return parser.parse_args(argv)


def command_line(args: argparse.Namespace) -> str:
    """The full command, every option spelled out, so defaults may change without harm."""
    parts = ["python", "scripts/make_examples.py"]
    for name in ("checkpoint", "tokenizer", "data_dir", "out", "device", "seed",
                 "max_new_tokens", "val_sentences", "val_lines"):
        parts += ["--" + name.replace("_", "-"), str(getattr(args, name))]
    return shlex.join(parts)


def fence(text: str) -> str:
    """A fenced code block that the text itself cannot close."""
    ticks = "```"
    while ticks in text:
        ticks += "`"
    return f"{ticks}text\n{text}\n{ticks}"


def cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def fmt(value, spec: str = "", missing: str = "not recorded") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return missing
    return format(value, spec)


def describe_corpus(ckpt: dict) -> str:
    stats = ckpt.get("data_stats") or {}
    sources = stats.get("sources") or []
    names = []
    for s in sources:
        if s.get("kind") == "sample":
            names.append("the bundled sample corpus (data/sample/*.txt)")
        else:
            names.append(str(s.get("name")))
    corpus = ", ".join(names) or "not recorded in the checkpoint"
    read = stats.get("input_lines")
    train, val = stats.get("train") or {}, stats.get("val") or {}
    if read is not None and train and val:
        corpus += (f": {read:,} lines read, {train.get('lines', 0):,} train and "
                   f"{val.get('lines', 0):,} val sentences after cleaning")
    return corpus


def checkpoint_table(ckpt: dict, model, args: argparse.Namespace) -> list[str]:
    cfg = ckpt.get("train_config") or {}
    metrics = ckpt.get("metrics") or {}
    meta = ckpt.get("meta") or {}
    mc = model.config
    val_loss = metrics.get("val_loss")
    rows = [
        ("checkpoint", f"`{args.checkpoint}`"),
        ("corpus", describe_corpus(ckpt)),
        ("tokenizer", f"byte-level BPE, {mc.vocab_size:,} tokens; train.bin "
                      f"{fmt(meta.get('train_tokens'), ',')} tokens"),
        ("preset", f"{cfg.get('preset', '?')}: {mc.n_layer} layers, {mc.n_head} heads, "
                   f"{mc.n_embd} dims, context {mc.block_size}, "
                   f"{model.num_params():,} parameters"),
        ("iterations", f"{fmt(ckpt.get('iter'), ',')} of --max-iters "
                       f"{fmt(cfg.get('max_iters'), ',')} (the evaluation with the lowest "
                       f"val loss), batch {cfg.get('batch_size', '?')} × "
                       f"{cfg.get('grad_accum', '?')} accumulation × "
                       f"{ckpt.get('world_size', 1)} process(es)"),
        ("trained on", f"{ckpt.get('device', '?')}, {ckpt.get('dtype', '?')} autocast, "
                       f"{fmt(ckpt.get('train_time_s'), '.0f')} s of training steps"),
        ("val loss", f"{fmt(val_loss, '.4f')} nats/token "
                     f"(train {fmt(metrics.get('train_loss'), '.4f')}), mean over "
                     + (f"{metrics['eval_tokens']:,} tokens of val.bin in "
                        f"{mc.block_size}-token windows" if "eval_tokens" in metrics else
                        f"{cfg.get('eval_iters', '?')} batches of {mc.block_size}-token "
                        f"windows of val.bin")),
        ("val perplexity", fmt(scoring.nats_to_ppl(val_loss) if val_loss is not None else None,
                               ".2f")),
        ("val bits per character", fmt(metrics.get("val_bpc"), ".3f")),
        ("examples generated on", f"{args.device}, seed {args.seed}"),
    ]
    lines = ["| | |", "|---|---|"]
    lines += [f"| {key} | {cell(value)} |" for key, value in rows]
    return lines


def generation_section(model, tok, args: argparse.Namespace, utils) -> list[str]:
    lines = [
        "## Generations",
        "",
        f"Each prompt is continued by `utils.generate_text` with {args.max_new_tokens} new "
        f"tokens at most (generation also stops at `<eos>`), seed {args.seed}, and three "
        "settings:",
        "",
    ]
    lines += [f"- {label}: `{', '.join(f'{k}={v}' for k, v in kwargs.items())}`"
              for label, kwargs in SETTINGS]
    for prompt in config.PROMPTS:
        lines += ["", f"### «{prompt}»"]
        for label, kwargs in SETTINGS:
            text = utils.generate_text(model, tok, prompt, max_new_tokens=args.max_new_tokens,
                                       seed=args.seed, **kwargs)
            lines += ["", f"{label}:", "", fence(text)]
    return lines


def val_lines(data_dir: Path, n: int) -> list[str]:
    return fileio.read_sentences(data_dir / "processed" / "val.txt", data_dir, n, required=False)


def shuffled(sentence: str, rng: random.Random) -> str:
    """The same words in another order (different from the original when possible)."""
    words = sentence.split()
    if len(set(words)) < 2:
        return sentence
    while True:
        order = words[:]
        rng.shuffle(order)
        if order != words:
            return " ".join(order)


def perplexity_section(model, tok, args: argparse.Namespace, utils) -> list[str]:
    sentences = val_lines(Path(args.data_dir), max(args.val_sentences, args.val_lines))
    val_path = f"{args.data_dir}/processed/val.txt"
    if not sentences:
        return ["## Perplexity", "", f"(no {val_path}: nothing scored)"]
    lines = [
        "## Perplexity of held-out sentences",
        "",
        f"The first {min(args.val_sentences, len(sentences))} sentences of `{val_path}` (never "
        "seen in training), each scored as `<bos> sentence <eos>` by `utils.score_text`, next "
        f"to the same words in a shuffled order (random.Random({args.seed})). Same characters, "
        "so lower bits per character means the model finds that version more likely.",
        "",
        "| perplexity | bits/char | shuffled: perplexity | bits/char | sentence |",
        "|---:|---:|---:|---:|---|",
    ]
    rng = random.Random(args.seed)
    wins = 0
    table = sentences[: args.val_sentences]
    for s in table:
        nat = utils.score_text(model, tok, s)
        shuf = utils.score_text(model, tok, shuffled(s, rng))
        ppl = [scoring.nats_to_ppl(x["nll"], x["tokens"]) for x in (nat, shuf)]
        bpc = [scoring.nats_to_bpc(x["nll"], x["chars"]) for x in (nat, shuf)]
        wins += bpc[0] < bpc[1]
        lines.append(f"| {ppl[0]:.1f} | {bpc[0]:.3f} | {ppl[1]:.1f} | {bpc[1]:.3f} "
                     f"| {cell(s)} |")
    scored = sentences[: args.val_lines]
    total = utils.score_text(model, tok, scored)
    lines += [
        "",
        f"The natural order has the lower bits per character in {wins} of {len(table)} rows.",
        "",
        f"All {len(scored):,} scored lines of val.txt together (the first {args.val_lines:,} at "
        f"most), sentence by sentence: perplexity "
        f"{scoring.nats_to_ppl(total['nll'], total['tokens']):.2f}, bits per character "
        f"{scoring.nats_to_bpc(total['nll'], total['chars']):.3f} ({total['tokens']:,} tokens). "
        "The checkpoint's val loss above is measured differently: on windows of "
        f"{model.config.block_size} tokens that run across sentence boundaries.",
    ]
    return lines


def render(args: argparse.Namespace) -> str:
    import torch


    torch.manual_seed(args.seed)
    device = utils.get_device(args.device)
    model, ckpt, tok = utils.load_model_and_tokenizer(args.checkpoint, args.tokenizer, device)
    cfg = ckpt.get("train_config") or {}
    lines = [
        "# Examples",
        "",
        "<!-- Written by scripts/make_examples.py. Do not edit: regenerate it. -->",
        "",
        f"Outputs of one checkpoint: preset **{cfg.get('preset', '?')}**, "
        f"**{fmt(ckpt.get('iter'), ',')} iterations**, corpus: {describe_corpus(ckpt)}. "
        "Every figure and every text below was produced by `scripts/make_examples.py` from "
        "that checkpoint; nothing is edited by hand. Regenerate the file with:",
        "",
        "```bash",
        command_line(args),
        "```",
        "",
        "## The checkpoint",
        "",
        *checkpoint_table(ckpt, model, args),
        "",
        *generation_section(model, tok, args, utils),
        "",
        *perplexity_section(model, tok, args, utils),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def work() -> int:
        fileio.atomic_write_text(args.out, render(args))
        print(f"wrote {args.out}")
        return 0

    return utils.run_cli(work)


if __name__ == "__main__":
    sys.exit(main())
