"""The pools against torch when importable."""

from __future__ import annotations

import numpy as np
import pytest

from .common import _t, assert_close, rand, run_op


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
