"""A character n-gram language model with interpolated modified Kneser-Ney smoothing.

The baseline the GPT must beat (04_evaluate.py): it predicts each character of a sentence
from the n−1 characters before it, then the end of the sentence, so its bits per character
are in the same unit as the GPT's (nats of `<bos> sentence <eos>` over len(sentence) + 1
characters, divided by ln 2).

Kneser-Ney (Chen & Goodman 1998, "interpolated modified" variant), for an order-k context h:

    P(w | h) = max(c(hw) − D(c(hw)), 0) / c(h·)  +  γ(h) · P(w | h′)
    γ(h)     = (D₁·N₁(h·) + D₂·N₂(h·) + D₃₊·N₃₊(h·)) / c(h·)

with h′ the context without its first character, N_r(h·) the number of characters seen
after h exactly r times (r ≥ 3 for N₃₊), and discounts from the counts of counts n_r:
Y = n₁/(n₁ + 2n₂), D₁ = 1 − 2Y·n₂/n₁, D₂ = 2 − 3Y·n₃/n₂, D₃₊ = 3 − 4Y·n₄/n₃. The highest
order counts occurrences; lower orders count continuations — c(hw) is the number of distinct
characters seen before hw — because a lower order is only consulted when the longer context
says little. An unseen context passes the lower order's probability on unchanged; below
order 1 every symbol is equally likely (unknown characters included, so nothing has
probability 0).

Implementation: every n-gram is one int64 (the character ids in base 2^bits) and the tables
are sorted numpy arrays, so training and scoring are a few vectorised passes — a few seconds
for a few MB of text.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

BOS, EOS, UNK = 0, 1, 2  # symbol ids; characters start at 3


@dataclass
class _Order:
    grams: np.ndarray  # sorted int64 codes of the k-grams
    counts: np.ndarray  # their counts (occurrences at the top order, continuations below)
    contexts: np.ndarray  # sorted codes of the (k−1)-gram contexts
    totals: np.ndarray  # c(h·) of each context
    gammas: np.ndarray  # γ(h) of each context
    discounts: tuple[float, float, float]  # D₁, D₂, D₃₊


class CharNgram:
    """Fit with `fit(sentences)`, score with `sentence_logprobs` or `bits_per_char`."""

    def __init__(self, order: int = 6):
        if not 2 <= order <= 7:
            raise ValueError(f"the n-gram order must be 2 to 7, got {order}")
        self.order = order
        self.bits = 63 // order  # an order-n gram of symbols < 2^bits fits one int64
        self.base = 1 << self.bits
        self.vocab: dict[str, int] = {}
        self.orders: list[_Order] = []
        self.train_chars = 0

    # -- encoding -------------------------------------------------------------------------------

    def _ids(self, sentence: str) -> list[int]:
        get = self.vocab.get
        return [get(c, UNK) for c in sentence]

    def _sequence(self, sentences: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All sentences as one padded id array, the positions to predict, and for each
        position its sentence index. Each sentence is n−1 × BOS, its characters, EOS."""
        pad = [BOS] * (self.order - 1)
        seq, predict, owner = [], [], []
        for i, s in enumerate(sentences):
            ids = self._ids(s) + [EOS]
            start = len(seq) + len(pad)
            seq += pad + ids
            predict.append(np.arange(start, start + len(ids)))
            owner.append(np.full(len(ids), i))
        empty = np.zeros(0, dtype=np.int64)
        return (np.asarray(seq, dtype=np.int64),
                np.concatenate(predict) if predict else empty,
                np.concatenate(owner) if owner else empty)

    def _codes(self, seq: np.ndarray, positions: np.ndarray, k: int) -> np.ndarray:
        """int64 code of the k-gram ending at each position: Σ_j seq[p−j]·base^j."""
        code = np.zeros(len(positions), dtype=np.int64)
        for j in range(k - 1, -1, -1):
            code = (code << self.bits) | seq[positions - j]
        return code

    # -- training -------------------------------------------------------------------------------

    def fit(self, sentences: list[str]) -> CharNgram:
        chars = Counter(c for s in sentences for c in s)
        # The most frequent characters get ids; the rest (if the alphabet is larger than an
        # int64 code allows) are UNK, like characters never seen.
        keep = [c for c, _ in chars.most_common(self.base - 3)]
        self.vocab = {c: i + 3 for i, c in enumerate(keep)}
        self.train_chars = sum(len(s) + 1 for s in sentences)
        seq, positions, _ = self._sequence(sentences)
        if not len(positions):
            raise ValueError("no training text for the n-gram model")
        distinct = {k: np.unique(self._codes(seq, positions, k)) for k in
                    range(1, self.order + 1)}
        self.orders = []
        for k in range(1, self.order + 1):
            if k == self.order:  # occurrences
                grams, counts = np.unique(self._codes(seq, positions, k), return_counts=True)
            else:  # continuations: distinct characters before each k-gram
                suffix = distinct[k + 1] & ((1 << (self.bits * k)) - 1)
                grams, counts = np.unique(suffix, return_counts=True)
            self.orders.append(self._order_table(grams, counts))
        return self

    def _order_table(self, grams: np.ndarray, counts: np.ndarray) -> _Order:
        n = [int(np.sum(counts == r)) for r in (1, 2, 3, 4)]
        discounts = _discounts(*n)
        contexts, inverse = np.unique(grams >> self.bits, return_inverse=True)
        totals = np.bincount(inverse, weights=counts).astype(np.float64)
        d = np.select([counts == 1, counts == 2], [discounts[0], discounts[1]], discounts[2])
        mass = np.bincount(inverse, weights=d)
        return _Order(grams, counts.astype(np.float64), contexts, totals, mass / totals,
                      discounts)

    # -- scoring --------------------------------------------------------------------------------

    def position_probs(self, sentences: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """P of every predicted symbol (characters and each sentence's end), and its sentence."""
        seq, positions, owner = self._sequence(sentences)
        # Below order 1: uniform over what can follow (every character, the end, UNK).
        p = np.full(len(positions), 1.0 / (len(self.vocab) + 2))
        for k, table in enumerate(self.orders, start=1):
            code = self._codes(seq, positions, k)
            ctx = code >> self.bits
            at = np.searchsorted(table.contexts, ctx)
            at_c = np.minimum(at, len(table.contexts) - 1)
            seen = table.contexts[at_c] == ctx
            g = np.searchsorted(table.grams, code)
            g_c = np.minimum(g, len(table.grams) - 1)
            c = np.where(table.grams[g_c] == code, table.counts[g_c], 0.0)
            d1, d2, d3 = table.discounts
            d = np.select([c == 0, c == 1, c == 2], [0.0, d1, d2], d3)
            total = table.totals[at_c]
            p = np.where(seen, np.maximum(c - d, 0.0) / total + table.gammas[at_c] * p, p)
        return p, owner

    def sentence_logprobs(self, sentences: list[str]) -> np.ndarray:
        """log₂ P(sentence, then its end) of each sentence."""
        p, owner = self.position_probs(sentences)
        return np.bincount(owner, weights=np.log2(p), minlength=len(sentences))

    def bits_per_char(self, sentences: list[str]) -> float:
        """−log₂ P of all the sentences over their characters (+1 each for the end)."""
        chars = sum(len(s) + 1 for s in sentences)
        return float(-self.sentence_logprobs(sentences).sum() / max(1, chars))


def _discounts(n1: int, n2: int, n3: int, n4: int) -> tuple[float, float, float]:
    """Chen & Goodman's D₁, D₂, D₃₊ from the counts of counts, kept in a sane range."""
    if n1 == 0 or n2 == 0:
        return 0.5, 0.5, 0.5  # too little data for the estimate: a plain half discount
    y = n1 / (n1 + 2 * n2)
    d1 = 1 - 2 * y * n2 / n1
    d2 = 2 - 3 * y * n3 / n2
    d3 = 3 - 4 * y * n4 / n3 if n3 else d2
    return tuple(float(min(max(d, 0.05), r)) for d, r in ((d1, 1), (d2, 2), (d3, 3)))
