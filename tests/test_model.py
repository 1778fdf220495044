"""Tests of model.py: shapes, causality, RoPE, attention paths, KV cache, sampling, init.

Everything runs on CPU with tiny configs (vocab 256, context 32) in a few seconds.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

import config
from config import ModelConfig, get_preset, param_breakdown
from model import GPT, KVCache, RotaryEmbedding, sample_next

V, BLOCK = 256, 32


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Run these tiny models on one thread: as fast alone, and ~10× faster on a busy machine.

    With two threads every small op is a parallel region that waits for the second thread;
    when another process holds that core, each wait costs a scheduler time slice.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny(**overrides) -> ModelConfig:
    """The tiny preset at test sizes; `overrides` switch variants on."""
    return get_preset("tiny", **{"vocab_size": V, "block_size": BLOCK, "dropout": 0.0,
                                 **overrides})


def build(cfg: ModelConfig, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(cfg).eval()


def lively(model: GPT, std: float = 0.2) -> GPT:
    """Redraw the matrices with a large std: a freshly initialised model only repeats its last
    token (its tied embedding dominates the logits), which would make generation tests blind
    to the context; with these weights the greedy continuation depends on it."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=g) * std)
    return model


def tokens(B: int, T: int, seed: int = 1, vocab: int = V) -> torch.Tensor:
    return torch.randint(0, vocab, (B, T), generator=torch.Generator().manual_seed(seed))


# Every architecture switch on its own, and a few together.
VARIANTS = {
    "default": {},
    "rmsnorm": {"norm": "rmsnorm"},
    "swiglu": {"mlp": "swiglu"},
    "learned": {"pos_encoding": "learned"},
    "gqa": {"n_kv_head": 2},
    "mqa": {"n_kv_head": 1},
    "window": {"sliding_window": 5},
    "math": {"attention": "math"},
    "math-window-gqa": {"attention": "math", "sliding_window": 5, "n_kv_head": 2},
    "bias": {"bias": True},
    "llama-like": {"norm": "rmsnorm", "mlp": "swiglu", "n_kv_head": 2, "sliding_window": 7},
}


def shrunk_preset(name: str) -> ModelConfig:
    """A named preset's architecture (norm, MLP, positions, GQA, window) at tiny sizes."""
    cfg = get_preset(name)
    window = None if cfg.sliding_window is None else 6  # keep it shorter than the context
    return replace(cfg, vocab_size=V, block_size=BLOCK, n_layer=2, n_head=4, n_embd=64,
                   ffn_hidden=96, dropout=0.0, sliding_window=window)


# ---------------------------------------------------------------------------
# Shapes and loss
# ---------------------------------------------------------------------------


def test_shapes_and_initial_loss_is_log_vocab():
    model = build(tiny())
    idx, targets = tokens(4, BLOCK), tokens(4, BLOCK, seed=2)
    logits, loss = model(idx, targets)
    assert logits.shape == (4, BLOCK, V)
    assert abs(loss.item() - math.log(V)) < 0.15, loss.item()

    logits, loss = model(idx)
    assert logits.shape == (4, 1, V) and loss is None
    full, _ = model(idx, all_logits=True)
    assert full.shape == (4, BLOCK, V)
    torch.testing.assert_close(full[:, -1:], logits)


def test_forward_rejects_a_sequence_longer_than_the_context():
    model = build(tiny())
    with pytest.raises(ValueError, match="exceeds the context of 32"):
        model(tokens(1, BLOCK + 1))


# ---------------------------------------------------------------------------
# Causality
# ---------------------------------------------------------------------------


def assert_causal(model: GPT, T: int = 20) -> None:
    idx = tokens(2, T)
    logits, _ = model(idx, all_logits=True)
    for t in (0, 4, T // 2, T - 2):
        changed = idx.clone()
        changed[:, t + 1 :] = (changed[:, t + 1 :] + 7) % V
        new, _ = model(changed, all_logits=True)
        torch.testing.assert_close(new[:, : t + 1], logits[:, : t + 1], rtol=0, atol=1e-5)
        # ...and the future tokens did change something after t: the test can fail.
        assert not torch.allclose(new[:, t + 1 :], logits[:, t + 1 :], atol=1e-4)


@pytest.mark.parametrize("variant", VARIANTS)
def test_causal_for_every_variant(variant):
    assert_causal(build(tiny(**VARIANTS[variant])))


@pytest.mark.parametrize("name", config.PRESETS)
def test_causal_for_every_preset_architecture(name):
    assert_causal(build(shrunk_preset(name)))


def test_sliding_window_sees_exactly_window_tokens():
    # One layer: the logits at t depend on tokens t−window+1 … t and on nothing older.
    window, t = 4, 12
    for attention in ("sdpa", "math"):
        model = build(tiny(n_layer=1, sliding_window=window, attention=attention))
        idx = tokens(1, 16)
        base = model(idx, all_logits=True)[0][0, t]

        def logits_after_changing(s, idx=idx, model=model):
            changed = idx.clone()
            changed[0, s] = (changed[0, s] + 1) % V
            return model(changed, all_logits=True)[0][0, t]

        for s in range(t - window + 1):  # outside the window
            torch.testing.assert_close(logits_after_changing(s), base, rtol=0, atol=1e-6)
        assert not torch.allclose(logits_after_changing(t - window + 1), base, atol=1e-4)


# ---------------------------------------------------------------------------
# RoPE
# ---------------------------------------------------------------------------


def rope_reference(x: torch.Tensor, pos: int, base: float) -> torch.Tensor:
    """The RoPE formula, one pair (i, i + d/2) at a time; x is (B, H, T, d)."""
    d = x.size(-1)
    out = torch.empty_like(x, dtype=torch.float64)
    x = x.double()
    for t in range(x.size(2)):
        m = pos + t
        for i in range(d // 2):
            theta = base ** (-2 * i / d)
            c, s = math.cos(m * theta), math.sin(m * theta)
            a, b = x[:, :, t, i], x[:, :, t, i + d // 2]
            out[:, :, t, i] = a * c - b * s
            out[:, :, t, i + d // 2] = a * s + b * c
    return out


@pytest.mark.parametrize("pos", [0, 5])
def test_rope_matches_the_formula(pos):
    d, base = 16, 10000.0
    rope = RotaryEmbedding(d, max_positions=64, base=base)
    x = torch.randn(2, 3, 7, d, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(rope(x, pos).double(), rope_reference(x, pos, base),
                               rtol=1e-5, atol=1e-5)
    # Position 0 is the identity; a rotation keeps the length of every pair.
    torch.testing.assert_close(rope(x[:, :, :1], 0), x[:, :, :1])
    norms = lambda y: y[..., : d // 2] ** 2 + y[..., d // 2 :] ** 2  # noqa: E731
    torch.testing.assert_close(norms(rope(x, pos)), norms(x), rtol=1e-5, atol=1e-5)


def test_rope_scores_depend_only_on_relative_position():
    d = 32
    rope = RotaryEmbedding(d, max_positions=128, base=10000.0)
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 1, 1, d, generator=g), torch.randn(1, 1, 1, d, generator=g)

    def score(m, n):
        return (rope(q, m) * rope(k, n)).sum().item()

    for m, n, s in [(3, 1, 10), (0, 7, 50), (20, 20, 100)]:
        assert score(m + s, n + s) == pytest.approx(score(m, n), abs=1e-4)
    assert abs(score(5, 1) - score(5, 2)) > 1e-3  # ...and it does depend on m − n


# ---------------------------------------------------------------------------
# Attention paths
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("extra", [{}, {"sliding_window": 5}, {"n_kv_head": 2},
                                   {"n_kv_head": 1, "sliding_window": 9}])
def test_sdpa_equals_plain_math(extra):
    fused = build(tiny(attention="sdpa", **extra))
    plain = GPT(tiny(attention="math", **extra)).eval()
    plain.load_state_dict(fused.state_dict())
    idx = tokens(2, BLOCK)
    torch.testing.assert_close(fused(idx, all_logits=True)[0], plain(idx, all_logits=True)[0],
                               rtol=0, atol=1e-5)


def test_gqa_with_as_many_kv_heads_as_heads_is_mha():
    mha = build(tiny(n_kv_head=None))
    gqa = GPT(tiny(n_kv_head=4)).eval()
    gqa.load_state_dict(mha.state_dict())
    idx = tokens(2, BLOCK)
    torch.testing.assert_close(gqa(idx, all_logits=True)[0], mha(idx, all_logits=True)[0],
                               rtol=0, atol=1e-6)


@pytest.mark.parametrize("attention", ["sdpa", "math"])
def test_window_at_least_the_context_is_no_window(attention):
    full = build(tiny(attention=attention))
    windowed = GPT(tiny(attention=attention, sliding_window=BLOCK)).eval()
    windowed.load_state_dict(full.state_dict())
    idx = tokens(2, BLOCK)
    torch.testing.assert_close(windowed(idx, all_logits=True)[0], full(idx, all_logits=True)[0],
                               rtol=0, atol=1e-6)


@pytest.mark.parametrize("variant", ["default", "math", "llama-like"])
def test_isolated_sentences_are_predicted_as_if_alone(variant):
    """sentences= (03_train.py --isolate-sentences): every sentence of a window is predicted
    as it would be alone at position 0 (RoPE sees only relative positions); without it, the
    later sentences see the ones before them."""
    model = lively(build(tiny(**VARIANTS[variant])))
    parts = [tokens(1, n, seed=n) for n in (9, 12, 11)]
    window = torch.cat(parts, dim=1)
    sentences = torch.cat([torch.full((1, p.size(1)), i) for i, p in enumerate(parts)], dim=1)
    isolated, _ = model(window, all_logits=True, sentences=sentences)
    together, _ = model(window, all_logits=True)
    start = 0
    for part in parts:
        alone, _ = model(part, all_logits=True)
        end = start + part.size(1)
        torch.testing.assert_close(isolated[:, start:end], alone, rtol=1e-5, atol=1e-4)
        assert start == 0 or not torch.allclose(together[:, start:end], alone, atol=1e-3)
        start = end
    # The same in training, with gradient checkpointing.
    ckpt = GPT(replace(model.config, gradient_checkpointing=True)).train()
    ckpt.load_state_dict(model.state_dict())
    targets = tokens(1, window.size(1), seed=5)
    torch.testing.assert_close(ckpt(window, targets, sentences=sentences)[1],
                               model.train()(window, targets, sentences=sentences)[1])
    with pytest.raises(ValueError, match="whole windows"):
        model(window[:, :4], kv_cache=KVCache(model.config, 1, window.device, torch.float32),
              sentences=sentences[:, :4])


# ---------------------------------------------------------------------------
# KV cache and generation
# ---------------------------------------------------------------------------

CACHE_VARIANTS = ["default", "learned", "window", "gqa", "math-window-gqa", "llama-like"]


@pytest.mark.parametrize("variant", CACHE_VARIANTS)
def test_cached_incremental_logits_equal_a_full_pass(variant):
    model = lively(build(tiny(**VARIANTS[variant])))
    idx = tokens(2, BLOCK)
    full, _ = model(idx, all_logits=True)  # (B, T, V)
    cache = KVCache(model.config, 2, idx.device, torch.float32)
    prefill = 11
    with torch.no_grad():
        steps = [model(idx[:, :prefill], kv_cache=cache, pos=0, all_logits=True)[0]]
        for pos in range(prefill, BLOCK):
            steps.append(model(idx[:, pos : pos + 1], kv_cache=cache, pos=pos)[0])
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("variant", CACHE_VARIANTS)
def test_generation_is_the_same_with_and_without_cache(variant):
    model = lively(build(tiny(**VARIANTS[variant])))
    prompt = tokens(2, 5)
    n = 3 * BLOCK  # crosses the context limit (and so rebuilds the cache) several times
    cached = model.generate(prompt, n, temperature=0, use_cache=True)
    uncached = model.generate(prompt, n, temperature=0, use_cache=False)
    assert cached.shape == (2, 5 + n)
    assert torch.equal(cached[:, :5], prompt)
    assert torch.equal(cached, uncached)
    assert all(len(set(row)) > 10 for row in cached[:, 5:].tolist())  # the context mattered

    def sampled(use_cache):
        g = torch.Generator().manual_seed(3)
        return model.generate(prompt, n, temperature=1.0, top_k=50, use_cache=use_cache,
                              generator=g)

    assert torch.equal(sampled(True), sampled(False))


def test_prompt_longer_than_the_context():
    model = lively(build(tiny()))
    prompt = tokens(1, 2 * BLOCK + 5)
    out = model.generate(prompt, 10, temperature=0)
    assert out.shape == (1, 2 * BLOCK + 15)
    assert torch.equal(out[:, : prompt.size(1)], prompt)
    # Only the last block_size tokens matter: the same as prompting with them alone.
    alone = model.generate(prompt[:, -BLOCK:], 10, temperature=0)
    assert torch.equal(out[:, prompt.size(1) :], alone[:, BLOCK:])
    assert torch.equal(out, model.generate(prompt, 10, temperature=0, use_cache=False))


def test_generation_restores_training_mode_and_builds_no_graph():
    model = build(tiny()).train()
    out = model.generate(tokens(1, 4), 3, temperature=0)
    assert model.training and not out.requires_grad


def test_eos_stops_generation():
    model = lively(build(tiny()))
    n = 20
    free = model.generate(tokens(2, 4), n, temperature=0)[:, 4:].tolist()
    # An eos that sequence 0 emits early, followed by other tokens, and sequence 1 never emits.
    eos = next(t for t in free[0][1:8] if t not in free[1]
               and any(u != t for u in free[0][free[0].index(t) + 1 :]))
    first = free[0].index(eos)

    alone = model.generate(tokens(2, 4)[:1], n, temperature=0, eos_id=eos)[0, 4:].tolist()
    assert alone == free[0][: first + 1]  # stops right after the first eos

    # In a batch, a finished sequence keeps emitting eos while the others go on.
    batch = model.generate(tokens(2, 4), n, temperature=0, eos_id=eos)[:, 4:].tolist()
    assert batch[0] == free[0][: first + 1] + [eos] * (n - first - 1)
    assert batch[1] == free[1]


# ---------------------------------------------------------------------------
# Gradient checkpointing
# ---------------------------------------------------------------------------


def test_gradient_checkpointing_gives_the_same_loss_and_gradients():
    plain = build(tiny(dropout=0.0)).train()
    ckpt = GPT(tiny(dropout=0.0, gradient_checkpointing=True)).train()
    ckpt.load_state_dict(plain.state_dict())
    idx, targets = tokens(2, BLOCK), tokens(2, BLOCK, seed=3)
    losses = []
    for model in (plain, ckpt):
        _, loss = model(idx, targets)
        loss.backward()
        losses.append(loss)
    torch.testing.assert_close(losses[1], losses[0])
    for (name, p), q in zip(plain.named_parameters(), ckpt.parameters(), strict=True):
        assert p.grad is not None, name
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-5, atol=1e-7, msg=name)


# ---------------------------------------------------------------------------
# Parameter count
# ---------------------------------------------------------------------------


def test_small_preset_parameter_count_and_weight_tying():
    cfg = get_preset("small")
    model = build(cfg)
    parts = param_breakdown(cfg)
    assert model.num_params() == parts["total"]
    assert abs(model.num_params() - 23.1e6) <= 0.1e6, model.num_params()
    assert parts["token embedding (tied with LM head)"] == 4_194_304 == model.wte.weight.numel()
    assert model.lm_head.weight is model.wte.weight
    assert model.num_params(non_embedding=True) == parts["total"] - 4_194_304


@pytest.mark.parametrize("name", config.PRESETS)
def test_param_breakdown_matches_the_model(name):
    for bias in (False, True):
        cfg = get_preset(name, bias=bias)
        with torch.device("meta"):  # no memory, no init time: only shapes matter here
            model = GPT(cfg)
        assert model.num_params() == param_breakdown(cfg)["total"]


# ---------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------


def draws(logits: torch.Tensor, n: int = 4000, **kw) -> set[int]:
    """The set of ids sampled in n draws from logits (V,)."""
    g = torch.Generator().manual_seed(0)
    return set(sample_next(logits.expand(n, -1), generator=g, **kw).tolist())


def test_top_k_never_picks_outside_the_k_largest():
    logits = torch.randn(50, generator=torch.Generator().manual_seed(3))
    for k in (1, 3, 10):
        top = set(torch.topk(logits, k).indices.tolist())
        picked = draws(logits, top_k=k, temperature=2.0)
        assert picked == top  # within the top k, and every one of them reachable


def test_top_p_never_picks_outside_the_nucleus():
    probs = torch.tensor([0.05, 0.5, 0.02, 0.3, 0.1, 0.03])
    logits = probs.log()
    assert draws(logits, top_p=0.75) == {1, 3}  # 0.5 + 0.3 reaches 0.75
    assert draws(logits, top_p=0.85) == {1, 3, 4}
    assert draws(logits, top_p=0.5) == {1}
    assert draws(logits, top_p=1.0) == set(range(6))


def test_temperature_zero_is_argmax():
    logits = torch.randn(8, 100, generator=torch.Generator().manual_seed(4))
    assert torch.equal(sample_next(logits, temperature=0), logits.argmax(-1))


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_sampling_follows_softmax_of_logits_over_temperature(temperature):
    n, logits = 20_000, torch.tensor([[1.0, 0.0, -1.0]])
    g = torch.Generator().manual_seed(0)
    picked = sample_next(logits.expand(n, -1), temperature=temperature, generator=g)
    freq = torch.bincount(picked, minlength=3) / n
    torch.testing.assert_close(freq, (logits[0] / temperature).softmax(-1), rtol=0, atol=0.015)


def test_repetition_penalty_lowers_seen_tokens():
    seen = torch.zeros(1, 4, dtype=torch.bool)
    seen[0, 0] = True
    # Positive logit: divided by the penalty; negative: multiplied. Either way it drops.
    for logits in (torch.tensor([[2.0, 1.9, 0.0, -1.0]]), torch.tensor([[-1.0, -1.1, -3.0, -4.0]])):
        assert sample_next(logits, temperature=0).item() == 0
        assert sample_next(logits, temperature=0, repetition_penalty=1.3, seen=seen).item() == 1
        # A penalty below 1 favours seen tokens instead: still the argmax.
        assert sample_next(logits, temperature=0, repetition_penalty=0.8, seen=seen).item() == 0
    # And in probability: sampled frequencies follow softmax of the penalised logits.
    n, penalty = 20_000, 3.0
    logits = torch.tensor([[0.5, 0.5, -0.5, -0.5]])
    seen = torch.tensor([[True, False, True, False]])
    g = torch.Generator().manual_seed(0)
    picked = sample_next(logits.expand(n, -1), repetition_penalty=penalty,
                         seen=seen.expand(n, -1), generator=g)
    freq = torch.bincount(picked, minlength=4) / n
    expected = torch.tensor([[0.5 / penalty, 0.5, -0.5 * penalty, -0.5]]).softmax(-1)[0]
    torch.testing.assert_close(freq, expected, rtol=0, atol=0.015)
    assert expected[0] < logits.softmax(-1)[0, 0] and expected[2] < logits.softmax(-1)[0, 2]


# ---------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("prompt, kwargs, message", [
    (torch.zeros(1, 0, dtype=torch.long), {}, "prompt is empty"),
    (torch.tensor([[1, V]]), {}, r"token ids must be in \[0, 256\)"),
    (torch.tensor([[-1, 2]]), {}, r"token ids must be in \[0, 256\)"),
    (torch.tensor([[1.0, 2.0]]), {}, "must be integers"),
    (torch.tensor([[1, 2]]), {"temperature": -0.5}, "temperature must be ≥ 0"),
    (torch.tensor([[1, 2]]), {"top_k": 0}, "top_k must be ≥ 1"),
    (torch.tensor([[1, 2]]), {"top_p": 0.0}, r"top_p must be in \(0, 1\]"),
    (torch.tensor([[1, 2]]), {"top_p": 1.5}, r"top_p must be in \(0, 1\]"),
    (torch.tensor([[1, 2]]), {"repetition_penalty": 0.0}, "repetition_penalty must be > 0"),
    (torch.tensor([[1, 2]]), {"max_new_tokens": -1}, "max_new_tokens must be ≥ 0"),
])
def test_generation_rejects_bad_arguments(prompt, kwargs, message):
    model = build(tiny())
    kwargs = {"max_new_tokens": 3, **kwargs}
    with pytest.raises(ValueError, match=message):
        model.generate(prompt, **kwargs)
    with pytest.raises(ValueError, match=message):
        model.stream(prompt, **kwargs)  # at the call, not at the first next()


@pytest.mark.parametrize("overrides, message", [
    ({"n_embd": 100, "n_head": 3}, r"n_embd \(100\) must be divisible by n_head \(3\)"),
    ({"n_embd": 36, "n_head": 4}, "head dim must be even"),
    ({"n_head": 8, "n_kv_head": 3}, r"n_head \(8\) must be a multiple of n_kv_head \(3\)"),
    ({"vocab_size": 65537}, "does not fit the uint16 token files"),
    ({"norm": "batchnorm"}, "norm must be one of layernorm, rmsnorm"),
    ({"sliding_window": 0}, "sliding_window must be positive"),
])
def test_config_validation(overrides, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**overrides)


def test_unknown_preset_lists_the_names():
    with pytest.raises(ValueError, match="unknown preset 'huge'") as err:
        get_preset("huge")
    for name in config.PRESETS:
        assert name in str(err.value)


def test_odd_head_dim_is_fine_without_rope():
    model = build(tiny(n_embd=36, n_head=4, pos_encoding="learned"))
    assert model(tokens(1, 8))[0].shape == (1, 1, V)


# ---------------------------------------------------------------------------
# Optimizer groups and init
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["default", "learned", "bias", "llama-like"])
def test_weight_decay_groups(variant):
    model = build(tiny(**VARIANTS[variant]))
    decay, no_decay = model.optim_groups(0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    decayed = {id(p) for p in decay["params"]}
    not_decayed = {id(p) for p in no_decay["params"]}
    assert not decayed & not_decayed
    assert decayed | not_decayed == {id(p) for p in model.parameters()}
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    for name, p in model.named_parameters():  # named_parameters lists the tied weight once
        is_matmul = name.endswith(".weight") and p.dim() == 2 and not name.startswith("w")
        assert (id(p) in decayed) == is_matmul, name
    assert id(model.wte.weight) in not_decayed


def test_init_scales_residual_projections():
    n_layer = 8
    model = build(tiny(n_layer=n_layer, n_embd=256, ffn_hidden=1024))
    expected = 0.02 / math.sqrt(2 * n_layer)
    for name, p in model.named_parameters():
        if name.endswith("c_proj.weight"):
            assert p.std().item() == pytest.approx(expected, rel=0.05), name
        elif p.dim() == 2:
            assert p.std().item() == pytest.approx(0.02, rel=0.05), name


# ---------------------------------------------------------------------------
# bench.py smoke run
# ---------------------------------------------------------------------------


def test_bench_quick_run_writes_its_figures(tmp_path, capsys):
    import json

    import bench

    out = tmp_path / "bench.json"
    assert bench.main(["--quick", "--only", "peak,train,loop,optimizer,generate", "--repeats", "1",
                       "--new-tokens", "8", "--threads", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "generate with KV cache" in printed and "03_train.py train_step" in printed
    results = json.loads(out.read_text())
    assert results["preset"] == "tiny" and results["machine"]["torch_threads"] == 1
    assert results["machine"]["device"] == "cpu"
    auto = results["auto_precision"]["precision"]
    for name in ("fp32", "bf16", "fp32, learned positions", f"{auto}, every dropout 0",
                 f"{auto}, attention dropout 0.1"):
        assert results["train"][name]["tokens_per_s"] > 0
        assert 0 < results["train"][name]["mfu"] <= 1, (name, results["train"][name])
    assert results["auto_precision"]["vs_fp32"] == pytest.approx(
        results["train"][auto]["tokens_per_s"] / results["train"]["fp32"]["tokens_per_s"])
    assert results["loop"]["tokens_per_s"] > 0 and results["loop"]["precision"] in (
        "float32", "bfloat16")
    assert results["generate"]["kv_cache"]["tokens_per_s"] > 0
    steps = results["optimizer_step_s"]
    assert set(steps) == {"adamw", "muon, fp32 Newton–Schulz", "muon, bf16 Newton–Schulz"}
    assert all(seconds > 0 for seconds in steps.values())
    assert results["generate"]["weight_bytes"] == 4 * GPT(get_preset("tiny")).num_params()

    # The memory child, run in this process: its numbers are RSS peaks, so only sanity here.
    mem = bench.memory_child(tiny().to_dict(), batch=2, seq=16, precision="fp32", steps=1,
                             threads=1)
    assert 0 < mem["model_only_mb"] <= mem["peak_mb"]
    assert bench.main(["--only", "nonsense", "--out", str(out)]) == 2
