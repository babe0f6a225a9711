"""benchmarks/bench_serving.py --executors: the repository it serves names each model's executor
in config.pbtxt (``parameters { key: "executor" ... }``), and each model runs on it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime", reason="the onnxruntime executor is an optional extra")
pytest.importorskip("onnx", reason="the onnxruntime executor builds ONNX graphs")

ROOT = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location(
        "bench_serving", ROOT / "benchmarks" / "bench_serving.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_each_model_of_the_comparison_runs_on_its_executor(tmp_path):
    from popef.runtime import ModelRunner
    from popef.servable import parse_config

    bench = _bench()
    repository, _ = bench.build_executor_repository(tmp_path, None, ["cpu", "onnxruntime"])
    assert sorted(p.name for p in repository.iterdir()) == ["mnist_cpu", "mnist_onnxruntime"]
    for executor in ("cpu", "onnxruntime"):
        folder = repository / f"mnist_{executor}"
        config = parse_config((folder / "config.pbtxt").read_text())
        assert config.name == folder.name and config.max_batch_size == 16
        assert config.parameters["executor"].string_value == executor
        with ModelRunner(folder / "1" / "executable.popef", executor) as runner:
            assert [d.name for d in runner.get_execute_inputs()] == ["input"]


def test_a_missing_module_is_reported_not_raised(tmp_path):
    import sys

    bench = _bench()
    assert bench.module_available(sys.executable, "json")
    assert not bench.module_available(sys.executable, "no_such_module_popef_bench")
