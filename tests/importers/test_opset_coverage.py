"""Opsets at the edges of what the importer takes: Resize at opset 10, opsets below 7 for ops
unchanged since, models that import only other domains, ConstantOfShape's tensor value."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper

import popef
from popef.importers.onnx import import_onnx

from .test_hostile_onnx import refused
from .test_onnx_import import EXECUTORS, init, make_model, reference, run, tensor_in


def _resize_10_as_11(mode, scales):
    """Resize-10 in opset 11's terms: asymmetric coordinates and, for nearest, the rounding
    opset 10 used (down when upsampling, up when downsampling)."""
    extra = {}
    if mode == "nearest":
        extra["nearest_mode"] = "ceil" if min(scales) < 1 else "floor"
    return make_model(
        [
            helper.make_node(
                "Resize",
                ["x", "", "scales"],
                ["y"],
                mode=mode,
                coordinate_transformation_mode="asymmetric",
                **extra,
            )
        ],
        [tensor_in("x", [1, 2, 4, 5])],
        [tensor_in("y", None)],
        [init("scales", np.array(scales, np.float32))],
        opset=11,
    )


@pytest.mark.parametrize("mode", ["nearest", "linear"])
@pytest.mark.parametrize("scales", [[1, 1, 2, 3], [1, 1, 0.6, 0.5], [1, 1, 1.5, 2.5]])
def test_resize_opset_10_keeps_its_two_inputs(tmp_path, mode, scales):
    from onnx.reference import ReferenceEvaluator

    model = make_model(
        [helper.make_node("Resize", ["x", "scales"], ["y"], mode=mode)],
        [tensor_in("x", [1, 2, 4, 5])],
        [tensor_in("y", None)],
        [init("scales", np.array(scales, np.float32))],
        opset=10,
    )
    x = np.arange(40, dtype=np.float32).reshape(1, 2, 4, 5) ** 1.5
    [want] = ReferenceEvaluator(_resize_10_as_11(mode, scales)).run(None, {"x": x})
    import_onnx(model, tmp_path / "m.popef")
    for executor in EXECUTORS:
        got = run(tmp_path / "m.popef", {"x": x}, executor)["y"]
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    try:  # onnxruntime runs Resize-10 itself
        np.testing.assert_allclose(got, reference(model, {"x": x})["y"], rtol=1e-5, atol=1e-5)
    except pytest.skip.Exception:
        pass


def test_resize_with_two_inputs_after_opset_10_is_refused(tmp_path):
    model = make_model(
        [helper.make_node("Resize", ["x", "roi"], ["y"])],
        [tensor_in("x", [1, 1, 2, 2])],
        [tensor_in("y", None)],
        [init("roi", np.zeros(0, np.float32))],
        opset=13,
    )
    refused(
        model,
        tmp_path,
        r"at opset 13 Resize takes scales or sizes as input 2 or 3, but "
        r"it has only 2 inputs \(X, roi\)",
    )


@pytest.mark.parametrize("opset", [1, 4, 6])
def test_old_opsets_import_ops_unchanged_since(tmp_path, opset):
    model = make_model(
        [helper.make_node("Not", ["x"], ["a"]), helper.make_node("Not", ["a"], ["y"])],
        [tensor_in("x", [2, 3], TensorProto.BOOL)],
        [tensor_in("y", None)],
        opset=opset,
    )
    x = np.array([[True, False, True], [False, False, True]])
    result = import_onnx(model, tmp_path / "m.popef")
    assert result.opset == opset
    for executor in EXECUTORS:
        np.testing.assert_array_equal(run(tmp_path / "m.popef", {"x": x}, executor)["y"], x)


def test_old_opsets_refuse_ops_that_changed_by_opset_7(tmp_path):
    # Add 6 broadcast only with the 'broadcast' attribute; opset 7 made it numpy-style
    model = make_model(
        [helper.make_node("Add", ["x", "x"], ["y"], name="add")],
        [tensor_in("x", [2])],
        [tensor_in("y", None)],
        opset=6,
    )
    refused(
        model,
        tmp_path,
        "Add node 'add': the model's opset 6 defines Add as of version 6, "
        "which opset 7 changed; the importer takes Add as defined from "
        r"opset 7 on \(convert the model with "
        r"onnx.version_converter.convert_version\(model, 7\)\)",
    )


def test_opsets_newer_than_onnx_are_refused(tmp_path):
    newest = onnx.defs.onnx_opset_version()
    model = make_model(
        [helper.make_node("Relu", ["x"], ["y"])],
        [tensor_in("x", [1])],
        [tensor_in("y", None)],
        opset=newest + 1,
    )
    refused(
        model, tmp_path, f"uses ONNX opset {newest + 1}; the importer takes opsets 1 to {newest}"
    )


def _other_domain_model(default=None, op="Normalizer"):
    graph = helper.make_graph(
        [helper.make_node(op, ["x"], ["y"], name="b", domain="ai.onnx.ml")],
        "g",
        [tensor_in("x", [2])],
        [tensor_in("y", None)],
    )
    opsets = [helper.make_opsetid("ai.onnx.ml", 1)]
    if default is not None:
        opsets.append(helper.make_opsetid(*default))
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    return model


def test_a_model_of_another_domain_only_lists_its_ops_as_unsupported(tmp_path):
    refused(
        _other_domain_model(),
        tmp_path,
        r"uses 1 op type the runtime does not have: ai.onnx.ml.Normalizer ×1 \('b'\)",
    )


def test_an_op_of_another_domain_that_the_runtime_has_imports_as_domain_dot_type(tmp_path):
    import_onnx(_other_domain_model(op="Binarizer"), tmp_path / "m.popef")
    x = np.array([-1, 2], np.float32)
    np.testing.assert_array_equal(run(tmp_path / "m.popef", {"x": x})["y"], [0, 1])


def test_a_default_domain_node_needs_the_default_opset(tmp_path):
    model = _other_domain_model()
    model.graph.node.append(helper.make_node("Relu", ["y"], ["z"], name="r"))
    model.graph.output[0].name = "z"
    refused(
        model,
        tmp_path,
        "Relu node 'r': the model does not say which ONNX opset it uses "
        r"\(no opset_import for the default domain\)",
    )


def test_the_default_domain_may_be_spelled_ai_onnx(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"], domain="ai.onnx")],
        "g",
        [tensor_in("x", [3])],
        [tensor_in("y", None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("ai.onnx", 17)])
    model.ir_version = 8
    result = import_onnx(model, tmp_path / "m.popef")
    assert result.opset == 17
    x = np.array([-1, 0, 2], np.float32)
    np.testing.assert_array_equal(run(tmp_path / "m.popef", {"x": x})["y"], [0, 0, 2])


@pytest.mark.parametrize(
    "value, dtype",
    [
        (None, np.float32),
        (np.array([7], np.int32), np.int32),
        (np.array([1.5], np.float64), np.float64),
    ],
)
def test_constant_of_shape_with_a_constant_shape_is_folded(tmp_path, value, dtype):
    attrs = {} if value is None else {"value": onnx.numpy_helper.from_array(value)}
    model = make_model(
        [helper.make_node("ConstantOfShape", ["shape"], ["y"], **attrs)],
        [],
        [tensor_in("y", None)],
        [init("shape", np.array([2, 3], np.int64))],
    )
    result = import_onnx(model, tmp_path / "m.popef")
    assert result.folded_nodes == 1
    y = run(tmp_path / "m.popef", {})["y"]
    want = np.zeros((2, 3), dtype) if value is None else np.full((2, 3), value[0], dtype)
    assert y.dtype == want.dtype
    np.testing.assert_array_equal(y, want)


def test_constant_of_shape_with_a_shape_known_only_at_run_time_is_refused(tmp_path):
    value = onnx.numpy_helper.from_array(np.array([1], np.int64))
    model = make_model(
        [helper.make_node("ConstantOfShape", ["shape"], ["y"], name="c", value=value)],
        [tensor_in("shape", [2], TensorProto.INT64)],
        [tensor_in("y", None)],
    )
    refused(
        model,
        tmp_path,
        "ConstantOfShape node 'c': attribute 'value' is a tensor, which a "
        "saved graph program cannot hold, so the node must be folded at "
        "import: every input of it must be a constant known at import",
    )
    assert issubclass(popef.ExecutionError, popef.PopefError)
