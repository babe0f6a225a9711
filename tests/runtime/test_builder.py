"""GraphBuilder: what it checks as nodes are added, and the PopEF file that save writes."""

from __future__ import annotations

import io

import numpy as np
import pytest

import popef
from popef import Anchor, DataType, ExecutionError, ProgramFlow, TensorInfo, TensorType
from popef.runtime import GraphBuilder
from popef.runtime.program import DeviceToHost, HostToDevice, Node, decode_program

from .helpers import model_of, save_bytes


def mnist_like(rng: np.random.Generator | None = None) -> GraphBuilder:
    """The MNIST network of examples/mnist (same API use), with random weights."""
    rng = rng or np.random.default_rng(0)

    def w(*shape):
        return (rng.standard_normal(shape) * 0.1).astype(np.float32)

    g = GraphBuilder()
    x = g.add_input("input", DataType.F32, (1, 1, 28, 28))
    h = g.add_node("Sub", [x, g.add_weight("normalise.mean", np.array([0.1307], np.float32))])
    h = g.add_node("Div", [h, g.add_weight("normalise.std", np.array([0.3081], np.float32))])
    for layer, (cin, cout) in (("conv1", (1, 32)), ("conv2", (32, 64))):
        h = g.add_node(
            "Conv",
            [
                h,
                g.add_weight(f"{layer}.weight", w(cout, cin, 3, 3)),
                g.add_weight(f"{layer}.bias", w(cout)),
            ],
            kernel_shape=[3, 3],
        )
        h = g.add_node("MaxPool", [h], kernel_shape=[2, 2], strides=[2, 2])
        h = g.add_node("Relu", [h])
    h = g.add_node("Flatten", [h], axis=1)
    h = g.add_node(
        "Gemm",
        [h, g.add_weight("fc1.weight", w(128, 1600)), g.add_weight("fc1.bias", w(128))],
        transB=1,
    )
    h = g.add_node("Relu", [h])
    h = g.add_node(
        "Gemm",
        [h, g.add_weight("fc2.weight", w(10, 128)), g.add_weight("fc2.bias", w(10))],
        transB=1,
    )
    h = g.add_node("Softmax", [h], axis=-1)
    g.add_output(h, "softmax/Softmax:0")
    return g


def test_mnist_file_has_the_documented_metadata_and_anchors(tmp_path):
    path = tmp_path / "mnist.popef"
    mnist_like().save(path, executable_name="mnist")
    reader = popef.Reader()
    reader.parse_file(path)
    [model] = reader.models()
    md = model.metadata
    assert model.name == "mnist"
    assert md.program_flow == ProgramFlow(load=(0,), main=(5,), save=())
    assert dict(md.programs_map) == {0: "WeightsFromHost", 5: "Program"}
    assert (md.replication_factor, md.device_iterations, md.num_ipus, md.ipu_version) == (
        1,
        1,
        1,
        2,
    )
    assert md.is_inference
    assert model.user_input_anchors() == [
        Anchor(
            "input",
            "h2d_input",
            TensorInfo(DataType.F32, (1, 1, 28, 28)),
            (5,),
            False,
            TensorType.INPUT,
        )
    ]
    assert model.user_output_anchors() == [
        Anchor(
            "softmax/Softmax:0",
            "anchor_d2h_softmax/Softmax:0",
            TensorInfo(DataType.F32, (1, 10)),
            (5,),
            False,
            TensorType.OUTPUT,
        )
    ]
    weights = [a for a in md.anchors if a.name not in ("input", "softmax/Softmax:0")]
    assert [a.name for a in weights] == [
        "normalise.mean",
        "normalise.std",
        "conv1.weight",
        "conv1.bias",
        "conv2.weight",
        "conv2.bias",
        "fc1.weight",
        "fc1.bias",
        "fc2.weight",
        "fc2.bias",
    ]
    for anchor in weights:
        assert anchor.handle == f"h2d_{anchor.name}"
        assert (anchor.type, anchor.programs, anchor.is_per_replica) == (
            TensorType.INPUT,
            (0,),
            False,
        )
        assert model.get_tensor_data(anchor.name).info.tensor_info == anchor.tensor_info
    # PopART's order: anchors without data first
    assert [a.name for a in md.anchors[:2]] == ["input", "softmax/Softmax:0"]
    # blob order: metadata, executable, tensor data
    types = [b.type for b in reader.blobs()]
    assert types[:2] == [popef.BlobType.METADATA, popef.BlobType.POPLAR_EXECUTABLE]
    assert set(types[2:]) == {popef.BlobType.DATA_TENSOR}


def test_the_executable_holds_the_graph_program():
    g = mnist_like()
    model = model_of(save_bytes(g, executable_name="mnist"))
    program = decode_program(model.executable.payload(), name="mnist")
    assert program == g.graph_program()
    load, main = program.programs
    assert (load.index, load.name, main.index, main.name) == (0, "WeightsFromHost", 5, "Program")
    assert all(isinstance(s, HostToDevice) for s in load.steps)
    assert main.steps[0] == HostToDevice("h2d_input", "input")
    assert main.steps[-1] == DeviceToHost("Softmax_0:0", "anchor_d2h_softmax/Softmax:0")
    conv = next(s for s in main.steps if isinstance(s, Node) and s.op_type == "Conv")
    assert conv.attribute_values() == {"kernel_shape": [3, 3]}


def test_replicated_models_have_per_replica_anchors():
    g = mnist_like()
    model = model_of(
        save_bytes(g, replication_factor=4, device_iterations=8, num_ipus=2, ipu_version=21)
    )
    md = model.metadata
    assert (md.replication_factor, md.device_iterations, md.num_ipus, md.ipu_version) == (
        4,
        8,
        2,
        21,
    )
    [x] = model.user_input_anchors()
    [y] = model.user_output_anchors()
    assert (x.tensor_info.shape, x.is_per_replica) == ((4, 1, 1, 28, 28), True)
    assert (y.tensor_info.shape, y.is_per_replica) == ((4, 1, 10), True)
    weight = md.get_anchor("fc1.weight")
    assert (weight.tensor_info.shape, weight.is_per_replica) == ((128, 1600), False)


def test_compressed_executables_and_options():
    g = mnist_like()
    model = model_of(
        save_bytes(
            g, compress=True, engine_options=[("opt", "1")], device_options=[popef.Option("d", "2")]
        )
    )
    assert model.executable.compressed
    assert decode_program(model.executable.payload()) == g.graph_program()
    assert model.metadata.engine_options == (popef.Option("opt", "1"),)
    assert model.metadata.device_options == (popef.Option("d", "2"),)


def test_names_outputs_and_attribute_types():
    g = GraphBuilder()
    x = g.add_input("x", "F32", [2, 4])
    assert x == "x"
    y = g.add_node("LeakyRelu", [x], alpha=1)  # an int for a float attribute
    node = g.graph_program().get_program(5).steps[-1]
    assert node.attributes[0].kind.name == "FLOAT" and node.attributes[0].value == 1.0
    assert y == "LeakyRelu_0:0"
    z = g.add_node(
        "Gemm", [y, g.add_weight("w", np.ones((4, 3), np.float32)), None], name="fc", alpha=None
    )
    assert z == "fc:0" and g.spec(z).shape == (2, 3)
    outputs = g.add_node("Dropout", [z], num_outputs=2)
    assert outputs == ("Dropout_0:0", "Dropout_0:1")
    assert g.add_output(outputs[0], "out") == "out"
    g.add_input("i8", np.int8, [3])
    g.add_input("u16", DataType.U16, ())
    assert g.spec("i8").dtype == np.int8 and g.spec("u16").shape == ()


@pytest.mark.parametrize(
    "build, message",
    [
        (
            lambda g, x: g.add_node("Frobnicate", [x], name="f1"),
            r"unknown op 'Frobnicate' \(node 'f1'\)",
        ),
        (
            lambda g, x: g.add_node("Relu", [x], name="r1", colour=3),
            r"Relu node 'r1': unknown attribute 'colour'",
        ),
        (
            lambda g, x: g.add_node("Conv", [x, "nope"], name="c1"),
            r"Conv node 'c1': input 1 'nope' is not defined",
        ),
        (
            lambda g, x: g.add_node(
                "Gemm", [x, g.add_weight("w", np.ones((3, 3), np.float32))], name="fc"
            ),
            r"Gemm node 'fc'",
        ),
        (lambda g, x: g.add_node("Concat", [x], name="cat"), r"Concat node 'cat': .*axis"),
        (lambda g, x: g.add_node("Relu", x), r"inputs must be a list"),
        (
            lambda g, x: (g.add_node("Relu", [x], name="a"), g.add_node("Relu", [x], name="a")),
            r"node 'a' already exists",
        ),
        (lambda g, x: g.add_input("x", DataType.F32, [1]), r"tensor 'x' is already defined"),
        (lambda g, x: g.add_input("y", "complex", [1]), r"not a data type"),
        (lambda g, x: g.add_input("y", DataType.F32, [-1]), r"input 'y'"),
        (lambda g, x: g.add_weight("o", np.array(["a"])), r"weight 'o' has dtype <U1"),
        (lambda g, x: g.add_output("nope", "out"), r"tensor 'nope' is not defined"),
        (lambda g, x: (g.add_output(x, "o"), g.add_output(x, "o")), r"'o' already names an anchor"),
        (lambda g, x: g.add_output(x, "x"), r"'x' already names an anchor"),
    ],
)
def test_mistakes_are_reported_when_made(build, message):
    g = GraphBuilder()
    x = g.add_input("x", DataType.F32, (2, 5))
    with pytest.raises(ExecutionError, match=message):
        build(g, x)


def test_bad_save_parameters():
    g = mnist_like()
    with pytest.raises(ExecutionError, match="replication_factor must be an integer >= 1"):
        g.save(io.BytesIO(), replication_factor=0)
    with pytest.raises(ExecutionError, match="executable_name must be a non-empty str"):
        g.save(io.BytesIO(), executable_name="")


def test_save_is_atomic_on_error(tmp_path):
    path = tmp_path / "m.popef"
    path.write_bytes(b"old")
    g = mnist_like()
    with pytest.raises(ExecutionError):
        g.save(path, device_iterations=-1)
    assert path.read_bytes() == b"old"
