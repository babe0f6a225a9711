"""Reductions: ArgMax."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .base import NUMERIC_DTYPES, Attr, Op, TensorSpec, fmt_shape, register

__all__ = ["ArgMax"]


@register
class ArgMax(Op):
    """ArgMax(axis=0, keepdims=1, select_last_index=0) -> int64 indices. Ties go to the first
    (or, with select_last_index=1, the last) maximum."""

    op_type = "ArgMax"
    attributes = {
        "axis": Attr("int", 0),
        "keepdims": Attr("int", 1),
        "select_last_index": Attr("int", 0),
    }
    num_inputs = (1, 1)

    def _setup(self) -> None:
        a = self.attrs
        for name in ("keepdims", "select_last_index"):
            if a[name] not in (0, 1):
                raise self.error(f"attribute '{name}' must be 0 or 1, got {a[name]}")
        self.axis = int(a["axis"])
        self.keepdims = bool(a["keepdims"])
        self.last = bool(a["select_last_index"])

    def _axis(self, shape: tuple[int, ...]) -> int:
        r = len(shape)
        axis = self.axis + r if self.axis < 0 else self.axis
        if not 0 <= axis < r:
            raise self.error(f"axis {self.axis} is out of range for input {fmt_shape(shape)}")
        if shape[axis] == 0:
            raise self.error(
                f"cannot take ArgMax over the empty axis {self.axis} of {fmt_shape(shape)}"
            )
        return axis

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        x = inputs[0]
        assert x is not None
        self._check_dtype(x, NUMERIC_DTYPES)
        axis = self._axis(x.shape)
        if self.keepdims:
            shape = x.shape[:axis] + (1,) + x.shape[axis + 1 :]
        else:
            shape = x.shape[:axis] + x.shape[axis + 1 :]
        return [TensorSpec(shape, np.int64)]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x = inputs[0]
        axis = self._axis(x.shape)
        if self.last:
            n = x.shape[axis]
            idx = np.argmax(np.flip(x, axis), axis=axis, keepdims=self.keepdims)
            idx = (n - 1) - idx
        else:
            idx = np.argmax(x, axis=axis, keepdims=self.keepdims)
        return [np.asarray(idx, dtype=np.int64)]
