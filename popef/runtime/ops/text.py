"""Text features: TfIdfVectorizer over integer token ids.

``TfIdfVectorizer`` counts, in each row of token ids, the n-grams of its pool (``pool_int64s``;
the string pool is not supported: PopEF holds no strings). An n-gram of n > 1 tokens matches at
every start position and every skip distance ``s`` from 1 to ``max_skip_count + 1`` (tokens at
``i, i + s, ..., i + (n - 1)s``); a unigram counts once per occurrence. The counts land in the
columns named by ``ngram_indexes`` and are weighted by ``mode``: ``TF`` (the counts), ``IDF``
(the weight, or 1, where the count is positive) or ``TFIDF`` (the weight times the count).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .base import Attr, Op, TensorSpec, fmt_shape, register

__all__ = ["TfIdfVectorizer"]

_TOKENS = frozenset(np.dtype(t) for t in (np.int32, np.int64))
_F32 = np.dtype(np.float32)
_MODES = ("TF", "IDF", "TFIDF")


@register
class TfIdfVectorizer(Op):
    """TfIdfVectorizer(X): float32 ``[C_out]`` or ``[N, C_out]`` n-gram features of int32/int64
    token ids ``[C]`` or ``[N, C]``."""

    op_type = "TfIdfVectorizer"
    attributes = {
        "max_gram_length": Attr("int"),
        "max_skip_count": Attr("int"),
        "min_gram_length": Attr("int"),
        "mode": Attr("string"),
        "ngram_counts": Attr("ints"),
        "ngram_indexes": Attr("ints"),
        "pool_int64s": Attr("ints", None),
        "weights": Attr("floats", None),
    }

    def _setup(self) -> None:
        a = self.attrs
        if a["pool_int64s"] is None:
            raise self.error(
                "attribute 'pool_int64s' is required ('pool_strings' is not "
                "supported: PopEF holds no strings)"
            )
        if a["mode"] not in _MODES:
            raise self.error(
                f"attribute 'mode' must be one of {', '.join(_MODES)}, got {a['mode']!r}"
            )
        lo, hi, skip = a["min_gram_length"], a["max_gram_length"], a["max_skip_count"]
        if not 1 <= lo <= hi or skip < 0:
            raise self.error(
                f"expected 1 <= min_gram_length <= max_gram_length and "
                f"max_skip_count >= 0, got {lo}, {hi} and {skip}"
            )
        pool, counts, indexes = a["pool_int64s"], a["ngram_counts"], a["ngram_indexes"]
        starts = list(counts) + [len(pool)]
        if any(not 0 <= x <= y <= len(pool) for x, y in zip(starts, starts[1:])):
            raise self.error(
                f"attribute 'ngram_counts' {list(counts)} must be increasing "
                f"offsets into the pool of {len(pool)} ids"
            )
        # (gram, output column) for every pooled n-gram whose length is kept
        self.grams: list[tuple[tuple[int, ...], int]] = []
        number = 0
        for size, (begin, end) in enumerate(zip(starts, starts[1:]), 1):
            if (end - begin) % size:
                raise self.error(
                    f"the pool's {size}-grams span {end - begin} ids, not a multiple of {size}"
                )
            for k in range(begin, end, size):
                if number >= len(indexes):
                    raise self.error(
                        f"attribute 'ngram_indexes' has {len(indexes)} entries "
                        f"but the pool holds more n-grams"
                    )
                if lo <= size <= hi:
                    self.grams.append((tuple(pool[k : k + size]), int(indexes[number])))
                number += 1
        if any(i < 0 for i in indexes):
            raise self.error(f"attribute 'ngram_indexes' must be non-negative, got {list(indexes)}")
        self.width = max(indexes, default=-1) + 1
        weights = a["weights"]
        if weights is not None and len(weights) < self.width:
            raise self.error(
                f"attribute 'weights' has {len(weights)} entries, expected "
                f"{self.width} (one per output column)"
            )
        self.weights = None if weights is None else np.asarray(weights[: self.width], _F32)

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        x = inputs[0]
        self._check_dtype(x, _TOKENS, "input 0 (X)")
        if x.rank not in (1, 2):
            raise self.error(f"input X must be [C] or [N, C], got {fmt_shape(x.shape)}")
        return [TensorSpec(x.shape[:-1] + (self.width,), _F32)]

    def _counts(self, rows: np.ndarray) -> np.ndarray:
        n, c = rows.shape
        counts = np.zeros((n, self.width), np.int64)
        for gram, column in self.grams:
            size = len(gram)
            skips = range(1, self.attrs["max_skip_count"] + 2) if size > 1 else (1,)
            for s in skips:
                span = c - (size - 1) * s
                if span <= 0:
                    break
                hit = np.ones((n, span), bool)
                for k, token in enumerate(gram):
                    hit &= rows[:, k * s : k * s + span] == token
                counts[:, column] += hit.sum(axis=1)
        return counts

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x = inputs[0]
        counts = self._counts(x.reshape(-1, x.shape[-1]) if x.ndim == 2 else x.reshape(1, -1))
        mode, w = self.attrs["mode"], self.weights
        if mode == "TF":
            y = counts.astype(_F32)
        elif mode == "IDF":
            y = (counts > 0) * (w if w is not None else np.float32(1))
        else:
            y = counts * (w if w is not None else np.float32(1))
        return [np.asarray(y, _F32).reshape(x.shape[:-1] + (self.width,))]

    def keeps_rows(self, batched: Sequence[bool], specs: Sequence[TensorSpec | None]) -> bool:
        return specs[0].rank == 2
