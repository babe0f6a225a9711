"""Pooling: MaxPool (with optional Indices), AveragePool, GlobalAveragePool."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import _kernels
from .base import FLOAT_DTYPES, Attr, Op, TensorSpec, fmt_shape, register
from .conv import WindowOp

__all__ = ["AveragePool", "GlobalAveragePool", "MaxPool"]


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
        plan = self._plans.get(x.shape)
        if plan is None:
            plan = self._plan(x.shape)
        if self.output_count == 2:
            values, indices = _kernels.max_pool_with_indices(x, plan, self.storage_order)
            return [values, indices]
        return [_kernels.max_pool(x, plan)]


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
        plan = self._plans.get(x.shape)
        if plan is None:
            plan = self._plan(x.shape)
        return [_kernels.average_pool(x, plan, self.count_include_pad)]


@register
class GlobalAveragePool(Op):
    """Mean over all spatial dims, kept as size-1 dims: (N, C, *S) -> (N, C, 1, ...)."""

    op_type = "GlobalAveragePool"
    num_inputs = (1, 1)

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        x = inputs[0]
        assert x is not None
        self._check_dtype(x, FLOAT_DTYPES)
        if x.rank < 3:
            raise self.error(
                f"input X must have rank >= 3 (N, C, *spatial), got {fmt_shape(x.shape)}"
            )
        if any(d == 0 for d in x.shape[2:]):
            raise self.error(f"input X {fmt_shape(x.shape)} has an empty spatial dim")
        return [TensorSpec(x.shape[:2] + (1,) * (x.rank - 2), x.dtype)]

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
