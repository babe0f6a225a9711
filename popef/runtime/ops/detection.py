"""Detection ops: DeformConv (opset 19; the ``mask`` input, opset 22) and RoiAlign (opsets 10
to 22), both on 2-D images ``[N, C, H, W]``.

Both sample the image bilinearly at fractional positions: DeformConv at each kernel tap moved
by a learnt offset (a position outside the image reads 0, corner by corner), RoiAlign on a
regular grid inside each region of interest (as onnxruntime's and onnx's reference kernels:
a sample more than one pixel outside is 0, one within clamps to the edge; ``mode="max"``
takes the largest of the four weighted corners). Both output shapes are fixed by the inputs'
shapes and the attributes, never by the data.

RoiAlign's ``coordinate_transformation_mode`` is ``half_pixel`` by default (opset 16 on); the
opset-10 op, which has no such attribute, behaves as ``output_half_pixel``, and the importer
says so when it imports an older model.

Batch rules: DeformConv keeps rows independent when its weights and bias are not batched
(X, offset and mask share the leading axis N). RoiAlign's output rows follow the regions, not
X: they stay independent when X is not batched (each region reads the shared image); a batched
X is never folded, since ``batch_indices`` point into the rows of one step.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .base import FLOAT_DTYPES, Attr, Op, TensorSpec, fmt_shape, register

__all__ = ["DeformConv", "RoiAlign"]

_I64 = frozenset({np.dtype(np.int64)})
#: most bilinear samples RoiAlign takes for one region (grid cells times output cells): a bound
#: on the memory a region with a huge adaptive grid (``sampling_ratio=0``) would need
MAX_SAMPLES_PER_ROI = 1 << 22


def _work_dtype(dtype: np.dtype) -> np.dtype:
    """Single precision for float16 and float32, double for float64 (as onnxruntime)."""
    return np.dtype(np.float64) if dtype == np.float64 else np.dtype(np.float32)


@register
class DeformConv(Op):
    """DeformConv(X, W, offset[, B, mask]) -> Y: a 2-D convolution whose kernel taps are moved
    by ``offset`` ``[N, offset_group * kH * kW * 2, oH, oW]`` ((dy, dx) per tap and output
    position) and, with ``mask`` ``[N, offset_group * kH * kW, oH, oW]``, scaled per tap.
    The channels of X are split into ``offset_group`` groups, each with its own offsets; W is
    ``[M, C / group, kH, kW]`` as for Conv."""

    op_type = "DeformConv"
    attributes = {
        "dilations": Attr("ints", None),
        "group": Attr("int", 1),
        "kernel_shape": Attr("ints", None),
        "offset_group": Attr("int", 1),
        "pads": Attr("ints", None),
        "strides": Attr("ints", None),
    }
    num_inputs = (3, 5)

    def _setup(self) -> None:
        for name in ("group", "offset_group"):
            if self.attrs[name] < 1:
                raise self.error(f"attribute '{name}' must be positive, got {self.attrs[name]}")
        for name, count, least in (
            ("dilations", 2, 1),
            ("kernel_shape", 2, 1),
            ("strides", 2, 1),
            ("pads", 4, 0),
        ):
            value = self.attrs[name]
            if value is None:
                continue
            if len(value) != count or min(value) < least:
                raise self.error(
                    f"attribute '{name}' must hold {count} values of at least "
                    f"{least} (2-D convolution), got {list(value)}"
                )

    def _plan(self, inputs: Sequence[TensorSpec | None]) -> dict:
        x, w, offset, bias, mask = (list(inputs) + [None, None])[:5]
        assert x is not None and w is not None and offset is not None
        self._check_dtype(x, FLOAT_DTYPES, "input 0 (X)")
        self._check_same_dtype([x, w, offset, bias, mask])
        if x.rank != 4:
            raise self.error(
                f"input 0 (X) must be [N, C, H, W] (2-D DeformConv), got {fmt_shape(x.shape)}"
            )
        if w.rank != 4:
            raise self.error(
                f"input 1 (W) must be [M, C / group, kH, kW], got {fmt_shape(w.shape)}"
            )
        n, channels, height, width = x.shape
        maps, per_group = w.shape[:2]
        group, offset_group = self.attrs["group"], self.attrs["offset_group"]
        kernel = tuple(self.attrs["kernel_shape"] or w.shape[2:])
        if kernel != w.shape[2:]:
            raise self.error(f"kernel_shape {list(kernel)} differs from W's {list(w.shape[2:])}")
        if channels != per_group * group or maps % group:
            raise self.error(
                f"X has {channels} channels and W is {fmt_shape(w.shape)}: "
                f"expected C = {per_group} * group ({group}) and M divisible by "
                "group"
            )
        if channels % offset_group:
            raise self.error(
                f"X's {channels} channels are not divisible by offset_group {offset_group}"
            )
        dilations = self.attrs["dilations"] or (1, 1)
        strides = self.attrs["strides"] or (1, 1)
        pads = self.attrs["pads"] or (0, 0, 0, 0)
        out = []
        for axis, size in enumerate((height, width)):
            span = dilations[axis] * (kernel[axis] - 1) + 1
            extent = size + pads[axis] + pads[axis + 2] - span
            if extent < 0:
                raise self.error(
                    f"a kernel spanning {span} does not fit spatial axis {axis} "
                    f"of {size} with its pads"
                )
            out.append(extent // strides[axis] + 1)
        taps = kernel[0] * kernel[1]
        want = (n, offset_group * taps * 2, *out)
        if offset.shape != want:
            raise self.error(
                f"input 2 (offset) must be {fmt_shape(want)}, got {fmt_shape(offset.shape)}"
            )
        if bias is not None and bias.shape != (maps,):
            raise self.error(f"input 3 (B) must be [{maps}], got {fmt_shape(bias.shape)}")
        want = (n, offset_group * taps, *out)
        if mask is not None and mask.shape != want:
            raise self.error(
                f"input 4 (mask) must be {fmt_shape(want)}, got {fmt_shape(mask.shape)}"
            )
        return {
            "kernel": kernel,
            "dilations": dilations,
            "strides": strides,
            "pads": pads,
            "out": tuple(out),
            "maps": maps,
        }

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        plan = self._plan(inputs)
        x = inputs[0]
        assert x is not None
        return [TensorSpec((x.shape[0], plan["maps"], *plan["out"]), x.dtype)]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x, w, offset, bias, mask = (list(inputs) + [None, None])[:5]
        plan = self._plan(
            [None if a is None else TensorSpec.of(a) for a in (x, w, offset, bias, mask)]
        )
        work = _work_dtype(x.dtype)
        n, channels, height, width = x.shape
        kh, kw = plan["kernel"]
        oh, ow = plan["out"]
        groups, offset_groups = self.attrs["group"], self.attrs["offset_group"]
        taps, cells = kh * kw, oh * ow
        shift = offset.reshape(n, offset_groups, kh, kw, 2, oh, ow).astype(np.float64)
        # each tap's position before its offset: (kernel row, output row) -> image row
        base_y = (
            np.arange(kh)[:, None] * plan["dilations"][0]
            + np.arange(oh)[None, :] * plan["strides"][0]
            - plan["pads"][0]
        )
        base_x = (
            np.arange(kw)[:, None] * plan["dilations"][1]
            + np.arange(ow)[None, :] * plan["strides"][1]
            - plan["pads"][1]
        )
        ys = base_y[:, None, :, None] + shift[:, :, :, :, 0]  # [N, G, kh, kw, oh, ow]
        xs = base_x[None, :, None, :] + shift[:, :, :, :, 1]
        y0, x0 = np.floor(ys), np.floor(xs)
        ly, lx = ys - y0, xs - x0
        y0, x0 = y0.astype(np.int64), x0.astype(np.int64)
        planes = x.reshape(n, offset_groups, channels // offset_groups, height * width)
        sampled = np.zeros((n, offset_groups, channels // offset_groups, taps * cells), work)
        for dy, dx, weight in (
            (0, 0, (1 - ly) * (1 - lx)),
            (0, 1, (1 - ly) * lx),
            (1, 0, ly * (1 - lx)),
            (1, 1, ly * lx),
        ):
            yy, xx = y0 + dy, x0 + dx
            inside = (yy >= 0) & (yy < height) & (xx >= 0) & (xx < width)
            flat = np.where(inside, yy * width + xx, 0).reshape(n, offset_groups, 1, -1)
            corner = np.take_along_axis(planes, flat, axis=3).astype(work)
            sampled += corner * np.where(inside, weight, 0.0).astype(work).reshape(flat.shape)
        if mask is not None:
            sampled *= mask.astype(work).reshape(n, offset_groups, 1, taps * cells)
        columns = sampled.reshape(n, groups, channels // groups, taps, cells)
        kernels = w.astype(work).reshape(groups, plan["maps"] // groups, channels // groups, taps)
        y = np.einsum("ngctp,goct->ngop", columns, kernels, optimize=True)
        y = y.reshape(n, plan["maps"], oh, ow)
        if bias is not None:
            y = y + bias.astype(work).reshape(1, -1, 1, 1)
        return [np.ascontiguousarray(y.astype(x.dtype, copy=False))]

    def keeps_rows(self, batched: Sequence[bool], specs: Sequence[TensorSpec | None]) -> bool:
        # X, offset and mask share N; the weights and bias are shared by every row
        return not batched[1] and not (len(batched) > 3 and batched[3])


_MODES = ("avg", "max")
_TRANSFORMS = ("half_pixel", "output_half_pixel")


@register
class RoiAlign(Op):
    """RoiAlign(X, rois, batch_indices) -> Y ``[num_rois, C, output_height, output_width]``:
    each region ``(x1, y1, x2, y2)`` of ``rois`` (scaled by ``spatial_scale``) on image
    ``batch_indices[r]`` of X is cut into output cells, each the average (or maximum) of a
    ``sampling_ratio``-square grid of bilinear samples (``sampling_ratio=0``: as many as the
    cell is pixels wide and high, rounded up)."""

    op_type = "RoiAlign"
    attributes = {
        "coordinate_transformation_mode": Attr("string", "half_pixel"),
        "mode": Attr("string", "avg"),
        "output_height": Attr("int", 1),
        "output_width": Attr("int", 1),
        "sampling_ratio": Attr("int", 0),
        "spatial_scale": Attr("float", 1.0),
    }
    num_inputs = (3, 3)

    def _setup(self) -> None:
        for name, allowed in (("mode", _MODES), ("coordinate_transformation_mode", _TRANSFORMS)):
            if self.attrs[name] not in allowed:
                raise self.error(
                    f"attribute '{name}' must be {' or '.join(allowed)}, got {self.attrs[name]!r}"
                )
        for name in ("output_height", "output_width"):
            if self.attrs[name] < 1:
                raise self.error(f"attribute '{name}' must be positive, got {self.attrs[name]}")
        if self.attrs["sampling_ratio"] < 0:
            raise self.error(
                "attribute 'sampling_ratio' must be 0 (adaptive) or positive, got "
                f"{self.attrs['sampling_ratio']}"
            )

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        x, rois, indices = inputs
        assert x is not None and rois is not None and indices is not None
        self._check_dtype(x, FLOAT_DTYPES, "input 0 (X)")
        self._check_same_dtype([x, rois])
        self._check_dtype(indices, _I64, "input 2 (batch_indices)")
        if x.rank != 4:
            raise self.error(f"input 0 (X) must be [N, C, H, W], got {fmt_shape(x.shape)}")
        if rois.rank != 2 or rois.shape[1] != 4:
            raise self.error(f"input 1 (rois) must be [num_rois, 4], got {fmt_shape(rois.shape)}")
        if indices.shape != rois.shape[:1]:
            raise self.error(
                f"input 2 (batch_indices) must be [{rois.shape[0]}] (one per "
                f"region), got {fmt_shape(indices.shape)}"
            )
        return [
            TensorSpec(
                (
                    rois.shape[0],
                    x.shape[1],
                    self.attrs["output_height"],
                    self.attrs["output_width"],
                ),
                x.dtype,
            )
        ]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x, rois, indices = inputs
        n, channels = x.shape[:2]
        oh, ow = self.attrs["output_height"], self.attrs["output_width"]
        y = np.zeros((rois.shape[0], channels, oh, ow), x.dtype)
        bad = (indices < 0) | (indices >= n)
        if bad.any():
            r = int(np.argmax(bad))
            raise self.error(
                f"batch_indices[{r}] is {int(indices[r])}, expected 0 to {n - 1} (X's batch)"
            )
        if not np.isfinite(rois).all():
            r = int(np.argmax(~np.isfinite(rois).all(axis=1)))
            raise self.error(f"region {r} of rois is not finite: {rois[r].tolist()}")
        work = _work_dtype(x.dtype)
        for r in range(rois.shape[0]):
            y[r] = self._region(x[int(indices[r])], rois[r].astype(work), work, r)
        return [y]

    def _region(self, image: np.ndarray, roi: np.ndarray, work: np.dtype, r: int) -> np.ndarray:
        """The ``[C, output_height, output_width]`` cells of one region of one image."""
        channels, height, width = image.shape
        oh, ow = self.attrs["output_height"], self.attrs["output_width"]
        half_pixel = self.attrs["coordinate_transformation_mode"] == "half_pixel"
        scale = work.type(self.attrs["spatial_scale"])
        shift = work.type(0.5 if half_pixel else 0.0)
        start_x, start_y, end_x, end_y = (roi * scale - shift).tolist()
        roi_w, roi_h = work.type(end_x - start_x), work.type(end_y - start_y)
        if not half_pixel:  # malformed regions are at least one pixel
            roi_w, roi_h = max(roi_w, work.type(1)), max(roi_h, work.type(1))
        ratio = self.attrs["sampling_ratio"]
        grid_h = ratio or max(int(np.ceil(roi_h / oh)), 0)
        grid_w = ratio or max(int(np.ceil(roi_w / ow)), 0)
        samples = grid_h * grid_w * oh * ow
        if samples > MAX_SAMPLES_PER_ROI:
            raise self.error(
                f"region {r} needs {samples} bilinear samples ({grid_h} x {grid_w} "
                f"per cell), more than {MAX_SAMPLES_PER_ROI}"
            )
        if grid_h == 0 or grid_w == 0:
            return np.zeros((channels, oh, ow), image.dtype)
        ys = _sample_axis(work.type(start_y), roi_h / work.type(oh), oh, grid_h, work)
        xs = _sample_axis(work.type(start_x), roi_w / work.type(ow), ow, grid_w, work)
        rows, cols = _bilinear(ys, height, work), _bilinear(xs, width, work)
        inside = rows[4][:, :, None, None] & cols[4][None, None, :, :]
        corners = []  # (weight, flat position) of each corner: [oh, gh, ow, gw]
        for (ry, wy), (cx, wx) in (
            ((rows[0], rows[2]), (cols[0], cols[2])),
            ((rows[0], rows[2]), (cols[1], cols[3])),
            ((rows[1], rows[3]), (cols[0], cols[2])),
            ((rows[1], rows[3]), (cols[1], cols[3])),
        ):
            weight = (wy[:, :, None, None] * wx[None, None, :, :]).astype(work)
            flat = np.where(inside, ry[:, :, None, None] * width + cx[None, None, :, :], 0)
            corners.append((np.where(inside, weight, work.type(0)), flat))
        planes = image.reshape(channels, height * width)
        value = np.empty((channels, oh, ow), work)
        step = max(1, MAX_SAMPLES_PER_ROI // samples)  # channels at a time: bounded memory
        for c in range(0, channels, step):
            part = planes[c : c + step].astype(work)
            taken = [weight * part[:, flat] for weight, flat in corners]  # [c, oh, gh, ow, gw]
            if self.attrs["mode"] == "avg":
                total = (taken[0] + taken[1] + taken[2] + taken[3]).sum(axis=(2, 4))
                value[c : c + step] = total / work.type(grid_h * grid_w)
            else:
                value[c : c + step] = np.maximum(
                    np.maximum(taken[0], taken[1]), np.maximum(taken[2], taken[3])
                ).max(axis=(2, 4))
        return value.astype(image.dtype, copy=False)

    def keeps_rows(self, batched: Sequence[bool], specs: Sequence[TensorSpec | None]) -> bool:
        # rows of Y follow the regions; batch_indices point into one step's images
        return not batched[0]


def _sample_axis(
    start: np.floating, cell: np.floating, cells: int, grid: int, work: np.dtype
) -> np.ndarray:
    """``[cells, grid]`` sample coordinates along one axis: ``grid`` evenly spaced per cell."""
    k = np.arange(cells, dtype=work)[:, None]
    g = np.arange(grid, dtype=work)[None, :]
    return start + k * cell + (g + work.type(0.5)) * cell / work.type(grid)


def _bilinear(coords: np.ndarray, size: int, work: np.dtype) -> tuple:
    """(low index, high index, low weight, high weight, inside) along one axis of ``size``:
    a coordinate below -1 or above ``size`` is outside (reads 0); within, it is clamped to
    ``[0, size - 1]``."""
    inside = (coords >= -1) & (coords <= size)
    c = np.maximum(coords, work.type(0))
    low = np.floor(c).astype(np.int64)
    edge = low >= size - 1
    low = np.where(edge, size - 1, low)
    high = np.where(edge, size - 1, low + 1)
    c = np.where(edge, low.astype(work), c)
    frac = (c - low).astype(work)
    return low, high, (work.type(1) - frac), frac, inside
