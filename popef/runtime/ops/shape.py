"""Shape manipulation: Reshape, Flatten, Transpose, Concat. Outputs are views where numpy
allows (never writable aliases that the op itself writes to)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .base import ALL_DTYPES, VARIADIC, Attr, Op, TensorSpec, fmt_shape, register

__all__ = ["Concat", "Flatten", "Reshape", "Transpose"]

_INT64 = np.dtype(np.int64)


@register
class Reshape(Op):
    """Reshape(data, shape): ``shape`` is a 1-D int64 tensor; 0 copies the input dim (unless
    allowzero=1, where 0 is a real zero-sized dim) and one -1 is inferred. At load time the
    shape must be a constant: ``infer`` reads it from ``constant_inputs[1]``."""

    op_type = "Reshape"
    attributes = {"allowzero": Attr("int", 0)}
    num_inputs = (2, 2)

    def _setup(self) -> None:
        if self.attrs["allowzero"] not in (0, 1):
            raise self.error(f"attribute 'allowzero' must be 0 or 1, got {self.attrs['allowzero']}")
        self.allowzero = bool(self.attrs["allowzero"])
        self._targets: dict[tuple, tuple[int, ...]] = {}

    def target_shape(self, in_shape: tuple[int, ...], spec: Sequence[int]) -> tuple[int, ...]:
        """Resolve the ``shape`` values against the input shape (0 and -1 rules)."""
        key = (in_shape, tuple(spec))
        hit = self._targets.get(key)
        if hit is not None:
            return hit
        spec = [int(v) for v in spec]
        shown = f"{fmt_shape(in_shape)} to {spec}"
        if any(v < -1 for v in spec):
            raise self.error(f"cannot reshape {shown}: dims must be >= -1")
        if spec.count(-1) > 1:
            raise self.error(f"cannot reshape {shown}: more than one -1")
        if self.allowzero and -1 in spec and 0 in spec:
            raise self.error(f"cannot reshape {shown}: allowzero=1 forbids 0 together with -1")
        out = []
        for i, v in enumerate(spec):
            if v == 0 and not self.allowzero:
                if i >= len(in_shape):
                    raise self.error(
                        f"cannot reshape {shown}: 0 at position {i} has no input dim to copy"
                    )
                v = in_shape[i]
            out.append(v)
        total = math.prod(in_shape)
        if -1 in out:
            at = out.index(-1)
            known = math.prod(v for v in out if v != -1)
            if known == 0 or total % known:
                raise self.error(f"cannot reshape {shown}: {total} elements do not fit")
            out[at] = total // known
        elif math.prod(out) != total:
            raise self.error(f"cannot reshape {shown}: {total} elements vs {math.prod(out)}")
        result = tuple(out)
        if len(self._targets) > 32:
            self._targets.clear()
        self._targets[key] = result
        return result

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        x, s = inputs
        assert x is not None and s is not None
        if s.dtype != _INT64 or s.rank != 1:
            raise self.error(f"the shape input must be a 1-D int64 tensor, got {s}")
        values = self.constant_inputs.get(1)
        if values is None:
            raise self.error("the shape input (input 1) must be a constant (weight)")
        values = np.asarray(values)
        if values.shape != s.shape:
            raise self.error(
                f"constant shape input {fmt_shape(values.shape)} does not match its spec {s}"
            )
        return [TensorSpec(self.target_shape(x.shape, values.tolist()), x.dtype)]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x, s = inputs[0], inputs[1]
        return [x.reshape(self.target_shape(x.shape, s.tolist()))]


@register
class Flatten(Op):
    """Flatten(axis=1): (d0, ..., dn) -> (d0*...*d(axis-1), d(axis)*...*dn); axis in [-r, r]."""

    op_type = "Flatten"
    attributes = {"axis": Attr("int", 1)}
    num_inputs = (1, 1)

    def _setup(self) -> None:
        self.axis = int(self.attrs["axis"])

    def out_shape(self, shape: tuple[int, ...]) -> tuple[int, int]:
        r = len(shape)
        axis = self.axis + r if self.axis < 0 else self.axis
        if not 0 <= axis <= r:
            raise self.error(f"axis {self.axis} is out of range for input {fmt_shape(shape)}")
        return (math.prod(shape[:axis]), math.prod(shape[axis:]))

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        x = inputs[0]
        assert x is not None
        return [TensorSpec(self.out_shape(x.shape), x.dtype)]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x = inputs[0]
        return [x.reshape(self.out_shape(x.shape))]


@register
class Transpose(Op):
    """Transpose(perm): default reverses the dims. Returns a view."""

    op_type = "Transpose"
    attributes = {"perm": Attr("ints", None)}
    num_inputs = (1, 1)

    def _setup(self) -> None:
        perm = self.attrs["perm"]
        if perm is not None and sorted(perm) != list(range(len(perm))):
            raise self.error(f"attribute 'perm' must be a permutation of 0..n-1, got {list(perm)}")
        self.perm: tuple[int, ...] | None = None if perm is None else tuple(perm)

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        x = inputs[0]
        assert x is not None
        perm = self.perm if self.perm is not None else tuple(range(x.rank))[::-1]
        if len(perm) != x.rank:
            raise self.error(f"perm {list(perm)} does not fit input {fmt_shape(x.shape)}")
        return [TensorSpec(tuple(x.shape[p] for p in perm), x.dtype)]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x = inputs[0]
        if self.perm is not None and len(self.perm) != x.ndim:
            raise self.error(f"perm {list(self.perm)} does not fit input {fmt_shape(x.shape)}")
        return [np.transpose(x, self.perm)]


@register
class Concat(Op):
    """Concat(axis): every input has the same rank and dtype, and the same dims except along
    ``axis`` (negative counts from the end)."""

    op_type = "Concat"
    attributes = {"axis": Attr("int")}
    num_inputs = (1, VARIADIC)

    def _setup(self) -> None:
        self.axis = int(self.attrs["axis"])

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        first = inputs[0]
        assert first is not None
        self._check_dtype(first, ALL_DTYPES)
        self._check_same_dtype(inputs)
        r = first.rank
        axis = self.axis + r if self.axis < 0 else self.axis
        if not 0 <= axis < r:
            raise self.error(f"axis {self.axis} is out of range for input {fmt_shape(first.shape)}")
        total = 0
        for i, s in enumerate(inputs):
            assert s is not None
            if s.rank != r or any(
                a != b for j, (a, b) in enumerate(zip(s.shape, first.shape)) if j != axis
            ):
                raise self.error(
                    f"input {i} {fmt_shape(s.shape)} does not match input 0 "
                    f"{fmt_shape(first.shape)} outside axis {self.axis}"
                )
            total += s.shape[axis]
        shape = first.shape[:axis] + (total,) + first.shape[axis + 1 :]
        return [TensorSpec(shape, first.dtype)]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        return [np.concatenate(inputs, axis=self.axis)]
