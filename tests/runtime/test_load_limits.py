"""What a model may cost: the limits on graph steps, tensor sizes and request memory, and a
load that stays linear in the size of the graph (docs/runtime.md, "Limits")."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from popef import DataType, ExecutionError, FormatError, TensorType
from popef.format.graph import GRAPH_MAGIC, GRAPH_VERSION
from popef.runtime import GraphBuilder, ModelRunner, RuntimeLimits
from popef.runtime.executors import cpu
from popef.runtime.limits import MAX_REQUEST_BYTES, MAX_TENSOR_BYTES
from popef.runtime.loaded import BoundNode
from popef.runtime.loader import load_model
from popef.runtime.program import (
    MAX_GRAPH_STEPS,
    DeviceToHost,
    GraphProgram,
    HostToDevice,
    Program,
    decode_program,
)

from .helpers import RandomGraph, anchor, model_of, save_bytes, write_model


def _doubling_concats(count: int, width: int = 4) -> GraphBuilder:
    """x [1, width] then ``count`` nodes Concat(y, y): the last is width × 2**count wide."""
    g = GraphBuilder()
    y = g.add_input("x", DataType.F32, (1, width))
    for _ in range(count):
        y = g.add_node("Concat", [y, y], axis=1)
    g.add_output(y, "y")
    return g


def _relu_chain(nodes: int, width: int = 4) -> GraphBuilder:
    g = GraphBuilder()
    y = g.add_input("x", DataType.F32, (1, width))
    for _ in range(nodes):
        y = g.add_node("Relu", [y])
    g.add_output(y, "y")
    return g


# -- tensor sizes ----------------------------------------------------------------------------


def test_a_node_output_over_the_default_limit_is_refused_at_load():
    # 4 KiB doubled 40 times: a 4 KB file whose tensors would reach petabytes
    model = model_of(save_bytes(_doubling_concats(40, width=1024), executable_name="bomb"))
    with pytest.raises(ExecutionError) as info:
        ModelRunner(model)
    message = str(info.value)
    first_over = next(k for k in range(41) if 4096 << k > MAX_TENSOR_BYTES)
    assert f"step {first_over} (Concat node " in message
    assert f"[1, {1024 << first_over}] float32" in message
    assert f"more than the limit of {MAX_TENSOR_BYTES} bytes per tensor" in message


def test_the_tensor_limit_can_be_lowered_and_raised():
    model = model_of(save_bytes(_doubling_concats(6)))  # the last tensor: 4 × 64 floats, 1 KiB
    with pytest.raises(
        ExecutionError,
        match=r"step 6 \(Concat node .*\[1, 256\] float32, "
        r"1024 bytes, more than the limit of 1000",
    ):
        ModelRunner(model, limits=RuntimeLimits(max_tensor_bytes=1000))
    with ModelRunner(model, limits=RuntimeLimits(max_tensor_bytes=1024)) as runner:
        x = np.arange(4, dtype=np.float32).reshape(1, 4)
        assert runner.execute({"x": x})["y"].shape == (1, 256)


@pytest.mark.parametrize("kind", [TensorType.INPUT, TensorType.OUTPUT])
def test_an_anchor_over_the_limit_is_refused_at_load(tmp_path, kind):
    huge = (1, 1 << 50)
    shapes = {
        "x": huge if kind is TensorType.INPUT else (1, 4),
        "y": huge if kind is TensorType.OUTPUT else (1, 4),
    }
    program = GraphProgram(
        (
            Program(0, "WeightsFromHost"),
            Program(5, "Program", (HostToDevice("h2d_x", "x"), DeviceToHost("x", "anchor_d2h_y"))),
        )
    )
    path = tmp_path / "huge.popef"
    write_model(
        path,
        program,
        [anchor("x", shapes["x"], TensorType.INPUT), anchor("y", shapes["y"], TensorType.OUTPUT)],
    )
    name = "x" if kind is TensorType.INPUT else "y"
    with pytest.raises(
        ExecutionError,
        match=rf"anchor '{name}' is \[1, {1 << 50}\] float32 per "
        rf"replica, {4 << 50} bytes, more than the limit",
    ):
        ModelRunner(path)


# -- request memory --------------------------------------------------------------------------


def test_a_request_over_the_memory_limit_is_refused_before_it_runs():
    # one step: x and Relu(x), 4 KiB each, live together
    model = model_of(save_bytes(_relu_chain(1, width=1024)))
    limits = RuntimeLimits(max_request_bytes=100_000)
    with ModelRunner(model, limits=limits) as runner:
        assert runner.loaded.request_step_bytes == 8192
        x = np.ones((12, 1024), np.float32)
        assert runner.execute({"x": x})["y"].shape == (12, 1024)
        with pytest.raises(
            ExecutionError,
            match=r"a request of 13 steps to model 'model' needs "
            r"about 106496 bytes \(8192 per step\), more "
            r"than the limit of 100000 "
            r"\(max_request_bytes\): send at most 12 steps",
        ):
            runner.execute({"x": np.ones((13, 1024), np.float32)})
        with pytest.raises(ExecutionError, match="a request of 13 steps"):
            runner.execute_async({"x": np.ones((13, 1024), np.float32)})


def test_the_request_estimate_counts_every_replica():
    data = save_bytes(_relu_chain(1, width=1024), replication_factor=2)
    with ModelRunner(model_of(data), limits=RuntimeLimits(max_request_bytes=100_000)) as runner:
        assert runner.loaded.request_step_bytes == 2 * 8192
        runner.execute({"x": np.ones((12, 1, 1024), np.float32)})  # 6 steps of 2 replicas
        with pytest.raises(ExecutionError, match="send at most 6 steps"):
            runner.execute({"x": np.ones((14, 1, 1024), np.float32)})


def test_a_model_whose_one_step_is_over_the_request_limit_is_refused_at_load():
    model = model_of(save_bytes(_relu_chain(1, width=1024)))
    with pytest.raises(
        ExecutionError,
        match=r"model 'model' needs about 8192 bytes of step "
        r"tensors for one step \(1 replicas\), more than "
        r"the limit of 8000 per request",
    ):
        ModelRunner(model, limits=RuntimeLimits(max_request_bytes=8000))


@pytest.mark.parametrize("field", ["max_graph_steps", "max_tensor_bytes", "max_request_bytes"])
@pytest.mark.parametrize("value", [0, -1, 1.5, True, "10"])
def test_limits_must_be_positive_ints(field, value):
    with pytest.raises(ExecutionError, match=f"runtime limit '{field}' must be a positive int"):
        RuntimeLimits(**{field: value})


def test_the_defaults_are_documented_values():
    assert RuntimeLimits() == RuntimeLimits(MAX_GRAPH_STEPS, MAX_TENSOR_BYTES, MAX_REQUEST_BYTES)
    assert (MAX_GRAPH_STEPS, MAX_TENSOR_BYTES, MAX_REQUEST_BYTES) == (100_000, 16 << 30, 16 << 30)


# -- graph steps -----------------------------------------------------------------------------


def _copies_program(steps: int, *, count: int | None = None) -> bytes:
    """A graph program, encoded by hand: one program of ``steps`` HostToDevice("h", "t")."""
    step = bytes([0]) + struct.pack("<I", 1) + b"h" + struct.pack("<I", 1) + b"t"
    return (
        GRAPH_MAGIC
        + struct.pack("<HH", *GRAPH_VERSION)
        + struct.pack("<I", 1)
        + struct.pack("<I", 5)
        + struct.pack("<I", 0)
        + struct.pack("<I", steps if count is None else count)
        + step * steps
    )


def test_the_hand_encoding_is_a_graph_program():
    assert decode_program(_copies_program(3)).get_program(5).steps == (HostToDevice("h", "t"),) * 3


def test_more_steps_than_the_default_limit_are_refused_before_decoding():
    data = _copies_program(MAX_GRAPH_STEPS + 1)
    with pytest.raises(
        ExecutionError,
        match=rf"executable 'big' has more steps than this runtime "
        rf"loads: its programs hold at least "
        rf"{MAX_GRAPH_STEPS + 1} steps \(nodes and copies\), "
        rf"the limit is {MAX_GRAPH_STEPS}",
    ):
        decode_program(data, name="big")
    assert (
        len(decode_program(data, max_steps=MAX_GRAPH_STEPS + 1).get_program(5).steps)
        == MAX_GRAPH_STEPS + 1
    )


def test_a_step_count_the_bytes_cannot_hold_stays_a_format_error():
    with pytest.raises(FormatError, match="count 1000 needs at least 9000 bytes but 33 remain"):
        decode_program(_copies_program(3, count=1000), max_steps=10)


def test_the_step_limit_counts_every_program_and_can_be_set_per_runner():
    model = model_of(save_bytes(_relu_chain(20)))  # 20 nodes and 2 copies
    with pytest.raises(ExecutionError, match="at least 22 steps .*, the limit is 21"):
        ModelRunner(model, limits=RuntimeLimits(max_graph_steps=21))
    with ModelRunner(model, limits=RuntimeLimits(max_graph_steps=22)) as runner:
        assert runner.execute({"x": -np.ones((1, 4), np.float32)})["y"].tolist() == [[0] * 4]


# -- large plans -----------------------------------------------------------------------------


@pytest.mark.parametrize("executor", ["cpu", "ipu-model"])
def test_a_plan_over_the_generated_limit_runs_as_a_loop(monkeypatch, executor):
    data = save_bytes(RandomGraph(3).build(steps=8))
    inputs = {
        d.name: np.random.default_rng(0).standard_normal(d.shape).astype(np.float32)
        for d in ModelRunner(model_of(data)).get_execute_inputs()
    }
    with ModelRunner(model_of(data), executor) as runner:
        expected = runner.execute(inputs)
    monkeypatch.setattr(cpu, "GENERATED_PLAN_LIMIT", 0)
    with ModelRunner(model_of(data), "cpu") as runner:
        assert runner.executor._forward.__name__ == "forward"
        assert runner.executor._forward.__code__.co_filename != "<popef cpu plan>"
        got = runner.execute(inputs)
        folded = runner.execute({k: np.concatenate([v, v]) for k, v in inputs.items()})
    for name, value in expected.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(folded[name][: len(value)], value, rtol=1e-6, atol=1e-6)


def test_a_long_chain_loads_and_runs():
    nodes = 3 * cpu.GENERATED_PLAN_LIMIT
    with ModelRunner(model_of(save_bytes(_relu_chain(nodes)))) as runner:
        x = np.array([[-1, 2, -3, 4]], np.float32)
        assert runner.execute({"x": x})["y"].tolist() == [[0, 2, 0, 4]]


# -- the memory estimate ---------------------------------------------------------------------


def _naive_peak(program, specs, persistent) -> int:
    """The peak of live step tensors, recomputed from scratch at every step."""
    peak = 0
    for i in range(len(program.steps)):
        live = 0
        for name, spec in specs.items():
            if name in persistent:
                continue
            defined = [
                j
                for j, s in enumerate(program.steps)
                if name
                in (
                    s.outputs
                    if isinstance(s, BoundNode)
                    else (s.tensor,)
                    if isinstance(s, HostToDevice)
                    else ()
                )
            ]
            used = [
                j
                for j, s in enumerate(program.steps)
                if name
                in (
                    s.inputs
                    if isinstance(s, BoundNode)
                    else (s.tensor,)
                    if isinstance(s, DeviceToHost)
                    else ()
                )
            ]
            if defined and defined[0] <= i <= max([defined[0], *used]):
                live += spec.nbytes
        peak = max(peak, live)
    return peak


@pytest.mark.parametrize("seed", range(8))
def test_the_peak_of_live_tensors_matches_a_naive_count(seed):
    loaded = load_model(model_of(save_bytes(RandomGraph(seed).build(steps=8))))
    expected = max(_naive_peak(p, loaded.specs, loaded.persistent) for p in loaded.main)
    assert loaded.memory_need()[1] == expected
    assert loaded.request_step_bytes == expected
