"""Activations beyond the basic ones of ``elementwise``: Elu, Selu, Celu, Softplus, Softsign,
HardSigmoid, HardSwish, Swish, Mish, PRelu, ThresholdedRelu, Shrink and Hardmax.

Float activations compute in the input's type (float16 through float32, see
``_kernels.compute_dtype``) and return it; overflow to inf is silent, as in ONNX.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from . import _kernels
from .base import (
    FLOAT_DTYPES,
    NUMERIC_DTYPES,
    SIGNED_INT_DTYPES,
    Attr,
    Op,
    TensorSpec,
    fmt_shape,
    register,
)

__all__ = [
    "Celu",
    "Elu",
    "HardSigmoid",
    "HardSwish",
    "Hardmax",
    "Mish",
    "PRelu",
    "Selu",
    "Shrink",
    "Softplus",
    "Softsign",
    "Swish",
    "ThresholdedRelu",
]


class _Activation(Op):
    """``Y = f(X)`` over float types; float attributes must be finite. Subclasses implement
    ``_f`` on the input in its compute dtype, under ``np.errstate(all="ignore")``."""

    num_inputs = (1, 1)
    dtypes: frozenset = FLOAT_DTYPES

    def _setup(self) -> None:
        for name, value in self.attrs.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise self.error(f"attribute '{name}' must be finite, got {value}")

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        x = inputs[0]
        assert x is not None
        self._check_dtype(x, self.dtypes)
        return [TensorSpec(x.shape, x.dtype)]

    def _f(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x = inputs[0]
        xc = x.astype(_kernels.compute_dtype(x.dtype), copy=False) if x.dtype.kind == "f" else x
        with np.errstate(all="ignore"):
            y = self._f(xc)
        return [np.asarray(y).astype(x.dtype, copy=False)]


@register
class Elu(_Activation):
    """Elu(alpha=1): X for X >= 0, alpha * (exp(X) - 1) below."""

    op_type = "Elu"
    attributes = {"alpha": Attr("float", 1.0)}

    def _f(self, x: np.ndarray) -> np.ndarray:
        return np.where(x < 0, self.attrs["alpha"] * np.expm1(np.minimum(x, 0)), x)


_SELU_ALPHA = 1.67326319217681884765625
_SELU_GAMMA = 1.05070102214813232421875


@register
class Selu(_Activation):
    """Selu(alpha, gamma): gamma * X for X > 0, gamma * alpha * (exp(X) - 1) otherwise."""

    op_type = "Selu"
    attributes = {"alpha": Attr("float", _SELU_ALPHA), "gamma": Attr("float", _SELU_GAMMA)}

    def _f(self, x: np.ndarray) -> np.ndarray:
        a, g = self.attrs["alpha"], self.attrs["gamma"]
        return np.where(x > 0, g * x, g * a * np.expm1(np.minimum(x, 0)))


@register
class Celu(_Activation):
    """Celu(alpha=1): max(0, X) + min(0, alpha * (exp(X / alpha) - 1)); alpha must not be 0."""

    op_type = "Celu"
    attributes = {"alpha": Attr("float", 1.0)}

    def _setup(self) -> None:
        super()._setup()
        if self.attrs["alpha"] == 0:
            raise self.error("attribute 'alpha' must not be 0")

    def _f(self, x: np.ndarray) -> np.ndarray:
        a = self.attrs["alpha"]
        return np.maximum(x, 0) + np.minimum(0, a * np.expm1(np.minimum(x, 0) / a))


@register
class Softplus(_Activation):
    """Softplus: log(1 + exp(X)), without overflow for large X."""

    op_type = "Softplus"

    def _f(self, x: np.ndarray) -> np.ndarray:
        return np.logaddexp(x.dtype.type(0), x)


@register
class Softsign(_Activation):
    """Softsign: X / (1 + |X|)."""

    op_type = "Softsign"

    def _f(self, x: np.ndarray) -> np.ndarray:
        return x / (1 + np.abs(x))


@register
class HardSigmoid(_Activation):
    """HardSigmoid(alpha=0.2, beta=0.5): max(0, min(1, alpha * X + beta))."""

    op_type = "HardSigmoid"
    attributes = {"alpha": Attr("float", 0.2), "beta": Attr("float", 0.5)}

    def _f(self, x: np.ndarray) -> np.ndarray:
        a, b = x.dtype.type(self.attrs["alpha"]), x.dtype.type(self.attrs["beta"])
        return np.clip(a * x + b, 0, 1)


@register
class HardSwish(_Activation):
    """HardSwish: X * max(0, min(1, X / 6 + 1 / 2))."""

    op_type = "HardSwish"

    def _f(self, x: np.ndarray) -> np.ndarray:
        return x * np.clip(x * x.dtype.type(1 / 6) + x.dtype.type(0.5), 0, 1)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(x))
    pos = 1 / (1 + e)
    return np.where(x >= 0, pos, e * pos)


@register
class Swish(_Activation):
    """Swish(alpha=1): X * sigmoid(alpha * X)."""

    op_type = "Swish"
    attributes = {"alpha": Attr("float", 1.0)}

    def _f(self, x: np.ndarray) -> np.ndarray:
        return x * _sigmoid(x * x.dtype.type(self.attrs["alpha"]))


@register
class Mish(_Activation):
    """Mish: X * tanh(softplus(X))."""

    op_type = "Mish"

    def _f(self, x: np.ndarray) -> np.ndarray:
        return x * np.tanh(np.logaddexp(x.dtype.type(0), x))


@register
class ThresholdedRelu(_Activation):
    """ThresholdedRelu(alpha=1): X where X > alpha, else 0."""

    op_type = "ThresholdedRelu"
    attributes = {"alpha": Attr("float", 1.0)}

    def _f(self, x: np.ndarray) -> np.ndarray:
        return np.where(x > self.attrs["alpha"], x, 0)


@register
class Shrink(_Activation):
    """Shrink(bias=0, lambd=0.5): X + bias below -lambd, X - bias above lambd, 0 between;
    any numeric type (integer results wrap)."""

    op_type = "Shrink"
    attributes = {"bias": Attr("float", 0.0), "lambd": Attr("float", 0.5)}
    dtypes = NUMERIC_DTYPES

    def _f(self, x: np.ndarray) -> np.ndarray:
        bias, lambd = self.attrs["bias"], self.attrs["lambd"]
        if x.dtype.kind in "iu":
            x = x.astype(np.float64)
        return np.where(x < -lambd, x + bias, np.where(x > lambd, x - bias, 0))


@register
class PRelu(Op):
    """PRelu(X, slope): X for X >= 0, slope * X below; ``slope`` broadcasts to X's shape
    (unidirectional broadcasting). Float and signed integer types."""

    op_type = "PRelu"
    num_inputs = (2, 2)

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        x, slope = inputs
        assert x is not None and slope is not None
        self._check_dtype(x, FLOAT_DTYPES | SIGNED_INT_DTYPES)
        self._check_same_dtype(inputs)
        try:
            shape = np.broadcast_shapes(x.shape, slope.shape)
        except ValueError:
            shape = None
        if shape != x.shape:
            raise self.error(
                f"slope {fmt_shape(slope.shape)} does not broadcast to X {fmt_shape(x.shape)}"
            )
        return [TensorSpec(x.shape, x.dtype)]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x, slope = inputs[0], inputs[1]
        with np.errstate(over="ignore"):
            return [np.where(x < 0, x * slope, x).astype(x.dtype, copy=False)]


@register
class Hardmax(Op):
    """Hardmax(axis=-1) (opset 13): 1 at the first maximum along ``axis``, 0 elsewhere."""

    op_type = "Hardmax"
    attributes = {"axis": Attr("int", -1)}

    def _axis(self, shape: tuple[int, ...]) -> int:
        r = len(shape)
        axis = self.attrs["axis"]
        if not -r <= axis < r:
            raise self.error(f"axis {axis} is out of range for input {fmt_shape(shape)}")
        return axis % r

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        x = inputs[0]
        assert x is not None
        self._check_dtype(x, FLOAT_DTYPES)
        self._axis(x.shape)
        return [TensorSpec(x.shape, x.dtype)]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x = inputs[0]
        axis = self._axis(x.shape)
        y = np.zeros(x.shape, x.dtype)
        if x.size:
            idx = np.argmax(x, axis=axis, keepdims=True)
            np.put_along_axis(y, idx, 1, axis=axis)
        return [y]
