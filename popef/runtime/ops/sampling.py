"""Sampling at computed positions: GridSample (opset 16 to 22) and AffineGrid (opset 20).

GridSample reads ``X (N, C, D1, ..., Dk)`` at the normalised positions of
``grid (N, O1, ..., Om, k)`` (the last axis lists x, y[, z]: the *last* spatial axis first),
``[-1, 1]`` spanning the input's corner pixels' centres (``align_corners=1``) or their outer
edges (``align_corners=0``). Modes ``nearest`` (ties to even), ``linear``/``bilinear`` and
``cubic``/``bicubic`` (Keys' kernel, a = -0.75) interpolate separably over every spatial axis;
positions outside the input read zeros, the border pixels, or their reflection
(``padding_mode``). AffineGrid makes the grid that an affine transform ``theta`` of the
normalised output coordinates gives.

Batch rules: both keep rows independent when their batched inputs are per sample (X with its
grid; theta), which they always are: every input's leading axis is the batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import product

import numpy as np

from ._static import static_values
from .base import FLOAT_DTYPES, Attr, Op, TensorSpec, fmt_shape, register

__all__ = ["AffineGrid", "GridSample"]

_MODES = {
    "nearest": "nearest",
    "linear": "linear",
    "bilinear": "linear",
    "cubic": "cubic",
    "bicubic": "cubic",
}
_PADDING = ("zeros", "border", "reflection")
_CUBIC_A = -0.75


def _reflect(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``x`` folded into ``[lo, hi]`` by reflecting at the nearer border until it fits."""
    span = hi - lo
    if span <= 0:
        return np.full_like(x, lo)
    below = x < lo
    dx = np.where(below, lo - x, x - hi)
    n = np.floor(dx / span)
    r = dx - n * span
    even = n % 2 == 0
    inside = np.where(below, np.where(even, lo + r, hi - r), np.where(even, hi - r, lo + r))
    return np.where((x < lo) | (x > hi), inside, x)


def _cubic_weights(t: np.ndarray) -> list[np.ndarray]:
    """Keys' cubic convolution weights of the four taps at offsets -1, 0, 1, 2 from floor."""
    a = _CUBIC_A

    def near(d: np.ndarray) -> np.ndarray:  # |d| <= 1
        return ((a + 2) * d - (a + 3)) * d * d + 1

    def far(d: np.ndarray) -> np.ndarray:  # 1 < |d| < 2
        return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a

    return [far(t + 1), near(t), near(1 - t), far(2 - t)]


@register
class GridSample(Op):
    """GridSample(X, grid): ``X`` interpolated at the grid's positions, (N, C, O1, ..., Om)."""

    op_type = "GridSample"
    attributes = {
        "align_corners": Attr("int", 0),
        "mode": Attr("string", "linear"),
        "padding_mode": Attr("string", "zeros"),
    }
    num_inputs = (2, 2)

    def _setup(self) -> None:
        if self.attrs["mode"] not in _MODES:
            raise self.error(
                f"attribute 'mode' must be one of {', '.join(_MODES)}, got {self.attrs['mode']!r}"
            )
        if self.attrs["padding_mode"] not in _PADDING:
            raise self.error(
                f"attribute 'padding_mode' must be one of {', '.join(_PADDING)}, "
                f"got {self.attrs['padding_mode']!r}"
            )
        self.mode = _MODES[self.attrs["mode"]]

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        x, grid = inputs[0], inputs[1]
        assert x is not None and grid is not None
        self._check_dtype(x, FLOAT_DTYPES, "input 0 (X)")
        self._check_dtype(grid, FLOAT_DTYPES, "input 1 (grid)")
        k = x.rank - 2
        if k < 1 or grid.rank != x.rank or grid.shape[0] != x.shape[0] or grid.shape[-1] != k:
            raise self.error(
                f"X {fmt_shape(x.shape)} and grid {fmt_shape(grid.shape)} do not "
                f"fit: expected X (N, C, D1..Dk) and grid (N, O1..Ok, k)"
            )
        if self.mode == "cubic" and k != 2:
            raise self.error(f"mode {self.attrs['mode']!r} needs a 4-D X, got {fmt_shape(x.shape)}")
        return [TensorSpec((x.shape[0], x.shape[1], *grid.shape[1:-1]), x.dtype)]

    def keeps_rows(self, batched: Sequence[bool], specs: Sequence[TensorSpec | None]) -> bool:
        return all(batched)

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x, grid = inputs[0], inputs[1]
        n, c, *dims = x.shape
        k = len(dims)
        out_shape = grid.shape[1:-1]
        align = bool(self.attrs["align_corners"])
        padding = self.attrs["padding_mode"]
        # per spatial axis: its positions in pixels, (N, O1..Ok), in float32 as onnx does
        coords = []
        bounds = []
        for i, d in enumerate(dims):
            g = grid[..., k - 1 - i].astype(np.float32)
            pos = (g + 1) / 2 * (d - 1) if align else ((g + 1) * d - 1) / 2
            lo, hi = (0.0, d - 1.0) if align else (-0.5, d - 0.5)
            if self.mode == "nearest":
                pos = np.rint(pos)
            outside = (pos < lo) | (pos > hi)
            if padding == "border":
                pos = np.where(outside, np.clip(pos, 0, d - 1), pos)
            elif padding == "reflection":
                pos = _reflect(pos, lo, hi)
            coords.append(pos)
            bounds.append((lo, hi))
        # taps per axis: (index array, weight array)
        taps: list[list[tuple[np.ndarray, np.ndarray]]] = []
        for pos in coords:
            if self.mode == "nearest":
                taps.append([(pos.astype(np.int64), np.ones_like(pos))])
                continue
            base = np.floor(pos)
            t = pos - base
            base = base.astype(np.int64)
            if self.mode == "linear":
                taps.append([(base, 1 - t), (base + 1, t)])
            else:
                taps.append([(base + o, w) for o, w in zip((-1, 0, 1, 2), _cubic_weights(t))])
        compute = np.float64 if x.dtype == np.float64 else np.float32
        y = np.zeros((n, *out_shape, c), compute)
        batch = np.arange(n).reshape((n,) + (1,) * len(out_shape))
        xt = np.moveaxis(x, 1, -1).astype(compute, copy=False)  # (N, D1..Dk, C)
        for combo in product(*taps):
            weight = np.ones((n, *out_shape), compute)
            valid = np.ones((n, *out_shape), bool)
            index = []
            for (idx, w), d, (lo, hi) in zip(combo, dims, bounds):
                weight = weight * w
                if padding == "zeros":
                    valid &= (idx >= 0) & (idx < d)
                    idx = np.clip(idx, 0, d - 1)
                elif padding == "border":
                    idx = np.clip(idx, 0, d - 1)
                else:
                    idx = np.clip(
                        _reflect(idx.astype(np.float64), lo, hi).astype(np.int64), 0, d - 1
                    )
                index.append(idx)
            values = xt[(batch, *index)]
            y += np.where(valid, weight, 0)[..., None] * values
        return [np.moveaxis(y, -1, 1).astype(x.dtype)]


@register
class AffineGrid(Op):
    """AffineGrid(theta, size): the sampling grid ``theta · (x, y[, z], 1)`` over the
    normalised coordinates of an output of ``size`` (N, C, H, W) or (N, C, D, H, W)."""

    op_type = "AffineGrid"
    attributes = {"align_corners": Attr("int", 0)}
    num_inputs = (2, 2)
    static_inputs = frozenset({1})

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        theta = inputs[0]
        assert theta is not None
        self._check_dtype(theta, FLOAT_DTYPES, "input 0 (theta)")
        size = static_values(self, inputs, 1, "size")
        assert size is not None
        size = [int(v) for v in size]
        if len(size) not in (4, 5) or min(size) < 1:
            raise self.error(f"size must be positive (N, C, H, W) or (N, C, D, H, W), got {size}")
        k = len(size) - 2
        if theta.shape != (size[0], k, k + 1):
            raise self.error(
                f"theta must be {fmt_shape((size[0], k, k + 1))} for size {size}, "
                f"got {fmt_shape(theta.shape)}"
            )
        return [TensorSpec((size[0], *size[2:], k), theta.dtype)]

    def keeps_rows(self, batched: Sequence[bool], specs: Sequence[TensorSpec | None]) -> bool:
        return False  # size names the batch: it cannot take K times the rows

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        theta, size = inputs[0], inputs[1]
        spatial = [int(v) for v in size[2:]]
        k = len(spatial)
        axes = []
        for d in spatial:
            if self.attrs["align_corners"]:
                axes.append(np.linspace(-1, 1, d) if d > 1 else np.array([-1.0]))
            else:
                axes.append((2 * np.arange(d) + 1) / d - 1)
        mesh = np.meshgrid(*axes, indexing="ij")  # D, H, W order
        points = np.stack([*mesh[::-1], np.ones(tuple(spatial))], axis=-1).reshape(-1, k + 1)
        grid = np.einsum("nij,pj->npi", theta.astype(np.float64), points)
        return [grid.reshape(theta.shape[0], *spatial, k).astype(theta.dtype)]
