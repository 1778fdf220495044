"""The five-minute check of a trained Tatar-GPT, and the course's grading checklist.

Reads   models/best_model.pt, tokenizer/, data/processed/{val.txt,stats.json}
Prints  the model card, continuations of fixed Tatar prompts at three temperatures,
        the perplexity of held-out sentences, and with --checklist a ✅/❌ table in which
        every line is verified on the loaded model and its files, with the evidence.

    python quick_test.py
    python quick_test.py --checklist          # exit code 1 when a required item fails
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import torch

import config
import tatar_text
import utils
from model import GPT
from tatargpt import chat as chat_template
from tatargpt import checkpoints, cli, devices, fileio, scoring
from tatargpt.cli import option

TEMPERATURES = (0.3, 0.8, 1.2)  # around config.SAMPLING's; its other settings as they are
TATAR_LETTERS = "әөүҗңһӘӨҮҖҢҺ"


@dataclass
class Options:
    data_dir: str = option("data", "folder with processed/val.txt and stats.json")
    max_new_tokens: int = option(config.SAMPLING.max_new_tokens, "tokens generated per prompt",
                                 "N")
    val_sentences: int = option(5, "held-out sentences to score", "N")
    repetition_penalty: float = option(config.SAMPLING.repetition_penalty,
                                       "penalty on tokens already in the text, 1 = off", "P")
    checklist: bool = option(False, "verify the grading checklist and print it as a table")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cli.add_model_args(parser, "the model to test", seed=config.SAMPLING.seed)
    cli.add_options(parser, Options)
    args = parser.parse_args(argv)
    if args.max_new_tokens < 0 or args.val_sentences < 0:
        parser.error("--max-new-tokens and --val-sentences must be 0 or more")
    if not (math.isfinite(args.repetition_penalty) and args.repetition_penalty > 0):
        parser.error("--repetition-penalty must be a positive number (1 = off)")
    return args


# ---------------------------------------------------------------------------
# The five-minute check
# ---------------------------------------------------------------------------


def print_card(ckpt: dict, model: GPT) -> None:
    print("Tatar-GPT model card")
    for key, value in utils.model_card(ckpt, model).items():
        print(f"  {key:<20} {value}")


def print_samples(model: GPT, tokenizer: utils.Tokenizer, max_new_tokens: int,
                  seed: int, repetition_penalty: float) -> list[str]:
    """Continue each prompt at each temperature; return the continuations."""
    s = config.SAMPLING
    print(f"\nSamples ({max_new_tokens} new tokens, top-k {s.top_k}, top-p {s.top_p:g}, "
          f"repetition penalty {repetition_penalty:g}, seed {seed})")
    outputs = []
    for prompt in config.PROMPTS:
        print(f"\n«{prompt}»")
        for t in TEMPERATURES:
            text = utils.generate_text(model, tokenizer, prompt, max_new_tokens=max_new_tokens,
                                       temperature=t, top_k=s.top_k, top_p=s.top_p, seed=seed,
                                       repetition_penalty=repetition_penalty)
            outputs.append(text[len(prompt):])
            print(f"  T={t}: {text}")
    return outputs


def held_out_sentences(data_dir: Path, n: int) -> list[str]:
    return fileio.read_sentences(data_dir / "processed" / "val.txt", data_dir, n, required=False)


def print_perplexities(model: GPT, tokenizer: utils.Tokenizer, sentences: list[str]) -> float:
    """Per-sentence perplexity and bits/char; returns the perplexity of all of them together."""
    if not sentences:
        print("\n(no data/processed/val.txt: run 01_prepare_data.py to score held-out text)")
        return float("nan")
    print("\nHeld-out sentences (val.txt)")
    print(f"  {'perplexity':>10} {'bits/char':>9}  sentence")
    for s in sentences:
        score = utils.score_text(model, tokenizer, s)
        ppl = scoring.nats_to_ppl(score["nll"], score["tokens"])
        bpc = scoring.nats_to_bpc(score["nll"], score["chars"])
        print(f"  {ppl:>10.2f} {bpc:>9.3f}  {s[:70]}")
    total = utils.perplexity(model, tokenizer, sentences)
    print(f"  all {len(sentences)} together: perplexity {total:.2f}")
    return total


# ---------------------------------------------------------------------------
# The checklist: every row checked on the loaded model and its files
# ---------------------------------------------------------------------------


@dataclass
class Row:
    item: str
    ok: bool
    evidence: str
    required: bool = True


def check_from_scratch(ckpt: dict, ckpt_path: Path, vocab_size: int) -> Row:
    log_path = ckpt_path.parent / "train_log.jsonl"
    item = "Trained from scratch (no pretrained weights)"
    evals = [r for r in checkpoints.read_train_log(log_path) if r["type"] == "eval"]
    if ckpt.get("first_eval"):  # an exported folder keeps the first evaluation of its log
        evals, log_path = [ckpt["first_eval"]], Path("the export's config.json")
    elif not log_path.is_file():
        return Row(item, False, f"no training log at {log_path}")
    if not evals or evals[0]["iter"] != 0:
        return Row(item, False, f"{log_path.name} has no evaluation at iteration 0")
    start = evals[0]["val_loss"]
    # A randomly initialised model predicts about uniformly: loss ≈ ln(vocab size).
    ok = abs(start - math.log(vocab_size)) < 1.0 and "scratch" in str(ckpt.get("init", ""))
    return Row(item, ok, f"{log_path.name}: val loss {start:.2f} at iteration 0 ≈ "
                         f"ln({vocab_size}) = {math.log(vocab_size):.2f}; "
                         f"checkpoint init: {ckpt.get('init', '?')}")


@torch.no_grad()
def check_decoder_only(model: GPT) -> Row:
    """Causality probe: changing tokens after position t must not change logits up to t."""
    T = min(32, model.config.block_size)
    g = torch.Generator().manual_seed(0)
    device = next(model.parameters()).device
    a = torch.randint(0, model.config.vocab_size, (1, T), generator=g).to(device)
    b = a.clone()
    t = T // 2
    b[0, t + 1:] = torch.randint(0, model.config.vocab_size, (T - t - 1,), generator=g)
    la, _ = model(a, all_logits=True)
    lb, _ = model(b, all_logits=True)
    before = (la[0, : t + 1] - lb[0, : t + 1]).abs().max().item()
    after = (la[0, t + 1:] - lb[0, t + 1:]).abs().max().item()
    ok = before < 1e-4 and after > 1e-4
    return Row("Decoder-only transformer (causal)", ok,
               f"changing tokens {t + 1}…{T - 1}: logits at ≤ {t} moved by {before:.1e}, "
               f"later ones by {after:.2f}")


def check_context(model: GPT) -> Row:
    n = model.config.block_size
    return Row("Context ≥ 256 tokens", n >= 256, f"block_size = {n} (RoPE tables "
               f"and KV cache sized for {n} positions)")


def check_language(tokenizer: utils.Tokenizer, data_dir: Path, ckpt: dict) -> Row:
    val = data_dir / "processed" / "val.txt"
    vocab = [tokenizer.id_to_token(i) for i in range(tokenizer.vocab_size)]
    vocab_text = tokenizer.decode(list(range(4, tokenizer.vocab_size)))
    letters_in_vocab = sorted({c for c in vocab_text if c in TATAR_LETTERS.lower()})
    tatar_tokens = sum(1 for i in range(4, len(vocab))
                       if any(c in TATAR_LETTERS for c in tokenizer.decode([i])))
    evidence = (f"tokenizer: {tatar_tokens:,} of {len(vocab):,} tokens contain "
                f"ә ө ү җ ң һ (found: {' '.join(letters_in_vocab)})")
    ok = len(letters_in_vocab) == 6
    if val.is_file():
        words = val.read_text(encoding="utf-8").split()[:200_000]
        share = sum(any(c in TATAR_LETTERS for c in w) for w in words) / max(1, len(words))
        evidence += f"; val.txt: {share:.0%} of {len(words):,} words use them"
        ok = ok and share > 0.05
    sources = (ckpt.get("data_stats") or {}).get("sources")
    if sources:
        names = [s.get("name", s.get("path", "?")) if isinstance(s, dict) else str(s)
                 for s in sources]
        evidence += f"; corpus: {', '.join(map(str, names))[:80]}"
    return Row("Low-resource language: Tatar (Cyrillic with ә ө ү җ ң һ)", ok, evidence)


def check_generation(samples: list[str], val_ppl: float, ckpt: dict, vocab_size: int) -> Row:
    """Most samples go on in Tatar, and the model beats uniform guessing by 10× or more."""
    cyrillic = sum(1 for s in samples if any("\u0400" <= c <= "\u04ff" for c in s))
    best = ckpt.get("best_val_loss", float("nan"))
    best_ppl = scoring.nats_to_ppl(best)
    # A sample may end at once with "." and <eos>; half of them must still continue in Tatar.
    ok = cyrillic >= len(samples) / 2 and best_ppl < vocab_size / 10
    ppl_text = f"{val_ppl:.1f}" if math.isfinite(val_ppl) else "n/a"
    return Row("Adequate generation (samples printed, val perplexity reported)", ok,
               f"{cyrillic}/{len(samples)} samples continue in Cyrillic; best val perplexity "
               f"{best_ppl:.1f} (uniform guessing: {vocab_size:,}); held-out sentences {ppl_text}")


def check_rope(model: GPT) -> Row:
    rope = model.blocks[0].attn.rope
    ok = model.config.pos_encoding == "rope" and rope is not None and model.wpe is None
    return Row("Bonus: rotary position embeddings (RoPE)", ok,
               f"pos_encoding={model.config.pos_encoding}, θ base {model.config.rope_theta:g}, "
               f"no learned position table" if ok else "learned positions", required=False)


def check_mixed_precision(model: GPT, ckpt: dict) -> Row:
    """The autocast path works on this device: a few steps of a copy of the model under
    autocast give a finite loss and gradients close to fp32's. The row reports the
    precision the checkpoint itself was trained in and why; it does not fail because the
    automatic choice found fp32 faster on that machine."""
    device = next(model.parameters()).device
    dtype = torch.float16 if device.type in ("cuda", "mps") else torch.bfloat16
    if device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False):
        dtype = torch.bfloat16
    cfg = replace(model.config, dropout=0.0, attn_dropout=0.0)
    T = min(64, cfg.block_size)
    x = torch.randint(0, cfg.vocab_size, (4, T + 1), generator=torch.Generator().manual_seed(3))
    x = x.to(device)
    grads, losses = [], []
    for mixed in (False, True):
        m = GPT(cfg).to(device)
        m.load_state_dict(model.state_dict())
        m.train()
        with torch.autocast(device.type, dtype=dtype, enabled=mixed):
            _, loss = m(x[:, :-1], x[:, 1:])
        loss.backward()
        losses.append(loss.item())
        grads.append(torch.cat([p.grad.flatten().float() for p in m.parameters()]))
    cosine = torch.nn.functional.cosine_similarity(grads[0], grads[1], dim=0).item()
    name = str(dtype).removeprefix("torch.")
    ok = all(math.isfinite(v) for v in losses) and abs(losses[0] - losses[1]) < 0.05 \
        and cosine > 0.99
    trained = ckpt.get("dtype", "?")
    why = ckpt.get("dtype_reason")
    return Row("Bonus: mixed precision training", ok,
               f"{name} autocast on {device.type}: loss {losses[1]:.4f} vs fp32 {losses[0]:.4f}, "
               f"gradient cosine {cosine:.4f} to fp32; this checkpoint was trained in {trained}"
               + (f" ({why})" if why else "") + " — `--dtype` forces either",
               required=False)


def check_gradient_checkpointing(model: GPT) -> Row:
    """Forward+backward of a copy with and without checkpointing: same loss and gradients."""
    cfg = model.config
    device = next(model.parameters()).device
    T = min(32, cfg.block_size)
    x = torch.randint(0, cfg.vocab_size, (2, T), generator=torch.Generator().manual_seed(1))
    x = x.to(device)
    results = []
    for flag in (False, True):
        m = GPT(replace(cfg, gradient_checkpointing=flag, dropout=0.0, attn_dropout=0.0))
        m.to(device)
        m.load_state_dict(model.state_dict())
        m.train()
        _, loss = m(x[:, :-1], x[:, 1:])
        loss.backward()
        results.append((loss.item(), m.wte.weight.grad.clone()))
    diff = (results[0][1] - results[1][1]).abs().max().item()
    ok = math.isclose(results[0][0], results[1][0], rel_tol=1e-6) and diff < 1e-5
    return Row("Bonus: gradient checkpointing available", ok,
               f"--gradient-checkpointing: same loss ({results[1][0]:.4f}) and gradients "
               f"(max diff {diff:.1e}) with activations recomputed", required=False)


@torch.no_grad()
def check_sdpa(model: GPT) -> Row:
    cfg = model.config
    device = next(model.parameters()).device
    plain = GPT(replace(cfg, attention="math")).to(device).eval()
    plain.load_state_dict(model.state_dict())
    x = torch.randint(0, cfg.vocab_size, (1, min(64, cfg.block_size)),
                      generator=torch.Generator().manual_seed(2)).to(device)
    diff = (model(x, all_logits=True)[0] - plain(x, all_logits=True)[0]).abs().max().item()
    ok = cfg.attention == "sdpa" and diff < 1e-3
    return Row("Bonus: FlashAttention path (scaled_dot_product_attention)", ok,
               f"attention={cfg.attention}; equals the plain-math path to {diff:.1e}",
               required=False)


def check_mps_autodetect() -> Row:
    """Simulate an Apple Silicon machine and check that auto picks MPS."""
    real_mps, real_cuda = devices.mps_available, torch.cuda.is_available
    try:
        devices.mps_available = lambda: True
        torch.cuda.is_available = lambda: False
        picked = devices.select_device("auto")[0].type
    finally:
        devices.mps_available, torch.cuda.is_available = real_mps, real_cuda
    here = "yes" if devices.mps_available() else "no"
    return Row("Bonus: Apple MPS autodetection", picked == "mps",
               f"--device auto order CUDA → MPS → CPU; on a simulated Mac it picks {picked}; "
               f"MPS on this machine: {here}", required=False)


def check_presets() -> Row:
    small = config.param_breakdown(config.get_preset("small"))["total"]
    sizes = {n: config.param_breakdown(config.get_preset(n))["total"]
             for n in ("gpt2", "llama", "mistral")}
    ok = all(abs(s - small) / small < 0.05 for s in sizes.values())
    return Row("Bonus: architecture presets (gpt2, llama, mistral)", ok,
               ", ".join(f"{n} {s / 1e6:.1f}M" for n, s in sizes.items())
               + f" vs small {small / 1e6:.1f}M (--preset NAME)", required=False)


def check_baseline(ckpt_path: Path, ckpt: dict) -> Row:
    """04_evaluate.py's comparison with a character n-gram model on the same val text."""
    item = "Bonus: beats the n-gram baseline (val bpc)"
    path = ckpt_path.parent / "eval.json"
    if not path.is_file():
        return Row(item, False, f"no {path}: measure it with python 04_evaluate.py "
                                f"--checkpoint {ckpt_path}", required=False)
    try:
        ev = fileio.read_json(path, f"python 04_evaluate.py --checkpoint {ckpt_path}")
        if ev.get("fingerprint") != checkpoints.checkpoint_fingerprint(ckpt):
            return Row(item, False, f"{path} describes another checkpoint: measure this one "
                                    f"with python 04_evaluate.py --checkpoint {ckpt_path}",
                       required=False)
        gpt, ngram, pairs = ev["gpt"], ev["ngram"], ev["harmony"]["pairs"]
        evidence = (f"val bits/char: GPT {gpt['bpc']:.3f} vs {ngram['order']}-gram Kneser-Ney "
                    f"{ngram['bpc']:.3f} ({ev['val']['chars']:,} characters); vowel-harmony "
                    f"pairs: GPT {gpt['harmony_accuracy']:.1%} vs n-gram "
                    f"{ngram['harmony_accuracy']:.1%} of {pairs:,}")
        return Row(item, gpt["bpc"] < ngram["bpc"], evidence, required=False)
    except (KeyError, TypeError, utils.UserError) as e:
        return Row(item, False, f"{path} is damaged ({e}): run python 04_evaluate.py again",
                   required=False)


def check_chat(ckpt_path: Path, tokenizer: utils.Tokenizer, device: torch.device) -> Row:
    """The fine-tuned model of 05_finetune.py beside the checkpoint: does it answer the course's
    chat prompts in Tatar, and end its turn with <|end|>?"""
    item = "Bonus: fine-tuned to answer (SFT, 05_finetune.py)"
    path = ckpt_path.parent / "chat_model.pt"
    if not path.is_file():
        return Row(item, False, f"no {path}: make it with python 05_finetune.py", required=False)
    try:
        model, ckpt = utils.load_model(path, device)
        checkpoints.check_tokenizer_matches(ckpt, tokenizer, path)
        answers = [list(chat_template.stream_reply(  # greedy, the demos' repetition penalty
            model, tokenizer, [{"role": "user", "content": q}], max_new_tokens=80,
            temperature=0, repetition_penalty=config.SAMPLING.repetition_penalty))
            for q in config.CHAT_PROMPTS]
    except utils.UserError as e:
        return Row(item, False, str(e), required=False)
    ended = sum(bool(a) and a[-1] == tokenizer.end_id for a in answers)
    letters, cyrillic, tatar = tatar_text.letter_counts(
        " ".join(tokenizer.decode(a) for a in answers))
    cyrillic /= max(1, letters)
    ok = ended == len(answers) and cyrillic >= 0.95 and tatar > 0
    first = tokenizer.decode(answers[0]).strip()
    return Row(item, ok, f"{path.name}: {ended}/{len(answers)} answers end with <|end|>, "
                         f"{cyrillic:.0%} of their letters Cyrillic; «{config.CHAT_PROMPTS[0]}» → "
                         f"«{first[:80]}»", required=False)


def print_checklist(rows: list[Row]) -> None:
    print("\nGrading checklist")
    print("| | item | evidence |")
    print("|---|---|---|")
    for r in rows:
        print(f"| {'✅' if r.ok else '❌'} | {r.item} | {r.evidence} |")
    required = [r for r in rows if r.required]
    bonus = [r for r in rows if not r.required]
    print(f"\nrequired: {sum(r.ok for r in required)}/{len(required)} passed; "
          f"bonus: {sum(r.ok for r in bonus)}/{len(bonus)}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return utils.run_cli(lambda: run(args))


def run(args: argparse.Namespace) -> int:
    ckpt_path, data_dir = Path(args.checkpoint), Path(args.data_dir)
    device = utils.get_device(args.device)
    model, ckpt, tokenizer = utils.load_model_and_tokenizer(ckpt_path, args.tokenizer, device)
    val = held_out_sentences(data_dir, args.val_sentences)

    print_card(ckpt, model)
    samples = print_samples(model, tokenizer, args.max_new_tokens, args.seed,
                            args.repetition_penalty)
    val_ppl = print_perplexities(model, tokenizer, val)
    if not args.checklist:
        return 0

    rows = [
        check_from_scratch(ckpt, ckpt_path, model.config.vocab_size),
        check_decoder_only(model),
        check_context(model),
        check_language(tokenizer, data_dir, ckpt),
        check_generation(samples, val_ppl, ckpt, model.config.vocab_size),
        check_rope(model),
        check_mixed_precision(model, ckpt),
        check_gradient_checkpointing(model),
        check_sdpa(model),
        check_mps_autodetect(),
        check_presets(),
        check_baseline(ckpt_path, ckpt),
        check_chat(ckpt_path, tokenizer, device),
    ]
    print_checklist(rows)
    return 0 if all(r.ok for r in rows if r.required) else 1


if __name__ == "__main__":
    sys.exit(main())
