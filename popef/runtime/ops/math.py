"""Elementwise maths and logic: unary functions, Pow, Mod, BitShift, the variadic Max, Min,
Sum and Mean, comparisons, boolean and bitwise logic, IsNaN, IsInf, Where and CastLike.

Every op broadcasts its inputs the numpy way (ONNX's multidirectional broadcasting) and refuses
dtypes that ONNX does not define it for, naming the supported ones.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import reduce

import numpy as np

from . import _kernels
from .base import (
    ALL_DTYPES,
    FLOAT_DTYPES,
    INT_DTYPES,
    NUMERIC_DTYPES,
    SIGNED_INT_DTYPES,
    UNSIGNED_INT_DTYPES,
    VARIADIC,
    Attr,
    Op,
    TensorSpec,
    fmt_shape,
    register,
)

__all__ = [
    "UNARY_FUNCTIONS",
    "BitCast",
    "BitShift",
    "CastLike",
    "IsInf",
    "IsNaN",
    "Max",
    "Mean",
    "Min",
    "Mod",
    "Pow",
    "Sum",
    "SwiGLU",
    "Where",
]

BOOL = np.dtype(np.bool_)
BOOL_DTYPES = frozenset({BOOL})


def _broadcast(op: Op, specs: Sequence[TensorSpec]) -> tuple[int, ...]:
    try:
        return tuple(np.broadcast_shapes(*(s.shape for s in specs)))
    except ValueError:
        shapes = " with ".join(fmt_shape(s.shape) for s in specs)
        raise op.error(f"cannot broadcast {shapes}") from None


# --------------------------------------------------------------------------------------------
# unary functions: one class each, made from a table


def _float_kernel(fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    """A float function computed in the input's float type (float16 through float32), where
    NaN, inf and domain errors give NaN/inf silently, as in ONNX."""

    def kernel(x: np.ndarray) -> np.ndarray:
        xc = x.astype(_kernels.compute_dtype(x.dtype), copy=False)
        with np.errstate(all="ignore"):
            return fn(xc).astype(x.dtype, copy=False)

    return kernel


def _sign(x: np.ndarray) -> np.ndarray:
    return np.sign(x) if x.dtype.kind != "u" else (x != 0).astype(x.dtype)


def _abs(x: np.ndarray) -> np.ndarray:
    return x.copy() if x.dtype.kind == "u" else np.abs(x)


def _neg(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return np.negative(x)


def _erf(x: np.ndarray) -> np.ndarray:
    return _kernels.erf(x.astype(np.float64)).astype(x.dtype)


#: op type -> (kernel, dtypes, description)
UNARY_FUNCTIONS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], frozenset, str]] = {
    "Sqrt": (_float_kernel(np.sqrt), FLOAT_DTYPES, "square root; NaN below 0"),
    "Exp": (_float_kernel(np.exp), FLOAT_DTYPES, "e to the x"),
    "Log": (_float_kernel(np.log), FLOAT_DTYPES, "natural logarithm; -inf at 0, NaN below"),
    "Reciprocal": (_float_kernel(np.reciprocal), FLOAT_DTYPES, "1 / x"),
    "Ceil": (np.ceil, FLOAT_DTYPES, "smallest integer >= x"),
    "Floor": (np.floor, FLOAT_DTYPES, "largest integer <= x"),
    "Round": (np.round, FLOAT_DTYPES, "nearest integer, halves to even"),
    "Sin": (_float_kernel(np.sin), FLOAT_DTYPES, "sine"),
    "Cos": (_float_kernel(np.cos), FLOAT_DTYPES, "cosine"),
    "Tan": (_float_kernel(np.tan), FLOAT_DTYPES, "tangent"),
    "Asin": (_float_kernel(np.arcsin), FLOAT_DTYPES, "arc sine"),
    "Acos": (_float_kernel(np.arccos), FLOAT_DTYPES, "arc cosine"),
    "Atan": (_float_kernel(np.arctan), FLOAT_DTYPES, "arc tangent"),
    "Sinh": (_float_kernel(np.sinh), FLOAT_DTYPES, "hyperbolic sine"),
    "Cosh": (_float_kernel(np.cosh), FLOAT_DTYPES, "hyperbolic cosine"),
    "Asinh": (_float_kernel(np.arcsinh), FLOAT_DTYPES, "inverse hyperbolic sine"),
    "Acosh": (_float_kernel(np.arccosh), FLOAT_DTYPES, "inverse hyperbolic cosine"),
    "Atanh": (_float_kernel(np.arctanh), FLOAT_DTYPES, "inverse hyperbolic tangent"),
    "Erf": (_erf, FLOAT_DTYPES, "error function (computed in float64)"),
    "Neg": (_neg, FLOAT_DTYPES | SIGNED_INT_DTYPES, "-x (integers wrap)"),
    "Abs": (_abs, NUMERIC_DTYPES, "|x| (integers wrap)"),
    "Sign": (_sign, NUMERIC_DTYPES, "-1, 0 or 1; NaN stays NaN"),
    "Not": (np.logical_not, BOOL_DTYPES, "logical not"),
    "BitwiseNot": (np.invert, INT_DTYPES, "bitwise not"),
}


class _UnaryFunction(Op):
    """``Y = f(X)``, same shape and dtype; the kernel and dtypes come from UNARY_FUNCTIONS."""

    num_inputs = (1, 1)

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        x = inputs[0]
        assert x is not None
        self._check_dtype(x, UNARY_FUNCTIONS[self.op_type][1])
        return [TensorSpec(x.shape, x.dtype)]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        return [UNARY_FUNCTIONS[self.op_type][0](inputs[0])]


for _name, (_fn, _dtypes, _what) in UNARY_FUNCTIONS.items():
    _dtype_names = ", ".join(sorted(d.name for d in _dtypes))
    register(
        type(
            _name,
            (_UnaryFunction,),
            {
                "op_type": _name,
                "__doc__": f"{_name}(X): {_what}; dtypes {_dtype_names}.",
                "__module__": __name__,
            },
        )
    )


# --------------------------------------------------------------------------------------------
# binary and variadic arithmetic


@register
class Pow(Op):
    """Pow(X, Y): X to the power Y, with X's dtype. Y may have another numeric dtype (opset
    12+); integer powers are exact, a negative integer exponent of an integer is refused."""

    op_type = "Pow"
    num_inputs = (2, 2)

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        x, y = inputs
        assert x is not None and y is not None
        self._check_dtype(x, FLOAT_DTYPES | SIGNED_INT_DTYPES | UNSIGNED_INT_DTYPES)
        self._check_dtype(y, NUMERIC_DTYPES, "input 1 (the exponent)")
        return [TensorSpec(_broadcast(self, [x, y]), x.dtype)]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x, y = inputs[0], inputs[1]
        if x.dtype.kind in "iu" and y.dtype.kind in "iu":
            if y.dtype.kind == "i" and np.any(y < 0):
                raise self.error("an integer cannot be raised to a negative integer power")
            with np.errstate(over="ignore"):
                return [np.power(x, y.astype(x.dtype))]
        if x.dtype.kind == "f" and y.dtype == x.dtype:
            with np.errstate(all="ignore"):
                return [np.power(x, y)]
        with np.errstate(all="ignore"):
            return [np.power(x.astype(np.float64), y.astype(np.float64)).astype(x.dtype)]


@register
class Mod(Op):
    """Mod(A, B, fmod=0): the remainder with the divisor's sign (Python's ``%``); with
    ``fmod=1`` the dividend's sign (C's ``fmod``). Integer remainder by 0 is 0 (undefined in
    ONNX)."""

    op_type = "Mod"
    attributes = {"fmod": Attr("int", 0)}
    num_inputs = (2, 2)

    def _setup(self) -> None:
        if self.attrs["fmod"] not in (0, 1):
            raise self.error(f"attribute 'fmod' must be 0 or 1, got {self.attrs['fmod']}")
        self.fmod = bool(self.attrs["fmod"])

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        a, b = inputs
        assert a is not None and b is not None
        self._check_dtype(a, NUMERIC_DTYPES)
        self._check_same_dtype(inputs)
        return [TensorSpec(_broadcast(self, [a, b]), a.dtype)]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        a, b = inputs[0], inputs[1]
        with np.errstate(divide="ignore", invalid="ignore"):
            return [np.fmod(a, b) if self.fmod else np.mod(a, b)]


@register
class BitShift(Op):
    """BitShift(X, Y, direction): X shifted LEFT or RIGHT by Y bits; bits shifted past the
    width are lost. A signed right shift is arithmetic (sign-extending); a shift by a negative
    amount or by the width or more gives what the sign extension alone gives (-1 for a right
    shift of a negative X, 0 otherwise), as in opset 28."""

    op_type = "BitShift"
    attributes = {"direction": Attr("string")}
    num_inputs = (2, 2)

    def _setup(self) -> None:
        if self.attrs["direction"] not in ("LEFT", "RIGHT"):
            raise self.error(
                f"attribute 'direction' must be 'LEFT' or 'RIGHT', got {self.attrs['direction']!r}"
            )
        self.left = self.attrs["direction"] == "LEFT"

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        x, y = inputs
        assert x is not None and y is not None
        self._check_dtype(x, INT_DTYPES)
        self._check_same_dtype(inputs)
        return [TensorSpec(_broadcast(self, [x, y]), x.dtype)]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x, y = inputs[0], inputs[1]
        width = x.dtype.itemsize * 8
        # numpy's shifts by a negative amount or by the width or more are undefined
        out_of_range = (y < 0) | (y >= width)
        amount = np.where(out_of_range, np.zeros((), y.dtype), y)
        if self.left:
            # through the unsigned type: bits moved past the sign bit are simply lost
            unsigned = np.dtype(f"u{x.dtype.itemsize}")
            shifted = np.left_shift(x.view(unsigned), amount.view(unsigned)).view(x.dtype)
            filler = np.zeros((), x.dtype)
        else:
            shifted = np.right_shift(x, amount)
            filler = np.where(x < 0, np.asarray(-1).astype(x.dtype), np.zeros((), x.dtype))
        return [np.where(out_of_range, filler, shifted).astype(x.dtype, copy=False)]


class _Variadic(Op):
    """One or more inputs of one dtype, broadcast together and combined pairwise."""

    num_inputs = (1, VARIADIC)
    dtypes: frozenset = NUMERIC_DTYPES

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        for i, s in enumerate(inputs):
            if s is None:
                raise self.error(f"input {i} is required but was not given (None)")
        self._check_dtype(inputs[0], self.dtypes)
        self._check_same_dtype(inputs)
        return [TensorSpec(_broadcast(self, inputs), inputs[0].dtype)]

    # the pairwise ufunc of the subclasses that fold their inputs with one
    function: Callable[..., np.ndarray]

    def _combine(self, inputs: Sequence[np.ndarray]) -> np.ndarray:
        return np.array(reduce(self.function, inputs)) if len(inputs) > 1 else inputs[0].copy()

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        shape = np.broadcast_shapes(*(x.shape for x in inputs))
        y = self._combine(inputs)
        return [np.array(np.broadcast_to(y, shape)) if y.shape != shape else y]


@register
class Max(_Variadic):
    """Max(X1, ..., Xn): elementwise maximum; NaN wins."""

    op_type = "Max"
    function = np.maximum


@register
class Min(_Variadic):
    """Min(X1, ..., Xn): elementwise minimum; NaN wins."""

    op_type = "Min"
    function = np.minimum


@register
class Sum(_Variadic):
    """Sum(X1, ..., Xn): elementwise sum, float types."""

    op_type = "Sum"
    dtypes = FLOAT_DTYPES
    function = np.add


@register
class Mean(_Variadic):
    """Mean(X1, ..., Xn): elementwise mean, float types (summed in the input's type)."""

    op_type = "Mean"
    dtypes = FLOAT_DTYPES

    def _combine(self, inputs: Sequence[np.ndarray]) -> np.ndarray:
        total = reduce(np.add, inputs) if len(inputs) > 1 else inputs[0]
        return np.asarray(np.divide(total, inputs[0].dtype.type(len(inputs))))


# --------------------------------------------------------------------------------------------
# comparisons and logic: two inputs of one dtype, broadcast


class _Elementwise2(Op):
    """Two inputs of one dtype among ``dtypes``, broadcast; the output is bool when
    ``boolean_output``, else the inputs' dtype. ``function`` is the numpy ufunc."""

    num_inputs = (2, 2)
    dtypes: frozenset = NUMERIC_DTYPES
    boolean_output = True
    function: Callable[..., np.ndarray] = np.equal

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        a, b = inputs
        assert a is not None and b is not None
        self._check_dtype(a, self.dtypes)
        self._check_same_dtype(inputs)
        return [TensorSpec(_broadcast(self, [a, b]), BOOL if self.boolean_output else a.dtype)]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        return [type(self).function(inputs[0], inputs[1])]


_TWO_INPUT_OPS: dict[str, tuple[Callable[..., np.ndarray], frozenset, bool, str]] = {
    "Equal": (np.equal, ALL_DTYPES, True, "A == B"),
    "Less": (np.less, NUMERIC_DTYPES, True, "A < B"),
    "LessOrEqual": (np.less_equal, NUMERIC_DTYPES, True, "A <= B"),
    "Greater": (np.greater, NUMERIC_DTYPES, True, "A > B"),
    "GreaterOrEqual": (np.greater_equal, NUMERIC_DTYPES, True, "A >= B"),
    "And": (np.logical_and, BOOL_DTYPES, True, "logical and"),
    "Or": (np.logical_or, BOOL_DTYPES, True, "logical or"),
    "Xor": (np.logical_xor, BOOL_DTYPES, True, "logical exclusive or"),
    "BitwiseAnd": (np.bitwise_and, INT_DTYPES, False, "bitwise and"),
    "BitwiseOr": (np.bitwise_or, INT_DTYPES, False, "bitwise or"),
    "BitwiseXor": (np.bitwise_xor, INT_DTYPES, False, "bitwise exclusive or"),
}

for _name, (_fn, _dtypes, _bool, _what) in _TWO_INPUT_OPS.items():
    register(
        type(
            _name,
            (_Elementwise2,),
            {
                "op_type": _name,
                "dtypes": _dtypes,
                "boolean_output": _bool,
                "function": staticmethod(_fn),
                "__doc__": f"{_name}(A, B): {_what}; dtypes "
                f"{', '.join(sorted(d.name for d in _dtypes))}.",
                "__module__": __name__,
            },
        )
    )


@register
class IsNaN(Op):
    """IsNaN(X) -> bool: true where X is NaN."""

    op_type = "IsNaN"

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        x = inputs[0]
        assert x is not None
        self._check_dtype(x, FLOAT_DTYPES)
        return [TensorSpec(x.shape, BOOL)]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        return [np.isnan(inputs[0])]


@register
class IsInf(Op):
    """IsInf(X, detect_negative=1, detect_positive=1) -> bool."""

    op_type = "IsInf"
    attributes = {"detect_negative": Attr("int", 1), "detect_positive": Attr("int", 1)}

    def _setup(self) -> None:
        for name in ("detect_negative", "detect_positive"):
            if self.attrs[name] not in (0, 1):
                raise self.error(f"attribute '{name}' must be 0 or 1, got {self.attrs[name]}")
        self.negative = bool(self.attrs["detect_negative"])
        self.positive = bool(self.attrs["detect_positive"])

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        x = inputs[0]
        assert x is not None
        self._check_dtype(x, FLOAT_DTYPES)
        return [TensorSpec(x.shape, BOOL)]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x = inputs[0]
        if self.negative and self.positive:
            return [np.isinf(x)]
        if self.negative:
            return [np.isneginf(x)]
        if self.positive:
            return [np.isposinf(x)]
        return [np.zeros(x.shape, BOOL)]


@register
class Where(Op):
    """Where(condition, X, Y): X where the bool condition holds, else Y; all three broadcast."""

    op_type = "Where"
    num_inputs = (3, 3)

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        c, x, y = inputs
        assert c is not None and x is not None and y is not None
        self._check_dtype(c, BOOL_DTYPES, "the condition (input 0)")
        if x.dtype != y.dtype:
            raise self.error(
                f"input 1 has dtype {x.dtype.name} but input 2 has {y.dtype.name}; they must match"
            )
        return [TensorSpec(_broadcast(self, [c, x, y]), x.dtype)]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        return [np.where(inputs[0], inputs[1], inputs[2])]


@register
class CastLike(Op):
    """CastLike(input, target_type): ``input`` cast to the dtype of ``target_type`` (only its
    dtype is used), with Cast's rules; ``saturate`` concerns float8 only and is ignored."""

    op_type = "CastLike"
    attributes = {"saturate": Attr("int", 1)}
    num_inputs = (2, 2)

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        x, like = inputs
        assert x is not None and like is not None
        self._check_dtype(x, ALL_DTYPES)
        self._check_dtype(like, ALL_DTYPES, "input 1 (target_type)")
        return [TensorSpec(x.shape, like.dtype)]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x, target = inputs[0], inputs[1].dtype
        with np.errstate(invalid="ignore", over="ignore"):
            return [x.astype(target)]


@register
class BitCast(Op):
    """BitCast(to=TensorProto data type): the same bytes (little-endian) read as another dtype
    of the same width; the shape is kept."""

    op_type = "BitCast"
    attributes = {"to": Attr("int")}

    def _setup(self) -> None:
        from .elementwise import ONNX_DTYPES

        to = self.attrs["to"]
        if to not in ONNX_DTYPES:
            raise self.error(f"attribute 'to' {to} is not a data type this runtime holds")
        self.target = ONNX_DTYPES[to]

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        x = inputs[0]
        assert x is not None
        self._check_dtype(x, ALL_DTYPES)
        if x.dtype.itemsize != self.target.itemsize:
            raise self.error(
                f"cannot reinterpret {x.dtype.name} as {self.target.name}: "
                f"expected the same width, got {x.dtype.itemsize * 8} and "
                f"{self.target.itemsize * 8} bits"
            )
        return [TensorSpec(x.shape, self.target)]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x = inputs[0]
        little = x.astype(x.dtype.newbyteorder("<"), order="C")  # a contiguous copy
        out = little.view(self.target.newbyteorder("<"))
        if self.target == BOOL:
            out = little.view(np.uint8) != 0  # any non-zero byte is True
        return [out.astype(self.target, copy=False)]


@register
class SwiGLU(Op):
    """SwiGLU(A, B; alpha): ``A · sigmoid(alpha · A) · B`` for A and B of one shape (opset 28);
    no broadcasting."""

    op_type = "SwiGLU"
    attributes = {"alpha": Attr("float", 1.0)}
    num_inputs = (2, 2)

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        a, b = inputs
        assert a is not None and b is not None
        self._check_dtype(a, FLOAT_DTYPES)
        self._check_same_dtype(inputs)
        if a.shape != b.shape:
            raise self.error(
                f"A {fmt_shape(a.shape)} and B {fmt_shape(b.shape)} must have the same shape"
            )
        return [a]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        a, b = inputs[0], inputs[1]
        compute = _kernels.compute_dtype(a.dtype)
        ac = a.astype(compute, copy=False)
        with np.errstate(over="ignore"):
            gate = ac / (1 + np.exp(-compute.type(self.attrs["alpha"]) * ac))
        return [(gate * b.astype(compute, copy=False)).astype(a.dtype, copy=False)]
