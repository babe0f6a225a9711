"""``popef serve`` checks a request once: popef.servable.validation refuses bad input with its
message, and the runtime gets the batch through ModelRunner.execute_checked, with the steps
the runtime's own checks would have found, and never checks the inputs again."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from popef.runtime import ModelRunner
from popef.runtime.requests import RequestChecks

from .test_protocol import grpc_input, http_input, rows


@pytest.fixture()
def spied(monkeypatch):
    """Every execute_checked call, checked against what RequestChecks finds for its feed; a
    call of RequestChecks.check_inputs by the server is a failure."""
    check_inputs = RequestChecks.check_inputs
    seen: list[tuple[str, int]] = []
    problems: list[str] = []
    lock = threading.Lock()

    def unexpected(self, inputs):
        problems.append(f"model '{self.model.name}': the runtime checked a served request")
        return check_inputs(self, inputs)

    def spy(method):
        def wrapper(runner, feed, steps):
            _, expected = check_inputs(RequestChecks(runner.loaded), feed)
            with lock:
                seen.append((runner.model.name, steps))
                if steps != expected:
                    problems.append(f"{runner.model.name}: steps {steps}, expected {expected}")
            return method(runner, feed, steps)

        return wrapper

    monkeypatch.setattr(RequestChecks, "check_inputs", unexpected)
    monkeypatch.setattr(ModelRunner, "execute_checked", spy(ModelRunner.execute_checked))
    monkeypatch.setattr(
        ModelRunner, "execute_checked_async", spy(ModelRunner.execute_checked_async)
    )
    yield seen, problems


@pytest.mark.parametrize(
    "model, count, input_name",
    [
        ("simple", 3, "x"),
        ("micro", 3, "input"),
        ("micro", 1, "input"),
        ("async", 2, "input"),
        ("ipu", 4, "input"),
    ],
)
def test_served_requests_reach_the_runtime_checked_once(
    server, models, spied, model, count, input_name
):
    seen, problems = spied
    client = grpcclient.InferenceServerClient(server.url("grpc"))
    try:
        x = rows(count, seed=count)
        output = "probs" if model == "simple" else "out"
        got = client.infer(model, [grpc_input(input_name, x)]).as_numpy(output)
    finally:
        client.close()
    np.testing.assert_allclose(got, models[model].reference(x), rtol=1e-5, atol=1e-6)
    assert seen and not problems


def test_an_unbatched_model_runs_one_step(server, models, spied):
    seen, problems = spied
    client = httpclient.InferenceServerClient(server.url("http"))
    try:
        x = rows(1)
        got = client.infer("nobatch", [http_input("input", x)]).as_numpy("out")
    finally:
        client.close()
    np.testing.assert_allclose(got, models["nobatch"].reference(x), rtol=1e-5, atol=1e-6)
    assert seen == [("tiny", 1)] and not problems


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda: http_input("x", rows(2).astype(np.float64), "FP64"),
            "inference input 'x' data-type is 'FP64', but model 'simple' expects 'FP32'",
        ),
        (
            lambda: http_input("x", np.ones((2, 5), np.float32)),
            "unexpected shape for input 'x' for model 'simple': expected [-1, 4], got [2, 5]",
        ),
        (
            lambda: http_input("x", rows(9)),
            "inference request batch-size must be <= 8 for 'simple', got 9",
        ),
    ],
)
def test_bad_input_is_refused_once_by_the_validation_message(server, spied, make, message):
    seen, problems = spied
    client = httpclient.InferenceServerClient(server.url("http"))
    try:
        with pytest.raises(InferenceServerException) as refused:
            client.infer("simple", [make()])
    finally:
        client.close()
    assert refused.value.message() == message
    assert seen == [] and not problems
