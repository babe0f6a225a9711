"""ModelRunner.execute_checked: the pre-checked entry point of front ends that check requests
themselves. It gives what execute gives, skips the input checks, keeps the limits of a
request's steps with the same messages."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from popef import DataType, ExecutionError
from popef.runtime import GraphBuilder, ModelRunner, RuntimeLimits
from popef.runtime.requests import RequestChecks

from .helpers import mlp_reference, model_of, save_bytes, small_mlp

EXECUTORS = ["cpu", "ipu-model"]


@pytest.fixture(scope="module")
def mlp():
    g, params = small_mlp(batch=2)
    return model_of(save_bytes(g)), params


@pytest.mark.parametrize("executor", EXECUTORS)
@settings(max_examples=15, deadline=None)
@given(steps=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_execute_checked_gives_what_execute_gives(mlp, executor, steps, seed):
    model, params = mlp
    x = np.random.default_rng(seed).standard_normal((2 * steps, 5)).astype(np.float32)
    with ModelRunner(model, executor) as runner:
        expected = runner.execute({"x": x})["probs"]
        np.testing.assert_array_equal(runner.execute_checked({"x": x}, steps)["probs"], expected)
        np.testing.assert_array_equal(
            runner.execute_checked_async({"x": x}, np.int64(steps)).wait(60)["probs"], expected
        )
    np.testing.assert_allclose(expected, mlp_reference(params, x), rtol=1e-4, atol=1e-6)


def test_execute_checked_does_not_check_the_inputs_again(mlp, monkeypatch):
    model, _ = mlp

    def refuse(self, inputs):
        raise AssertionError("execute_checked checked the inputs")

    with ModelRunner(model) as runner:
        monkeypatch.setattr(RequestChecks, "check_inputs", refuse)
        x = np.ones((4, 5), np.float32)
        assert runner.execute_checked({"x": x}, 2)["probs"].shape == (4, 3)
        assert runner.execute_checked_async({"x": x}, 2).wait(60)["probs"].shape == (4, 3)
        with pytest.raises(AssertionError, match="checked the inputs"):
            runner.execute({"x": x})


def _relu(width: int = 1024) -> GraphBuilder:
    g = GraphBuilder()
    g.add_output(g.add_node("Relu", [g.add_input("x", DataType.F32, (1, width))]), "y")
    return g


def test_execute_checked_keeps_the_request_memory_limit_with_the_same_message():
    model = model_of(save_bytes(_relu()))
    x = np.ones((13, 1024), np.float32)
    with ModelRunner(model, limits=RuntimeLimits(max_request_bytes=100_000)) as runner:
        with pytest.raises(ExecutionError) as by_execute:
            runner.execute({"x": x})
        with pytest.raises(ExecutionError) as by_checked:
            runner.execute_checked({"x": x}, 13)
        with pytest.raises(ExecutionError) as by_checked_async:
            runner.execute_checked_async({"x": x}, 13)
    assert str(by_checked.value) == str(by_execute.value) == str(by_checked_async.value)
    assert "a request of 13 steps to model 'model' needs about 106496 bytes" in str(
        by_execute.value
    )


def test_execute_checked_keeps_one_step_for_a_model_with_a_scalar_output():
    g = GraphBuilder()
    x = g.add_input("x", DataType.F32, (2, 3))
    g.add_output(g.add_node("ReduceSum", [x], keepdims=0, noop_with_empty_axes=0), "total")
    with ModelRunner(model_of(save_bytes(g))) as runner:
        x = np.ones((4, 3), np.float32)
        with pytest.raises(ExecutionError) as by_execute:
            runner.execute({"x": x})
        with pytest.raises(ExecutionError) as by_checked:
            runner.execute_checked({"x": x}, 2)
    assert str(by_checked.value) == str(by_execute.value)
    assert "is a scalar, so model 'model' runs one step per call" in str(by_checked.value)


@pytest.mark.parametrize("steps", [0, -1, True, 1.0, "2", None])
def test_execute_checked_refuses_a_step_count_that_is_not_a_positive_int(mlp, steps):
    model, _ = mlp
    with ModelRunner(model) as runner:
        with pytest.raises(ExecutionError, match=r"steps must be a positive int, got "):
            runner.execute_checked({"x": np.ones((2, 5), np.float32)}, steps)
        with pytest.raises(ExecutionError, match=r"steps must be a positive int, got "):
            runner.execute_checked_async({"x": np.ones((2, 5), np.float32)}, steps)


def test_execute_checked_on_a_closed_runner_is_refused(mlp):
    model, _ = mlp
    runner = ModelRunner(model)
    runner.close()
    with pytest.raises(ExecutionError, match="the ModelRunner is closed"):
        runner.execute_checked({"x": np.ones((2, 5), np.float32)}, 1)
