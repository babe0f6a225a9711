"""The poplar backend under hostile model folders, configs and requests (fake ``pb_utils``):
a :class:`BackendError` naming what is wrong at load, an error response per bad request."""

from __future__ import annotations

import os

import numpy as np
import pytest

pytest.importorskip("tritonclient.grpc", reason="the backend reads configs with tritonclient")

from popef.servable import MAX_CONFIG_BYTES
from popef.triton.backend import BackendError, locate_for_initialize

from . import fake_pb_utils as pb
from .helpers import model_folder, reference
from .test_backend import (  # noqa: F401 - fake_pb_utils is an autouse fixture
    BLOG_CONFIG,
    NAME_MAP,
    _triton_dict,
    auto_complete,
    blog_model,
    fake_pb_utils,
    initialize,
    request,
)


def _folder(tmp_path, text: str = ""):
    config = BLOG_CONFIG.format(name="linear") + text
    folder = model_folder(tmp_path, "linear", config=config, name_map=NAME_MAP, batch=1)
    return folder, _triton_dict("linear", config)


@pytest.mark.parametrize("key", ["source", "executor", "executable", "verify", "limits"])
def test_runner_keywords_are_not_executor_options(tmp_path, key):
    """``executor.source`` used to escape as a TypeError, ``executor.executable`` to pick
    another model of the files, ``executor.verify`` to reach the checksum switch: they are
    the executor's unknown options."""
    folder, config = _folder(
        tmp_path, f'parameters [ {{ key: "executor.{key}" value: {{ string_value: "x" }} }} ]\n'
    )
    message = f"executor 'cpu' has no option '{key}' (options: "
    for load in (auto_complete, initialize):
        with pytest.raises(BackendError) as info:
            load(folder, config)
        assert message in info.value.message


@pytest.mark.parametrize(
    "value, message",
    [
        ("-3", "option 'threads' must be an integer >= 1, got -3"),
        ("many", "option 'threads' must be an integer >= 1, got 'many'"),
        ("", "option 'threads' must be an integer >= 1"),
    ],
)
def test_bad_executor_options_fail_the_load(tmp_path, value, message):
    folder, config = _folder(
        tmp_path,
        f'parameters [ {{ key: "executor.threads" value: {{ string_value: "{value}" }} }} ]\n',
    )
    with pytest.raises(BackendError, match=message):
        initialize(folder, config)


def test_a_fifo_config_is_refused_not_waited_on(tmp_path):
    """auto_complete_config reads config.pbtxt for max_batch_size: a FIFO there used to block
    the stub for ever."""
    folder, config = _folder(tmp_path)
    (folder / "config.pbtxt").unlink()
    os.mkfifo(folder / "config.pbtxt")
    with pytest.raises(BackendError) as info:
        auto_complete(folder, config)
    assert info.value.message == (
        "model 'linear': config.pbtxt is not a regular file: found a FIFO"
    )


def test_an_oversized_config_is_refused(tmp_path):
    folder, config = _folder(tmp_path)
    with open(folder / "config.pbtxt", "a", encoding="utf-8") as f:
        f.write("#" * MAX_CONFIG_BYTES)
    with pytest.raises(BackendError, match="config.pbtxt is .* bytes, over the limit of "):
        auto_complete(folder, config)


@pytest.mark.parametrize("version", ["/tmp", "..", ".", "", "1/../..", "a\\b"])
def test_the_version_is_a_folder_of_the_model(tmp_path, version):
    """An absolute model_version would make the version folder that path (Path's join)."""
    with pytest.raises(BackendError, match="model_version must be a folder name"):
        locate_for_initialize({"model_repository": str(tmp_path), "model_version": version})
    assert (
        locate_for_initialize({"model_repository": str(tmp_path), "model_version": "3"}).version_dir
        == tmp_path / "3"
    )


def test_a_fifo_model_file_is_refused(tmp_path):
    folder, config = _folder(tmp_path)
    (folder / "1" / "executable.popef").unlink()
    os.mkfifo(folder / "1" / "executable.popef")
    for load in (auto_complete, initialize):
        with pytest.raises(BackendError, match="is not a regular file: found a FIFO"):
            load(folder, config)


class _Tensor:
    """A tensor whose ``as_numpy`` misbehaves as a broken stub might."""

    def __init__(self, value):
        self.value = value

    def name(self):
        return "features"

    def as_numpy(self):
        if isinstance(self.value, BaseException):
            raise self.value
        return self.value


def test_odd_tensors_get_their_own_error_and_the_others_run(blog_model):  # noqa: F811
    good = np.full((1, 4), 0.5, np.float32)
    odd = [
        pb.InferenceRequest([pb.Tensor("features", np.array([[b"a", b"b", b"c", b"d"]], object))]),
        pb.InferenceRequest([pb.Tensor("features", np.zeros((1, 4), [("a", "f4")]))]),
        pb.InferenceRequest([pb.Tensor("features", np.array(1, np.float32))]),
        pb.InferenceRequest([_Tensor(RuntimeError("stub broke"))]),
        pb.InferenceRequest([_Tensor([[1.0, 2.0, 3.0, 4.0]])]),
        pb.InferenceRequest([pb.Tensor("features", good)], ["scores", "scores"]),
        pb.InferenceRequest([pb.Tensor("features", good), pb.Tensor("features", good)]),
    ]
    responses = blog_model.execute([request(good), *odd, request(good)])
    assert len(responses) == len(odd) + 2
    for response in (responses[0], responses[-1]):
        assert not response.has_error()
        np.testing.assert_allclose(
            response.output_tensors()[0].as_numpy(), reference(good), rtol=1e-5
        )
    for response in responses[1:-1]:
        assert response.has_error() and response.output_tensors() == []
        assert response.error().message()
