"""The ``poplar`` backend checks a request once: popef.servable.validation refuses bad input
with the message ``popef serve`` gives, and the batch reaches the runtime through
ModelRunner.execute_checked, which does not check the inputs again."""

from __future__ import annotations

import numpy as np
import pytest

from popef.runtime.requests import RequestChecks

from . import fake_pb_utils as pb
from .helpers import model_folder, reference
from .test_backend import (
    _triton_dict,
    auto_complete,
    fake_pb_utils,
    initialize,
    request,
)

__all__ = ["fake_pb_utils"]  # the autouse fixture of test_backend, used here too


@pytest.fixture()
def unchecked(monkeypatch):
    """Fail a test in which the runtime checks a request's inputs itself."""
    calls: list[str] = []

    def refuse(self, inputs):
        calls.append(self.model.name)
        raise AssertionError("the runtime checked a request the backend had checked")

    monkeypatch.setattr(RequestChecks, "check_inputs", refuse)
    return calls


@pytest.mark.parametrize("rows", [1, 3, 4])
def test_requests_reach_the_runtime_without_a_second_check(tmp_path, unchecked, rows):
    folder = model_folder(tmp_path, "two", batch=2)  # micro batch 2: 3 rows pad to 2 steps
    model = initialize(folder, auto_complete(folder, _triton_dict("two", max_batch_size=4)))
    try:
        x = np.linspace(-1, 1, rows * 4, dtype=np.float32).reshape(rows, 4)
        [response] = model.execute([request(x, name="input")])
        assert not response.has_error(), response.error().message()
        np.testing.assert_allclose(response.output_tensors()[0].as_numpy(), reference(x), rtol=1e-5)
    finally:
        model.finalize()
    assert unchecked == []


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda: request(np.ones((5, 4)), name="input"),
            "inference request batch-size must be <= 4 for 'two', got 5",
        ),
        (
            lambda: request(np.ones((2, 3)), name="input"),
            "unexpected shape for input 'input' for model 'two': expected [-1, 4], got [2, 3]",
        ),
        (
            lambda: pb.InferenceRequest([pb.Tensor("input", np.ones((1, 4), np.float64))]),
            "inference input 'input' data-type is 'FP64', but model 'two' expects 'FP32'",
        ),
    ],
)
def test_bad_input_is_refused_once_with_the_validation_message(tmp_path, unchecked, make, message):
    folder = model_folder(tmp_path, "two", batch=2)
    model = initialize(folder, auto_complete(folder, _triton_dict("two", max_batch_size=4)))
    try:
        [response] = model.execute([make()])
    finally:
        model.finalize()
    assert response.error().message() == message
    assert response.error().code() == pb.TritonError.INVALID_ARG
    assert unchecked == []
