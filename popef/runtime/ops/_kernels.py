"""Shared numpy maths of the operators: window geometry, padding, im2col convolution,
separable pooling, relu, stable softmax and erf/erfc.

Everything here is pure numpy, vectorised over the batch and the spatial positions. Python
loops only run over the taps of one kernel dimension (at most ``MAX_TAP_LOOP`` of them) or over
the few dimensions of a tensor. Functions raise :class:`KernelError` (a ``ValueError``) with a
readable message; the ops turn it into an ``ExecutionError`` naming the op and the node.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

__all__ = [
    "ChannelsLastPlan",
    "ConvPlan",
    "ConvTransposePlan",
    "Geometry",
    "KernelError",
    "PoolPlan",
    "average_pool",
    "batch_innermost",
    "channels_last_plan",
    "channels_last_rows",
    "channels_last_weights",
    "compute_dtype",
    "conv",
    "conv_max_pool",
    "conv_max_pool_channels_last",
    "conv_plan",
    "conv_transpose",
    "dense_channels_last",
    "dense_channels_last_kernel",
    "dense_permutation",
    "erf",
    "erfc",
    "log_softmax",
    "lp_pool",
    "max_pool",
    "max_pool_with_indices",
    "pad_spatial",
    "pool_plan",
    "relu",
    "softmax",
    "strided_view",
    "window_geometry",
]

#: A pooling kernel dimension with more taps than this is reduced over a strided window view
#: instead of accumulating one strided slice per tap.
MAX_TAP_LOOP = 32

_F16 = np.dtype(np.float16)
_F32 = np.dtype(np.float32)


class KernelError(ValueError):
    """Invalid shapes or values reaching a kernel."""


def compute_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype arithmetic is carried out in: float16 is computed in float32 (numpy has no
    BLAS and a poor accumulator for half precision); everything else in itself."""
    return _F32 if dtype == _F16 else dtype


def _prod(values: Sequence[int]) -> int:
    return math.prod(values)


# --------------------------------------------------------------------------------------------
# window geometry


@dataclass(frozen=True)
class Geometry:
    """Where windows lie for one input spatial shape.

    ``begins``/``ends``: zero (or -inf) padding before/after each spatial dim, as the op's
    attributes define it; ``extra``: what ceil_mode adds after ``ends`` so that the last window
    fits (this region is never counted as padding); ``out``: output spatial shape.
    """

    begins: tuple[int, ...]
    ends: tuple[int, ...]
    extra: tuple[int, ...]
    out: tuple[int, ...]

    @property
    def padded(self) -> bool:
        return any(self.begins) or any(self.ends) or any(self.extra)


def window_geometry(
    in_spatial: Sequence[int],
    kernel: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
    pads: Sequence[int],
    auto_pad: str,
    ceil_mode: bool = False,
) -> Geometry:
    """Output size and padding of a sliding window (Conv, MaxPool, AveragePool), ONNX rules.

    ``pads`` is ONNX's ``[x1_begin, x2_begin, ..., x1_end, x2_end, ...]``; it is ignored unless
    ``auto_pad`` is ``"NOTSET"``. SAME_UPPER puts the odd padding at the end, SAME_LOWER at the
    beginning. With ``ceil_mode`` the output size is rounded up, but a window that would start
    in the end padding is dropped (the rule of ONNX Runtime and PyTorch).
    """
    nd = len(in_spatial)
    begins, ends, extras, outs = [], [], [], []
    for i in range(nd):
        n, k, s, d = int(in_spatial[i]), int(kernel[i]), int(strides[i]), int(dilations[i])
        dk = (k - 1) * d + 1
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            o = -(-n // s)
            total = max(0, (o - 1) * s + dk - n)
            small, big = total // 2, total - total // 2
            b, e = (small, big) if auto_pad == "SAME_UPPER" else (big, small)
        else:
            b, e = (0, 0) if auto_pad == "VALID" else (int(pads[i]), int(pads[i + nd]))
            span = n + b + e - dk
            if span < 0:
                raise KernelError(
                    f"spatial dim {i} of size {n} (padded {b}+{n}+{e}) is smaller than the "
                    f"{'dilated ' if d > 1 else ''}kernel extent {dk}"
                )
            if ceil_mode:
                o = -(-span // s) + 1
                if (o - 1) * s >= n + b:
                    o -= 1
            else:
                o = span // s + 1
        if o <= 0:
            raise KernelError(f"spatial dim {i} of size {n} gives an empty output")
        begins.append(b)
        ends.append(e)
        extras.append(max(0, (o - 1) * s + dk - (n + b + e)))
        outs.append(o)
    return Geometry(tuple(begins), tuple(ends), tuple(extras), tuple(outs))


def pad_spatial(
    x: np.ndarray,
    begins: Sequence[int],
    ends: Sequence[int],
    value: float = 0,
    dtype: np.dtype | None = None,
) -> np.ndarray:
    """A C-contiguous copy of ``x`` (N, C, *spatial) padded with ``value`` on the spatial dims
    (and cast to ``dtype``); ``x`` itself (made contiguous) when there is nothing to do."""
    dtype = x.dtype if dtype is None else np.dtype(dtype)
    if not any(begins) and not any(ends):
        return np.ascontiguousarray(x, dtype=dtype)
    spatial = x.shape[2:]
    shape = x.shape[:2] + tuple(n + b + e for n, b, e in zip(spatial, begins, ends))
    out = np.zeros(shape, dtype) if value == 0 else np.full(shape, value, dtype)
    out[(slice(None), slice(None)) + tuple(slice(b, b + n) for b, n in zip(begins, spatial))] = x
    return out


def _window_view(
    xp: np.ndarray,
    kernel: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
    out: Sequence[int],
) -> np.ndarray:
    """Read-only view (N, C, *out, *kernel) of a padded input: view[n, c, o.., k..] is
    ``xp[n, c, o*s + k*d ..]``."""
    st = xp.strides
    sp = st[2:]
    return as_strided(
        xp,
        shape=xp.shape[:2] + tuple(out) + tuple(kernel),
        strides=st[:2]
        + tuple(a * s for a, s in zip(sp, strides))
        + tuple(a * d for a, d in zip(sp, dilations)),
        writeable=False,
    )


# --------------------------------------------------------------------------------------------
# convolution


#: The full-width im2col (see :func:`conv_plan`) is used while it adds at most this fraction
#: of wasted GEMM columns, and only where the plain im2col would copy short runs (an output
#: row times the batch, in elements): for long runs the wasted columns cost more than they save.
FULL_WIDTH_WASTE = 0.3
FULL_WIDTH_MAX_RUN = 64
#: The bias is folded into the GEMM (as a row of ones) from this many GEMM columns on; below,
#: a separate add is cheaper than building the augmented matrices.
BIAS_IN_GEMM_COLUMNS = 2048
#: The im2col matrix is built and multiplied in slices of about this many bytes, so that each
#: slice is still in the core's cache when the GEMM reads it.
IM2COL_CHUNK_BYTES = 2 * 1024 * 1024


def strided_view(base: np.ndarray, shape: Sequence[int], strides: Sequence[int]) -> np.ndarray:
    """``as_strided(base, shape, strides)`` for a C-contiguous ``base``, built directly on its
    buffer: ~1 us instead of ~5 us, and numpy checks that the view stays inside the buffer.
    Read-only when ``base`` is."""
    if base.flags.c_contiguous:
        return np.ndarray(tuple(shape), base.dtype, base, 0, tuple(strides))
    return as_strided(base, shape=tuple(shape), strides=tuple(strides), writeable=False)


@dataclass(frozen=True)
class ConvPlan:
    """Shape-dependent constants of one convolution (computed once per input/weight shape)."""

    n: int
    m: int
    g: int
    mg: int
    k: int  # rows of the im2col matrix without the bias row: C/G * prod(kernel)
    out: tuple[int, ...]
    begins: tuple[int, ...]
    ends: tuple[int, ...]
    pointwise: bool  # 1x1 kernel, unit strides: the (padded) input is the im2col matrix
    view_shape: tuple[int, ...]  # im2col view of the padded input, and its strides in bytes
    view_strides: tuple[int, ...]
    ncols: int  # GEMM columns: N * (P or the full-width span)
    full_width: bool
    chunk_rows: int  # im2col slice: this many entries of the first output dim (all if 0)
    out_strides: tuple[int, ...]  # (N, M, *out) view of the GEMM output, in elements
    bias_in_gemm: bool


def conv_plan(
    x_shape: Sequence[int],
    w_shape: Sequence[int],
    itemsize: int,
    strides: Sequence[int],
    dilations: Sequence[int],
    geometry: Geometry,
    group: int,
    plain: bool = False,
) -> ConvPlan:
    """Plan :func:`conv` for ``itemsize``-byte elements (``plain``: always the im2col view
    (G, C/G, *K, *out, N), never full width, pointwise or sliced -- :func:`conv_max_pool`).

    The kernel works in a *batch-innermost* layout: the padded input is laid out in memory as
    (C, *spatial, N) (see :func:`batch_innermost`), the im2col matrix as (G, C/G * prod(K),
    *out, N) and the GEMM output, returned as a strided (N, M, *out) view, as (M, *out, N).
    Every im2col row is then made of runs of N contiguous elements, and the ops that follow
    (pooling, activations) work on long contiguous runs too -- numpy's speed depends on it.

    With unit strides, >= 2 spatial dims and short output rows (``FULL_WIDTH_MAX_RUN``) the
    im2col columns are "full width": output position o is read at flat offset sum(o_i * row_i)
    of the padded plane, so every im2col row is one long contiguous run of the input (fast to
    copy) at the price of computing the few columns that wrap around a row end, which the
    returned view skips. Otherwise the im2col matrix is built in slices (``chunk_rows``).
    """
    n, c = int(x_shape[0]), int(x_shape[1])
    m = int(w_shape[0])
    kernel = tuple(int(v) for v in w_shape[2:])
    out = tuple(geometry.out)
    nd = len(out)
    g = group
    cg, mg = c // g, m // g
    k = cg * _prod(kernel)
    p = _prod(out)
    padded = [s + b + e for s, b, e in zip(x_shape[2:], geometry.begins, geometry.ends)]
    plane_rows = [_prod(padded[i + 1 :]) for i in range(nd)]  # in spatial positions
    # byte strides of the padded input (C, *spatial, N): one spatial position is N elements
    rows = [r * n * itemsize for r in plane_rows]
    s_c = _prod(padded) * n * itemsize
    unit = all(s == 1 for s in strides)
    span = sum((o - 1) * r for o, r in zip(out, plane_rows)) + 1
    full_width = (
        not plain
        and unit
        and nd >= 2
        and out[-1] * n <= FULL_WIDTH_MAX_RUN
        and span <= (1 + FULL_WIDTH_WASTE) * p
    )
    if full_width:
        tail_shape: tuple[int, ...] = (span * n,)
        tail_strides: tuple[int, ...] = (itemsize,)
        ncols = span * n
        out_steps = [r * n for r in plane_rows]
    else:
        tail_shape = out + (n,)
        tail_strides = tuple(r * s for r, s in zip(rows, strides)) + (itemsize,)
        ncols = p * n
        out_steps = [_prod(out[i + 1 :]) * n for i in range(nd)]
    pointwise = unit and all(v == 1 for v in kernel) and not plain
    row_bytes = (k + 1) * g * _prod(out[1:]) * n * itemsize  # one entry of out[0], bias row
    sliced = not (full_width or pointwise or plain)
    chunk_rows = max(1, IM2COL_CHUNK_BYTES // max(row_bytes, 1)) if sliced else 0
    return ConvPlan(
        n=n,
        m=m,
        g=g,
        mg=mg,
        k=k,
        out=out,
        begins=tuple(geometry.begins),
        ends=tuple(geometry.ends),
        pointwise=pointwise,
        view_shape=(g, cg) + kernel + tail_shape,
        view_strides=(s_c * cg, s_c) + tuple(r * d for r, d in zip(rows, dilations)) + tail_strides,
        ncols=ncols,
        full_width=full_width,
        chunk_rows=chunk_rows if chunk_rows < out[0] else 0,
        out_strides=(1, ncols, *out_steps),
        bias_in_gemm=ncols >= BIAS_IN_GEMM_COLUMNS,
    )


def batch_innermost(
    x: np.ndarray, begins: Sequence[int], ends: Sequence[int], dtype: np.dtype
) -> np.ndarray:
    """``x`` (N, C, *spatial) zero-padded on the spatial dims, cast to ``dtype`` and laid out
    as a C-contiguous (C, *spatial, N) array -- ``x``'s own buffer when it already is (the
    output of a convolution or of an op that kept its layout)."""
    xt = x.transpose((*range(1, x.ndim), 0))
    if not any(begins) and not any(ends):
        return np.ascontiguousarray(xt, dtype=dtype)
    spatial = xt.shape[1:-1]
    shape = (xt.shape[0], *(s + b + e for s, b, e in zip(spatial, begins, ends)), xt.shape[-1])
    out = np.zeros(shape, dtype)
    out[(slice(None), *(slice(b, b + s) for b, s in zip(begins, spatial)))] = xt
    return out


def conv(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, plan: ConvPlan) -> np.ndarray:
    """N-d grouped convolution (ONNX Conv: cross-correlation), im2col + matmul.

    ``x``: (N, C, *S); ``w``: (M, C/group, *K); ``bias``: (M,) or None; ``plan`` from
    :func:`conv_plan` with the itemsize of :func:`compute_dtype` (x.dtype).

    The im2col matrix is a strided view of the padded, batch-innermost input copied into
    (G, C/G * prod(K) [+1], P * N): the batch is folded into the GEMM columns, and for big
    GEMMs the bias rides along as an extra row of ones. ``np.matmul`` with the
    (G, M/G, C/G * prod(K) [+1]) weights gives (G, M/G, P, N), returned as an (N, M, *out)
    *view* (skipping the wrapped columns when full width). Big im2col matrices are built and
    multiplied one slice of output rows at a time (``plan.chunk_rows``).
    """
    out_dtype = x.dtype
    cdt = compute_dtype(out_dtype)
    g, mg, k = plan.g, plan.mg, plan.k
    w2 = np.ascontiguousarray(w, dtype=cdt).reshape(g, mg, k)
    xp = batch_innermost(x, plan.begins, plan.ends, cdt)
    bias_row = bias is not None and plan.bias_in_gemm and not plan.pointwise
    if bias_row:
        w2 = np.concatenate((w2, bias.astype(cdt, copy=False).reshape(g, mg, 1)), axis=2)
    if plan.pointwise:
        y = np.matmul(w2, xp.reshape(g, k, plan.ncols))
    else:
        y = _im2col_matmul(strided_view(xp, plan.view_shape, plan.view_strides), w2, plan, bias_row)
    if bias is not None and not bias_row:
        y += bias.astype(cdt, copy=False).reshape(g, mg, 1)
    if y.dtype != out_dtype:
        y = y.astype(out_dtype)
    item = y.itemsize
    return strided_view(y, (plan.n, plan.m) + plan.out, [s * item for s in plan.out_strides])


def _im2col_matmul(view: np.ndarray, w2: np.ndarray, plan: ConvPlan, bias_row: bool) -> np.ndarray:
    """``w2 @ im2col(view)`` as (G, M/G, ncols), the im2col matrix copied from ``view``
    (G, C/G, *K, *tail) in slices of ``plan.chunk_rows`` output rows, each multiplied while it
    is in cache; with ``bias_row`` a row of ones is appended (``w2`` carries the bias)."""
    g, k, ncols = plan.g, plan.k, plan.ncols
    rows = k + bias_row
    if not plan.chunk_rows:
        cols = np.empty((g, rows, ncols), w2.dtype)
        np.copyto(cols[:, :k].reshape(view.shape), view)
        if bias_row:
            cols[:, k] = 1.0
        return np.matmul(w2, cols)
    y = np.empty((g, plan.mg, ncols), w2.dtype)
    axis = len(view.shape) - len(plan.out) - 1  # the first output dim of the view
    out0 = plan.out[0]
    per_row = ncols // out0
    buffer = np.empty(g * rows * plan.chunk_rows * per_row, w2.dtype)
    for begin in range(0, out0, plan.chunk_rows):
        end = min(begin + plan.chunk_rows, out0)
        width = (end - begin) * per_row
        cols = buffer[: g * rows * width].reshape(g, rows, width)
        part = view[(slice(None),) * axis + (slice(begin, end),)]
        np.copyto(cols[:, :k].reshape(part.shape), part)
        if bias_row:
            cols[:, k] = 1.0
        np.matmul(w2, cols, out=y[:, :, begin * per_row : end * per_row])
    return y


#: The fused convolution + max pooling computes this many bytes of convolution output (and
#: of im2col matrix) at a time, so that the pooling reads them from the core's cache.
FUSED_CHUNK_BYTES = 256 * 1024


def conv_max_pool(
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray | None,
    plan: ConvPlan,
    window: tuple[int, int],
    relu: bool,
) -> np.ndarray:
    """``MaxPool(Conv(x, w, bias))`` (then ``Relu`` when ``relu``) for a 2-D convolution and
    a non-overlapping pooling ``window`` (kernel = strides, no padding, floor mode), without
    writing the convolution's output to memory: it is computed a few pooling rows at a time
    (im2col slice, GEMM into a small buffer, max over the windows) while in cache. The bias
    is added after pooling (a per-channel constant commutes with the max). ``plan`` comes
    from :func:`conv_plan` with ``plain=True``. Returns an (N, M, OH // ph, OW // pw) view
    of a batch-innermost array, as :func:`conv` does."""
    out_dtype = x.dtype
    cdt = compute_dtype(out_dtype)
    g, mg, k, n = plan.g, plan.mg, plan.k, plan.n
    oh, ow = plan.out
    ph, pw = window
    oh2, ow2 = oh // ph, ow // pw
    w2 = np.ascontiguousarray(w, dtype=cdt).reshape(g, mg, k)
    xp = batch_innermost(x, plan.begins, plan.ends, cdt)
    view = strided_view(xp, plan.view_shape, plan.view_strides)  # (G, C/G, KH, KW, OH, OW, N)
    y = np.empty((g, mg, oh2, ow2, n), cdt)
    per_row = ow * n
    row_bytes = g * max(k, mg) * per_row * cdt.itemsize
    rows = max(ph, FUSED_CHUNK_BYTES // max(row_bytes, 1) // ph * ph)
    cols_buffer = np.empty(g * k * min(rows, oh2 * ph) * per_row, cdt)
    out_buffer = np.empty(g * mg * min(rows, oh2 * ph) * per_row, cdt)
    for begin in range(0, oh2 * ph, rows):
        end = min(begin + rows, oh2 * ph)
        width = (end - begin) * per_row
        cols = cols_buffer[: g * k * width].reshape(g, k, width)
        part = view[:, :, :, :, begin:end]
        np.copyto(cols.reshape(part.shape), part)
        conv_rows = out_buffer[: g * mg * width].reshape(g, mg, width)
        np.matmul(w2, cols, out=conv_rows)
        windows = conv_rows.reshape(g, mg, (end - begin) // ph, ph, ow, n)[:, :, :, :, : ow2 * pw]
        windows = windows.reshape(g, mg, (end - begin) // ph, ph, ow2, pw, n)
        target = y[:, :, begin // ph : end // ph]
        taps = [(i, j) for i in range(ph) for j in range(pw)]
        if len(taps) == 1:
            np.copyto(target, windows[:, :, :, 0, :, 0])
        else:
            (i0, j0), (i1, j1) = taps[0], taps[1]
            np.maximum(windows[:, :, :, i0, :, j0], windows[:, :, :, i1, :, j1], out=target)
            for i, j in taps[2:]:
                np.maximum(target, windows[:, :, :, i, :, j], out=target)
    if bias is not None:
        y += bias.astype(cdt, copy=False).reshape(g, mg, 1, 1, 1)
    if relu:
        np.maximum(y, 0, out=y)
    if y.dtype != out_dtype:
        y = y.astype(out_dtype)
    item = y.itemsize
    return strided_view(
        y, (n, g * mg, oh2, ow2), (item, oh2 * ow2 * n * item, ow2 * n * item, n * item)
    )


# --------------------------------------------------------------------------------------------
# convolution + max pooling, channels last


#: The channels-last fused kernel multiplies slices of about this many bytes of im2col
#: matrix plus convolution output, so that the pooling reads them from the core's cache (3/4
#: of a 2 MiB L2); bigger slices also mean fewer numpy calls, which threads need (the row
#: split of the cpu executor: docs/runtime.md §8).
CHANNELS_LAST_CHUNK_BYTES = 1536 * 1024
#: The bias is a row of the channels-last GEMM from this many weight rows (C * KH * KW) on.
BIAS_ROW_MIN_K = 32
#: Below this many contiguous elements per im2col row run (kernel width x channels) the
#: im2col matrix is built taps-major, (K, rows), whose rows copy whole output rows instead.
CHANNELS_LAST_MIN_RUN = 16


@dataclass(frozen=True)
class ChannelsLastPlan:
    """Shapes of :func:`conv_max_pool_channels_last` for one input and weight shape.

    The convolution rows and columns the pooling reads are ``used`` (the ones floor mode
    drops are never computed); ``chunk``: convolution output rows per slice (a multiple of
    the pooling window's height); ``taps_major``: build the im2col matrix as (K, rows)."""

    n: int
    c: int
    m: int
    k: int  # C * KH * KW
    begins: tuple[int, int]
    ends: tuple[int, int]
    kernel: tuple[int, int]
    strides: tuple[int, int]
    dilations: tuple[int, int]
    window: tuple[int, int]
    used: tuple[int, int]  # convolution output rows, columns computed
    pooled: tuple[int, int]
    chunk: int
    taps_major: bool


def channels_last_plan(
    x_shape: Sequence[int],
    w_shape: Sequence[int],
    itemsize: int,
    strides: Sequence[int],
    dilations: Sequence[int],
    geometry: Geometry,
    window: Sequence[int],
) -> ChannelsLastPlan | None:
    """Plan :func:`conv_max_pool_channels_last` (a 2-D, group 1 convolution); None when the
    pooling window yields no output."""
    n, c = int(x_shape[0]), int(x_shape[1])
    m = int(w_shape[0])
    kh, kw = (int(v) for v in w_shape[2:])
    ph, pw = (int(v) for v in window)
    oh2, ow2 = geometry.out[0] // ph, geometry.out[1] // pw
    if oh2 == 0 or ow2 == 0:
        return None
    k = c * kh * kw
    row_bytes = n * ow2 * pw * (k + m) * itemsize  # one convolution output row
    chunk = max(1, CHANNELS_LAST_CHUNK_BYTES // max(row_bytes * ph, 1)) * ph
    return ChannelsLastPlan(
        n=n, c=c, m=m, k=k,
        begins=(geometry.begins[0], geometry.begins[1]),
        ends=(geometry.ends[0], geometry.ends[1]),
        kernel=(kh, kw),
        strides=(int(strides[0]), int(strides[1])),
        dilations=(int(dilations[0]), int(dilations[1])),
        window=(ph, pw),
        used=(oh2 * ph, ow2 * pw),
        pooled=(oh2, ow2),
        chunk=min(chunk, oh2 * ph),
        taps_major=(kw * c if dilations[1] == 1 else c) < CHANNELS_LAST_MIN_RUN,
    )  # fmt: skip


def channels_last_rows(
    x: np.ndarray, begins: Sequence[int], ends: Sequence[int], dtype: np.dtype
) -> np.ndarray:
    """``x`` (N, C, H, W) zero-padded on H and W, cast to ``dtype`` and laid out as a
    C-contiguous (H, N, W, C) array: ``x``'s own buffer when it already is (the output of
    :func:`conv_max_pool_channels_last`)."""
    xt = x.transpose(2, 0, 3, 1)
    if not any(begins) and not any(ends):
        return np.ascontiguousarray(xt, dtype=dtype)
    h, n, w, c = xt.shape
    out = np.zeros((h + begins[0] + ends[0], n, w + begins[1] + ends[1], c), dtype)
    out[begins[0] : begins[0] + h, :, begins[1] : begins[1] + w] = xt
    return out


def channels_last_weights(
    w: np.ndarray, bias: np.ndarray | None, dtype: np.dtype
) -> tuple[np.ndarray, np.ndarray | None]:
    """Conv weights (M, C, KH, KW) and bias (M,) as the C-contiguous (KH * KW * C [+ 1], M)
    GEMM operand of :func:`conv_max_pool_channels_last`, and the bias left to add after the
    GEMM. The bias rides in the GEMM as a last row from ``BIAS_ROW_MIN_K`` rows on (for
    fewer, OpenBLAS's small-matrix kernels are much slower with one more row)."""
    m = w.shape[0]
    w_t = np.ascontiguousarray(w.transpose(2, 3, 1, 0), dtype=dtype).reshape(-1, m)
    if bias is None:
        return w_t, None
    bias = bias.astype(dtype, copy=False)
    if w_t.shape[0] < BIAS_ROW_MIN_K:
        return w_t, bias
    return np.concatenate((w_t, bias.reshape(1, m))), None


def conv_max_pool_channels_last(
    x: np.ndarray,
    w_t: np.ndarray,
    bias: np.ndarray | None,
    plan: ChannelsLastPlan,
    relu: bool,
    scratch: dict[str, Any],
) -> np.ndarray:
    """``MaxPool(Conv(x))`` (then ``Relu``) for a 2-D, group 1 convolution and a
    non-overlapping pooling window, in the channels-last (H, N, W, C) layout.

    ``w_t``, ``bias``: from :func:`channels_last_weights`; ``scratch``: buffers kept between
    calls (one dict per thread). The input is read as (H, N, W, C) (free when it
    comes from this kernel). A slice of convolution output rows at a time, the im2col matrix
    is copied from a strided view of the input (with a column of ones when ``w_t`` carries
    the bias) and multiplied by ``w_t`` into (rows, M). Its rows are ordered (window row,
    window column, pooled row, n, pooled column), so that the max over a window is a max of
    whole contiguous blocks, written straight into the output; a bias not in the GEMM (it
    commutes with the max) and relu then run on the pooled slice while it is in cache.
    Returns an (N, M, OH', OW') view of a C-contiguous (OH', N, OW', M) array."""
    out_dtype = x.dtype
    cdt = w_t.dtype
    n, c, m, k = plan.n, plan.c, plan.m, plan.k
    rows_k = w_t.shape[0]  # k, plus 1 with a bias row
    (kh, kw), (sh, sw), (dh, dw) = plan.kernel, plan.strides, plan.dilations
    (ph, pw), (oh2, ow2) = plan.window, plan.pooled
    xp = channels_last_rows(x, plan.begins, plan.ends, cdt)
    bh, bn, bw, bc = xp.strides
    # GEMM rows (window row, window column, pooled row, n, pooled column), columns (kh, kw, c)
    out_shape = (ph, pw, oh2, n, ow2)
    out_strides = (bh * sh, bw * sw, bh * sh * ph, bn, bw * sw * pw)
    if plan.taps_major:
        view = strided_view(xp, (kh, kw, c) + out_shape, (bh * dh, bw * dw, bc) + out_strides)
    else:
        view = strided_view(xp, out_shape + (kh, kw, c), out_strides + (bh * dh, bw * dw, bc))
    y = np.empty((oh2, n, ow2, m), cdt)
    chunk = plan.chunk // ph  # pooled rows per slice
    per_row = ph * pw * n * ow2  # GEMM rows of one pooled row
    cols_buffer = _scratch(scratch, "cols", chunk * per_row * rows_k, cdt)
    out_buffer = _scratch(scratch, "out", chunk * per_row * m, cdt)
    bias_row = None if bias is None else _bias_row(scratch, bias, n * ow2)
    for begin in range(0, oh2, chunk):
        end = min(begin + chunk, oh2)
        r = (end - begin) * per_row
        part_shape = (ph, pw, end - begin, n, ow2)
        if plan.taps_major:
            cols = cols_buffer[: rows_k * r].reshape(rows_k, r)
            np.copyto(cols[:k].reshape((kh, kw, c) + part_shape), view[:, :, :, :, :, begin:end])
            if rows_k > k:
                cols[k] = 1
            a = cols.T
        else:
            a = cols_buffer[: r * rows_k].reshape(r, rows_k)
            np.copyto(a[:, :k].reshape(part_shape + (kh, kw, c)), view[:, :, begin:end])
            if rows_k > k:
                a[:, k] = 1
        conv_rows = out_buffer[: r * m].reshape(r, m)
        np.matmul(a, w_t, out=conv_rows)
        blocks = conv_rows.reshape(ph * pw, -1)  # one contiguous block per window position
        target = y[begin:end].reshape(-1)
        if ph * pw == 1:
            np.copyto(target, blocks[0])
        else:
            np.maximum(blocks[0], blocks[1], out=target)
            for i in range(2, ph * pw):
                np.maximum(target, blocks[i], out=target)
        if bias_row is not None:
            target = target.reshape(end - begin, -1)
            np.add(target, bias_row, out=target)
        if relu:
            _relu_in_place(target.reshape(-1))
    if y.dtype != out_dtype:
        y = y.astype(out_dtype)
    item = y.itemsize
    return strided_view(y, (n, m, oh2, ow2), (ow2 * m * item, item, n * ow2 * m * item, m * item))


def _bias_row(scratch: dict[str, Any], bias: np.ndarray, times: int) -> np.ndarray:
    """``bias`` repeated ``times`` times (contiguous: a fast add), kept in ``scratch``."""
    cached = scratch.get("bias")
    if cached is not None and cached[0] is bias and cached[1].size == bias.size * times:
        return cached[1]
    row = np.tile(bias, times)
    scratch["bias"] = (bias, row)
    return row


def _scratch(scratch: dict[str, Any], name: str, size: int, dtype: np.dtype) -> np.ndarray:
    """A flat buffer of at least ``size`` elements kept in ``scratch`` between calls."""
    buffer = scratch.get(name)
    if buffer is None or buffer.size < size or buffer.dtype != dtype:
        buffer = scratch[name] = np.empty(size, dtype)
    return buffer


def dense_channels_last(
    x: np.ndarray, w_t: np.ndarray, bias: np.ndarray | None, relu: bool
) -> np.ndarray:
    """``Flatten(axis=1)`` then ``Gemm`` (then ``Relu``) of an (N, C, H, W) tensor laid out
    channels last (the output of :func:`conv_max_pool_channels_last`): the tensor is copied
    as (N, H * W * C) -- contiguous runs of W * C -- and multiplied by ``w_t``, the Gemm's
    (C * H * W, out) weights permuted to (H * W * C, out); ``bias``: (out,) or None."""
    n = x.shape[0]
    y = np.matmul(np.ascontiguousarray(x.transpose(0, 2, 3, 1)).reshape(n, -1), w_t)
    if bias is not None:
        y += bias
    if relu:
        np.maximum(y, 0, out=y)
    return y


def dense_channels_last_kernel(relu: bool) -> Callable[[Sequence[np.ndarray | None]], list]:
    """:func:`dense_channels_last` as a plan kernel: inputs (x, w_t, bias or None)."""

    def run(inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x, w_t, bias = inputs
        assert x is not None and w_t is not None
        return [dense_channels_last(x, w_t, bias, relu)]

    return run


@dataclass(frozen=True)
class ConvTransposePlan:
    """Shapes of one transposed convolution; ``begins``: output positions cropped at the start
    of each spatial dim (negative: the output starts before the first written position)."""

    n: int
    g: int
    cg: int  # input channels per group
    mg: int  # output channels per group
    kernel: tuple[int, ...]
    in_spatial: tuple[int, ...]
    out: tuple[int, ...]
    begins: tuple[int, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]


def conv_transpose(
    x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, plan: ConvTransposePlan
) -> np.ndarray:
    """ONNX ConvTranspose: ``cols = W^T @ X`` (one matmul per group, the batch folded into
    the columns), then col2im: every kernel tap's (M/G, N, *S) slab is added into the output
    positions ``i * stride + tap * dilation - begin`` that fall inside the output."""
    out_dtype = x.dtype
    cdt = compute_dtype(out_dtype)
    g, cg, mg, n = plan.g, plan.cg, plan.mg, plan.n
    nd = len(plan.out)
    taps = _prod(plan.kernel)
    p = _prod(plan.in_spatial)
    xg = np.ascontiguousarray(
        x.astype(cdt, copy=False).reshape(n, g, cg, p).transpose(1, 2, 0, 3)
    ).reshape(g, cg, n * p)
    wg = w.astype(cdt, copy=False).reshape(g, cg, mg * taps).transpose(0, 2, 1)
    cols = np.matmul(wg, xg).reshape((g, mg) + plan.kernel + (n,) + plan.in_spatial)
    y = np.zeros((g, mg, n) + plan.out, cdt)
    for tap in np.ndindex(*plan.kernel):
        src: list[slice] = []
        dst: list[slice] = []
        for i in range(nd):
            s, size, out = plan.strides[i], plan.in_spatial[i], plan.out[i]
            offset = tap[i] * plan.dilations[i] - plan.begins[i]  # output position of input 0
            first = max(0, -(offset // s))  # the first input whose position is >= 0
            last = min(size, (out - 1 - offset) // s + 1) if offset < out else 0
            if last <= first:
                break
            src.append(slice(first, last))
            dst.append(slice(offset + first * s, offset + (last - 1) * s + 1, s))
        else:
            y[(slice(None),) * 3 + tuple(dst)] += cols[
                (slice(None), slice(None)) + tap + (slice(None),) + tuple(src)
            ]
    if bias is not None:
        y += bias.astype(cdt, copy=False).reshape((g, mg, 1) + (1,) * nd)
    if y.dtype != out_dtype:
        y = y.astype(out_dtype)
    return y.transpose((2, 0, 1) + tuple(range(3, 3 + nd))).reshape((n, g * mg) + plan.out)


# --------------------------------------------------------------------------------------------
# pooling


@dataclass(frozen=True)
class PoolPlan:
    """Everything a pool kernel needs for one input shape (computed once, then cached)."""

    geometry: Geometry
    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    # per spatial dim: the indices of its taps (slicing that dim only), or () for a long
    # kernel dim reduced over a window view
    dim_taps: tuple[tuple[tuple[slice, ...], ...], ...]
    pad_begins: tuple[int, ...]
    pad_ends: tuple[int, ...]  # ends + extra


def pool_plan(
    in_spatial: Sequence[int],
    kernel: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
    pads: Sequence[int],
    auto_pad: str,
    ceil_mode: bool,
) -> PoolPlan:
    geo = window_geometry(in_spatial, kernel, strides, dilations, pads, auto_pad, ceil_mode)
    dim_taps = []
    for i, (k, s, d, o) in enumerate(zip(kernel, strides, dilations, geo.out)):
        if k > MAX_TAP_LOOP:
            dim_taps.append(())
            continue
        lead = (slice(None),) * (2 + i)
        dim_taps.append(tuple(lead + (slice(t * d, t * d + (o - 1) * s + 1, s),) for t in range(k)))
    return PoolPlan(
        geometry=geo,
        kernel=tuple(kernel),
        strides=tuple(strides),
        dilations=tuple(dilations),
        dim_taps=tuple(dim_taps),
        pad_begins=geo.begins,
        pad_ends=tuple(e + x for e, x in zip(geo.ends, geo.extra)),
    )


def _lowest(dtype: np.dtype) -> float | int:
    if dtype.kind == "f":
        return -np.inf
    if dtype.kind in "iu":
        return int(np.iinfo(dtype).min)
    raise KernelError(f"pooling does not support dtype {dtype.name}")


def _reduce_taps(xp: np.ndarray, plan: PoolPlan, ufunc: np.ufunc) -> np.ndarray:
    """Combine the windows with ``ufunc`` (np.maximum / np.add), one spatial dim at a time
    (max and sum over a box are separable), outermost dim first so that the big first passes
    read whole contiguous rows. Each pass accumulates one strided slice per tap in place --
    much faster in numpy than reducing over tiny trailing axes of a window view."""
    acc = xp
    fresh = False  # whether acc is our own buffer
    for i, taps in enumerate(plan.dim_taps):
        if not taps:  # a long kernel dim: reduce over a strided window view
            k, s, d, o = plan.kernel[i], plan.strides[i], plan.dilations[i], plan.geometry.out[i]
            st = acc.strides
            view = as_strided(
                acc,
                shape=acc.shape[: 2 + i] + (o,) + acc.shape[3 + i :] + (k,),
                strides=st[: 2 + i] + (st[2 + i] * s,) + st[3 + i :] + (st[2 + i] * d,),
                writeable=False,
            )
            acc = ufunc.reduce(view, axis=-1)
            fresh = True
        elif len(taps) == 1:
            acc = acc[taps[0]]
        else:
            out = ufunc(acc[taps[0]], acc[taps[1]])
            for tap in taps[2:]:
                ufunc(out, acc[tap], out=out)
            acc = out
            fresh = True
    return acc if fresh else np.array(acc, copy=True)


def max_pool(x: np.ndarray, plan: PoolPlan) -> np.ndarray:
    """MaxPool values; padding (and the ceil_mode overhang) never wins."""
    xp = x
    if plan.geometry.padded:
        xp = pad_spatial(x, plan.pad_begins, plan.pad_ends, _lowest(x.dtype))
    return _reduce_taps(xp, plan, np.maximum)


def max_pool_with_indices(
    x: np.ndarray, plan: PoolPlan, storage_order: int
) -> tuple[np.ndarray, np.ndarray]:
    """MaxPool values and ONNX ``Indices``: flat positions in ``x`` (padding not counted),
    row-major over (N, C, *spatial), or column-major over the spatial dims when
    ``storage_order`` is 1."""
    xp = pad_spatial(x, plan.pad_begins, plan.pad_ends, _lowest(x.dtype))
    geo = plan.geometry
    view = _window_view(xp, plan.kernel, plan.strides, plan.dilations, geo.out)
    n, c = x.shape[:2]
    spatial = x.shape[2:]
    nd = len(spatial)
    flat = view.reshape(x.shape[:2] + geo.out + (_prod(plan.kernel),))
    arg = np.argmax(flat, axis=-1)
    values = np.take_along_axis(flat, arg[..., None], axis=-1)[..., 0]
    tap = np.unravel_index(arg, plan.kernel)
    pos = np.zeros(arg.shape, np.int64)
    if storage_order == 0:
        dim_strides = [_prod(spatial[i + 1 :]) for i in range(nd)]
    else:
        dim_strides = [_prod(spatial[:i]) for i in range(nd)]
    for i in range(nd):
        o = np.arange(geo.out[i], dtype=np.int64).reshape((-1,) + (1,) * (nd - 1 - i))
        coord = o * plan.strides[i] + tap[i] * plan.dilations[i] - geo.begins[i]
        np.clip(coord, 0, spatial[i] - 1, out=coord)
        pos += coord * dim_strides[i]
    plane = _prod(spatial)
    base = (np.arange(n * c, dtype=np.int64) * plane).reshape((n, c) + (1,) * nd)
    return values, pos + base


def _window_counts(plan: PoolPlan, in_spatial: Sequence[int], include_pad: bool) -> np.ndarray:
    """How many input (or input+pads) positions each output window covers, shape ``out``."""
    geo = plan.geometry
    counts: np.ndarray = np.ones((), np.int64)
    for i, n in enumerate(in_spatial):
        b, e, x = geo.begins[i], geo.ends[i], geo.extra[i]
        mask = np.zeros(b + n + e + x, np.int64)
        if include_pad:
            mask[: b + n + e] = 1
        else:
            mask[b : b + n] = 1
        k, s, d, o = plan.kernel[i], plan.strides[i], plan.dilations[i], geo.out[i]
        idx = np.arange(o)[:, None] * s + np.arange(k)[None, :] * d
        per_dim = mask[idx].sum(axis=1)
        counts = np.multiply.outer(counts, per_dim)
    return counts


def average_pool(x: np.ndarray, plan: PoolPlan, count_include_pad: bool) -> np.ndarray:
    """AveragePool: window sums divided by the number of counted positions."""
    out_dtype = x.dtype
    cdt = compute_dtype(out_dtype)
    xp = pad_spatial(x, plan.pad_begins, plan.pad_ends, 0, cdt)
    total = _reduce_taps(xp, plan, np.add)
    counts = _window_counts(plan, x.shape[2:], count_include_pad)
    full = _prod(plan.kernel)
    if np.all(counts == full):
        total /= full
    else:
        if np.any(counts == 0):
            raise KernelError("a pooling window covers no input element")
        total /= counts.astype(cdt)
    return total if total.dtype == out_dtype else total.astype(out_dtype)


def lp_pool(x: np.ndarray, plan: PoolPlan, p: int) -> np.ndarray:
    """LpPool: ``(sum over the window of |x|^p)^(1/p)``, padding counted as zeros."""
    out_dtype = x.dtype
    cdt = compute_dtype(out_dtype)
    xp = pad_spatial(x, plan.pad_begins, plan.pad_ends, 0, cdt)
    if p == 2:
        xp = np.square(xp)
    else:
        xp = np.abs(xp) if p == 1 else np.abs(xp) ** p
    total = _reduce_taps(xp, plan, np.add)
    if p == 2:
        np.sqrt(total, out=total)
    elif p != 1:
        np.power(total, 1.0 / p, out=total)
    return total if total.dtype == out_dtype else total.astype(out_dtype)


# --------------------------------------------------------------------------------------------
# relu

#: Size of the zero block of :func:`relu`.
_ZERO_BLOCK = 8192
_zero_blocks: dict[np.dtype, np.ndarray] = {}


def dense_permutation(x: np.ndarray) -> tuple[int, ...] | None:
    """An axis order in which ``x`` is C-contiguous (x is dense, maybe transposed), else None."""
    perm = tuple(sorted(range(x.ndim), key=lambda i: -abs(x.strides[i])))
    return perm if x.transpose(perm).flags.c_contiguous else None


def relu(x: np.ndarray) -> np.ndarray:
    """``max(x, 0)``. For big dense float arrays it takes the maximum with a contiguous block
    of zeros: numpy's SIMD loop for two contiguous operands is ~3x faster than its loop for an
    array and a scalar. The output has the memory layout of the input."""
    if x.dtype.kind != "f" or x.size < 2 * _ZERO_BLOCK:
        return np.maximum(x, 0)
    perm = dense_permutation(x)
    if perm is None:
        return np.maximum(x, 0)
    zeros = _zero_blocks.get(x.dtype)
    if zeros is None:
        zeros = np.zeros(_ZERO_BLOCK, x.dtype)
        zeros.setflags(write=False)
        _zero_blocks[x.dtype] = zeros
    xt = x.transpose(perm)
    out = np.empty(xt.shape, x.dtype)
    src, dst = xt.reshape(-1), out.reshape(-1)
    whole = src.size // _ZERO_BLOCK * _ZERO_BLOCK
    np.maximum(
        src[:whole].reshape(-1, _ZERO_BLOCK), zeros, out=dst[:whole].reshape(-1, _ZERO_BLOCK)
    )
    if whole < src.size:
        np.maximum(src[whole:], zeros[: src.size - whole], out=dst[whole:])
    return out.transpose(np.argsort(perm))


def _relu_in_place(flat: np.ndarray) -> None:
    """``max(flat, 0)`` in place on a contiguous 1-d float array (zero blocks, as :func:`relu`)."""
    zeros = _zero_blocks.get(flat.dtype)
    if zeros is None:
        zeros = np.zeros(_ZERO_BLOCK, flat.dtype)
        zeros.setflags(write=False)
        _zero_blocks[flat.dtype] = zeros
    whole = flat.size // _ZERO_BLOCK * _ZERO_BLOCK
    if whole:
        blocks = flat[:whole].reshape(-1, _ZERO_BLOCK)
        np.maximum(blocks, zeros, out=blocks)
    if whole < flat.size:
        np.maximum(flat[whole:], zeros[: flat.size - whole], out=flat[whole:])


# --------------------------------------------------------------------------------------------
# softmax


def _shifted(x: np.ndarray, axis: int, dtype: np.dtype | None = None) -> np.ndarray:
    """``x - max(x)`` along ``axis``, in ``dtype`` (by default the one arithmetic is carried
    out in)."""
    xc = x.astype(dtype or compute_dtype(x.dtype), copy=False)
    return np.subtract(xc, np.maximum.reduce(xc, axis=axis, keepdims=True))


def softmax(x: np.ndarray, axis: int) -> np.ndarray:
    """Numerically stable softmax along one axis (max subtracted first), in the input's
    precision, float16 included: ONNX's reference rounds each step to float16, and Attention's
    ``softmax_precision`` is a Cast before the Softmax, so float16 must not mean float32."""
    if x.size == 0:
        return np.array(x, copy=True)
    e = _shifted(x, axis, x.dtype)
    np.exp(e, out=e)
    e /= np.add.reduce(e, axis=axis, keepdims=True)
    return e if e.dtype == x.dtype else e.astype(x.dtype)


def log_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    """Numerically stable log-softmax: ``(x - max) - log(sum(exp(x - max)))``."""
    if x.size == 0:
        return np.array(x, copy=True)
    shifted = _shifted(x, axis)
    shifted -= np.log(np.add.reduce(np.exp(shifted), axis=axis, keepdims=True))
    return shifted if shifted.dtype == x.dtype else shifted.astype(x.dtype)


# --------------------------------------------------------------------------------------------
# erf (W. J. Cody's rational Chebyshev approximations, as in CALERF; ~1e-16 relative error)

_ERF_A = (
    3.16112374387056560e00,
    1.13864154151050156e02,
    3.77485237685302021e02,
    3.20937758913846947e03,
    1.85777706184603153e-1,
)
_ERF_B = (
    2.36012909523441209e01,
    2.44024637934444173e02,
    1.28261652607737228e03,
    2.84423683343917062e03,
)
_ERF_C = (
    5.64188496988670089e-1,
    8.88314979438837594e00,
    6.61191906371416295e01,
    2.98635138197400131e02,
    8.81952221241769090e02,
    1.71204761263407058e03,
    2.05107837782607147e03,
    1.23033935479799725e03,
    2.15311535474403846e-8,
)
_ERF_D = (
    1.57449261107098347e01,
    1.17693950891312499e02,
    5.37181101862009858e02,
    1.62138957456669019e03,
    3.29079923573345963e03,
    4.36261909014324716e03,
    3.43936767414372164e03,
    1.23033935480374942e03,
)
_ERF_P = (
    3.05326634961232344e-1,
    3.60344899949804439e-1,
    1.25781726111229246e-1,
    1.60837851487422766e-2,
    6.58749161529837803e-4,
    1.63153871373020978e-2,
)
_ERF_Q = (
    2.56852019228982242e00,
    1.87295284992346725e00,
    5.27905102951428412e-1,
    6.05183413124413191e-2,
    2.33520497626869185e-3,
)
_SQRT_1_PI = 5.6418958354775628695e-1


_ERFC_ZERO = 26.6  # erfc(y) underflows float64 beyond this


def _erfc_tail(y: np.ndarray) -> np.ndarray:
    """erfc(y) for y > 0.46875 (NaN propagates, +inf gives 0); CALERF's exp(-y*y) splitting."""
    y = np.minimum(y, _ERFC_ZERO)
    mid = y <= 4.0
    r = np.empty_like(y)
    ym = y[mid]
    num = _ERF_C[8] * ym
    den = ym.copy()
    for i in range(7):
        num = (num + _ERF_C[i]) * ym
        den = (den + _ERF_D[i]) * ym
    r[mid] = (num + _ERF_C[7]) / (den + _ERF_D[7])
    big = ~mid
    yb = y[big]
    z = 1.0 / (yb * yb)
    num = _ERF_P[5] * z
    den = z.copy()
    for i in range(4):
        num = (num + _ERF_P[i]) * z
        den = (den + _ERF_Q[i]) * z
    r[big] = (_SQRT_1_PI - z * (num + _ERF_P[4]) / (den + _ERF_Q[4])) / yb
    ysq = np.trunc(y * 16.0) / 16.0
    delta = (y - ysq) * (y + ysq)
    r *= np.exp(-ysq * ysq) * np.exp(-delta)
    r[y >= _ERFC_ZERO] = 0.0
    return r


def _erf_small(x: np.ndarray) -> np.ndarray:
    """erf(x) for |x| <= 0.46875."""
    z = x * x
    num = _ERF_A[4] * z
    den = z.copy()
    for i in range(3):
        num = (num + _ERF_A[i]) * z
        den = (den + _ERF_B[i]) * z
    return x * (num + _ERF_A[3]) / (den + _ERF_B[3])


def erf(x: np.ndarray) -> np.ndarray:
    """The error function in float64, elementwise (numpy has none)."""
    x = np.asarray(x, dtype=np.float64)
    small = np.abs(x) <= 0.46875
    out = np.empty_like(x)
    out[small] = _erf_small(x[small])
    large = ~small
    xl = x[large]
    out[large] = np.copysign((0.5 - _erfc_tail(np.abs(xl))) + 0.5, xl)
    return out


def erfc(x: np.ndarray) -> np.ndarray:
    """The complementary error function 1 - erf(x) in float64, accurate in the tails."""
    x = np.asarray(x, dtype=np.float64)
    small = np.abs(x) <= 0.46875
    out = np.empty_like(x)
    out[small] = 1.0 - _erf_small(x[small])
    large = ~small
    xl = x[large]
    tail = _erfc_tail(np.abs(xl))
    out[large] = np.where(xl < 0, 2.0 - tail, tail)
    return out
