"""Integer arithmetic on quantised tensors: MatMulInteger, ConvInteger, QLinearMatMul,
QLinearConv and DynamicQuantizeLinear.

The 8-bit operands (uint8 or int8) less their zero points are multiplied exactly: the products
are summed in float64, exact for every sum below 2**53 (far beyond any real reduction length),
then cast to int32 like ONNX's int32 accumulator. The QLinear ops rescale that sum by
``a_scale * b_scale / y_scale`` (computed in the scales' dtype, as onnx's reference does), round
half to even, add ``y_zero_point`` and saturate to its dtype.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._static import optional_input
from .base import FLOAT_DTYPES, Op, TensorSpec, fmt_shape, register
from .conv import Conv

__all__ = [
    "ConvInteger",
    "DynamicQuantizeLinear",
    "MatMulInteger",
    "QLinearConv",
    "QLinearMatMul",
]

_Q8 = frozenset(np.dtype(t) for t in (np.uint8, np.int8))
_I32 = np.dtype(np.int32)
_F64 = np.dtype(np.float64)
_U8 = np.dtype(np.uint8)
_F32 = np.dtype(np.float32)


def _centred(x: np.ndarray, zero: np.ndarray | None, shape: tuple[int, ...] = ()) -> np.ndarray:
    """``x - zero`` in float64 (exact for 8-bit values); ``zero`` reshaped to ``shape`` first
    when given one (a per-row or per-channel zero point)."""
    v = x.astype(_F64)
    if zero is not None:
        z = zero.astype(_F64)
        v = v - (z.reshape(shape) if shape and z.size > 1 else z.reshape(()))
    return v


def _requantize(
    acc: np.ndarray, factor: np.ndarray, zero: np.ndarray | None, dtype: np.dtype
) -> np.ndarray:
    """``saturate(rint(acc * factor) + zero)`` in ``dtype``."""
    y = np.rint(acc.astype(_F64) * factor.astype(_F64))
    if zero is not None:
        y = y + zero.astype(_F64)
    info = np.iinfo(dtype)
    return np.clip(y, info.min, info.max).astype(dtype)


class _QuantisedMatMul(Op):
    """Shared shape and dtype checks of MatMulInteger and QLinearMatMul."""

    def _matmul_shape(self, a: TensorSpec, b: TensorSpec) -> tuple[int, ...]:
        if a.rank < 1 or b.rank < 1:
            raise self.error(f"inputs A {a} and B {b} must have rank >= 1")
        ka = a.shape[-1]
        kb = b.shape[-2] if b.rank >= 2 else b.shape[0]
        if ka != kb:
            raise self.error(
                f"A {fmt_shape(a.shape)} and B {fmt_shape(b.shape)} do not agree "
                f"on the reduced dim ({ka} and {kb})"
            )
        batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        rows = a.shape[-2:-1]
        cols = b.shape[-1:] if b.rank >= 2 else ()
        return tuple(batch) + rows + cols

    def _check_zero(
        self, zero: TensorSpec | None, of: TensorSpec, what: str, per: int | None
    ) -> None:
        """A zero point of ``of``'s dtype: one value, or (``per``) one per row or column."""
        if zero is None:
            return
        if zero.dtype != of.dtype:
            raise self.error(
                f"{what} has dtype {zero.dtype.name}, expected {of.dtype.name} "
                "(the dtype of the tensor it belongs to)"
            )
        if zero.size == 1 and zero.rank <= 1:
            return
        if per is None or zero.shape != (per,):
            want = "one value" if per is None else f"one value or [{per}]"
            raise self.error(f"{what} {fmt_shape(zero.shape)} must be {want}")

    def keeps_rows(self, batched: Sequence[bool], specs: Sequence[TensorSpec | None]) -> bool:
        # rows of A stay independent when only A (of rank >= 2) is batched
        return not any(batched[1:]) and specs[0].rank >= 2


@register
class MatMulInteger(_QuantisedMatMul):
    """MatMulInteger(A, B, a_zero_point?, b_zero_point?): int32 ``(A - a_zp) @ (B - b_zp)``;
    8-bit operands, zero points per tensor, or per row of 2-D A / per column of 2-D B."""

    op_type = "MatMulInteger"
    num_inputs = (2, 4)

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        a, b = inputs[0], inputs[1]
        self._check_dtype(a, _Q8, "input 0 (A)")
        self._check_dtype(b, _Q8, "input 1 (B)")
        shape = self._matmul_shape(a, b)
        self._check_zero(
            optional_input(inputs, 2),
            a,
            "input 2 (a_zero_point)",
            a.shape[0] if a.rank == 2 else None,
        )
        self._check_zero(
            optional_input(inputs, 3),
            b,
            "input 3 (b_zero_point)",
            b.shape[1] if b.rank == 2 else None,
        )
        return [TensorSpec(shape, _I32)]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        a, b = inputs[0], inputs[1]
        av = _centred(a, optional_input(inputs, 2), (-1, 1))
        bv = _centred(b, optional_input(inputs, 3), (1, -1))
        return [np.matmul(av, bv).astype(_I32)]


@register
class QLinearMatMul(_QuantisedMatMul):
    """QLinearMatMul(a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp): the product of two
    quantised 8-bit matrices, requantised to y_zp's dtype; scales and zero points per tensor."""

    op_type = "QLinearMatMul"
    num_inputs = (8, 8)

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        a, a_scale, a_zero, b, b_scale, b_zero, y_scale, y_zero = inputs
        self._check_dtype(a, _Q8, "input 0 (a)")
        self._check_dtype(b, _Q8, "input 3 (b)")
        self._check_dtype(y_zero, _Q8, "input 7 (y_zero_point)")
        shape = self._matmul_shape(a, b)
        for index, (scale, name) in enumerate(
            ((a_scale, "a_scale"), (b_scale, "b_scale"), (y_scale, "y_scale"))
        ):
            self._check_dtype(scale, FLOAT_DTYPES, f"input {(1, 4, 6)[index]} ({name})")
            if scale.size != 1 or scale.rank > 1:
                raise self.error(
                    f"input {(1, 4, 6)[index]} ({name}) {fmt_shape(scale.shape)} "
                    "must be one value (per-row or per-column scales are not "
                    "supported)"
                )
        self._check_zero(a_zero, a, "input 2 (a_zero_point)", None)
        self._check_zero(b_zero, b, "input 5 (b_zero_point)", None)
        if y_zero.size != 1 or y_zero.rank > 1:
            raise self.error(f"input 7 (y_zero_point) {fmt_shape(y_zero.shape)} must be one value")
        return [TensorSpec(shape, y_zero.dtype)]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        a, a_scale, a_zero, b, b_scale, b_zero, y_scale, y_zero = inputs
        acc = np.matmul(_centred(a, a_zero), _centred(b, b_zero))
        factor = (a_scale * b_scale / y_scale).reshape(())
        return [_requantize(acc, factor, y_zero.reshape(()), y_zero.dtype)]


_CONV_ATTRIBUTES = dict(Conv.attributes)


class _IntegerConv(Op):
    """A convolution of 8-bit tensors less their zero points, computed by a float64 Conv."""

    attributes = _CONV_ATTRIBUTES

    def _setup(self) -> None:
        self.conv = Conv(self.node, self.attrs)
        self.conv.op_type = self.op_type  # its errors name this node's op type

    def _conv_out(self, x: TensorSpec, w: TensorSpec) -> tuple[int, ...]:
        self._check_dtype(x, _Q8, "input x")
        self._check_dtype(w, _Q8, "input w")
        if x.rank < 3:
            raise self.error(
                f"input x must have rank >= 3 (N, C, *spatial), got {fmt_shape(x.shape)}"
            )
        [y] = self.conv.infer([TensorSpec(x.shape, _F64), TensorSpec(w.shape, _F64)])
        return y.shape

    def _check_zero(
        self, zero: TensorSpec | None, of: TensorSpec, what: str, channels: int | None
    ) -> None:
        if zero is None:
            return
        if zero.dtype != of.dtype:
            raise self.error(f"{what} has dtype {zero.dtype.name}, expected {of.dtype.name}")
        if zero.size == 1 and zero.rank <= 1:
            return
        if channels is None or zero.shape != (channels,):
            want = "one value" if channels is None else f"one value or [{channels}]"
            raise self.error(f"{what} {fmt_shape(zero.shape)} must be {want}")

    def _accumulate(
        self, x: np.ndarray, x_zero: np.ndarray | None, w: np.ndarray, w_zero: np.ndarray | None
    ) -> np.ndarray:
        xv = _centred(x, x_zero)
        wv = _centred(w, w_zero, (-1,) + (1,) * (w.ndim - 1))
        [acc] = self.conv.run([xv, wv])
        return acc

    def keeps_rows(self, batched: Sequence[bool], specs: Sequence[TensorSpec | None]) -> bool:
        return not any(batched[1:])


@register
class ConvInteger(_IntegerConv):
    """ConvInteger(x, w, x_zero_point?, w_zero_point?): int32 convolution of 8-bit tensors
    less their zero points (w's per tensor or per output channel); Conv's attributes."""

    op_type = "ConvInteger"
    num_inputs = (2, 4)

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        x, w = inputs[0], inputs[1]
        shape = self._conv_out(x, w)
        self._check_zero(optional_input(inputs, 2), x, "input 2 (x_zero_point)", None)
        self._check_zero(optional_input(inputs, 3), w, "input 3 (w_zero_point)", w.shape[0])
        return [TensorSpec(shape, _I32)]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        acc = self._accumulate(
            inputs[0], optional_input(inputs, 2), inputs[1], optional_input(inputs, 3)
        )
        return [np.rint(acc).astype(_I32)]


@register
class QLinearConv(_IntegerConv):
    """QLinearConv(x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp, B?): a quantised
    convolution requantised to y_zp's dtype; w's scale and zero point per tensor or per output
    channel, B an int32 bias added to the accumulator."""

    op_type = "QLinearConv"
    num_inputs = (8, 9)

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        x, x_scale, x_zero, w, w_scale, w_zero, y_scale, y_zero = inputs[:8]
        bias = optional_input(inputs, 8)
        shape = self._conv_out(x, w)
        m = w.shape[0]
        for index, scale, per in ((1, x_scale, None), (4, w_scale, m), (6, y_scale, None)):
            self._check_dtype(scale, FLOAT_DTYPES, f"input {index} (scale)")
            if not (scale.size == 1 and scale.rank <= 1) and (per is None or scale.shape != (per,)):
                want = "one value" if per is None else f"one value or [{per}]"
                raise self.error(f"input {index} (scale) {fmt_shape(scale.shape)} must be {want}")
        self._check_zero(x_zero, x, "input 2 (x_zero_point)", None)
        self._check_zero(w_zero, w, "input 5 (w_zero_point)", m)
        self._check_dtype(y_zero, _Q8, "input 7 (y_zero_point)")
        if y_zero.size != 1 or y_zero.rank > 1:
            raise self.error(f"input 7 (y_zero_point) {fmt_shape(y_zero.shape)} must be one value")
        if bias is not None:
            self._check_dtype(bias, frozenset({_I32}), "input 8 (B)")
            if bias.shape != (m,):
                raise self.error(f"input 8 (B) {fmt_shape(bias.shape)} must have shape [{m}]")
        return [TensorSpec(shape, y_zero.dtype)]

    def keeps_rows(self, batched: Sequence[bool], specs: Sequence[TensorSpec | None]) -> bool:
        return not any(batched[1:])

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x, x_scale, x_zero, w, w_scale, w_zero, y_scale, y_zero = inputs[:8]
        bias = optional_input(inputs, 8)
        acc = np.rint(self._accumulate(x, x_zero, w, w_zero))
        spatial = (1,) * (x.ndim - 2)
        if bias is not None:
            acc = acc + bias.astype(_F64).reshape((-1,) + spatial)
        factor = x_scale * w_scale / y_scale
        factor = factor.reshape((-1,) + spatial) if factor.size > 1 else factor.reshape(())
        return [_requantize(acc, factor, y_zero.reshape(()), y_zero.dtype)]


@register
class DynamicQuantizeLinear(Op):
    """DynamicQuantizeLinear(x): uint8 ``y``, float32 scalar ``y_scale`` and uint8 scalar
    ``y_zero_point`` chosen from x's range extended to include 0 (whole tensor: mixes rows)."""

    op_type = "DynamicQuantizeLinear"
    num_inputs = (1, 1)
    num_outputs = (1, 3)

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        x = inputs[0]
        self._check_dtype(x, frozenset({_F32}), "input 0 (x)")
        specs = [TensorSpec(x.shape, _U8), TensorSpec((), _F32), TensorSpec((), _U8)]
        return specs[: self.output_count]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x = inputs[0]
        hi = np.float32(max(0.0, float(np.max(x)))) if x.size else np.float32(0)
        lo = np.float32(min(0.0, float(np.min(x)))) if x.size else np.float32(0)
        scale = np.float32(1.0 if hi == lo else hi - lo) / np.float32(255)
        zero = np.rint(np.clip(np.float32(0) - lo / scale, 0, 255))
        y = np.clip(np.rint(x / scale) + zero, 0, 255).astype(_U8)
        outs = [y, np.asarray(scale, _F32), np.asarray(zero).astype(_U8)]
        return outs[: self.output_count]
