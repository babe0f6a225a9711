"""Models that decode fine but are built to hurt: shape bombs, names that drive a terminal,
dtype tricks and misuse of a runner. Each must end in a clear ExecutionError naming what and
where, before anything big is allocated (docs/runtime.md, "Limits" and "Errors")."""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest

from popef import DataType, ExecutionError, TensorType
from popef.runtime import GraphBuilder, ModelRunner, RuntimeLimits
from popef.runtime.program import DeviceToHost, GraphProgram, HostToDevice, Node, Program

from .helpers import anchor, model_of, save_bytes, write_model

SMALL = RuntimeLimits(max_tensor_bytes=1 << 20, max_request_bytes=1 << 22)
EXECUTORS = ["cpu", "ipu-model", "onnxruntime"]
HOSTILE = "red\x1b[31m\x07\r\n\u202e"


def _executor(name: str) -> str:
    if name == "onnxruntime":
        pytest.importorskip("onnxruntime")
        pytest.importorskip("onnx")
    return name


def _shape_of(make) -> GraphBuilder:
    """A model whose output is the Shape of the tensor ``make(g)`` builds: the bomb is an
    intermediate, which only the loader's limits see."""
    g = GraphBuilder()
    g.add_output(g.add_node("Shape", [make(g)]), "y")
    return g


def _weight(g: GraphBuilder, name: str, values) -> str:
    return g.add_weight(name, np.array(values, np.int64))


BOMBS = {
    "ConstantOfShape": lambda g: g.add_node(
        "ConstantOfShape", [_weight(g, "s", [1 << 40, 1 << 40])]
    ),
    "Expand": lambda g: g.add_node(
        "Expand",
        [g.add_weight("w", np.ones((1,), np.float32)), _weight(g, "s", [1 << 16, 1 << 16])],
    ),
    "Tile": lambda g: g.add_node(
        "Tile", [g.add_weight("w", np.ones((1, 1), np.float32)), _weight(g, "r", [1 << 62] * 2)]
    ),
    "Range": lambda g: g.add_node(
        "Range",
        [_weight(g, "a", -(1 << 40)), _weight(g, "l", 1 << 40), _weight(g, "d", 1)],
    ),
    "Einsum": lambda g: g.add_node(
        "Einsum", [g.add_weight("a", np.ones((1000,), np.float32))] * 3, equation="i,j,k->ijk"
    ),
}


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("op", sorted(BOMBS))
def test_a_shape_bomb_folded_at_load_is_refused_before_it_allocates(executor, op):
    model = model_of(save_bytes(_shape_of(BOMBS[op])))
    with pytest.raises(
        ExecutionError,
        match=rf"step \d+ \({op} node '{op}_0'\): tensor '{op}_0:0' would be .* bytes, more "
        r"than the limit of 1048576 bytes per tensor \(max_tensor_bytes\)",
    ):
        ModelRunner(model, executor=_executor(executor), limits=SMALL)


@pytest.mark.parametrize("executor", EXECUTORS)
def test_an_empty_tensor_whose_dims_overflow_is_refused_at_load(executor):
    # [2**62, 2**62, 0] holds 0 bytes, so the byte limit passes it, but no array has that shape
    model = model_of(
        save_bytes(
            _shape_of(
                lambda g: g.add_node("ConstantOfShape", [_weight(g, "s", [1 << 62, 1 << 62, 0])])
            )
        )
    )
    with pytest.raises(
        ExecutionError,
        match=r"step 0 \(ConstantOfShape node 'ConstantOfShape_0'\): tensor "
        r"'ConstantOfShape_0:0' would be \[4611686018427387904, 4611686018427387904, 0\] "
        r"float32: its non-zero dims times the element size exceed 9223372036854775807 bytes",
    ):
        ModelRunner(model, executor=_executor(executor), limits=SMALL)


def test_a_shape_fed_by_the_request_is_refused_at_load(tmp_path):
    # GraphBuilder refuses it too: this file is written by hand
    steps = (
        HostToDevice("h2d_x", "x"),
        HostToDevice("h2d_shape", "shape"),
        Node("Expand", "e", ("x", "shape"), ("y",)),
        DeviceToHost("y", "anchor_d2h_y"),
    )
    path = tmp_path / "expand.popef"
    write_model(
        path,
        GraphProgram((Program(0, "WeightsFromHost"), Program(5, "Program", steps))),
        [
            anchor("x", (1, 1), TensorType.INPUT),
            anchor("shape", (2,), TensorType.INPUT, dtype=DataType.S64),
            anchor("y", (1, 1), TensorType.OUTPUT),
        ],
    )
    with pytest.raises(
        ExecutionError,
        match=r"step 2: Expand node 'e': input 1 \('shape'\) must be a constant",
    ):
        ModelRunner(path)


# -- names that drive a terminal -----------------------------------------------------------


def _file(tmp_path, steps, *, name: str = "m") -> str:
    path = tmp_path / "hostile.popef"
    program = GraphProgram((Program(0, "WeightsFromHost"), Program(5, "Program", tuple(steps))))
    anchors = [anchor("x", (1, 4), TensorType.INPUT), anchor("y", (1, 4), TensorType.OUTPUT)]
    write_model(path, program, anchors, name=name)
    return str(path)


def _matmul(node_name: str) -> list:
    """x [1, 4] times itself: a shape error at load, in a node called ``node_name``."""
    return [
        HostToDevice("h2d_x", "x"),
        Node("MatMul", node_name, ("x", "x"), ("r",)),
        DeviceToHost("r", "anchor_d2h_y"),
    ]


def _assert_escaped(message: str) -> None:
    assert not any(ch in message for ch in "\x1b\x07\r\n\u202e"), message
    assert "red\\x1b[31m\\x07\\r\\n\\u202e" in message


@pytest.mark.parametrize(
    "steps",
    [
        _matmul(HOSTILE),  # the op's own error
        [
            HostToDevice("h2d_x", "x"),
            Node("Relu", HOSTILE, ("x",), ("r",), {"bogus": 1}),  # unknown attribute
            DeviceToHost("r", "anchor_d2h_y"),
        ],
        [
            HostToDevice("h2d_x", "x"),
            Node("Relu", HOSTILE, ("nowhere",), ("r",)),  # the loader's error
            DeviceToHost("r", "anchor_d2h_y"),
        ],
    ],
    ids=["shape", "attribute", "undefined"],
)
def test_a_node_name_with_control_characters_is_escaped_in_errors(tmp_path, steps):
    with pytest.raises(ExecutionError) as info:
        ModelRunner(_file(tmp_path, steps))
    _assert_escaped(str(info.value))


def test_a_model_name_with_control_characters_is_escaped_in_errors(tmp_path):
    with pytest.raises(ExecutionError) as info:
        ModelRunner(_file(tmp_path, _matmul("n"), name=HOSTILE))
    _assert_escaped(str(info.value))


def test_a_huge_node_name_is_cut_short_in_errors(tmp_path):
    with pytest.raises(ExecutionError) as info:
        ModelRunner(_file(tmp_path, _matmul("n" * 100_000)))
    message = str(info.value)
    assert len(message) < 1000
    assert "more characters)" in message


# -- dtype tricks ------------------------------------------------------------------------------


def _range_model(start, limit, delta, dtype) -> GraphBuilder:
    g = GraphBuilder()
    values = [g.add_weight(n, np.array(v, dtype)) for n, v in zip("ald", (start, limit, delta))]
    g.add_output(g.add_node("Range", values), "y")
    return g


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_range_with_a_bound_that_is_not_finite_says_so(bad):
    with pytest.raises(ExecutionError, match=r"Range node .*: start, limit and delta must be "):
        _range_model(0.0, bad, 1.0, np.float32)


def test_range_counts_int64_bounds_exactly():
    # a float difference of 2**62 + 3 and 2**62 is 0: the count must not go through floats
    start = 1 << 62
    with ModelRunner(model_of(save_bytes(_range_model(start, start + 3, 1, np.int64)))) as r:
        out = r.execute({})["y"]
    assert out.tolist() == [start, start + 1, start + 2]


@pytest.mark.parametrize("executor", ["cpu", "ipu-model"])
def test_integer_division_that_overflows_wraps_without_a_warning(executor):
    g = GraphBuilder()
    a = g.add_input("a", DataType.S32, (1, 3))
    b = g.add_input("b", DataType.S32, (1, 3))
    g.add_output(g.add_node("Div", [a, b]), "q")
    low = np.iinfo(np.int32).min
    with ModelRunner(model_of(save_bytes(g)), executor=executor) as runner:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # numpy's RuntimeWarning would go to stderr
            out = runner.execute(
                {"a": np.array([[low, 7, -7]], np.int32), "b": np.array([[-1, 0, 2]], np.int32)}
            )
    assert out["q"].tolist() == [[low, 0, -3]]  # wraps as C; by zero gives 0 (documented)


def test_gather_with_an_index_out_of_range_names_it():
    g = GraphBuilder()
    table = g.add_weight("t", np.ones((4, 3), np.float32))
    g.add_output(g.add_node("Gather", [table, g.add_input("i", DataType.S64, (1, 2))]), "y")
    with ModelRunner(model_of(save_bytes(g))) as runner:
        with pytest.raises(ExecutionError, match=r"index 1099511627776 at \[0, 1\] is out"):
            runner.execute({"i": np.array([[1, 1 << 40]], np.int64)})


# -- runner misuse -----------------------------------------------------------------------------


@pytest.fixture
def relu_runner():
    g = GraphBuilder()
    g.add_output(g.add_node("Relu", [g.add_input("x", DataType.F32, (1, 4))]), "y")
    with ModelRunner(model_of(save_bytes(g))) as runner:
        yield runner


class _Subclass(np.ndarray):
    pass


def _readonly(a: np.ndarray) -> np.ndarray:
    a = a.copy()
    a.flags.writeable = False
    return a


@pytest.mark.parametrize(
    "make",
    [
        lambda a: a.view(_Subclass),
        _readonly,
        lambda a: np.repeat(a, 2, axis=1)[:, ::2],  # not contiguous
        lambda a: np.ma.masked_array(a, mask=[[True, False, False, False]]),
    ],
    ids=["subclass", "read-only", "strided", "masked"],
)
def test_unusual_arrays_run_and_give_plain_new_arrays(relu_runner, make):
    x = np.array([[-1, 2, -3, 4]], np.float32)
    out = relu_runner.execute({"x": make(x)})["y"]
    assert type(out) is np.ndarray and out.tolist() == [[0, 2, 0, 4]]
    assert not np.shares_memory(out, x)


@pytest.mark.parametrize(
    "value, found",
    [
        (np.array([[1, 2, 3, 4]], dtype=object), "object"),
        (np.ones((1, 4), np.float16), "F16"),
        (np.ones((1, 4), bool), "BOOL"),
    ],
)
def test_arrays_of_another_dtype_are_refused(relu_runner, value, found):
    with pytest.raises(ExecutionError, match=rf"input 'x' has dtype {found}, expected F32"):
        relu_runner.execute({"x": value})


def test_an_array_in_the_other_byte_order_is_refused_naming_the_order(relu_runner):
    swapped = np.ones((1, 4), np.dtype(np.float32).newbyteorder())
    order = "big" if swapped.dtype.byteorder == ">" else "little"
    with pytest.raises(ExecutionError) as caught:
        relu_runner.execute({"x": swapped})
    message = str(caught.value)
    assert f"has dtype F32 in {order}-endian byte order" in message
    assert "native order expected" in message and ", expected F32" in message


def test_close_while_a_request_runs_waits_for_it(relu_runner):
    futures = relu_runner.execute_async({"x": np.ones((1000, 4), np.float32)})
    closer = threading.Thread(target=relu_runner.close)
    closer.start()
    closer.join(timeout=60)
    assert not closer.is_alive()
    assert futures.wait(timeout=60)["y"].shape == (1000, 4)
    with pytest.raises(ExecutionError, match="the ModelRunner is closed"):
        relu_runner.execute({"x": np.ones((1, 4), np.float32)})
    with pytest.raises(ExecutionError, match="the ModelRunner is closed"):
        relu_runner.execute_async({"x": np.ones((1, 4), np.float32)})


def test_many_threads_share_a_runner(relu_runner):
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        x = np.random.default_rng(seed).standard_normal((3, 4)).astype(np.float32)
        try:
            for _ in range(20):
                np.testing.assert_array_equal(relu_runner.execute({"x": x})["y"], np.maximum(x, 0))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors and not any(t.is_alive() for t in threads)
