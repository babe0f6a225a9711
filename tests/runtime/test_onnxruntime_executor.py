"""The onnxruntime executor: the same results as cpu, its options and errors, GPU when present.

The semantic tests of every executor (test_runner.py, test_executors.py) are parametrized over
it too; this file adds the differential test against cpu on random graphs with replicas and
device iterations, and what is specific to onnxruntime.
"""

from __future__ import annotations

import logging
import sys

import numpy as np
import pytest

from popef import DataType, ExecutionError
from popef.runtime import GraphBuilder, ModelRunner, get_executor, list_executors
from popef.runtime.executors import executor_descriptions

from .helpers import RandomGraph, model_of, random_inputs, random_model, save_bytes, small_mlp

ort = pytest.importorskip("onnxruntime", reason="the onnxruntime executor is an optional extra")
pytest.importorskip("onnx", reason="the onnxruntime executor builds ONNX graphs")

from popef.runtime.executors.onnxruntime import OnnxRuntimeExecutor

# onnxruntime (MLAS) against the numpy kernels: other summation orders and exp/tanh/erf
# approximations; float32 results agree to about 1e-5 relative (docs/runtime.md §4.3).
RTOL, ATOL = 1e-4, 1e-5
HAS_CUDA = "CUDAExecutionProvider" in ort.get_available_providers()


def test_it_is_an_installed_plugin():
    assert "onnxruntime" in list_executors()
    assert "onnxruntime" in dict(executor_descriptions())["onnxruntime"]
    executor = get_executor("onnxruntime", intra_op_num_threads=1)
    assert isinstance(executor, OnnxRuntimeExecutor)
    assert executor.providers == ["CPUExecutionProvider"]


@pytest.mark.parametrize("seed", range(24))
def test_onnxruntime_and_cpu_agree_on_random_graphs(seed):
    model = random_model(seed)
    runners = [
        ModelRunner(model, "cpu"),
        ModelRunner(model, "onnxruntime"),
        ModelRunner(model, "onnxruntime", fold="false"),
    ]
    inputs = random_inputs(seed, runners[0].get_execute_inputs())
    results = [r.execute(inputs) for r in runners]
    counts = [r.program_runs for r in runners]
    for runner in runners:
        runner.close()
    expected, folded, stepwise = results
    assert list(folded) == list(expected) == list(stepwise) and expected
    assert counts[0] == counts[1] == counts[2]
    for name in expected:
        for got in (folded, stepwise):
            assert got[name].shape == expected[name].shape
            assert got[name].dtype == expected[name].dtype
            np.testing.assert_allclose(
                got[name], expected[name], rtol=RTOL, atol=ATOL, err_msg=name
            )


def test_the_session_gets_the_weights_from_memory_not_from_the_model_bytes():
    g, _ = small_mlp()
    with ModelRunner(model_of(save_bytes(g)), "onnxruntime") as runner:
        assert len(runner.executor._sessions) == 1
        assert runner.executor.fold_blocker is None
    from popef.runtime.interpreter import run_load_programs
    from popef.runtime.loader import load_model
    from popef.runtime.to_onnx import graph_to_onnx

    loaded = load_model(model_of(save_bytes(g)))
    graph = graph_to_onnx(loaded, loaded.main, constants=run_load_programs(loaded), embed=False)
    assert sorted(graph.constants) == ["b1", "b2", "w1", "w2"]
    assert all(not t.raw_data and t.data_location == 1 for t in graph.model.graph.initializer)
    assert len(graph.model.SerializeToString()) < 1000


@pytest.mark.parametrize(
    "options, message",
    [
        (
            {"providers": "NopeExecutionProvider"},
            (
                r"executor 'onnxruntime': provider 'NopeExecutionProvider' is not available; this "
                r"onnxruntime has .*CPUExecutionProvider"
            ),
        ),
        ({"providers": ""}, r"option 'providers' names no provider"),
        ({"providers": 3}, r"option 'providers' must be a list of provider names"),
        (
            {"graph_optimization_level": "max"},
            r"option 'graph_optimization_level' must be one of "
            r"disable, basic, extended, all, got 'max'",
        ),
        ({"intra_op_num_threads": "0"}, r"option 'intra_op_num_threads' must be an integer >= 1"),
        # onnxruntime takes a C int and starts every thread with the session
        (
            {"intra_op_num_threads": "99999999999999999999"},
            r"option 'intra_op_num_threads' must be at most 1024, got 99999999999999999999",
        ),
        (
            {"fold": "maybe"},
            (
                r"option 'fold' must be true or false \(or 1/0, yes/no, on/off\), "
                r"got 'maybe'"
            ),
        ),
        ({"fold": ""}, r"option 'fold' must be true or false"),
        ({"fold": 2}, r"option 'fold' must be true or false"),
        (
            {"threads": 2},
            (
                r"executor 'onnxruntime' has no option 'threads' \(options: fold, "
                r"graph_optimization_level, intra_op_num_threads, providers\)"
            ),
        ),
    ],
)
def test_bad_options_are_refused(options, message):
    with pytest.raises(ExecutionError, match=message):
        get_executor("onnxruntime", **options)


@pytest.mark.parametrize(
    "providers, expected",
    [
        ("cpu", ["CPUExecutionProvider"]),
        ("CPUExecutionProvider, cpu", ["CPUExecutionProvider"]),
        (["CPUExecutionProvider"], ["CPUExecutionProvider"]),
    ],
)
def test_providers_take_short_names_and_lists(providers, expected):
    assert get_executor("onnxruntime", providers=providers).providers == expected


@pytest.mark.parametrize("level", ["disable", "basic", "extended", "all", "ORT_ENABLE_ALL"])
def test_every_optimization_level_gives_the_same_results(level):
    g, _ = small_mlp()
    model = model_of(save_bytes(g))
    x = np.random.default_rng(3).standard_normal((6, 5)).astype(np.float32)
    with (
        ModelRunner(model, "cpu") as cpu,
        ModelRunner(
            model, "onnxruntime", graph_optimization_level=level, intra_op_num_threads="1"
        ) as rt,
    ):
        np.testing.assert_allclose(
            rt.execute({"x": x})["probs"], cpu.execute({"x": x})["probs"], rtol=RTOL, atol=ATOL
        )
        assert "providers CPUExecutionProvider" in rt.executor.describe()


def test_without_onnxruntime_the_executor_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(
        ExecutionError,
        match=r"executor 'onnxruntime' needs the onnxruntime "
        r"package: pip install 'popef\[onnxruntime\]'",
    ):
        get_executor("onnxruntime")


def test_a_graph_onnxruntime_refuses_is_an_execution_error_at_load(monkeypatch):
    g = GraphBuilder()
    x = g.add_input("x", DataType.F32, (2, 3))
    g.add_output(g.add_node("Relu", [x]), "y")
    import popef.runtime.executors.onnxruntime as module

    real = module.graph_to_onnx

    def broken(*args, **kwargs):  # an op onnxruntime does not know
        graph = real(*args, **kwargs)
        graph.model.graph.node[0].op_type = "Frobnicate"
        return graph

    monkeypatch.setattr(module, "graph_to_onnx", broken)
    with pytest.raises(
        ExecutionError,
        match=r"executor 'onnxruntime' cannot run model "
        r"'model': .*Frobnicate",
    ):
        ModelRunner(model_of(save_bytes(g)), "onnxruntime")


def test_popef_run_takes_the_executor_and_its_options(tmp_path):
    from click.testing import CliRunner

    from popef.cli import main

    g, _ = small_mlp()
    path = tmp_path / "mlp.popef"
    g.save(path)
    x = tmp_path / "x.npy"
    np.save(x, np.ones((2, 5), np.float32))
    result = CliRunner().invoke(
        main,
        [
            "run",
            str(path),
            "-i",
            str(x),
            "--executor",
            "onnxruntime",
            "--option",
            "providers=cpu",
            "--option",
            "intra_op_num_threads=1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "probs: F32[2, 3]" in result.output
    result = CliRunner().invoke(
        main,
        ["run", str(path), "-i", str(x), "--executor", "onnxruntime", "--option", "providers=tpu"],
    )
    assert result.exit_code == 1
    assert result.output.startswith(
        "error: executor 'onnxruntime': provider 'tpu' is not available"
    )


def test_serving_loads_a_model_on_the_executor_its_config_names(tmp_path, caplog):
    from popef.serving.repository import ModelRepository, RepositoryOptions

    g, _ = small_mlp()
    version = tmp_path / "mlp" / "1"
    version.mkdir(parents=True)
    g.save(version / "model.popef")
    (tmp_path / "mlp" / "config.pbtxt").write_text(
        'name: "mlp"\nbackend: "poplar"\nmax_batch_size: 0\n'
        'parameters { key: "executor" value { string_value: "onnxruntime" } }\n'
        'parameters { key: "executor.intra_op_num_threads" value { string_value: "1" } }\n'
    )
    with caplog.at_level(logging.INFO):
        repository = ModelRepository([tmp_path], RepositoryOptions())
        try:
            repository.load("mlp")
            served = repository.get("mlp")
            runner = served.runners[0]
            assert runner.executor.name == "onnxruntime"
            assert runner.executor.intra_op_num_threads == 1
        finally:
            repository.close()
    assert "runs on executor 'onnxruntime': onnxruntime " in caplog.text
    assert "providers CPUExecutionProvider" in caplog.text


# -- GPU (skipped without a CUDA build of onnxruntime) -----------------------------------------


@pytest.mark.skipif(not HAS_CUDA, reason="no CUDAExecutionProvider in this onnxruntime")
@pytest.mark.parametrize("seed", range(6))
def test_cuda_agrees_with_cpu(seed):
    builder = RandomGraph(seed).build()
    model = model_of(save_bytes(builder, replication_factor=(1, 2)[seed % 2]))
    rng = np.random.default_rng(seed)
    with (
        ModelRunner(model, "cpu") as cpu,
        ModelRunner(model, "onnxruntime", providers="cuda") as gpu,
    ):
        assert gpu.executor.session_providers[0] == "CUDAExecutionProvider"
        inputs = {
            d.name: rng.standard_normal((3 * d.shape[0], *d.shape[1:])).astype(np.float32)
            for d in cpu.get_execute_inputs()
        }
        expected, got = cpu.execute(inputs), gpu.execute(inputs)
    for name in expected:
        # cuDNN and cuBLAS may use TF32 or other algorithms: a looser tolerance
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize(
    "value, fold",
    [
        ("off", False),
        ("No", False),
        ("0", False),
        (False, False),
        ("on", True),
        ("TRUE", True),
        (True, True),
    ],
)
def test_fold_takes_the_usual_spellings_of_a_flag(value, fold):
    assert get_executor("onnxruntime", fold=value).fold is fold


# dtypes and shapes at the edges: every one runs on both executors with the same results
# (integers and booleans exactly; float16 within its precision)
def _unary(dtype: DataType, shape, op: str, **attributes) -> GraphBuilder:
    g = GraphBuilder()
    x = g.add_input("x", dtype, shape)
    g.add_output(g.add_node(op, [x], **attributes), "y")
    g.add_output(x, "x_again")  # an output that is an input
    return g


def _f16_model() -> GraphBuilder:
    g = GraphBuilder()
    x = g.add_input("x", DataType.F16, (2, 4))
    w = g.add_weight("w", np.linspace(-1, 1, 12, dtype=np.float16).reshape(4, 3))
    g.add_output(g.add_node("Softmax", [g.add_node("MatMul", [x, w])], axis=-1), "y")
    return g


def _int64_model() -> GraphBuilder:
    g = GraphBuilder()
    x = g.add_input("x", DataType.S64, (2, 4))
    w = g.add_weight("w", np.array([1, -2, 2**40, 0], np.int64))
    g.add_output(g.add_node("Add", [x, w]), "sum")
    g.add_output(g.add_node("Mul", [x, x]), "square")
    return g


def _bool_model() -> GraphBuilder:
    g = GraphBuilder()
    a = g.add_input("a", DataType.BOOL, (2, 3))
    b = g.add_input("b", DataType.BOOL, (2, 3))
    g.add_output(g.add_node("And", [a, b]), "and")
    g.add_output(g.add_node("Not", [a]), "not")
    return g


def _zero_size_model() -> GraphBuilder:
    g = GraphBuilder()
    x = g.add_input("x", DataType.F32, (2, 0))
    g.add_output(g.add_node("MatMul", [x, g.add_weight("w", np.zeros((0, 3), np.float32))]), "y")
    return g


def _no_input_model() -> GraphBuilder:
    g = GraphBuilder()
    w = g.add_weight("w", np.array([-1.5, 0.0, 2.5], np.float32))
    g.add_output(g.add_node("Relu", [w]), "y")
    g.add_output(w, "w_out")
    return g


EDGE_MODELS = {
    "bool": (
        _bool_model,
        {"a": np.array([[1, 0, 1], [0, 1, 1]], bool), "b": np.array([[1, 1, 0], [0, 1, 0]], bool)},
        0,
    ),
    "f16": (_f16_model, {"x": np.linspace(-2, 2, 8, dtype=np.float16).reshape(2, 4)}, 2e-3),
    "int64": (_int64_model, {"x": np.array([[2**40, -3, 5, 7], [1, 2, 3, -(2**31)]], np.int64)}, 0),
    "uint8": (
        lambda: _unary(DataType.U8, (2, 3), "ReduceMax", keepdims=0),
        {"x": np.array([[0, 255, 3], [9, 8, 7]], np.uint8)},
        0,
    ),
    "f64": (
        lambda: _unary(DataType.F64, (2, 3), "Softmax", axis=-1),
        {"x": np.array([[1e-300, 700, -700], [0, 1, 2]], np.float64)},
        1e-12,
    ),
    "scalar": (lambda: _unary(DataType.F32, (), "Relu"), {"x": np.array(-1.5, np.float32)}, 0),
    "zero-size": (_zero_size_model, {"x": np.zeros((2, 0), np.float32)}, 0),
    "zero-size, 3 steps": (_zero_size_model, {"x": np.zeros((6, 0), np.float32)}, 0),
    "no inputs": (_no_input_model, {}, 0),
    "nan and inf": (
        lambda: _unary(DataType.F32, (1, 4), "Relu"),
        {"x": np.array([[np.nan, np.inf, -np.inf, -0.0]], np.float32)},
        0,
    ),
}


@pytest.mark.parametrize("case", list(EDGE_MODELS))
def test_edge_dtypes_and_shapes_agree_with_cpu(case):
    make, inputs, tolerance = EDGE_MODELS[case]
    model = model_of(save_bytes(make()))
    with ModelRunner(model, "cpu") as cpu, ModelRunner(model, "onnxruntime") as rt:
        expected, found = cpu.execute(inputs), rt.execute(inputs)
    assert list(found) == list(expected) and expected
    for name, value in expected.items():
        assert found[name].dtype == value.dtype and found[name].shape == value.shape, name
        np.testing.assert_allclose(
            found[name].astype(np.float64),
            value.astype(np.float64),
            rtol=tolerance,
            atol=tolerance,
            equal_nan=True,
            err_msg=name,
        )


def test_an_op_without_an_onnxruntime_kernel_for_its_dtype_says_so_in_one_line():
    """Relu on int64 is valid ONNX that the cpu executor runs; onnxruntime has no kernel."""
    model = model_of(save_bytes(_unary(DataType.S64, (2, 3), "Relu")))
    with pytest.raises(ExecutionError) as info:
        ModelRunner(model, "onnxruntime")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(
        "executor 'onnxruntime' cannot run model 'model': Could not find an implementation for Relu"
    )
    assert message.endswith(
        "(onnxruntime has no kernel for this op with these dtypes; executor 'cpu' runs it)"
    )


def test_onnxruntime_errors_lose_source_locations_and_stay_off_stderr(capfd):
    """An integer division by a zero constant: onnxruntime refuses it when the session is made
    and would log the error (with its source file) to stderr."""
    g = GraphBuilder()
    x = g.add_input("x", DataType.S32, (3,))
    g.add_output(g.add_node("Div", [x, g.add_weight("d", np.array([1, 0, 2], np.int32))]), "y")
    with pytest.raises(ExecutionError) as info:
        ModelRunner(model_of(save_bytes(g)), "onnxruntime")
    assert str(info.value) == (
        "executor 'onnxruntime' cannot run model 'model': Exception "
        "during initialization: Integer division by zero"
    )
    captured = capfd.readouterr()
    assert "onnxruntime" not in captured.err and "onnxruntime" not in captured.out


def test_threads_share_a_runner_and_a_close_stops_them_cleanly():
    import threading

    g, _ = small_mlp()
    model = model_of(save_bytes(g))
    reference = ModelRunner(model, "cpu")
    runner = ModelRunner(model, "onnxruntime")
    problems: list[str] = []
    inputs = [
        np.random.default_rng(k).standard_normal((2 * (1 + k % 3), 5)).astype(np.float32)
        for k in range(6)
    ]
    expected = [reference.execute({"x": x})["probs"] for x in inputs]
    reference.close()
    ran = threading.Barrier(len(inputs) + 1)

    def work(k: int) -> None:
        for i in range(40):
            try:
                found = runner.execute({"x": inputs[k]})["probs"]
            except ExecutionError as exc:  # only after the close below
                if str(exc) != "the ModelRunner is closed" or i < 20:
                    problems.append(f"thread {k}, run {i}: {exc}")
                return
            except Exception as exc:  # noqa: BLE001 - what the test looks for
                problems.append(f"thread {k}: {type(exc).__name__}: {exc}")
                return
            if not np.allclose(found, expected[k], rtol=RTOL, atol=ATOL):
                problems.append(f"thread {k}, run {i}: wrong result")
            if i == 19:
                ran.wait(timeout=60)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(inputs))]
    for thread in threads:
        thread.start()
    ran.wait(timeout=60)  # every thread has run 20 times
    runner.close()
    for thread in threads:
        thread.join(timeout=60)
    assert not problems
