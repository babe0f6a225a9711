"""Ops of ONNX's ``ai.onnx.ml`` domain on numeric tensors: Binarizer and ArrayFeatureExtractor.

They are registered as ``ai.onnx.ml.<Op>`` (the importer names an op of another domain
``<domain>.<op type>``). Their string forms (string tensors) are not supported: a PopEF tensor
holds numbers only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .base import Attr, Op, TensorSpec, fmt_shape, register

__all__ = ["ArrayFeatureExtractor", "Binarizer"]

_DOMAIN = "ai.onnx.ml"
_ML_NUMERIC = frozenset(np.dtype(t) for t in (np.float32, np.float64, np.int64, np.int32))
_I64 = frozenset({np.dtype(np.int64)})


@register
class Binarizer(Op):
    """Binarizer(X) -> Y: 1 where ``X > threshold``, else 0, in X's dtype."""

    op_type = f"{_DOMAIN}.Binarizer"
    attributes = {"threshold": Attr("float", 0.0)}

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        (x,) = inputs
        self._check_dtype(x, _ML_NUMERIC, "input 0 (X)")
        return [x]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        (x,) = inputs
        return [(x > self.attrs["threshold"]).astype(x.dtype)]

    def keeps_rows(self, batched: Sequence[bool], specs: Sequence[TensorSpec | None]) -> bool:
        return True


@register
class ArrayFeatureExtractor(Op):
    """ArrayFeatureExtractor(X, Y) -> Z: the entries of X's last axis at the int64 indices Y
    (flattened), ``Z.shape = X.shape[:-1] + [Y.size]``; a 1-D X gives one row ``[1, Y.size]``
    (as onnxruntime does). An index outside ``[0, X.shape[-1])`` is an error."""

    op_type = f"{_DOMAIN}.ArrayFeatureExtractor"
    num_inputs = (2, 2)

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        x, indices = inputs
        self._check_dtype(x, _ML_NUMERIC, "input 0 (X)")
        self._check_dtype(indices, _I64, "input 1 (Y)")
        if x.rank < 1:
            raise self.error(f"input 0 (X) must have rank >= 1, got {fmt_shape(x.shape)}")
        rows = x.shape[:-1] if x.rank > 1 else (1,)
        return [TensorSpec((*rows, indices.size), x.dtype)]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x, indices = inputs
        index = np.asarray(indices).reshape(-1)
        width = x.shape[-1]
        bad = (index < 0) | (index >= width)
        if bad.any():
            raise self.error(
                f"input 1 (Y) holds index {int(index[bad][0])}, expected 0 to "
                f"{width - 1} (the size of X's last axis)"
            )
        rows = x.shape[:-1] if x.ndim > 1 else (1,)
        return [np.ascontiguousarray(x[..., index]).reshape(*rows, index.size)]

    def keeps_rows(self, batched: Sequence[bool], specs: Sequence[TensorSpec | None]) -> bool:
        # rows stay independent when only X (of rank >= 2) is batched
        return not batched[1] and specs[0] is not None and specs[0].rank >= 2
