"""Tatar-GPT: a decoder-only transformer, written from scratch, small enough to read in one sitting.

    tokens ─► token embedding ─► N × Block ─► final norm ─► LM head (tied to the embedding) ─► logits

    Block (pre-norm):  x = x + attn(norm_1(x))
                       x = x + mlp(norm_2(x))

The reference model (`config.PRESETS["small"]`) has 6 blocks, 8 heads of 64 dims, an FFN of
2048, a vocabulary of 8192 and a context of 256 tokens: ≈23.1M parameters.

Variants are switches of the same classes (see `config.ModelConfig`): LayerNorm or RMSNorm,
GELU MLP or SwiGLU, rotary (RoPE) or learned absolute positions, grouped-query attention
(`n_kv_head`), sliding-window attention (`sliding_window`), fused SDPA attention or the plain
math for teaching (`attention`), and gradient checkpointing.

Generation keeps a preallocated key/value cache so that each new token costs one position of
compute, not a pass over the whole context.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from config import ModelConfig

# ---------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------


class RMSNorm(nn.Module):
    """y = x / sqrt(mean(x²) + eps) · g  — LayerNorm without centring and without bias."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return (x * self.weight).to(dtype)


def make_norm(config: ModelConfig) -> nn.Module:
    if config.norm == "rmsnorm":
        return RMSNorm(config.n_embd)
    return nn.LayerNorm(config.n_embd, bias=config.bias)


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (RoFormer, Su et al. 2021).

    Each pair of channels (x_i, x_{i+d/2}) of a query or key at position m is rotated by the
    angle m·θ_i, with θ_i = base^(−2i/d), i = 0 … d/2−1:

        x_i'       = x_i · cos(m·θ_i) − x_{i+d/2} · sin(m·θ_i)
        x_{i+d/2}' = x_i · sin(m·θ_i) + x_{i+d/2} · cos(m·θ_i)

    A rotation by m·θ of q and by n·θ of k leaves q·k depending only on m − n: attention sees
    relative positions, and nothing is added to the token embeddings. (The paper pairs adjacent
    channels; pairing i with i+d/2 is the same up to a fixed permutation of channels and
    needs no interleaving.)
    """

    def __init__(self, head_dim: int, max_positions: int, base: float = 10000.0):
        super().__init__()
        inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
        angles = torch.outer(torch.arange(max_positions, dtype=torch.float64), inv_freq)
        # Not saved in checkpoints: they are a pure function of the config.
        self.register_buffer("cos", angles.cos().float(), persistent=False)  # (T_max, d/2)
        self.register_buffer("sin", angles.sin().float(), persistent=False)  # (T_max, d/2)

    def forward(self, x: torch.Tensor, pos: int) -> torch.Tensor:
        """Rotate x (B, H, T, d) whose first token is at absolute position `pos`."""
        T = x.size(-2)
        cos = self.cos[pos : pos + T].to(x.dtype)  # (T, d/2)
        sin = self.sin[pos : pos + T].to(x.dtype)
        x1, x2 = x.chunk(2, dim=-1)  # (B, H, T, d/2) each
        return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


def attention_mask(q_pos: int, T: int, S: int, window: int | None,
                   device: torch.device) -> torch.Tensor:
    """Boolean mask (T, S): True where query q_pos+t may attend to key s (keys start at 0).

    Causal: s ≤ q_pos + t. Sliding window: also q_pos + t − s < window.
    """
    q = torch.arange(q_pos, q_pos + T, device=device).unsqueeze(1)  # (T, 1)
    k = torch.arange(S, device=device).unsqueeze(0)  # (1, S)
    mask = k <= q
    if window is not None:
        mask &= (q - k) < window
    return mask


class KVCache:
    """Preallocated keys and values of every layer: (n_layer, B, n_kv_head, block_size, d).

    Generation writes each new position in place; nothing is re-allocated per token.
    """

    def __init__(self, config: ModelConfig, batch_size: int, device: torch.device,
                 dtype: torch.dtype):
        shape = (config.n_layer, batch_size, config.kv_heads, config.block_size, config.head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)

    def update(self, layer: int, pos: int, k: torch.Tensor, v: torch.Tensor):
        """Store k, v (B, H_kv, T, d) at positions pos…pos+T−1; return all keys/values so far."""
        T = k.size(2)
        # narrow() + copy_() dispatch fewer ops than slice assignment (self.k[layer, :, :, a:b]),
        # and a decode step is a few hundred small ops whose overhead adds up.
        cache_k, cache_v = self.k[layer], self.v[layer]  # (B, H_kv, block_size, d)
        cache_k.narrow(2, pos, T).copy_(k)
        cache_v.narrow(2, pos, T).copy_(v)
        return cache_k.narrow(2, 0, pos + T), cache_v.narrow(2, 0, pos + T)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: ModelConfig, layer: int):
        super().__init__()
        self.layer = layer
        self.n_head, self.n_kv_head, self.head_dim = config.n_head, config.kv_heads, config.head_dim
        self.window = config.sliding_window
        self.use_sdpa = config.attention == "sdpa"
        # Dropout on the attention probabilities is its own setting: on a CPU any value > 0
        # sends SDPA from its fused kernel to the unfused math one (about half the speed),
        # while the residual dropout below costs almost nothing.
        self.attn_dropout = config.attn_dropout
        kv_dim = self.n_kv_head * self.head_dim
        # One matmul for q, k and v; with GQA k and v are narrower than q.
        self.c_attn = nn.Linear(config.n_embd, config.n_embd + 2 * kv_dim, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.rope = (
            RotaryEmbedding(self.head_dim, config.block_size, config.rope_theta)
            if config.pos_encoding == "rope"
            else None
        )

    def qkv(self, x: torch.Tensor, pos: int):
        """Project x (B, T, C) to q (B, H, T, d) and k, v (B, H_kv, T, d), rotated by RoPE."""
        B, T, _ = x.shape
        H, H_kv = self.n_head, self.n_kv_head
        # The heads of q, k and v lie side by side in the output of c_attn: split them as heads.
        qkv = self.c_attn(x).view(B, T, H + 2 * H_kv, self.head_dim).transpose(1, 2)
        qk, v = qkv.split([H + H_kv, H_kv], dim=1)  # (B, H + H_kv, T, d), (B, H_kv, T, d)
        if self.rope is not None:
            qk = self.rope(qk, pos)  # q and k rotate alike: one call (half the small ops)
        q, k = qk.split([H, H_kv], dim=1)
        return q, k, v

    def forward(self, x: torch.Tensor, kv_cache: KVCache | None = None,
                pos: int = 0, same_sentence: torch.Tensor | None = None) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x, pos)
        if kv_cache is not None:
            k, v = kv_cache.update(self.layer, pos, k, v)  # (B, H_kv, pos+T, d)
        S = k.size(2)
        if T == 1 and self.window is not None and S > self.window:
            # One query: the window is just the last `window` keys, no mask needed.
            k, v = k[:, :, S - self.window :], v[:, :, S - self.window :]
            S = self.window
        # GQA: each kv head serves n_head/n_kv_head query heads. SDPA does the sharing itself
        # (enable_gqa); the plain math path repeats k and v to show what it means.
        gqa = self.n_kv_head != self.n_head
        dropout = self.attn_dropout if self.training else 0.0
        plain_causal = pos == 0 and T == S and (self.window is None or self.window >= T)
        if same_sentence is not None:
            plain_causal = False
        if self.use_sdpa and (plain_causal or T == 1):
            # Fused kernels (FlashAttention / memory-efficient where the backend has them).
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout,
                                               is_causal=plain_causal and T > 1, enable_gqa=gqa)
        else:
            mask = attention_mask(S - T, T, S, self.window, x.device)  # (T, S)
            if same_sentence is not None:
                mask = mask & same_sentence  # (B, 1, T, S): and only within its sentence
            if self.use_sdpa:
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout,
                                                   enable_gqa=gqa)
            else:
                if gqa:
                    rep = self.n_head // self.n_kv_head
                    k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
                att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.head_dim))  # (B,H,T,S)
                att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
                att = F.dropout(att, p=dropout, training=self.training)
                y = att @ v  # (B, H, T, d)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.resid_dropout(self.c_proj(y))

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """Attention probabilities (B, H, T, T) for x (B, T, C) from position 0: for plots."""
        T = x.size(1)
        q, k, _ = self.qkv(x, 0)
        if self.n_kv_head != self.n_head:
            k = k.repeat_interleave(self.n_head // self.n_kv_head, dim=1)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim)
        mask = attention_mask(0, T, T, self.window, x.device)
        return att.masked_fill(~mask, float("-inf")).softmax(dim=-1)


class MLP(nn.Module):
    """GELU: W2·gelu(W1·x).  SwiGLU: W2·(silu(W1·x) ⊙ W3·x)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.swiglu = config.mlp == "swiglu"
        self.c_fc = nn.Linear(config.n_embd, config.ffn_hidden, bias=config.bias)
        if self.swiglu:
            self.c_gate = nn.Linear(config.n_embd, config.ffn_hidden, bias=config.bias)
        self.c_proj = nn.Linear(config.ffn_hidden, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.swiglu:
            h = F.silu(self.c_gate(x)) * self.c_fc(x)  # (B, T, ffn_hidden)
        else:
            h = F.gelu(self.c_fc(x))  # (B, T, ffn_hidden)
        return self.dropout(self.c_proj(h))  # (B, T, C)


class Block(nn.Module):
    def __init__(self, config: ModelConfig, layer: int):
        super().__init__()
        self.ln_1 = make_norm(config)
        self.attn = CausalSelfAttention(config, layer)
        self.ln_2 = make_norm(config)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, kv_cache: KVCache | None = None,
                pos: int = 0, same_sentence: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), kv_cache, pos, same_sentence)
        x = x + self.mlp(self.ln_2(x))
        return x


# ---------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------


class GPT(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        config.validate()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = (
            nn.Embedding(config.block_size, config.n_embd)
            if config.pos_encoding == "learned"
            else None
        )
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config, i) for i in range(config.n_layer))
        self.ln_f = make_norm(config)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        # Weight tying: the output layer reuses the token embedding (saves V·C parameters).
        self.lm_head.weight = self.wte.weight

        self.apply(self._init_weights)
        # GPT-2: scale the projections that write into the residual stream by 1/√(2·n_layer),
        # so the stream's variance does not grow with depth.
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        # std 0.02 everywhere: with tied weights, PyTorch's default N(0, 1) embedding would
        # start the loss near 44 instead of ln(vocab_size).
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self, non_embedding: bool = False) -> int:
        """Parameter count (the tied embedding counted once); optionally without embeddings."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.wte.weight.numel()
            if self.wpe is not None:
                n -= self.wpe.weight.numel()
        return n

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs per token (forward + backward ≈ 3 × forward).

        Matmuls: 2 FLOPs per weight per token forward, so 6·N with N the weights used in
        matmuls (blocks + LM head). Attention scores and the weighted sum add
        2 · 2 · n_layer · T · C forward per token, ×3 for training: 12 · n_layer · T · C.
        """
        cfg = self.config
        T = cfg.block_size if seq_len is None else seq_len
        n_matmul = self.num_params(non_embedding=True) + cfg.vocab_size * cfg.n_embd
        return 6 * n_matmul + 12 * cfg.n_layer * T * cfg.n_embd

    # -- training -----------------------------------------------------------------------------

    def optim_groups(self, weight_decay: float) -> list[dict]:
        """Parameter groups for AdamW: decay 2-D matmul weights; not norms, biases, embeddings."""
        embeddings = {id(self.wte.weight)} | ({id(self.wpe.weight)} if self.wpe else set())
        decay, no_decay = [], []
        for p in self.parameters():
            if not p.requires_grad:
                continue
            (decay if p.dim() >= 2 and id(p) not in embeddings else no_decay).append(p)
        return [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None,
                kv_cache: KVCache | None = None, pos: int = 0,
                all_logits: bool = False, sentences: torch.Tensor | None = None):
        """idx (B, T) token ids → (logits, loss).

        With targets: logits (B, T, V) and the mean cross-entropy. Without: logits of the last
        position only (B, 1, V), or of all positions with `all_logits=True`.
        `kv_cache`/`pos`: the tokens are at positions pos…pos+T−1 of a cached sequence.
        `sentences` (B, T): which sentence of its window each token belongs to; a token then
        attends only to the tokens of its own sentence, as if each sentence were alone.
        """
        B, T = idx.shape
        if pos + T > self.config.block_size:
            raise ValueError(
                f"sequence of {pos + T} tokens exceeds the context of "
                f"{self.config.block_size}; crop it first"
            )
        x = self.wte(idx)  # (B, T, C)
        if self.wpe is not None:
            x = x + self.wpe(torch.arange(pos, pos + T, device=idx.device))
        x = self.drop(x)
        same = None
        if sentences is not None:
            if kv_cache is not None or pos:
                raise ValueError("sentences= is for whole windows, not cached generation")
            same = (sentences.unsqueeze(2) == sentences.unsqueeze(1)).unsqueeze(1)  # (B,1,T,T)
        for block in self.blocks:
            if self.config.gradient_checkpointing and self.training and kv_cache is None:
                # Keep only the block's input; recompute its activations during backward.
                x = checkpoint(block, x, None, 0, same, use_reentrant=False)
            else:
                x = block(x, kv_cache, pos, same)
        x = self.ln_f(x)

        if targets is not None:
            logits = self.lm_head(x)  # (B, T, V)
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.reshape(-1))
            return logits, loss
        if not all_logits:
            x = x[:, -1:, :]  # only the next-token prediction is needed
        return self.lm_head(x), None

    @torch.no_grad()
    def attention_maps(self, idx: torch.Tensor) -> list[torch.Tensor]:
        """Attention probabilities of every layer for idx (B, T): a list of (B, H, T, T)."""
        x = self.wte(idx)
        if self.wpe is not None:
            x = x + self.wpe(torch.arange(idx.size(1), device=idx.device))
        maps = []
        for block in self.blocks:
            maps.append(block.attn.weights(block.ln_1(x)))
            x = block(x)
        return maps

    # -- generation ---------------------------------------------------------------------------

    def _check_generation_args(self, idx: torch.Tensor, max_new_tokens: int,
                               temperature: float, top_k: int | None, top_p: float | None,
                               repetition_penalty: float) -> None:
        if idx.dim() != 2 or idx.size(1) == 0:
            raise ValueError("the prompt is empty: give at least one token, shape (B, T)")
        if idx.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"token ids must be integers, got {idx.dtype}")
        lo, hi = int(idx.min()), int(idx.max())
        if lo < 0 or hi >= self.config.vocab_size:
            raise ValueError(
                f"token ids must be in [0, {self.config.vocab_size}); got ids from {lo} to {hi}"
            )
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be ≥ 0, got {max_new_tokens}")
        if not math.isfinite(temperature) or temperature < 0:
            raise ValueError(f"temperature must be ≥ 0 (0 = greedy), got {temperature}")
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be ≥ 1 or None, got {top_k}")
        if top_p is not None and not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1] or None, got {top_p}")
        if not math.isfinite(repetition_penalty) or repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0, got {repetition_penalty}")

    def stream(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
               top_k: int | None = None, top_p: float | None = None,
               repetition_penalty: float = 1.0, eos_id: int | None = None,
               use_cache: bool = True,
               generator: torch.Generator | None = None) -> Iterator[torch.Tensor]:
        """Yield the next token ids (B,) one step at a time.

        The model sees at most `block_size` tokens. When the running context would exceed it,
        the oldest tokens are dropped so that the last block_size/2 remain, and the cache is
        rebuilt from them: attention never reaches past the trained context, and the rebuild
        is paid once every block_size/2 tokens. `use_cache=False` follows the same rule but
        recomputes the whole context at every step (the teaching baseline).
        Stops after `max_new_tokens`, or when every sequence has produced `eos_id`.
        Bad arguments raise ValueError here, at the call, not at the first `next()`.
        """
        self._check_generation_args(idx, max_new_tokens, temperature, top_k, top_p,
                                    repetition_penalty)
        return self._stream(idx.long(), max_new_tokens, temperature, top_k, top_p,
                            repetition_penalty, eos_id, use_cache, generator)

    @torch.inference_mode()
    def _stream(self, idx, max_new_tokens, temperature, top_k, top_p, repetition_penalty,
                eos_id, use_cache, generator):
        if max_new_tokens == 0:
            return
        was_training = self.training
        self.eval()  # no dropout while generating; the caller's mode is restored at the end
        try:
            yield from self._decode(idx, max_new_tokens, temperature, top_k, top_p,
                                    repetition_penalty, eos_id, use_cache, generator)
        finally:
            self.train(was_training)

    def _decode(self, idx, max_new_tokens, temperature, top_k, top_p, repetition_penalty,
                eos_id, use_cache, generator):
        cfg = self.config
        B = idx.size(0)
        ctx = idx[:, -cfg.block_size :]  # (B, T) what the model currently sees
        seen = None
        if repetition_penalty != 1.0:  # every token of prompt and output so far, (B, V)
            seen = torch.zeros(B, cfg.vocab_size, dtype=torch.bool, device=idx.device)
            seen.scatter_(1, idx, True)
        cache = None
        if use_cache:
            cache = KVCache(cfg, B, idx.device, self.wte.weight.dtype)
        finished = torch.zeros(B, dtype=torch.bool, device=idx.device)

        logits = self._context_logits(ctx, cache)
        for step in range(max_new_tokens):
            next_id = sample_next(logits, temperature, top_k, top_p, repetition_penalty, seen,
                                  generator)  # (B,)
            if eos_id is not None:
                # A finished sequence keeps emitting eos, so the batch stays rectangular.
                next_id = torch.where(finished, torch.full_like(next_id, eos_id), next_id)
                finished |= next_id == eos_id
            yield next_id
            if (eos_id is not None and bool(finished.all())) or step == max_new_tokens - 1:
                return
            if seen is not None:
                seen.scatter_(1, next_id.unsqueeze(1), True)
            ctx = torch.cat((ctx, next_id.unsqueeze(1)), dim=1)
            if ctx.size(1) > cfg.block_size:
                ctx = ctx[:, -max(1, cfg.block_size // 2) :]
                logits = self._context_logits(ctx, cache)
            elif cache is not None:
                logits, _ = self(ctx[:, -1:], kv_cache=cache, pos=ctx.size(1) - 1)
                logits = logits[:, -1, :]
            else:
                logits = self._context_logits(ctx, None)

    def _context_logits(self, ctx: torch.Tensor, cache: KVCache | None) -> torch.Tensor:
        """Next-token logits (B, V) for the whole context, filling the cache from position 0."""
        logits, _ = self(ctx, kv_cache=cache, pos=0)
        return logits[:, -1, :]

    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None,
                 repetition_penalty: float = 1.0, eos_id: int | None = None,
                 use_cache: bool = True,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Return idx (B, T) followed by up to max_new_tokens generated ids (B, T + n)."""
        new = list(self.stream(idx, max_new_tokens, temperature, top_k, top_p,
                               repetition_penalty, eos_id, use_cache, generator))
        if not new:
            return idx
        return torch.cat((idx, torch.stack(new, dim=1).to(idx.dtype)), dim=1)


# ---------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, repetition_penalty: float = 1.0,
                seen: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Pick the next token id (B,) from logits (B, V).

    repetition penalty (CTRL): a seen token's logit is divided by the penalty when positive,
    multiplied when negative — so its probability drops for any penalty > 1.
    temperature 0 → argmax; else softmax(logits / temperature), restricted to the top_k most
    likely tokens and/or the smallest set whose probability reaches top_p (nucleus).
    """
    logits = logits.float()
    if seen is not None and repetition_penalty != 1.0:
        penalised = torch.where(logits > 0, logits / repetition_penalty,
                                logits * repetition_penalty)
        logits = torch.where(seen, penalised, logits)
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        # Drop a token when the tokens before it already reach top_p (the first always stays).
        drop = probs.cumsum(dim=-1) - probs >= top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)
