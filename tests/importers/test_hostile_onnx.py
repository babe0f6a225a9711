"""Hostile and unsupported ONNX input: one clear PopefError, and no output file left behind."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper

import popef
from popef.cli import main
from popef.importers.onnx import import_onnx

from .test_onnx_import import gemm_model, init, make_model, tensor_in


def refused(model, tmp_path, match, **kwargs):
    out = tmp_path / "out.popef"
    with pytest.raises(popef.PopefError, match=match):
        import_onnx(model, out, **kwargs)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [p for p in tmp_path.iterdir() if p.name != "out.popef"]


def test_corrupt_and_truncated_files(tmp_path):
    data = gemm_model().SerializeToString()
    (tmp_path / "trunc.onnx").write_bytes(data[: len(data) // 2])
    refused(str(tmp_path / "trunc.onnx"), tmp_path, "not a valid ONNX model")
    (tmp_path / "junk.onnx").write_bytes(b"\xff" * 100)
    refused(str(tmp_path / "junk.onnx"), tmp_path, "not a valid ONNX model")
    (tmp_path / "empty.onnx").write_bytes(b"")
    refused(str(tmp_path / "empty.onnx"), tmp_path, "is empty")
    refused(str(tmp_path / "missing.onnx"), tmp_path, "cannot read")
    refused(12, tmp_path, "must be a path, bytes or an onnx.ModelProto")


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_mutated_models_raise_only_popef_errors(tmp_path, data):
    raw = bytearray(gemm_model().SerializeToString())
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(1, len(raw)))
    out = tmp_path / "m.popef"
    try:
        import_onnx(bytes(raw[:cut]), out)
    except popef.PopefError:
        assert not out.exists()
    else:
        out.unlink()


def test_unsupported_ops_listed_once_with_counts(tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["a"])]
    nodes += [
        helper.make_node("NoSuchOp", ["a" if i == 0 else f"n{i - 1}"], [f"n{i}"], name=f"odd{i}")
        for i in range(5)
    ]
    nodes += [helper.make_node("Custom", ["n4"], ["y"], domain="com.example", name="c")]
    model = make_model(nodes, [tensor_in("x", [2])], [tensor_in("y", None)])
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    refused(
        model,
        tmp_path,
        r"2 op types the runtime does not have: NoSuchOp ×5 \('odd0', "
        r"'odd1', 'odd2', \.\.\.\); com\.example\.Custom ×1 \('c'\)",
    )


def test_unsupported_dtypes(tmp_path):
    model = make_model(
        [helper.make_node("Identity", ["x"], ["y"])],
        [tensor_in("x", [2], TensorProto.STRING)],
        [tensor_in("y", None)],
    )
    refused(model, tmp_path, "input 'x' has dtype STRING, which PopEF cannot hold")
    weight = helper.make_tensor("w", TensorProto.BFLOAT16, [1], [1.0])
    model = make_model(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        [tensor_in("x", [1])],
        [tensor_in("y", None)],
        [weight],
    )
    refused(model, tmp_path, "initializer 'w' has dtype BFLOAT16")


def test_loop_and_dynamic_if_are_refused(tmp_path):
    body = helper.make_graph([], "body", [], [])
    model = make_model(
        [helper.make_node("Loop", ["", "c"], [], body=body, name="loop")],
        [tensor_in("x", [1])],
        [tensor_in("x", None)],
        [init("c", np.array(True))],
    )
    refused(model, tmp_path, "Loop node 'loop': Loop is not supported")
    branch = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["t"])], "b", [], [tensor_in("t", None)]
    )
    model = make_model(
        [helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=branch, name="if")],
        [tensor_in("x", [1]), tensor_in("c", [], TensorProto.BOOL)],
        [tensor_in("y", None)],
    )
    refused(model, tmp_path, "If node 'if': its condition 'c' is computed at run time")


def test_huge_folded_constant_is_refused_before_allocation(tmp_path):
    model = make_model(
        [
            helper.make_node("ConstantOfShape", ["s"], ["c"]),
            helper.make_node("Add", ["x", "c"], ["y"]),
        ],
        [tensor_in("x", [1])],
        [tensor_in("y", None)],
        [init("s", np.array([1 << 30, 1 << 30], np.int64))],
    )
    refused(model, tmp_path, "more than the 4294967296 bytes folding may produce")


def test_external_data_outside_the_folder(tmp_path):
    model = gemm_model()
    w = model.graph.initializer[0]
    w.ClearField("raw_data")
    w.ClearField("float_data")
    w.data_location = TensorProto.EXTERNAL
    w.external_data.add(key="location", value="../secret.bin")
    (tmp_path / "m.onnx").write_bytes(model.SerializeToString())
    refused(str(tmp_path / "m.onnx"), tmp_path, "must be a relative path inside")
    w.external_data[0].value = "short.bin"
    (tmp_path / "short.bin").write_bytes(b"\0" * 8)
    (tmp_path / "m.onnx").write_bytes(model.SerializeToString())
    refused(str(tmp_path / "m.onnx"), tmp_path, "external data needs bytes 0x0..0x30")


def test_opset_out_of_range(tmp_path):
    refused(
        make_model(
            [helper.make_node("Relu", ["x"], ["y"])],
            [tensor_in("x", [1])],
            [tensor_in("y", None)],
            opset=0,
        ),
        tmp_path,
        "uses ONNX opset 0",
    )


def test_graph_not_sorted(tmp_path):
    model = make_model(
        [helper.make_node("Relu", ["a"], ["y"]), helper.make_node("Relu", ["x"], ["a"])],
        [tensor_in("x", [1])],
        [tensor_in("y", None)],
    )
    refused(model, tmp_path, "input 0 'a' is not defined before it")


# ---- the command


def test_cli_import_prints_user_anchors(tmp_path):
    onnx.save(gemm_model(), tmp_path / "m.onnx")
    result = CliRunner().invoke(
        main, ["import", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "m.popef")]
    )
    assert result.exit_code == 0, result.output
    assert 'Name: "x":' in result.output and "Handle: anchor_d2h_y" in result.output
    assert "imported 2 nodes (opset 17): 2 kept, 0 folded at import" in result.output


def test_cli_errors_are_one_line(tmp_path):
    (tmp_path / "bad.onnx").write_bytes(b"junk")
    result = CliRunner().invoke(
        main, ["import", str(tmp_path / "bad.onnx"), "-o", str(tmp_path / "m.popef")]
    )
    assert result.exit_code == 1
    assert result.output.startswith("error: ") and result.output.count("\n") == 1
    assert not (tmp_path / "m.popef").exists()
    onnx.save(
        make_model(
            [helper.make_node("Relu", ["x"], ["y"])],
            [tensor_in("x", ["n"])],
            [tensor_in("y", None)],
        ),
        tmp_path / "s.onnx",
    )
    result = CliRunner().invoke(
        main,
        ["import", str(tmp_path / "s.onnx"), "-o", str(tmp_path / "m.popef"), "--input-shape", "x"],
    )
    assert result.exit_code == 1 and "NAME=D1,D2" in result.output
    result = CliRunner().invoke(
        main,
        ["import", str(tmp_path / "s.onnx"), "-o", str(tmp_path / "m.popef"), "--batch-size", "3"],
    )
    assert result.exit_code == 0 and "shape [3]" in result.output
