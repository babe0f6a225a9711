"""Elementwise operators: binary arithmetic with numpy broadcasting, activations, Clip,
Identity, Dropout (inference) and Cast."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from . import _kernels
from .base import (
    ALL_DTYPES,
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
    "ONNX_DTYPE_NAMES",
    "ONNX_DTYPES",
    "Add",
    "Cast",
    "Clip",
    "Div",
    "Dropout",
    "Gelu",
    "Identity",
    "LeakyRelu",
    "Mul",
    "Relu",
    "Sigmoid",
    "Sub",
    "Tanh",
]


# --------------------------------------------------------------------------------------------
# binary arithmetic


class _Binary(Op):
    """Two inputs of the same dtype, numpy (= ONNX multidirectional) broadcasting."""

    num_inputs = (2, 2)

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        a, b = inputs
        assert a is not None and b is not None
        self._check_dtype(a, NUMERIC_DTYPES)
        self._check_same_dtype(inputs)
        try:
            shape = np.broadcast_shapes(a.shape, b.shape)
        except ValueError:
            raise self.error(
                f"cannot broadcast {fmt_shape(a.shape)} with {fmt_shape(b.shape)}"
            ) from None
        return [TensorSpec(shape, a.dtype)]


@register
class Add(_Binary):
    op_type = "Add"

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        return [np.add(inputs[0], inputs[1])]


@register
class Sub(_Binary):
    op_type = "Sub"

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        return [np.subtract(inputs[0], inputs[1])]


@register
class Mul(_Binary):
    op_type = "Mul"

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        return [np.multiply(inputs[0], inputs[1])]


@register
class Div(_Binary):
    """Float division; integer division truncates toward zero (C semantics, as ONNX Runtime).
    Integer division by zero gives 0 (undefined in ONNX)."""

    op_type = "Div"

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        a, b = inputs[0], inputs[1]
        if a.dtype.kind == "f":
            return [np.divide(a, b)]
        # over: the most negative value divided by -1 wraps round (as in C)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            q = np.floor_divide(a, b)
            if a.dtype.kind == "i":
                # floor -> truncation: step back up where the exact quotient is negative
                fix = (np.remainder(a, b) != 0) & ((a < 0) != (b < 0))
                q = q + fix.astype(q.dtype)
        return [q]


# --------------------------------------------------------------------------------------------
# activations


class _Unary(Op):
    num_inputs = (1, 1)
    dtypes: frozenset = FLOAT_DTYPES

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        x = inputs[0]
        assert x is not None
        self._check_dtype(x, self.dtypes)
        return [TensorSpec(x.shape, x.dtype)]


@register
class Relu(_Unary):
    op_type = "Relu"
    dtypes = FLOAT_DTYPES | SIGNED_INT_DTYPES

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        return [_kernels.relu(inputs[0])]


@register
class LeakyRelu(_Unary):
    op_type = "LeakyRelu"
    attributes = {"alpha": Attr("float", 0.01)}

    def _setup(self) -> None:
        self.alpha = float(self.attrs["alpha"])
        if not math.isfinite(self.alpha):
            raise self.error(f"attribute 'alpha' must be finite, got {self.alpha}")

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x = inputs[0]
        alpha = self.alpha
        if 0.0 <= alpha <= 1.0:
            return [np.maximum(x, x * alpha)]
        return [np.where(x < 0, x * alpha, x)]


@register
class Sigmoid(_Unary):
    op_type = "Sigmoid"

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x = inputs[0]
        xc = x.astype(_kernels.compute_dtype(x.dtype), copy=False)
        e = np.exp(-np.abs(xc))  # in (0, 1]: never overflows
        pos = 1.0 / (1.0 + e)
        y = np.where(xc >= 0, pos, e * pos)
        return [y.astype(x.dtype, copy=False)]


@register
class Tanh(_Unary):
    op_type = "Tanh"

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        return [np.tanh(inputs[0])]


_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_SQRT_HALF = math.sqrt(0.5)


@register
class Gelu(_Unary):
    """ONNX opset-20 Gelu: ``approximate="none"`` uses erf (computed in float64),
    ``"tanh"`` the tanh approximation."""

    op_type = "Gelu"
    attributes = {"approximate": Attr("string", "none")}

    def _setup(self) -> None:
        self.approximate = self.attrs["approximate"]
        if self.approximate not in ("none", "tanh"):
            raise self.error(
                f"attribute 'approximate' must be 'none' or 'tanh', got {self.approximate!r}"
            )

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x = inputs[0]
        if self.approximate == "none":
            # x * Phi(x) with Phi(x) = erfc(-x / sqrt 2) / 2: no cancellation for x << 0;
            # below -40 the result is -0.0 (and Gelu(-inf) = -0.0, not NaN)
            x64 = np.maximum(x.astype(np.float64), -40.0)
            y = 0.5 * x64 * _kernels.erfc(x64 * -_SQRT_HALF)
        else:
            xc = x.astype(_kernels.compute_dtype(x.dtype), copy=False)
            y = 0.5 * xc * (1.0 + np.tanh(_SQRT_2_OVER_PI * (xc + 0.044715 * xc * xc * xc)))
        return [y.astype(x.dtype, copy=False)]


# --------------------------------------------------------------------------------------------
# Clip, Identity, Dropout


@register
class Clip(Op):
    """Clip(input, min?, max?) (opset 11+): bounds are optional scalar inputs; a missing bound
    is no bound. When min > max every element becomes max (ONNX rule)."""

    op_type = "Clip"
    num_inputs = (1, 3)

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        x = inputs[0]
        assert x is not None
        self._check_dtype(x, NUMERIC_DTYPES)
        self._check_same_dtype(inputs)
        for i, name in ((1, "min"), (2, "max")):
            b = inputs[i] if len(inputs) > i else None
            if b is not None and b.size != 1:
                raise self.error(
                    f"'{name}' (input {i}) must be a scalar, got shape {fmt_shape(b.shape)}"
                )
        return [TensorSpec(x.shape, x.dtype)]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x = inputs[0]
        lo = inputs[1] if len(inputs) > 1 else None
        hi = inputs[2] if len(inputs) > 2 else None
        if lo is None and hi is None:
            return [np.array(x, copy=True)]
        y = x
        if lo is not None:
            y = np.asarray(np.maximum(x, np.reshape(lo, ())))  # 0-d: not a scalar
        if hi is not None:
            hi = np.reshape(hi, ())
            y = np.minimum(y, hi, out=y) if y is not x else np.minimum(x, hi)
        return [y]


@register
class Identity(Op):
    """Returns its input itself (no copy)."""

    op_type = "Identity"
    num_inputs = (1, 1)

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        x = inputs[0]
        assert x is not None
        return [TensorSpec(x.shape, x.dtype)]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        return [inputs[0]]


@register
class Dropout(Op):
    """Inference Dropout: the output is the input itself; ``ratio`` is ignored;
    ``training_mode`` true is refused. The optional second output ``mask`` is all true."""

    op_type = "Dropout"
    attributes = {"seed": Attr("int", None)}
    num_inputs = (1, 3)
    num_outputs = (1, 2)

    def _refuse_training(self, flag: np.ndarray) -> None:
        if np.size(flag) != 1:
            raise self.error(
                f"'training_mode' must be a scalar, got shape {fmt_shape(np.shape(flag))}"
            )
        if bool(np.reshape(flag, ())):
            raise self.error("training_mode=True is not supported (inference runtime)")

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        x = inputs[0]
        assert x is not None
        self._check_dtype(x, FLOAT_DTYPES)
        if len(inputs) > 1 and inputs[1] is not None:
            self._check_dtype(inputs[1], FLOAT_DTYPES, "'ratio' (input 1)")
        if len(inputs) > 2 and inputs[2] is not None:
            self._check_dtype(
                inputs[2], frozenset({np.dtype(np.bool_)}), "'training_mode' (input 2)"
            )
            if 2 in self.constant_inputs:
                self._refuse_training(self.constant_inputs[2])
        out = [TensorSpec(x.shape, x.dtype)]
        if self.output_count == 2:
            out.append(TensorSpec(x.shape, np.bool_))
        return out

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x = inputs[0]
        if len(inputs) > 2 and inputs[2] is not None:
            self._refuse_training(inputs[2])
        if self.output_count == 2:
            return [x, np.ones(x.shape, np.bool_)]
        return [x]


# --------------------------------------------------------------------------------------------
# Cast

#: ONNX TensorProto.DataType -> numpy dtype, for the types this runtime supports.
ONNX_DTYPES: dict[int, np.dtype] = {
    1: np.dtype(np.float32),
    2: np.dtype(np.uint8),
    3: np.dtype(np.int8),
    4: np.dtype(np.uint16),
    5: np.dtype(np.int16),
    6: np.dtype(np.int32),
    7: np.dtype(np.int64),
    9: np.dtype(np.bool_),
    10: np.dtype(np.float16),
    11: np.dtype(np.float64),
    12: np.dtype(np.uint32),
    13: np.dtype(np.uint64),
}
#: Every ONNX TensorProto.DataType's name, for messages (the importer's too).
ONNX_DTYPE_NAMES: dict[int, str] = {
    0: "UNDEFINED",
    1: "FLOAT",
    2: "UINT8",
    3: "INT8",
    4: "UINT16",
    5: "INT16",
    6: "INT32",
    7: "INT64",
    8: "STRING",
    9: "BOOL",
    10: "FLOAT16",
    11: "DOUBLE",
    12: "UINT32",
    13: "UINT64",
    14: "COMPLEX64",
    15: "COMPLEX128",
    16: "BFLOAT16",
    17: "FLOAT8E4M3FN",
    18: "FLOAT8E4M3FNUZ",
    19: "FLOAT8E5M2",
    20: "FLOAT8E5M2FNUZ",
    21: "UINT4",
    22: "INT4",
    23: "FLOAT4E2M1",
    24: "FLOAT8E8M0",
    25: "UINT2",
    26: "INT2",
}


@register
class Cast(Op):
    """Cast(to=TensorProto data type). Float to int truncates toward zero; out-of-range and
    NaN conversions are undefined (as in ONNX) and do not warn. ``saturate`` and ``round_mode``
    only concern float8 types, which are not supported, and are accepted and ignored."""

    op_type = "Cast"
    attributes = {"to": Attr("int"), "saturate": Attr("int", 1), "round_mode": Attr("string", "up")}
    num_inputs = (1, 1)

    def _setup(self) -> None:
        to = self.attrs["to"]
        if to in ONNX_DTYPES:
            self.target = ONNX_DTYPES[to]
        elif to in ONNX_DTYPE_NAMES:
            raise self.error(
                f"casting to {ONNX_DTYPE_NAMES[to]} (to={to}) is not supported: "
                "PopEF has no such data type"
            )
        else:
            raise self.error(f"attribute 'to' is not an ONNX data type: {to}")

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        x = inputs[0]
        assert x is not None
        self._check_dtype(x, ALL_DTYPES)
        return [TensorSpec(x.shape, self.target)]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x = inputs[0]
        if x.dtype.kind == "f" and x.dtype != self.target:
            # NaN/out-of-range to int and overflow to float16 are undefined/inf: no warnings
            with np.errstate(invalid="ignore", over="ignore"):
                return [x.astype(self.target)]
        return [x.astype(self.target, copy=False)]
