"""The Hugging Face transformers layout of our models: which transformers family computes
exactly what a Tatar-GPT model computes, its config.json fields, and the weights renamed
(and split or fused) between our names and theirs, both ways.

export_hf.py writes folders with it; utils.load_model reads them back with it (safetensors
only, no transformers needed).
"""

from __future__ import annotations

import torch

import config
from tatargpt.errors import UserError

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
            raise UserError(
                "this model has LayerNorm and a GELU MLP with grouped-query attention or a "
                "sliding window: no transformers architecture computes exactly that (GPT-NeoX "
                "and GPT-2 have neither). Train with --preset llama or mistral to export those.")
        return "gpt_neox" if cfg.pos_encoding == "rope" else "gpt2"
    if cfg.norm == "rmsnorm" and cfg.mlp == "swiglu" and cfg.pos_encoding == "rope":
        if cfg.sliding_window is None:
            return "llama"
        if cfg.bias:
            raise UserError("Mistral has no biases, so a model with --bias and a sliding "
                                  "window cannot be exported exactly.")
        return "mistral"
    raise UserError(
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
            raise UserError(f"the exported model lacks the weight {name}")
        return hf[name].float()

    def bias(ours: str, theirs: str, transform=lambda t: t) -> None:
        if cfg.bias:
            state[ours] = transform(take(theirs))
        elif theirs in hf and torch.count_nonzero(hf[theirs]):
            raise UserError(f"{theirs} is not zero: this folder holds a model with biases, "
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
