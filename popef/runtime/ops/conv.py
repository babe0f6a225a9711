"""Convolution: ONNX Conv (N-d, grouped, dilated, padded; im2col + one matmul) and
ConvTranspose (one matmul, then col2im: each kernel tap added into a strided output slice)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import _kernels
from .base import FLOAT_DTYPES, Attr, Op, TensorSpec, fmt_shape, register

__all__ = ["AUTO_PADS", "Conv", "ConvTranspose", "WindowOp"]

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


class _ConvolutionOp(WindowOp):
    """What Conv and ConvTranspose share: inputs (X, W, B?), the ``group`` attribute, the
    operand checks, shape inference and the plan cache lookup; subclasses plan the kernel."""

    num_inputs = (2, 3)

    def _setup(self) -> None:
        super()._setup()
        self.group = int(self.attrs["group"])
        if self.group < 1:
            raise self.error(f"attribute 'group' must be positive, got {self.group}")

    def _plan(
        self, xs: tuple[int, ...], ws: tuple[int, ...], bs: tuple[int, ...] | None, dtype: np.dtype
    ) -> Any:
        raise NotImplementedError

    def _out_channels(self, plan: Any, ws: tuple[int, ...]) -> int:
        """Number of output channels (dim 1 of Y) for weight shape ``ws``."""
        raise NotImplementedError

    def _check_ranks(self, xs: tuple[int, ...], ws: tuple[int, ...]) -> int:
        """Check that X is (N, C, *spatial) and W has its rank; return the spatial rank."""
        if len(xs) < 3:
            raise self.error(f"input X must have rank >= 3 (N, C, *spatial), got {fmt_shape(xs)}")
        if len(ws) != len(xs):
            raise self.error(
                f"weight W {fmt_shape(ws)} must have the rank of input X {fmt_shape(xs)}"
            )
        return len(xs) - 2

    def _check_kernel_shape(self, ws: tuple[int, ...]) -> tuple[int, ...]:
        """The kernel's spatial shape (W's dims 2..), checked against ``kernel_shape``."""
        kernel = tuple(ws[2:])
        ks = self.attrs["kernel_shape"]
        if ks is not None and tuple(ks) != kernel:
            raise self.error(
                f"attribute kernel_shape {list(ks)} does not match weight W {fmt_shape(ws)}"
            )
        return kernel

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        x, w = inputs[0], inputs[1]
        b = inputs[2] if len(inputs) > 2 else None
        assert x is not None and w is not None
        self._check_dtype(x, FLOAT_DTYPES)
        self._check_same_dtype(inputs)
        plan = self._plan(x.shape, w.shape, None if b is None else b.shape, x.dtype)
        return [TensorSpec((x.shape[0], self._out_channels(plan, w.shape)) + plan.out, x.dtype)]

    def _planned(
        self, inputs: Sequence[np.ndarray | None]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, Any]:
        """(X, W, B, plan) for a run: the cached plan, or a fresh one when the shapes are new."""
        x, w = inputs[0], inputs[1]
        b = inputs[2] if len(inputs) > 2 else None
        assert x is not None and w is not None
        key = (x.shape, w.shape, None if b is None else b.shape, x.dtype)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plan(*key)
        return x, w, b, plan


@register
class Conv(_ConvolutionOp):
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

    def _plan(
        self, xs: tuple[int, ...], ws: tuple[int, ...], bs: tuple[int, ...] | None, dtype: np.dtype
    ) -> _kernels.ConvPlan:
        """Validate the shapes and plan the kernel (cached per input/weight shapes and dtype)."""
        nd = self._check_ranks(xs, ws)
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
        kernel = self._check_kernel_shape(ws)
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

    def _out_channels(self, plan: _kernels.ConvPlan, ws: tuple[int, ...]) -> int:
        return ws[0]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x, w, b, plan = self._planned(inputs)
        return [_kernels.conv(x, w, b, plan)]

    def with_max_pool(
        self, window: tuple[int, ...], relu: bool
    ) -> Callable[[Sequence[np.ndarray | None]], list[np.ndarray]] | None:
        """A kernel computing ``MaxPool(Conv(...))`` (then ``Relu``) in one pass, for the
        ``cpu`` executor, when this is a 2-D convolution and ``window`` a non-overlapping
        2-D pooling window; None otherwise. It takes this node's inputs and returns the last
        fused node's output. Group 1 convolutions run channels last
        (:func:`_kernels.conv_max_pool_channels_last`), grouped ones batch innermost
        (:func:`_kernels.conv_max_pool`)."""
        if len(window) != 2 or self.spatial_rank not in (None, 2):
            return None
        if self.group == 1:
            return _ChannelsLastConvPool(self, (window[0], window[1]), relu)
        plans: dict[Any, _kernels.ConvPlan] = {}

        def run(inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
            x, w = inputs[0], inputs[1]
            b = inputs[2] if len(inputs) > 2 else None
            key = (x.shape, w.shape, x.dtype)
            plan = plans.get(key)
            if plan is None:
                if len(plans) >= _PLAN_CACHE_SIZE:
                    plans.clear()
                checked = self._plan(x.shape, w.shape, None if b is None else b.shape, x.dtype)
                strides, dilations, _ = self._window_params(len(x.shape) - 2)
                geo = _kernels.Geometry(checked.begins, checked.ends, (0, 0), checked.out)
                plan = plans[key] = _kernels.conv_plan(
                    x.shape,
                    w.shape,
                    _kernels.compute_dtype(x.dtype).itemsize,
                    strides,
                    dilations,
                    geo,
                    self.group,
                    plain=True,
                )
            return [_kernels.conv_max_pool(x, w, b, plan, window, relu)]  # type: ignore[arg-type]

        return run


_UNPLANNED: Any = object()  # no plan cached yet (None is a cached "cannot fuse")


class _ChannelsLastConvPool:
    """The fused Conv -> MaxPool (-> Relu) kernel of a group 1, 2-D ``Conv``: plans per input
    shape, the weights transposed once per weight array, im2col buffers kept per thread."""

    #: its output is an (N, C, H, W) view of a channels-last array (the cpu executor fuses
    #: a Flatten -> Gemm that reads it accordingly)
    channels_last = True

    def __init__(self, conv: Conv, window: tuple[int, int], relu: bool) -> None:
        self.conv = conv
        self.window = window
        self.relu = relu
        self.plans: dict[Any, _kernels.ChannelsLastPlan | None] = {}
        # (weights, bias, their GEMM operands): persistent tensors, prepared once
        self.weights: tuple[Any, Any, tuple[np.ndarray, np.ndarray | None]] | None = None
        self.local = threading.local()

    def __call__(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x, w = inputs[0], inputs[1]
        b = inputs[2] if len(inputs) > 2 else None
        assert x is not None and w is not None
        key = (x.shape, w.shape, x.dtype)
        plan = self.plans.get(key, _UNPLANNED)  # one lookup: another thread may clear it
        if plan is _UNPLANNED:
            plan = self._plan(x, w, b)
        if plan is None:  # shape inference refuses such a model at load
            raise self.conv.error(
                f"the pooling window {list(self.window)} is larger than the "
                f"convolution's output for input X {fmt_shape(x.shape)}"
            )
        cached = self.weights
        if cached is not None and cached[0] is w and cached[1] is b:
            w_t, bias = cached[2]
        else:  # the weights are persistent tensors: transposed once
            w_t, bias = _kernels.channels_last_weights(w, b, _kernels.compute_dtype(x.dtype))
            self.weights = (w, b, (w_t, bias))
        scratch = self.local.__dict__
        return [_kernels.conv_max_pool_channels_last(x, w_t, bias, plan, self.relu, scratch)]

    def _plan(
        self, x: np.ndarray, w: np.ndarray, b: np.ndarray | None
    ) -> _kernels.ChannelsLastPlan | None:
        conv = self.conv
        checked = conv._plan(x.shape, w.shape, None if b is None else b.shape, x.dtype)
        strides, dilations, _ = conv._window_params(len(x.shape) - 2)
        geo = _kernels.Geometry(checked.begins, checked.ends, (0, 0), checked.out)
        plan = _kernels.channels_last_plan(
            x.shape,
            w.shape,
            _kernels.compute_dtype(x.dtype).itemsize,
            strides,
            dilations,
            geo,
            self.window,
        )
        if len(self.plans) >= _PLAN_CACHE_SIZE:
            self.plans.clear()
        self.plans[(x.shape, w.shape, x.dtype)] = plan
        return plan


@register
class ConvTranspose(_ConvolutionOp):
    """ConvTranspose(X, W, B?): X (N, C, *S), W (C, M/group, *K), B (M,) -> (N, M, *out).

    ``out = strides * (S - 1) + output_padding + (K - 1) * dilations + 1 - pads``; with
    ``output_shape`` (or ``auto_pad`` SAME_*, which asks for ``S * strides``) the pads are
    derived from the requested size: SAME_UPPER puts the odd one at the end, NOTSET and
    SAME_LOWER at the beginning (the ONNX rule).
    """

    op_type = "ConvTranspose"
    attributes = {
        "auto_pad": Attr("string", "NOTSET"),
        "dilations": Attr("ints", None),
        "group": Attr("int", 1),
        "kernel_shape": Attr("ints", None),
        "output_padding": Attr("ints", None),
        "output_shape": Attr("ints", None),
        "pads": Attr("ints", None),
        "strides": Attr("ints", None),
    }

    def _setup(self) -> None:
        super()._setup()
        for name in ("output_padding", "output_shape"):
            values = self.attrs[name]
            if values is not None and any(v < 0 for v in values):
                raise self.error(f"attribute '{name}' must be non-negative, got {list(values)}")

    def _plan(
        self, xs: tuple[int, ...], ws: tuple[int, ...], bs: tuple[int, ...] | None, dtype: np.dtype
    ) -> _kernels.ConvTransposePlan:
        nd = self._check_ranks(xs, ws)
        strides, dilations, pads = self._window_params(nd)
        g = self.group
        if ws[0] != xs[1] or xs[1] % g:
            raise self.error(
                f"input X {fmt_shape(xs)} has {xs[1]} channels but weight W {fmt_shape(ws)} "
                f"with group={g} expects {ws[0]} (a multiple of {g})"
            )
        m = ws[1] * g
        kernel = self._check_kernel_shape(ws)
        if bs is not None and bs != (m,):
            raise self.error(f"bias B {fmt_shape(bs)} must have shape [{m}] (group × W's dim 1)")
        output_padding = self.attrs["output_padding"] or (0,) * nd
        if len(output_padding) != nd:
            raise self.error(
                f"attribute 'output_padding' {list(output_padding)} must have {nd} values"
            )
        for i, (op, s, d) in enumerate(zip(output_padding, strides, dilations)):
            if op >= max(s, d):
                raise self.error(
                    f"attribute 'output_padding' {list(output_padding)} must be smaller than "
                    f"the stride or the dilation of each dim (dim {i}: stride {s}, dilation {d})"
                )
        requested = self.attrs["output_shape"]
        if requested is not None:
            requested = tuple(requested)[-nd:] if len(requested) in (nd, nd + 2) else None
            if requested is None:
                raise self.error(
                    f"attribute 'output_shape' {list(self.attrs['output_shape'])} must have "
                    f"{nd} values (one per spatial dim)"
                )
        elif self.auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            requested = tuple(n * s for n, s in zip(xs[2:], strides))
        begins, outs = [], []
        for i in range(nd):
            full = (
                strides[i] * (xs[2 + i] - 1)
                + output_padding[i]
                + (kernel[i] - 1) * dilations[i]
                + 1
            )
            if requested is not None:
                total = full - requested[i]
                small = total // 2
                begins.append(small if self.auto_pad == "SAME_UPPER" else total - small)
                outs.append(requested[i])
            else:
                b, e = (0, 0) if self.auto_pad == "VALID" else (pads[i], pads[i + nd])
                begins.append(b)
                outs.append(full - b - e)
            if outs[-1] <= 0:
                raise self.error(
                    f"input X {fmt_shape(xs)}, weight W {fmt_shape(ws)}: spatial dim {i} gives "
                    f"an empty output ({outs[-1]})"
                )
        return self._cache(
            (xs, ws, bs, dtype),
            _kernels.ConvTransposePlan(
                n=xs[0],
                g=g,
                cg=xs[1] // g,
                mg=ws[1],
                kernel=kernel,
                in_spatial=tuple(xs[2:]),
                out=tuple(outs),
                begins=tuple(begins),
                strides=tuple(strides),
                dilations=tuple(dilations),
            ),
        )

    def _out_channels(self, plan: _kernels.ConvTransposePlan, ws: tuple[int, ...]) -> int:
        return plan.g * plan.mg

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x, w, b, plan = self._planned(inputs)
        return [_kernels.conv_transpose(x, w, b, plan)]
