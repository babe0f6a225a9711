"""The op registry, attributes, error messages, empty batches, tensor specs."""

from __future__ import annotations

import numpy as np
import pytest

from popef.errors import ExecutionError, PopefError
from popef.runtime import ops as ops_pkg
from popef.runtime.ops import (
    OPS,
    REQUIRED,
    Attr,
    Op,
    TensorSpec,
    _kernels,
    create_op,
    get_op_class,
    register,
)

from .common import EXPECTED_OPS, run_op

# --------------------------------------------------------------------------------------------
# registry, attributes and error messages


def test_registry_and_exports() -> None:
    assert set(OPS) >= EXPECTED_OPS
    for name, cls in OPS.items():
        assert cls.op_type == name and issubclass(cls, Op)
        assert get_op_class(name) is cls
        lo, hi = cls.num_inputs
        assert 0 <= lo <= hi and (lo > 0 or name == "Constant")
        for attr in cls.attributes.values():
            assert isinstance(attr, Attr)
    assert set(ops_pkg.__all__) == {
        "Op",
        "Attr",
        "TensorSpec",
        "REQUIRED",
        "OPS",
        "register",
        "get_op_class",
        "create_op",
    }
    assert Attr("int").default is REQUIRED and Attr("int").required
    assert not Attr("int", 0).required


def test_unknown_op_lists_supported_ops() -> None:
    with pytest.raises(ExecutionError) as info:
        get_op_class("Foo", "n")
    msg = str(info.value)
    assert msg.startswith("unknown op 'Foo' (node 'n'); supported ops: ")
    assert msg.endswith(", ".join(sorted(OPS)))
    with pytest.raises(ExecutionError, match=r"^unknown op 'Foo'; supported ops: [A-Z]"):
        get_op_class("Foo")
    with pytest.raises(ExecutionError, match=r"unknown op 'conv' \(node 'c1'\)"):
        create_op("conv", "c1", {})


def test_register_rejects_duplicates_and_non_ops() -> None:
    class Again(Op):
        op_type = "Add"

    with pytest.raises(ExecutionError, match="'Add' is already registered"):
        register(Again)
    assert OPS["Add"] is not Again
    with pytest.raises(ExecutionError, match="only Op subclasses"):
        register(int)  # type: ignore[arg-type]

    class Nameless(Op):
        pass

    with pytest.raises(ExecutionError, match="non-empty op_type"):
        register(Nameless)

    class TestOnlyDouble(Op):
        op_type = "TestOnlyDouble"

        def _infer(self, inputs):
            return [inputs[0]]

        def run(self, inputs):
            return [inputs[0] * 2]

    try:
        assert register(TestOnlyDouble) is TestOnlyDouble
        (y,) = create_op("TestOnlyDouble", "d").run([np.ones(2)])
        np.testing.assert_array_equal(y, [2.0, 2.0])
        with pytest.raises(ExecutionError, match="already registered"):
            register(TestOnlyDouble)
    finally:
        OPS.pop("TestOnlyDouble", None)


@pytest.mark.parametrize(
    "op_type, attrs, message",
    [
        ("Conv", {"strides": "x"}, "Conv node 'n': attribute 'strides' must be ints, got 'x'"),
        ("Conv", {"group": 1.5}, "Conv node 'n': attribute 'group' must be int, got 1.5"),
        (
            "Conv",
            {"pads": [1, 1.5, 1, 1]},
            "Conv node 'n': attribute 'pads' must be ints, got [1, 1.5, 1, 1]",
        ),
        ("Conv", {"auto_pad": 3}, "Conv node 'n': attribute 'auto_pad' must be string, got 3"),
        (
            "LeakyRelu",
            {"alpha": "big"},
            "LeakyRelu node 'n': attribute 'alpha' must be float, got 'big'",
        ),
        (
            "LeakyRelu",
            {"alpha": True},
            "LeakyRelu node 'n': attribute 'alpha' must be float, got True",
        ),
        ("Transpose", {"perm": 3}, "Transpose node 'n': attribute 'perm' must be ints, got 3"),
        (
            "Gelu",
            {"approximate": 1},
            "Gelu node 'n': attribute 'approximate' must be string, got 1",
        ),
        ("Softmax", {"axis": [1]}, "Softmax node 'n': attribute 'axis' must be int, got [1]"),
    ],
)
def test_attribute_kind_errors(op_type, attrs, message) -> None:
    with pytest.raises(ExecutionError) as info:
        create_op(op_type, "n", attrs)
    assert str(info.value) == message


@pytest.mark.parametrize(
    "op_type, attrs, pattern",
    [
        (
            "Conv",
            {"strides": [1, -1]},
            r"Conv node 'n': attribute 'strides' must be positive, got \[1, -1\]",
        ),
        ("Conv", {"dilations": [0, 1]}, r"attribute 'dilations' must be positive"),
        ("Conv", {"pads": [1, 1, 1]}, r"attribute 'pads' must have 2 values per spatial dim"),
        ("Conv", {"pads": [-1, 0, 0, 0]}, r"attribute 'pads' must be non-negative"),
        (
            "Conv",
            {"strides": [1, 1], "dilations": [1, 1, 1]},
            r"attributes disagree on the number of spatial dims",
        ),
        ("Conv", {"group": 0}, r"Conv node 'n': attribute 'group' must be positive, got 0"),
        (
            "Conv",
            {"auto_pad": "SAME"},
            r"attribute 'auto_pad' must be one of NOTSET, VALID, SAME_UPPER, SAME_LOWER",
        ),
        (
            "Conv",
            {"bogus": 1},
            r"Conv node 'n': unknown attribute 'bogus' \(accepted attributes: auto_pad, dilations",
        ),
        (
            "Relu",
            {"alpha": 1.0},
            r"Relu node 'n': unknown attribute 'alpha' \(accepted attributes: none\)",
        ),
        ("Cast", {}, r"Cast node 'n': attribute 'to' is required"),
        ("Cast", {"to": 99}, r"Cast node 'n': attribute 'to' is not an ONNX data type: 99"),
        ("Cast", {"to": 8}, r"Cast node 'n': casting to STRING \(to=8\) is not supported"),
        ("Cast", {"to": 16}, r"casting to BFLOAT16 \(to=16\) is not supported"),
        ("MaxPool", {}, r"MaxPool node 'n': attribute 'kernel_shape' is required"),
        (
            "MaxPool",
            {"kernel_shape": [2, 2], "pads": [2, 0, 0, 0]},
            r"'pads' \[2, 0, 0, 0\] must be smaller than kernel_shape",
        ),
        (
            "MaxPool",
            {"kernel_shape": [2, 2], "storage_order": 2},
            r"'storage_order' must be 0 or 1",
        ),
        ("AveragePool", {"kernel_shape": [2], "ceil_mode": 3}, r"'ceil_mode' must be 0 or 1"),
        ("Concat", {}, r"Concat node 'n': attribute 'axis' is required"),
        (
            "Gelu",
            {"approximate": "fast"},
            r"attribute 'approximate' must be 'none' or 'tanh', got 'fast'",
        ),
        ("Gemm", {"transA": 2}, r"Gemm node 'n': attribute 'transA' must be 0 or 1, got 2"),
        ("ArgMax", {"keepdims": 5}, r"'keepdims' must be 0 or 1"),
        ("BatchNormalization", {"training_mode": 1}, r"training_mode=1 is not supported"),
        ("BatchNormalization", {"epsilon": -1.0}, r"'epsilon' must be a non-negative number"),
        ("Reshape", {"allowzero": 2}, r"'allowzero' must be 0 or 1"),
        ("LeakyRelu", {"alpha": float("nan")}, r"'alpha' must be finite"),
    ],
)
def test_attribute_value_errors(op_type, attrs, pattern) -> None:
    with pytest.raises(ExecutionError, match=pattern):
        create_op(op_type, "n", attrs)


def test_attribute_resolution_and_conversion() -> None:
    op = create_op(
        "Conv", "c", {"strides": np.array([2, 1]), "pads": (1, 1, 1, 1), "auto_pad": b"NOTSET"}
    )
    assert op.attrs == {
        "auto_pad": "NOTSET",
        "dilations": None,
        "group": 1,
        "kernel_shape": None,
        "pads": (1, 1, 1, 1),
        "strides": (2, 1),
    }
    assert create_op("LeakyRelu", "l").attrs == {"alpha": 0.01}
    assert create_op("LeakyRelu", "l", {"alpha": 1}).attrs["alpha"] == 1.0  # int accepted as float
    assert create_op("ArgMax", "a", {"keepdims": np.int64(0)}).attrs["keepdims"] == 0
    assert create_op("Softmax", "s", {"axis": None}).attrs == {"axis": -1}  # None means absent
    with pytest.raises(ExecutionError, match="attributes must be a mapping"):
        create_op("Relu", "r", [("a", 1)])  # type: ignore[arg-type]


def test_num_outputs_checked() -> None:
    with pytest.raises(ExecutionError, match=r"Conv node 'c': takes 1 output\(s\), got 2"):
        create_op("Conv", "c", {}, num_outputs=2)
    with pytest.raises(ExecutionError, match=r"Dropout node 'd': takes 1 to 2 output\(s\), got 3"):
        create_op("Dropout", "d", {}, num_outputs=3)
    assert create_op("MaxPool", "m", {"kernel_shape": [2]}, num_outputs=2).output_count == 2


def test_num_inputs_checked() -> None:
    f32 = TensorSpec((2, 2), np.float32)
    with pytest.raises(ExecutionError, match=r"Add node 'a': takes 2 input\(s\), got 1"):
        create_op("Add", "a").infer([f32])
    with pytest.raises(ExecutionError, match=r"Conv node 'c': takes 2 to 3 input\(s\), got 4"):
        create_op("Conv", "c").infer([f32] * 4)
    with pytest.raises(
        ExecutionError, match=r"Concat node 'k': takes at least 1 input\(s\), got 0"
    ):
        create_op("Concat", "k", {"axis": 0}).infer([])
    with pytest.raises(
        ExecutionError, match=r"Gemm node 'g': input 1 is required but was not given"
    ):
        create_op("Gemm", "g").infer([f32, None])
    with pytest.raises(ExecutionError, match=r"input 0 must be a TensorSpec"):
        create_op("Relu", "r").infer([np.zeros(2)])


@pytest.mark.parametrize(
    "op_type, attrs, specs, pattern",
    [
        (
            "MatMul",
            {},
            [((1, 1600), "f4"), ((1500, 128), "f4")],
            r"^MatMul node 'n': cannot multiply \[1, 1600\] by \[1500, 128\]$",
        ),
        (
            "MatMul",
            {},
            [((2, 3, 4), "f4"), ((5, 4, 2), "f4")],
            r"cannot multiply \[2, 3, 4\] by \[5, 4, 2\]",
        ),
        ("MatMul", {}, [((3,), "f4"), ((4,), "f4")], r"cannot multiply \[3\] by \[4\]"),
        (
            "MatMul",
            {},
            [((2, 3), "f4"), ((3, 4), "f8")],
            r"input 1 has dtype float64 but input 0 has float32",
        ),
        (
            "Gemm",
            {},
            [((4, 6), "f4"), ((5, 6), "f4")],
            r"^Gemm node 'n': cannot multiply A \[4, 6\] by B \[5, 6\]: inner dims 6 and 5 differ$",
        ),
        (
            "Gemm",
            {"transB": 1},
            [((4, 6), "f4"), ((5, 6), "f4"), ((3,), "f4")],
            r"C \[3\] does not broadcast to the output \[4, 5\]",
        ),
        ("Gemm", {}, [((4, 6, 1), "f4"), ((6, 5), "f4")], r"must both be 2-D"),
        (
            "Add",
            {},
            [((2, 3), "f4"), ((4,), "f4")],
            r"^Add node 'n': cannot broadcast \[2, 3\] with \[4\]$",
        ),
        ("Add", {}, [((2, 3), "f4"), ((3,), "i8")], r"dtype int64 but input 0 has float32"),
        ("Add", {}, [((2, 3), "?"), ((3,), "?")], r"input 0 has unsupported dtype bool"),
        ("Sigmoid", {}, [((2,), "i8")], r"Sigmoid node 'n': input 0 has unsupported dtype int64"),
        (
            "Conv",
            {},
            [((1, 3, 8, 8), "f4"), ((4, 2, 3, 3), "f4")],
            r"^Conv node 'n': input X \[1, 3, 8, 8\] has 3 channels "
            r"but weight W \[4, 2, 3, 3\] with group=1 expects 2$",
        ),
        (
            "Conv",
            {"group": 2},
            [((1, 4, 8, 8), "f4"), ((3, 2, 3, 3), "f4")],
            r"3 output channels are not divisible by group=2",
        ),
        (
            "Conv",
            {},
            [((1, 3, 8, 8), "f4"), ((4, 3, 3), "f4")],
            r"weight W \[4, 3, 3\] must have the rank of input X \[1, 3, 8, 8\]",
        ),
        (
            "Conv",
            {},
            [((1, 3, 2, 8), "f4"), ((4, 3, 3, 3), "f4")],
            r"Conv node 'n': input X \[1, 3, 2, 8\], weight W \[4, 3, 3, 3\]: "
            r"spatial dim 0 of size 2",
        ),
        (
            "Conv",
            {},
            [((1, 3, 8, 8), "f4"), ((4, 3, 3, 3), "f4"), ((3,), "f4")],
            r"bias B \[3\] must have shape \[4\]",
        ),
        (
            "Conv",
            {"kernel_shape": [2, 2]},
            [((1, 3, 8, 8), "f4"), ((4, 3, 3, 3), "f4")],
            r"kernel_shape \[2, 2\] does not match weight W",
        ),
        (
            "Conv",
            {"strides": [1]},
            [((1, 3, 8, 8), "f4"), ((4, 3, 3, 3), "f4")],
            r"attributes describe 1 spatial dim\(s\) but the input has 2",
        ),
        ("Conv", {}, [((1, 3, 8, 8), "i8"), ((4, 3, 3, 3), "i8")], r"unsupported dtype int64"),
        (
            "MaxPool",
            {"kernel_shape": [3, 3]},
            [((1, 1, 2, 5), "f4")],
            r"MaxPool node 'n': input X \[1, 1, 2, 5\] with kernel_shape \[3, 3\]: "
            r"spatial dim 0 of size 2",
        ),
        ("MaxPool", {"kernel_shape": [2, 2]}, [((4, 5), "f4")], r"input X must have rank >= 3"),
        ("GlobalAveragePool", {}, [((4, 5), "f4")], r"input X must have rank >= 3"),
        (
            "Softmax",
            {"axis": 2},
            [((4, 5), "f4")],
            r"Softmax node 'n': axis 2 is out of range for input \[4, 5\]",
        ),
        ("ArgMax", {"axis": -3}, [((4, 5), "f4")], r"axis -3 is out of range"),
        ("ArgMax", {"axis": 1}, [((4, 0), "f4")], r"empty axis"),
        (
            "BatchNormalization",
            {},
            [((2, 3, 4), "f4"), ((3,), "f4"), ((3,), "f4"), ((4,), "f4"), ((3,), "f4")],
            r"input_mean \[4\] must have shape \[3\] for input X \[2, 3, 4\]",
        ),
        (
            "Clip",
            {},
            [((3,), "f4"), ((), "f8")],
            r"input 1 has dtype float64 but input 0 has float32",
        ),
    ],
)
def test_infer_errors_name_node_and_shapes(op_type, attrs, specs, pattern) -> None:
    op = create_op(op_type, "n", attrs)
    with pytest.raises(ExecutionError, match=pattern):
        op.infer([TensorSpec(s, d) for s, d in specs])


def test_run_errors_become_execution_errors() -> None:
    mm = create_op("MatMul", "fc")
    with pytest.raises(
        ExecutionError, match=r"^MatMul node 'fc': cannot multiply \[1, 1600\] by \[1500, 128\]$"
    ):
        mm.run([np.zeros((1, 1600), np.float32), np.zeros((1500, 128), np.float32)])
    conv = create_op("Conv", "conv1")
    with pytest.raises(
        ExecutionError, match=r"Conv node 'conv1': input X \[1, 3, 8, 8\] has 3 channels"
    ):
        conv.run([np.zeros((1, 3, 8, 8), np.float32), np.zeros((4, 1, 3, 3), np.float32)])
    add = create_op("Add", "a")
    with pytest.raises(
        ExecutionError,
        match=r"^Add node 'a': run failed on inputs "
        r"\(\[2, 3\] float32, \[4\] float32\): ValueError",
    ):
        add.run([np.zeros((2, 3), np.float32), np.zeros(4, np.float32)])
    with pytest.raises(ExecutionError, match=r"Relu node 'r': run failed"):
        create_op("Relu", "r").run([])
    with pytest.raises(PopefError):
        create_op("Softmax", "s").run(["not an array"])


@pytest.mark.parametrize(
    "op_type, attrs, inputs, num_outputs",
    [
        ("Conv", {}, [(0, 3, 8, 8), (4, 3, 3, 3), (4,)], 1),
        ("Conv", {"pads": [1, 1, 1, 1], "strides": [2, 2]}, [(0, 3, 8, 8), (4, 3, 3, 3)], 1),
        ("MaxPool", {"kernel_shape": [2, 2]}, [(0, 3, 8, 8)], 2),
        ("AveragePool", {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}, [(0, 3, 8, 8)], 1),
        ("GlobalAveragePool", {}, [(0, 3, 4, 4)], 1),
        ("Gemm", {"transB": 1}, [(0, 5), (4, 5), (4,)], 1),
        ("Softmax", {}, [(0, 10)], 1),
        ("LogSoftmax", {"axis": 0}, [(0, 10)], 1),
        ("Relu", {}, [(0, 10)], 1),
        ("Flatten", {}, [(0, 3, 2)], 1),
    ],
)
def test_empty_batch(op_type, attrs, inputs, num_outputs) -> None:
    outs = run_op(op_type, attrs, [np.zeros(s, np.float32) for s in inputs], num_outputs)
    assert all(o.shape[0] == 0 for o in outs)


def test_tensor_spec_normalises_and_validates() -> None:
    s = TensorSpec([1, np.int64(2)], "float32")
    assert s == TensorSpec((1, 2), np.dtype(np.float32))
    assert (
        s.shape == (1, 2)
        and s.dtype == np.float32
        and s.size == 2
        and s.nbytes == 8
        and s.rank == 2
    )
    assert str(s) == "[1, 2] float32"
    assert TensorSpec.of(np.zeros((3, 0), np.int8)) == TensorSpec((3, 0), np.int8)
    for bad in ([-1], [1.5], "ab"):
        with pytest.raises(ExecutionError, match="non-negative ints"):
            TensorSpec(bad, np.float32)
    with pytest.raises(ExecutionError, match="not a numpy dtype"):
        TensorSpec((1,), "nonsense")


def test_kernel_geometry_ceil_mode_rule() -> None:
    # 5 + 1 + 1 padded, k=2, s=3, ceil: ceil((7 - 2) / 3) + 1 = 3, but the third window would
    # start at 6 >= 5 + 1 (inside the end padding), so it is dropped
    geo = _kernels.window_geometry([5], [2], [3], [1], [1, 1], "NOTSET", ceil_mode=True)
    assert geo.out == (2,)
    geo = _kernels.window_geometry([6], [2], [2], [1], [0, 0], "NOTSET", ceil_mode=True)
    assert geo.out == (3,) and geo.extra == (0,)
    geo = _kernels.window_geometry([7], [2], [2], [1], [0, 0], "NOTSET", ceil_mode=True)
    assert geo.out == (4,) and geo.extra == (1,)
