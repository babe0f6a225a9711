"""The cpu executor's own parallelism: a folded request's instances split over threads give
the unsplit results (bit-identical for row-wise kernels, to a few ulps through BLAS), the
options are checked, and BLAS is limited once for the process."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from popef import DataType
from popef.errors import ExecutionError
from popef.runtime import GraphBuilder, ModelRunner
from popef.runtime.executors import _parallel
from popef.runtime.executors.cpu import CpuExecutor

from .helpers import model_of, save_bytes


def _cnn(rows_per_step: int = 1) -> bytes:
    """Conv -> MaxPool -> Relu (fused), Conv (unfused), Flatten -> Gemm -> Softmax, and a
    Reshape that merges each step's rows (so a split inside a step would be wrong)."""
    rng = np.random.default_rng(7)
    g = GraphBuilder()

    def weight(name: str, shape) -> str:
        return g.add_weight(name, rng.standard_normal(shape).astype(np.float32) * 0.3)

    x = g.add_input("x", DataType.F32, (rows_per_step, 2, 12, 12))
    h = g.add_node("Conv", [x, weight("w1", (6, 2, 3, 3)), weight("b1", (6,))])
    h = g.add_node("Relu", [g.add_node("MaxPool", [h], kernel_shape=[2, 2], strides=[2, 2])])
    h = g.add_node("Conv", [h, weight("w2", (4, 6, 3, 3))], pads=[1, 1, 1, 1])
    h = g.add_node("Flatten", [h], axis=1)
    h = g.add_node("Gemm", [h, weight("fc", (5, 4 * 25)), weight("fb", (5,))], transB=1)
    g.add_output(g.add_node("Softmax", [h], axis=-1), "probs")
    merged = g.add_node("Reshape", [h, g.add_weight("shape", np.array([-1, rows_per_step * 5]))])
    g.add_output(merged, "merged")
    return save_bytes(g)


def _inputs(steps: int, rows_per_step: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(steps)
    x = rng.standard_normal((steps * rows_per_step, 2, 12, 12)).astype(np.float32)
    return {"x": x}


def _elementwise() -> bytes:
    """Kernels whose every row is computed alone (no BLAS): bit-identical whatever the split."""
    g = GraphBuilder()
    x = g.add_input("x", DataType.F32, (2, 3))
    h = g.add_node("Sigmoid", [g.add_node("Mul", [x, g.add_weight("k", np.float32([2, 3, 4]))])])
    g.add_output(g.add_node("Softmax", [h], axis=-1), "y")
    g.add_output(g.add_node("Reshape", [h, g.add_weight("shape", np.array([-1, 6]))]), "merged")
    return save_bytes(g)


def _compare(model, inputs, threads, min_chunk_rows, exact: bool) -> None:
    with (
        ModelRunner(model, "cpu", threads=1) as inline,
        ModelRunner(model, "cpu", threads=threads) as split,
    ):
        split.executor._splitter.min_chunk_rows = min_chunk_rows
        a, b = inline.execute(inputs), split.execute(inputs)
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].shape == b[name].shape
        if exact:
            np.testing.assert_array_equal(a[name], b[name])
        else:  # BLAS sums in an order that depends on the rows it is given (docs/runtime.md)
            ulps = 4 * float(np.spacing(np.max(np.abs(a[name]))))
            np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=ulps)


@settings(max_examples=20, deadline=None)
@given(steps=st.integers(1, 40), threads=st.integers(2, 5), min_chunk_rows=st.sampled_from([1, 4]))
def test_split_rows_are_bit_identical_for_row_wise_kernels(steps, threads, min_chunk_rows):
    x = np.random.default_rng(steps).standard_normal((steps * 2, 3)).astype(np.float32)
    _compare(model_of(_elementwise()), {"x": x}, threads, min_chunk_rows, exact=True)


@settings(max_examples=15, deadline=None)
@given(
    steps=st.integers(1, 40),
    rows_per_step=st.sampled_from([1, 2, 3]),
    threads=st.integers(2, 5),
    min_chunk_rows=st.sampled_from([1, 4]),
)
def test_split_rows_agree_for_blas_kernels(steps, rows_per_step, threads, min_chunk_rows):
    model = model_of(save_bytes_cached(rows_per_step))
    _compare(model, _inputs(steps, rows_per_step), threads, min_chunk_rows, exact=False)


def test_split_agrees_with_ipu_model():
    model = model_of(save_bytes_cached(2))
    inputs = _inputs(24, 2)
    with (
        ModelRunner(model, "cpu", threads=3) as split,
        ModelRunner(model, "ipu-model") as ipu,
    ):
        a, b = split.execute(inputs), ipu.execute(inputs)
    for name in a:
        ulps = 4 * float(np.spacing(np.max(np.abs(b[name]))))
        np.testing.assert_allclose(a[name], b[name], rtol=2e-5, atol=ulps)


_MODELS: dict[int, bytes] = {}


def save_bytes_cached(rows_per_step: int) -> bytes:
    if rows_per_step not in _MODELS:
        _MODELS[rows_per_step] = _cnn(rows_per_step)
    return _MODELS[rows_per_step]


def test_big_request_runs_on_pool_threads():
    model = model_of(save_bytes_cached(1))
    seen: list[str] = []
    pool_ran = threading.Event()
    main = threading.current_thread().name
    with ModelRunner(model, "cpu", threads=3) as runner:
        executor = runner.executor
        forward = executor._forward

        def spy(scope):
            name = threading.current_thread().name
            seen.append(name)
            if name == main:  # leave chunks to the pool (generous deadline, never a sleep)
                pool_ran.wait(60)
            else:
                pool_ran.set()
            return forward(scope)

        executor._forward = spy
        runner.execute(_inputs(64, 1))
        assert pool_ran.is_set() and len(seen) == 3
        assert all(name.startswith("popef-cpu") for name in seen if name != main)
        seen.clear()
        runner.execute(_inputs(_parallel.MIN_CHUNK_ROWS, 1))  # too small to split
        assert seen == [main]


def test_chunks():
    splitter = _parallel.RowSplitter(4, min_chunk_rows=8)
    assert splitter.chunks(1, 100) == 1  # one instance cannot be split
    assert splitter.chunks(64, 64) == 4
    assert splitter.chunks(64, 20) == 2  # chunks of at least 8 rows
    assert splitter.chunks(3, 300) == 3  # at most one chunk per instance
    assert _parallel.RowSplitter(1).chunks(64, 64) == 1


def test_failing_chunk_raises_after_every_chunk_ended():
    splitter = _parallel.RowSplitter(4, min_chunk_rows=1)
    ended = []

    def forward(scope):
        if scope["x"][0, 0] == 0:
            raise ValueError("first chunk")
        ended.append(True)
        return (scope["x"],)

    x = np.arange(8, dtype=np.float32).reshape(8, 1)  # 4 chunks of 2 rows
    with pytest.raises(ValueError, match="first chunk"):
        splitter.run(forward, {}, [("x", x)], 8)
    assert len(ended) == 3  # the other chunks, taken by the threads, ran to their end
    splitter.close()


@pytest.mark.parametrize(
    "options, message",
    [
        ({"threads": 0}, "option 'threads' must be an integer >= 1, got 0"),
        ({"threads": "many"}, "option 'threads' must be an integer >= 1"),
        ({"blas_threads": -1}, "option 'blas_threads' must be an integer >= 0"),
    ],
)
def test_bad_options(options, message):
    with pytest.raises(ExecutionError, match=message):
        CpuExecutor(**options)


def test_options_from_text_and_defaults():
    executor = CpuExecutor(threads="3", blas_threads="0")
    assert (executor.threads, executor.blas_threads) == (3, 0)
    assert CpuExecutor(threads=1).blas_threads == 0  # not parallel itself: BLAS left alone
    assert CpuExecutor().threads == _parallel.available_cores()


def test_blas_limited_once_for_the_process():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    CpuExecutor(threads=2)  # blas_threads defaults to 1
    blas = [p for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]
    assert blas and all(p["num_threads"] == 1 for p in blas)
