"""Normalisation: Softmax and LogSoftmax (opset 13: along one axis), BatchNormalization
(inference form), LayerNormalization, RMSNormalization, InstanceNormalization,
GroupNormalization, LpNormalization, MeanVarianceNormalization and LRN."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from . import _kernels
from ._static import norm_axes, norm_axis
from .base import FLOAT_DTYPES, Attr, Op, TensorSpec, fmt_shape, register

__all__ = [
    "LRN",
    "BatchNormalization",
    "GroupNormalization",
    "InstanceNormalization",
    "LayerNormalization",
    "LogSoftmax",
    "LpNormalization",
    "MeanVarianceNormalization",
    "RMSNormalization",
    "Softmax",
]


class _SoftmaxBase(Op):
    attributes = {"axis": Attr("int", -1)}
    num_inputs = (1, 1)

    def _setup(self) -> None:
        self.axis = int(self.attrs["axis"])

    def _axis(self, rank: int, shape: tuple[int, ...]) -> int:
        axis = self.axis + rank if self.axis < 0 else self.axis
        if not 0 <= axis < rank:
            raise self.error(f"axis {self.axis} is out of range for input {fmt_shape(shape)}")
        return axis

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        x = inputs[0]
        assert x is not None
        self._check_dtype(x, FLOAT_DTYPES)
        self._axis(x.rank, x.shape)
        return [TensorSpec(x.shape, x.dtype)]


@register
class Softmax(_SoftmaxBase):
    op_type = "Softmax"

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x = inputs[0]
        return [_kernels.softmax(x, self._axis(x.ndim, x.shape))]


@register
class LogSoftmax(_SoftmaxBase):
    op_type = "LogSoftmax"

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x = inputs[0]
        return [_kernels.log_softmax(x, self._axis(x.ndim, x.shape))]


@register
class BatchNormalization(Op):
    """Inference BatchNormalization: ``Y = (X - mean) / sqrt(var + epsilon) * scale + B`` with
    per-channel (axis 1) parameters. ``momentum`` is accepted and unused; ``training_mode=1`` is
    refused (and so are the training-only outputs)."""

    op_type = "BatchNormalization"
    attributes = {
        "epsilon": Attr("float", 1e-5),
        "momentum": Attr("float", 0.9),
        "training_mode": Attr("int", 0),
    }
    num_inputs = (5, 5)
    num_outputs = (1, 5)  # the outputs after Y exist only in training mode: refused

    def _setup(self) -> None:
        if self.attrs["training_mode"] != 0:
            raise self.error("training_mode=1 is not supported (inference runtime)")
        if self.output_count > 1:
            raise self.error(
                f"uses {self.output_count} outputs, but the outputs after Y "
                "(running or saved mean and variance) exist only in training "
                "mode, which this inference runtime does not support"
            )
        self.epsilon = float(self.attrs["epsilon"])
        if not (math.isfinite(self.epsilon) and self.epsilon >= 0):
            raise self.error(
                f"attribute 'epsilon' must be a non-negative number, got {self.epsilon}"
            )

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        x = inputs[0]
        assert x is not None
        names = ("X", "scale", "B", "input_mean", "input_var")
        for name, s in zip(names, inputs):
            assert s is not None
            self._check_dtype(s, FLOAT_DTYPES, name)
        if x.rank < 2:
            raise self.error(f"input X must have rank >= 2 (N, C, ...), got {fmt_shape(x.shape)}")
        c = x.shape[1]
        for name, s in zip(names[1:], inputs[1:]):
            assert s is not None
            if s.shape != (c,):
                raise self.error(
                    f"{name} {fmt_shape(s.shape)} must have shape [{c}] "
                    f"for input X {fmt_shape(x.shape)}"
                )
        return [TensorSpec(x.shape, x.dtype)]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x, scale, bias, mean, var = inputs[:5]
        cdt = _kernels.compute_dtype(x.dtype)
        a = scale.astype(cdt, copy=False) / np.sqrt(var.astype(cdt, copy=False) + self.epsilon)
        b = bias.astype(cdt, copy=False) - mean.astype(cdt, copy=False) * a
        bshape = (-1,) + (1,) * (x.ndim - 2)
        y = x * a.reshape(bshape)
        y += b.reshape(bshape)
        return [y if y.dtype == x.dtype else y.astype(x.dtype)]


# --------------------------------------------------------------------------------------------
# normalisations over axes: statistics in float32 (float64 for float64 inputs), as ONNX's
# stash_type=1 asks


def _stats_dtype(dtype: np.dtype) -> np.dtype:
    return np.dtype(np.float64) if dtype == np.float64 else np.dtype(np.float32)


def _check_epsilon(op: Op) -> float:
    epsilon = float(op.attrs["epsilon"])
    if not (math.isfinite(epsilon) and epsilon >= 0):
        raise op.error(f"attribute 'epsilon' must be a non-negative number, got {epsilon}")
    return epsilon


def _broadcasts_to(spec: TensorSpec, shape: tuple[int, ...]) -> bool:
    """Unidirectional (ONNX) broadcasting of ``spec`` to ``shape``."""
    return spec.rank <= len(shape) and all(
        d in (1, want) for d, want in zip(spec.shape[::-1], shape[::-1])
    )


class _AxisNormalization(Op):
    """LayerNormalization and RMSNormalization: statistics over the axes from ``axis`` to the
    end; scale (and bias) broadcast to those axes."""

    attributes = {
        "axis": Attr("int", -1),
        "epsilon": Attr("float", 1e-5),
        "stash_type": Attr("int", 1),
    }
    with_bias = True

    def _setup(self) -> None:
        self.epsilon = _check_epsilon(self)
        if self.attrs["stash_type"] not in (1, 11):
            raise self.error(
                f"attribute 'stash_type' must be 1 (float) or 11 (double), got "
                f"{self.attrs['stash_type']}"
            )

    def _axis(self, rank: int) -> int:
        return norm_axis(self, self.attrs["axis"], rank)

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        x = inputs[0]
        assert x is not None
        self._check_dtype(x, FLOAT_DTYPES)
        self._check_same_dtype(inputs)
        axis = self._axis(x.rank)
        for i, s in enumerate(inputs[1:], 1):
            if s is not None and not _broadcasts_to(s, x.shape[axis:]):
                raise self.error(
                    f"input {i} {fmt_shape(s.shape)} does not broadcast to the "
                    f"normalised dims {fmt_shape(x.shape[axis:])}"
                )
        stats = TensorSpec(x.shape[:axis] + (1,) * (x.rank - axis), np.float32)
        return [TensorSpec(x.shape, x.dtype), stats, stats][: self.output_count]

    def keeps_rows(self, batched: Sequence[bool], specs: Sequence[TensorSpec | None]) -> bool:
        return not any(batched[1:]) and self._axis(specs[0].rank) != 0


@register
class LayerNormalization(_AxisNormalization):
    """LayerNormalization(X, Scale, B): ``(X - mean) / sqrt(var + epsilon) * Scale + B`` over
    the axes from ``axis``; optional outputs Mean and InvStdDev (float32)."""

    op_type = "LayerNormalization"
    num_inputs = (2, 3)
    num_outputs = (1, 3)

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x, scale = inputs[0], inputs[1]
        bias = inputs[2] if len(inputs) > 2 else None
        axes = tuple(range(self._axis(x.ndim), x.ndim))
        xs = x.astype(_stats_dtype(x.dtype), copy=False)
        mean = xs.mean(axis=axes, keepdims=True)
        centred = xs - mean
        inv_std = 1.0 / np.sqrt((centred * centred).mean(axis=axes, keepdims=True) + self.epsilon)
        y = centred * inv_std * scale
        if bias is not None:
            y = y + bias
        outs = [
            y.astype(x.dtype, copy=False),
            mean.astype(np.float32, copy=False),
            inv_std.astype(np.float32, copy=False),
        ]
        return outs[: self.output_count]


@register
class RMSNormalization(_AxisNormalization):
    """RMSNormalization(X, scale): ``X / sqrt(mean(X²) + epsilon) * scale`` over the axes from
    ``axis`` (opset 23)."""

    op_type = "RMSNormalization"
    num_inputs = (2, 2)

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x, scale = inputs[0], inputs[1]
        axes = tuple(range(self._axis(x.ndim), x.ndim))
        xs = x.astype(_stats_dtype(x.dtype), copy=False)
        rms = np.sqrt((xs * xs).mean(axis=axes, keepdims=True) + self.epsilon)
        return [(xs / rms * scale).astype(x.dtype, copy=False)]


class _ChannelNormalization(Op):
    def keeps_rows(self, batched: Sequence[bool], specs: Sequence[TensorSpec | None]) -> bool:
        return not any(batched[1:])

    def _normalise(
        self, x: np.ndarray, groups: int, scale: np.ndarray, bias: np.ndarray, per_group: bool
    ) -> np.ndarray:
        n, c = x.shape[:2]
        xs = x.astype(_stats_dtype(x.dtype), copy=False).reshape(n, groups, -1)
        mean = xs.mean(axis=-1, keepdims=True)
        centred = xs - mean
        var = (centred * centred).mean(axis=-1, keepdims=True)
        y = centred / np.sqrt(var + self.epsilon)
        if per_group:
            y = y * scale.reshape(1, groups, 1) + bias.reshape(1, groups, 1)
            y = y.reshape(x.shape)
        else:
            bshape = (1, c) + (1,) * (x.ndim - 2)
            y = y.reshape(x.shape) * scale.reshape(bshape) + bias.reshape(bshape)
        return y.astype(x.dtype, copy=False)


@register
class InstanceNormalization(_ChannelNormalization):
    """InstanceNormalization(input, scale, B): each (sample, channel) normalised over its
    spatial dims, then ``* scale[c] + B[c]``."""

    op_type = "InstanceNormalization"
    attributes = {"epsilon": Attr("float", 1e-5)}
    num_inputs = (3, 3)

    def _setup(self) -> None:
        self.epsilon = _check_epsilon(self)

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        x = inputs[0]
        assert x is not None
        self._check_dtype(x, FLOAT_DTYPES)
        self._check_same_dtype(inputs)
        if x.rank < 3:
            raise self.error(f"input must have rank >= 3 (N, C, D1, ...), got {fmt_shape(x.shape)}")
        for name, s in zip(("scale", "B"), inputs[1:]):
            if s.shape != (x.shape[1],):
                raise self.error(
                    f"{name} {fmt_shape(s.shape)} must have shape "
                    f"[{x.shape[1]}] for input {fmt_shape(x.shape)}"
                )
        return [TensorSpec(x.shape, x.dtype)]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x, scale, bias = inputs[0], inputs[1], inputs[2]
        return [self._normalise(x, x.shape[1], scale, bias, per_group=False)]


@register
class GroupNormalization(_ChannelNormalization):
    """GroupNormalization(X, scale, bias): channels split into ``num_groups`` groups, each
    normalised over its channels and spatial dims; ``scale``/``bias`` per channel (opset 21)
    or per group (opset 18)."""

    op_type = "GroupNormalization"
    attributes = {
        "epsilon": Attr("float", 1e-5),
        "num_groups": Attr("int"),
        "stash_type": Attr("int", 1),
    }
    num_inputs = (3, 3)

    def _setup(self) -> None:
        self.epsilon = _check_epsilon(self)
        self.groups = int(self.attrs["num_groups"])
        if self.groups < 1:
            raise self.error(f"attribute 'num_groups' must be >= 1, got {self.groups}")

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        x = inputs[0]
        assert x is not None
        self._check_dtype(x, FLOAT_DTYPES)
        self._check_same_dtype(inputs)
        if x.rank < 2 or x.shape[1] % self.groups:
            raise self.error(
                f"input {fmt_shape(x.shape)} must have a channel count divisible "
                f"by num_groups {self.groups}"
            )
        for name, s in zip(("scale", "bias"), inputs[1:]):
            if s.shape not in ((x.shape[1],), (self.groups,)):
                raise self.error(
                    f"{name} {fmt_shape(s.shape)} must have shape "
                    f"[{x.shape[1]}] (channels) or [{self.groups}] (groups)"
                )
        return [TensorSpec(x.shape, x.dtype)]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x, scale, bias = inputs[0], inputs[1], inputs[2]
        per_group = scale.shape[0] == self.groups and x.shape[1] != self.groups
        return [self._normalise(x, self.groups, scale, bias, per_group)]


@register
class LpNormalization(Op):
    """LpNormalization(input, axis, p): ``x / ||x||_p`` along ``axis``, p 1 or 2; where the
    norm is zero the output is zero."""

    op_type = "LpNormalization"
    attributes = {"axis": Attr("int", -1), "p": Attr("int", 2)}
    num_inputs = (1, 1)

    def _setup(self) -> None:
        if self.attrs["p"] not in (1, 2):
            raise self.error(f"attribute 'p' must be 1 or 2, got {self.attrs['p']}")

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        x = inputs[0]
        assert x is not None
        self._check_dtype(x, FLOAT_DTYPES)
        norm_axis(self, self.attrs["axis"], x.rank)
        return [TensorSpec(x.shape, x.dtype)]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x = inputs[0]
        axis = norm_axis(self, self.attrs["axis"], x.ndim)
        xs = x.astype(_stats_dtype(x.dtype), copy=False)
        if self.attrs["p"] == 1:
            norm = np.abs(xs).sum(axis=axis, keepdims=True)
        else:
            norm = np.sqrt((xs * xs).sum(axis=axis, keepdims=True))
        with np.errstate(divide="ignore", invalid="ignore"):
            y = np.where(norm == 0, 0, xs / norm)
        return [y.astype(x.dtype, copy=False)]

    def keeps_rows(self, batched: Sequence[bool], specs: Sequence[TensorSpec | None]) -> bool:
        return norm_axis(self, self.attrs["axis"], specs[0].rank) != 0


@register
class MeanVarianceNormalization(Op):
    """MeanVarianceNormalization(X, axes=[0, 2, 3]): ``(X - mean) / (sqrt(var) + 1e-9)`` over
    ``axes`` (ONNX's function body)."""

    op_type = "MeanVarianceNormalization"
    attributes = {"axes": Attr("ints", (0, 2, 3))}
    num_inputs = (1, 1)

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        x = inputs[0]
        assert x is not None
        self._check_dtype(x, FLOAT_DTYPES)
        norm_axes(self, self.attrs["axes"], x.rank)
        return [TensorSpec(x.shape, x.dtype)]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x = inputs[0]
        axes = norm_axes(self, self.attrs["axes"], x.ndim)
        xs = x.astype(_stats_dtype(x.dtype), copy=False)
        mean = xs.mean(axis=axes, keepdims=True)
        var = (xs * xs).mean(axis=axes, keepdims=True) - mean * mean
        y = (xs - mean) / (np.sqrt(np.maximum(var, 0)) + 1e-9)
        return [y.astype(x.dtype, copy=False)]

    def keeps_rows(self, batched: Sequence[bool], specs: Sequence[TensorSpec | None]) -> bool:
        return 0 not in norm_axes(self, self.attrs["axes"], specs[0].rank)


@register
class LRN(Op):
    """LRN (local response normalisation across channels): ``x / (bias + alpha / size *
    sum(x²))^beta``, the sum over channels ``c - floor((size-1)/2) .. c + ceil((size-1)/2)``."""

    op_type = "LRN"
    attributes = {
        "size": Attr("int"),
        "alpha": Attr("float", 1e-4),
        "beta": Attr("float", 0.75),
        "bias": Attr("float", 1.0),
    }
    num_inputs = (1, 1)

    def _setup(self) -> None:
        if self.attrs["size"] < 1:
            raise self.error(f"attribute 'size' must be >= 1, got {self.attrs['size']}")

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        x = inputs[0]
        assert x is not None
        self._check_dtype(x, FLOAT_DTYPES)
        if x.rank < 3:
            raise self.error(f"input must have rank >= 3 (N, C, D1, ...), got {fmt_shape(x.shape)}")
        return [TensorSpec(x.shape, x.dtype)]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x = inputs[0]
        size = self.attrs["size"]
        before, after = (size - 1) // 2, size - 1 - (size - 1) // 2
        xs = x.astype(_stats_dtype(x.dtype), copy=False)
        sq = xs * xs
        # running sum over channels: cumulative sum with a zero in front
        c = x.shape[1]
        cum = np.concatenate([np.zeros_like(sq[:, :1]), np.cumsum(sq, axis=1)], axis=1)
        hi = np.minimum(np.arange(c) + after + 1, c)
        lo = np.maximum(np.arange(c) - before, 0)
        total = np.take(cum, hi, axis=1) - np.take(cum, lo, axis=1)
        a = self.attrs
        y = xs / (a["bias"] + a["alpha"] / size * total) ** a["beta"]
        return [y.astype(x.dtype, copy=False)]
