"""The case table, Conv."""

from __future__ import annotations

import numpy as np

from .common import case, rand, ref_conv, same_pads

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
