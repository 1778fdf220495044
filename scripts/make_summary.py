"""Write docs/PROJECT_SUMMARY.md: the one-page summary of a course submission.

    python scripts/make_summary.py --checkpoint models/best_model.pt --tokenizer tokenizer \\
        --data-dir data --out docs/PROJECT_SUMMARY.md

What was built, the checklist items with their status on the checkpoint and where they live,
the results (every figure read from the checkpoint, its training log and models/eval.json,
labelled with corpus, preset, iterations and device), and what works well or not — the
last two also from the figures. The file is written by this script only: regenerate it.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import utils  # noqa: E402  (after the path set-up above)
from tatargpt import checkpoints, cli, fileio, scoring  # noqa: E402
from tatargpt.cli import option  # noqa: E402

# Where each checklist item lives (the checklist's item names, as quick_test.py prints them).
WHERE = {
    "Trained from scratch": "`model.py` `GPT._init_weights`; `03_train.py` evaluates at "
                            "iteration 0",
    "Decoder-only transformer": "`model.py` `CausalSelfAttention`, `Block`, `GPT`",
    "Context ≥ 256 tokens": "`config.py` `ModelConfig.block_size`",
    "Low-resource language": "`01_prepare_data.py` (Leipzig Tatar corpora, cleaning), "
                             "`data/sample/` (the bundled corpus), `02_train_tokenizer.py`",
    "Adequate generation": "`model.py` `GPT.stream`, `sample_next`; `utils.py` "
                           "`generate_text`, `perplexity`",
    "Bonus: rotary position embeddings": "`model.py` `RotaryEmbedding`",
    "Bonus: mixed precision": "`tatargpt/devices.py` `pick_dtype`; `03_train.py` autocast, "
                              "`make_scaler`",
    "Bonus: gradient checkpointing": "`model.py` `GPT.forward`; `03_train.py "
                                     "--gradient-checkpointing`",
    "Bonus: FlashAttention": "`model.py` `F.scaled_dot_product_attention`",
    "Bonus: Apple MPS": "`tatargpt/devices.py` `select_device`",
    "Bonus: architecture presets": "`config.py` `PRESETS`",
    "Bonus: beats the n-gram": "`04_evaluate.py`, `ngram.py`, `tatar_text.py`",
    "Bonus: fine-tuned to answer": "`05_finetune.py`, `tatargpt/chat.py`, `tatargpt/lora.py`, "
                                   "`data/sft/`; `app.py` Chat tab",
}


@dataclass
class Options:
    data_dir: str = option("data", "folder with processed/val.txt and stats.json")
    out: str = option("docs/PROJECT_SUMMARY.md", "the Markdown file to write")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Write docs/PROJECT_SUMMARY.md.")
    cli.add_model_args(parser, "the model the summary is about")
    cli.add_options(parser, Options)
    return parser.parse_args(argv)


def command_line(args: argparse.Namespace) -> str:
    parts = ["python", "scripts/make_summary.py"]
    for name in ("checkpoint", "tokenizer", "data_dir", "out", "device"):
        parts += ["--" + name.replace("_", "-"), str(getattr(args, name))]
    return shlex.join(parts)


def cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def checklist(model, ckpt: dict, tokenizer, args: argparse.Namespace):
    """quick_test.py's rows for this checkpoint (its samples printed to nowhere)."""
    import quick_test as qt

    ckpt_path, data_dir = Path(args.checkpoint), Path(args.data_dir)
    with contextlib.redirect_stdout(io.StringIO()):
        samples = qt.print_samples(model, tokenizer, 40, 1234, 1.1)
        val = qt.held_out_sentences(data_dir, 5)
        val_ppl = qt.print_perplexities(model, tokenizer, val)
    return [
        qt.check_from_scratch(ckpt, ckpt_path, model.config.vocab_size),
        qt.check_decoder_only(model),
        qt.check_context(model),
        qt.check_language(tokenizer, data_dir, ckpt),
        qt.check_generation(samples, val_ppl, ckpt, model.config.vocab_size),
        qt.check_rope(model),
        qt.check_mixed_precision(model, ckpt),
        qt.check_gradient_checkpointing(model),
        qt.check_sdpa(model),
        qt.check_mps_autodetect(),
        qt.check_presets(),
        qt.check_baseline(ckpt_path, ckpt),
        qt.check_chat(ckpt_path, tokenizer, next(model.parameters()).device),
    ]


def corpus_name(ckpt: dict) -> str:
    sources = (ckpt.get("data_stats") or {}).get("sources") or []
    names = ["the bundled corpus (data/sample)" if s.get("kind") == "sample" else
             str(s.get("name")) for s in sources]
    return ", ".join(names) or "not recorded"


def results(ckpt: dict, model, evaluation: dict | None, log: list[dict]) -> list[str]:
    train = ckpt.get("train_config") or {}
    metrics = ckpt.get("metrics") or {}
    val_loss = ckpt.get("best_val_loss", float("nan"))
    rows = [
        ("corpus", corpus_name(ckpt)),
        ("preset", f"{train.get('preset', '?')}: {model.num_params():,} parameters, "
                   f"{model.config.n_layer} layers × {model.config.n_embd} dims, context "
                   f"{model.config.block_size}, vocabulary {model.config.vocab_size:,}"),
        ("iterations", f"{ckpt.get('iter', '?'):,} (best val loss) of {train.get('max_iters', '?'):,}; "
                       f"{ckpt.get('tokens_seen', 0):,} tokens seen"),
        ("device", f"{ckpt.get('device', '?')}, {ckpt.get('dtype', '?')} "
                   f"({ckpt.get('dtype_reason', 'reason not recorded')}), "
                   f"{ckpt.get('train_time_s', 0):.0f} s of training steps"),
        ("val loss / perplexity", f"{val_loss:.4f} nats per token / "
                                  f"{scoring.nats_to_ppl(val_loss):.2f}"),
        ("val bits per character (training windows)", f"{metrics.get('val_bpc', float('nan')):.3f}"),
    ]
    if evaluation:
        g, n = evaluation["gpt"], evaluation["ngram"]
        rows += [
            (f"val.txt bits per character ({evaluation['val']['sentences']:,} sentences)",
             f"GPT {g['bpc']:.3f} vs {n['order']}-gram Kneser-Ney {n['bpc']:.3f}"),
            (f"vowel-harmony minimal pairs ({evaluation['harmony']['pairs']:,})",
             f"GPT {g['harmony_accuracy']:.1%} vs n-gram {n['harmony_accuracy']:.1%}"),
            *((f"`{Path(f['path']).name}`: text from elsewhere ({f['sentences']:,} sentences, "
               f"{f['chars']:,} characters)",
               f"GPT {f['gpt']['bpc']:.3f} vs {n['order']}-gram {f['ngram']['bpc']:.3f} bits per "
               f"character; harmony pairs GPT {f['gpt']['harmony_accuracy']:.1%} vs n-gram "
               f"{f['ngram']['harmony_accuracy']:.1%} of {f['pairs']:,}")
              for f in evaluation.get("eval_files", [])),
            ("tokenizer on val.txt", f"{evaluation['tokenizer']['tokens_per_word']:.2f} tokens "
                                     f"per word, {evaluation['tokenizer']['whole_word_share']:.1%} "
                                     f"of words one token"),
        ]
    else:
        rows.append(("n-gram comparison", "not measured: run python 04_evaluate.py"))
    return ["| | |", "|---|---|", *(f"| {k} | {cell(v)} |" for k, v in rows)]


def assessment(ckpt: dict, evaluation: dict | None, log: list[dict],
               rows) -> tuple[list[str], list[str]]:
    """(what works well, what to improve), each sentence backed by a figure."""
    good, improve = [], []
    passed = [r for r in rows if r.ok]
    good.append(f"{len(passed)} of {len(rows)} checklist items pass on this checkpoint, each "
                f"verified on the model and its files (`python quick_test.py --checklist`).")
    evals = [r for r in log if r["type"] == "eval"]
    if evals:
        first, best = evals[0], min(evals, key=lambda r: r["val_loss"])
        good.append(f"Training works: the val loss fell from {first['val_loss']:.2f} "
                    f"(an untrained model, ≈ ln of the vocabulary) to {best['val_loss']:.2f} "
                    f"at iteration {best['iter']:,}.")
        last = evals[-1]
        if last["val_loss"] > best["val_loss"] + 0.02:
            improve.append(f"The val loss rose from {best['val_loss']:.3f} (iteration "
                           f"{best['iter']:,}) to {last['val_loss']:.3f} (iteration "
                           f"{last['iter']:,}): the model began to learn the training text by "
                           f"heart. More text, more dropout or early stopping (--patience) help.")
        gap = last["val_loss"] - last["train_loss"]
        if gap > 0.3:
            improve.append(f"At the end the val loss is {gap:.2f} nats above the train loss: "
                           f"the corpus is small for this model.")
    if evaluation:
        g, n = evaluation["gpt"], evaluation["ngram"]
        if g["bpc"] < n["bpc"]:
            good.append(f"The GPT predicts held-out Tatar better than a {n['order']}-gram "
                        f"Kneser-Ney model trained on the same text ({g['bpc']:.3f} vs "
                        f"{n['bpc']:.3f} bits per character).")
        else:
            improve.append(f"The GPT does not yet beat the {n['order']}-gram baseline "
                           f"({g['bpc']:.3f} vs {n['bpc']:.3f} bits per character): train "
                           f"longer, or on more text.")
        for f in evaluation.get("eval_files", []):
            a, b = f["gpt"]["bpc"], f["ngram"]["bpc"]
            where = f"`{Path(f['path']).name}` ({f['chars']:,} characters of text from elsewhere)"
            if a < b:
                good.append(f"On {where} the GPT beats the n-gram too ({a:.3f} vs {b:.3f} bits "
                            f"per character): it learnt Tatar, not only its corpus's style.")
            else:
                improve.append(f"On {where} the n-gram wins ({b:.3f} vs {a:.3f} bits per "
                               f"character): the model fits its corpus's style more than "
                               f"Tatar at large.")
        verb = "matches or beats" if g["harmony_accuracy"] >= n["harmony_accuracy"] else \
            "is behind"
        (good if verb != "is behind" else improve).append(
            f"On vowel-harmony minimal pairs the GPT {verb} the n-gram "
            f"({g['harmony_accuracy']:.1%} vs {n['harmony_accuracy']:.1%}).")
    if not str(ckpt.get("device", "")).startswith("cuda"):
        improve.append("This checkpoint was trained on a CPU. The full course run (the Leipzig "
                       "corpus, the small preset, 10,000 iterations) needs a GPU: "
                       "`bash run_pipeline.sh` there, then regenerate this file.")
    stats = ckpt.get("data_stats") or {}
    sources = {s.get("kind") for s in stats.get("sources") or []}
    if sources == {"sample"}:
        lines = stats.get("input_lines")
        size = f"{lines:,} sentences" if isinstance(lines, int) else "sentences"
        improve.append(f"The bundled corpus ({size} written for the course) is "
                       "small and not written by native speakers at large; the Leipzig corpus "
                       "is about a hundred times larger.")
    return good, improve


def render(args: argparse.Namespace) -> str:

    model, ckpt, tokenizer = utils.load_model_and_tokenizer(
        args.checkpoint, args.tokenizer, utils.get_device(args.device))
    log = checkpoints.read_train_log(Path(args.checkpoint).parent / "train_log.jsonl")
    import export_hf

    evaluation = export_hf.read_evaluation(Path(args.checkpoint), ckpt)
    rows = checklist(model, ckpt, tokenizer, args)
    good, improve = assessment(ckpt, evaluation, log, rows)
    table = ["| | item | evidence on this checkpoint | where it lives |", "|---|---|---|---|"]
    for r in rows:
        where = next((v for k, v in WHERE.items() if r.item.startswith(k)), "")
        table.append(f"| {'✅' if r.ok else '❌'} | {cell(r.item)} | {cell(r.evidence)} "
                     f"| {where} |")
    train = ckpt.get("train_config") or {}
    return "\n".join([
        "# Project summary",
        "",
        "<!-- Written by scripts/make_summary.py from the checkpoint, its training log and "
        "eval.json. Do not edit: regenerate it. -->",
        "",
        f"About one checkpoint: preset **{train.get('preset', '?')}**, "
        f"**{ckpt.get('iter', '?'):,} iterations**, corpus: {corpus_name(ckpt)}, trained on "
        f"{ckpt.get('device', '?')}. Regenerate with:",
        "",
        "```bash",
        command_line(args),
        "```",
        "",
        "## What was built",
        "",
        "A course repository that trains a GPT from scratch on Tatar and shows what it learned: "
        "a Leipzig corpus downloaded and cleaned (or a bundled corpus written for the course), "
        "a byte-level BPE tokenizer, a decoder-only transformer with RoPE and pre-norm blocks "
        "(LayerNorm/RMSNorm, GELU/SwiGLU, learned positions, grouped-query and sliding-window "
        "attention as switches) trained with mixed precision, gradient checkpointing and DDP on "
        "CUDA, Apple MPS or a CPU, an evaluation against a character n-gram and vowel-harmony "
        "minimal pairs, a checklist, a notebook, a web demo, and an export to Hugging Face "
        "transformers. `bash run_pipeline.sh` runs it all; `bash run_tests.sh` tests it.",
        "",
        "## Requirements and bonus items",
        "",
        *table,
        "",
        "## Results",
        "",
        *results(ckpt, model, evaluation, log),
        "",
        "## What works well",
        "",
        *(f"- {s}" for s in good),
        "",
        "## What to improve",
        "",
        *(f"- {s}" for s in improve),
        "",
    ])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def work() -> int:
        text = render(args)
        fileio.atomic_write_text(args.out, text)
        print(f"wrote {args.out}")
        return 0

    return utils.run_cli(work)


if __name__ == "__main__":
    sys.exit(main())
