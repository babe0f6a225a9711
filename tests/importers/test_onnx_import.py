"""popef.import_onnx: ONNX models into PopEF files that run and agree with onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper

import popef
from popef.importers.onnx import convert, import_onnx, parse_input_shape
from popef.runtime import ModelRunner
from popef.runtime.ops import OPS

EXECUTORS = ("cpu", "ipu-model")


def make_model(nodes, inputs, outputs, initializers=(), opset=17):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def tensor_in(name, shape, elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, shape)


def init(name, array):
    return numpy_helper.from_array(np.asarray(array), name)


def run(path, inputs, executor="cpu"):
    with ModelRunner(path, executor) as runner:
        return runner.execute(inputs)


def reference(model, inputs):
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in model.graph.output], session.run(None, inputs)))


def gemm_model():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((3, 4)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    return make_model(
        [
            helper.make_node("Gemm", ["x", "w", "b"], ["h"], transB=1),
            helper.make_node("Relu", ["h"], ["y"]),
        ],
        [tensor_in("x", [2, 4])],
        [tensor_in("y", None)],
        [init("w", w), init("b", b)],
    )


# ---- the layout PopART writes


def test_anchors_handles_and_programs(tmp_path):
    path = tmp_path / "m.popef"
    result = import_onnx(gemm_model(), path)
    md = result.metadata
    anchors = {a.name: a for a in md.anchors}
    assert anchors["x"].handle == "h2d_x" and anchors["x"].programs == (5,)
    assert anchors["y"].handle == "anchor_d2h_y" and anchors["y"].type is popef.TensorType.OUTPUT
    assert anchors["w"].handle == "h2d_w" and anchors["w"].programs == (0,)
    assert md.program_flow.load == (0,) and md.program_flow.main == (5,)
    assert md.programs_map == {0: "WeightsFromHost", 5: "Program"}
    with popef.Reader() as reader:
        reader.parse_file(path)
        assert sorted(t.name for t in reader.tensors()) == ["b", "w"]
    assert md.executable == "g"


@pytest.mark.parametrize("executor", EXECUTORS)
def test_single_node_models_match_onnxruntime(tmp_path, executor):
    model = gemm_model()
    x = np.random.default_rng(1).standard_normal((2, 4)).astype(np.float32)
    import_onnx(model, tmp_path / "m.popef")
    got = run(tmp_path / "m.popef", {"x": x}, executor)
    np.testing.assert_allclose(got["y"], reference(model, {"x": x})["y"], rtol=1e-5, atol=1e-6)


def test_path_input_and_default_name(tmp_path):
    onnx.save(gemm_model(), tmp_path / "gemm.onnx")
    result = import_onnx(str(tmp_path / "gemm.onnx"), tmp_path / "m.popef", compress=True)
    assert result.metadata.executable == "gemm"
    assert (
        import_onnx(gemm_model(), tmp_path / "n.popef", executable_name="net").metadata.executable
        == "net"
    )


# ---- folding


def shape_logic_model():
    """Reshape to [batch, -1] with the batch read by Shape → Gather → Unsqueeze → Concat."""
    return make_model(
        [
            helper.make_node("Shape", ["x"], ["s"]),
            helper.make_node("Gather", ["s", "zero"], ["b"], axis=0),
            helper.make_node("Unsqueeze", ["b", "axes"], ["bu"]),
            helper.make_node("Concat", ["bu", "minus1"], ["shape"], axis=0),
            helper.make_node("Relu", ["x"], ["r"]),
            helper.make_node("Reshape", ["r", "shape"], ["y"]),
        ],
        [tensor_in("x", ["batch", 2, 3])],
        [tensor_in("y", None)],
        [
            init("zero", np.array(0, np.int64)),
            init("axes", np.array([0], np.int64)),
            init("minus1", np.array([-1], np.int64)),
        ],
    )


@pytest.mark.parametrize("executor", EXECUTORS)
def test_shape_arithmetic_is_folded(tmp_path, executor):
    model = shape_logic_model()
    result = import_onnx(model, tmp_path / "m.popef", batch_size=4)
    graph = convert(model, batch_size=4)
    assert [n.op_type for n in graph.nodes] == ["Relu", "Reshape"]
    assert result.folded_nodes == 4 and result.kept_nodes == 2
    assert list(graph.weights) == ["shape"]
    np.testing.assert_array_equal(graph.weights["shape"], [4, -1])
    x = np.random.default_rng(2).standard_normal((4, 2, 3)).astype(np.float32)
    got = run(tmp_path / "m.popef", {"x": x}, executor)
    np.testing.assert_array_equal(got["y"], np.maximum(x, 0).reshape(4, 6))


def test_if_with_a_known_condition_is_inlined(tmp_path):
    then = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["t"])], "then", [], [tensor_in("t", None)]
    )
    other = helper.make_graph(
        [helper.make_node("Sigmoid", ["x"], ["e"])], "else", [], [tensor_in("e", None)]
    )
    model = make_model(
        [helper.make_node("If", ["cond"], ["y"], then_branch=then, else_branch=other)],
        [tensor_in("x", [2])],
        [tensor_in("y", None)],
        [init("cond", np.array(True))],
    )
    graph = convert(model)
    assert [n.op_type for n in graph.nodes] == ["Relu"]
    import_onnx(model, tmp_path / "m.popef")
    x = np.array([-1.0, 2.0], np.float32)
    np.testing.assert_array_equal(run(tmp_path / "m.popef", {"x": x})["y"], [0.0, 2.0])


def test_constant_output_is_stored(tmp_path):
    model = make_model(
        [
            helper.make_node("Constant", [], ["c"], value_floats=[1.0, 2.0]),
            helper.make_node("Relu", ["x"], ["y"]),
        ],
        [tensor_in("x", [2])],
        [tensor_in("y", None), tensor_in("c", None)],
    )
    import_onnx(model, tmp_path / "m.popef")
    got = run(tmp_path / "m.popef", {"x": np.zeros(2, np.float32)})
    np.testing.assert_array_equal(got["c"], [1.0, 2.0])


# ---- opsets: attributes that became inputs


def test_clip_opset_7_attributes_become_inputs(tmp_path):
    model = make_model(
        [helper.make_node("Clip", ["x"], ["y"], min=-0.5, max=0.5)],
        [tensor_in("x", [4])],
        [tensor_in("y", None)],
        opset=7,
    )
    import_onnx(model, tmp_path / "m.popef")
    x = np.array([-2, -0.25, 0.25, 2], np.float32)
    np.testing.assert_array_equal(
        run(tmp_path / "m.popef", {"x": x})["y"], [-0.5, -0.25, 0.25, 0.5]
    )


@pytest.mark.parametrize("opset", [11, 13])
def test_squeeze_unsqueeze_axes_in_both_forms(tmp_path, opset):
    if "Squeeze" not in OPS or "Unsqueeze" not in OPS:
        pytest.skip("the runtime has no Squeeze/Unsqueeze yet")
    if opset < 13:
        nodes = [
            helper.make_node("Relu", ["x"], ["r"]),
            helper.make_node("Unsqueeze", ["r"], ["u"], axes=[0]),
            helper.make_node("Squeeze", ["u"], ["y"], axes=[0, 2]),
        ]
        inits = []
    else:
        nodes = [
            helper.make_node("Relu", ["x"], ["r"]),
            helper.make_node("Unsqueeze", ["r", "a0"], ["u"]),
            helper.make_node("Squeeze", ["u", "a02"], ["y"]),
        ]
        inits = [init("a0", np.array([0], np.int64)), init("a02", np.array([0, 2], np.int64))]
    model = make_model(nodes, [tensor_in("x", [3, 1, 2])], [tensor_in("y", None)], inits, opset)
    import_onnx(model, tmp_path / "m.popef")
    x = np.arange(6, dtype=np.float32).reshape(3, 1, 2)
    assert run(tmp_path / "m.popef", {"x": x})["y"].shape == (3, 2)


# ---- shapes


def test_symbolic_dimension_needs_a_value():
    with pytest.raises(
        popef.ExecutionError,
        match=r"input 'x' has an unknown dimension 0 "
        r"\('batch'\)",
    ):
        convert(shape_logic_model())


def test_input_shapes_and_shared_symbols():
    model = make_model(
        [helper.make_node("Add", ["a", "b"], ["y"])],
        [tensor_in("a", ["n", "seq"]), tensor_in("b", ["n", "seq"])],
        [tensor_in("y", None)],
    )
    graph = convert(model, input_shapes={"a": (2, 5)})
    assert graph.inputs["b"].shape == (2, 5)
    assert graph.outputs["y"][1].shape == (2, 5)
    with pytest.raises(popef.ExecutionError, match="not an input of the model"):
        convert(model, input_shapes={"nope": (1,)})
    with pytest.raises(popef.ExecutionError, match="unknown dimension 1 \\('seq'\\)"):
        convert(model, batch_size=3)


def test_fixed_dimension_cannot_be_overridden():
    with pytest.raises(popef.ExecutionError, match="dimension 1 fixed to 4 by the model, but 5"):
        convert(gemm_model(), input_shapes={"x": (2, 5)})


def test_parse_input_shape():
    assert parse_input_shape("input=1,3,224,224") == ("input", (1, 3, 224, 224))
    assert parse_input_shape("a=b=2") == ("a=b", (2,))
    with pytest.raises(popef.ExecutionError, match="NAME=D1,D2"):
        parse_input_shape("1,2")


# ---- external data and large models


def test_external_data_file(tmp_path):
    model = gemm_model()
    onnx.save(
        model,
        tmp_path / "m.onnx",
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="m.onnx.data",
        size_threshold=0,
    )
    assert (tmp_path / "m.onnx.data").exists()
    import_onnx(str(tmp_path / "m.onnx"), tmp_path / "m.popef")
    x = np.ones((2, 4), np.float32)
    np.testing.assert_allclose(
        run(tmp_path / "m.popef", {"x": x})["y"], reference(gemm_model(), {"x": x})["y"], rtol=1e-6
    )
