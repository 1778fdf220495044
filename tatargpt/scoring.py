"""How likely a model finds a text: negative log-likelihoods, perplexity and bits per character.

Every figure of the course comes from these: `token_nll` scores any length of text in windows
of the context, `sentence_nlls` scores many sentences in padded batches, and the two
conversions below are the one formula each for perplexity and bits per character.
"""

from __future__ import annotations

import math

import torch

from tatargpt.tokenization import Tokenizer


@torch.inference_mode()
def token_nll(model, ids: list[int]) -> float:
    """Sum of −log p(token) in nats over ids[1:], each predicted from the tokens before it.

    Text longer than the context is scored in windows of block_size tokens; after the first
    window each one moves by block_size/2 and scores only its new tokens, so every token is
    scored exactly once, with at least block_size/2 tokens of context.
    """
    device = next(model.parameters()).device
    block = model.config.block_size
    stride = max(1, block // 2)
    total, scored = 0.0, 1  # ids[0] (<bos>) is never predicted
    while scored < len(ids):
        end = min(len(ids), block + 1 if scored == 1 else scored + stride)
        start = max(0, end - 1 - block)
        window = torch.tensor([ids[start:end]], dtype=torch.long, device=device)
        logits, _ = model(window[:, :-1], all_logits=True)  # (1, T, V)
        logp = torch.log_softmax(logits[0].float(), dim=-1)  # (T, V)
        nll = -logp.gather(1, window[0, 1:].unsqueeze(1)).squeeze(1)  # (T,)
        total += float(nll[-(end - scored):].sum())
        scored = end
    return total


@torch.inference_mode()
def sentence_nlls(model, tokenizer: Tokenizer, sentences: list[str],
                  batch_size: int = 32) -> list[float]:
    """−log p(<bos> sentence <eos>) in nats of each sentence, as score_text computes it, but
    sentences that fit the context go through the model in padded batches (much faster)."""
    device = next(model.parameters()).device
    block = model.config.block_size
    encoded = [[tokenizer.bos_id] + ids + [tokenizer.eos_id]
               for ids in tokenizer.encode_batch(list(sentences))]
    out = [0.0] * len(encoded)
    short = sorted((i for i, ids in enumerate(encoded) if len(ids) <= block + 1),
                   key=lambda i: len(encoded[i]))  # similar lengths: little padding
    for i in (i for i, ids in enumerate(encoded) if len(ids) > block + 1):
        out[i] = token_nll(model, encoded[i])
    for start in range(0, len(short), batch_size):
        rows = short[start:start + batch_size]
        width = max(len(encoded[i]) for i in rows)
        ids = torch.full((len(rows), width), tokenizer.pad_id, dtype=torch.long)
        for r, i in enumerate(rows):
            ids[r, : len(encoded[i])] = torch.tensor(encoded[i])
        ids = ids.to(device)
        # Right padding: causal attention keeps the pads from changing the real positions.
        logits, _ = model(ids[:, :-1], all_logits=True)  # (B, T, V)
        logp = torch.log_softmax(logits.float(), dim=-1)
        nll = -logp.gather(2, ids[:, 1:].unsqueeze(2)).squeeze(2)  # (B, T)
        lengths = torch.tensor([len(encoded[i]) - 1 for i in rows], device=device)
        mask = torch.arange(width - 1, device=device).unsqueeze(0) < lengths.unsqueeze(1)
        for r, value in zip(rows, (nll * mask).sum(dim=1).tolist(), strict=True):
            out[r] = value
    return out


def score_text(model, tokenizer: Tokenizer, text: str | list[str]) -> dict:
    """Negative log-likelihood of one sentence, or of each line of a list, as <bos> s <eos>."""
    lines = [text] if isinstance(text, str) else list(text)
    nll, tokens, chars = 0.0, 0, 0
    for line in lines:
        ids = [tokenizer.bos_id] + tokenizer.encode(line) + [tokenizer.eos_id]
        nll += token_nll(model, ids)
        tokens += len(ids) - 1
        chars += len(line) + 1  # +1: the sentence boundary, as in meta.json
    return {"nll": nll, "tokens": tokens, "chars": chars}


def nats_to_ppl(nats: float, tokens: int = 1) -> float:
    """Perplexity from a total negative log-likelihood in nats over `tokens` tokens (a mean
    loss per token with the default tokens=1). Capped at e^50: beyond that it says nothing."""
    return math.exp(min(nats / max(1, tokens), 50.0))


def nats_to_bpc(nats: float, chars: int) -> float:
    """Bits per character from a total negative log-likelihood in nats over `chars`
    characters: the one formula of the course, comparable across tokenizers."""
    return nats / max(1, chars) / math.log(2)

