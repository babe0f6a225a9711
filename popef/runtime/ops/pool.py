"""Pooling: MaxPool (with optional Indices), AveragePool, LpPool, the global pools
(GlobalAveragePool, GlobalMaxPool, GlobalLpPool) and MaxUnpool."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import _kernels
from .base import FLOAT_DTYPES, Attr, Op, TensorSpec, fmt_shape, register
from .conv import WindowOp

__all__ = [
    "AveragePool",
    "GlobalAveragePool",
    "GlobalLpPool",
    "GlobalMaxPool",
    "LpPool",
    "MaxPool",
    "MaxUnpool",
]


class _Pool(WindowOp):
    """Shared validation and per-shape planning of MaxPool and AveragePool."""

    num_inputs = (1, 1)
    dtypes: frozenset = FLOAT_DTYPES

    def _setup(self) -> None:
        super()._setup()
        self.kernel: tuple[int, ...] = tuple(self.attrs["kernel_shape"])
        self.ceil_mode = bool(self.attrs["ceil_mode"])
        if self.attrs["ceil_mode"] not in (0, 1):
            raise self.error(f"attribute 'ceil_mode' must be 0 or 1, got {self.attrs['ceil_mode']}")
        pads = self.attrs["pads"]
        if pads is not None and self.auto_pad == "NOTSET":
            nd = len(self.kernel)
            for i, p in enumerate(pads):
                if p >= self.kernel[i % nd]:
                    raise self.error(
                        f"attribute 'pads' {list(pads)} must be smaller than kernel_shape "
                        f"{list(self.kernel)}"
                    )

    def _plan(self, xs: tuple[int, ...]) -> _kernels.PoolPlan:
        if len(xs) < 3:
            raise self.error(f"input X must have rank >= 3 (N, C, *spatial), got {fmt_shape(xs)}")
        nd = len(xs) - 2
        strides, dilations, pads = self._window_params(nd)
        try:
            plan = _kernels.pool_plan(
                xs[2:], self.kernel, strides, dilations, pads, self.auto_pad, self.ceil_mode
            )
        except _kernels.KernelError as exc:
            raise self.error(
                f"input X {fmt_shape(xs)} with kernel_shape {list(self.kernel)}: {exc}"
            ) from None
        return self._cache(xs, plan)

    def _planned(self, xs: tuple[int, ...]) -> _kernels.PoolPlan:
        """The cached plan for input shape ``xs``, or a fresh one when the shape is new."""
        plan = self._plans.get(xs)
        return plan if plan is not None else self._plan(xs)

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        x = inputs[0]
        assert x is not None
        self._check_dtype(x, self.dtypes)
        plan = self._plan(x.shape)
        shape = x.shape[:2] + plan.geometry.out
        out = [TensorSpec(shape, x.dtype)]
        if self.output_count == 2:
            out.append(TensorSpec(shape, np.int64))
        return out


@register
class MaxPool(_Pool):
    """MaxPool(X) -> Y[, Indices]. Padding never wins; Indices are flat positions in X
    (row-major; spatial dims column-major when storage_order=1)."""

    op_type = "MaxPool"
    attributes = {
        "auto_pad": Attr("string", "NOTSET"),
        "ceil_mode": Attr("int", 0),
        "dilations": Attr("ints", None),
        "kernel_shape": Attr("ints"),
        "pads": Attr("ints", None),
        "storage_order": Attr("int", 0),
        "strides": Attr("ints", None),
    }
    num_outputs = (1, 2)
    dtypes = FLOAT_DTYPES | frozenset({np.dtype(np.int8), np.dtype(np.uint8)})

    def _setup(self) -> None:
        super()._setup()
        self.storage_order = self.attrs["storage_order"]
        if self.storage_order not in (0, 1):
            raise self.error(f"attribute 'storage_order' must be 0 or 1, got {self.storage_order}")

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x = inputs[0]
        plan = self._planned(x.shape)
        if self.output_count == 2:
            values, indices = _kernels.max_pool_with_indices(x, plan, self.storage_order)
            return [values, indices]
        return [_kernels.max_pool(x, plan)]

    def fusable_window(self) -> tuple[int, ...] | None:
        """The window when this pooling tiles its input with non-overlapping windows
        (kernel = strides, no padding or dilation, floor mode, no Indices), else None: the
        case :meth:`Conv.with_max_pool` fuses."""
        a = self.attrs
        simple = (
            self.output_count == 1
            and self.auto_pad in ("NOTSET", "VALID")
            and not self.ceil_mode
            and not any(a["pads"] or ())
            and all(d == 1 for d in a["dilations"] or ())
            and tuple(a["strides"] or ()) == self.kernel
        )
        return self.kernel if simple else None


@register
class AveragePool(_Pool):
    """AveragePool(X): with count_include_pad=0 the divisor counts only input elements;
    with 1 it also counts explicit/auto padding (never the ceil_mode overhang)."""

    op_type = "AveragePool"
    attributes = {
        "auto_pad": Attr("string", "NOTSET"),
        "ceil_mode": Attr("int", 0),
        "count_include_pad": Attr("int", 0),
        "dilations": Attr("ints", None),
        "kernel_shape": Attr("ints"),
        "pads": Attr("ints", None),
        "strides": Attr("ints", None),
    }

    def _setup(self) -> None:
        super()._setup()
        if self.attrs["count_include_pad"] not in (0, 1):
            raise self.error(
                "attribute 'count_include_pad' must be 0 or 1, "
                f"got {self.attrs['count_include_pad']}"
            )
        self.count_include_pad = bool(self.attrs["count_include_pad"])

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x = inputs[0]
        plan = self._planned(x.shape)
        return [_kernels.average_pool(x, plan, self.count_include_pad)]


class _GlobalPool(Op):
    """Shared shape rule of the global pools: (N, C, *S) -> (N, C, 1, ...)."""

    num_inputs = (1, 1)
    dtypes: frozenset = FLOAT_DTYPES

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        x = inputs[0]
        assert x is not None
        self._check_dtype(x, self.dtypes)
        if x.rank < 3:
            raise self.error(
                f"input X must have rank >= 3 (N, C, *spatial), got {fmt_shape(x.shape)}"
            )
        if any(d == 0 for d in x.shape[2:]):
            raise self.error(f"input X {fmt_shape(x.shape)} has an empty spatial dim")
        return [TensorSpec(x.shape[:2] + (1,) * (x.rank - 2), x.dtype)]


@register
class GlobalAveragePool(_GlobalPool):
    """Mean over all spatial dims, kept as size-1 dims: (N, C, *S) -> (N, C, 1, ...)."""

    op_type = "GlobalAveragePool"

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x = inputs[0]
        if x.ndim < 3:
            raise self.error(
                f"input X must have rank >= 3 (N, C, *spatial), got {fmt_shape(x.shape)}"
            )
        axes = tuple(range(2, x.ndim))
        return [
            np.mean(x, axis=axes, keepdims=True, dtype=_kernels.compute_dtype(x.dtype)).astype(
                x.dtype, copy=False
            )
        ]


def _lp_norm(x: np.ndarray, axes: tuple[int, ...] | None, p: int) -> np.ndarray:
    """``(sum |x|^p)^(1/p)`` over ``axes`` (keeping them), in the compute dtype."""
    xc = x.astype(_kernels.compute_dtype(x.dtype), copy=False)
    if p == 1:
        return np.sum(np.abs(xc), axis=axes, keepdims=True)
    if p == 2:
        return np.sqrt(np.sum(xc * xc, axis=axes, keepdims=True))
    return np.power(np.sum(np.abs(xc) ** p, axis=axes, keepdims=True), 1.0 / p)


@register
class LpPool(_Pool):
    """LpPool(X): ``(sum |x|^p)^(1/p)`` over each window; padding counts as zeros."""

    op_type = "LpPool"
    attributes = {
        "auto_pad": Attr("string", "NOTSET"),
        "ceil_mode": Attr("int", 0),
        "dilations": Attr("ints", None),
        "kernel_shape": Attr("ints"),
        "p": Attr("int", 2),
        "pads": Attr("ints", None),
        "strides": Attr("ints", None),
    }

    def _setup(self) -> None:
        super()._setup()
        self.p = int(self.attrs["p"])
        if self.p < 1:
            raise self.error(f"attribute 'p' must be positive, got {self.p}")

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x = inputs[0]
        plan = self._planned(x.shape)
        return [_kernels.lp_pool(x, plan, self.p)]


@register
class GlobalMaxPool(_GlobalPool):
    """Maximum over all spatial dims, kept as size-1 dims."""

    op_type = "GlobalMaxPool"
    dtypes = FLOAT_DTYPES | frozenset({np.dtype(np.int8), np.dtype(np.uint8)})

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x = inputs[0]
        return [np.max(x, axis=tuple(range(2, x.ndim)), keepdims=True)]


@register
class GlobalLpPool(_GlobalPool):
    """``(sum |x|^p)^(1/p)`` over all spatial dims, kept as size-1 dims."""

    op_type = "GlobalLpPool"
    attributes = {"p": Attr("int", 2)}

    def _setup(self) -> None:
        self.p = int(self.attrs["p"])
        if self.p < 1:
            raise self.error(f"attribute 'p' must be positive, got {self.p}")

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x = inputs[0]
        y = _lp_norm(x, tuple(range(2, x.ndim)), self.p)
        return [y if y.dtype == x.dtype else y.astype(x.dtype)]


@register
class MaxUnpool(WindowOp):
    """MaxUnpool(X, I, output_shape?): zeros of the unpooled shape with X's values put at the
    flat positions I (MaxPool's Indices). Without ``output_shape`` the shape is
    ``(S - 1) * strides + kernel_shape - pads``; ``output_shape`` must be a constant."""

    op_type = "MaxUnpool"
    attributes = {
        "kernel_shape": Attr("ints"),
        "pads": Attr("ints", None),
        "strides": Attr("ints", None),
    }
    num_inputs = (2, 3)

    def _setup(self) -> None:
        self.attrs["auto_pad"] = "NOTSET"
        super()._setup()
        self.kernel = tuple(self.attrs["kernel_shape"])

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        x, i = inputs[0], inputs[1]
        assert x is not None and i is not None
        self._check_dtype(x, FLOAT_DTYPES)
        self._check_dtype(i, frozenset({np.dtype(np.int64)}), "input 1 (I)")
        if x.rank < 3 or i.shape != x.shape:
            raise self.error(
                f"input X {fmt_shape(x.shape)} must have rank >= 3 and the shape of "
                f"indices I {fmt_shape(i.shape)}"
            )
        nd = x.rank - 2
        if len(self.kernel) != nd:
            raise self.error(
                f"kernel_shape {list(self.kernel)} has {len(self.kernel)} dims but input X "
                f"{fmt_shape(x.shape)} has {nd} spatial dims"
            )
        return [
            TensorSpec(self._out_shape(x.shape, len(inputs) > 2 and inputs[2] is not None), x.dtype)
        ]

    def _out_shape(self, xs: tuple[int, ...], given: bool) -> tuple[int, ...]:
        if given:
            shape = self.constant_inputs.get(2)
            if shape is None:
                raise self.error("input 2 (output_shape) must be a constant (a weight)")
            shape = tuple(int(v) for v in np.asarray(shape).reshape(-1))
            if len(shape) != len(xs) or shape[:2] != xs[:2] or min(shape) < 1:
                raise self.error(
                    f"output_shape {list(shape)} must be [N, C, *spatial] with X's "
                    f"N and C {fmt_shape(xs[:2])}"
                )
            unpooled = self._out_shape(xs, False)
            if any(n < u for n, u in zip(shape, unpooled)):
                raise self.error(
                    f"output_shape {list(shape)} is smaller than the unpooled shape "
                    f"{fmt_shape(unpooled)} that the indices address"
                )
            return shape
        nd = len(xs) - 2
        strides, _, pads = self._window_params(nd)
        spatial = tuple(
            (n - 1) * s + k - pads[d] - pads[d + nd]
            for d, (n, s, k) in enumerate(zip(xs[2:], strides, self.kernel))
        )
        if min(spatial) < 1:
            raise self.error(f"input X {fmt_shape(xs)} gives an empty output")
        return xs[:2] + spatial

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x, indices = inputs[0], inputs[1]
        # Indices address the unpooled shape that the attributes give (MaxPool's input); an
        # ``output_shape`` larger than it only pads each dimension at its end (as ONNX's
        # reference does).
        y = np.zeros(self._out_shape(x.shape, False), x.dtype)
        flat = indices.reshape(-1)
        if flat.size and (flat.min() < 0 or flat.max() >= y.size):
            raise self.error(
                f"indices I must lie in [0, {y.size}) for output {fmt_shape(y.shape)}, "
                f"found {int(flat.min())}..{int(flat.max())}"
            )
        y.reshape(-1)[flat] = x.reshape(-1)
        if len(inputs) > 2 and inputs[2] is not None:
            padded = np.zeros(self._out_shape(x.shape, True), x.dtype)
            padded[tuple(slice(0, n) for n in y.shape)] = y
            y = padded
        return [y]
