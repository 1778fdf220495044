"""Stage 2: train a byte-level BPE tokenizer on the Tatar corpus and encode the corpus with it.

Byte-level BPE starts from the 256 possible bytes, so every string has an encoding: nothing is
ever "unknown", and `decode(encode(s)) == s` exactly (Tatar letters, Russian, Latin, emoji,
spaces, newlines). Training then learns merges of frequent byte sequences (" татар", "ларга", ...)
until the vocabulary has `--vocab-size` tokens.

Inputs (made by 01_prepare_data.py):
    DATA_DIR/processed/train.txt, val.txt   NFC UTF-8, one sentence per line
    DATA_DIR/processed/stats.json           optional; its figures are copied into the config

Outputs:
    TOKENIZER_DIR/tokenizer.json            the tokenizer (Hugging Face `tokenizers` format)
    TOKENIZER_DIR/tokenizer_config.json     sizes, special ids, corpus stats, quality figures
    DATA_DIR/processed/train.bin, val.bin   flat uint16 token ids, each sentence <bos> ... <eos>
    DATA_DIR/processed/meta.json            token and character counts, tokenizer hash

The tokenizer is trained on train.txt only, so the quality figures and the validation loss
measured on val.txt are honest. All five outputs are written under temporary names and replace
the old ones together at the end: a failure or Ctrl-C on the way leaves the previous
tokenizer and token files in place, still matching each other.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from itertools import chain
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from tqdm import tqdm

import config
import utils
from tatargpt import cli, fileio
from tatargpt.cli import option

# 256 byte symbols + the special tokens + room for at least a few dozen merges.
MIN_VOCAB_SIZE = 300
N_LONGEST_MERGES = 20
SPECIAL_IDS = {name: i for i, name in enumerate(config.SPECIAL_TOKENS + config.CHAT_TOKENS)}
NEXT_COMMANDS = (
    "python 03_train.py --preset tiny   # quick: the tiny model",
    "python 03_train.py                 # the reference run (preset small)",
)


@dataclass
class SplitStats:
    """Counts of one encoded split, as recorded in meta.json."""

    lines: int = 0
    chars: int = 0
    tokens: int = 0


def check_vocab_size(vocab_size: int, min_frequency: int) -> None:
    """Refuse sizes the token files or the byte alphabet cannot hold."""
    if vocab_size > config.UINT16_LIMIT:
        raise utils.UserError(
            f"--vocab-size {vocab_size:,} does not fit uint16 token files "
            f"(at most {config.UINT16_LIMIT:,} ids). "
            f"Use a smaller --vocab-size, e.g. {config.TokenizerConfig().vocab_size}."
        )
    if vocab_size < MIN_VOCAB_SIZE:
        raise utils.UserError(
            f"--vocab-size {vocab_size} is too small: the minimum is {MIN_VOCAB_SIZE} "
            f"(256 byte symbols + {len(SPECIAL_IDS)} special tokens + some merges). "
            f"Use --vocab-size {MIN_VOCAB_SIZE} or more "
            f"(default {config.TokenizerConfig().vocab_size})."
        )
    if min_frequency < 1:
        raise utils.UserError(f"--min-frequency must be at least 1, got {min_frequency}.")


def read_batches(path: Path, batch_lines: int) -> Iterator[tuple[list[str], int]]:
    """The sentences of a text file in lists of `batch_lines`, with the bytes read for each.

    Blank lines are not sentences and are skipped. The file is read as bytes so that a progress
    bar can show how much of it is done (a text file's position is not a byte count).
    """
    batch: list[str] = []
    nbytes = 0
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, start=1):
            nbytes += len(raw)
            try:
                # "\r" too: a train.txt saved by a Windows editor must not teach "\r" tokens.
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as e:
                raise utils.UserError(
                    f"{path} line {line_no} is not UTF-8 ({e.reason}). "
                    f"Re-create it with: python 01_prepare_data.py"
                ) from e
            if line.strip():
                batch.append(line)
            if len(batch) == batch_lines:
                yield batch, nbytes
                batch, nbytes = [], 0
    if batch or nbytes:
        yield batch, nbytes


def find_inputs(data_dir: Path) -> tuple[Path, Path]:
    """Paths of train.txt and val.txt, after checking that both hold at least one sentence."""
    processed = data_dir / "processed"
    make_them = "python 01_prepare_data.py" + (
        f" --data-dir {data_dir}" if data_dir != Path("data") else ""
    )
    paths = (processed / "train.txt", processed / "val.txt")
    for path in paths:
        if not path.is_file():
            raise utils.UserError(f"no text at {path}. Make it with: {make_them}")
        if not any(batch for batch, _ in read_batches(path, batch_lines=1)):
            raise utils.UserError(f"{path} holds no sentences. Re-create it with: {make_them}")
    return paths


def build_tokenizer() -> Tokenizer:
    """An untrained byte-level BPE tokenizer (no unk token: every byte has an id)."""
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    # No prefix space: a sentence's first word is encoded as written, so decoding is exact.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    # A literal "<eos>" in the text is text, not the end of a sentence (utils.Tokenizer agrees).
    tok.encode_special_tokens = True
    return tok


def train_tokenizer(train_path: Path, vocab_size: int, min_frequency: int,
                    batch_lines: int) -> Tokenizer:
    """Learn BPE merges on train.txt; the special tokens get ids 0-6 in config's order (the
    four of every text, then the chat template's three)."""
    tok = build_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_IDS),
        # All 256 bytes, even those train.txt lacks: then no text is ever unencodable.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=sys.stderr.isatty(),
    )
    # Sentences are fed one by one (no newline), exactly as they are encoded later.
    batches = (batch for batch, _ in read_batches(train_path, batch_lines))
    tok.train_from_iterator(batches, trainer=trainer)
    return tok


def check_special_ids(tok: Tokenizer) -> None:
    """Later stages and the checkpoints rely on <pad>=0, <unk>=1, <bos>=2, <eos>=3, and the
    chat template on <|user|>=4, <|assistant|>=5, <|end|>=6."""
    got = {name: tok.token_to_id(name) for name in SPECIAL_IDS}
    if got != SPECIAL_IDS:
        raise RuntimeError(f"special token ids are {got}, expected {SPECIAL_IDS}")


def longest_merges(tok: Tokenizer, n: int = N_LONGEST_MERGES) -> list[str]:
    """The `n` learned merges with the longest text, decoded from byte symbols to readable text.

    Ties go to the earlier (more frequent) merge. Merges that start or end inside a multi-byte
    character (the last byte of "Ү" + "смерләр") decode to "\ufffd" and are left out: they
    are not readable text.
    """
    merges = json.loads(tok.to_str())["model"]["merges"]
    # tokenizers < 0.20 stores a merge as "left right", later versions as ["left", "right"].
    pairs = [m.split(" ", 1) if isinstance(m, str) else m for m in merges]
    texts = [tok.decoder.decode([left + right]) for left, right in pairs]
    whole = [i for i, text in enumerate(texts) if "\ufffd" not in text]
    ranked = sorted(whole, key=lambda i: (-len(texts[i]), i))
    return [texts[i] for i in ranked[:n]]


def measure_quality(tok: utils.Tokenizer, val_path: Path, batch_lines: int) -> dict:
    """Tokens per word, characters per token and one-token words on val.txt.

    A word is a whitespace-separated piece. Byte-level BPE without a prefix space encodes a
    word inside a sentence together with the space before it (" сүз"), so every word but a
    line's first is measured with a leading space, as it occurs in running text.
    """
    words: Counter[str] = Counter()
    chars = tokens = 0
    for batch, _ in read_batches(val_path, batch_lines):
        for line, ids in zip(batch, tok.encode_batch(batch), strict=True):
            chars += len(line)
            tokens += len(ids)
            first, *rest = line.split()
            words[first] += 1
            words.update(" " + w for w in rest)
    forms = list(words)
    n_words = word_tokens = one_token_words = 0
    for start in range(0, len(forms), batch_lines):
        chunk = forms[start:start + batch_lines]
        for form, ids in zip(chunk, tok.encode_batch(chunk), strict=True):
            count = words[form]
            n_words += count
            word_tokens += count * len(ids)
            one_token_words += count if len(ids) == 1 else 0
    return {
        "split": "val",
        "words": n_words,
        "distinct_words": len(forms),
        "tokens_per_word": round(word_tokens / n_words, 3),
        "chars_per_token": round(chars / tokens, 3),  # sentence text only: no <bos>/<eos>
        "one_token_word_share": round(one_token_words / n_words, 4),
    }


def batch_to_array(ids: list[list[int]], bos_id: int, eos_id: int) -> np.ndarray:
    """One flat uint16 array: <bos> ids <eos> for each sentence of the batch."""
    n = sum(map(len, ids)) + 2 * len(ids)
    flat = chain.from_iterable(chain((bos_id,), x, (eos_id,)) for x in ids)
    return np.fromiter(flat, dtype=np.uint16, count=n)


def encode_split(tok: utils.Tokenizer, text_path: Path, bin_path: Path,
                 batch_lines: int, copies: int = 1) -> SplitStats:
    """Encode a text file into `bin_path` batch by batch, never holding all its ids in memory;
    `copies` times over (each copy segmented afresh when the tokenizer has BPE dropout)."""
    stats = SplitStats()
    with open(bin_path, "wb") as f, tqdm(
        total=copies * text_path.stat().st_size, unit="B", unit_scale=True,
        desc=f"encoding {text_path.name}", disable=None,
    ) as bar:
        for _copy in range(copies):
            stats = encode_once(tok, text_path, f, batch_lines, stats, bar)
    return stats


def encode_once(tok: utils.Tokenizer, text_path: Path, f, batch_lines: int, stats: SplitStats,
                bar) -> SplitStats:
    for batch, nbytes in read_batches(text_path, batch_lines):
        arr = batch_to_array(tok.encode_batch(batch), tok.bos_id, tok.eos_id)
        arr.tofile(f)
        stats.lines += len(batch)
        # Characters of a split = sum(len(line) + 1): the +1 is the sentence boundary that
        # <eos> stands for. 03_train.py turns the loss into bits per character with it:
        # val_loss_nats * val_tokens / val_chars / ln 2.
        stats.chars += sum(len(line) + 1 for line in batch)
        stats.tokens += len(arr)
        bar.update(nbytes)
    return stats


def read_prepare_stats(processed: Path) -> dict | None:
    """The single-value figures of 01_prepare_data.py's stats.json, when it is there."""
    path = processed / "stats.json"
    if not path.is_file():
        return None
    try:
        stats = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        print(f"note: {path} is not valid JSON; its figures are left out of the config")
        return None
    if not isinstance(stats, dict):
        return None
    return {k: v for k, v in stats.items() if isinstance(v, (str, int, float, bool))}


def write_tokenizer_config(path: Path, tok: utils.Tokenizer, requested: int,
                           min_frequency: int, train: SplitStats, prepare_stats: dict | None,
                           quality: dict) -> None:
    fileio.atomic_write_json(path, {
        "model": "ByteLevel BPE",
        "vocab_size": tok.vocab_size,
        "requested_vocab_size": requested,
        "min_frequency": min_frequency,
        "special_tokens": dict(SPECIAL_IDS),
        "normalization": "NFC",
        "training_corpus": {
            "file": "train.txt",
            "lines": train.lines,
            "chars": train.chars,
            "tokens": train.tokens,
            "prepare_data_stats": prepare_stats,
        },
        "quality": quality,
        "tokenizer_hash": tok.hash,
    })


def write_meta(path: Path, tok: utils.Tokenizer, stats: dict[str, SplitStats],
               bpe_dropout: float = 0.0, train_copies: int = 1) -> dict:
    meta = {
        "vocab_size": tok.vocab_size,
        "dtype": "uint16",
        "bos_id": tok.bos_id,
        "eos_id": tok.eos_id,
        "pad_id": tok.pad_id,
        "unk_id": tok.unk_id,
        "tokenizer_hash": tok.hash,
        **{f"{split}_{key}": value for split, s in stats.items()
           for key, value in asdict(s).items()},
        "chars_rule": "sum(len(line) + 1) over the sentences: the +1 is the boundary <eos> "
                      "stands for",
        "tokens_rule": "<bos> and <eos> included",
        # train.bin holds train.txt this many times, each copy segmented with BPE dropout.
        "train_copies": train_copies, "bpe_dropout": bpe_dropout,
    }
    fileio.atomic_write_json(path, meta)
    return meta


def print_summary(tok: utils.Tokenizer, quality: dict, meta: dict, tokenizer_dir: Path,
                  processed: Path, seconds: float) -> None:
    print(f"Tokenizer: {tok.vocab_size:,} tokens -> {tokenizer_dir}/tokenizer.json "
          f"(hash {tok.hash[:12]})")
    print(f"Quality on val.txt ({quality['words']:,} words):")
    print(f"  tokens per word       {quality['tokens_per_word']:.2f}")
    print(f"  characters per token  {quality['chars_per_token']:.2f}")
    print(f"  one-token words       {quality['one_token_word_share']:.1%}")
    print(f"  {len(quality['longest_merges'])} longest merges: "
          + ", ".join(repr(m) for m in quality["longest_merges"]))
    print(f"Token files: {processed}/train.bin {meta['train_tokens']:,} tokens, "
          f"val.bin {meta['val_tokens']:,} tokens (uint16) + meta.json")
    print(f"Done in {seconds:.1f} s. Next:")
    for command in NEXT_COMMANDS:
        print(f"  {command}")


def run(data_dir: Path, tokenizer_dir: Path, vocab_size: int, min_frequency: int,
        batch_lines: int, bpe_dropout: float = 0.0, train_copies: int = 1) -> dict:
    """The whole stage; returns meta.json's content."""
    start = time.perf_counter()
    check_vocab_size(vocab_size, min_frequency)
    if batch_lines < 1:
        raise utils.UserError(f"--batch-lines must be at least 1, got {batch_lines}.")
    if not 0 <= bpe_dropout < 1:
        raise utils.UserError(f"--bpe-dropout must be at least 0 and below 1, got {bpe_dropout}.")
    if train_copies < 1 or (train_copies > 1 and bpe_dropout == 0):
        raise utils.UserError(f"--train-copies must be at least 1, and more than 1 only with "
                              f"--bpe-dropout (identical copies teach nothing), got "
                              f"{train_copies}.")
    train_path, val_path = find_inputs(data_dir)
    processed = train_path.parent

    print(f"Training byte-level BPE ({vocab_size:,} tokens, min frequency {min_frequency}) "
          f"on {train_path} ...")
    hf_tok = train_tokenizer(train_path, vocab_size, min_frequency, batch_lines)
    check_special_ids(hf_tok)
    actual = hf_tok.get_vocab_size()
    if actual < vocab_size:
        print(f"note: the corpus fills only {actual:,} of the {vocab_size:,} requested tokens "
              f"(no more pairs occur {min_frequency}+ times); the vocabulary has {actual:,}.")
    merges = longest_merges(hf_tok)

    outputs = [processed / "train.bin", processed / "val.bin", tokenizer_dir / "tokenizer.json",
               tokenizer_dir / "tokenizer_config.json", processed / "meta.json"]
    with fileio.atomic_paths(outputs) as (train_bin, val_bin, tok_json, tok_config, meta_json):
        tok_json.write_text(hf_tok.to_str(pretty=True), encoding="utf-8")
        # From here on everything goes through the written file, as the later stages see it.
        tok = utils.Tokenizer(tokenizer_dir, json_path=tok_json)
        quality = {**measure_quality(tok, val_path, batch_lines), "longest_merges": merges}
        # BPE dropout (Provilkov et al., 2020) segments each copy of train.txt afresh, so the
        # model meets a word split in many ways; val.bin and every later stage get the one
        # segmentation tokenizer.json gives (the dropout is never saved in it).
        tok.set_bpe_dropout(bpe_dropout)
        stats = {"train": encode_split(tok, train_path, train_bin, batch_lines, train_copies)}
        tok.set_bpe_dropout(0.0)
        stats["val"] = encode_split(tok, val_path, val_bin, batch_lines)
        write_tokenizer_config(tok_config, tok, vocab_size, min_frequency, stats["train"],
                               read_prepare_stats(processed), quality)
        meta = write_meta(meta_json, tok, stats, bpe_dropout, train_copies)
    print_summary(tok, quality, meta, tokenizer_dir, processed, time.perf_counter() - start)
    return meta


@dataclass
class PathOptions:
    data_dir: Path = option(Path("data"), "folder holding processed/{train,val}.txt from "
                                          "01_prepare_data.py; the token files and meta.json "
                                          "go to its processed/")
    tokenizer_dir: Path = option(Path("tokenizer"), "where tokenizer.json and "
                                                    "tokenizer_config.json go")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Train a byte-level BPE tokenizer on DATA_DIR/processed/train.txt and "
                    "encode train.txt and val.txt into uint16 token files.",
    )
    cli.add_options(parser, PathOptions)
    config.add_flags(parser, config.TokenizerConfig, config.TOKENIZER_HELP)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def work() -> int:
        run(args.data_dir, args.tokenizer_dir, args.vocab_size, args.min_frequency,
            args.batch_lines, args.bpe_dropout, args.train_copies)
        return 0

    return utils.run_cli(work, "the tokenizer and the token files are as they were")


if __name__ == "__main__":
    sys.exit(main())
