"""Shape manipulation: Reshape, Flatten, Transpose, Concat, Squeeze, Unsqueeze, Expand, Tile,
Split, Slice, Pad, DepthToSpace, SpaceToDepth. Outputs are views where numpy allows (never
writable aliases that the op itself writes to)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ._static import norm_axes, norm_axis, optional_input, static_values
from .base import ALL_DTYPES, VARIADIC, Attr, Op, TensorSpec, fmt_shape, register

__all__ = [
    "Concat",
    "DepthToSpace",
    "Expand",
    "Flatten",
    "Pad",
    "Reshape",
    "Slice",
    "SpaceToDepth",
    "Split",
    "Squeeze",
    "Tile",
    "Transpose",
    "Unsqueeze",
]

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


# --------------------------------------------------------------------------------------------
# ops whose attributes became inputs (opset 10-18): both forms are accepted (see _static)


def _rows_untouched(axes: Sequence[int]) -> bool:
    return 0 not in axes


class _AxesReshape(Op):
    """Squeeze and Unsqueeze: a reshape driven by ``axes`` (attribute before opset 13, input 1
    since); subclasses normalise the axes and compute the output shape."""

    attributes = {"axes": Attr("ints", None)}
    num_inputs = (1, 2)

    def _axes(self, rank: int, given: Sequence[int] | None) -> tuple[int, ...] | None:
        raise NotImplementedError

    def out_shape(self, shape: tuple[int, ...], axes: tuple[int, ...] | None) -> tuple[int, ...]:
        raise NotImplementedError

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        x = inputs[0]
        assert x is not None
        given = static_values(self, inputs, 1, "axes")
        axes = self._axes(x.rank, None if given is None else given.tolist())
        return [TensorSpec(self.out_shape(x.shape, axes), x.dtype)]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x = inputs[0]
        given = optional_input(inputs, 1)
        axes = self._axes(x.ndim, None if given is None else given.tolist())
        return [x.reshape(self.out_shape(x.shape, axes))]


@register
class Squeeze(_AxesReshape):
    """Squeeze(data, axes): removes the listed dims (each must be 1), or every dim of size 1
    when no axes are given. ``axes`` is an attribute before opset 13, an input since."""

    op_type = "Squeeze"

    def _axes(self, rank: int, given: Sequence[int] | None) -> tuple[int, ...] | None:
        if self.attrs["axes"] is not None:
            given = self.attrs["axes"]
        return None if given is None else norm_axes(self, given, rank)

    def out_shape(self, shape: tuple[int, ...], axes: tuple[int, ...] | None) -> tuple[int, ...]:
        if axes is None:
            return tuple(d for d in shape if d != 1)
        for a in axes:
            if shape[a] != 1:
                raise self.error(
                    f"cannot squeeze axis {a} of {fmt_shape(shape)}: its dim is {shape[a]}, not 1"
                )
        return tuple(d for i, d in enumerate(shape) if i not in axes)

    def keeps_rows(self, batched: Sequence[bool], specs: Sequence[TensorSpec | None]) -> bool:
        if any(batched[1:]):
            return False
        given = self.constant_inputs.get(1)
        axes = self._axes(specs[0].rank, None if given is None else given.tolist())
        return axes is not None and _rows_untouched(axes)


@register
class Unsqueeze(_AxesReshape):
    """Unsqueeze(data, axes): inserts dims of size 1 at ``axes`` (positions in the output).
    ``axes`` is an attribute before opset 13, an input since."""

    op_type = "Unsqueeze"

    def _axes(self, rank: int, given: Sequence[int] | None) -> tuple[int, ...]:
        if self.attrs["axes"] is not None:
            given = self.attrs["axes"]
        if given is None:
            raise self.error("axes are required (attribute before opset 13, input 1 since)")
        return norm_axes(self, given, rank + len(given))

    def out_shape(self, shape: tuple[int, ...], axes: tuple[int, ...]) -> tuple[int, ...]:
        dims = iter(shape)
        return tuple(1 if i in axes else next(dims) for i in range(len(shape) + len(axes)))

    def keeps_rows(self, batched: Sequence[bool], specs: Sequence[TensorSpec | None]) -> bool:
        if any(batched[1:]):
            return False
        given = self.constant_inputs.get(1)
        return _rows_untouched(self._axes(specs[0].rank, None if given is None else given.tolist()))


@register
class Expand(Op):
    """Expand(input, shape): broadcasts the input and the constant 1-D int64 ``shape`` together
    (numpy rules, in both directions: a 1 in ``shape`` keeps the input's dim)."""

    op_type = "Expand"
    num_inputs = (2, 2)

    def out_shape(self, shape: tuple[int, ...], target: Sequence[int]) -> tuple[int, ...]:
        target = tuple(int(v) for v in target)
        if any(v < 0 for v in target):
            raise self.error(f"shape {list(target)} has a negative dim")
        try:
            return tuple(np.broadcast_shapes(shape, target))
        except ValueError:
            raise self.error(f"cannot expand {fmt_shape(shape)} to {list(target)}") from None

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        x = inputs[0]
        assert x is not None
        target = static_values(self, inputs, 1, "shape", frozenset({_INT64}))
        return [TensorSpec(self.out_shape(x.shape, target.tolist()), x.dtype)]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x, target = inputs[0], inputs[1]
        out = np.broadcast_to(x, self.out_shape(x.shape, target.tolist()))
        return [np.array(out)]

    def keeps_rows(self, batched: Sequence[bool], specs: Sequence[TensorSpec | None]) -> bool:
        # the leading axis stays the input's when the rank does not grow (its dim is checked
        # by the scaled shape inference)
        target = self.constant_inputs.get(1)
        return not batched[1] and target is not None and len(target) <= specs[0].rank


@register
class Tile(Op):
    """Tile(input, repeats): the input repeated ``repeats[i]`` times along each axis
    (``repeats``: constant 1-D int64, one per axis)."""

    op_type = "Tile"
    num_inputs = (2, 2)

    def out_shape(self, shape: tuple[int, ...], repeats: Sequence[int]) -> tuple[int, ...]:
        repeats = [int(r) for r in repeats]
        if len(repeats) != len(shape) or any(r < 0 for r in repeats):
            raise self.error(
                f"repeats {repeats} must be {len(shape)} non-negative values for "
                f"input {fmt_shape(shape)}"
            )
        return tuple(d * r for d, r in zip(shape, repeats))

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        x = inputs[0]
        assert x is not None
        repeats = static_values(self, inputs, 1, "repeats", frozenset({_INT64}))
        return [TensorSpec(self.out_shape(x.shape, repeats.tolist()), x.dtype)]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x, repeats = inputs[0], inputs[1].tolist()
        self.out_shape(x.shape, repeats)
        return [np.tile(x, repeats) if x.ndim else x.copy()]

    def keeps_rows(self, batched: Sequence[bool], specs: Sequence[TensorSpec | None]) -> bool:
        repeats = self.constant_inputs.get(1)
        return not batched[1] and repeats is not None and len(repeats) > 0 and repeats[0] == 1


@register
class Split(Op):
    """Split(input, split): one output per part along ``axis``. Part sizes come from ``split``
    (an attribute before opset 13, an input since), else equal parts — with ``num_outputs``
    (opset 18) the last part may be smaller."""

    op_type = "Split"
    attributes = {
        "axis": Attr("int", 0),
        "split": Attr("ints", None),
        "num_outputs": Attr("int", None),
    }
    num_inputs = (1, 2)
    num_outputs = (1, 2**16)

    def _setup(self) -> None:
        n = self.attrs["num_outputs"]
        if n is not None and n != self.output_count:
            raise self.error(
                f"attribute 'num_outputs' is {n} but the node has {self.output_count} outputs"
            )

    def sizes(self, shape: tuple[int, ...], given: Sequence[int] | None) -> tuple[int, list[int]]:
        axis = norm_axis(self, self.attrs["axis"], len(shape))
        dim = shape[axis]
        if self.attrs["split"] is not None:
            given = self.attrs["split"]
        n = self.output_count
        if given is not None:
            sizes = [int(v) for v in given]
            if len(sizes) != n or any(v < 0 for v in sizes) or sum(sizes) != dim:
                raise self.error(
                    f"split {sizes} must be {n} non-negative sizes adding up to "
                    f"{dim} (axis {axis} of {fmt_shape(shape)})"
                )
        elif self.attrs["num_outputs"] is not None:
            part = -(-dim // n)
            sizes = [min(part, max(dim - i * part, 0)) for i in range(n)]
            if sizes[-1] == 0 and dim:
                raise self.error(f"cannot split dim {dim} into {n} parts of {part}")
        else:
            if dim % n:
                raise self.error(
                    f"cannot split dim {dim} (axis {axis} of {fmt_shape(shape)}) "
                    f"into {n} equal parts"
                )
            sizes = [dim // n] * n
        return axis, sizes

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        x = inputs[0]
        assert x is not None
        given = static_values(self, inputs, 1, "split", frozenset({_INT64}))
        axis, sizes = self.sizes(x.shape, None if given is None else given.tolist())
        return [TensorSpec(x.shape[:axis] + (s,) + x.shape[axis + 1 :], x.dtype) for s in sizes]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x = inputs[0]
        given = optional_input(inputs, 1)
        axis, sizes = self.sizes(x.shape, None if given is None else given.tolist())
        return np.split(x, np.cumsum(sizes)[:-1].tolist(), axis=axis)

    def keeps_rows(self, batched: Sequence[bool], specs: Sequence[TensorSpec | None]) -> bool:
        return not any(batched[1:]) and norm_axis(self, self.attrs["axis"], specs[0].rank) != 0


@register
class Slice(Op):
    """Slice(data, starts, ends, axes, steps): ONNX clamping (negative values count from the
    end; out-of-range values clamp; ``steps`` may be negative). ``starts``/``ends``/``axes``
    are attributes before opset 10, constant inputs since."""

    op_type = "Slice"
    attributes = {
        "starts": Attr("ints", None),
        "ends": Attr("ints", None),
        "axes": Attr("ints", None),
    }
    num_inputs = (1, 5)

    def slices(self, shape: tuple[int, ...], starts, ends, axes, steps) -> tuple[slice, ...]:
        a = self.attrs
        if a["starts"] is not None or a["ends"] is not None:
            starts, ends, axes, steps = a["starts"], a["ends"], a["axes"], None
        if starts is None or ends is None:
            raise self.error(
                "starts and ends are required (attributes before opset 10, inputs 1 and 2 since)"
            )
        starts, ends = [int(v) for v in starts], [int(v) for v in ends]
        rank = len(shape)
        axes = list(range(len(starts))) if axes is None else [int(v) for v in axes]
        steps = [1] * len(starts) if steps is None else [int(v) for v in steps]
        if not len(starts) == len(ends) == len(axes) == len(steps):
            raise self.error(
                f"starts {starts}, ends {ends}, axes {axes} and steps {steps} "
                "must have the same length"
            )
        out = [slice(None)] * rank
        for axis, start, end, step in zip(norm_axes(self, axes, rank), starts, ends, steps):
            dim = shape[axis]
            if step == 0:
                raise self.error(f"step 0 on axis {axis}")
            start = start + dim if start < 0 else start
            end = end + dim if end < 0 else end
            if step > 0:
                start, end = min(max(start, 0), dim), min(max(end, 0), dim)
            else:
                start, end = min(max(start, 0), dim - 1), min(max(end, -1), dim - 1)
            out[axis] = slice(start, None if end < 0 else end, step)
        return tuple(out)

    def _values(self, inputs: Sequence, getter) -> list:
        return [
            getter(i, name) for i, name in ((1, "starts"), (2, "ends"), (3, "axes"), (4, "steps"))
        ]

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        x = inputs[0]
        assert x is not None
        values = self._values(inputs, lambda i, name: static_values(self, inputs, i, name))
        lists = [None if v is None else v.tolist() for v in values]
        index = self.slices(x.shape, *lists)
        shape = tuple(len(range(*s.indices(d))) for s, d in zip(index, x.shape))
        return [TensorSpec(shape, x.dtype)]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x = inputs[0]
        lists = self._values(inputs, lambda i, name: optional_input(inputs, i))
        lists = [None if v is None else v.tolist() for v in lists]
        return [x[self.slices(x.shape, *lists)]]

    def keeps_rows(self, batched: Sequence[bool], specs: Sequence[TensorSpec | None]) -> bool:
        if any(batched[1:]):
            return False
        x = specs[0]
        values = [self.constant_inputs.get(i) for i in range(1, 5)]
        index = self.slices(x.shape, *(None if v is None else v.tolist() for v in values))
        return index[0] == slice(None) if index else False


@register
class Pad(Op):
    """Pad(data, pads, constant_value, axes): ``pads`` = begins then ends per axis (negative
    crops); modes constant, reflect, edge, wrap. Before opset 11 ``pads`` and ``value`` are
    attributes."""

    op_type = "Pad"
    attributes = {
        "mode": Attr("string", "constant"),
        "pads": Attr("ints", None),
        "value": Attr("float", 0.0),
    }
    num_inputs = (1, 4)

    _MODES = {"constant": "constant", "reflect": "reflect", "edge": "edge", "wrap": "wrap"}

    def _setup(self) -> None:
        if self.attrs["mode"] not in self._MODES:
            raise self.error(
                f"attribute 'mode' must be one of {', '.join(self._MODES)}, got "
                f"{self.attrs['mode']!r}"
            )

    def widths(self, shape: tuple[int, ...], pads, axes) -> list[tuple[int, int]]:
        if self.attrs["pads"] is not None:
            pads = self.attrs["pads"]
        if pads is None:
            raise self.error("pads are required (attribute before opset 11, input 1 since)")
        pads = [int(v) for v in pads]
        rank = len(shape)
        axes = list(range(rank)) if axes is None else list(norm_axes(self, axes, rank))
        if len(pads) != 2 * len(axes):
            raise self.error(
                f"pads {pads} must hold {2 * len(axes)} values (begins and ends "
                f"of axes {axes}) for input {fmt_shape(shape)}"
            )
        widths = [(0, 0)] * rank
        for k, axis in enumerate(axes):
            widths[axis] = (pads[k], pads[k + len(axes)])
            if shape[axis] + pads[k] + pads[k + len(axes)] < 0:
                raise self.error(
                    f"pads {pads} crop more than axis {axis} of {fmt_shape(shape)} holds"
                )
        return widths

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        x = inputs[0]
        assert x is not None
        self._check_dtype(x, ALL_DTYPES)
        pads = static_values(self, inputs, 1, "pads", frozenset({_INT64}))
        axes = static_values(self, inputs, 3, "axes")
        value = optional_input(inputs, 2)
        if value is not None and (value.size != 1 or value.dtype != x.dtype):
            raise self.error(f"constant_value must be one {x.dtype.name} value, got {value}")
        widths = self.widths(
            x.shape,
            None if pads is None else pads.tolist(),
            None if axes is None else axes.tolist(),
        )
        mode = self.attrs["mode"]
        for axis, ((b, e), d) in enumerate(zip(widths, x.shape)):
            if mode != "constant" and (b > 0 or e > 0) and d == 0:
                raise self.error(f"mode {mode!r} cannot pad the empty axis {axis}")
        return [TensorSpec(tuple(d + b + e for d, (b, e) in zip(x.shape, widths)), x.dtype)]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x = inputs[0]
        pads, value, axes = (optional_input(inputs, i) for i in (1, 2, 3))
        widths = self.widths(
            x.shape,
            None if pads is None else pads.tolist(),
            None if axes is None else axes.tolist(),
        )
        # negative pads crop first, then numpy pads with the positive parts
        crop = tuple(
            slice(-b if b < 0 else 0, x.shape[i] + e if e < 0 else None)
            for i, (b, e) in enumerate(widths)
        )
        x = x[crop]
        positive = [(max(b, 0), max(e, 0)) for b, e in widths]
        mode = self.attrs["mode"]
        if mode == "constant":
            fill = value.reshape(()) if value is not None else self.attrs["value"]
            return [
                np.pad(x, positive, mode="constant", constant_values=fill).astype(
                    x.dtype, copy=False
                )
            ]
        return [np.pad(x, positive, mode=self._MODES[mode])]


class _BlockRearrange(Op):
    """DepthToSpace/SpaceToDepth: NCHW with a ``blocksize`` and a ``mode`` (DCR or CRD)."""

    attributes = {"blocksize": Attr("int"), "mode": Attr("string", "DCR")}
    num_inputs = (1, 1)

    def _setup(self) -> None:
        self.block = int(self.attrs["blocksize"])
        if self.block < 1:
            raise self.error(f"attribute 'blocksize' must be >= 1, got {self.block}")
        if self.attrs["mode"] not in ("DCR", "CRD"):
            raise self.error(f"attribute 'mode' must be DCR or CRD, got {self.attrs['mode']!r}")

    def keeps_rows(self, batched: Sequence[bool], specs: Sequence[TensorSpec | None]) -> bool:
        return True


@register
class DepthToSpace(_BlockRearrange):
    """DepthToSpace: (N, C·b², H, W) -> (N, C, H·b, W·b), mode DCR (depth-column-row, the
    default) or CRD."""

    op_type = "DepthToSpace"

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        x = inputs[0]
        assert x is not None
        b = self.block
        if x.rank != 4 or x.shape[1] % (b * b):
            raise self.error(
                f"input must be 4-D with channels divisible by {b * b}, got {fmt_shape(x.shape)}"
            )
        n, c, h, w = x.shape
        return [TensorSpec((n, c // (b * b), h * b, w * b), x.dtype)]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x = inputs[0]
        n, c, h, w = x.shape
        b = self.block
        if self.attrs["mode"] == "DCR":
            y = x.reshape(n, b, b, c // (b * b), h, w).transpose(0, 3, 4, 1, 5, 2)
        else:
            y = x.reshape(n, c // (b * b), b, b, h, w).transpose(0, 1, 4, 2, 5, 3)
        return [y.reshape(n, c // (b * b), h * b, w * b)]


@register
class SpaceToDepth(_BlockRearrange):
    """SpaceToDepth: (N, C, H·b, W·b) -> (N, C·b², H, W), the inverse of DepthToSpace in the
    same mode: DCR (the default) or CRD (opset 28)."""

    op_type = "SpaceToDepth"

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        x = inputs[0]
        assert x is not None
        b = self.block
        if x.rank != 4 or x.shape[2] % b or x.shape[3] % b:
            raise self.error(
                f"input must be 4-D with H and W divisible by {b}, got {fmt_shape(x.shape)}"
            )
        n, c, h, w = x.shape
        return [TensorSpec((n, c * b * b, h // b, w // b), x.dtype)]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x = inputs[0]
        n, c, h, w = x.shape
        b = self.block
        y = x.reshape(n, c, h // b, b, w // b, b)
        y = (
            y.transpose(0, 3, 5, 1, 2, 4)
            if self.attrs["mode"] == "DCR"
            else y.transpose(0, 1, 3, 5, 2, 4)
        )
        return [y.reshape(n, c * b * b, h // b, w // b)]
