"""Executors: the registry and plug-ins, cpu against ipu-model, and the simulated device."""

from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest

from popef import DataType, DeviceOutOfMemoryError, ExecutionError
from popef.runtime import (
    Executor,
    GraphBuilder,
    ModelRunner,
    get_executor,
    list_executors,
)
from popef.runtime.batching import fold_blocker
from popef.runtime.executors import executor_descriptions, register_executor
from popef.runtime.executors.cpu import CpuExecutor
from popef.runtime.executors.ipu_model import IpuModelExecutor
from popef.runtime.loader import load_model

from .helpers import RandomGraph, model_of, random_inputs, random_model, save_bytes, small_mlp

# Tolerances between executors: the same float32 kernels on the same data, but the cpu
# executor stacks steps into one batch, so BLAS may block and sum products in another order
# (a few ulps of float32 on dot products of a few dozen terms).
RTOL, ATOL = 2e-5, 2e-6


# -- registry --------------------------------------------------------------------------------


def test_builtin_executors_are_listed_and_described():
    assert list_executors()[:2] == ["cpu", "ipu-model"]
    rows = dict(executor_descriptions())
    assert "numpy" in rows["cpu"] and "IPUModel" in rows["ipu-model"]
    assert isinstance(get_executor("cpu"), CpuExecutor)
    assert isinstance(get_executor("ipu-model", tiles_per_ipu=8), IpuModelExecutor)


@pytest.mark.parametrize(
    "name, options, message",
    [
        ("gpu", {}, r"unknown executor 'gpu'; installed executors: cpu, ipu-model"),
        (
            "ipu-model",
            {"tiles": 3},
            r"executor 'ipu-model' has no option 'tiles' \(options: "
            r"ipu_version, num_ipus, tiles_per_ipu\)",
        ),
        ("ipu-model", {"tiles_per_ipu": 0}, r"option 'tiles_per_ipu' must be an integer >= 1"),
        (
            "ipu-model",
            {"ipu_version": 3},
            r"unknown IPU version 3 \(expected 1 \(Mk1\), 2 \(Mk2\), "
            r"21 \(Bow\)\)",
        ),
        (3, {}, r"an executor name must be a str"),
    ],
)
def test_bad_executor_requests(name, options, message):
    with pytest.raises(ExecutionError, match=message):
        get_executor(name, **options)


class EchoExecutor(CpuExecutor):
    """A plug-in: the cpu executor under another name."""

    name = "echo"
    description = "the cpu executor, plugged in"


def test_register_executor():
    register_executor("echo-registered", EchoExecutor)
    try:
        assert "echo-registered" in list_executors()
        with pytest.raises(ExecutionError, match="already registered"):
            register_executor("echo-registered", EchoExecutor)
        g, _ = small_mlp()
        with ModelRunner(model_of(save_bytes(g)), "echo-registered") as runner:
            assert runner.execute({"x": np.zeros((2, 5), np.float32)})["probs"].shape == (2, 3)
    finally:
        from popef.runtime.executors import _REGISTRY

        _REGISTRY.pop("echo-registered", None)


def test_plugins_come_from_the_entry_point_group(tmp_path, monkeypatch):
    """A real installed distribution (a .dist-info folder on sys.path) declaring executors."""
    (tmp_path / "popef_echo_plugin.py").write_text(
        textwrap.dedent("""
        from popef.runtime.executors.cpu import CpuExecutor

        class Echo(CpuExecutor):
            name = "echo"
            description = "echo plug-in"

        def broken(**options):
            raise RuntimeError("no device attached")
    """)
    )
    dist = tmp_path / "popef_echo_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: popef-echo-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[popef.executors]\necho = popef_echo_plugin:Echo\nbroken = popef_echo_plugin:broken\n"
        "missing = popef_echo_plugin:Nope\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert {"echo", "broken", "missing"} <= set(list_executors())
        g, _ = small_mlp()
        with ModelRunner(model_of(save_bytes(g)), "echo") as runner:
            assert runner.executor.name == "echo"
            assert runner.execute({"x": np.zeros((2, 5), np.float32)})["probs"].shape == (2, 3)
        with pytest.raises(
            ExecutionError,
            match="executor 'broken' failed to start: RuntimeError: no device attached",
        ):
            get_executor("broken")
        with pytest.raises(
            ExecutionError,
            match=r"executor 'missing' \(entry point "
            r"'popef_echo_plugin:Nope'\) cannot be loaded",
        ):
            get_executor("missing")
        assert "unavailable" in dict(executor_descriptions())["missing"]
    finally:
        sys.modules.pop("popef_echo_plugin", None)


def test_a_plugin_that_is_not_an_executor_is_refused():
    register_executor("not-an-executor", lambda **options: object())
    try:
        with pytest.raises(ExecutionError, match="gave a object, not a popef.runtime.Executor"):
            get_executor("not-an-executor")
    finally:
        from popef.runtime.executors import _REGISTRY

        _REGISTRY.pop("not-an-executor", None)


def test_a_failing_executor_leaves_as_an_execution_error():
    class Buggy(CpuExecutor):
        def execute(self, inputs, steps):
            raise ZeroDivisionError("oops")

    g, _ = small_mlp()
    with ModelRunner(model_of(save_bytes(g)), Buggy()) as runner:
        with pytest.raises(ExecutionError, match="executor 'cpu' failed: ZeroDivisionError: oops"):
            runner.execute({"x": np.zeros((2, 5), np.float32)})
    assert issubclass(Buggy, Executor)


# -- cpu against ipu-model -------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(24))
def test_cpu_and_ipu_model_agree_on_random_graphs(seed):
    model = random_model(seed)
    runners = [
        ModelRunner(model, "cpu"),
        ModelRunner(model, "cpu", fold=False),
        ModelRunner(model, "ipu-model"),
    ]
    inputs = random_inputs(seed, runners[0].get_execute_inputs())
    results = [r.execute(inputs) for r in runners]
    for runner in runners:
        runner.close()
    folded, stepwise, ipu = results
    assert list(folded) == list(ipu) and folded
    for name in folded:
        assert folded[name].shape == ipu[name].shape == stepwise[name].shape
        assert folded[name].dtype == ipu[name].dtype
        np.testing.assert_allclose(stepwise[name], ipu[name], rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(folded[name], ipu[name], rtol=RTOL, atol=ATOL)


def test_random_graphs_exercise_many_ops():
    ops = set()
    for seed in range(24):
        program = RandomGraph(seed).build().graph_program()
        ops.update(n.op_type for n in program.get_program(5).nodes())
    assert len(ops) >= 18, sorted(ops)


def _folds(build) -> str | None:
    g = GraphBuilder()
    x = g.add_input("x", DataType.F32, (2, 4))
    g.add_output(build(g, x), "y")
    return fold_blocker(load_model(model_of(save_bytes(g))))


@pytest.mark.parametrize(
    "build, reason",
    [
        (lambda g, x: g.add_node("Softmax", [x], axis=-1), None),
        (lambda g, x: g.add_node("Reshape", [x, g.add_weight("s", np.array([-1, 2]))]), None),
        (lambda g, x: g.add_node("Softmax", [x], axis=0), "mixes the rows"),
        (
            lambda g, x: g.add_node("Reshape", [x, g.add_weight("s", np.array([2, 4]))]),
            "does not take 3x the rows",
        ),
        (lambda g, x: g.add_node("Transpose", [x]), "mixes the rows"),
        (lambda g, x: g.add_node("Concat", [x, x], axis=0), "mixes the rows"),
        (
            lambda g, x: g.add_node(
                "Gemm", [x, g.add_weight("w", np.ones((2, 3), np.float32))], transA=1
            ),
            "mixes the rows",
        ),
        (lambda g, x: g.add_node("ArgMax", [x]), "mixes the rows"),  # axis 0 by default
        (
            lambda g, x: g.add_weight("c", np.ones((2, 4), np.float32)),
            "does not depend on the inputs",
        ),
    ],
)
def test_batch_folding_is_conservative(build, reason):
    found = _folds(build)
    if reason is None:
        assert found is None
    else:
        assert reason in found


@pytest.mark.parametrize("executor", ["cpu", "ipu-model", "onnxruntime"])
def test_graphs_that_do_not_fold_still_run_per_step(executor):
    if executor == "onnxruntime":
        pytest.importorskip("onnxruntime")
    g = GraphBuilder()
    x = g.add_input("x", DataType.F32, (2, 3))
    g.add_output(g.add_node("Softmax", [x], axis=0), "y")
    x = np.random.default_rng(0).standard_normal((6, 3)).astype(np.float32)
    with ModelRunner(model_of(save_bytes(g)), executor) as runner:
        out = runner.execute({"x": x})["y"]
    e = np.exp(x.reshape(3, 2, 3))
    np.testing.assert_allclose(out, (e / e.sum(axis=1, keepdims=True)).reshape(6, 3), rtol=1e-6)


# -- the simulated device --------------------------------------------------------------------


def _weights_model(size: int, **save) -> bytes:
    g = GraphBuilder()
    x = g.add_input("x", DataType.F32, (1, size))
    g.add_output(g.add_node("Add", [x, g.add_weight("w", np.ones(size, np.float32))]), "y")
    return save_bytes(g, **save)


def test_out_of_memory_on_a_tiny_device():
    model = model_of(_weights_model(200_000))  # 800 kB of weights, 1.6 MB of step tensors (x, y)
    with pytest.raises(DeviceOutOfMemoryError) as info:
        ModelRunner(model, "ipu-model", tiles_per_ipu=2)
    message = str(info.value)
    assert (
        "model 'model' does not fit in IPU memory: one replica needs 2.29 MiB (2400000 bytes)"
        in message
    )
    assert "781.25 KiB (800000 bytes) of persistent tensors" in message
    assert "but has 1.22 MiB (1277952 bytes) (1 IPU × 2 tiles × 624 KiB, ipu2 (Mk2))" in message
    assert "a peak of 1.53 MiB (1600000 bytes) of step tensors" in message
    with ModelRunner(model, "ipu-model", tiles_per_ipu=4):  # 2.56 MB fits
        pass
    with ModelRunner(model, "cpu"):  # the cpu has no such limit
        pass


def test_mk1_tiles_have_less_memory():
    model = model_of(_weights_model(100_000, ipu_version=1))  # 1.2 MB in all
    with pytest.raises(DeviceOutOfMemoryError, match=r"4 tiles × 256 KiB, ipu1 \(Mk1\)"):
        ModelRunner(model, "ipu-model", tiles_per_ipu=4)  # 1.05 MB
    ModelRunner(model, "ipu-model", tiles_per_ipu=5).close()  # 1.31 MB


def test_the_device_must_match_the_model():
    model = model_of(_weights_model(4, ipu_version=2, num_ipus=2, replication_factor=2))
    with pytest.raises(
        ExecutionError,
        match=r"compiled for ipu2 \(Mk2\) but the simulated device "
        r"is ipu21 \(Bow\)",
    ):
        ModelRunner(model, "ipu-model", ipu_version=21)
    with pytest.raises(
        ExecutionError,
        match=r"needs 4 IPUs \(2 per replica × replication factor "
        r"2\) but the simulated device has 3",
    ):
        ModelRunner(model, "ipu-model", num_ipus=3)
    with ModelRunner(model, "ipu-model", num_ipus=4, ipu_version=2) as runner:
        assert runner.execute({"x": np.zeros((2, 1, 4), np.float32)})["y"].shape == (2, 1, 4)
    unknown = model_of(_weights_model(4, ipu_version=7))
    with pytest.raises(
        ExecutionError, match="compiled for IPU version 7, which the IPU model does not know"
    ):
        ModelRunner(unknown, "ipu-model")


# -- the cpu executor's generated plan -------------------------------------------------------


def test_the_generated_plan_takes_any_tensor_names_and_optional_inputs():
    """The cpu executor compiles its plan into Python source: tensor names with quotes,
    backslashes, newlines or non-ASCII must stay data, and omitted inputs, unused outputs and
    tensors read twice must work as in the reference interpreter."""
    hostile = "x'\"\\\n\u00e9 ; import os"
    g = GraphBuilder()
    x = g.add_input(hostile, DataType.F32, (2, 1, 4, 4))
    w = g.add_weight("w'\"\\", np.full(1, 0.5, np.float32))
    values, _indices = g.add_node(
        "MaxPool", [x], name="pool\"'", num_outputs=2, kernel_shape=[2, 2], strides=[2, 2]
    )
    clipped = g.add_node("Clip", [values, None, g.add_weight("hi", np.array(0.75, np.float32))])
    g.add_output(g.add_node("Mul", [clipped, w]), "out\\'\"")
    g.add_output(g.add_node("Add", [values, values]), "twice")
    data = np.random.default_rng(5).random((2, 1, 4, 4), dtype=np.float32)
    expected = data.reshape(2, 1, 2, 2, 2, 2).max(axis=(3, 5))
    for executor in ("cpu", "ipu-model"):
        with ModelRunner(model_of(save_bytes(g)), executor) as runner:
            out = runner.execute({hostile: data})
        np.testing.assert_allclose(out["out\\'\""], np.minimum(expected, 0.75) * 0.5, rtol=1e-6)
        np.testing.assert_allclose(out["twice"], 2 * expected, rtol=1e-6)
