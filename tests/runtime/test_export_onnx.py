"""Export to ONNX (popef.runtime.to_onnx, `popef export-onnx`): checker, onnxruntime, names,
dynamic batch, the CLI, and import → export → import."""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import popef
from popef import DataType, ExecutionError, TensorType
from popef.runtime import GraphBuilder, ModelRunner
from popef.runtime.program import DeviceToHost, GraphProgram, HostToDevice, Node, Program

from .helpers import RandomGraph, anchor, model_of, save_bytes, write_model

onnx = pytest.importorskip("onnx", reason="export needs onnx (an optional extra)")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime checks the exported models")

# onnxruntime (MLAS) against the numpy kernels: other summation orders and exp/tanh/erf
# approximations; float32 results agree to about 1e-5 relative (as in test_oracle.py).
RTOL, ATOL = 1e-4, 1e-5


def mnist_builder(seed: int = 0) -> GraphBuilder:
    rng = np.random.default_rng(seed)
    g = GraphBuilder()
    x = g.add_input("input", DataType.F32, (1, 1, 28, 28))
    w = g.add_weight("conv1.weight", (rng.standard_normal((8, 1, 3, 3)) * 0.3).astype(np.float32))
    b = g.add_weight("conv1.bias", rng.standard_normal(8).astype(np.float32))
    h = g.add_node("Conv", [x, w, b], kernel_shape=[3, 3])
    h = g.add_node("MaxPool", [h], kernel_shape=[2, 2], strides=[2, 2])
    h = g.add_node("Relu", [h])
    h = g.add_node("Flatten", [h], axis=1)
    fc = g.add_weight("fc.weight", (rng.standard_normal((10, 1352)) * 0.05).astype(np.float32))
    h = g.add_node("Gemm", [h, fc], transB=1)
    g.add_output(g.add_node("Softmax", [h], axis=-1), "softmax/Softmax:0")
    return g


def session(model) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def test_the_mnist_network_exports_runs_and_keeps_its_names(tmp_path):
    path = tmp_path / "mnist.popef"
    mnist_builder().save(path, executable_name="mnist")
    out = tmp_path / "mnist.onnx"
    model = popef.export_onnx(path, out)
    assert onnx.load(str(out)) == model
    onnx.checker.check_model(model, full_check=True)
    graph = model.graph
    assert [i.name for i in graph.input] == ["input"]
    assert [o.name for o in graph.output] == ["softmax/Softmax:0"]
    assert sorted(t.name for t in graph.initializer) == ["conv1.bias", "conv1.weight", "fc.weight"]
    assert [n.op_type for n in graph.node] == [
        "Conv",
        "MaxPool",
        "Relu",
        "Flatten",
        "Gemm",
        "Softmax",
    ]
    assert [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim] == [1, 1, 28, 28]
    x = np.random.default_rng(1).random((1, 1, 28, 28), dtype=np.float32)
    [y] = session(model).run(None, {"input": x})
    with ModelRunner(path) as runner:
        expected = runner.execute({"input": x})["softmax/Softmax:0"]
    np.testing.assert_allclose(y, expected, rtol=RTOL, atol=ATOL)


def test_a_dynamic_batch_takes_any_number_of_rows(tmp_path):
    path = tmp_path / "mnist.popef"
    mnist_builder().save(path)
    model = popef.export_onnx(path, dynamic_batch=True)
    assert graph_dims(model.graph.input[0]) == ["N", 1, 28, 28]
    assert graph_dims(model.graph.output[0]) == ["N", 10]
    x = np.random.default_rng(2).random((7, 1, 28, 28), dtype=np.float32)
    [y] = session(model).run(None, {"input": x})
    with ModelRunner(path) as runner:
        np.testing.assert_allclose(
            y, runner.execute({"input": x})["softmax/Softmax:0"], rtol=RTOL, atol=ATOL
        )


def graph_dims(value_info) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def test_a_graph_that_mixes_rows_has_no_dynamic_batch():
    g = GraphBuilder()
    x = g.add_input("x", DataType.F32, (2, 3))
    g.add_output(g.add_node("Softmax", [x], axis=0), "y")
    with pytest.raises(
        ExecutionError,
        match=r"model 'model' cannot be exported with a dynamic "
        r"batch dimension: .*mixes the rows",
    ):
        popef.export_onnx(model_of(save_bytes(g)), dynamic_batch=True)
    assert graph_dims(popef.export_onnx(model_of(save_bytes(g))).graph.input[0]) == [2, 3]


def test_tensors_named_unlike_their_anchors_are_renamed_or_linked():
    """Input tensor 't_x' takes the anchor's name; an output fed by an input, and a tensor
    written to two outputs, need Identity nodes; frozen inputs become initializers."""
    program = GraphProgram(
        (
            Program(0, "WeightsFromHost", ()),
            Program(
                5,
                "Program",
                (
                    HostToDevice("h2d_x", "t_x"),
                    HostToDevice("h2d_k", "t_k"),
                    Node("Add", "add", ("t_x", "t_k"), ("sum",)),
                    DeviceToHost("sum", "d2h_y"),
                    DeviceToHost("sum", "d2h_z"),
                    DeviceToHost("t_x", "d2h_echo"),
                ),
            ),
        )
    )
    stream = io.BytesIO()
    write_model(
        stream,
        program,
        [
            anchor("x", (2, 2), TensorType.INPUT, handle="h2d_x"),
            anchor("k", (2,), TensorType.INPUT, handle="h2d_k"),
            anchor("y", (2, 2), TensorType.OUTPUT, handle="d2h_y"),
            anchor("z", (2, 2), TensorType.OUTPUT, handle="d2h_z"),
            anchor("echo", (2, 2), TensorType.OUTPUT, handle="d2h_echo"),
        ],
        {"k": np.array([1, 2], np.float32)},
    )
    model = popef.export_onnx(model_of(stream.getvalue()))
    graph = model.graph
    assert [i.name for i in graph.input] == ["x"]
    assert [o.name for o in graph.output] == ["y", "z", "echo"]
    assert [t.name for t in graph.initializer] == ["t_k"]
    assert [(n.op_type, list(n.input), list(n.output)) for n in graph.node] == [
        ("Add", ["x", "t_k"], ["y"]),
        ("Identity", ["y"], ["z"]),
        ("Identity", ["x"], ["echo"]),
    ]
    x = np.arange(4, dtype=np.float32).reshape(2, 2)
    y, z, echo = session(model).run(None, {"x": x})
    np.testing.assert_array_equal(y, x + [1, 2])
    np.testing.assert_array_equal(z, y)
    np.testing.assert_array_equal(echo, x)


def test_per_replica_weights_export_one_replica():
    rf = 2
    w = np.array([[1, 2, 3], [10, 20, 30]], np.float32)
    program = GraphProgram(
        (
            Program(0, "WeightsFromHost", (HostToDevice("h2d_w", "w"),)),
            Program(
                5,
                "Program",
                (
                    HostToDevice("h2d_x", "x"),
                    Node("Mul", "mul", ("x", "w"), ("y",)),
                    DeviceToHost("y", "d2h_y"),
                ),
            ),
        )
    )
    stream = io.BytesIO()
    write_model(
        stream,
        program,
        [
            anchor("x", (3,), TensorType.INPUT, handle="h2d_x"),
            anchor("y", (3,), TensorType.OUTPUT, handle="d2h_y"),
            anchor("w", (rf, 3), TensorType.INPUT, programs=(0,), handle="h2d_w", per_replica=True),
        ],
        {"w": w},
        replication_factor=rf,
    )
    model = model_of(stream.getvalue())
    for replica in range(rf):
        exported = popef.export_onnx(model, replica=replica)
        weight = onnx.numpy_helper.to_array(exported.graph.initializer[0])
        np.testing.assert_array_equal(weight, w[replica])
    with pytest.raises(ExecutionError, match=r"replica must be an int in \[0, 1\]"):
        popef.export_onnx(model, replica=2)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000))
def test_random_graphs_export_to_what_the_cpu_executor_computes(seed):
    builder = RandomGraph(seed).build()
    model = model_of(save_bytes(builder))
    exported = popef.export_onnx(model)
    rng = np.random.default_rng(seed)
    inputs = {
        name: rng.standard_normal(info.shape).astype(np.float32)
        for name, info in builder.inputs.items()
    }
    got = dict(zip([o.name for o in exported.graph.output], session(exported).run(None, inputs)))
    with ModelRunner(model) as runner:
        expected = runner.execute(inputs)
    assert list(got) == list(expected)
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], rtol=RTOL, atol=ATOL, err_msg=name)


# -- import → export → import ----------------------------------------------------------------


def _import(model, path) -> GraphProgram:
    import_onnx = getattr(popef, "import_onnx", None)
    if import_onnx is None:
        pytest.skip("popef.import_onnx is not available")
    import_onnx(model, path)
    with popef.Reader() as reader:
        reader.parse_file(path)
        [m] = reader.models()
        from popef.runtime.program import decode_program

        return decode_program(m.executable.payload()), m.metadata


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(seed=st.integers(0, 10_000))
def test_import_export_import_reproduces_the_program(tmp_path, seed):
    from .helpers import to_onnx

    builder = RandomGraph(seed).build()
    first_path, second_path = tmp_path / f"a{seed}.popef", tmp_path / f"b{seed}.popef"
    first, first_md = _import(to_onnx(builder), first_path)
    exported = popef.export_onnx(first_path)
    second, second_md = _import(exported, second_path)
    assert second == first
    assert second_md.anchors == first_md.anchors
    assert second_md.program_flow == first_md.program_flow


# -- the command -----------------------------------------------------------------------------


def _cli(*args: str):
    from popef.cli import main

    return CliRunner().invoke(main, list(args))


def test_the_command_writes_a_model_onnxruntime_runs(tmp_path):
    path = tmp_path / "mnist.popef"
    mnist_builder().save(path)
    out = tmp_path / "out.onnx"
    result = _cli("export-onnx", str(path), "-o", str(out), "--dynamic-batch")
    assert result.exit_code == 0, result.output
    assert "6 nodes, 1 inputs, 1 outputs, 3 initializers (opset 20)" in result.output
    model = onnx.load(str(out))
    onnx.checker.check_model(model)
    [y] = session(model).run(None, {"input": np.zeros((3, 1, 28, 28), np.float32)})
    assert y.shape == (3, 10)


@pytest.mark.parametrize(
    "args, message",
    [
        (["missing.popef"], "error: 'missing.popef' is not a file"),
        (["{model}", "--executable", "nope"], "error: no model named 'nope'"),
        (["{model}", "--replica", "3"], "error: replica must be an int in [0, 0]"),
        (["{text}"], "error: not a PopEF "),
    ],
)
def test_the_command_reports_errors_in_one_line(tmp_path, monkeypatch, args, message):
    model = tmp_path / "m.popef"
    mnist_builder().save(model)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    monkeypatch.chdir(tmp_path)
    args = [a.format(model=model, text=text) for a in args]
    result = _cli("export-onnx", *args, "-o", str(tmp_path / "x.onnx"))
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), result.output
    assert not (tmp_path / "x.onnx").exists()


def test_export_without_onnx_names_the_extra(tmp_path, monkeypatch):
    path = tmp_path / "m.popef"
    mnist_builder().save(path)
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(
        ExecutionError,
        match=r"needs the onnx package: pip install "
        r"'popef\[onnxruntime\]'",
    ):
        popef.export_onnx(path)
    result = _cli("export-onnx", str(path), "-o", str(tmp_path / "x.onnx"))
    assert result.exit_code == 1 and "pip install 'popef[onnxruntime]'" in result.output


def test_the_command_never_replaces_its_input(tmp_path, monkeypatch):
    model = tmp_path / "m.popef"
    mnist_builder().save(model)
    before = model.read_bytes()
    monkeypatch.chdir(tmp_path)
    for output in ("m.popef", "./m.popef", str(model)):
        result = _cli("export-onnx", "m.popef", "-o", output)
        assert result.exit_code == 1
        assert result.output.strip() == (
            f"error: the output '{output}' is the input 'm.popef': "
            "give another path with -o (the ONNX model would "
            "replace the PopEF file)"
        )
    assert model.read_bytes() == before


def test_the_command_replaces_an_existing_output_atomically(tmp_path):
    model = tmp_path / "m.popef"
    mnist_builder().save(model)
    out = tmp_path / "out.onnx"
    out.write_bytes(b"an older export")
    result = _cli("export-onnx", str(model), "-o", str(out))
    assert result.exit_code == 0, result.output
    onnx.checker.check_model(onnx.load(str(out)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.popef", "out.onnx"]


def test_a_link_is_followed_not_replaced(tmp_path):
    model = tmp_path / "m.popef"
    mnist_builder().save(model)
    (tmp_path / "models").mkdir()
    link = tmp_path / "current.onnx"
    link.symlink_to(tmp_path / "models" / "v1.onnx")
    result = _cli("export-onnx", str(model), "-o", str(link))
    assert result.exit_code == 0, result.output
    assert link.is_symlink()
    onnx.checker.check_model(onnx.load(str(tmp_path / "models" / "v1.onnx")))


def test_a_pipe_is_written_to_not_replaced(tmp_path):
    import os
    import threading

    model = tmp_path / "m.popef"
    mnist_builder().save(model)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []
    # a daemon: should the pipe be replaced, the reader stays blocked and must not hold pytest
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    result = _cli("export-onnx", str(model), "-o", str(fifo))
    reader.join(timeout=60)
    assert result.exit_code == 0, result.output
    assert fifo.is_fifo()
    onnx.checker.check_model(onnx.load_from_string(received[0]))


def test_dash_writes_to_standard_output(tmp_path):
    model = tmp_path / "m.popef"
    mnist_builder().save(model)
    result = _cli("export-onnx", str(model), "-o", "-")
    assert result.exit_code == 0, result.stderr
    assert result.stderr.startswith("wrote standard output: 6 nodes")
    onnx.checker.check_model(onnx.load_from_string(result.stdout_bytes))


@pytest.mark.parametrize(
    "output, message",
    [
        ("{dir}", "Error: Invalid value for '-o' / '--output': File '{dir}' is a directory."),
        (
            "{dir}/missing/x.onnx",
            ("error: cannot write '{dir}/missing/x.onnx': No such file or directory"),
        ),
    ],
)
def test_unwritable_outputs_are_one_line_errors(tmp_path, output, message):
    model = tmp_path / "m.popef"
    mnist_builder().save(model)
    output, message = (s.format(dir=tmp_path) for s in (output, message))
    result = _cli("export-onnx", str(model), "-o", output)
    assert result.exit_code in (1, 2)
    assert result.output.strip().splitlines()[-1] == message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.popef"]


def test_the_library_refuses_a_directory(tmp_path):
    model = tmp_path / "m.popef"
    mnist_builder().save(model)
    with pytest.raises(
        popef.PopefError,
        match=r"cannot write '.*': it is a directory \(give a "
        r"file name, e.g. '.*model.onnx'\)",
    ):
        popef.export_onnx(model, tmp_path)


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty"])
def test_damaged_files_are_one_line_errors(tmp_path, damage):
    model = tmp_path / "m.popef"
    mnist_builder().save(model)
    data = model.read_bytes()
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":
        data = data[:-20] + bytes([data[-20] ^ 0xFF]) + data[-19:]
    else:
        data = b""
    model.write_bytes(data)
    result = _cli("export-onnx", str(model), "-o", str(tmp_path / "x.onnx"))
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "x.onnx").exists()
