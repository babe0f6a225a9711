"""Graphcore's ``model_runtime`` module, called as mmdeploy's IPU backend calls it; its results
are those of :class:`popef.runtime.ModelRunner` on the same model."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

import popef as ours
from popef.graphcore import model_runtime, popef
from popef.runtime import GraphBuilder, ModelRunner

from ..runtime.test_builder import mnist_like


def small_model(path, **save) -> None:
    rng = np.random.default_rng(1)
    g = GraphBuilder()
    x = g.add_input("x", ours.DataType.F32, (2, 3))
    h = g.add_node("MatMul", [x, g.add_weight("w", rng.standard_normal((3, 4)).astype(np.float32))])
    h = g.add_node("Add", [h, g.add_weight("b", rng.standard_normal(4).astype(np.float32))])
    g.add_output(g.add_node("Relu", [h]), "y")
    g.add_output(g.add_node("Softmax", [h], axis=-1), "p")
    g.save(path, executable_name="small", **save)


def mmdeploy_forward(runner, inputs: dict[str, np.ndarray], asynchronous: bool):
    """IPUWrapper.forward: an InputMemoryView, executeAsync + wait, np.frombuffer per output."""
    view = model_runtime.InputMemoryView()
    for desc in runner.getExecuteInputs():
        view[desc.name] = inputs[desc.name].astype(popef.popefTypeToNumpyDType(desc.data_type))
    if asynchronous:
        result = runner.executeAsync(view)
        result.wait()
    else:
        result = runner.execute(view)
    return {
        desc.name: np.frombuffer(
            result[desc.name], dtype=popef.popefTypeToNumpyDType(desc.data_type)
        ).reshape(desc.shape)
        for desc in runner.getExecuteOutputs()
    }


def mmdeploy_config():
    config = model_runtime.ModelRunnerConfig()
    config.device_wait_config = model_runtime.DeviceWaitConfig(
        model_runtime.DeviceWaitStrategy.WAIT_WITH_TIMEOUT,
        timeout=timedelta(seconds=600),
        sleepTime=timedelta(seconds=1),
    )
    return config


@pytest.mark.parametrize("asynchronous", [False, True])
def test_mnist_runs_as_with_our_runner(tmp_path, asynchronous):
    path = tmp_path / "mnist.popef"
    mnist_like().save(path, executable_name="mnist")
    runner = model_runtime.ModelRunner(str(path), config=mmdeploy_config())
    [desc] = runner.getExecuteInputs()
    assert (desc.name, desc.shape, desc.data_type, desc.size_in_bytes) == (
        "input",
        [1, 1, 28, 28],
        popef.DataType.F32,
        3136,
    )
    [out] = runner.getExecuteOutputs()
    assert (out.name, out.shape, out.size_in_bytes) == ("softmax/Softmax:0", [1, 10], 40)
    image = np.random.default_rng(3).random((1, 1, 28, 28))  # float64: astype'd as mmdeploy does
    got = mmdeploy_forward(runner, {"input": image}, asynchronous)
    with ModelRunner(path) as reference:
        expected = reference.execute({"input": image.astype(np.float32)})
    assert got.keys() == expected.keys()
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name])
    runner.close()


def test_split_files_device_iterations_and_raw_memory(tmp_path):
    """PopefPaths over an executable file and a variables file; two device iterations given
    as one flat array and as raw bytes, as Model Runtime reads inputs: memory."""
    whole = tmp_path / "whole.popef"
    small_model(whole, device_iterations=2)
    reader = ours.Reader()
    reader.parse_file(whole)
    with ours.Writer(tmp_path / "executable.popef") as writer:
        for blob in reader.blobs():
            if blob.type != ours.BlobType.DATA_TENSOR:
                writer.copy_blob(blob)
    with ours.Writer(tmp_path / "variables.popef") as writer:
        for tensor in reader.tensors():
            writer.copy_blob(tensor)
    paths = model_runtime.PopefPaths(
        [str(tmp_path / "executable.popef"), str(tmp_path / "variables.popef")]
    )
    runner = model_runtime.ModelRunner(paths)
    x = np.arange(12, dtype=np.float32) / 7
    with ModelRunner(whole) as reference:
        expected = reference.execute({"x": x.reshape(4, 3)})
    for given in (x, x.tobytes(), bytearray(x.tobytes())):
        got = runner.execute({"x": given})
        for name, array in expected.items():
            np.testing.assert_array_equal(
                np.frombuffer(got[name], np.float32).reshape(4, -1), array
            )
    outputs = model_runtime.OutputMemoryView(
        {desc.name: bytearray(2 * desc.size_in_bytes) for desc in runner.getExecuteOutputs()}
    )
    assert runner.execute({"x": x}, outputs) is None
    np.testing.assert_array_equal(
        np.frombuffer(outputs["y"], np.float32).reshape(4, 4), expected["y"]
    )
    runner.close()


def test_a_model_object_and_the_default_config(tmp_path):
    path = tmp_path / "small.popef"
    small_model(path)
    reader = ours.Reader()
    reader.parse_file(path)
    [model] = reader.models()
    runner = model_runtime.ModelRunner(model)
    assert runner.config == model_runtime.ModelRunnerConfig()
    assert runner.config.thread_safe and runner.config.executor == "cpu"
    result = runner.executeAsync({"x": np.ones((2, 3), np.float32)})
    assert sorted(result) == ["p", "y"] and len(result) == 2
    np.testing.assert_allclose(np.asarray(result["p"]).sum(axis=-1), 1, rtol=1e-6)
    runner.close()


def test_config_is_checked(tmp_path):
    path = tmp_path / "small.popef"
    small_model(path)
    bad = [
        (model_runtime.ModelRunnerConfig(timeout_ns=-1), "timeout_ns must be nanoseconds >= 0"),
        (model_runtime.ModelRunnerConfig(thread_safe="yes"), "thread_safe must be a bool"),
        (model_runtime.ModelRunnerConfig(device_wait_config=None), "must be a DeviceWaitConfig"),
        (
            model_runtime.ModelRunnerConfig(
                device_wait_config=model_runtime.DeviceWaitConfig(timeout=timedelta(seconds=-1))
            ),
            "DeviceWaitConfig.timeout must not be negative",
        ),
        (model_runtime.ModelRunnerConfig(executor="no-such-executor"), "no-such-executor"),
    ]
    for config, message in bad:
        with pytest.raises(ours.PopefError, match=message):
            model_runtime.ModelRunner(str(path), config=config)
    with pytest.raises(ours.ExecutionError, match="config must be a ModelRunnerConfig, got dict"):
        model_runtime.ModelRunner(str(path), config={})
    model_runtime.ModelRunner(
        str(path),
        config=model_runtime.ModelRunnerConfig(
            timeout_ns=timedelta(milliseconds=5), thread_safe=False
        ),
    ).close()


def test_bad_inputs_are_named(tmp_path):
    path = tmp_path / "small.popef"
    small_model(path)
    with model_runtime.ModelRunner(str(path)) as runner:
        with pytest.raises(ours.ExecutionError, match="input 'x' has dtype F64, expected F32"):
            runner.execute({"x": np.ones((2, 3))})
        with pytest.raises(ours.ExecutionError, match="input 'x' has shape \\[5\\]"):
            runner.execute({"x": np.ones(5, np.float32)})
        with pytest.raises(ours.ExecutionError, match="has dtype U8, expected F32"):
            runner.execute({"x": b"\x00" * 5})
        with pytest.raises(ours.ExecutionError, match="missing"):
            runner.execute(model_runtime.InputMemoryView())
        with pytest.raises(ours.ExecutionError, match="must be an InputMemoryView"):
            runner.execute([np.ones((2, 3), np.float32)])
        outputs = model_runtime.OutputMemoryView(y=bytes(32), p=bytearray(32))
        with pytest.raises(
            ours.ExecutionError, match="'y' needs 32 writable bytes, found 32 read-only"
        ):
            runner.execute({"x": np.ones((2, 3), np.float32)}, outputs)
    with pytest.raises(ours.PopefError, match="cannot read"):
        model_runtime.ModelRunner(str(tmp_path / "missing.popef"))


def test_a_real_poplar_executable_is_refused_clearly(tmp_path):
    from .test_popef_api import popart_like_file

    path = tmp_path / "popart.popef"
    popart_like_file(path)
    with pytest.raises(ours.ExecutionError, match="is not a graph program.*needs Graphcore's SDK"):
        model_runtime.ModelRunner(str(path))


def test_descriptions_are_copies_that_callers_can_scale(tmp_path):
    """mmdeploy's forward: ``out_shape = desc.shape; out_shape[0] *= bps`` on every call,
    with ``getExecuteOutputs()`` read again each time; Model Runtime's descriptions are
    copies, so the shape does not grow from one call to the next."""
    path = tmp_path / "relu.popef"
    g = GraphBuilder()
    x = g.add_input("x", ours.DataType.F32, (2, 3))
    g.add_output(g.add_node("Relu", [x]), "y")
    bps = 4
    g.save(path, executable_name="relu", device_iterations=bps)
    runner = model_runtime.ModelRunner(
        model_runtime.PopefPaths(str(path)), config=mmdeploy_config()
    )
    descriptions = runner.getExecuteInputs()
    view = model_runtime.InputMemoryView()
    for desc in descriptions:
        data = (
            np.arange(6).reshape(desc.shape).astype(popef.popefTypeToNumpyDType(desc.data_type)) - 2
        )
        view[desc.name] = np.repeat(data, repeats=bps, axis=0)
    for _ in range(3):
        result = runner.executeAsync(view)
        result.wait()
        for desc in runner.getExecuteOutputs():
            out_shape = desc.shape
            out_shape[0] = out_shape[0] * bps
            out = np.frombuffer(
                result[desc.name], dtype=popef.popefTypeToNumpyDType(desc.data_type)
            ).reshape(out_shape)
            np.testing.assert_array_equal(out, np.maximum(view["x"], 0))
    desc = runner.getExecuteInputs()[0]
    desc.shape[0] = 99
    desc.shape = [7]
    assert desc.shape == [7] and runner.getExecuteInputs() == descriptions
    assert descriptions[0].shape == [2, 3] and descriptions[0] is not desc
    assert type(desc.data_type) is popef.DataType and str(desc.data_type) == "DataType.F32"
    runner.close()


def test_a_uint8_array_is_raw_memory_for_a_wider_input(tmp_path):
    """Model Runtime reads an input as memory: the bytes of a ``uint8`` array (as
    ``np.fromfile(f, np.uint8)`` gives them) are read as the input's type."""
    path = tmp_path / "small.popef"
    small_model(path)
    x = np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)
    with model_runtime.ModelRunner(str(path)) as runner:
        expected = runner.execute({"x": x})
        got = runner.execute({"x": np.frombuffer(x.tobytes(), np.uint8)})
        np.testing.assert_array_equal(got["y"], expected["y"])
        with pytest.raises(ours.ExecutionError, match="has dtype U8, expected F32"):
            runner.execute({"x": np.zeros(5, np.uint8)})
