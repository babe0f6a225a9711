"""Normalisation: Softmax and LogSoftmax (opset 13: along one axis), BatchNormalization
(inference form)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from . import _kernels
from .base import FLOAT_DTYPES, Attr, Op, TensorSpec, fmt_shape, register

__all__ = ["BatchNormalization", "LogSoftmax", "Softmax"]


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

    def _setup(self) -> None:
        if self.attrs["training_mode"] != 0:
            raise self.error("training_mode=1 is not supported (inference runtime)")
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
