"""The ingress's forwarding without a cluster: which failures are sent again (a replica lost
before it answered) and which are not, and a request carried to an ASGI app and back."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from popef.serving.ray.forwarding import HttpRequest, call_asgi, with_retries


class Lost(Exception):
    """Stands for Ray's errors of a lost replica."""


def _flaky(failures: list[BaseException], answer: str = "answer"):
    """A call that raises ``failures`` one after the other, then answers; and its calls."""
    calls = []

    async def call():
        calls.append(len(calls))
        if failures:
            raise failures.pop(0)
        return answer

    return call, calls


def _retrying(call, **kwargs):
    retried = []
    result = asyncio.run(
        with_retries(
            call,
            "test",
            first_pause_s=0,
            lost=lambda exc: isinstance(exc, Lost),
            on_retry=lambda: retried.append(1),
            **kwargs,
        )
    )
    return result, len(retried)


@given(st.integers(min_value=0, max_value=4))
@settings(max_examples=10, deadline=None)
def test_a_lost_replica_is_retried_until_one_answers(losses):
    call, calls = _flaky([Lost() for _ in range(losses)])
    assert _retrying(call, attempts=5) == ("answer", losses)
    assert len(calls) == losses + 1


def test_retries_end_after_the_attempts_with_the_last_loss():
    call, calls = _flaky([Lost("first"), Lost("second"), Lost("third")])
    with pytest.raises(Lost, match="second"):
        _retrying(call, attempts=2)
    assert len(calls) == 2


@pytest.mark.parametrize("error", [ValueError("an answer in error"), RuntimeError("refused")])
def test_other_failures_are_not_retried(error):
    call, calls = _flaky([error])
    with pytest.raises(type(error)):
        _retrying(call)
    assert len(calls) == 1


def test_ray_errors_of_a_lost_replica_are_the_retried_ones():
    exceptions = pytest.importorskip("ray.exceptions")
    from popef.serving.ray.forwarding import is_replica_lost

    assert is_replica_lost(exceptions.ActorDiedError())
    assert is_replica_lost(exceptions.ActorUnavailableError("gone", None))
    assert is_replica_lost(exceptions.RayActorError())
    assert not is_replica_lost(ValueError("bad input"))
    assert not is_replica_lost(exceptions.RayTaskError("f", "traceback", ValueError("bad")))


def test_call_asgi_carries_the_request_and_the_response():
    seen = {}

    async def app(scope, receive, send):
        seen["scope"] = scope
        message = await receive()
        seen["body"] = message["body"]
        await send(
            {"type": "http.response.start", "status": 201, "headers": [(b"x-answer", b"yes")]}
        )
        await send({"type": "http.response.body", "body": b"he", "more_body": True})
        await send({"type": "http.response.body", "body": b"llo"})

    request = HttpRequest(
        "POST", "/v2/models/m/infer", b"a=1", ((b"content-type", b"application/json"),), b"{}"
    )
    response = asyncio.run(call_asgi(app, request))
    assert (response.status, response.headers, response.body) == (
        201,
        [(b"x-answer", b"yes")],
        b"hello",
    )
    scope = seen["scope"]
    assert (scope["method"], scope["path"], scope["query_string"]) == (
        "POST",
        "/v2/models/m/infer",
        b"a=1",
    )
    assert scope["headers"] == [(b"content-type", b"application/json")]
    assert seen["body"] == b"{}"


def test_call_asgi_with_popef_serves_app_answers_in_tritons_words(tmp_path):
    """The replica's own HTTP app through :func:`call_asgi`: an unknown model."""
    from popef.serving.core import InferenceCore
    from popef.serving.http_app import create_app
    from popef.serving.repository import ModelRepository

    core = InferenceCore(ModelRepository([str(tmp_path)]))
    core.start()
    try:
        response = asyncio.run(
            call_asgi(
                create_app(core),
                HttpRequest("POST", "/v2/models/none/infer", body=b'{"inputs": []}'),
            )
        )
    finally:
        core.close(timeout=10)
    assert response.status == 404
    assert response.body == b'{"error":"Request for unknown model: \'none\' is not found"}'
