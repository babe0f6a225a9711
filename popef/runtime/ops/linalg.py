"""Matrix products: Gemm and MatMul (BLAS through np.matmul)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import _kernels
from .base import FLOAT_DTYPES, Attr, Op, TensorSpec, fmt_shape, register

__all__ = ["LINALG_DTYPES", "Gemm", "MatMul"]

#: dtypes ONNX Gemm/MatMul accept (bfloat16 aside).
LINALG_DTYPES = FLOAT_DTYPES | frozenset(
    np.dtype(t) for t in (np.int32, np.int64, np.uint32, np.uint64)
)


@register
class Gemm(Op):
    """Y = alpha * A' @ B' + beta * C, A' = A.T if transA, B' = B.T if transB; A and B are 2-D,
    C (optional) broadcasts unidirectionally to (M, N)."""

    op_type = "Gemm"
    attributes = {
        "alpha": Attr("float", 1.0),
        "beta": Attr("float", 1.0),
        "transA": Attr("int", 0),
        "transB": Attr("int", 0),
    }
    num_inputs = (2, 3)

    def _setup(self) -> None:
        a = self.attrs
        for name in ("transA", "transB"):
            if a[name] not in (0, 1):
                raise self.error(f"attribute '{name}' must be 0 or 1, got {a[name]}")
        self.trans_a = bool(a["transA"])
        self.trans_b = bool(a["transB"])
        self.alpha = float(a["alpha"])
        self.beta = float(a["beta"])

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        a, b = inputs[0], inputs[1]
        c = inputs[2] if len(inputs) > 2 else None
        assert a is not None and b is not None
        self._check_dtype(a, LINALG_DTYPES)
        self._check_same_dtype(inputs)
        if a.rank != 2 or b.rank != 2:
            raise self.error(f"A {fmt_shape(a.shape)} and B {fmt_shape(b.shape)} must both be 2-D")
        m, k = a.shape[::-1] if self.trans_a else a.shape
        k2, n = b.shape[::-1] if self.trans_b else b.shape
        if k != k2:
            raise self.error(
                f"cannot multiply A {fmt_shape(a.shape)}{' (transposed)' if self.trans_a else ''} "
                f"by B {fmt_shape(b.shape)}{' (transposed)' if self.trans_b else ''}: "
                f"inner dims {k} and {k2} differ"
            )
        if c is not None:
            ok = c.rank <= 2 and all(d in (1, want) for d, want in zip(c.shape[::-1], (n, m)))
            if not ok:
                raise self.error(
                    f"C {fmt_shape(c.shape)} does not broadcast to the output [{m}, {n}]"
                )
        return [TensorSpec((m, n), a.dtype)]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        a, b = inputs[0], inputs[1]
        c = inputs[2] if len(inputs) > 2 else None
        dtype = a.dtype
        if dtype.kind == "f" and dtype.itemsize == 2:
            a = a.astype(np.float32)
            b = b.astype(np.float32)
        if self.trans_a:
            a = a.T
        if self.trans_b:
            b = b.T
        y = np.matmul(a, b)
        alpha, beta = self.alpha, self.beta
        if y.dtype.kind == "f":
            if alpha != 1.0:
                y *= alpha
            if c is not None and beta != 0.0:
                if beta == 1.0:
                    y += c
                else:
                    y += beta * c.astype(y.dtype, copy=False)
        elif alpha != 1.0 or (c is not None and beta not in (0.0, 1.0)):
            # integer Gemm with scaling: computed in float64, truncated back
            acc = y * alpha
            if c is not None and beta != 0.0:
                acc += beta * c
            y = acc.astype(dtype)
        elif c is not None and beta == 1.0:
            y += c
        return [y if y.dtype == dtype else y.astype(dtype)]


def matmul_shape(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...] | None:
    """Output shape of ``np.matmul(a, b)``, or None when the shapes do not multiply."""
    if not a or not b:
        return None
    a2 = (1,) + a if len(a) == 1 else a
    b2 = b + (1,) if len(b) == 1 else b
    if a2[-1] != b2[-2]:
        return None
    try:
        batch = np.broadcast_shapes(a2[:-2], b2[:-2])
    except ValueError:
        return None
    out = batch + (a2[-2], b2[-1])
    if len(a) == 1:
        out = out[:-2] + out[-1:]
    if len(b) == 1:
        out = out[:-1]
    return out


@register
class MatMul(Op):
    """numpy matmul semantics: 1-D operands are promoted and the added dim removed; leading
    dims broadcast."""

    op_type = "MatMul"
    num_inputs = (2, 2)

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        a, b = inputs
        assert a is not None and b is not None
        self._check_dtype(a, LINALG_DTYPES)
        self._check_same_dtype(inputs)
        shape = matmul_shape(a.shape, b.shape)
        if shape is None:
            raise self.error(f"cannot multiply {fmt_shape(a.shape)} by {fmt_shape(b.shape)}")
        return [TensorSpec(shape, a.dtype)]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        a, b = inputs[0], inputs[1]
        dtype = a.dtype
        if dtype.kind == "f" and dtype.itemsize == 2:
            cdt = _kernels.compute_dtype(dtype)
            return [np.matmul(a.astype(cdt), b.astype(cdt)).astype(dtype)]
        try:
            return [np.matmul(a, b)]
        except ValueError:
            raise self.error(
                f"cannot multiply {fmt_shape(a.shape)} by {fmt_shape(b.shape)}"
            ) from None
