"""The ai.onnx.preview.training optimizer steps (Adagrad, Adam, Momentum) and the ai.onnx.ml ops
(Binarizer, ArrayFeatureExtractor) against onnx's ReferenceEvaluator (skipped without onnx), and
bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from popef.errors import ExecutionError

from .op_oracle import rand, readonly, run_case

TRAINING = "ai.onnx.preview.training"
ML = "ai.onnx.ml"


def _reference(domain: str, op: str, attrs: dict, inputs: list, outputs: int) -> list:
    """onnx's ReferenceEvaluator on a one-node model of another domain."""
    pytest.importorskip("onnx")
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    names = [f"in{i}" for i in range(len(inputs))]
    outs = [f"out{i}" for i in range(outputs)]
    node = helper.make_node(op, names, outs, domain=domain, **attrs)
    graph = helper.make_graph(
        [node],
        "g",
        [
            helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(x.dtype), x.shape)
            for n, x in zip(names, inputs)
        ],
        [helper.make_tensor_value_info(o, 0, None) for o in outs],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid(domain, 1)]
    )
    return ReferenceEvaluator(model).run(None, dict(zip(names, inputs)))


def _check(domain: str, op: str, attrs: dict, inputs: list, outputs: int) -> None:
    got = run_case(f"{domain}.{op}", attrs, inputs, outputs=outputs)
    want = _reference(domain, op, attrs, inputs, outputs)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.dtype == (inputs[0].dtype if domain == ML else inputs[2].dtype)
        np.testing.assert_allclose(
            g.astype(np.float64), np.asarray(w, np.float64), rtol=1e-5, atol=1e-6
        )


def _state(n: int, groups: int, seed: int = 0) -> list:
    shapes = [(3,), (2, 4), (5,)][:n]
    return [
        rand(seed + 10 * g + i, s, low=0.1 if g > 1 else -2.0)
        for g in range(groups)
        for i, s in enumerate(shapes)
    ]


R = np.array(0.1, np.float32)


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("step", [0, 4])
def test_adagrad(n, step) -> None:
    attrs = {"decay_factor": 0.1, "epsilon": 1e-5, "norm_coefficient": 0.001}
    _check(TRAINING, "Adagrad", attrs, [R, np.array(step, np.int64), *_state(n, 3)], 2 * n)


@pytest.mark.parametrize("n", [1, 2])
@pytest.mark.parametrize("step", [0, 3])
def test_adam(n, step) -> None:
    attrs = {
        "alpha": 0.9,
        "beta": 0.8,
        "epsilon": 1e-2,
        "norm_coefficient": 0.001,
        "norm_coefficient_post": 0.01,
    }
    _check(TRAINING, "Adam", attrs, [R, np.array(step, np.int64), *_state(n, 4)], 3 * n)


@pytest.mark.parametrize("mode", ["standard", "nesterov"])
@pytest.mark.parametrize("step", [0, 2])
def test_momentum(mode, step) -> None:
    attrs = {"alpha": 0.95, "beta": 0.85, "mode": mode, "norm_coefficient": 0.01}
    _check(TRAINING, "Momentum", attrs, [R, np.array(step, np.int64), *_state(2, 3)], 4)


def test_optimizer_keeps_float64() -> None:
    inputs = [np.array(0.5), np.array(1, np.int64)] + [
        rand(i, (4,), np.float64, low=0.1) for i in range(3)
    ]
    x_new, h_new = run_case(f"{TRAINING}.Adagrad", {}, inputs, outputs=2)
    assert x_new.dtype == h_new.dtype == np.float64


@pytest.mark.parametrize(
    "op, attrs, inputs, outputs, message",
    [
        ("Adagrad", {}, [R, np.array(1, np.int64), *_state(2, 3)[:5]], 4, "3 inputs per"),
        ("Adagrad", {}, [R, np.array(1, np.int64), *_state(2, 3)], 3, "has 4 outputs"),
        ("Adagrad", {}, [R, np.array(1, np.int32), *_state(1, 3)], 2, r"input 1 \(T\)"),
        (
            "Adagrad",
            {},
            [np.ones(2, np.float32), np.array(1, np.int64), *_state(1, 3)],
            2,
            "must be a scalar",
        ),
        (
            "Adam",
            {},
            [R, np.array(1, np.int64), *_state(1, 3), rand(0, (4,))],
            3,
            "must have the shape of X_1",
        ),
        (
            "Momentum",
            {"alpha": 1.0, "beta": 1.0, "mode": "heavy", "norm_coefficient": 0.0},
            [R, np.array(1, np.int64), *_state(1, 3)],
            2,
            "'mode' must be",
        ),
    ],
)
def test_optimizer_bad_input(op, attrs, inputs, outputs, message) -> None:
    with pytest.raises(ExecutionError, match=message):
        run_case(f"{TRAINING}.{op}", attrs, inputs, outputs=outputs)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.int32])
def test_binarizer(dtype) -> None:
    x = rand(1, (3, 4, 5), dtype, low=-3, high=3)
    _check(ML, "Binarizer", {"threshold": 0.5}, [x], 1)


@pytest.mark.parametrize(
    "shape, indices", [((3, 4), [0, 2]), ((2, 3, 5), [[4, 0, 4]]), ((6,), [5, 1])]
)
def test_array_feature_extractor(shape, indices) -> None:
    x = rand(2, shape)
    _check(ML, "ArrayFeatureExtractor", {}, [x, np.array(indices, np.int64)], 1)


@given(st.lists(st.integers(-10, 10), min_size=1, max_size=6))
@settings(max_examples=40, deadline=None)
def test_array_feature_extractor_refuses_indices_out_of_range(indices) -> None:
    x = readonly(np.arange(12, dtype=np.float32).reshape(3, 4))
    index = np.array(indices, np.int64)
    if ((index < 0) | (index >= 4)).any():
        with pytest.raises(ExecutionError, match=r"input 1 \(Y\) holds index .* expected 0 to 3"):
            run_case(f"{ML}.ArrayFeatureExtractor", {}, [x, index])
    else:
        [y] = run_case(f"{ML}.ArrayFeatureExtractor", {}, [x, index])
        np.testing.assert_array_equal(y, x[:, index])


def test_ml_ops_refuse_other_dtypes() -> None:
    with pytest.raises(ExecutionError, match="unsupported dtype uint8"):
        run_case(f"{ML}.Binarizer", {}, [np.zeros(3, np.uint8)])
    with pytest.raises(ExecutionError, match=r"input 1 \(Y\) has unsupported dtype int32"):
        run_case(
            f"{ML}.ArrayFeatureExtractor", {}, [np.zeros((2, 3), np.float32), np.zeros(1, np.int32)]
        )
