"""Tests of the runtime's operator library (popef.runtime.ops).

Every op is checked against an independent reference written differently from the kernel
(naive Python loops for Conv and the pools, Python-scalar arithmetic for elementwise ops, float64
formulas elsewhere), on random inputs with fixed seeds. ``run_op`` also checks, for every case,
that ``infer`` agrees with what ``run`` returns and that ``run`` leaves its (read-only) inputs
untouched. When onnx + onnxruntime are importable the same case table is replayed as one-node
ONNX models; when torch is importable Conv, the pools, Gemm and Softmax are compared with
torch.nn.functional.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pytest

from popef.errors import ExecutionError, PopefError
from popef.runtime import ops as ops_pkg
from popef.runtime.ops import (
    OPS,
    REQUIRED,
    Attr,
    Op,
    TensorSpec,
    _kernels,
    create_op,
    get_op_class,
    register,
)

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


# -- binary arithmetic: Python-scalar arithmetic on the broadcast inputs, rounded back --------
for dt, tol in ((np.float32, "exact"), (np.float64, "exact"), (np.float16, "exact")):
    a, b = rand(1, (2, 3, 4), dt), rand(2, (3, 1), dt, 0.5, 2.0)
    for name, fn in (
        ("Add", lambda p, q: p + q),
        ("Sub", lambda p, q: p - q),
        ("Mul", lambda p, q: p * q),
        ("Div", lambda p, q: p / q),
    ):
        case(
            f"{name}-{np.dtype(dt).name}",
            name,
            {},
            [a, b],
            lambda x, y, fn=fn: [
                py_elementwise(fn, x.astype(float), y.astype(float), dtype=x.dtype)
            ],
            tol,
            ort=dt != np.float16,
        )
for dt in (np.int64, np.int32):
    a, b = (
        rand(3, (4, 5), dt, -50, 50),
        rand(4, (5,), dt, 1, 9) * np.where(np.arange(5) % 2, -1, 1).astype(dt),
    )
    for name, fn in (
        ("Add", lambda p, q: p + q),
        ("Sub", lambda p, q: p - q),
        ("Mul", lambda p, q: p * q),
        ("Div", trunc_div),
    ):
        case(
            f"{name}-{np.dtype(dt).name}",
            name,
            {},
            [a, b],
            lambda x, y, fn=fn: [py_elementwise(fn, x, y)],
            "exact",
        )
case(
    "Add-scalar-broadcast",
    "Add",
    {},
    [rand(5, (2, 3)), np.array(1.5, np.float32)],
    lambda x, y: [
        py_elementwise(lambda p, q: p + q, x.astype(float), y.astype(float), dtype=np.float32)
    ],
    "exact",
)

# -- activations ---------------------------------------------------------------------------
_act = rand(10, (3, 4, 5), np.float32, -6, 6)
case("Relu", "Relu", {}, [_act], lambda x: [py_elementwise(lambda v: max(v, 0.0), x)], "exact")
case(
    "Relu-int32",
    "Relu",
    {},
    [rand(11, (7,), np.int32, -9, 9)],
    lambda x: [py_elementwise(lambda v: max(v, 0), x)],
    "exact",
    ort=False,
)
case(
    "Relu-f64", "Relu", {}, [_act.astype(np.float64)], lambda x: [np.where(x > 0, x, 0.0)], "exact"
)
for alpha in (0.01, 0.2, 1.5, -0.3):
    case(
        f"LeakyRelu-{alpha}",
        "LeakyRelu",
        {"alpha": alpha},
        [_act],
        lambda x, al=alpha: [
            py_elementwise(lambda v: v if v >= 0 else np.float32(al) * np.float32(v), x)
        ],
        "exact",
    )
case(
    "LeakyRelu-default",
    "LeakyRelu",
    {},
    [_act],
    lambda x: [
        py_elementwise(lambda v: v if v >= 0 else v * 0.01, x.astype(float), dtype=np.float32)
    ],
    "f32",
)
_wide = np.concatenate([_act.ravel(), np.array([-120.0, -80.0, 80.0, 120.0, 0.0], np.float32)])
case(
    "Sigmoid",
    "Sigmoid",
    {},
    [_wide],
    lambda x: [
        py_elementwise(
            lambda v: 1 / (1 + math.exp(-v)) if v > -700 else 0.0, x.astype(float), dtype=np.float32
        )
    ],
    "f32_transcendental",
)
case(
    "Sigmoid-f64",
    "Sigmoid",
    {},
    [_wide.astype(np.float64)],
    lambda x: [py_elementwise(lambda v: 1 / (1 + math.exp(-v)), x)],
    "f64",
)
case(
    "Sigmoid-f16",
    "Sigmoid",
    {},
    [_act.astype(np.float16)],
    lambda x: [py_elementwise(lambda v: 1 / (1 + math.exp(-v)), x.astype(float), dtype=np.float16)],
    "f16",
    ort=False,
)
case(
    "Tanh",
    "Tanh",
    {},
    [_wide],
    lambda x: [py_elementwise(math.tanh, x.astype(float), dtype=np.float32)],
    "f32_transcendental",
)
_gelu_none = lambda v: 0.5 * v * math.erfc(-v / math.sqrt(2))
_gelu_tanh = lambda v: 0.5 * v * (1 + math.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v**3)))
for dt, tol in ((np.float32, "f32_transcendental"), (np.float64, "f64")):
    case(
        f"Gelu-none-{np.dtype(dt).name}",
        "Gelu",
        {},
        [_wide.astype(dt)],
        lambda x: [py_elementwise(_gelu_none, x.astype(float), dtype=x.dtype)],
        tol,
        opset=20,
        ort=dt != np.float64,
    )  # onnxruntime has no double Gelu
    case(
        f"Gelu-tanh-{np.dtype(dt).name}",
        "Gelu",
        {"approximate": "tanh"},
        [_act.astype(dt)],
        lambda x: [py_elementwise(_gelu_tanh, x.astype(float), dtype=x.dtype)],
        tol,
        opset=20,
        ort=dt != np.float64,
    )

# -- Clip / Identity / Dropout / Cast --------------------------------------------------------
_lo, _hi = np.array(-1.0, np.float32), np.array(2.5, np.float32)
case(
    "Clip-both",
    "Clip",
    {},
    [_act, _lo, _hi],
    lambda x, lo, hi: [py_elementwise(lambda v: min(max(v, float(lo)), float(hi)), x)],
    "exact",
)
case(
    "Clip-min",
    "Clip",
    {},
    [_act, _lo],
    lambda x, lo: [py_elementwise(lambda v: max(v, float(lo)), x)],
    "exact",
)
case(
    "Clip-max",
    "Clip",
    {},
    [_act, None, _hi],
    lambda x, lo, hi: [py_elementwise(lambda v: min(v, float(hi)), x)],
    "exact",
)
case("Clip-none", "Clip", {}, [_act], lambda x: [x], "exact")
case(
    "Clip-min-gt-max",
    "Clip",
    {},
    [_act, _hi, _lo],
    lambda x, lo, hi: [np.full_like(x, float(hi))],
    "exact",
)
case(
    "Clip-int64",
    "Clip",
    {},
    [rand(12, (9,), np.int64, -20, 20), np.array(-3, np.int64), np.array(4, np.int64)],
    lambda x, lo, hi: [py_elementwise(lambda v: min(max(v, -3), 4), x)],
    "exact",
)
case("Identity", "Identity", {}, [_act], lambda x: [x.copy()], "exact")
case(
    "Identity-int", "Identity", {}, [rand(13, (3,), np.int64, 0, 9)], lambda x: [x.copy()], "exact"
)
case("Dropout", "Dropout", {}, [_act], lambda x: [x.copy()], "exact")
case(
    "Dropout-mask",
    "Dropout",
    {"seed": 3},
    [_act, np.array(0.5, np.float32), np.array(False)],
    lambda x, r, t: [x.copy(), np.ones(x.shape, bool)],
    "exact",
    num_outputs=2,
    constants=(2,),
)

_cast_src = {
    "float32": np.array([-2.7, -1.5, -0.4, 0.0, 0.6, 1.5, 2.9, 100.25], np.float32),
    "float64": np.array([-2.7, -1.0, 0.0, 3.99, 1e5], np.float64),
    "int64": np.array([-5, 0, 1, 7, 300], np.int64),
    "bool": np.array([True, False, True]),
    "uint8": np.array([0, 1, 255], np.uint8),
}
_to_code = {
    "float32": 1,
    "uint8": 2,
    "int8": 3,
    "int32": 6,
    "int64": 7,
    "bool": 9,
    "float16": 10,
    "float64": 11,
}


def _py_cast(v, dst: str):
    kind = np.dtype(dst).kind
    if dst == "float16" and abs(v) > 65504:
        return math.copysign(math.inf, v)
    if dst == "bool":
        return bool(v)
    if kind in "iu":
        return int(v)  # Python int() truncates toward zero
    return float(v)


for src, arr in _cast_src.items():
    for dst, code in _to_code.items():
        if dst in ("int8", "uint8") and src in ("float32", "float64", "int64", "uint8"):
            arr_ = (
                np.clip(arr, 0, 100).astype(arr.dtype)
                if dst == "uint8"
                else np.clip(arr, -100, 100).astype(arr.dtype)
            )
        else:
            arr_ = arr
        case(
            f"Cast-{src}-{dst}",
            "Cast",
            {"to": code},
            [arr_],
            lambda x, dst=dst: [np.array([_py_cast(v, dst) for v in x.tolist()], dtype=dst)],
            "exact" if dst != "float16" else "f16",
        )

# -- Conv ------------------------------------------------------------------------------------
_x2 = rand(20, (2, 4, 7, 6))
_w2 = rand(21, (6, 4, 3, 3))
_b2 = rand(22, (6,))
_conv_variants = [
    ("plain", {}, {}),
    ("strides", {"strides": [2, 1]}, {"strides": [2, 1]}),
    ("pads-asym", {"pads": [1, 0, 2, 1]}, {"pads": [1, 0, 2, 1]}),
    (
        "dilations",
        {"dilations": [2, 2], "pads": [1, 1, 1, 1]},
        {"dilations": [2, 2], "pads": [1, 1, 1, 1]},
    ),
    (
        "all",
        {"strides": [2, 2], "pads": [2, 1, 0, 1], "dilations": [1, 2]},
        {"strides": [2, 2], "pads": [2, 1, 0, 1], "dilations": [1, 2]},
    ),
    ("valid", {"auto_pad": "VALID", "strides": [2, 2]}, {"strides": [2, 2]}),
    (
        "same-upper",
        {"auto_pad": "SAME_UPPER", "strides": [2, 1]},
        {"strides": [2, 1], "pads": same_pads((7, 6), (3, 3), (2, 1), (1, 1), lower=False)},
    ),
    (
        "same-lower",
        {"auto_pad": "SAME_LOWER", "strides": [2, 2]},
        {"strides": [2, 2], "pads": same_pads((7, 6), (3, 3), (2, 2), (1, 1), lower=True)},
    ),
    ("kernel-shape", {"kernel_shape": [3, 3]}, {}),
]
for name, attrs, ref_kw in _conv_variants:
    case(
        f"Conv2d-{name}",
        "Conv",
        attrs,
        [_x2, _w2, _b2],
        lambda x, w, b, kw=ref_kw: [ref_conv(x, w, b, **kw)],
        "f32_accumulate",
    )
case(
    "Conv2d-nobias",
    "Conv",
    {"pads": [1, 1, 1, 1]},
    [_x2, _w2],
    lambda x, w: [ref_conv(x, w, None, pads=[1, 1, 1, 1])],
    "f32_accumulate",
)
case(
    "Conv2d-batch1",
    "Conv",
    {},
    [_x2[:1], _w2, _b2],
    lambda x, w, b: [ref_conv(x, w, b)],
    "f32_accumulate",
)
case(
    "Conv2d-group2",
    "Conv",
    {"group": 2, "pads": [1, 1, 1, 1]},
    [_x2, rand(23, (6, 2, 3, 3)), _b2],
    lambda x, w, b: [ref_conv(x, w, b, pads=[1, 1, 1, 1], group=2)],
    "f32_accumulate",
)
case(
    "Conv2d-depthwise",
    "Conv",
    {"group": 4, "strides": [2, 2]},
    [_x2, rand(24, (8, 1, 3, 3)), rand(25, (8,))],
    lambda x, w, b: [ref_conv(x, w, b, strides=[2, 2], group=4)],
    "f32_accumulate",
)
case(
    "Conv2d-pointwise",
    "Conv",
    {},
    [_x2, rand(26, (5, 4, 1, 1)), rand(27, (5,))],
    lambda x, w, b: [ref_conv(x, w, b)],
    "f32_accumulate",
)
case(
    "Conv2d-pointwise-batch1",
    "Conv",
    {},
    [_x2[:1], rand(26, (5, 4, 1, 1))],
    lambda x, w: [ref_conv(x, w)],
    "f32_accumulate",
)
case(
    "Conv2d-pointwise-strided",
    "Conv",
    {"strides": [2, 2]},
    [_x2, rand(26, (5, 4, 1, 1))],
    lambda x, w: [ref_conv(x, w, strides=[2, 2])],
    "f32_accumulate",
)
case(
    "Conv2d-f64",
    "Conv",
    {"pads": [1, 1, 1, 1]},
    [_x2.astype(np.float64), _w2.astype(np.float64), _b2.astype(np.float64)],
    lambda x, w, b: [ref_conv(x, w, b, pads=[1, 1, 1, 1])],
    "f64",
    ort=False,
)  # no double Conv in ORT
case(
    "Conv2d-f16",
    "Conv",
    {},
    [_x2.astype(np.float16), _w2.astype(np.float16), _b2.astype(np.float16)],
    lambda x, w, b: [ref_conv(x, w, b)],
    "f16_accumulate",
    ort=False,
)
case(
    "Conv1d",
    "Conv",
    {"strides": [2], "pads": [1, 2], "dilations": [2]},
    [rand(28, (2, 3, 11)), rand(29, (4, 3, 3)), rand(30, (4,))],
    lambda x, w, b: [ref_conv(x, w, b, strides=[2], pads=[1, 2], dilations=[2])],
    "f32_accumulate",
)
case(
    "Conv3d",
    "Conv",
    {"pads": [1, 0, 1, 0, 1, 1], "strides": [1, 2, 1]},
    [rand(31, (1, 2, 4, 5, 4)), rand(32, (3, 2, 2, 3, 2)), rand(33, (3,))],
    lambda x, w, b: [ref_conv(x, w, b, pads=[1, 0, 1, 0, 1, 1], strides=[1, 2, 1])],
    "f32_accumulate",
)
case(
    "Conv3d-same-group",
    "Conv",
    {"auto_pad": "SAME_UPPER", "group": 2},
    [rand(34, (2, 4, 3, 4, 3)), rand(35, (2, 2, 3, 3, 3))],
    lambda x, w: [
        ref_conv(
            x, w, None, pads=same_pads((3, 4, 3), (3, 3, 3), (1, 1, 1), (1, 1, 1), False), group=2
        )
    ],
    "f32_accumulate",
)

# -- pools -----------------------------------------------------------------------------------
_px = rand(40, (2, 3, 7, 8))
_pool_variants = [
    ("k2s2", {"kernel_shape": [2, 2], "strides": [2, 2]}),
    ("k3s1", {"kernel_shape": [3, 3]}),
    ("k3s2-pads", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ("k3s2-pads-asym", {"kernel_shape": [3, 2], "strides": [2, 3], "pads": [0, 1, 2, 0]}),
    ("ceil", {"kernel_shape": [2, 3], "strides": [2, 2], "ceil_mode": 1}),
    (
        "ceil-pads",
        {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": 1},
    ),
    (
        "ceil-drop-last",
        {"kernel_shape": [2, 2], "strides": [3, 3], "pads": [1, 1, 1, 1], "ceil_mode": 1},
    ),
]


def _pool_ref_kw(attrs):
    keys = {
        "kernel_shape": "kernel",
        "strides": "strides",
        "pads": "pads",
        "dilations": "dilations",
        "ceil_mode": "ceil_mode",
        "count_include_pad": "count_include_pad",
        "storage_order": "storage_order",
    }
    return {keys[k]: v for k, v in attrs.items()}


for name, attrs in _pool_variants + [
    ("dilations", {"kernel_shape": [2, 2], "dilations": [2, 3], "pads": [1, 1, 0, 1]}),
    (
        "dilations-ceil",
        {"kernel_shape": [2, 2], "dilations": [2, 2], "strides": [2, 2], "ceil_mode": 1},
    ),
]:
    case(
        f"MaxPool-{name}",
        "MaxPool",
        attrs,
        [_px],
        lambda x, kw=_pool_ref_kw(attrs): [ref_pool(x, "max", **kw)],
        "exact",
    )
for name, attrs in _pool_variants:
    for cip in (0, 1):
        case(
            f"AveragePool-{name}-cip{cip}",
            "AveragePool",
            {**attrs, "count_include_pad": cip},
            [_px],
            lambda x, kw=_pool_ref_kw({**attrs, "count_include_pad": cip}): [
                ref_pool(x, "avg", **kw)
            ],
            "f32",
        )
case(
    "AveragePool-dilations",
    "AveragePool",
    {"kernel_shape": [2, 2], "dilations": [2, 1], "pads": [1, 0, 1, 1], "count_include_pad": 1},
    [_px],
    lambda x: [
        ref_pool(x, "avg", [2, 2], dilations=[2, 1], pads=[1, 0, 1, 1], count_include_pad=1)
    ],
    "f32",
    opset=19,
)
for pool, mode in (("MaxPool", "max"), ("AveragePool", "avg")):
    for ap in ("SAME_UPPER", "SAME_LOWER"):
        case(
            f"{pool}-{ap}",
            pool,
            {"kernel_shape": [3, 2], "strides": [2, 3], "auto_pad": ap},
            [_px],
            lambda x, ap=ap, mode=mode: [
                ref_pool(
                    x,
                    mode,
                    [3, 2],
                    strides=[2, 3],
                    pads=same_pads((7, 8), (3, 2), (2, 3), (1, 1), ap == "SAME_LOWER"),
                )
            ],
            "exact" if mode == "max" else "f32",
        )
    case(
        f"{pool}-VALID",
        pool,
        {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "VALID"},
        [_px],
        lambda x, mode=mode: [ref_pool(x, mode, [3, 3], strides=[2, 2])],
        "exact" if mode == "max" else "f32",
    )
    case(
        f"{pool}-1d",
        pool,
        {"kernel_shape": [3], "strides": [2], "pads": [1, 1]},
        [rand(41, (2, 3, 9))],
        lambda x, mode=mode: [ref_pool(x, mode, [3], strides=[2], pads=[1, 1])],
        "exact" if mode == "max" else "f32",
    )
    case(
        f"{pool}-3d",
        pool,
        {"kernel_shape": [2, 2, 2], "strides": [1, 2, 2], "pads": [0, 1, 0, 1, 0, 1]},
        [rand(42, (1, 2, 3, 4, 5))],
        lambda x, mode=mode: [
            ref_pool(x, mode, [2, 2, 2], strides=[1, 2, 2], pads=[0, 1, 0, 1, 0, 1])
        ],
        "exact" if mode == "max" else "f32",
    )
    case(
        f"{pool}-bigkernel",
        pool,
        {"kernel_shape": [9, 8], "strides": [1, 1]},
        [rand(43, (2, 2, 10, 9))],
        lambda x, mode=mode: [ref_pool(x, mode, [9, 8])],
        "exact" if mode == "max" else "f32",
    )
    case(  # a kernel dim longer than MAX_TAP_LOOP: reduced over a window view
        f"{pool}-longkernel",
        pool,
        {"kernel_shape": [2, 34], "strides": [1, 3], "pads": [1, 0, 0, 2]},
        [rand(46, (1, 2, 5, 40))],
        lambda x, mode=mode: [ref_pool(x, mode, [2, 34], strides=[1, 3], pads=[1, 0, 0, 2])],
        "exact" if mode == "max" else "f32",
    )
    case(
        f"{pool}-f64",
        pool,
        {"kernel_shape": [2, 2], "pads": [1, 1, 1, 1]},
        [_px.astype(np.float64)],
        lambda x, mode=mode: [ref_pool(x, mode, [2, 2], pads=[1, 1, 1, 1])],
        "exact" if mode == "max" else "f64",
        ort=mode == "max",
    )  # no double AveragePool in ORT
    case(
        f"{pool}-f16",
        pool,
        {"kernel_shape": [2, 2], "strides": [2, 2]},
        [_px.astype(np.float16)],
        lambda x, mode=mode: [ref_pool(x, mode, [2, 2], strides=[2, 2])],
        "exact" if mode == "max" else "f16",
        ort=False,
    )
for dt in (np.int8, np.uint8):
    case(
        f"MaxPool-{np.dtype(dt).name}",
        "MaxPool",
        {"kernel_shape": [2, 2], "pads": [1, 1, 0, 0]},
        [rand(44, (1, 2, 5, 5), dt, 0 if dt == np.uint8 else -100, 100)],
        lambda x: [ref_pool(x, "max", [2, 2], pads=[1, 1, 0, 0])],
        "exact",
    )
for so in (0, 1):
    for name, attrs in (
        ("k2s2", {"kernel_shape": [2, 2], "strides": [2, 2]}),
        (
            "pads-dil",
            {"kernel_shape": [2, 3], "pads": [1, 1, 1, 1], "dilations": [2, 1], "strides": [1, 2]},
        ),
    ):
        a = {**attrs, "storage_order": so}
        case(
            f"MaxPool-indices-{name}-so{so}",
            "MaxPool",
            a,
            [_px],
            lambda x, kw=_pool_ref_kw(a): list(ref_pool(x, "max", with_indices=True, **kw)),
            "exact",
            num_outputs=2,
        )
case(
    "GlobalAveragePool",
    "GlobalAveragePool",
    {},
    [_px],
    lambda x: [
        np.array(
            [
                [[[math.fsum(x[n, c].ravel().tolist()) / x[n, c].size]] for c in range(x.shape[1])]
                for n in range(x.shape[0])
            ]
        )
    ],
    "f32",
)
case(
    "GlobalAveragePool-3d",
    "GlobalAveragePool",
    {},
    [rand(45, (2, 3, 2, 3, 4))],
    lambda x: [x.astype(np.float64).mean(axis=(2, 3, 4), keepdims=True)],
    "f32",
)
case(
    "GlobalAveragePool-f16",
    "GlobalAveragePool",
    {},
    [_px.astype(np.float16)],
    lambda x: [x.astype(np.float64).mean(axis=(2, 3), keepdims=True)],
    "f16",
    ort=False,
)

# -- Gemm / MatMul ---------------------------------------------------------------------------
_ga, _gb = rand(50, (4, 6)), rand(51, (6, 5))


def ref_gemm(a, b, c=None, alpha=1.0, beta=1.0, ta=0, tb=0):
    a2 = a.T if ta else a
    b2 = b.T if tb else b
    y = alpha * ref_matmul(a2, b2)
    if c is not None:
        y = y + beta * c.astype(np.float64)
    return y


for ta, tb in itertools.product((0, 1), (0, 1)):
    a = _ga.T.copy() if ta else _ga
    b = _gb.T.copy() if tb else _gb
    case(
        f"Gemm-tA{ta}-tB{tb}",
        "Gemm",
        {"transA": ta, "transB": tb},
        [a, b, rand(52, (5,))],
        lambda a, b, c, ta=ta, tb=tb: [ref_gemm(a, b, c, ta=ta, tb=tb)],
        "f32_accumulate",
    )
for cname, cshape in (
    ("none", None),
    ("scalar", ()),
    ("row", (1, 5)),
    ("col", (4, 1)),
    ("full", (4, 5)),
):
    ins = [_ga, _gb] + ([] if cshape is None else [rand(53, cshape)])
    case(
        f"Gemm-alpha-beta-C{cname}",
        "Gemm",
        {"alpha": 0.5, "beta": -2.0},
        ins,
        lambda a, b, c=None: [ref_gemm(a, b, c, alpha=0.5, beta=-2.0)],
        "f32_accumulate",
    )
case(
    "Gemm-f64",
    "Gemm",
    {"transB": 1},
    [_ga.astype(np.float64), _gb.T.astype(np.float64), rand(54, (5,), np.float64)],
    lambda a, b, c: [ref_gemm(a, b, c, tb=1)],
    "f64",
)
case(
    "Gemm-f16",
    "Gemm",
    {"transB": 1, "alpha": 2.0},
    [_ga.astype(np.float16), _gb.T.astype(np.float16)],
    lambda a, b: [ref_gemm(a, b, alpha=2.0, tb=1)],
    "f16_accumulate",
    ort=False,
)
case(
    "Gemm-int64",
    "Gemm",
    {},
    [
        rand(55, (3, 4), np.int64, -5, 5),
        rand(56, (4, 2), np.int64, -5, 5),
        rand(57, (2,), np.int64, -5, 5),
    ],
    lambda a, b, c: [ref_gemm(a, b, c).astype(np.int64)],
    "exact",
    ort=False,
)
for name, sa, sb in (
    ("2d", (3, 4), (4, 5)),
    ("1d-2d", (4,), (4, 5)),
    ("2d-1d", (3, 4), (4,)),
    ("1d-1d", (4,), (4,)),
    ("batched", (2, 1, 3, 4), (5, 4, 2)),
    ("batch-2d", (2, 3, 4), (4, 2)),
):
    case(
        f"MatMul-{name}",
        "MatMul",
        {},
        [rand(60, sa), rand(61, sb)],
        lambda a, b: [ref_matmul(a, b)],
        "f32_accumulate",
    )
case(
    "MatMul-int32",
    "MatMul",
    {},
    [rand(62, (2, 3), np.int32, -9, 9), rand(63, (3, 4), np.int32, -9, 9)],
    lambda a, b: [ref_matmul(a, b).astype(np.int32)],
    "exact",
)
case(
    "MatMul-f16",
    "MatMul",
    {},
    [rand(64, (3, 8), np.float16), rand(65, (8, 2), np.float16)],
    lambda a, b: [ref_matmul(a, b)],
    "f16_accumulate",
    ort=False,
)

# -- shape ops -------------------------------------------------------------------------------
_sx = rand(70, (2, 3, 4))
for name, shape, expect in (
    ("minus1", [-1, 4], (6, 4)),
    ("zero", [0, -1], (2, 12)),
    ("zero-mid", [2, 0, 2, 2], (2, 3, 2, 2)),
    ("flat", [-1], (24,)),
    ("same", [2, 3, 4], (2, 3, 4)),
    ("add-dims", [1, 2, 1, 12], (1, 2, 1, 12)),
):
    case(
        f"Reshape-{name}",
        "Reshape",
        {},
        [_sx, np.array(shape, np.int64)],
        lambda x, s, expect=expect: [np.array(x.ravel().tolist(), dtype=x.dtype).reshape(expect)],
        "exact",
        constants=(1,),
    )
case(
    "Reshape-allowzero",
    "Reshape",
    {"allowzero": 1},
    [np.zeros((0, 3), np.float32), np.array([3, 0], np.int64)],
    lambda x, s: [np.zeros((3, 0), np.float32)],
    "exact",
    constants=(1,),
)
case(
    "Reshape-int64-data",
    "Reshape",
    {},
    [np.arange(6, dtype=np.int64), np.array([3, -1], np.int64)],
    lambda x, s: [np.array([[0, 1], [2, 3], [4, 5]], np.int64)],
    "exact",
    constants=(1,),
)
for axis in (0, 1, 2, 3, -1, -3):
    x4 = rand(71, (2, 3, 4, 5))
    case(
        f"Flatten-axis{axis}",
        "Flatten",
        {"axis": axis},
        [x4],
        lambda x, axis=axis: [
            x.reshape(int(np.prod(x.shape[: axis % 4 if axis < 0 else axis])), -1)
        ],
        "exact",
    )
case("Flatten-default", "Flatten", {}, [rand(72, (2, 3, 2))], lambda x: [x.reshape(2, 6)], "exact")
for perm in (None, [0, 2, 1, 3], [3, 1, 0, 2]):
    x4 = rand(73, (2, 3, 4, 5))

    def _ref_t(x, perm=perm):
        p = perm if perm is not None else list(range(x.ndim))[::-1]
        out = np.empty(tuple(x.shape[i] for i in p), x.dtype)
        for idx in np.ndindex(*x.shape):
            out[tuple(idx[i] for i in p)] = x[idx]
        return [out]

    case(
        f"Transpose-{perm}",
        "Transpose",
        {} if perm is None else {"perm": perm},
        [x4],
        _ref_t,
        "exact",
    )


def _ref_concat(axis):
    def ref(*xs):
        ax = axis % xs[0].ndim
        moved = [np.moveaxis(x, ax, 0) for x in xs]
        rows = [row for m in moved for row in m]
        return [np.moveaxis(np.stack(rows), 0, ax)]

    return ref


for axis in (0, 1, -1):
    ins = [rand(74, (2, 3, 4)), rand(75, (2, 3, 4)), rand(76, (2, 3, 4))]
    ins[1] = rand(75, tuple(5 if i == axis % 3 else d for i, d in enumerate((2, 3, 4))))
    case(f"Concat-axis{axis}", "Concat", {"axis": axis}, ins, _ref_concat(axis), "exact")
case(
    "Concat-single-int",
    "Concat",
    {"axis": 0},
    [np.arange(3, dtype=np.int64)],
    lambda x: [x.copy()],
    "exact",
)

# -- normalisation / reduce ------------------------------------------------------------------
_nx = rand(80, (2, 3, 4, 5), low=-5, high=5)
for axis in (-1, 0, 1, 2):
    case(
        f"Softmax-axis{axis}",
        "Softmax",
        {"axis": axis},
        [_nx],
        lambda x, a=axis: [ref_softmax(x, a)],
        "f32_transcendental",
    )
    case(
        f"LogSoftmax-axis{axis}",
        "LogSoftmax",
        {"axis": axis},
        [_nx],
        lambda x, a=axis: [np.log(ref_softmax(x, a))],
        "f32_transcendental",
    )
case(
    "Softmax-default",
    "Softmax",
    {},
    [_nx[0, 0]],
    lambda x: [ref_softmax(x, -1)],
    "f32_transcendental",
)
case(
    "Softmax-large",
    "Softmax",
    {},
    [np.array([[1000.0, 1001.0, 999.0], [-1e4, -1e4, -1e4 + 1]], np.float32)],
    lambda x: [ref_softmax(x, -1)],
    "f32_transcendental",
)
case(
    "LogSoftmax-large",
    "LogSoftmax",
    {},
    [np.array([[1000.0, 1001.0, 999.0]], np.float32)],
    lambda x: [np.array([[-1.4076059644, -0.4076059644, -2.4076059644]])],
    "f32_transcendental",
)
case(
    "Softmax-f16",
    "Softmax",
    {"axis": 1},
    [_nx.astype(np.float16)],
    lambda x: [ref_softmax(x, 1)],
    "f16",
    ort=False,
)
case(
    "Softmax-f64",
    "Softmax",
    {"axis": 1},
    [_nx.astype(np.float64)],
    lambda x: [ref_softmax(x, 1)],
    "f64",
)


def ref_bn(x, s, b, m, v, eps=1e-5):
    shape = (1, -1) + (1,) * (x.ndim - 2)
    f = lambda t: t.astype(np.float64).reshape(shape)
    return (x.astype(np.float64) - f(m)) / np.sqrt(f(v) + eps) * f(s) + f(b)


for name, xs in (("4d", (2, 3, 4, 5)), ("2d", (4, 3)), ("3d", (2, 3, 6))):
    params = [rand(81, (3,)), rand(82, (3,)), rand(83, (3,)), rand(84, (3,), low=0.1, high=2.0)]
    case(
        f"BatchNormalization-{name}",
        "BatchNormalization",
        {},
        [rand(85, xs)] + params,
        lambda x, s, b, m, v: [ref_bn(x, s, b, m, v)],
        "f32_accumulate",
    )
case(
    "BatchNormalization-eps",
    "BatchNormalization",
    {"epsilon": 0.5, "momentum": 0.7},
    [_nx, rand(81, (3,)), rand(82, (3,)), rand(83, (3,)), rand(84, (3,), low=0.0, high=1.0)],
    lambda x, s, b, m, v: [ref_bn(x, s, b, m, v, 0.5)],
    "f32_accumulate",
)
case(
    "BatchNormalization-f16",
    "BatchNormalization",
    {},
    [_nx.astype(np.float16)]
    + [
        p.astype(np.float16)
        for p in (rand(81, (3,)), rand(82, (3,)), rand(83, (3,)), rand(84, (3,), low=0.1, high=2.0))
    ],
    lambda x, s, b, m, v: [ref_bn(x, s, b, m, v)],
    "f16_accumulate",
    ort=False,
)

_ties = np.array(
    [[[3, 1, 3, 0], [2, 2, 1, 2], [0, 5, 5, 5]], [[1, 1, 1, 1], [4, 0, 4, 1], [9, 9, 0, 9]]],
    np.int64,
)
for axis, keep, last in itertools.product((0, 1, 2, -1), (0, 1), (0, 1)):
    case(
        f"ArgMax-ax{axis}-k{keep}-l{last}",
        "ArgMax",
        {"axis": axis, "keepdims": keep, "select_last_index": last},
        [_ties],
        lambda x, a=axis, k=keep, l=last: [ref_argmax(x, a, k, l)],
        "exact",
    )
case("ArgMax-default-float", "ArgMax", {}, [_nx], lambda x: [ref_argmax(x, 0, 1, 0)], "exact")
case(
    "ArgMax-float-last",
    "ArgMax",
    {"axis": -1, "select_last_index": 1},
    [np.round(_nx)],
    lambda x: [ref_argmax(x, -1, 1, 1)],
    "exact",
)

CASE_IDS = [c.id for c in CASES]
assert len(set(CASE_IDS)) == len(CASE_IDS), "duplicate case ids"


# --------------------------------------------------------------------------------------------
# the case table against the independent references


@pytest.mark.parametrize("c", CASES, ids=CASE_IDS)
def test_op_matches_reference(c: Case) -> None:
    outs = run_op(c.op, c.attrs, c.inputs, c.num_outputs, c.constants)
    expected = c.ref(*c.inputs)
    assert len(outs) == len(expected)
    for got, want in zip(outs, expected):
        assert_close(got, want, c.tol)
    # float ops keep the input's float dtype (never silently upcast)
    if c.inputs[0].dtype.kind == "f" and c.op not in ("Cast", "ArgMax"):
        assert outs[0].dtype == c.inputs[0].dtype


def test_case_table_covers_every_op() -> None:
    # the ops added since have their own case tables (tests/runtime/test_ops_<family>.py)
    assert {c.op for c in CASES} >= EXPECTED_OPS


# --------------------------------------------------------------------------------------------
# Conv orientation and structure


def test_conv_impulse_is_cross_correlation() -> None:
    """An impulse input yields the kernel flipped (cross-correlation, not convolution)."""
    x = np.zeros((1, 1, 7, 7), np.float32)
    x[0, 0, 3, 3] = 1.0
    w = np.arange(1, 10, dtype=np.float32).reshape(1, 1, 3, 3)  # asymmetric kernel
    (y,) = run_op("Conv", {}, [x, w])
    assert y.shape == (1, 1, 5, 5)
    np.testing.assert_array_equal(y[0, 0, 1:4, 1:4], w[0, 0, ::-1, ::-1])
    assert np.count_nonzero(y) == 9


def test_conv_impulse_kernel_is_a_shift() -> None:
    """A kernel that is an impulse at (kh, kw) picks x[oh + kh, ow + kw] per channel."""
    x = rand(90, (2, 3, 6, 7))
    for kh, kw in ((0, 0), (2, 1), (1, 3)):
        w = np.zeros((3, 3, 3, 4), np.float32)
        for c in range(3):
            w[c, c, kh, kw] = 1.0
        (y,) = run_op("Conv", {}, [x, w])
        np.testing.assert_array_equal(y, x[:, :, kh : kh + 4, kw : kw + 4])


def test_conv_impulse_with_padding_stride_dilation() -> None:
    x = np.zeros((1, 1, 5, 5), np.float32)
    x[0, 0, 0, 4] = 1.0
    w = np.arange(1, 5, dtype=np.float32).reshape(1, 1, 2, 2)
    (y,) = run_op("Conv", {"pads": [1, 1, 1, 1], "dilations": [2, 2], "strides": [1, 1]}, [x, w])
    # y[o] = sum_k w[k] x[o - 1 + 2k]: the only hit is at o = (1 - 2a, 5 - 2b) for taps (a, b)
    expected = np.zeros((1, 1, 5, 5), np.float32)
    for a, b in itertools.product(range(2), range(2)):
        oh, ow = 0 + 1 - 2 * a, 4 + 1 - 2 * b
        if 0 <= oh < 5 and 0 <= ow < 5:
            expected[0, 0, oh, ow] = w[0, 0, a, b]
    np.testing.assert_array_equal(y, expected)
    # only tap (0, 1) reaches the impulse: o = (1 - 0, 5 - 2) = (1, 3)
    assert np.count_nonzero(y) == 1 and y[0, 0, 1, 3] == w[0, 0, 0, 1]


def test_conv_same_padding_output_shapes() -> None:
    x = rand(91, (1, 2, 9, 10))
    w = rand(92, (3, 2, 4, 3))
    for ap in ("SAME_UPPER", "SAME_LOWER"):
        for s in (1, 2, 3):
            (y,) = run_op("Conv", {"auto_pad": ap, "strides": [s, s]}, [x, w])
            assert y.shape == (1, 3, math.ceil(9 / s), math.ceil(10 / s))
    # even kernel, stride 1: UPPER and LOWER differ by a one-pixel shift
    (up,) = run_op("Conv", {"auto_pad": "SAME_UPPER"}, [x, w])
    (lo,) = run_op("Conv", {"auto_pad": "SAME_LOWER"}, [x, w])
    np.testing.assert_allclose(up[:, :, 1:-1, :], lo[:, :, 2:, :], rtol=1e-5, atol=1e-5)


def test_conv_matches_taps_reference_on_mnist_sizes() -> None:
    x = rand(93, (3, 32, 13, 13))
    w = rand(94, (64, 32, 3, 3), low=-0.2, high=0.2)
    b = rand(95, (64,))
    (y,) = run_op("Conv", {"kernel_shape": [3, 3]}, [x, w, b])
    assert_close(y, ref_conv_taps(x, w, b), "f32_accumulate")


@pytest.mark.parametrize(
    "xshape, wshape, attrs, dtype, full_width, bias_in_gemm, chunked",
    [
        ((2, 3, 10, 9), (4, 3, 3, 3), {}, np.float32, True, False, False),
        ((2, 3, 10, 9), (4, 3, 3, 3), {}, np.float16, True, False, False),
        ((2, 3, 10, 9), (4, 3, 3, 3), {}, np.float64, True, False, False),
        (
            (1, 2, 12, 14),
            (4, 1, 3, 3),
            {"dilations": [2, 2], "pads": [1, 1, 1, 1], "group": 2},
            np.float32,
            True,
            False,
            False,
        ),
        ((1, 2, 4, 8, 8), (3, 2, 1, 2, 2), {}, np.float32, True, False, False),
        ((2, 1, 40, 30), (2, 1, 3, 3), {}, np.float32, True, True, False),
        ((2, 1, 40, 30), (2, 1, 3, 3), {}, np.float16, True, True, False),
        # long runs (an output row times the batch): the plain im2col, in slices
        ((16, 3, 10, 9), (4, 3, 3, 3), {}, np.float32, False, False, True),
        ((2, 3, 10), (4, 3, 3), {}, np.float32, False, False, False),  # 1-D: not full width
        ((32, 2, 12, 12), (4, 2, 3, 3), {}, np.float32, False, True, True),
        (
            (32, 4, 13, 13),
            (6, 2, 3, 3),
            {"strides": [2, 2], "group": 2, "pads": [1, 0, 0, 1]},
            np.float32,
            False,
            False,
            True,
        ),
        (
            (2, 4, 20, 20),
            (6, 2, 3, 3),
            {"strides": [2, 2], "group": 2, "pads": [1, 0, 1, 0]},
            np.float32,
            False,
            False,
            True,
        ),
        (
            (16, 2, 25, 25),
            (2, 1, 2, 2),
            {"strides": [2, 2], "group": 2, "pads": [1, 0, 1, 0]},
            np.float32,
            False,
            True,
            True,
        ),
        ((30, 2, 9, 9), (3, 2, 1, 1), {}, np.float32, True, True, False),
        ((1, 2, 9, 9), (3, 2, 1, 1), {}, np.float32, True, False, False),
    ],
)
def test_conv_kernel_paths(
    xshape, wshape, attrs, dtype, full_width, bias_in_gemm, chunked, monkeypatch
) -> None:
    """The full-width and sliced im2col and the bias-in-GEMM variants agree with the naive
    reference (slices of 4 KiB, so that small shapes take the sliced path)."""
    monkeypatch.setattr(_kernels, "IM2COL_CHUNK_BYTES", 4096)
    x, w, b = rand(120, xshape, dtype), rand(121, wshape, dtype), rand(122, (wshape[0],), dtype)
    op = create_op("Conv", "c", attrs)
    (y,) = op.run([x, w, b])
    (plan,) = op._plans.values()
    assert (plan.full_width or plan.pointwise) == full_width
    assert plan.bias_in_gemm == bias_in_gemm
    assert (plan.chunk_rows > 0) == chunked
    assert y.dtype == np.dtype(dtype)
    nd = len(xshape) - 2
    want = ref_conv(
        x,
        w,
        b,
        strides=attrs.get("strides"),
        pads=attrs.get("pads"),
        dilations=attrs.get("dilations"),
        group=attrs.get("group", 1),
    )
    tol = {np.float16: "f16_accumulate", np.float32: "f32_accumulate", np.float64: "f64"}[dtype]
    assert_close(y, want, tol)
    (y2,) = run_op("Conv", attrs, [x, w])  # without bias: the other path
    assert_close(
        y2,
        ref_conv(
            x,
            w,
            None,
            strides=attrs.get("strides"),
            pads=attrs.get("pads"),
            dilations=attrs.get("dilations"),
            group=attrs.get("group", 1),
        ),
        tol,
    )
    assert y.shape[2:] == want.shape[2:] and len(y.shape) == nd + 2


def test_conv_accepts_non_contiguous_inputs() -> None:
    base = rand(96, (2, 6, 9, 8))
    x = base[:, ::2, ::-1, :]  # strided, negative strides
    w = np.asfortranarray(rand(97, (4, 3, 3, 3)))
    (y,) = run_op("Conv", {"pads": [1, 1, 1, 1]}, [x, w])
    assert_close(y, ref_conv(np.ascontiguousarray(x), w, pads=[1, 1, 1, 1]), "f32_accumulate")


def test_ops_accept_strided_outputs_of_conv() -> None:
    """Conv may return a transposed view (batch folded into the GEMM); consumers cope."""
    x = rand(98, (3, 2, 8, 8))
    w = rand(99, (4, 2, 3, 3))
    (y,) = run_op("Conv", {}, [x, w])
    ref = ref_conv_taps(x, w)
    (p,) = run_op("MaxPool", {"kernel_shape": [2, 2], "strides": [2, 2]}, [y])
    assert_close(
        p, ref_pool(ref.astype(np.float32), "max", [2, 2], strides=[2, 2]), "f32_accumulate"
    )
    (f,) = run_op("Flatten", {}, [y])
    assert_close(f, ref.reshape(3, -1), "f32_accumulate")
    (r,) = run_op("Reshape", {}, [y, np.array([3, -1], np.int64)], constants=(1,))
    assert_close(r, ref.reshape(3, -1), "f32_accumulate")


# --------------------------------------------------------------------------------------------
# elementwise details


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("layout", ["contiguous", "transposed", "strided", "small"])
def test_relu_layouts(dtype, layout) -> None:
    """Relu's zero-block fast path (big dense arrays, any axis order) and its fallbacks."""
    base = rand(123, (5, 7, 31, 29), dtype)
    base[0, 0, 0, :3] = [np.nan, -0.0, np.inf]
    x = {
        "contiguous": base,
        "transposed": base.transpose(2, 0, 3, 1),
        "strided": base[:, :, ::2],
        "small": base[:1, :1],
    }[layout]
    (y,) = run_op("Relu", {}, [x])
    want = py_elementwise(
        lambda v: v if (math.isnan(v) or v > 0) else 0.0, x.astype(float), dtype=x.dtype
    )
    np.testing.assert_array_equal(y, want)
    assert y.dtype == x.dtype


def test_sigmoid_extremes_do_not_warn() -> None:
    x = np.array([-1e4, -100.0, 0.0, 100.0, 1e4, np.inf, -np.inf], np.float32)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        (y,) = run_op("Sigmoid", {}, [x])
    np.testing.assert_array_equal(
        y, np.array([0, np.exp(np.float32(-100)), 0.5, 1, 1, 1, 0], np.float32)
    )
    assert y[1] > 0  # a float32 denormal, not flushed


def test_gelu_erf_accuracy_and_specials() -> None:
    x = np.concatenate([np.linspace(-10, 10, 4001), [0.0, -0.0, np.inf, -np.inf, np.nan]])
    (y,) = run_op("Gelu", {}, [x])
    finite = np.isfinite(x)
    ref = np.array([_gelu_none(v) for v in x[finite]])
    # x / sqrt(2) is rounded differently here and in the kernel; erfc's steep tail (d log erfc
    # / d log y ~ 2 y^2 ~ 100) turns that 1e-16 into ~1e-14
    np.testing.assert_allclose(y[finite], ref, rtol=1e-12, atol=1e-300)
    assert y[-3] == np.inf and y[-2] == 0.0 and np.isnan(y[-1])
    assert y[0] < 0 and abs(y[0] / _gelu_none(-10.0) - 1) < 1e-12  # the tail is not lost to 1 + erf


def test_erfc_kernel_against_math_erfc() -> None:
    x = np.concatenate(
        [np.linspace(-6, 26, 32001), [0.46875, -0.46875, 4.0, 27.0, np.inf, -np.inf]]
    )
    np.testing.assert_allclose(_kernels.erfc(x), [math.erfc(v) for v in x], rtol=2e-14, atol=1e-300)
    assert np.isnan(_kernels.erfc(np.array([np.nan])))[0]


def test_erf_kernel_against_math_erf() -> None:
    x = np.concatenate(
        [np.linspace(-7, 7, 20001), [0.46875, -0.46875, 4.0, -4.0, 5.99, 6.01, 27.0]]
    )
    np.testing.assert_allclose(_kernels.erf(x), [math.erf(v) for v in x], rtol=1e-15, atol=1e-16)


def test_cast_float_to_int_truncates_and_does_not_warn() -> None:
    x = np.array([-2.9, -0.5, 0.5, 2.9, np.nan, 1e30], np.float32)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        (y,) = run_op("Cast", {"to": 7}, [x])
    assert y.dtype == np.int64
    np.testing.assert_array_equal(y[:4], [-2, 0, 0, 2])


def test_cast_to_same_type_and_bool() -> None:
    x = np.array([0.0, -0.0, 0.1, np.nan], np.float32)
    (y,) = run_op("Cast", {"to": 9}, [x])
    np.testing.assert_array_equal(y, [False, False, True, True])
    (z,) = run_op("Cast", {"to": 1}, [x])
    assert z.dtype == np.float32


def test_dropout_refuses_training_mode() -> None:
    x = rand(100, (2, 3))
    op = create_op("Dropout", "drop")
    with pytest.raises(
        ExecutionError, match=r"Dropout node 'drop': training_mode=True is not supported"
    ):
        op.run([x, None, np.array(True)])
    op.constant_inputs = {2: np.array(True)}
    with pytest.raises(ExecutionError, match="training_mode"):
        op.infer([TensorSpec.of(x), None, TensorSpec((), np.bool_)])
    (y,) = op.run([x, np.array(0.9, np.float32), np.array(False)])
    np.testing.assert_array_equal(y, x)


def test_div_int_semantics() -> None:
    a = np.array([7, -7, 7, -7, 0, 9], np.int64)
    b = np.array([2, 2, -2, -2, 3, 3], np.int64)
    (q,) = run_op("Div", {}, [a, b])
    np.testing.assert_array_equal(q, [3, -3, -3, 3, 0, 3])
    (q32,) = run_op("Div", {}, [a.astype(np.int32), b.astype(np.int32)])
    assert q32.dtype == np.int32


def test_clip_nan_propagates_and_bounds_scalar_shape() -> None:
    x = np.array([np.nan, -5.0, 5.0], np.float32)
    (y,) = run_op("Clip", {}, [x, np.array([-1.0], np.float32), np.array(1.0, np.float32)])
    assert np.isnan(y[0]) and y[1] == -1 and y[2] == 1
    with pytest.raises(
        ExecutionError, match=r"Clip node 'c': 'min' \(input 1\) must be a scalar, got shape \[2\]"
    ):
        create_op("Clip", "c").infer([TensorSpec((3,), np.float32), TensorSpec((2,), np.float32)])


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize(
    "op_type", ["Relu", "LeakyRelu", "Sigmoid", "Tanh", "Gelu", "Softmax", "LogSoftmax", "Identity"]
)
def test_unary_float_dtypes_preserved(op_type: str, dtype) -> None:
    x = rand(101, (3, 4), dtype)
    (y,) = run_op(op_type, {}, [x])
    assert y.dtype == np.dtype(dtype) and y.shape == x.shape
    assert np.all(np.isfinite(y))


# --------------------------------------------------------------------------------------------
# shape details


def test_reshape_run_uses_runtime_shape_values() -> None:
    op = create_op("Reshape", "r")
    x = np.arange(12, dtype=np.float32)
    for shape, expect in (([3, 4], (3, 4)), ([2, -1, 3], (2, 2, 3)), ([-1], (12,))):
        (y,) = op.run([x, np.array(shape, np.int64)])
        assert y.shape == expect
        np.testing.assert_array_equal(y.ravel(), x)


@pytest.mark.parametrize(
    "attrs, in_shape, shape, message",
    [
        ({}, (2, 3), [-1, -1], r"more than one -1"),
        ({}, (2, 3), [4, 2], r"6 elements vs 8"),
        ({}, (2, 3), [4, -1], r"6 elements do not fit"),
        ({}, (2, 3), [2, 3, 0], r"0 at position 2 has no input dim to copy"),
        ({}, (2, 3), [-2, 3], r"dims must be >= -1"),
        ({"allowzero": 1}, (0, 3), [0, -1], r"allowzero=1 forbids 0 together with -1"),
    ],
)
def test_reshape_errors(attrs, in_shape, shape, message) -> None:
    op = create_op("Reshape", "resh", attrs)
    op.constant_inputs = {1: np.array(shape, np.int64)}
    shown = re.escape(f"cannot reshape [{', '.join(map(str, in_shape))}] to {shape}: ")
    with pytest.raises(ExecutionError, match=r"^Reshape node 'resh': " + shown + message):
        op.infer([TensorSpec(in_shape, np.float32), TensorSpec((len(shape),), np.int64)])
    with pytest.raises(ExecutionError, match=message):
        op.run([np.zeros(in_shape, np.float32), np.array(shape, np.int64)])


def test_reshape_shape_must_be_constant_at_load() -> None:
    op = create_op("Reshape", "resh")
    with pytest.raises(
        ExecutionError, match=r"Reshape node 'resh': the shape input \(input 1\) must be a constant"
    ):
        op.infer([TensorSpec((2, 3), np.float32), TensorSpec((2,), np.int64)])
    op.constant_inputs = {1: np.array([3, 2], np.int64)}
    with pytest.raises(ExecutionError, match="1-D int64"):
        op.infer([TensorSpec((2, 3), np.float32), TensorSpec((2,), np.int32)])


def test_flatten_transpose_concat_errors() -> None:
    with pytest.raises(
        ExecutionError, match=r"Flatten node 'f': axis 4 is out of range for input \[2, 3, 4\]"
    ):
        create_op("Flatten", "f", {"axis": 4}).infer([TensorSpec((2, 3, 4), np.float32)])
    with pytest.raises(
        ExecutionError, match=r"Transpose node 't': attribute 'perm' must be a permutation"
    ):
        create_op("Transpose", "t", {"perm": [0, 0, 1]})
    with pytest.raises(
        ExecutionError, match=r"Transpose node 't': perm \[1, 0\] does not fit input \[2, 3, 4\]"
    ):
        create_op("Transpose", "t", {"perm": [1, 0]}).infer([TensorSpec((2, 3, 4), np.float32)])
    cat = create_op("Concat", "cat", {"axis": 1})
    with pytest.raises(
        ExecutionError,
        match=r"Concat node 'cat': input 1 \[3, 4\] does not match input 0 \[2, 4\] outside axis 1",
    ):
        cat.infer([TensorSpec((2, 4), np.float32), TensorSpec((3, 4), np.float32)])
    with pytest.raises(
        ExecutionError,
        match=r"Concat node 'cat': input 1 has dtype float64 but input 0 has float32",
    ):
        cat.infer([TensorSpec((2, 4), np.float32), TensorSpec((2, 4), np.float64)])
    with pytest.raises(ExecutionError, match=r"axis 1 is out of range"):
        cat.infer([TensorSpec((2,), np.float32)])


# --------------------------------------------------------------------------------------------
# registry, attributes and error messages


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


def test_registry_and_exports() -> None:
    assert set(OPS) >= EXPECTED_OPS
    for name, cls in OPS.items():
        assert cls.op_type == name and issubclass(cls, Op)
        assert get_op_class(name) is cls
        lo, hi = cls.num_inputs
        assert 0 <= lo <= hi and (lo > 0 or name == "Constant")
        for attr in cls.attributes.values():
            assert isinstance(attr, Attr)
    assert set(ops_pkg.__all__) == {
        "Op",
        "Attr",
        "TensorSpec",
        "REQUIRED",
        "OPS",
        "register",
        "get_op_class",
        "create_op",
    }
    assert Attr("int").default is REQUIRED and Attr("int").required
    assert not Attr("int", 0).required


def test_unknown_op_lists_supported_ops() -> None:
    with pytest.raises(ExecutionError) as info:
        get_op_class("Foo", "n")
    msg = str(info.value)
    assert msg.startswith("unknown op 'Foo' (node 'n'); supported ops: ")
    assert msg.endswith(", ".join(sorted(OPS)))
    with pytest.raises(ExecutionError, match=r"^unknown op 'Foo'; supported ops: [A-Z]"):
        get_op_class("Foo")
    with pytest.raises(ExecutionError, match=r"unknown op 'conv' \(node 'c1'\)"):
        create_op("conv", "c1", {})


def test_register_rejects_duplicates_and_non_ops() -> None:
    class Again(Op):
        op_type = "Add"

    with pytest.raises(ExecutionError, match="'Add' is already registered"):
        register(Again)
    assert OPS["Add"] is not Again
    with pytest.raises(ExecutionError, match="only Op subclasses"):
        register(int)  # type: ignore[arg-type]

    class Nameless(Op):
        pass

    with pytest.raises(ExecutionError, match="non-empty op_type"):
        register(Nameless)

    class TestOnlyDouble(Op):
        op_type = "TestOnlyDouble"

        def _infer(self, inputs):
            return [inputs[0]]

        def run(self, inputs):
            return [inputs[0] * 2]

    try:
        assert register(TestOnlyDouble) is TestOnlyDouble
        (y,) = create_op("TestOnlyDouble", "d").run([np.ones(2)])
        np.testing.assert_array_equal(y, [2.0, 2.0])
        with pytest.raises(ExecutionError, match="already registered"):
            register(TestOnlyDouble)
    finally:
        OPS.pop("TestOnlyDouble", None)


@pytest.mark.parametrize(
    "op_type, attrs, message",
    [
        ("Conv", {"strides": "x"}, "Conv node 'n': attribute 'strides' must be ints, got 'x'"),
        ("Conv", {"group": 1.5}, "Conv node 'n': attribute 'group' must be int, got 1.5"),
        (
            "Conv",
            {"pads": [1, 1.5, 1, 1]},
            "Conv node 'n': attribute 'pads' must be ints, got [1, 1.5, 1, 1]",
        ),
        ("Conv", {"auto_pad": 3}, "Conv node 'n': attribute 'auto_pad' must be string, got 3"),
        (
            "LeakyRelu",
            {"alpha": "big"},
            "LeakyRelu node 'n': attribute 'alpha' must be float, got 'big'",
        ),
        (
            "LeakyRelu",
            {"alpha": True},
            "LeakyRelu node 'n': attribute 'alpha' must be float, got True",
        ),
        ("Transpose", {"perm": 3}, "Transpose node 'n': attribute 'perm' must be ints, got 3"),
        (
            "Gelu",
            {"approximate": 1},
            "Gelu node 'n': attribute 'approximate' must be string, got 1",
        ),
        ("Softmax", {"axis": [1]}, "Softmax node 'n': attribute 'axis' must be int, got [1]"),
    ],
)
def test_attribute_kind_errors(op_type, attrs, message) -> None:
    with pytest.raises(ExecutionError) as info:
        create_op(op_type, "n", attrs)
    assert str(info.value) == message


@pytest.mark.parametrize(
    "op_type, attrs, pattern",
    [
        (
            "Conv",
            {"strides": [1, -1]},
            r"Conv node 'n': attribute 'strides' must be positive, got \[1, -1\]",
        ),
        ("Conv", {"dilations": [0, 1]}, r"attribute 'dilations' must be positive"),
        ("Conv", {"pads": [1, 1, 1]}, r"attribute 'pads' must have 2 values per spatial dim"),
        ("Conv", {"pads": [-1, 0, 0, 0]}, r"attribute 'pads' must be non-negative"),
        (
            "Conv",
            {"strides": [1, 1], "dilations": [1, 1, 1]},
            r"attributes disagree on the number of spatial dims",
        ),
        ("Conv", {"group": 0}, r"Conv node 'n': attribute 'group' must be positive, got 0"),
        (
            "Conv",
            {"auto_pad": "SAME"},
            r"attribute 'auto_pad' must be one of NOTSET, VALID, SAME_UPPER, SAME_LOWER",
        ),
        (
            "Conv",
            {"bogus": 1},
            r"Conv node 'n': unknown attribute 'bogus' \(accepted attributes: auto_pad, dilations",
        ),
        (
            "Relu",
            {"alpha": 1.0},
            r"Relu node 'n': unknown attribute 'alpha' \(accepted attributes: none\)",
        ),
        ("Cast", {}, r"Cast node 'n': attribute 'to' is required"),
        ("Cast", {"to": 99}, r"Cast node 'n': attribute 'to' is not an ONNX data type: 99"),
        ("Cast", {"to": 8}, r"Cast node 'n': casting to STRING \(to=8\) is not supported"),
        ("Cast", {"to": 16}, r"casting to BFLOAT16 \(to=16\) is not supported"),
        ("MaxPool", {}, r"MaxPool node 'n': attribute 'kernel_shape' is required"),
        (
            "MaxPool",
            {"kernel_shape": [2, 2], "pads": [2, 0, 0, 0]},
            r"'pads' \[2, 0, 0, 0\] must be smaller than kernel_shape",
        ),
        (
            "MaxPool",
            {"kernel_shape": [2, 2], "storage_order": 2},
            r"'storage_order' must be 0 or 1",
        ),
        ("AveragePool", {"kernel_shape": [2], "ceil_mode": 3}, r"'ceil_mode' must be 0 or 1"),
        ("Concat", {}, r"Concat node 'n': attribute 'axis' is required"),
        (
            "Gelu",
            {"approximate": "fast"},
            r"attribute 'approximate' must be 'none' or 'tanh', got 'fast'",
        ),
        ("Gemm", {"transA": 2}, r"Gemm node 'n': attribute 'transA' must be 0 or 1, got 2"),
        ("ArgMax", {"keepdims": 5}, r"'keepdims' must be 0 or 1"),
        ("BatchNormalization", {"training_mode": 1}, r"training_mode=1 is not supported"),
        ("BatchNormalization", {"epsilon": -1.0}, r"'epsilon' must be a non-negative number"),
        ("Reshape", {"allowzero": 2}, r"'allowzero' must be 0 or 1"),
        ("LeakyRelu", {"alpha": float("nan")}, r"'alpha' must be finite"),
    ],
)
def test_attribute_value_errors(op_type, attrs, pattern) -> None:
    with pytest.raises(ExecutionError, match=pattern):
        create_op(op_type, "n", attrs)


def test_attribute_resolution_and_conversion() -> None:
    op = create_op(
        "Conv", "c", {"strides": np.array([2, 1]), "pads": (1, 1, 1, 1), "auto_pad": b"NOTSET"}
    )
    assert op.attrs == {
        "auto_pad": "NOTSET",
        "dilations": None,
        "group": 1,
        "kernel_shape": None,
        "pads": (1, 1, 1, 1),
        "strides": (2, 1),
    }
    assert create_op("LeakyRelu", "l").attrs == {"alpha": 0.01}
    assert create_op("LeakyRelu", "l", {"alpha": 1}).attrs["alpha"] == 1.0  # int accepted as float
    assert create_op("ArgMax", "a", {"keepdims": np.int64(0)}).attrs["keepdims"] == 0
    assert create_op("Softmax", "s", {"axis": None}).attrs == {"axis": -1}  # None means absent
    with pytest.raises(ExecutionError, match="attributes must be a mapping"):
        create_op("Relu", "r", [("a", 1)])  # type: ignore[arg-type]


def test_num_outputs_checked() -> None:
    with pytest.raises(ExecutionError, match=r"Conv node 'c': takes 1 output\(s\), got 2"):
        create_op("Conv", "c", {}, num_outputs=2)
    with pytest.raises(ExecutionError, match=r"Dropout node 'd': takes 1 to 2 output\(s\), got 3"):
        create_op("Dropout", "d", {}, num_outputs=3)
    assert create_op("MaxPool", "m", {"kernel_shape": [2]}, num_outputs=2).output_count == 2


def test_num_inputs_checked() -> None:
    f32 = TensorSpec((2, 2), np.float32)
    with pytest.raises(ExecutionError, match=r"Add node 'a': takes 2 input\(s\), got 1"):
        create_op("Add", "a").infer([f32])
    with pytest.raises(ExecutionError, match=r"Conv node 'c': takes 2 to 3 input\(s\), got 4"):
        create_op("Conv", "c").infer([f32] * 4)
    with pytest.raises(
        ExecutionError, match=r"Concat node 'k': takes at least 1 input\(s\), got 0"
    ):
        create_op("Concat", "k", {"axis": 0}).infer([])
    with pytest.raises(
        ExecutionError, match=r"Gemm node 'g': input 1 is required but was not given"
    ):
        create_op("Gemm", "g").infer([f32, None])
    with pytest.raises(ExecutionError, match=r"input 0 must be a TensorSpec"):
        create_op("Relu", "r").infer([np.zeros(2)])


@pytest.mark.parametrize(
    "op_type, attrs, specs, pattern",
    [
        (
            "MatMul",
            {},
            [((1, 1600), "f4"), ((1500, 128), "f4")],
            r"^MatMul node 'n': cannot multiply \[1, 1600\] by \[1500, 128\]$",
        ),
        (
            "MatMul",
            {},
            [((2, 3, 4), "f4"), ((5, 4, 2), "f4")],
            r"cannot multiply \[2, 3, 4\] by \[5, 4, 2\]",
        ),
        ("MatMul", {}, [((3,), "f4"), ((4,), "f4")], r"cannot multiply \[3\] by \[4\]"),
        (
            "MatMul",
            {},
            [((2, 3), "f4"), ((3, 4), "f8")],
            r"input 1 has dtype float64 but input 0 has float32",
        ),
        (
            "Gemm",
            {},
            [((4, 6), "f4"), ((5, 6), "f4")],
            r"^Gemm node 'n': cannot multiply A \[4, 6\] by B \[5, 6\]: inner dims 6 and 5 differ$",
        ),
        (
            "Gemm",
            {"transB": 1},
            [((4, 6), "f4"), ((5, 6), "f4"), ((3,), "f4")],
            r"C \[3\] does not broadcast to the output \[4, 5\]",
        ),
        ("Gemm", {}, [((4, 6, 1), "f4"), ((6, 5), "f4")], r"must both be 2-D"),
        (
            "Add",
            {},
            [((2, 3), "f4"), ((4,), "f4")],
            r"^Add node 'n': cannot broadcast \[2, 3\] with \[4\]$",
        ),
        ("Add", {}, [((2, 3), "f4"), ((3,), "i8")], r"dtype int64 but input 0 has float32"),
        ("Add", {}, [((2, 3), "?"), ((3,), "?")], r"input 0 has unsupported dtype bool"),
        ("Sigmoid", {}, [((2,), "i8")], r"Sigmoid node 'n': input 0 has unsupported dtype int64"),
        (
            "Conv",
            {},
            [((1, 3, 8, 8), "f4"), ((4, 2, 3, 3), "f4")],
            r"^Conv node 'n': input X \[1, 3, 8, 8\] has 3 channels but weight W \[4, 2, 3, 3\] with group=1 expects 2$",
        ),
        (
            "Conv",
            {"group": 2},
            [((1, 4, 8, 8), "f4"), ((3, 2, 3, 3), "f4")],
            r"3 output channels are not divisible by group=2",
        ),
        (
            "Conv",
            {},
            [((1, 3, 8, 8), "f4"), ((4, 3, 3), "f4")],
            r"weight W \[4, 3, 3\] must have the rank of input X \[1, 3, 8, 8\]",
        ),
        (
            "Conv",
            {},
            [((1, 3, 2, 8), "f4"), ((4, 3, 3, 3), "f4")],
            r"Conv node 'n': input X \[1, 3, 2, 8\], weight W \[4, 3, 3, 3\]: spatial dim 0 of size 2",
        ),
        (
            "Conv",
            {},
            [((1, 3, 8, 8), "f4"), ((4, 3, 3, 3), "f4"), ((3,), "f4")],
            r"bias B \[3\] must have shape \[4\]",
        ),
        (
            "Conv",
            {"kernel_shape": [2, 2]},
            [((1, 3, 8, 8), "f4"), ((4, 3, 3, 3), "f4")],
            r"kernel_shape \[2, 2\] does not match weight W",
        ),
        (
            "Conv",
            {"strides": [1]},
            [((1, 3, 8, 8), "f4"), ((4, 3, 3, 3), "f4")],
            r"attributes describe 1 spatial dim\(s\) but the input has 2",
        ),
        ("Conv", {}, [((1, 3, 8, 8), "i8"), ((4, 3, 3, 3), "i8")], r"unsupported dtype int64"),
        (
            "MaxPool",
            {"kernel_shape": [3, 3]},
            [((1, 1, 2, 5), "f4")],
            r"MaxPool node 'n': input X \[1, 1, 2, 5\] with kernel_shape \[3, 3\]: spatial dim 0 of size 2",
        ),
        ("MaxPool", {"kernel_shape": [2, 2]}, [((4, 5), "f4")], r"input X must have rank >= 3"),
        ("GlobalAveragePool", {}, [((4, 5), "f4")], r"input X must have rank >= 3"),
        (
            "Softmax",
            {"axis": 2},
            [((4, 5), "f4")],
            r"Softmax node 'n': axis 2 is out of range for input \[4, 5\]",
        ),
        ("ArgMax", {"axis": -3}, [((4, 5), "f4")], r"axis -3 is out of range"),
        ("ArgMax", {"axis": 1}, [((4, 0), "f4")], r"empty axis"),
        (
            "BatchNormalization",
            {},
            [((2, 3, 4), "f4"), ((3,), "f4"), ((3,), "f4"), ((4,), "f4"), ((3,), "f4")],
            r"input_mean \[4\] must have shape \[3\] for input X \[2, 3, 4\]",
        ),
        (
            "Clip",
            {},
            [((3,), "f4"), ((), "f8")],
            r"input 1 has dtype float64 but input 0 has float32",
        ),
    ],
)
def test_infer_errors_name_node_and_shapes(op_type, attrs, specs, pattern) -> None:
    op = create_op(op_type, "n", attrs)
    with pytest.raises(ExecutionError, match=pattern):
        op.infer([TensorSpec(s, d) for s, d in specs])


def test_run_errors_become_execution_errors() -> None:
    mm = create_op("MatMul", "fc")
    with pytest.raises(
        ExecutionError, match=r"^MatMul node 'fc': cannot multiply \[1, 1600\] by \[1500, 128\]$"
    ):
        mm.run([np.zeros((1, 1600), np.float32), np.zeros((1500, 128), np.float32)])
    conv = create_op("Conv", "conv1")
    with pytest.raises(
        ExecutionError, match=r"Conv node 'conv1': input X \[1, 3, 8, 8\] has 3 channels"
    ):
        conv.run([np.zeros((1, 3, 8, 8), np.float32), np.zeros((4, 1, 3, 3), np.float32)])
    add = create_op("Add", "a")
    with pytest.raises(
        ExecutionError,
        match=r"^Add node 'a': run failed on inputs \(\[2, 3\] float32, \[4\] float32\): ValueError",
    ):
        add.run([np.zeros((2, 3), np.float32), np.zeros(4, np.float32)])
    with pytest.raises(ExecutionError, match=r"Relu node 'r': run failed"):
        create_op("Relu", "r").run([])
    with pytest.raises(PopefError):
        create_op("Softmax", "s").run(["not an array"])


@pytest.mark.parametrize(
    "op_type, attrs, inputs, num_outputs",
    [
        ("Conv", {}, [(0, 3, 8, 8), (4, 3, 3, 3), (4,)], 1),
        ("Conv", {"pads": [1, 1, 1, 1], "strides": [2, 2]}, [(0, 3, 8, 8), (4, 3, 3, 3)], 1),
        ("MaxPool", {"kernel_shape": [2, 2]}, [(0, 3, 8, 8)], 2),
        ("AveragePool", {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}, [(0, 3, 8, 8)], 1),
        ("GlobalAveragePool", {}, [(0, 3, 4, 4)], 1),
        ("Gemm", {"transB": 1}, [(0, 5), (4, 5), (4,)], 1),
        ("Softmax", {}, [(0, 10)], 1),
        ("LogSoftmax", {"axis": 0}, [(0, 10)], 1),
        ("Relu", {}, [(0, 10)], 1),
        ("Flatten", {}, [(0, 3, 2)], 1),
    ],
)
def test_empty_batch(op_type, attrs, inputs, num_outputs) -> None:
    outs = run_op(op_type, attrs, [np.zeros(s, np.float32) for s in inputs], num_outputs)
    assert all(o.shape[0] == 0 for o in outs)


def test_tensor_spec_normalises_and_validates() -> None:
    s = TensorSpec([1, np.int64(2)], "float32")
    assert s == TensorSpec((1, 2), np.dtype(np.float32))
    assert (
        s.shape == (1, 2)
        and s.dtype == np.float32
        and s.size == 2
        and s.nbytes == 8
        and s.rank == 2
    )
    assert str(s) == "[1, 2] float32"
    assert TensorSpec.of(np.zeros((3, 0), np.int8)) == TensorSpec((3, 0), np.int8)
    for bad in ([-1], [1.5], "ab"):
        with pytest.raises(ExecutionError, match="non-negative ints"):
            TensorSpec(bad, np.float32)
    with pytest.raises(ExecutionError, match="not a numpy dtype"):
        TensorSpec((1,), "nonsense")


def test_kernel_geometry_ceil_mode_rule() -> None:
    # 5 + 1 + 1 padded, k=2, s=3, ceil: ceil((7 - 2) / 3) + 1 = 3, but the third window would
    # start at 6 >= 5 + 1 (inside the end padding), so it is dropped
    geo = _kernels.window_geometry([5], [2], [3], [1], [1, 1], "NOTSET", ceil_mode=True)
    assert geo.out == (2,)
    geo = _kernels.window_geometry([6], [2], [2], [1], [0, 0], "NOTSET", ceil_mode=True)
    assert geo.out == (3,) and geo.extra == (0,)
    geo = _kernels.window_geometry([7], [2], [2], [1], [0, 0], "NOTSET", ceil_mode=True)
    assert geo.out == (4,) and geo.extra == (1,)


# --------------------------------------------------------------------------------------------
# a small MNIST-shaped network end to end


def test_mnist_network_end_to_end() -> None:
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 1, 28, 28)).astype(np.float32)
    w1, b1 = (
        (rng.standard_normal((32, 1, 3, 3)) * 0.3).astype(np.float32),
        rng.standard_normal(32).astype(np.float32),
    )
    w2, b2 = (
        (rng.standard_normal((64, 32, 3, 3)) * 0.06).astype(np.float32),
        rng.standard_normal(64).astype(np.float32),
    )
    w3, b3 = (
        (rng.standard_normal((128, 1600)) * 0.03).astype(np.float32),
        rng.standard_normal(128).astype(np.float32),
    )
    w4, b4 = (
        (rng.standard_normal((10, 128)) * 0.1).astype(np.float32),
        rng.standard_normal(10).astype(np.float32),
    )
    net = [
        ("Conv", {"kernel_shape": [3, 3]}, [w1, b1]),
        ("MaxPool", {"kernel_shape": [2, 2], "strides": [2, 2]}, []),
        ("Relu", {}, []),
        ("Conv", {"kernel_shape": [3, 3]}, [w2, b2]),
        ("MaxPool", {"kernel_shape": [2, 2], "strides": [2, 2]}, []),
        ("Relu", {}, []),
        ("Flatten", {}, []),
        ("Gemm", {"transB": 1}, [w3, b3]),
        ("Relu", {}, []),
        ("Gemm", {"transB": 1}, [w4, b4]),
        ("Softmax", {}, []),
    ]
    y = x
    spec = TensorSpec.of(x)
    for i, (op_type, attrs, params) in enumerate(net):
        op = create_op(op_type, f"n{i}", attrs)
        (spec,) = op.infer([spec] + [TensorSpec.of(p) for p in params])
        (y,) = op.run([y] + params)
        assert TensorSpec.of(y) == spec
    assert y.shape == (2, 10) and y.dtype == np.float32

    def pool(t):
        n, c, h, w = t.shape
        return (
            t[:, :, : h // 2 * 2, : w // 2 * 2].reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))
        )

    r = np.maximum(pool(ref_conv_taps(x, w1, b1)), 0)
    r = np.maximum(pool(ref_conv_taps(r, w2, b2)), 0)
    r = np.maximum(r.reshape(2, -1) @ w3.T.astype(np.float64) + b3, 0)
    r = ref_softmax(r @ w4.T.astype(np.float64) + b4, -1)
    assert_close(y, r, "f32_accumulate")


# --------------------------------------------------------------------------------------------
# onnxruntime differential tests (one-node ONNX models)


def _ort_session(c: Case, out_specs: list[TensorSpec]):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import helper

    names = ["" if x is None else f"in{i}" for i, x in enumerate(c.inputs)]
    while names and names[-1] == "":
        names.pop()
    outs = [f"out{i}" for i in range(c.num_outputs)]
    node = helper.make_node(c.op, names, outs, **c.attrs)
    graph = helper.make_graph(
        [node],
        f"one_{c.op}",
        [
            helper.make_tensor_value_info(
                n, helper.np_dtype_to_tensor_dtype(x.dtype), list(x.shape)
            )
            for n, x in zip(names, c.inputs)
            if n
        ],
        [
            helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(s.dtype), None)
            for n, s in zip(outs, out_specs)
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", c.opset)])
    model.ir_version = min(onnx.IR_VERSION, 9)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess, {n: x for n, x in zip(names, c.inputs) if n}


ORT_CASES = [c for c in CASES if c.ort]


@pytest.mark.parametrize("c", ORT_CASES, ids=[c.id for c in ORT_CASES])
def test_op_matches_onnxruntime(c: Case) -> None:
    outs = run_op(c.op, c.attrs, c.inputs, c.num_outputs, c.constants)
    sess, feed = _ort_session(c, [TensorSpec.of(o) for o in outs])
    expected = sess.run(None, feed)
    for got, want in zip(outs, expected):
        assert got.dtype == want.dtype
        assert_close(got, want, c.ort_tol or c.tol)


# --------------------------------------------------------------------------------------------
# torch.nn.functional differential tests


@pytest.fixture(scope="module")
def torch_f():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    return torch, torch.nn.functional


def _t(torch, a):
    return torch.from_numpy(np.ascontiguousarray(a))


@pytest.mark.parametrize(
    "xshape, wshape, attrs",
    [
        (
            (2, 4, 9, 8),
            (6, 4, 3, 3),
            {"strides": [2, 1], "pads": [1, 2, 1, 2], "dilations": [1, 2]},
        ),
        ((1, 6, 7, 7), (6, 1, 3, 3), {"group": 6, "pads": [1, 1, 1, 1]}),
        ((3, 4, 8, 8), (4, 2, 2, 2), {"group": 2, "strides": [2, 2]}),
        ((2, 3, 10), (5, 3, 4), {"strides": [3], "pads": [2, 2], "dilations": [2]}),
        ((1, 2, 4, 5, 6), (3, 2, 2, 3, 3), {"pads": [1, 1, 1, 1, 1, 1], "strides": [1, 2, 2]}),
    ],
)
def test_conv_matches_torch(torch_f, xshape, wshape, attrs) -> None:
    torch, F = torch_f
    x, w, b = rand(110, xshape), rand(111, wshape), rand(112, (wshape[0],))
    (y,) = run_op("Conv", attrs, [x, w, b])
    nd = len(xshape) - 2
    pads = attrs.get("pads", [0] * 2 * nd)
    fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[nd]
    xt = _t(torch, ref_pad(x, pads))
    want = fn(
        xt,
        _t(torch, w),
        _t(torch, b),
        stride=attrs.get("strides", 1),
        dilation=attrs.get("dilations", 1),
        groups=attrs.get("group", 1),
    ).numpy()
    assert_close(y, want, "f32_accumulate")


def ref_pad(x, pads):
    nd = x.ndim - 2
    return np.pad(x, [(0, 0), (0, 0)] + [(pads[i], pads[i + nd]) for i in range(nd)])


@pytest.mark.parametrize(
    "attrs",
    [
        {"kernel_shape": [2, 2], "strides": [2, 2]},
        {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": 1},
        {"kernel_shape": [3, 2], "strides": [2, 1], "pads": [1, 1, 1, 1], "dilations": [2, 1]},
        {"kernel_shape": [2, 2], "strides": [3, 3], "pads": [1, 1, 1, 1], "ceil_mode": 1},
    ],
)
def test_maxpool_matches_torch(torch_f, attrs) -> None:
    torch, F = torch_f
    x = rand(113, (2, 3, 11, 10))
    (y, idx) = run_op("MaxPool", attrs, [x], num_outputs=2)
    p = attrs.get("pads", [0, 0, 0, 0])
    want, want_idx = F.max_pool2d(
        _t(torch, x),
        attrs["kernel_shape"],
        attrs["strides"],
        padding=p[:2],
        dilation=attrs.get("dilations", 1),
        ceil_mode=bool(attrs.get("ceil_mode", 0)),
        return_indices=True,
    )
    assert_close(y, want.numpy(), "exact")
    # torch's indices are per (n, c) plane; ONNX's are global
    plane = np.arange(2 * 3).reshape(2, 3, 1, 1) * (11 * 10)
    np.testing.assert_array_equal(idx, want_idx.numpy() + plane)


@pytest.mark.parametrize("cip", [0, 1])
@pytest.mark.parametrize(
    "attrs",
    [
        {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]},
        {"kernel_shape": [3, 2], "strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": 1},
        {"kernel_shape": [2, 2], "strides": [2, 2]},
    ],
)
def test_averagepool_matches_torch(torch_f, attrs, cip) -> None:
    torch, F = torch_f
    x = rand(114, (2, 3, 11, 10))
    (y,) = run_op("AveragePool", {**attrs, "count_include_pad": cip}, [x])
    p = attrs.get("pads", [0, 0, 0, 0])
    want = F.avg_pool2d(
        _t(torch, x),
        attrs["kernel_shape"],
        attrs["strides"],
        padding=p[:2],
        ceil_mode=bool(attrs.get("ceil_mode", 0)),
        count_include_pad=bool(cip),
    )
    assert_close(y, want.numpy(), "f32")


def test_global_average_pool_matches_torch(torch_f) -> None:
    torch, F = torch_f
    x = rand(115, (2, 5, 7, 6))
    (y,) = run_op("GlobalAveragePool", {}, [x])
    assert_close(y, F.adaptive_avg_pool2d(_t(torch, x), 1).numpy(), "f32")


@pytest.mark.parametrize(
    "ta, tb, alpha, beta", [(0, 0, 1.0, 1.0), (1, 0, 0.5, 2.0), (0, 1, 1.0, 0.0), (1, 1, -1.5, 0.3)]
)
def test_gemm_matches_torch(torch_f, ta, tb, alpha, beta) -> None:
    torch, _ = torch_f
    a, b, c = rand(116, (7, 5)), rand(117, (5, 9)), rand(118, (9,))
    a_in, b_in = (a.T.copy() if ta else a), (b.T.copy() if tb else b)
    (y,) = run_op(
        "Gemm", {"transA": ta, "transB": tb, "alpha": alpha, "beta": beta}, [a_in, b_in, c]
    )
    want = torch.addmm(
        _t(torch, np.broadcast_to(c, (7, 9))), _t(torch, a), _t(torch, b), beta=beta, alpha=alpha
    )
    assert_close(y, want.numpy(), "f32_accumulate")


@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_softmax_matches_torch(torch_f, axis) -> None:
    torch, F = torch_f
    x = rand(119, (4, 6, 3), low=-20, high=20)
    (y,) = run_op("Softmax", {"axis": axis}, [x])
    assert_close(y, F.softmax(_t(torch, x), dim=axis).numpy(), "f32_transcendental")
    (ly,) = run_op("LogSoftmax", {"axis": axis}, [x])
    assert_close(ly, F.log_softmax(_t(torch, x), dim=axis).numpy(), "f32_transcendental")
