"""Shared helpers of the op tests: tolerances, the checked ``run_op``, independent
references, the case table's ``Case``/``case()`` and the list of ops it must cover.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from popef.runtime.ops import TensorSpec, create_op

# --------------------------------------------------------------------------------------------
# tolerances are data: (rtol, atol, why)

TOLERANCES: dict[str, tuple[float, float, str]] = {
    "exact": (
        0.0,
        0.0,
        "data movement, comparisons, max, and +-*/ of float32/float16 (which the "
        "float64 reference rounds back exactly): bit-exact",
    ),
    "f32": (1e-6, 1e-6, "one or two float32 roundings per element"),
    "f32_transcendental": (2e-6, 1e-6, "numpy's float32 exp/tanh vs a float64 reference"),
    "f32_accumulate": (
        2e-5,
        2e-5,
        "float32 sums of up to a few hundred products; BLAS summation "
        "order differs from the reference's",
    ),
    "f16": (4e-3, 4e-3, "half precision: ~1e-3 relative rounding of inputs and output"),
    "f16_accumulate": (1e-2, 1e-2, "half-precision output of a float32 accumulation"),
    "f64": (1e-12, 1e-12, "float64 with a different summation order"),
}


def assert_close(actual: np.ndarray, expected: np.ndarray, tol: str) -> None:
    rtol, atol, _why = TOLERANCES[tol]
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    if rtol == 0 and atol == 0:
        np.testing.assert_array_equal(actual, expected.astype(actual.dtype))
    else:
        np.testing.assert_allclose(
            actual.astype(np.float64), expected.astype(np.float64), rtol=rtol, atol=atol
        )


def rand(seed: int, shape: Sequence[int], dtype=np.float32, low=-2.0, high=2.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind in "iu":
        return rng.integers(int(low), int(high), size=shape).astype(dtype)
    return rng.uniform(low, high, size=shape).astype(dtype)


def readonly(a: np.ndarray | None) -> np.ndarray | None:
    if a is None:
        return None
    a = np.array(a, copy=True)
    a.setflags(write=False)
    return a


def run_op(
    op_type: str,
    attrs: dict | None,
    inputs: Sequence[np.ndarray | None],
    num_outputs: int = 1,
    constants: Sequence[int] = (),
) -> list[np.ndarray]:
    """Build, infer, run; check infer == run's specs and that inputs are not modified."""
    op = create_op(op_type, f"{op_type.lower()}_node", attrs, num_outputs)
    frozen = [readonly(x) for x in inputs]
    before = [None if x is None else x.copy() for x in frozen]
    op.constant_inputs = {i: frozen[i] for i in constants}
    specs = op.infer([None if x is None else TensorSpec.of(x) for x in frozen])
    outs = op.run(frozen)
    assert isinstance(outs, list) and len(outs) == num_outputs
    assert [TensorSpec.of(o) for o in outs] == specs, "infer() disagrees with run()"
    for x, b in zip(frozen, before):
        if x is not None:
            np.testing.assert_array_equal(x, b)
    return outs


# --------------------------------------------------------------------------------------------
# independent references


def ref_conv(x, w, b=None, strides=None, pads=None, dilations=None, group=1):
    """Naive N-d cross-correlation: loops over every output element and every tap."""
    n_, c_ = x.shape[:2]
    m_ = w.shape[0]
    ksz = w.shape[2:]
    nd = len(ksz)
    sp = x.shape[2:]
    strides = strides or [1] * nd
    dilations = dilations or [1] * nd
    pads = pads or [0] * (2 * nd)
    out = [
        (sp[i] + pads[i] + pads[i + nd] - dilations[i] * (ksz[i] - 1) - 1) // strides[i] + 1
        for i in range(nd)
    ]
    xd, wd = x.astype(np.float64), w.astype(np.float64)
    y = np.zeros((n_, m_, *out))
    cg, mg = c_ // group, m_ // group
    for n in range(n_):
        for m in range(m_):
            g = m // mg
            for o in itertools.product(*map(range, out)):
                acc = 0.0 if b is None else float(b[m])
                for c in range(cg):
                    for k in itertools.product(*map(range, ksz)):
                        pos = tuple(
                            o[i] * strides[i] - pads[i] + k[i] * dilations[i] for i in range(nd)
                        )
                        if all(0 <= pos[i] < sp[i] for i in range(nd)):
                            acc += xd[(n, g * cg + c) + pos] * wd[(m, c) + k]
                y[(n, m) + o] = acc
    return y


def ref_conv_taps(x, w, b=None):
    """Valid 2-D convolution as a sum over taps of einsum products (fast, for bigger inputs)."""
    kh, kw = w.shape[2:]
    oh, ow = x.shape[2] - kh + 1, x.shape[3] - kw + 1
    y = np.zeros((x.shape[0], w.shape[0], oh, ow))
    for i in range(kh):
        for j in range(kw):
            y += np.einsum(
                "nchw,mc->nmhw",
                x[:, :, i : i + oh, j : j + ow].astype(np.float64),
                w[:, :, i, j].astype(np.float64),
            )
    if b is not None:
        y += b[None, :, None, None]
    return y


def same_pads(sp, ksz, strides, dilations, lower):
    """ONNX SAME_* padding, written from the spec."""
    nd = len(sp)
    begins, ends = [], []
    for i in range(nd):
        out = math.ceil(sp[i] / strides[i])
        total = max(0, (out - 1) * strides[i] + (ksz[i] - 1) * dilations[i] + 1 - sp[i])
        small = total // 2
        begins.append(total - small if lower else small)
        ends.append(small if lower else total - small)
    return begins + ends


def ref_pool(
    x,
    mode,
    kernel,
    strides=None,
    pads=None,
    dilations=None,
    ceil_mode=0,
    count_include_pad=0,
    with_indices=False,
    storage_order=0,
):
    """Naive pooling with per-position bounds checks."""
    nd = len(kernel)
    sp = x.shape[2:]
    strides = strides or [1] * nd
    dilations = dilations or [1] * nd
    pads = pads or [0] * (2 * nd)
    out = []
    for i in range(nd):
        dk = (kernel[i] - 1) * dilations[i] + 1
        span = sp[i] + pads[i] + pads[i + nd] - dk
        o = (math.ceil(span / strides[i]) if ceil_mode else span // strides[i]) + 1
        if ceil_mode and (o - 1) * strides[i] >= sp[i] + pads[i]:
            o -= 1
        out.append(o)
    y = np.zeros(x.shape[:2] + tuple(out), dtype=np.float64 if mode == "avg" else x.dtype)
    idx = np.zeros(y.shape, np.int64)
    for n, c in itertools.product(range(x.shape[0]), range(x.shape[1])):
        for o in itertools.product(*map(range, out)):
            vals, where, padded = [], [], 0
            for k in itertools.product(*map(range, kernel)):
                pos = tuple(o[i] * strides[i] - pads[i] + k[i] * dilations[i] for i in range(nd))
                if all(0 <= pos[i] < sp[i] for i in range(nd)):
                    vals.append(x[(n, c) + pos])
                    where.append(pos)
                elif all(-pads[i] <= pos[i] < sp[i] + pads[i + nd] for i in range(nd)):
                    padded += 1
            if mode == "max":
                best = int(np.argmax(vals))
                y[(n, c) + o] = vals[best]
                pos = where[best]
                if storage_order == 0:
                    flat = np.ravel_multi_index(pos, sp)
                else:
                    flat = np.ravel_multi_index(pos[::-1], sp[::-1])
                idx[(n, c) + o] = (n * x.shape[1] + c) * math.prod(sp) + flat
            else:
                count = len(vals) + (padded if count_include_pad else 0)
                y[(n, c) + o] = math.fsum(float(v) for v in vals) / count
    return (y, idx) if with_indices else y


def py_elementwise(fn: Callable, *arrays: np.ndarray, dtype=None) -> np.ndarray:
    """Apply a Python scalar function over broadcast inputs (float64/int arithmetic)."""
    bs = np.broadcast_arrays(*arrays)
    flat = [b.ravel().tolist() for b in bs]
    res = [fn(*vals) for vals in zip(*flat)] if flat[0] else []
    return np.array(res, dtype=dtype or arrays[0].dtype).reshape(bs[0].shape)


def ref_softmax(x, axis):
    e = np.exp(x.astype(np.float64) - x.astype(np.float64).max(axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def ref_matmul(a, b):
    """Loops over the (broadcast) batch and the output matrix, dot products in float64."""
    a2 = a[None, :] if a.ndim == 1 else a
    b2 = b[:, None] if b.ndim == 1 else b
    batch = np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2])
    ab = np.broadcast_to(a2, batch + a2.shape[-2:]).astype(np.float64)
    bb = np.broadcast_to(b2, batch + b2.shape[-2:]).astype(np.float64)
    y = np.zeros(batch + (a2.shape[-2], b2.shape[-1]))
    for bi in np.ndindex(*batch):
        for i in range(a2.shape[-2]):
            for j in range(b2.shape[-1]):
                y[bi + (i, j)] = math.fsum(ab[bi + (i,)] * bb[bi + (slice(None), j)])
    if a.ndim == 1:
        y = y[..., 0, :]
    if b.ndim == 1:
        y = y[..., 0]
    return y


def ref_argmax(x, axis, keepdims, last):
    moved = np.moveaxis(x, axis, -1)
    out = np.zeros(moved.shape[:-1], np.int64)
    for i in np.ndindex(*moved.shape[:-1]):
        row = moved[i].tolist()
        best = max(row)
        hits = [j for j, v in enumerate(row) if v == best]
        out[i] = hits[-1] if last else hits[0]
    return np.expand_dims(out, axis) if keepdims else out


def trunc_div(a: int, b: int) -> int:
    if b == 0:
        return 0
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


# --------------------------------------------------------------------------------------------
# the case table: each case has a reference and, optionally, runs under onnxruntime


@dataclass
class Case:
    id: str
    op: str
    attrs: dict
    inputs: list
    ref: Callable[..., list]
    tol: str
    num_outputs: int = 1
    constants: tuple = ()
    opset: int = 17
    ort: bool = True
    ort_tol: str | None = None  # tolerance against onnxruntime, when different from ``tol``
    extra: dict = field(default_factory=dict)


CASES: list[Case] = []


def case(*args, **kwargs) -> None:
    CASES.append(Case(*args, **kwargs))


EXPECTED_OPS = {
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Relu",
    "LeakyRelu",
    "Sigmoid",
    "Tanh",
    "Gelu",
    "Clip",
    "Identity",
    "Dropout",
    "Cast",
    "Conv",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "Gemm",
    "MatMul",
    "Reshape",
    "Flatten",
    "Transpose",
    "Concat",
    "Softmax",
    "LogSoftmax",
    "BatchNormalization",
    "ArgMax",
}


def _t(torch, a):
    return torch.from_numpy(np.ascontiguousarray(a))


def ref_pad(x, pads):
    nd = x.ndim - 2
    return np.pad(x, [(0, 0), (0, 0)] + [(pads[i], pads[i + nd]) for i in range(nd)])
