"""Export a trained Tatar-GPT to a folder that plain Hugging Face `transformers` loads.

    python export_hf.py --checkpoint models/best_model.pt --tokenizer tokenizer --out hf_model/

Reads   a checkpoint of 03_train.py and its tokenizer (and models/eval.json when there is one)
Writes  OUT/config.json, model.safetensors, generation_config.json   the model
        OUT/tokenizer.json, tokenizer_config.json                     the tokenizer
        OUT/README.md                                                 the model card

Then, with no code of this repository:

    from transformers import AutoModelForCausalLM, AutoTokenizer
    model = AutoModelForCausalLM.from_pretrained("hf_model")
    tokenizer = AutoTokenizer.from_pretrained("hf_model")

Our architectures are existing transformers architectures with particular settings, so the
weights only need renaming (and, for some, re-ordering):

| our model (config.py switches)                  | transformers class    | what changes          |
|---|---|---|
| LayerNorm, GELU, RoPE (tiny, small, medium, …)  | GPTNeoXForCausalLM    | q, k, v interleaved per head; rotary on the whole head (rotary_pct 1), sequential residual, zero biases |
| RMSNorm, SwiGLU, RoPE (llama)                   | LlamaForCausalLM      | q, k, v split; gate/up/down |
| RMSNorm, SwiGLU, RoPE, sliding window (mistral) | MistralForCausalLM    | as llama, with the window |
| LayerNorm, GELU, learned positions (gpt2)       | GPT2LMHeadModel       | Conv1D weights transposed; zero biases; exact GELU |

Other combinations (RMSNorm with a GELU MLP, grouped-query attention with LayerNorm, …) have
no exact counterpart and are refused. The tokenizer becomes a `PreTrainedTokenizerFast` that
puts <bos> in front of a text (as our generation does) and never reads "<eos>" typed in a
text as the special token; `generate()` stops at <eos>.

`utils.load_model` reads such a folder back without transformers (only safetensors), so
quick_test.py and app.py demo an exported or downloaded model as they do a checkpoint.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import config
import utils
from tatargpt import chat as chat_template
from tatargpt import checkpoints, cli, fileio, scoring
from tatargpt.cli import option
from tatargpt.hf_format import (  # noqa: F401  (names the tests and the docs use here)
    FAMILIES,
    METADATA_KEY,
    family_of,
    from_hf,
    hf_config,
    to_hf,
)

# ---------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------


def export(checkpoint: Path, tokenizer_dir: Path, out: Path, overwrite: bool = False) -> dict:
    """Write the transformers folder (under OUT.tmp, renamed at the end); what was written."""
    try:
        import transformers
    except ImportError as e:
        raise utils.UserError("the export needs Hugging Face transformers: pip install "
                              "transformers (the course itself does not need it)") from e
    if Path(checkpoint).is_dir():
        raise utils.UserError(f"{checkpoint} is already an exported folder")
    model, ckpt, tokenizer = utils.load_model_and_tokenizer(checkpoint, tokenizer_dir)
    cfg = model.config
    family = family_of(cfg)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise utils.UserError(f"{out} exists and is not empty. Choose another --out, or add "
                              f"--overwrite to replace it.")
    evaluation = read_evaluation(Path(checkpoint), ckpt)

    staging = out.with_name(out.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        is_chat = bool(ckpt.get("finetune"))  # a model of 05_finetune.py
        hf_tokenizer(tokenizer, is_chat).save_pretrained(staging)
        fields = hf_config(family, cfg)
        hf_cfg = transformers.AutoConfig.for_model(fields.pop("model_type"), **fields)
        hf_cfg.architectures = [FAMILIES[family]]
        setattr(hf_cfg, METADATA_KEY, {
            "model_config": cfg.to_dict(),
            # the tokenizer.json of this folder (with its <bos> template), which it is used with
            "tokenizer_hash": fileio.file_sha256(staging / "tokenizer.json"),
            **{k: ckpt.get(k) for k in ("iter", "best_val_loss", "tokens_seen", "train_time_s",
                                         "device", "dtype", "world_size", "init", "metrics",
                                         "train_config", "data_stats")},
            "checkpoint": str(checkpoint),
            # the evaluation before the first step: quick_test's "trained from scratch" row
            "first_eval": next((r for r in checkpoints.read_train_log(
                Path(checkpoint).parent / "train_log.jsonl") if r["type"] == "eval"), None)})
        hf_model = getattr(transformers, FAMILIES[family])(hf_cfg)
        missing, unexpected = hf_model.load_state_dict(to_hf(model.state_dict(), family, cfg),
                                                       strict=False)
        missing = [k for k in missing if k != "lm_head.weight"]  # tied to the embedding
        if missing or unexpected:  # a bug of this file, not of the user's
            raise RuntimeError(f"weight names do not line up: missing {missing}, "
                               f"unexpected {unexpected}")
        hf_model.tie_weights()
        # A chat model ends its turn with <|end|>: generate() stops there (or at <eos>).
        eos = [tokenizer.end_id, config.EOS_ID] if is_chat else config.EOS_ID
        hf_model.generation_config = transformers.GenerationConfig(
            bos_token_id=config.BOS_ID, eos_token_id=eos, pad_token_id=config.PAD_ID,
            do_sample=True, temperature=config.SAMPLING.temperature, top_k=config.SAMPLING.top_k,
            top_p=config.SAMPLING.top_p, repetition_penalty=config.SAMPLING.repetition_penalty,
            max_new_tokens=100)  # as app.py's page
        hf_model.save_pretrained(staging, safe_serialization=True)
        (staging / "model.safetensors").chmod(0o644)  # safetensors writes it private
        (staging / "README.md").write_text(model_card(ckpt, model, family, evaluation),
                                           encoding="utf-8")
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {"family": family, "class": FAMILIES[family], "out": str(out)}


def hf_tokenizer(tokenizer: utils.Tokenizer, is_chat: bool = False):
    """Our tokenizer as a PreTrainedTokenizerFast: `tokenizer(text)` gives <bos> and then
    exactly our ids; "<eos>" typed in a text stays text, as in ours.

    For a chat model it also carries the chat template (tatargpt/chat.py), so that
    `apply_chat_template(messages, add_generation_prompt=True)` gives our renderer's ids.
    transformers renders that template to a string with the role tokens written out, so
    here special tokens in a text are read as the tokens: a user who types "<|end|>" ends
    the message (our renderer keeps typed text as text)."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    raw = HFTokenizer.from_file(str(tokenizer.path / "tokenizer.json"))
    raw.post_processor = TemplateProcessing(single="<bos> $A", pair="<bos> $A $B",
                                            special_tokens=[("<bos>", config.BOS_ID)])
    chat = {"chat_template": chat_template.CHAT_TEMPLATE,
            "additional_special_tokens": list(config.CHAT_TOKENS)} if is_chat else {}
    return PreTrainedTokenizerFast(
        tokenizer_object=raw, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
        unk_token="<unk>", split_special_tokens=not is_chat, clean_up_tokenization_spaces=False,
        **chat)


# ---------------------------------------------------------------------------
# The model card
# ---------------------------------------------------------------------------


def read_evaluation(checkpoint: Path, ckpt: dict) -> dict | None:
    """04_evaluate.py's eval.json beside the checkpoint, if it describes this checkpoint."""
    path = checkpoint.parent / "eval.json"
    if not path.is_file():
        return None
    try:
        ev = fileio.read_json(path, "python 04_evaluate.py")
    except utils.UserError:
        return None
    return ev if ev.get("fingerprint") == checkpoints.checkpoint_fingerprint(ckpt) else None


def corpus_licence(ckpt: dict) -> tuple[str, str]:
    """(Hub licence id, a sentence on the corpus and its licence)."""
    sources = (ckpt.get("data_stats") or {}).get("sources") or []
    kinds = {s.get("kind") for s in sources}
    names = ", ".join(str(s.get("name")) for s in sources) or "unknown"
    if kinds == {"sample"}:
        lines = (ckpt.get("data_stats") or {}).get("input_lines")
        size = f"{lines:,} Tatar sentences" if isinstance(lines, int) else "Tatar sentences"
        return "cc0-1.0", (f"the corpus bundled with the course ({size} written for it), "
                           "released under CC0 1.0")
    if kinds <= {"leipzig", "archive"} and kinds:
        return "cc-by-4.0", (f"the Leipzig Corpora Collection ({names}); its corpora are "
                             f"published under CC BY: credit the Leipzig Corpora Collection "
                             f"(Wortschatz, Universität Leipzig) when you share this model")
    return "other", (f"{names} — text provided by whoever trained this model; its licence is "
                     f"theirs to state")


def model_card(ckpt: dict, model, family: str, evaluation: dict | None) -> str:
    """README.md of the exported folder: what the model is, how it was trained, what was
    measured, what it is for and how to load it. Every figure is read from the checkpoint or
    from eval.json."""
    cfg, train = model.config, ckpt.get("train_config") or {}
    licence, corpus = corpus_licence(ckpt)
    metrics = ckpt.get("metrics") or {}
    params = model.num_params()
    val_loss = ckpt.get("best_val_loss", float("nan"))
    rows = [
        ("validation loss (nats per token)", f"{val_loss:.4f}"),
        ("validation perplexity", f"{scoring.nats_to_ppl(val_loss):.2f}"),
    ]
    ft = ckpt.get("finetune")
    if ft:  # a chat model: the loss is on the answers of held-out conversations
        rows = [("fine-tuning", f"{ft['method']}, {ft['iter']:,} steps on Tatar conversations"),
                ("val answer loss (nats per answer token)",
                 f"{ft['val_answer_loss']:.4f} (the base model: {ft['before']['answer_loss']:.4f})")]
        metrics = {}
    if "val_bpc" in metrics:
        rows.append(("validation bits per character", f"{metrics['val_bpc']:.3f}"))
    if evaluation:
        g, n = evaluation["gpt"], evaluation["ngram"]
        rows += [
            (f"bits per character on {evaluation['val']['sentences']:,} val sentences",
             f"{g['bpc']:.3f} (a {n['order']}-gram Kneser-Ney model on the same text: "
             f"{n['bpc']:.3f})"),
            (f"vowel-harmony minimal pairs ({evaluation['harmony']['pairs']:,})",
             f"{g['harmony_accuracy']:.1%} (the n-gram: {n['harmony_accuracy']:.1%})"),
        ]
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    trained = (f"{ckpt.get('iter', '?'):,} iterations" if isinstance(ckpt.get("iter"), int)
               else "? iterations")
    return f"""---
language: tt
license: {licence}
library_name: transformers
pipeline_tag: text-generation
tags:
- tatar
- from-scratch
- tatar-gpt
---

# Tatar-GPT ({train.get('preset', '?')})

A {params / 1e6:.1f}M-parameter decoder-only transformer trained from scratch on Tatar (татар
теле), with the course repository Tatar-GPT. It is a `{FAMILIES[family]}` with these settings:
{cfg.n_layer} layers, {cfg.n_head} attention heads ({cfg.kv_heads} key/value heads), width
{cfg.n_embd}, MLP {cfg.ffn_hidden} ({cfg.mlp}), {cfg.norm}, {cfg.pos_encoding} positions,
a context of {cfg.block_size} tokens and a byte-level BPE vocabulary of {cfg.vocab_size:,} tokens.

## Training

- corpus: {corpus}
- {trained}, {ckpt.get('tokens_seen', 0):,} tokens seen, on {ckpt.get('device', '?')} in
  {ckpt.get('dtype', '?')} precision ({ckpt.get('world_size', 1)} process(es),
  {ckpt.get('train_time_s', 0):.0f} s of training steps)
- initialisation: {ckpt.get('init', '?')}

## Measured

| | |
|---|---|
{table}

The validation figures are on held-out sentences of the same corpus, chosen by a hash of each
sentence; bits per character do not depend on the tokenizer, so they compare with other models.

## Use and limits

For learning and for fun: continuing Tatar text, scoring how Tatar-like a sentence is, seeing
what a small language model learns. With {params / 1e6:.1f}M parameters it writes fluent-looking
but often meaningless Tatar, repeats itself, and knows no facts: do not use its output as
information, and do not use it to make decisions about people.

## Loading

```python
from transformers import AutoModelForCausalLM, AutoTokenizer

model = AutoModelForCausalLM.from_pretrained("PATH_OR_HUB_ID")
tokenizer = AutoTokenizer.from_pretrained("PATH_OR_HUB_ID")
ids = tokenizer("Казан шәһәре", return_tensors="pt")  # <bos> + the text's tokens
out = model.generate(**ids, max_new_tokens=40)  # sampling defaults: generation_config.json
print(tokenizer.decode(out[0], skip_special_tokens=True))
```

{CHAT_USAGE if ft else ""}or `transformers.pipeline("text-generation", model="PATH_OR_HUB_ID")`. In the Tatar-GPT
repository, `python app.py --checkpoint PATH_OR_HUB_ID` and `python quick_test.py
--checkpoint PATH_OR_HUB_ID` run it as well.
"""


CHAT_USAGE = """This model was fine-tuned to answer (05_finetune.py); talk to it in its chat template:

```python
messages = [{"role": "user", "content": "Казан нинди елга ярында утыра?"}]
inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True,
                                       return_tensors="pt")
out = model.generate(**inputs, max_new_tokens=80)  # stops at <|end|>, the end of its answer
print(tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))
```

"""


@dataclass
class Options:
    out: str = option("hf_model", "the folder to write")
    overwrite: bool = option(False, "replace --out when it exists")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cli.add_model_args(parser, "the model to export", device=False)  # always on the CPU
    cli.add_options(parser, Options)
    args = parser.parse_args(argv)

    def work() -> int:
        result = export(Path(args.checkpoint), Path(args.tokenizer), Path(args.out),
                        args.overwrite)
        print(f"wrote {result['out']}/ ({result['class']})")
        return 0

    return utils.run_cli(work)


if __name__ == "__main__":
    sys.exit(main())
