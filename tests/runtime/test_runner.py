"""ModelRunner: descriptions, execution, program-flow semantics and error paths."""

from __future__ import annotations

import importlib.util
import io

import numpy as np
import pytest

import popef
from popef import DataType, ExecutionError, TensorType
from popef.runtime import GraphBuilder, ModelRunner
from popef.runtime.program import DeviceToHost, GraphProgram, HostToDevice, Node, Program
from popef.runtime.runner import OutputFutures

from .helpers import (
    anchor,
    conv_reference,
    mlp_reference,
    model_of,
    save_bytes,
    small_mlp,
    write_model,
)

# with the onnxruntime executor when onnxruntime (an optional extra) is installed
EXECUTORS = ["cpu", "ipu-model"] + (
    ["onnxruntime"] if importlib.util.find_spec("onnxruntime") else []
)
# float32 kernels against a float64 reference: the rounding of a few dozen products and sums
RTOL, ATOL = 1e-5, 1e-6


@pytest.fixture
def mlp_file(tmp_path):
    g, params = small_mlp()
    path = tmp_path / "mlp.popef"
    g.save(path, executable_name="mlp")
    return path, params


@pytest.mark.parametrize("executor", EXECUTORS)
def test_describes_inputs_and_outputs(mlp_file, executor):
    path, _ = mlp_file
    with ModelRunner(path, executor) as runner:
        [x] = runner.get_execute_inputs()
        [y] = runner.get_execute_outputs()
    assert (x.name, x.shape, x.dtype, x.numpy_dtype, x.size_in_bytes) == (
        "x",
        (2, 5),
        DataType.F32,
        np.dtype(np.float32),
        40,
    )
    assert (y.name, y.shape, y.dtype, y.size_in_bytes, y.handle) == (
        "probs",
        (2, 3),
        DataType.F32,
        24,
        "anchor_d2h_probs",
    )
    assert str(x) == "x: F32[2, 5]"


@pytest.mark.parametrize("executor", EXECUTORS)
def test_executes_like_an_independent_computation(mlp_file, executor):
    path, params = mlp_file
    x = np.random.default_rng(1).standard_normal((2, 5)).astype(np.float32)
    with ModelRunner([path], executor) as runner:
        out = runner.execute({"x": x})
    assert list(out) == ["probs"]
    assert out["probs"].dtype == np.float32 and out["probs"].shape == (2, 3)
    np.testing.assert_allclose(out["probs"], mlp_reference(params, x), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("executor", EXECUTORS)
def test_a_convolution_network_matches_direct_loops(executor):
    rng = np.random.default_rng(2)
    w = rng.standard_normal((4, 2, 3, 3)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    g = GraphBuilder()
    x = g.add_input("x", DataType.F32, (1, 2, 6, 6))
    y = g.add_node(
        "Conv",
        [x, g.add_weight("w", w), g.add_weight("b", b)],
        kernel_shape=[3, 3],
        pads=[1, 1, 1, 1],
    )
    g.add_output(g.add_node("Relu", [y]), "y")
    data = rng.standard_normal((3, 2, 6, 6)).astype(np.float32)  # 3 steps
    with ModelRunner(model_of(save_bytes(g)), executor) as runner:
        out = runner.execute({"x": data})["y"]
    np.testing.assert_allclose(
        out, np.maximum(conv_reference(data, w, b, pad=1), 0), rtol=RTOL, atol=1e-5
    )


# -- program flow ----------------------------------------------------------------------------


@pytest.mark.parametrize("executor", EXECUTORS)
def test_load_runs_once_and_main_once_per_step(mlp_file, executor):
    path, _ = mlp_file
    x = np.zeros((2, 5), np.float32)
    with ModelRunner(path, executor) as runner:
        assert runner.program_runs == {0: 1}
        for _ in range(5):
            runner.execute({"x": x})
        runner.execute({"x": np.zeros((6, 5), np.float32)})  # 3 steps in one call
        assert runner.program_runs == {0: 1, 5: 8}


@pytest.mark.parametrize("executor", EXECUTORS)
def test_device_iterations_stack_steps_on_the_leading_axis(executor):
    g, params = small_mlp(batch=2)
    model = model_of(save_bytes(g, device_iterations=4))
    x = np.random.default_rng(3).standard_normal((4 * 2, 5)).astype(np.float32)
    with ModelRunner(model, executor) as runner:
        assert runner.get_execute_inputs()[0].shape == (2, 5)  # one device iteration
        out = runner.execute({"x": x})["probs"]
        assert out.shape == (8, 3)
        np.testing.assert_allclose(out, mlp_reference(params, x), rtol=RTOL, atol=ATOL)
        out = runner.execute({"x": x[:6]})["probs"]  # 3 steps: a shorter last launch
        np.testing.assert_allclose(out, mlp_reference(params, x[:6]), rtol=RTOL, atol=ATOL)
        if executor == "ipu-model":
            assert runner.executor.main_runs == 2  # launches of up to 4 device iterations


@pytest.mark.parametrize("executor", EXECUTORS)
def test_replicas_take_their_own_rows(executor):
    g, params = small_mlp(batch=1)
    model = model_of(save_bytes(g, replication_factor=3))
    rng = np.random.default_rng(4)
    with ModelRunner(model, executor) as runner:
        [x_desc] = runner.get_execute_inputs()
        assert x_desc.shape == (3, 1, 5) and x_desc.is_per_replica
        x = rng.standard_normal((3, 1, 5)).astype(np.float32)
        out = runner.execute({"x": x})["probs"]
        assert out.shape == (3, 1, 3)
        np.testing.assert_allclose(out[:, 0], mlp_reference(params, x[:, 0]), rtol=RTOL, atol=ATOL)
        x = rng.standard_normal((2 * 3, 1, 5)).astype(np.float32)  # 2 steps of 3 replicas
        out = runner.execute({"x": x})["probs"]
        np.testing.assert_allclose(out[:, 0], mlp_reference(params, x[:, 0]), rtol=RTOL, atol=ATOL)


def _per_replica_weight_model(rf: int = 2) -> tuple[bytes, np.ndarray]:
    """y = x * w, with w stored per replica (shape [rf, 3]) and x not per replica."""
    w = np.arange(1, 3 * rf + 1, dtype=np.float32).reshape(rf, 3)
    program = GraphProgram(
        (
            Program(0, "WeightsFromHost", (HostToDevice("h2d_w", "w"),)),
            Program(
                5,
                "Program",
                (
                    HostToDevice("h2d_x", "x"),
                    Node("Mul", "mul", ("x", "w"), ("y",)),
                    DeviceToHost("y", "anchor_d2h_y"),
                ),
            ),
            Program(7, "WeightsToHost", (DeviceToHost("w", "weight_d2h_w"),)),
        )
    )
    anchors = [
        anchor("x", (3,), TensorType.INPUT),
        anchor("y", (rf, 3), TensorType.OUTPUT, per_replica=True),
        anchor("w", (rf, 3), TensorType.INPUT, (0,), per_replica=True),
        anchor(
            "w_saved", (rf, 3), TensorType.OUTPUT, (7,), handle="weight_d2h_w", per_replica=True
        ),
    ]
    stream = io.BytesIO()
    write_model(stream, program, anchors, {"w": w}, save=(7,), replication_factor=rf)
    return stream.getvalue(), w


@pytest.mark.parametrize("executor", EXECUTORS)
def test_per_replica_weights_and_save_programs(executor):
    data, w = _per_replica_weight_model()
    with ModelRunner(model_of(data), executor) as runner:
        [x_desc] = runner.get_execute_inputs()
        assert x_desc.shape == (3,) and not x_desc.is_per_replica
        x = np.array([1, 2, 3], np.float32)
        np.testing.assert_array_equal(runner.execute({"x": x})["y"], w * x)
        saved = runner.run_save_programs()
        assert list(saved) == ["w_saved"]
        np.testing.assert_array_equal(saved["w_saved"], w)
        assert runner.program_runs == {0: 1, 5: 1, 7: 1}


@pytest.mark.parametrize("executor", EXECUTORS)
def test_frozen_inputs_and_constant_nodes(executor):
    """A main-program stream with stored data is a frozen input; nodes on constants fold."""
    program = GraphProgram(
        (
            Program(0, "WeightsFromHost", ()),
            Program(
                5,
                "Program",
                (
                    HostToDevice("h2d_k", "k"),
                    Node("Mul", "twice", ("k", "k"), ("k2",)),
                    HostToDevice("h2d_x", "x"),
                    Node("Add", "add", ("x", "k2"), ("y",)),
                    DeviceToHost("y", "anchor_d2h_y"),
                ),
            ),
        )
    )
    stream = io.BytesIO()
    write_model(
        stream,
        program,
        [
            anchor("x", (2, 2), TensorType.INPUT),
            anchor("y", (2, 2), TensorType.OUTPUT),
            anchor("k", (2,), TensorType.INPUT),
        ],
        {"k": np.array([1, 2], np.float32)},
    )
    with ModelRunner(model_of(stream.getvalue()), executor) as runner:
        assert [d.name for d in runner.get_execute_inputs()] == ["x"]
        out = runner.execute({"x": np.ones((4, 2), np.float32)})["y"]
    np.testing.assert_array_equal(out, np.ones((4, 2)) + [1, 4])


@pytest.mark.parametrize("executor", EXECUTORS)
def test_async_execution(mlp_file, executor):
    path, params = mlp_file
    rng = np.random.default_rng(5)
    xs = [rng.standard_normal((2, 5)).astype(np.float32) for _ in range(4)]
    with ModelRunner(path, executor) as runner:
        futures = [runner.execute_async({"x": x}) for x in xs]
        assert all(isinstance(f, OutputFutures) for f in futures)
        for x, f in zip(xs, futures):
            assert list(f) == ["probs"] and len(f) == 1
            np.testing.assert_allclose(
                f["probs"].result(timeout=30), mlp_reference(params, x), rtol=RTOL, atol=ATOL
            )
            assert f.wait(timeout=30)["probs"].shape == (2, 3)
            assert f.done()


def test_outputs_are_independent_of_inputs():
    g = GraphBuilder()
    x = g.add_input("x", DataType.F32, (2, 3))
    g.add_output(g.add_node("Identity", [x]), "same")
    g.add_output(g.add_node("Reshape", [x, g.add_weight("s", np.array([-1, 6]))]), "flat")
    with ModelRunner(model_of(save_bytes(g))) as runner:
        x = np.zeros((2, 3), np.float32)
        out = runner.execute({"x": x})
        x[:] = 1
        assert not out["same"].any() and not out["flat"].any()


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize(
    "inputs, message",
    [
        (
            {"y": np.zeros((2, 5), np.float32)},
            r"unknown input 'y': model 'mlp' takes 'x' F32\[2, 5\]",
        ),
        ({}, r"missing input 'x' \(F32\[2, 5\]\)"),
        ({"x": np.zeros((2, 5), np.float64)}, r"input 'x' has dtype F64, expected F32"),
        ({"x": np.zeros((2, 5), np.int32)}, r"input 'x' has dtype S32, expected F32"),
        (
            {"x": np.zeros((2, 4), np.float32)},
            r"input 'x' has shape \[2, 4\], expected \[2, 5\] "
            r"\(or n × 2 rows for n steps: \[n\*2, 5\]\)",
        ),
        ({"x": np.zeros((3, 5), np.float32)}, r"input 'x' has shape \[3, 5\]"),
        ({"x": np.zeros((5,), np.float32)}, r"input 'x' has shape \[5\]"),
        ([np.zeros((2, 5), np.float32)], r"inputs must be a mapping"),
    ],
)
def test_wrong_inputs_say_what_was_expected(mlp_file, executor, inputs, message):
    path, _ = mlp_file
    with ModelRunner(path, executor) as runner:
        with pytest.raises(ExecutionError, match=message):
            runner.execute(inputs)
        with pytest.raises(ExecutionError, match=message):
            runner.execute_async(inputs)


def test_inputs_must_agree_on_the_number_of_steps():
    g = GraphBuilder()
    a = g.add_input("a", DataType.F32, (1, 2))
    b = g.add_input("b", DataType.F32, (1, 2))
    g.add_output(g.add_node("Add", [a, b]), "c")
    with ModelRunner(model_of(save_bytes(g))) as runner:
        with pytest.raises(ExecutionError, match="'a' carries 2 and 'b' carries 3"):
            runner.execute({"a": np.zeros((2, 2), np.float32), "b": np.zeros((3, 2), np.float32)})


def test_unknown_executor_and_options(mlp_file):
    path, _ = mlp_file
    with pytest.raises(
        ExecutionError, match="unknown executor 'tpu'; installed executors: cpu, ipu-model"
    ):
        ModelRunner(path, "tpu")
    with pytest.raises(
        ExecutionError,
        match=r"executor 'cpu' has no option 'tiles_per_ipu' "
        r"\(options: blas_threads, fold, fuse, threads\)",
    ):
        ModelRunner(path, "cpu", tiles_per_ipu=4)


def test_a_closed_runner_refuses_work(mlp_file):
    path, _ = mlp_file
    runner = ModelRunner(path)
    runner.close()
    runner.close()
    with pytest.raises(ExecutionError, match="closed"):
        runner.execute({"x": np.zeros((2, 5), np.float32)})


def test_choosing_among_several_models(tmp_path):
    g, _ = small_mlp()
    a, b = tmp_path / "a.popef", tmp_path / "b.popef"
    g.save(a, executable_name="first")
    other = GraphBuilder()  # no weights: tensor data links by name across the files
    other.add_output(other.add_node("Relu", [other.add_input("x", DataType.F32, (2,))]), "y")
    other.save(b, executable_name="second")
    with pytest.raises(
        ExecutionError,
        match="the files hold 2 models: 'first', 'second': choose one with executable=NAME",
    ):
        ModelRunner([a, b])
    with ModelRunner([a, b], executable="second") as runner:
        assert runner.model.name == "second"
    with pytest.raises(ExecutionError, match="no model named 'third'"):
        ModelRunner([a, b], executable="third")


def test_a_model_split_over_two_files(tmp_path):
    """PopART's executable.popef + variables.popef: weights in a second file."""
    g, params = small_mlp()
    whole = tmp_path / "whole.popef"
    g.save(whole, executable_name="mlp")
    reader = popef.Reader()
    reader.parse_file(whole)
    executable, variables = tmp_path / "executable.popef", tmp_path / "variables.popef"
    with popef.Writer(executable) as w1, popef.Writer(variables) as w2:
        for blob in reader.blobs():
            (w2 if blob.type is popef.BlobType.DATA_TENSOR else w1).copy_blob(blob)
    reader.close()
    x = np.ones((2, 5), np.float32)
    with ModelRunner([executable, variables]) as runner:
        np.testing.assert_allclose(
            runner.execute({"x": x})["probs"], mlp_reference(params, x), rtol=RTOL, atol=ATOL
        )


def _file_with(program, anchors, tensors=None, **kwargs) -> popef.Model:
    stream = io.BytesIO()
    write_model(stream, program, anchors, tensors, **kwargs)
    return model_of(stream.getvalue())


XY = [anchor("x", (2, 3), TensorType.INPUT), anchor("y", (2, 3), TensorType.OUTPUT)]


def _main(*steps) -> GraphProgram:
    return GraphProgram((Program(0, "WeightsFromHost"), Program(5, "Program", tuple(steps))))


@pytest.mark.parametrize(
    "program, message",
    [
        (
            _main(
                HostToDevice("h2d_x", "x"),
                Node("Frobnicate", "frob", ("x",), ("y",)),
                DeviceToHost("y", "anchor_d2h_y"),
            ),
            r"model 'm', program 5 \('Program'\), step 1: unknown op 'Frobnicate' \(node 'frob'\)",
        ),
        (
            _main(
                HostToDevice("h2d_x", "x"),
                Node("Relu", "relu", ("x",), ("y",), {"slope": 2}),
                DeviceToHost("y", "anchor_d2h_y"),
            ),
            r"step 1: Relu node 'relu': unknown attribute 'slope'",
        ),
        (
            _main(
                HostToDevice("h2d_x", "x"),
                Node("Softmax", "sm", ("x",), ("y",), {"axis": "last"}),
                DeviceToHost("y", "anchor_d2h_y"),
            ),
            r"Softmax node 'sm': attribute 'axis' must be int",
        ),
        (
            _main(
                HostToDevice("h2d_x", "x"),
                Node("Relu", "relu", ("t",), ("y",)),
                DeviceToHost("y", "anchor_d2h_y"),
            ),
            r"step 1 \(Relu node 'relu'\): tensor 't' is not defined by an earlier step",
        ),
        (
            _main(
                HostToDevice("h2d_x", "x"),
                Node("Flatten", "flat", ("x",), ("y",), {"axis": 0}),
                DeviceToHost("y", "anchor_d2h_y"),
            ),
            r"tensor 'y' is \[1, 6\] float32 but anchor 'y' takes \[2, 3\] float32 per replica",
        ),
        (_main(HostToDevice("h2d_nope", "x")), r"no anchor has the handle 'h2d_nope'"),
        (
            _main(HostToDevice("h2d_x", "x"), HostToDevice("h2d_x", "x")),
            r"tensor 'x' is already defined by program 5",
        ),
        (
            _main(HostToDevice("h2d_x", "x")),
            r"output 'y' \(handle 'anchor_d2h_y'\) is written by no step of the main programs",
        ),
        (
            _main(HostToDevice("h2d_x", "x"), DeviceToHost("x", "h2d_x")),
            r"anchor 'x' is not an output",
        ),
        (
            GraphProgram((Program(5, "Program"),)),
            r"program 0 \('WeightsFromHost'\) is listed in program_flow.load but the executable "
            r"defines only programs \[5\]",
        ),
        (b"\x7fELF" + bytes(60), r"executable 'm' is not a graph program"),
    ],
)
def test_bad_graphs_are_refused_at_load_naming_the_culprit(program, message):
    model = _file_with(program, XY)
    for executor in EXECUTORS:
        with pytest.raises(ExecutionError, match=message):
            ModelRunner(model, executor)


@pytest.mark.parametrize(
    "node, where",
    [
        (Node("Frobnicate", "frob", ("x",), ("y",)), "program 5 ('Program'), step 1"),
        (Node("Relu", "relu", ("t",), ("y",)), "program 5 ('Program'), step 1 (Relu node 'relu')"),
    ],
)
def test_a_load_error_carries_where_and_names_the_model_once(node, where):
    model = _file_with(
        _main(HostToDevice("h2d_x", "x"), node, DeviceToHost("y", "anchor_d2h_y")), XY
    )
    with pytest.raises(ExecutionError) as refused:
        ModelRunner(model)
    assert refused.value.where == where
    assert str(refused.value).startswith(f"model 'm', {where}: ")
    assert str(refused.value).count("model 'm'") == 1


def test_main_tensors_are_not_visible_to_save_programs():
    program = GraphProgram(
        (
            Program(0, "WeightsFromHost"),
            Program(
                5,
                "Program",
                (
                    HostToDevice("h2d_x", "x"),
                    Node("Relu", "r", ("x",), ("y",)),
                    DeviceToHost("y", "anchor_d2h_y"),
                ),
            ),
            Program(7, "WeightsToHost", (DeviceToHost("y", "weight_d2h_y"),)),
        )
    )
    anchors = [*XY, anchor("saved", (2, 3), TensorType.OUTPUT, (7,), handle="weight_d2h_y")]
    with pytest.raises(ExecutionError, match="main-program tensors live for one step only"):
        ModelRunner(_file_with(program, anchors, save=(7,)))


def test_per_replica_anchors_need_the_replica_dimension():
    anchors = [anchor("x", (2, 3), TensorType.INPUT, per_replica=True), XY[1]]
    program = _main(HostToDevice("h2d_x", "x"), DeviceToHost("x", "anchor_d2h_y"))
    with pytest.raises(
        ExecutionError,
        match=r"anchor 'x' is per replica, so its shape \[2, 3\] "
        r"must start with the replication factor 4",
    ):
        ModelRunner(_file_with(program, anchors, replication_factor=4))


def test_weights_need_tensor_data():
    anchors = [*XY, anchor("w", (3,), TensorType.INPUT, (0,))]
    program = GraphProgram(
        (Program(0, "WeightsFromHost", (HostToDevice("h2d_w", "w"),)), Program(5, "Program", ()))
    )
    with pytest.raises(ExecutionError, match="anchor 'w' has no tensor data"):
        ModelRunner(_file_with(program, anchors))
