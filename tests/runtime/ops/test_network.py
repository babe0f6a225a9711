"""A small MNIST-shaped network of ops end to end."""

from __future__ import annotations

import numpy as np

from popef.runtime.ops import TensorSpec, create_op

from .common import assert_close, ref_conv_taps, ref_softmax

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
