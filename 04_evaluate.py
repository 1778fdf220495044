"""Stage 4 — how good is the model? The GPT against a character n-gram, on the same text.

Reads   models/best_model.pt, tokenizer/, data/processed/{train,val}.txt
Writes  models/eval.json   the figures below, with the checkpoint they belong to
        models/eval.png    a bar chart of them

    python 04_evaluate.py
    python 04_evaluate.py --checkpoint models/last.pt --order 5
    python 04_evaluate.py --eval-file my_tatar.txt    # your own Tatar, one sentence a line

1. Bits per character on val.txt. The GPT scores each sentence as `<bos> sentence <eos>`;
   the baseline, a character n-gram with interpolated modified Kneser-Ney smoothing
   (ngram.py) trained on train.txt, scores the same sentences character by character and
   the sentence end. Both divide by the same characters (len + 1 per sentence), so the
   figures compare directly whatever the tokenizer. A language model that does not beat
   this 1990s baseline has not learned more than which letters follow which.
2. Vowel-harmony minimal pairs (tatar_text.minimal_pairs): each val sentence next to the same
   sentence with one plural or case suffix in the wrong harmony (китапларда → китаплардә).
   A model "knows" a pair when it gives the original the higher probability; the share of
   pairs each model knows is its harmony accuracy.
3. Your own text (--eval-file, repeatable): the same two measurements on any UTF-8 file of
   Tatar sentences. val.txt is written in the same hand as train.txt; text from elsewhere
   (news, chats, books) shows how well each model does on Tatar it has never seen. Its lines
   that are also in train.txt are left out of both scores (a score on training text says
   nothing about unseen text; short common sentences turn up in any two collections), and a
   file with more than --max-overlap of them is refused: it was probably cut from the
   training text.
4. The tokenizer on the same sentences: tokens per word and the share of words that are a
   single token (a word inside a sentence is encoded with the space before it, as in text).
"""

from __future__ import annotations

import argparse
import hashlib
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import ngram
import tatar_text
import utils
from tatargpt import checkpoints, cli, fileio, scoring
from tatargpt.cli import option

DEFAULT_ORDER = 6
EXAMPLE_PAIRS = 12  # pairs written to eval.json with both models' scores


@dataclass
class Options:
    data_dir: str = option("data", "folder with processed/{train,val}.txt")
    out: str | None = option(None, "where the figures go (default: eval.json beside the "
                                   "checkpoint; the chart beside it as .png)")
    order: int = option(DEFAULT_ORDER, "n-gram order, 2 to 7", "N")
    max_sentences: int = option(3000, "val sentences scored at most, an even spread of "
                                      "val.txt", "N")
    max_pairs: int = option(1000, "minimal pairs at most", "N")
    ngram_max_chars: int = option(30_000_000, "characters of train.txt the n-gram learns from "
                                              "at most, an even spread of its lines", "N")
    batch_size: int = option(32, "sentences per GPT forward pass", "N")
    eval_file: list[Path] = option([], "also score this UTF-8 text, one sentence a line "
                                       "(repeatable)", "PATH")
    max_overlap: int | None = option(None, "refuse an --eval-file with more than N lines that "
                                          "are also in train.txt (those are never scored)", "N",
                                     shown="5, or 2%% of the file's lines when that is more")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cli.add_model_args(parser, "the model to evaluate", seed=0,
                       seed_help="which word of a sentence is flipped")
    cli.add_options(parser, Options)
    args = parser.parse_args(argv)
    if not 2 <= args.order <= 7:
        parser.error(f"--order must be 2 to 7, got {args.order}")
    if args.max_overlap is not None and args.max_overlap < 0:
        parser.error(f"--max-overlap must be 0 or more, got {args.max_overlap}")
    if min(args.max_sentences, args.max_pairs, args.ngram_max_chars, args.batch_size) < 1:
        parser.error("--max-sentences, --max-pairs, --ngram-max-chars and --batch-size must "
                     "be at least 1")
    return args


# ---------------------------------------------------------------------------
# Reading the text
# ---------------------------------------------------------------------------


def spread(lines: list[str], limit: int, size=lambda line: 1) -> list[str]:
    """At most `limit` of the lines (counted in `size` units: lines, or characters), every
    k-th one: an even spread of a file whose order means something (Leipzig files are
    sorted)."""
    total = sum(map(size, lines))
    if total <= limit:
        return lines
    step = math.ceil(total / limit)
    return lines[::step]


def overlap_limit(lines: int, max_overlap: int | None) -> int:
    """How many lines of an --eval-file may also be in train.txt: --max-overlap, or by default
    5, or 2 % of the lines when that is more (a few thousand natural sentences share some short
    common ones, «Яңгыр ява башлады.», with any corpus)."""
    return max(5, lines // 50) if max_overlap is None else max_overlap


def read_eval_file(path: Path, train: set[str], max_overlap: int | None) -> tuple[list[str], int]:
    """The sentences of an --eval-file that are not in train.txt, and how many were left out
    because they are (the model has seen those: their score would flatter it); refused when
    more lines than overlap_limit() are."""
    if not path.is_file():
        raise utils.UserError(f"--eval-file {path}: no such file. Give a UTF-8 text file with "
                              f"one Tatar sentence a line")
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except UnicodeDecodeError as e:
        raise utils.UserError(f"--eval-file {path} is not UTF-8 text ({e.reason} at byte "
                              f"{e.start}). Save it as UTF-8 and run again") from e
    sentences = [line for line in lines if line]
    if not sentences:
        raise utils.UserError(f"--eval-file {path} holds no sentences: give one sentence a line")
    seen = [s for s in sentences if s in train]
    limit = overlap_limit(len(sentences), max_overlap)
    if len(seen) > limit:
        raise utils.UserError(
            f"--eval-file {path}: {len(seen):,} of its {len(sentences):,} lines are also in "
            f"train.txt (for example «{seen[0][:60]}»), more than the {limit:,} allowed: the "
            f"model was trained on them, and a score on training text says nothing about "
            f"unseen Tatar. Give text from elsewhere, or score the other lines with "
            f"--max-overlap {len(seen)} (lines of train.txt are always left out)")
    kept = [s for s in sentences if s not in train]
    if not kept:
        raise utils.UserError(f"--eval-file {path}: every line is also in train.txt; give text "
                              f"the model has not been trained on")
    return kept, len(seen)


def text_sha(sentences: list[str]) -> str:
    return hashlib.sha256("\n".join(sentences).encode("utf-8")).hexdigest()[:16]


# ---------------------------------------------------------------------------
# The measurements
# ---------------------------------------------------------------------------


def harmony_accuracy(better: np.ndarray) -> float:
    return float(np.mean(better)) if len(better) else float("nan")


def tokenizer_figures(tokenizer: utils.Tokenizer, sentences: list[str]) -> dict:
    words = [w for s in sentences for w in s.split()]
    forms = [(" " if i else "") + w for s in sentences for i, w in enumerate(s.split())]
    lengths = [len(ids) for ids in tokenizer.encode_batch(forms)] if forms else []
    return {
        "words": len(words),
        "tokens_per_word": round(sum(lengths) / max(1, len(lengths)), 3),
        "whole_word_share": round(sum(1 for n in lengths if n == 1) / max(1, len(lengths)), 4),
        "vocab_size": tokenizer.vocab_size,
    }


def score(model, tokenizer, lm: ngram.CharNgram, sentences: list[str],
          args: argparse.Namespace) -> dict:
    """Both models on the same sentences: bits per character (the same characters, len + 1
    per sentence) and the vowel-harmony minimal pairs built from them."""
    chars = sum(len(s) + 1 for s in sentences)
    t0 = time.perf_counter()
    gpt_bpc = scoring.nats_to_bpc(sum(utils.sentence_nlls(model, tokenizer, sentences,
                                                          args.batch_size)), chars)
    gpt_s = time.perf_counter() - t0
    ngram_bpc = lm.bits_per_char(sentences)

    pairs = tatar_text.minimal_pairs(sentences, args.max_pairs, args.seed)
    originals, flipped = [p[0] for p in pairs], [p[1] for p in pairs]
    ng_orig, ng_flip = lm.sentence_logprobs(originals), lm.sentence_logprobs(flipped)
    gpt_orig = np.array(utils.sentence_nlls(model, tokenizer, originals, args.batch_size))
    gpt_flip = np.array(utils.sentence_nlls(model, tokenizer, flipped, args.batch_size))
    gpt_knows, ng_knows = gpt_orig < gpt_flip, ng_orig > ng_flip  # nats vs log2 P
    examples = [{"sentence": s, "flipped": f, "word": w, "flipped_word": fw,
                 "gpt_nats": [round(float(a), 3), round(float(b), 3)],
                 "ngram_bits": [round(float(-c), 3), round(float(-d), 3)]}
                for (s, f, w, fw), a, b, c, d in zip(pairs, gpt_orig, gpt_flip, ng_orig, ng_flip,
                                                     strict=True)][:EXAMPLE_PAIRS]
    return {"sentences": len(sentences), "chars": chars, "sha256": text_sha(sentences),
            "gpt": {"bpc": round(gpt_bpc, 4), "harmony_accuracy":
                    round(harmony_accuracy(gpt_knows), 4), "seconds": round(gpt_s, 2)},
            "ngram": {"bpc": round(ngram_bpc, 4),
                      "harmony_accuracy": round(harmony_accuracy(ng_knows), 4)},
            "beats_ngram_bpc": gpt_bpc < ngram_bpc,
            "harmony": {"pairs": len(pairs), "seed": args.seed, "examples": examples}}


def evaluate(args: argparse.Namespace) -> dict:
    started = time.perf_counter()
    device = utils.get_device(args.device)
    model, ckpt, tokenizer = utils.load_model_and_tokenizer(args.checkpoint, args.tokenizer,
                                                            device)
    processed = Path(args.data_dir) / "processed"
    val = spread(fileio.read_sentences(processed / "val.txt", args.data_dir), args.max_sentences)
    all_train = fileio.read_sentences(processed / "train.txt", args.data_dir)
    train = spread(all_train, args.ngram_max_chars, size=lambda s: len(s) + 1)
    if not val:
        raise utils.UserError(f"{processed / 'val.txt'} holds no sentences. Re-create it with: "
                              f"python 01_prepare_data.py --data-dir {args.data_dir}")
    train_set = set(all_train)
    own = {path: read_eval_file(path, train_set, args.max_overlap) for path in args.eval_file}
    print(f"val: {len(val):,} sentences, {sum(len(s) + 1 for s in val):,} characters; n-gram "
          f"trained on {len(train):,} train sentences")

    t0 = time.perf_counter()
    lm = ngram.CharNgram(args.order).fit(train)
    ngram_s = time.perf_counter() - t0
    v = score(model, tokenizer, lm, val, args)
    eval_files = []
    for path, (sentences, overlap) in own.items():
        r = score(model, tokenizer, lm, sentences, args)
        eval_files.append({"path": str(path), "train_overlap": overlap,
                           **{k: r[k] for k in ("sentences", "chars", "sha256", "gpt",
                                                "ngram", "beats_ngram_bpc")},
                           "pairs": r["harmony"]["pairs"]})
    card = utils.model_card(ckpt, model)
    return {
        "checkpoint": str(args.checkpoint),
        "fingerprint": checkpoints.checkpoint_fingerprint(ckpt),
        "model": {"preset": card["preset"], "parameters": model.num_params(),
                  "iterations": ckpt.get("iter"), "trained_on": card["trained on"]},
        "val": {"path": str(processed / "val.txt"), "sentences": v["sentences"],
                "chars": v["chars"], "sha256": v["sha256"]},
        "gpt": v["gpt"],
        "ngram": {"order": args.order, "smoothing": "interpolated modified Kneser-Ney",
                  **v["ngram"], "train_sentences": len(train), "train_chars": lm.train_chars,
                  "seconds": round(ngram_s, 2)},
        "beats_ngram_bpc": v["beats_ngram_bpc"],
        "harmony": v["harmony"],
        "eval_files": eval_files,
        "tokenizer": tokenizer_figures(tokenizer, val),
        "seconds": round(time.perf_counter() - started, 2),
    }


# ---------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["GPT", f"{result['ngram']['order']}-gram KN"]
    colours = ["tab:blue", "tab:gray"]
    fig, (ax_bpc, ax_pairs) = plt.subplots(1, 2, figsize=(8, 3.4))
    bpc = [result["gpt"]["bpc"], result["ngram"]["bpc"]]
    acc = [100 * result["gpt"]["harmony_accuracy"], 100 * result["ngram"]["harmony_accuracy"]]
    ax_bpc.bar(names, bpc, color=colours)
    ax_bpc.set(title="val bits per character (lower is better)", ylabel="bits/char")
    ax_pairs.bar(names, acc, color=colours)
    ax_pairs.set(title=f"vowel-harmony pairs ({result['harmony']['pairs']:,})",
                 ylabel="% known", ylim=(0, 100))
    for ax, values, fmt in ((ax_bpc, bpc, "{:.3f}"), (ax_pairs, acc, "{:.1f} %")):
        for i, v in enumerate(values):
            ax.text(i, v, fmt.format(v), ha="center", va="bottom")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("Tatar-GPT — бәяләү (evaluation)")
    fig.tight_layout()
    with fileio.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def print_report(result: dict, out: Path) -> None:
    gpt, ng, tok = result["gpt"], result["ngram"], result["tokenizer"]
    order = ng["order"]
    print(f"\n{'':<28}{'GPT':>10}{f'{order}-gram KN':>14}")
    print(f"{'val bits per character':<28}{gpt['bpc']:>10.3f}{ng['bpc']:>14.3f}")
    print(f"{'vowel-harmony pairs known':<28}{gpt['harmony_accuracy']:>10.1%}"
          f"{ng['harmony_accuracy']:>14.1%}   ({result['harmony']['pairs']:,} pairs)")
    print(f"tokenizer: {tok['tokens_per_word']:.2f} tokens per word, "
          f"{tok['whole_word_share']:.1%} of the words are one token "
          f"({tok['vocab_size']:,} tokens)")
    if result["eval_files"]:
        print(f"\nyour text (--eval-file){'':<10}{'sentences':>10}{'chars':>9}{'GPT bpc':>9}"
              f"{f'{order}-gram':>9}{'pairs':>7}{'GPT':>8}{f'{order}-gram':>8}")
        for f in result["eval_files"]:
            print(f"{Path(f['path']).name[:33]:<33}{f['sentences']:>10,}{f['chars']:>9,}"
                  f"{f['gpt']['bpc']:>9.3f}{f['ngram']['bpc']:>9.3f}{f['pairs']:>7,}"
                  f"{f['gpt']['harmony_accuracy']:>8.1%}{f['ngram']['harmony_accuracy']:>8.1%}")
            if f["train_overlap"]:
                print(f"  ({f['train_overlap']:,} of its lines are also in train.txt: left out "
                      f"of both scores)")
    verdict = "beats" if result["beats_ngram_bpc"] else "does NOT beat"
    print(f"\nThe GPT {verdict} the {order}-gram baseline on val bits per character.")
    for ex in result["harmony"]["examples"][:3]:
        print(f"  «{ex['word']}» vs «{ex['flipped_word']}»: GPT {ex['gpt_nats'][0]:.1f} vs "
              f"{ex['gpt_nats'][1]:.1f} nats, n-gram {ex['ngram_bits'][0]:.1f} vs "
              f"{ex['ngram_bits'][1]:.1f} bits")
    print(f"\nwrote {out} and {out.with_suffix('.png')} in {result['seconds']:.1f} s")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def work() -> int:
        out = Path(args.out) if args.out else Path(args.checkpoint).parent / "eval.json"
        result = evaluate(args)
        fileio.atomic_write_json(out, result)
        plot(result, out.with_suffix(".png"))
        print_report(result, out)
        return 0

    return utils.run_cli(work, "nothing was written")


if __name__ == "__main__":
    sys.exit(main())
