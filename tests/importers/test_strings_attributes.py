"""STRINGS attributes through the importer: the recurrent ops' ``activations``, run on both
executors and compared with onnxruntime, and exported back to ONNX."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import helper

from popef.importers.onnx import convert, import_onnx
from popef.runtime.program import AttributeKind

from .test_hostile_onnx import refused
from .test_onnx_import import EXECUTORS, init, make_model, reference, run, tensor_in

HIDDEN, INPUT, SEQ, BATCH = 3, 2, 4, 2
GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}


def recurrent_model(op_type, activations, alpha=None, beta=None, direction="forward"):
    rng = np.random.default_rng(len(activations))
    dirs = 2 if direction == "bidirectional" else 1
    g = GATES[op_type]
    w = rng.standard_normal((dirs, g * HIDDEN, INPUT)).astype(np.float32)
    r = rng.standard_normal((dirs, g * HIDDEN, HIDDEN)).astype(np.float32)
    attrs = {"hidden_size": HIDDEN, "activations": activations, "direction": direction}
    if alpha is not None:
        attrs["activation_alpha"] = alpha
    if beta is not None:
        attrs["activation_beta"] = beta
    node = helper.make_node(op_type, ["x", "w", "r"], ["y", "y_h"], name="rec", **attrs)
    return make_model(
        [node],
        [tensor_in("x", [SEQ, BATCH, INPUT])],
        [tensor_in("y", None), tensor_in("y_h", None)],
        [init("w", w), init("r", r)],
    )


def _activations(model):
    [attribute] = [a for a in model.graph.node[0].attribute if a.name == "activations"]
    return attribute


CASES = [
    ("RNN", ["Relu"], None, None, "forward"),
    ("RNN", ["LeakyRelu", "Softsign"], [0.2], None, "bidirectional"),
    ("RNN", ["Affine"], [0.5], [0.25], "forward"),
    ("RNN", ["ScaledTanh"], [1.5], [0.5], "reverse"),
    ("RNN", ["Elu"], None, None, "forward"),
    ("RNN", ["Softplus"], None, None, "forward"),
    ("GRU", ["HardSigmoid", "Tanh"], [0.3], [0.4], "forward"),
    ("GRU", ["Sigmoid", "ThresholdedRelu"], [0.1], None, "forward"),
    ("LSTM", ["HardSigmoid", "Tanh", "Relu"], None, None, "forward"),
    (
        "LSTM",
        ["Sigmoid", "Tanh", "Tanh", "HardSigmoid", "Elu", "Softsign"],
        [0.3, 0.7],
        [0.4],
        "bidirectional",
    ),
]


@pytest.mark.parametrize("op_type, activations, alpha, beta, direction", CASES)
def test_recurrent_activations_match_onnxruntime(
    tmp_path, op_type, activations, alpha, beta, direction
):
    model = recurrent_model(op_type, activations, alpha, beta, direction)
    x = np.random.default_rng(5).standard_normal((SEQ, BATCH, INPUT)).astype(np.float32)
    want = reference(model, {"x": x})
    import_onnx(model, tmp_path / "m.popef")
    for executor in EXECUTORS:
        got = run(tmp_path / "m.popef", {"x": x}, executor)
        for name in ("y", "y_h"):
            np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-5)


def test_activations_are_stored_as_a_strings_attribute():
    graph = convert(recurrent_model("GRU", ["HardSigmoid", "Tanh"], [0.3], [0.4]))
    [node] = graph.nodes
    attribute = node.get_attribute("activations")
    assert attribute.kind is AttributeKind.STRINGS
    assert attribute.value == ("HardSigmoid", "Tanh")


def test_an_activation_the_runtime_lacks_is_refused(tmp_path):
    model = recurrent_model("RNN", ["Relu"])
    _activations(model).strings[0] = b"Gelu"
    refused(model, tmp_path, "RNN node 'rec': activation 'Gelu' is not supported")


def test_activations_of_the_wrong_count_are_refused(tmp_path):
    refused(
        recurrent_model("GRU", ["Sigmoid"]),
        tmp_path,
        r"attribute 'activations' must name 2 functions \(2 per direction\), got 1",
    )


def test_activations_that_are_not_utf8_are_refused(tmp_path):
    model = recurrent_model("RNN", ["Relu"])
    _activations(model).strings[0] = b"\xff"
    refused(model, tmp_path, "attribute 'activations' holds an item that is not UTF-8 text")


def test_strings_attributes_export_back_to_onnx(tmp_path):
    from popef.runtime.to_onnx import export_onnx

    model = recurrent_model("LSTM", ["HardSigmoid", "Tanh", "Relu"], [0.3])
    import_onnx(model, tmp_path / "m.popef")
    exported = export_onnx(tmp_path / "m.popef")
    [node] = [n for n in exported.graph.node if n.op_type == "LSTM"]
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    assert attrs["activations"] == [b"HardSigmoid", b"Tanh", b"Relu"]
    x = np.random.default_rng(2).standard_normal((SEQ, BATCH, INPUT)).astype(np.float32)
    np.testing.assert_allclose(
        reference(exported, {"x": x})["y"], reference(model, {"x": x})["y"], rtol=1e-5, atol=1e-6
    )
