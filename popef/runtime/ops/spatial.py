"""Rearranging spatial data (opset 18): Col2Im (sliding blocks summed back into an image, the
inverse of im2col) and CenterCropPad (crop or zero-pad each named axis around its centre).

Both take the sizes that fix their output shape as inputs (Col2Im's ``image_shape`` and
``block_shape``, CenterCropPad's ``shape``): those must be constants at load.

Batch rules: Col2Im keeps the rows of its leading axis (N) independent; CenterCropPad does
unless it crops or pads that axis.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._static import INDEX_DTYPES, norm_axes, static_values
from .base import ALL_DTYPES, NUMERIC_DTYPES, Attr, Op, TensorSpec, fmt_shape, register

__all__ = ["CenterCropPad", "Col2Im"]

_I64 = frozenset({np.dtype(np.int64)})


def _values(
    op: Op,
    inputs: Sequence[TensorSpec | None],
    index: int,
    name: str,
    dtypes: frozenset,
    arrays: Sequence[np.ndarray | None] | None,
) -> tuple[int, ...]:
    """A 1-D integer input's values: the array handed to ``run``, else its load constant."""
    if arrays is not None:
        return tuple(int(v) for v in np.asarray(arrays[index]).reshape(-1))
    values = static_values(op, inputs, index, name, dtypes)
    assert values is not None
    return tuple(int(v) for v in values)


@register
class Col2Im(Op):
    """Col2Im(input, image_shape, block_shape): ``input`` ``(N, C * prod(block_shape), L)``
    holds, for each of the ``L`` positions of a block sliding over the (padded) image, the
    block's values; they are summed back into ``(N, C, *image_shape)``."""

    op_type = "Col2Im"
    attributes = {
        "dilations": Attr("ints", None),
        "pads": Attr("ints", None),
        "strides": Attr("ints", None),
    }
    num_inputs = (3, 3)
    static_inputs = frozenset({1, 2})

    def _plan(
        self, inputs: Sequence[TensorSpec | None], arrays: Sequence[np.ndarray | None] | None = None
    ) -> dict:
        x = inputs[0]
        assert x is not None
        image = _values(self, inputs, 1, "image_shape", _I64, arrays)
        block = _values(self, inputs, 2, "block_shape", _I64, arrays)
        n = len(image)
        if n < 1 or len(block) != n:
            raise self.error(
                f"image_shape {list(image)} and block_shape {list(block)} must "
                "name the same number (at least 1) of spatial axes"
            )
        dilations = self.attrs["dilations"] or (1,) * n
        strides = self.attrs["strides"] or (1,) * n
        pads = self.attrs["pads"] or (0,) * (2 * n)
        if len(dilations) != n or len(strides) != n or len(pads) != 2 * n:
            raise self.error(
                f"dilations, strides and pads must have {n}, {n} and {2 * n} "
                f"values, got {list(dilations)}, {list(strides)} and {list(pads)}"
            )
        if (
            min(image) < 1
            or min(block) < 1
            or min(dilations) < 1
            or min(strides) < 1
            or min(pads) < 0
        ):
            raise self.error(
                "image_shape, block_shape, dilations and strides must be positive "
                "and pads non-negative"
            )
        blocks = []
        for i in range(n):
            span = dilations[i] * (block[i] - 1) + 1
            count = (image[i] + pads[i] + pads[i + n] - span) // strides[i] + 1
            if count < 1:
                raise self.error(
                    f"a block of {block[i]} (dilation {dilations[i]}) does not "
                    f"fit spatial axis {i} of {image[i]} with its pads"
                )
            blocks.append(count)
        size = int(np.prod(block))
        if x.rank != 3 or x.shape[1] % size or x.shape[2] != int(np.prod(blocks)):
            raise self.error(
                f"input must be [N, C * {size}, {int(np.prod(blocks))}] (blocks "
                f"{blocks}), got {fmt_shape(x.shape)}"
            )
        return {
            "image": image,
            "block": block,
            "dilations": dilations,
            "strides": strides,
            "pads": pads,
            "blocks": tuple(blocks),
            "channels": x.shape[1] // size,
        }

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        x = inputs[0]
        assert x is not None
        self._check_dtype(x, NUMERIC_DTYPES)
        plan = self._plan(inputs)
        return [TensorSpec((x.shape[0], plan["channels"], *plan["image"]), x.dtype)]

    def keeps_rows(self, batched: Sequence[bool], specs: Sequence[TensorSpec | None]) -> bool:
        return True

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x = inputs[0]
        p = self._plan([None if a is None else TensorSpec.of(a) for a in inputs], inputs)
        n = len(p["image"])
        pads = p["pads"]
        # (N, C, block..., blocks...)
        cols = x.reshape(x.shape[0], p["channels"], *p["block"], *p["blocks"])
        padded = np.zeros(
            (x.shape[0], p["channels"], *(p["image"][i] + pads[i] + pads[i + n] for i in range(n))),
            x.dtype,
        )
        for offset in np.ndindex(*p["block"]):
            where = tuple(
                slice(o * d, o * d + (count - 1) * s + 1, s)
                for o, d, s, count in zip(offset, p["dilations"], p["strides"], p["blocks"])
            )
            padded[(slice(None), slice(None), *where)] += cols[(slice(None), slice(None), *offset)]
        crop = tuple(slice(pads[i], pads[i] + p["image"][i]) for i in range(n))
        return [padded[(slice(None), slice(None), *crop)].copy()]


@register
class CenterCropPad(Op):
    """CenterCropPad(input_data, shape): each axis in ``axes`` (all by default) cropped or
    zero-padded to ``shape``'s size, centred (an odd difference leaves the extra element at
    the end)."""

    op_type = "CenterCropPad"
    attributes = {"axes": Attr("ints", None)}
    num_inputs = (2, 2)
    static_inputs = frozenset({1})

    def _plan(
        self, inputs: Sequence[TensorSpec | None], arrays: Sequence[np.ndarray | None] | None = None
    ) -> dict[int, int]:
        """axis -> its new size."""
        x = inputs[0]
        assert x is not None
        axes = self.attrs["axes"]
        axes = norm_axes(self, axes, x.rank) if axes is not None else tuple(range(x.rank))
        sizes = _values(self, inputs, 1, "shape", INDEX_DTYPES, arrays)
        if len(sizes) != len(axes) or min(sizes, default=0) < 0:
            raise self.error(
                f"shape {list(sizes)} must give one non-negative size for each of "
                f"the {len(axes)} axes {list(axes)}"
            )
        return dict(zip(axes, sizes))

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        x = inputs[0]
        assert x is not None
        self._check_dtype(x, ALL_DTYPES)
        plan = self._plan(inputs)
        return [TensorSpec(tuple(plan.get(i, d) for i, d in enumerate(x.shape)), x.dtype)]

    def keeps_rows(self, batched: Sequence[bool], specs: Sequence[TensorSpec | None]) -> bool:
        return 0 not in self._plan(specs)

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x = inputs[0]
        plan = self._plan([None if a is None else TensorSpec.of(a) for a in inputs], inputs)
        shape = tuple(plan.get(i, d) for i, d in enumerate(x.shape))
        source, target = [], []
        for dim, size in zip(x.shape, shape):
            keep = min(dim, size)
            source.append(slice((dim - keep) // 2, (dim - keep) // 2 + keep))
            target.append(slice((size - keep) // 2, (size - keep) // 2 + keep))
        out = np.zeros(shape, x.dtype)
        out[tuple(target)] = x[tuple(source)]
        return [out]
