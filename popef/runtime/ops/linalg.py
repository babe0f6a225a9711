"""Matrix products: Gemm and MatMul (BLAS through np.matmul), Einsum, Det."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import _kernels
from .base import FLOAT_DTYPES, Attr, Op, TensorSpec, fmt_shape, register

__all__ = ["LINALG_DTYPES", "Det", "Einsum", "Gemm", "MatMul"]

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


def _einsum_terms(op: Op, equation: str, ranks: Sequence[int]) -> tuple[list[str], str, list[int]]:
    """Parse ``equation`` for operands of ``ranks``: the terms with ``...`` replaced by
    upper-case letters standing for the broadcast dims (right-aligned), the output term, and
    the ellipsis rank of each operand."""
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(ranks):
        raise op.error(
            f"equation {equation!r} has {len(terms)} operands, the node has {len(ranks)} inputs"
        )
    ell_rank = 0
    ell_ranks = []
    for term, rank in zip(terms, ranks):
        letters = term.replace("...", "")
        if not all("a" <= ch <= "z" for ch in letters):
            raise op.error(f"equation {equation!r}: terms are lower-case letters and '...'")
        n = rank - len(letters) if "..." in term else 0
        if n < 0 or ("..." not in term and len(letters) != rank):
            raise op.error(
                f"equation {equation!r}: term {term!r} does not fit an operand of rank {rank}"
            )
        ell_ranks.append(n)
        ell_rank = max(ell_rank, n)
    ell = "".join(chr(ord("A") + i) for i in range(ell_rank))
    expanded = [t.replace("...", ell[ell_rank - n :]) for t, n in zip(terms, ell_ranks)]
    if arrow:
        out = rhs.replace("...", ell)
        if not all(ch.isascii() and ch.isalpha() for ch in out) or len(set(out)) != len(out):
            raise op.error(f"equation {equation!r}: bad output term {rhs!r}")
    else:
        counts = {}
        for t in expanded:
            for ch in t:
                counts[ch] = counts.get(ch, 0) + 1
        out = ell + "".join(sorted(ch for ch, k in counts.items() if k == 1 and ch.islower()))
    return expanded, out, ell_ranks


@register
class Einsum(Op):
    """Einsum(Inputs..., equation): numpy's einsum, with ``...`` broadcasting; the output
    shape is inferred from the equation."""

    op_type = "Einsum"
    attributes = {"equation": Attr("string")}
    num_inputs = (1, 2**16)

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        self._check_dtype(inputs[0], LINALG_DTYPES)
        self._check_same_dtype(inputs)
        terms, out, _ = _einsum_terms(self, self.attrs["equation"], [s.rank for s in inputs])
        dims: dict[str, int] = {}
        for term, spec in zip(terms, inputs):
            for ch, d in zip(term, spec.shape):
                have = dims.get(ch)
                if have is None or have == 1:
                    dims[ch] = d
                elif d != have and not (ch.isupper() and d == 1):
                    raise self.error(
                        f"equation {self.attrs['equation']!r}: index {ch!r} is "
                        f"{have} in one operand and {d} in another"
                    )
        for ch in out:
            if ch not in dims:
                raise self.error(
                    f"equation {self.attrs['equation']!r}: output index {ch!r} "
                    "appears in no operand"
                )
        return [TensorSpec(tuple(dims[ch] for ch in out), inputs[0].dtype)]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        dtype = inputs[0].dtype
        cdt = _kernels.compute_dtype(dtype)
        operands = [x.astype(cdt, copy=False) for x in inputs]
        y = np.einsum(self.attrs["equation"].replace(" ", ""), *operands, optimize=True)
        return [np.asarray(y).astype(dtype, copy=False)]

    def keeps_rows(self, batched: Sequence[bool], specs: Sequence[TensorSpec | None]) -> bool:
        terms, out, _ = _einsum_terms(self, self.attrs["equation"], [s.rank for s in specs])
        lead = {t[:1] for t, b in zip(terms, batched) if b}
        if len(lead) != 1 or not out:
            return False
        [letter] = lead
        return (
            letter.islower()
            and out[0] == letter
            and all(letter not in t for t, b in zip(terms, batched) if not b)
        )


@register
class Det(Op):
    """Det(X): determinants of the square matrices in the last two dims ``[..., M, M]``."""

    op_type = "Det"
    num_inputs = (1, 1)

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        x = inputs[0]
        assert x is not None
        self._check_dtype(x, FLOAT_DTYPES)
        if x.rank < 2 or x.shape[-1] != x.shape[-2]:
            raise self.error(f"input must be [..., M, M], got {fmt_shape(x.shape)}")
        return [TensorSpec(x.shape[:-2], x.dtype)]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x = inputs[0]
        cdt = _kernels.compute_dtype(x.dtype)
        return [np.asarray(np.linalg.det(x.astype(cdt, copy=False))).astype(x.dtype)]

    def keeps_rows(self, batched: Sequence[bool], specs: Sequence[TensorSpec | None]) -> bool:
        return specs[0].rank >= 3
