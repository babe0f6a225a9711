"""The poplar backend's TritonPythonModel, without Triton: a fake ``pb_utils`` stands in."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tritonclient.grpc", reason="the backend reads configs with tritonclient")

import popef
from popef.errors import ExecutionError
from popef.runtime import ModelRunner
from popef.triton import backend
from popef.triton.backend import BackendError, TritonPythonModel

from . import fake_pb_utils as pb
from .helpers import WEIGHTS, model_folder, reference, vector_model

BLOG_CONFIG = """\
name: "{name}"
backend: "poplar"
max_batch_size: 8
input [ {{ name: "features" data_type: TYPE_FP32 dims: [ 4 ] }} ]
output [ {{ name: "scores" data_type: TYPE_FP32 dims: [ 3 ] }} ]
dynamic_batching {{ }}
"""
NAME_MAP = {"input": "features", "out": "scores"}


@pytest.fixture(autouse=True)
def fake_pb_utils(monkeypatch):
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", pb)
    pb.Logger.messages = []
    return pb


def _triton_dict(name: str, text: str | None = None, **fields) -> dict:
    """Triton's JSON for a config.pbtxt text: every field present, defaults filled."""
    from popef.servable import config_to_dict, parse_config

    data = pb.triton_config(name)
    if text:
        parsed = config_to_dict(parse_config(text))
        data.update({k: v for k, v in parsed.items() if k in data or v not in ({}, [], "")})
        data["name"] = name
    data.update(fields)
    return data


def auto_complete(folder: Path, config: dict, version: str = "1") -> dict:
    model_config = pb.ModelConfig(json.dumps(config))
    filename = config.get("default_model_filename") or "model.py"
    result = TritonPythonModel.auto_complete_config(
        model_config, model_path=folder / version / filename
    )
    assert result is model_config
    return result.as_dict()


def initialize(folder: Path, config: dict, version: str = "1") -> TritonPythonModel:
    model = TritonPythonModel()
    model.initialize(
        {
            "model_config": json.dumps(config),
            "model_repository": str(folder),
            "model_version": version,
            "model_name": config["name"],
            "model_instance_name": f"{config['name']}_0",
            "model_instance_kind": "CPU",
            "model_instance_device_id": "0",
        }
    )
    return model


def request(features=None, *, name="features", requested=(), extra=None):
    tensors = (
        [pb.Tensor(name, np.asarray(features, dtype=np.float32))] if features is not None else []
    )
    tensors += extra or []
    return pb.InferenceRequest(tensors, requested)


@pytest.fixture
def blog_model(tmp_path):
    folder = model_folder(
        tmp_path, "linear", config=BLOG_CONFIG.format(name="linear"), name_map=NAME_MAP, batch=1
    )
    config = _triton_dict("linear", BLOG_CONFIG.format(name="linear"))
    model = initialize(folder, auto_complete(folder, config))
    yield model
    model.finalize()


class CountingRunner:
    """Wraps a ModelRunner, counting executions and optionally failing on a marker value."""

    def __init__(self, runner, fail_on: float | None = None):
        self.runner = runner
        self.calls = []
        self.steps = []
        self.fail_on = fail_on

    def execute_checked(self, feed, steps):
        self.calls.append({k: np.array(v) for k, v in feed.items()})
        self.steps.append(steps)
        if self.fail_on is not None and any((v == self.fail_on).any() for v in feed.values()):
            raise ExecutionError("marker value in the batch")
        return self.runner.execute_checked(feed, steps)

    def close(self):
        self.runner.close()


# -- locating the model --------------------------------------------------------------------------


def test_stub_model_path_reads_the_stub_command_line(tmp_path):
    cmdline = tmp_path / "cmdline"
    cmdline.write_bytes(
        b"/opt/tritonserver/backends/python/triton_python_backend_stub\0"
        b"models/mnist/1/model.py\0triton_poplar_backend_shm_region_x\0"
        b"1048576\0"
    )
    assert backend.stub_model_path(cmdline) == Path("models/mnist/1/model.py")
    location = backend.locate_for_auto_complete(Path("models/mnist/1/model.py"))
    assert location.model_dir == Path("models/mnist") and location.version == "1"
    assert location.version_dir == Path("models/mnist/1")


def test_stub_model_path_is_none_outside_a_stub(tmp_path):
    cmdline = tmp_path / "cmdline"
    cmdline.write_bytes(b"/usr/bin/python3\0-m\0pytest\0")
    assert backend.stub_model_path(cmdline) is None
    assert backend.stub_model_path(tmp_path / "missing") is None
    with pytest.raises(BackendError, match="outside Triton"):
        backend.locate_for_auto_complete(
            None
        ) if backend.stub_model_path() is None else pytest.skip("running inside a stub")


def test_model_files_follow_popef_serve(tmp_path):
    from tritonclient.grpc import model_config_pb2 as mc

    folder = model_folder(tmp_path, "m", filename="other.popef")
    vdir = folder / "1"
    config = mc.ModelConfig(backend="poplar")
    assert backend.model_files(vdir, config) == [vdir / "other.popef"]  # every *.popef
    model_folder(tmp_path, "m")  # now executable.popef too
    assert backend.model_files(vdir, config) == [vdir / "executable.popef"]
    config.default_model_filename = "other.popef"
    assert backend.model_files(vdir, config) == [vdir / "other.popef"]
    # Triton's own names are passed over: model.py, and model.<backend> of a <name>.<backend>
    for own in ("model.py", "model.poplar"):
        config.default_model_filename = own
        assert backend.model_files(vdir, config) == [vdir / "executable.popef"]
    config.default_model_filename = "missing.popef"
    with pytest.raises(backend.ConfigError, match="has no 'missing.popef'"):
        backend.model_files(vdir, config)
    config.default_model_filename = "../escape.popef"
    with pytest.raises(backend.ConfigError, match="must be a file name"):
        backend.model_files(vdir, config)


# -- auto-complete -------------------------------------------------------------------------------


def test_auto_complete_fills_everything_from_the_file(tmp_path):
    folder = model_folder(tmp_path, "auto.poplar", name_map=NAME_MAP, batch=2)
    config = _triton_dict("auto.poplar", default_model_filename="model.poplar")
    completed = auto_complete(folder, config)
    # Graphcore's rule: micro batch 2 x 1 device iteration x 1 replica
    assert completed["max_batch_size"] == 2
    assert completed["input"] == [{"name": "features", "data_type": "TYPE_FP32", "dims": [4]}]
    assert completed["output"] == [{"name": "scores", "data_type": "TYPE_FP32", "dims": [3]}]
    assert completed["dynamic_batching"] == {}


def test_auto_complete_uses_device_iterations_and_replicas(tmp_path):
    folder = model_folder(tmp_path, "big", batch=2, device_iterations=3, replication_factor=2)
    completed = auto_complete(folder, _triton_dict("big"))
    assert completed["max_batch_size"] == 2 * 3 * 2
    assert completed["input"][0]["dims"] == [4] and completed["input"][0]["name"] == "input"


def test_auto_complete_without_batching_when_config_says_max_batch_size_0(tmp_path):
    text = 'backend: "poplar"\nmax_batch_size: 0\n'
    folder = model_folder(tmp_path, "flat", config=text, batch=2)
    completed = auto_complete(folder, _triton_dict("flat", text))
    assert completed["max_batch_size"] == 0
    assert completed["input"][0]["dims"] == [2, 4]
    assert completed["output"][0]["dims"] == [2, 3]
    assert "dynamic_batching" not in completed


def test_auto_complete_keeps_a_complete_config(tmp_path):
    text = BLOG_CONFIG.format(name="linear")
    folder = model_folder(tmp_path, "linear", config=text, name_map=NAME_MAP, batch=1)
    before = _triton_dict("linear", text)
    completed = auto_complete(folder, json.loads(json.dumps(before)))
    assert completed["max_batch_size"] == 8
    assert [i["name"] for i in completed["input"]] == ["features"]
    assert completed["dynamic_batching"] == before["dynamic_batching"]


def test_auto_complete_fills_missing_dims_and_types(tmp_path):
    text = 'backend: "poplar"\nmax_batch_size: 4\ninput [ { name: "features" } ]\n'
    folder = model_folder(tmp_path, "part", config=text, name_map=NAME_MAP, batch=1)
    completed = auto_complete(folder, _triton_dict("part", text))
    [entry] = completed["input"]
    assert (entry["name"], entry["data_type"], entry["dims"]) == ("features", "TYPE_FP32", [4])
    assert completed["output"][0]["name"] == "scores"


@pytest.mark.parametrize(
    "text, message",
    [
        (
            'backend: "poplar"\nmax_batch_size: 4\n'
            + 'input [ { name: "features" data_type: TYPE_INT32 dims: [ 4 ] } ]\n',
            "input 'features' has data_type TYPE_INT32 but the model's anchor 'input' is F32",
        ),
        (
            'backend: "poplar"\nmax_batch_size: 4\n'
            + 'input [ { name: "features" data_type: TYPE_FP32 dims: [ 5 ] } ]\n',
            "input 'features' has dims [5] but the model's anchor 'input' is F32[1, 4]",
        ),
        (
            'backend: "poplar"\nmax_batch_size: 4\n'
            + 'input [ { name: "nope" data_type: TYPE_FP32 dims: [ 4 ] } ]\n',
            "input 'nope' is not an input of the model",
        ),
    ],
)
def test_auto_complete_rejects_a_config_that_does_not_fit(tmp_path, text, message):
    folder = model_folder(tmp_path, "bad", config=text, name_map=NAME_MAP, batch=1)
    with pytest.raises(BackendError) as info:
        auto_complete(folder, _triton_dict("bad", text))
    assert str(info.value).startswith("model 'bad': ")
    assert message in str(info.value)


def test_a_bad_name_map_fails_the_load(tmp_path):
    folder = model_folder(tmp_path, "m", name_map={"nope": "x"})
    with pytest.raises(BackendError, match="renames 'nope', which is not an input or output"):
        auto_complete(folder, _triton_dict("m"))


def test_a_missing_file_fails_the_load(tmp_path):
    (tmp_path / "empty" / "1").mkdir(parents=True)
    with pytest.raises(BackendError, match="has no executable.popef"):
        auto_complete(tmp_path / "empty", _triton_dict("empty"))


def test_a_corrupt_file_fails_the_load(tmp_path):
    folder = model_folder(tmp_path, "m")
    path = folder / "1" / "executable.popef"
    with popef.Reader() as reader:
        reader.parse_file(path)
        [tensor] = reader.tensors()
        offset = tensor.blob.payload_offset
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(data)
    with pytest.raises(BackendError, match="tensor data 'w' is corrupt: checksum mismatch"):
        auto_complete(folder, _triton_dict("m"))


# -- initialize ----------------------------------------------------------------------------------


def test_initialize_checks_the_config_with_auto_complete_disabled(tmp_path):
    folder = model_folder(tmp_path, "m", name_map=NAME_MAP, batch=1)
    config = _triton_dict("m", max_batch_size=4)  # no inputs: Triton did not auto-complete
    with pytest.raises(
        BackendError, match="is missing from config.pbtxt .auto-complete is disabled"
    ):
        initialize(folder, config)


def test_initialize_takes_the_executor_from_the_config(tmp_path):
    text = BLOG_CONFIG.format(name="linear") + (
        'parameters [ { key: "executor" value: { string_value: "ipu-model" } },\n'
        '  { key: "something_else" value: { string_value: "1" } } ]\n'
    )
    folder = model_folder(tmp_path, "linear", config=text, name_map=NAME_MAP, batch=1)
    model = initialize(folder, auto_complete(folder, _triton_dict("linear", text)))
    try:
        assert model.runner.executor.name == "ipu-model"
        assert any(
            level == "warn" and "'something_else'" in message
            for level, message in pb.Logger.messages
        )
    finally:
        model.finalize()


def test_the_default_executor_is_cpu(blog_model):
    assert blog_model.runner.executor.name == "cpu"


def test_an_unknown_executor_fails_the_load(tmp_path):
    text = BLOG_CONFIG.format(name="linear") + (
        'parameters [ { key: "executor" value: { string_value: "warp-drive" } } ]\n'
    )
    folder = model_folder(tmp_path, "linear", config=text, name_map=NAME_MAP, batch=1)
    with pytest.raises(BackendError, match="warp-drive"):
        initialize(folder, _triton_dict("linear", text))


def test_a_python_backend_model_py_may_import_the_backend(tmp_path):
    """backend: "python" with 1/model.py importing TritonPythonModel serves the same file."""
    folder = model_folder(tmp_path, "shim", name_map=NAME_MAP, batch=2)
    (folder / "1" / "model.py").write_text("from popef.triton.backend import TritonPythonModel\n")
    config = _triton_dict("shim", backend="python", runtime="", default_model_filename="model.py")
    completed = auto_complete(folder, config)
    assert completed["backend"] == "python" and completed["max_batch_size"] == 2
    model = initialize(folder, completed)
    try:
        [response] = model.execute([request(np.ones((1, 4)))])
        assert not response.has_error()
    finally:
        model.finalize()


def test_finalize_closes_the_runner(blog_model):
    runner = blog_model.runner
    blog_model.finalize()
    with pytest.raises(ExecutionError, match="closed"):
        runner.execute({"input": np.zeros((1, 4), np.float32)})
    blog_model.finalize()  # twice is fine


# -- execute -------------------------------------------------------------------------------------


def test_execute_runs_all_requests_as_one_batch_and_splits_the_results(blog_model):
    counting = blog_model.runner = CountingRunner(blog_model.runner)
    rng = np.random.default_rng(0)
    batches = [rng.standard_normal((rows, 4)).astype(np.float32) for rows in (1, 3, 2)]
    responses = blog_model.execute([request(x) for x in batches])
    assert len(counting.calls) == 1
    assert counting.calls[0]["input"].shape == (6, 4)  # 6 steps of the (1, 4) anchor
    for x, response in zip(batches, responses):
        assert not response.has_error()
        [scores] = response.output_tensors()
        assert scores.name() == "scores"
        assert scores.as_numpy().dtype == np.float32 and scores.as_numpy().shape == (len(x), 3)
        np.testing.assert_allclose(scores.as_numpy(), reference(x), rtol=1e-5)


def test_execute_pads_to_whole_steps(tmp_path):
    folder = model_folder(tmp_path, "two", batch=2)  # micro batch 2
    model = initialize(folder, auto_complete(folder, _triton_dict("two", max_batch_size=4)))
    try:
        counting = model.runner = CountingRunner(model.runner)
        x = np.arange(12, dtype=np.float32).reshape(3, 4) / 10
        [response] = model.execute([request(x, name="input")])
        assert counting.calls[0]["input"].shape == (4, 4)  # 3 rows padded to 2 steps of 2
        assert counting.steps == [2]
        np.testing.assert_allclose(response.output_tensors()[0].as_numpy(), reference(x), rtol=1e-5)
    finally:
        model.finalize()


def test_execute_with_replicas(tmp_path):
    folder = model_folder(tmp_path, "rep", batch=2, replication_factor=2)
    model = initialize(folder, auto_complete(folder, _triton_dict("rep")))
    try:
        assert model.plan.step_rows == 4 and model.plan.max_batch_size == 4
        x = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
        responses = model.execute([request(x[:1], name="input"), request(x[1:], name="input")])
        got = np.concatenate([r.output_tensors()[0].as_numpy() for r in responses])
        np.testing.assert_allclose(got, reference(x), rtol=1e-5)
    finally:
        model.finalize()


def test_execute_without_batching_runs_each_request(tmp_path):
    folder = tmp_path / "vec"
    vector_model(folder / "1" / "executable.popef")
    model = initialize(folder, auto_complete(folder, _triton_dict("vec")))
    try:
        assert model.plan.max_batch_size == 0
        counting = model.runner = CountingRunner(model.runner)
        xs = [np.full(4, v, np.float32) for v in (1.0, 2.0)]
        responses = model.execute([request(x, name="x") for x in xs])
        assert len(counting.calls) == 2
        for x, r in zip(xs, responses):
            np.testing.assert_allclose(r.output_tensors()[0].as_numpy(), x @ WEIGHTS, rtol=1e-5)
        [bad] = model.execute([request(np.ones((1, 4)), name="x")])
        assert "expected [4], got [1, 4]" in bad.error().message()
    finally:
        model.finalize()


def test_requested_outputs(blog_model):
    [ok] = blog_model.execute([request(np.ones((1, 4)), requested=["scores"])])
    assert [t.name() for t in ok.output_tensors()] == ["scores"]
    [bad] = blog_model.execute([request(np.ones((1, 4)), requested=["nope"])])
    assert bad.has_error() and not bad.output_tensors()
    assert "unexpected inference output 'nope' for model 'linear'" in bad.error().message()


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda: request(np.ones((1, 5))),
            "unexpected shape for input 'features' for model 'linear': "
            "expected [-1, 4], got [1, 5]",
        ),
        (
            lambda: request(np.ones(4)),
            "unexpected shape for input 'features' for model 'linear': expected [-1, 4], got [4]",
        ),
        (
            lambda: pb.InferenceRequest([pb.Tensor("features", np.ones((1, 4), np.float64))]),
            "inference input 'features' data-type is 'FP64', but model 'linear' expects 'FP32'",
        ),
        (
            lambda: request(None, extra=[pb.Tensor("other", np.ones((1, 4), np.float32))]),
            "unexpected inference input 'other' for model 'linear'; its inputs are 'features'",
        ),
        (
            lambda: request(None),
            "expected 1 inputs but got 0 inputs for model 'linear': missing input 'features'",
        ),
        (
            lambda: request(np.ones((9, 4))),
            "inference request batch-size must be <= 8 for 'linear', got 9",
        ),
        (
            lambda: request(np.ones((0, 4))),
            "inference request batch-size must be >= 1 for 'linear', got 0",
        ),
    ],
)
def test_a_bad_request_gets_its_own_error(blog_model, make, message):
    good = np.full((2, 4), 0.5, np.float32)
    responses = blog_model.execute([request(good), make(), request(good[:1])])
    assert len(responses) == 3
    assert not responses[0].has_error() and not responses[2].has_error()
    np.testing.assert_allclose(
        responses[2].output_tensors()[0].as_numpy(), reference(good[:1]), rtol=1e-5
    )
    error = responses[1].error()
    assert error.message() == message
    assert error.code() == pb.TritonError.INVALID_ARG
    assert responses[1].output_tensors() == []


def test_a_failing_batch_is_retried_request_by_request(blog_model):
    counting = blog_model.runner = CountingRunner(blog_model.runner, fail_on=7.0)
    xs = [np.full((1, 4), v, np.float32) for v in (1.0, 7.0, 2.0)]
    responses = blog_model.execute([request(x) for x in xs])
    assert len(counting.calls) == 4  # the batch, then each alone
    assert not responses[0].has_error() and not responses[2].has_error()
    assert responses[1].error().message() == "marker value in the batch"
    assert responses[1].error().code() == pb.TritonError.INTERNAL


def test_execute_never_raises(blog_model):
    class Broken:
        def inputs(self):
            raise RuntimeError("boom")

    responses = blog_model.execute([Broken(), request(np.ones((1, 4)))])
    assert responses[0].error().message() == "RuntimeError: boom"
    assert not responses[1].has_error()
    assert blog_model.execute([]) == []


def test_batches_never_exceed_max_batch_size(blog_model):
    counting = blog_model.runner = CountingRunner(blog_model.runner)
    responses = blog_model.execute([request(np.ones((5, 4))), request(np.ones((5, 4)))])
    assert [c["input"].shape[0] for c in counting.calls] == [5, 5]
    assert not any(r.has_error() for r in responses)


def test_the_backend_agrees_with_the_runtime(tmp_path):
    folder = model_folder(tmp_path, "m", batch=1)
    model = initialize(folder, auto_complete(folder, _triton_dict("m")))
    try:
        x = np.random.default_rng(1).standard_normal((1, 4)).astype(np.float32)
        [response] = model.execute([request(x, name="input")])
        with ModelRunner(folder / "1" / "executable.popef") as runner:
            expected = runner.execute({"input": x})["out"]
        np.testing.assert_array_equal(response.output_tensors()[0].as_numpy(), expected)
    finally:
        model.finalize()


def test_triton_error_without_codes():
    class OldError:
        def __init__(self, message):
            self.text = message

    class OldUtils:
        TritonError = OldError

    error = backend._triton_error(OldUtils, "m", backend.Status.INVALID_ARG)
    assert isinstance(error, OldError) and error.text == "m"


def test_graphcore_delay_knobs(tmp_path, monkeypatch):
    import time
    import types

    slept: list[float] = []  # the backend's sleeps, recorded rather than timed
    clock = types.SimpleNamespace(**vars(time))
    clock.sleep = slept.append
    monkeypatch.setattr(backend, "time", clock)
    text = BLOG_CONFIG.format(name="slow") + (
        'parameters [ { key: "execute_delay_ms" value: { string_value: "40" } },\n'
        '  { key: "instance_wise_delay_multiplier" value: { string_value: "2" } } ]\n'
    )
    folder = model_folder(tmp_path, "slow", config=text, name_map=NAME_MAP, batch=1)
    config = auto_complete(folder, _triton_dict("slow", text))
    model = TritonPythonModel()
    model.initialize(
        {
            "model_config": json.dumps(config),
            "model_repository": str(folder),
            "model_version": "1",
            "model_name": "slow",
            "model_instance_name": "slow_0_1",
        }
    )
    try:
        assert model.instance_index == 1
        [response] = model.execute([request(np.ones((1, 4)))])
        assert slept == [pytest.approx(0.08)]  # max(2 x 1, 1) x 40 ms
        assert not response.has_error()
    finally:
        model.finalize()
