"""The case table, pools."""

from __future__ import annotations

import math

import numpy as np

from .common import case, rand, ref_pool, same_pads

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
    max_kw = _pool_ref_kw(attrs)
    case(
        f"MaxPool-{name}",
        "MaxPool",
        attrs,
        [_px],
        lambda x, kw=max_kw: [ref_pool(x, "max", **kw)],
        "exact",
    )
for name, attrs in _pool_variants:
    for cip in (0, 1):
        avg_attrs = {**attrs, "count_include_pad": cip}
        avg_kw = _pool_ref_kw(avg_attrs)
        case(
            f"AveragePool-{name}-cip{cip}",
            "AveragePool",
            avg_attrs,
            [_px],
            lambda x, kw=avg_kw: [ref_pool(x, "avg", **kw)],
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
        indices_kw = _pool_ref_kw(a)
        case(
            f"MaxPool-indices-{name}-so{so}",
            "MaxPool",
            a,
            [_px],
            lambda x, kw=indices_kw: list(ref_pool(x, "max", with_indices=True, **kw)),
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
