"""The case table, elementwise family: binary arithmetic, activations, Clip,
Identity, Dropout and Cast.
"""

from __future__ import annotations

import math

import numpy as np

from .common import case, py_elementwise, rand, trunc_div

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


def _gelu_none(v):
    return 0.5 * v * math.erfc(-v / math.sqrt(2))


def _gelu_tanh(v):
    return 0.5 * v * (1 + math.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v**3)))


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
