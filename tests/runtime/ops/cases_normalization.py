"""The case table, normalisation and reductions."""

from __future__ import annotations

import itertools

import numpy as np

from .common import case, rand, ref_argmax, ref_softmax

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

    def f(t):
        return t.astype(np.float64).reshape(shape)

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
        lambda x, a=axis, k=keep, lst=last: [ref_argmax(x, a, k, lst)],
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
