"""Convolution: ONNX Conv (N-d, grouped, dilated, padded; im2col + one matmul)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from . import _kernels
from .base import FLOAT_DTYPES, Attr, Op, TensorSpec, fmt_shape, register

__all__ = ["AUTO_PADS", "Conv", "WindowOp"]

AUTO_PADS = ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER")

_PLAN_CACHE_SIZE = 32


class WindowOp(Op):
    """Shared attribute handling of the sliding-window ops (Conv, MaxPool, AveragePool):
    ``auto_pad``, ``kernel_shape``, ``strides``, ``dilations``, ``pads``.

    List attributes are checked once in ``_setup`` (values and mutual lengths); their defaults
    depend on the spatial rank and are filled in by :meth:`_window_params`.
    """

    def _setup(self) -> None:
        a = self.attrs
        if a["auto_pad"] not in AUTO_PADS:
            raise self.error(
                f"attribute 'auto_pad' must be one of {', '.join(AUTO_PADS)}, got {a['auto_pad']!r}"
            )
        self.auto_pad: str = a["auto_pad"]
        ranks = {}
        for name, minimum in (("kernel_shape", 1), ("strides", 1), ("dilations", 1), ("pads", 0)):
            values = a.get(name)
            if values is None:
                continue
            bad = [v for v in values if v < minimum]
            if bad:
                word = "positive" if minimum == 1 else "non-negative"
                raise self.error(f"attribute '{name}' must be {word}, got {list(values)}")
            if name == "pads":
                if len(values) % 2:
                    raise self.error(
                        f"attribute 'pads' must have 2 values per spatial dim, got {list(values)}"
                    )
                ranks[name] = len(values) // 2
            else:
                ranks[name] = len(values)
        if len(set(ranks.values())) > 1:
            detail = ", ".join(f"{k} has {v}" for k, v in ranks.items())
            raise self.error(f"attributes disagree on the number of spatial dims ({detail})")
        if 0 in ranks.values():
            raise self.error("window attributes must describe at least one spatial dim")
        self.spatial_rank: int | None = next(iter(ranks.values()), None)
        self._plans: dict[Any, Any] = {}

    def _window_params(self, nd: int) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """(strides, dilations, pads) for ``nd`` spatial dims, defaults filled in."""
        if self.spatial_rank is not None and self.spatial_rank != nd:
            raise self.error(
                f"attributes describe {self.spatial_rank} spatial dim(s) but the input has {nd}"
            )
        a = self.attrs
        strides = a["strides"] or (1,) * nd
        dilations = a.get("dilations") or (1,) * nd
        pads = a["pads"] or (0,) * (2 * nd)
        return tuple(strides), tuple(dilations), tuple(pads)

    def _cache(self, key: Any, value: Any) -> Any:
        if len(self._plans) >= _PLAN_CACHE_SIZE:
            self._plans.clear()
        self._plans[key] = value
        return value


@register
class Conv(WindowOp):
    """Conv(X, W, B?): X (N, C, *S), W (M, C/group, *K), B (M,). 1-D, 2-D and 3-D (any N-d)."""

    op_type = "Conv"
    attributes = {
        "auto_pad": Attr("string", "NOTSET"),
        "dilations": Attr("ints", None),
        "group": Attr("int", 1),
        "kernel_shape": Attr("ints", None),
        "pads": Attr("ints", None),
        "strides": Attr("ints", None),
    }
    num_inputs = (2, 3)

    def _setup(self) -> None:
        super()._setup()
        self.group = int(self.attrs["group"])
        if self.group < 1:
            raise self.error(f"attribute 'group' must be positive, got {self.group}")

    def _plan(
        self, xs: tuple[int, ...], ws: tuple[int, ...], bs: tuple[int, ...] | None, dtype: np.dtype
    ) -> _kernels.ConvPlan:
        """Validate the shapes and plan the kernel (cached per input/weight shapes and dtype)."""
        if len(xs) < 3:
            raise self.error(f"input X must have rank >= 3 (N, C, *spatial), got {fmt_shape(xs)}")
        if len(ws) != len(xs):
            raise self.error(
                f"weight W {fmt_shape(ws)} must have the rank of input X {fmt_shape(xs)}"
            )
        nd = len(xs) - 2
        strides, dilations, pads = self._window_params(nd)
        g = self.group
        m, cg = ws[0], ws[1]
        if xs[1] != cg * g:
            raise self.error(
                f"input X {fmt_shape(xs)} has {xs[1]} channels but weight W {fmt_shape(ws)} "
                f"with group={g} expects {cg * g}"
            )
        if m % g:
            raise self.error(
                f"weight W {fmt_shape(ws)}: {m} output channels are not divisible by group={g}"
            )
        kernel = tuple(ws[2:])
        ks = self.attrs["kernel_shape"]
        if ks is not None and tuple(ks) != kernel:
            raise self.error(
                f"attribute kernel_shape {list(ks)} does not match weight W {fmt_shape(ws)}"
            )
        if bs is not None and bs != (m,):
            raise self.error(
                f"bias B {fmt_shape(bs)} must have shape [{m}] for weight W {fmt_shape(ws)}"
            )
        try:
            geo = _kernels.window_geometry(xs[2:], kernel, strides, dilations, pads, self.auto_pad)
        except _kernels.KernelError as exc:
            raise self.error(f"input X {fmt_shape(xs)}, weight W {fmt_shape(ws)}: {exc}") from None
        itemsize = _kernels.compute_dtype(dtype).itemsize
        return self._cache(
            (xs, ws, bs, dtype),
            _kernels.conv_plan(xs, ws, itemsize, strides, dilations, geo, g),
        )

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        x, w = inputs[0], inputs[1]
        b = inputs[2] if len(inputs) > 2 else None
        assert x is not None and w is not None
        self._check_dtype(x, FLOAT_DTYPES)
        self._check_same_dtype(inputs)
        plan = self._plan(x.shape, w.shape, None if b is None else b.shape, x.dtype)
        return [TensorSpec((x.shape[0], w.shape[0]) + plan.out, x.dtype)]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x, w = inputs[0], inputs[1]
        b = inputs[2] if len(inputs) > 2 else None
        key = (x.shape, w.shape, None if b is None else b.shape, x.dtype)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plan(*key)
        return [_kernels.conv(x, w, b, plan)]
