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
from pathlib import Path

import torch

import config
import utils

FAMILIES = {
    "gpt_neox": "GPTNeoXForCausalLM",
    "llama": "LlamaForCausalLM",
    "mistral": "MistralForCausalLM",
    "gpt2": "GPT2LMHeadModel",
}
LAYERNORM_EPS, RMSNORM_EPS = 1e-5, 1e-6  # model.py: nn.LayerNorm's default, RMSNorm's
METADATA_KEY = "tatar_gpt"  # our model config and training facts, inside config.json


# ---------------------------------------------------------------------------
# Which architecture
# ---------------------------------------------------------------------------


def family_of(cfg: config.ModelConfig) -> str:
    """The transformers family that computes exactly what our model computes, or UserError."""
    gqa = cfg.kv_heads != cfg.n_head
    if cfg.norm == "layernorm" and cfg.mlp == "gelu":
        if gqa or cfg.sliding_window is not None:
            raise utils.UserError(
                "this model has LayerNorm and a GELU MLP with grouped-query attention or a "
                "sliding window: no transformers architecture computes exactly that (GPT-NeoX "
                "and GPT-2 have neither). Train with --preset llama or mistral to export those.")
        return "gpt_neox" if cfg.pos_encoding == "rope" else "gpt2"
    if cfg.norm == "rmsnorm" and cfg.mlp == "swiglu" and cfg.pos_encoding == "rope":
        if cfg.sliding_window is None:
            return "llama"
        if cfg.bias:
            raise utils.UserError("Mistral has no biases, so a model with --bias and a sliding "
                                  "window cannot be exported exactly.")
        return "mistral"
    raise utils.UserError(
        f"norm={cfg.norm}, mlp={cfg.mlp}, positions={cfg.pos_encoding}: no transformers "
        f"architecture computes exactly this combination. Exportable: LayerNorm + GELU (RoPE "
        f"or learned positions) and RMSNorm + SwiGLU + RoPE.")


def hf_config(family: str, cfg: config.ModelConfig) -> dict:
    """The transformers config.json fields for our config."""
    ids = {"bos_token_id": config.BOS_ID, "eos_token_id": config.EOS_ID,
           "pad_token_id": config.PAD_ID, "tie_word_embeddings": True,
           "vocab_size": cfg.vocab_size}
    if family == "gpt2":
        return {**ids, "model_type": "gpt2", "n_positions": cfg.block_size, "n_embd": cfg.n_embd,
                "n_layer": cfg.n_layer, "n_head": cfg.n_head, "n_inner": cfg.ffn_hidden,
                "activation_function": "gelu", "layer_norm_epsilon": LAYERNORM_EPS,
                "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}
    common = {**ids, "hidden_size": cfg.n_embd, "num_hidden_layers": cfg.n_layer,
              "num_attention_heads": cfg.n_head, "intermediate_size": cfg.ffn_hidden,
              "max_position_embeddings": cfg.block_size, "attention_dropout": 0.0}
    if family == "gpt_neox":
        return {**common, "model_type": "gpt_neox", "hidden_act": "gelu",
                "layer_norm_eps": LAYERNORM_EPS, "use_parallel_residual": False,
                "attention_bias": cfg.bias, "hidden_dropout": 0.0,
                "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta,
                                    "partial_rotary_factor": 1.0}}
    llama = {**common, "hidden_act": "silu", "rms_norm_eps": RMSNORM_EPS,
             "num_key_value_heads": cfg.kv_heads, "head_dim": cfg.head_dim,
             "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta}}
    if family == "llama":
        return {**llama, "model_type": "llama", "attention_bias": cfg.bias, "mlp_bias": cfg.bias}
    return {**llama, "model_type": "mistral", "sliding_window": cfg.sliding_window}


# ---------------------------------------------------------------------------
# Weights: our names → theirs, and back
# ---------------------------------------------------------------------------


def _split_qkv(t: torch.Tensor, cfg: config.ModelConfig) -> tuple[torch.Tensor, ...]:
    """Our fused c_attn rows (or bias) → q, k, v."""
    c, kv = cfg.n_embd, cfg.kv_heads * cfg.head_dim
    return t[:c], t[c:c + kv], t[c + kv:]


def _neox_qkv(t: torch.Tensor, cfg: config.ModelConfig) -> torch.Tensor:
    """[q heads | k heads | v heads] → GPT-NeoX's [q₀ k₀ v₀ | q₁ k₁ v₁ | …] (per head)."""
    shape = (3, cfg.n_head, cfg.head_dim, *t.shape[1:])
    return t.reshape(shape).transpose(0, 1).reshape(t.shape)


def _ours_qkv(t: torch.Tensor, cfg: config.ModelConfig) -> torch.Tensor:
    """The inverse of _neox_qkv."""
    shape = (cfg.n_head, 3, cfg.head_dim, *t.shape[1:])
    return t.reshape(shape).transpose(0, 1).reshape(t.shape)


def to_hf(state: dict[str, torch.Tensor], family: str,
          cfg: config.ModelConfig) -> dict[str, torch.Tensor]:
    """Our state_dict → the transformers state_dict (biases our model lacks are zeros)."""
    c = cfg.n_embd

    def get(name: str, shape: tuple[int, ...] | None = None) -> torch.Tensor:
        if name in state:
            return state[name]
        return torch.zeros(shape)  # a bias our model does not have

    out: dict[str, torch.Tensor] = {}
    if family == "gpt_neox":
        p = "gpt_neox."
        out[p + "embed_in.weight"] = state["wte.weight"]
        for i in range(cfg.n_layer):
            b, h = f"blocks.{i}.", f"{p}layers.{i}."
            for ours, theirs in (("ln_1", "input_layernorm"), ("ln_2", "post_attention_layernorm")):
                out[h + theirs + ".weight"] = state[b + ours + ".weight"]
                out[h + theirs + ".bias"] = get(b + ours + ".bias", (c,))
            out[h + "attention.query_key_value.weight"] = _neox_qkv(
                state[b + "attn.c_attn.weight"], cfg)
            out[h + "attention.dense.weight"] = state[b + "attn.c_proj.weight"]
            if cfg.bias:
                out[h + "attention.query_key_value.bias"] = _neox_qkv(
                    state[b + "attn.c_attn.bias"], cfg)
                out[h + "attention.dense.bias"] = state[b + "attn.c_proj.bias"]
            out[h + "mlp.dense_h_to_4h.weight"] = state[b + "mlp.c_fc.weight"]
            out[h + "mlp.dense_h_to_4h.bias"] = get(b + "mlp.c_fc.bias", (cfg.ffn_hidden,))
            out[h + "mlp.dense_4h_to_h.weight"] = state[b + "mlp.c_proj.weight"]
            out[h + "mlp.dense_4h_to_h.bias"] = get(b + "mlp.c_proj.bias", (c,))
        out[p + "final_layer_norm.weight"] = state["ln_f.weight"]
        out[p + "final_layer_norm.bias"] = get("ln_f.bias", (c,))
        out["lm_head.weight"] = state["wte.weight"]
    elif family in ("llama", "mistral"):
        out["model.embed_tokens.weight"] = state["wte.weight"]
        for i in range(cfg.n_layer):
            b, h = f"blocks.{i}.", f"model.layers.{i}."
            for kind in ("weight", "bias") if cfg.bias else ("weight",):
                q, k, v = _split_qkv(state[f"{b}attn.c_attn.{kind}"], cfg)
                out |= {f"{h}self_attn.q_proj.{kind}": q, f"{h}self_attn.k_proj.{kind}": k,
                        f"{h}self_attn.v_proj.{kind}": v,
                        f"{h}self_attn.o_proj.{kind}": state[f"{b}attn.c_proj.{kind}"],
                        f"{h}mlp.gate_proj.{kind}": state[f"{b}mlp.c_gate.{kind}"],
                        f"{h}mlp.up_proj.{kind}": state[f"{b}mlp.c_fc.{kind}"],
                        f"{h}mlp.down_proj.{kind}": state[f"{b}mlp.c_proj.{kind}"]}
            out |= {h + "input_layernorm.weight": state[b + "ln_1.weight"],
                    h + "post_attention_layernorm.weight": state[b + "ln_2.weight"]}
        out["model.norm.weight"] = state["ln_f.weight"]
        out["lm_head.weight"] = state["wte.weight"]
    else:  # gpt2: Conv1D stores (in, out), the transpose of nn.Linear's weight
        p = "transformer."
        out[p + "wte.weight"] = state["wte.weight"]
        out[p + "wpe.weight"] = state["wpe.weight"]
        for i in range(cfg.n_layer):
            b, h = f"blocks.{i}.", f"{p}h.{i}."
            for name in ("ln_1", "ln_2"):
                out[h + name + ".weight"] = state[b + name + ".weight"]
                out[h + name + ".bias"] = get(b + name + ".bias", (c,))
            for ours, theirs, width in (("attn.c_attn", "attn.c_attn", 3 * c),
                                        ("attn.c_proj", "attn.c_proj", c),
                                        ("mlp.c_fc", "mlp.c_fc", cfg.ffn_hidden),
                                        ("mlp.c_proj", "mlp.c_proj", c)):
                out[h + theirs + ".weight"] = state[b + ours + ".weight"].t().contiguous()
                out[h + theirs + ".bias"] = get(b + ours + ".bias", (width,))
        out[p + "ln_f.weight"] = state["ln_f.weight"]
        out[p + "ln_f.bias"] = get("ln_f.bias", (c,))
        out["lm_head.weight"] = state["wte.weight"]
    return out


def from_hf(hf: dict[str, torch.Tensor], family: str,
            cfg: config.ModelConfig) -> dict[str, torch.Tensor]:
    """The inverse of to_hf: transformers weights → our state_dict (utils.load_model).

    A bias that our model does not have must be zero in the file; otherwise the folder holds
    a model that ours cannot compute (one fine-tuned with biases, say), and it is refused.
    """
    state: dict[str, torch.Tensor] = {}

    def take(name: str) -> torch.Tensor:
        if name not in hf:
            raise utils.UserError(f"the exported model lacks the weight {name}")
        return hf[name].float()

    def bias(ours: str, theirs: str, transform=lambda t: t) -> None:
        if cfg.bias:
            state[ours] = transform(take(theirs))
        elif theirs in hf and torch.count_nonzero(hf[theirs]):
            raise utils.UserError(f"{theirs} is not zero: this folder holds a model with biases, "
                                  f"which the exported architecture did not have")

    if family == "gpt_neox":
        p = "gpt_neox."
        state["wte.weight"] = take(p + "embed_in.weight")
        for i in range(cfg.n_layer):
            b, h = f"blocks.{i}.", f"{p}layers.{i}."
            for ours, theirs in (("ln_1", "input_layernorm"), ("ln_2", "post_attention_layernorm")):
                state[b + ours + ".weight"] = take(h + theirs + ".weight")
                bias(b + ours + ".bias", h + theirs + ".bias")
            state[b + "attn.c_attn.weight"] = _ours_qkv(
                take(h + "attention.query_key_value.weight"), cfg)
            bias(b + "attn.c_attn.bias", h + "attention.query_key_value.bias",
                 lambda t: _ours_qkv(t, cfg))
            state[b + "attn.c_proj.weight"] = take(h + "attention.dense.weight")
            bias(b + "attn.c_proj.bias", h + "attention.dense.bias")
            state[b + "mlp.c_fc.weight"] = take(h + "mlp.dense_h_to_4h.weight")
            bias(b + "mlp.c_fc.bias", h + "mlp.dense_h_to_4h.bias")
            state[b + "mlp.c_proj.weight"] = take(h + "mlp.dense_4h_to_h.weight")
            bias(b + "mlp.c_proj.bias", h + "mlp.dense_4h_to_h.bias")
        state["ln_f.weight"] = take(p + "final_layer_norm.weight")
        bias("ln_f.bias", p + "final_layer_norm.bias")
    elif family in ("llama", "mistral"):
        state["wte.weight"] = take("model.embed_tokens.weight")
        for i in range(cfg.n_layer):
            b, h = f"blocks.{i}.", f"model.layers.{i}."
            qkv = [h + f"self_attn.{x}_proj" for x in "qkv"]
            state[b + "attn.c_attn.weight"] = torch.cat([take(n + ".weight") for n in qkv])
            if cfg.bias:
                state[b + "attn.c_attn.bias"] = torch.cat([take(n + ".bias") for n in qkv])
            for ours, theirs in (("attn.c_proj", "self_attn.o_proj"), ("mlp.c_gate", "mlp.gate_proj"),
                                 ("mlp.c_fc", "mlp.up_proj"), ("mlp.c_proj", "mlp.down_proj")):
                state[b + ours + ".weight"] = take(h + theirs + ".weight")
                bias(b + ours + ".bias", h + theirs + ".bias")
            state[b + "ln_1.weight"] = take(h + "input_layernorm.weight")
            state[b + "ln_2.weight"] = take(h + "post_attention_layernorm.weight")
        state["ln_f.weight"] = take("model.norm.weight")
    else:  # gpt2
        p = "transformer."
        state["wte.weight"] = take(p + "wte.weight")
        state["wpe.weight"] = take(p + "wpe.weight")
        for i in range(cfg.n_layer):
            b, h = f"blocks.{i}.", f"{p}h.{i}."
            for name in ("ln_1", "ln_2"):
                state[b + name + ".weight"] = take(h + name + ".weight")
                bias(b + name + ".bias", h + name + ".bias")
            for name in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"):
                state[b + name + ".weight"] = take(h + name + ".weight").t().contiguous()
                bias(b + name + ".bias", h + name + ".bias")
        state["ln_f.weight"] = take(p + "ln_f.weight")
        bias("ln_f.bias", p + "ln_f.bias")
    state["lm_head.weight"] = state["wte.weight"]  # tied
    return state


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
        hf_tokenizer(tokenizer).save_pretrained(staging)
        fields = hf_config(family, cfg)
        hf_cfg = transformers.AutoConfig.for_model(fields.pop("model_type"), **fields)
        hf_cfg.architectures = [FAMILIES[family]]
        setattr(hf_cfg, METADATA_KEY, {
            "model_config": cfg.to_dict(),
            # the tokenizer.json of this folder (with its <bos> template), which it is used with
            "tokenizer_hash": utils.file_sha256(staging / "tokenizer.json"),
            **{k: ckpt.get(k) for k in ("iter", "best_val_loss", "tokens_seen", "train_time_s",
                                         "device", "dtype", "world_size", "init", "metrics",
                                         "train_config", "data_stats")},
            "checkpoint": str(checkpoint),
            # the evaluation before the first step: quick_test's "trained from scratch" row
            "first_eval": next((r for r in utils.read_train_log(
                Path(checkpoint).parent / "train_log.jsonl") if r["type"] == "eval"), None)})
        hf_model = getattr(transformers, FAMILIES[family])(hf_cfg)
        missing, unexpected = hf_model.load_state_dict(to_hf(model.state_dict(), family, cfg),
                                                       strict=False)
        missing = [k for k in missing if k != "lm_head.weight"]  # tied to the embedding
        if missing or unexpected:  # a bug of this file, not of the user's
            raise RuntimeError(f"weight names do not line up: missing {missing}, "
                               f"unexpected {unexpected}")
        hf_model.tie_weights()
        hf_model.generation_config = transformers.GenerationConfig(
            bos_token_id=config.BOS_ID, eos_token_id=config.EOS_ID, pad_token_id=config.PAD_ID,
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


def hf_tokenizer(tokenizer: utils.Tokenizer):
    """Our tokenizer as a PreTrainedTokenizerFast: `tokenizer(text)` gives <bos> and then
    exactly our ids; "<eos>" typed in a text stays text, as in ours."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    raw = HFTokenizer.from_file(str(tokenizer.path / "tokenizer.json"))
    raw.post_processor = TemplateProcessing(single="<bos> $A", pair="<bos> $A $B",
                                            special_tokens=[("<bos>", config.BOS_ID)])
    return PreTrainedTokenizerFast(
        tokenizer_object=raw, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
        unk_token="<unk>", split_special_tokens=True, clean_up_tokenization_spaces=False)


# ---------------------------------------------------------------------------
# The model card
# ---------------------------------------------------------------------------


def read_evaluation(checkpoint: Path, ckpt: dict) -> dict | None:
    """04_evaluate.py's eval.json beside the checkpoint, if it describes this checkpoint."""
    path = checkpoint.parent / "eval.json"
    if not path.is_file():
        return None
    try:
        ev = utils.read_json(path, "python 04_evaluate.py")
    except utils.UserError:
        return None
    return ev if ev.get("fingerprint") == utils.checkpoint_fingerprint(ckpt) else None


def corpus_licence(ckpt: dict) -> tuple[str, str]:
    """(Hub licence id, a sentence on the corpus and its licence)."""
    sources = (ckpt.get("data_stats") or {}).get("sources") or []
    kinds = {s.get("kind") for s in sources}
    names = ", ".join(str(s.get("name")) for s in sources) or "unknown"
    if kinds == {"sample"}:
        return "cc0-1.0", ("the corpus bundled with the course (15,000 Tatar sentences written "
                           "for it), released under CC0 1.0")
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
        ("validation perplexity", f"{utils.nats_to_ppl(val_loss):.2f}"),
    ]
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

or `transformers.pipeline("text-generation", model="PATH_OR_HUB_ID")`. In the Tatar-GPT
repository, `python app.py --checkpoint PATH_OR_HUB_ID` and `python quick_test.py
--checkpoint PATH_OR_HUB_ID` run it as well.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    utils.add_model_args(parser, "the model to export", device=False)  # always on the CPU
    parser.add_argument("--out", default="hf_model", help="the folder to write (default: "
                                                          "%(default)s)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace --out when it exists")
    args = parser.parse_args(argv)

    def work() -> int:
        result = export(Path(args.checkpoint), Path(args.tokenizer), Path(args.out),
                        args.overwrite)
        print(f"wrote {result['out']}/ ({result['class']})")
        return 0

    return utils.run_cli(work)


if __name__ == "__main__":
    sys.exit(main())
