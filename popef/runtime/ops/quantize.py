"""Linear quantisation: QuantizeLinear and DequantizeLinear (opsets 10 to 21), per tensor, per
axis or per block.

``QuantizeLinear``: ``y = saturate(round(x / y_scale) + y_zero_point)``, rounding half to even,
in the dtype of the zero point (``output_dtype`` or uint8 without one). ``DequantizeLinear``:
``y = (x - x_zero_point) * x_scale`` in the scale's dtype. Float8 and 4-bit types are not
supported.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._static import norm_axis, optional_input
from .base import FLOAT_DTYPES, Attr, Op, TensorSpec, fmt_shape, register
from .elementwise import ONNX_DTYPES

__all__ = ["DequantizeLinear", "QuantizeLinear"]

_QUANT_DTYPES = frozenset(np.dtype(t) for t in (np.uint8, np.int8, np.uint16, np.int16))
_DEQUANT_INPUTS = _QUANT_DTYPES | {np.dtype(np.int32)}


class _Linear(Op):
    attributes = {"axis": Attr("int", 1), "block_size": Attr("int", 0)}
    num_inputs = (2, 3)

    def _scale_shape_ok(self, x: TensorSpec, scale: TensorSpec) -> None:
        """Per tensor (one value), per axis (``[dim]``) or per block (x's shape with the axis
        divided by block_size, rounded up)."""
        block = self.attrs["block_size"]
        if block < 0:
            raise self.error(f"attribute 'block_size' must be >= 0, got {block}")
        if scale.size == 1 and scale.rank <= 1 and not block:
            return
        axis = norm_axis(self, self.attrs["axis"], x.rank)
        if not block:
            if scale.shape != (x.shape[axis],):
                raise self.error(
                    f"scale {fmt_shape(scale.shape)} must be one value or one per "
                    f"entry of axis {axis} of input {fmt_shape(x.shape)}"
                )
            return
        want = x.shape[:axis] + (-(-x.shape[axis] // block),) + x.shape[axis + 1 :]
        if scale.shape != want:
            raise self.error(
                f"scale {fmt_shape(scale.shape)} must have shape {fmt_shape(want)} "
                f"for input {fmt_shape(x.shape)}, axis {axis}, block_size {block}"
            )

    def _expand(self, x: np.ndarray, p: np.ndarray) -> np.ndarray:
        """``p`` (a scale or zero point) shaped to broadcast against ``x``."""
        if p.size == 1 and p.ndim <= 1 and not self.attrs["block_size"]:
            return p.reshape(())
        axis = norm_axis(self, self.attrs["axis"], x.ndim)
        block = self.attrs["block_size"]
        if not block:
            return p.reshape((-1,) + (1,) * (x.ndim - axis - 1))
        return np.repeat(p, block, axis=axis)[(slice(None),) * axis + (slice(0, x.shape[axis]),)]

    def _check_zero_point(
        self, x: TensorSpec, scale: TensorSpec, zero: TensorSpec | None, allowed: frozenset
    ) -> None:
        if zero is None:
            return
        self._check_dtype(zero, allowed, "input 2 (zero point)")
        if zero.shape != scale.shape and not (zero.size == scale.size == 1):
            raise self.error(
                f"zero point {fmt_shape(zero.shape)} must have the shape of the "
                f"scale {fmt_shape(scale.shape)}"
            )

    def keeps_rows(self, batched: Sequence[bool], specs: Sequence[TensorSpec | None]) -> bool:
        if any(batched[1:]):
            return False
        scale = specs[1]
        per_tensor = scale.size == 1 and scale.rank <= 1 and not self.attrs["block_size"]
        return per_tensor or norm_axis(self, self.attrs["axis"], specs[0].rank) != 0


@register
class QuantizeLinear(_Linear):
    op_type = "QuantizeLinear"
    attributes = {
        "axis": Attr("int", 1),
        "block_size": Attr("int", 0),
        "saturate": Attr("int", 1),
        "output_dtype": Attr("int", 0),
        "precision": Attr("int", 0),
    }

    def _setup(self) -> None:
        code = self.attrs["output_dtype"]
        if code and ONNX_DTYPES.get(code) not in _QUANT_DTYPES:
            raise self.error(
                f"output_dtype {code} is not supported (supported: uint8, int8, uint16, int16)"
            )
        self.out_dtype = ONNX_DTYPES[code] if code else None

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        x, scale = inputs[0], inputs[1]
        zero = optional_input(inputs, 2)
        self._check_dtype(x, FLOAT_DTYPES | {np.dtype(np.int32)}, "input 0 (x)")
        self._check_dtype(scale, FLOAT_DTYPES, "input 1 (scale)")
        self._scale_shape_ok(x, scale)
        self._check_zero_point(x, scale, zero, _QUANT_DTYPES)
        dtype = zero.dtype if zero is not None else (self.out_dtype or np.dtype(np.uint8))
        if zero is not None and self.out_dtype is not None and self.out_dtype != dtype:
            raise self.error(
                f"output_dtype {self.out_dtype.name} differs from the zero point's {dtype.name}"
            )
        return [TensorSpec(x.shape, dtype)]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x, scale = inputs[0], inputs[1]
        zero = optional_input(inputs, 2)
        dtype = zero.dtype if zero is not None else (self.out_dtype or np.dtype(np.uint8))
        cdt = np.float64 if x.dtype == np.float64 else np.float32
        q = np.rint(x.astype(cdt) / self._expand(x, scale).astype(cdt))
        if zero is not None:
            q = q + self._expand(x, zero).astype(cdt)
        info = np.iinfo(dtype)
        with np.errstate(invalid="ignore"):
            return [np.clip(np.nan_to_num(q), info.min, info.max).astype(dtype)]


@register
class DequantizeLinear(_Linear):
    op_type = "DequantizeLinear"
    attributes = {
        "axis": Attr("int", 1),
        "block_size": Attr("int", 0),
        "output_dtype": Attr("int", 0),
    }

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        x, scale = inputs[0], inputs[1]
        zero = optional_input(inputs, 2)
        self._check_dtype(x, _DEQUANT_INPUTS, "input 0 (x)")
        self._check_dtype(scale, FLOAT_DTYPES, "input 1 (x_scale)")
        self._scale_shape_ok(x, scale)
        self._check_zero_point(x, scale, zero, frozenset({x.dtype}))
        code = self.attrs["output_dtype"]
        if code and ONNX_DTYPES.get(code) != scale.dtype:
            raise self.error(f"output_dtype {code} must be the scale's dtype {scale.dtype.name}")
        return [TensorSpec(x.shape, scale.dtype)]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x, scale = inputs[0], inputs[1]
        zero = optional_input(inputs, 2)
        cdt = np.float64 if scale.dtype == np.float64 else np.float32
        v = x.astype(cdt)
        if zero is not None:
            v = v - self._expand(x, zero).astype(cdt)
        return [(v * self._expand(x, scale).astype(cdt)).astype(scale.dtype)]
