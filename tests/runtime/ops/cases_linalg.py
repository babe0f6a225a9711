"""The case table, Gemm and MatMul."""

from __future__ import annotations

import itertools

import numpy as np

from .common import case, rand, ref_matmul

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
