"""Requests as plain values, and the retry rule of the ingress (no Ray import here).

The application's ingress (:mod:`popef.serving.ray.deployment`) takes each request from Ray's
proxies and forwards it to a ``PopefServer`` replica through a deployment handle. When that
replica's process or node dies before it answers, the request is sent again to another
replica. This is safe because inference has no effect a client could see except its answer:
a replica that died produced no answer, changed no state any other replica reads, and the
only state it held (statistics, batch queues) died with it.

What is retried: the errors by which Ray says the replica actor is gone or unreachable
(``RayActorError`` and its subclasses ``ActorDiedError`` and ``ActorUnavailableError``, raised
directly or as the cause of a ``RayTaskError``), at most :data:`ATTEMPTS` times with a short
growing pause. Nothing else is: an answer the replica gave (any status, errors included) goes
back as it is, and so do Ray's own refusals (back pressure, no replica of the deployment).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

__all__ = [
    "ATTEMPTS",
    "HttpRequest",
    "HttpResponse",
    "call_asgi",
    "is_replica_lost",
    "with_retries",
]

log = logging.getLogger("popef.serving")

#: tries of one request (the first and the retries): a node's death takes one replica, and Ray
#: may still offer that replica to a retry until it learns of the death
ATTEMPTS = 5
#: the pause before the first retry, doubled before each next one (seconds)
FIRST_PAUSE_S = 0.05

T = TypeVar("T")


@dataclass(frozen=True)
class HttpRequest:
    """One buffered HTTP request, as the ingress forwards it to a replica."""

    method: str
    path: str
    query_string: bytes = b""
    headers: tuple[tuple[bytes, bytes], ...] = ()
    body: bytes = b""
    http_version: str = "1.1"
    scheme: str = "http"
    client: tuple[str, int] | None = None


@dataclass
class HttpResponse:
    """One buffered HTTP response, as a replica returns it to the ingress."""

    status: int = 500
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""


async def call_asgi(app, request: HttpRequest) -> HttpResponse:
    """``request`` answered by the ASGI ``app`` in this process."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": request.http_version,
        "method": request.method,
        "scheme": request.scheme,
        "path": request.path,
        "raw_path": request.path.encode("latin-1", "replace"),
        "query_string": request.query_string,
        "root_path": "",
        "headers": list(request.headers),
        "client": request.client,
        "server": None,
    }
    sent_body = False
    finished = asyncio.Event()
    response = HttpResponse()
    chunks: list[bytes] = []

    async def receive():
        nonlocal sent_body
        if not sent_body:
            sent_body = True
            return {"type": "http.request", "body": request.body, "more_body": False}
        await finished.wait()  # the app waits for a disconnect: none comes before the end
        return {"type": "http.disconnect"}

    async def send(message):
        if message["type"] == "http.response.start":
            response.status = message["status"]
            response.headers = [(bytes(k), bytes(v)) for k, v in message.get("headers", ())]
        elif message["type"] == "http.response.body":
            chunks.append(bytes(message.get("body", b"")))
            if not message.get("more_body", False):
                finished.set()

    try:
        await app(scope, receive, send)
    finally:
        finished.set()
    response.body = b"".join(chunks)
    return response


def is_replica_lost(exc: BaseException) -> bool:
    """Whether ``exc`` says the replica actor died or cannot be reached (so it gave no
    answer), as opposed to an answer or a refusal."""
    from ray.exceptions import RayActorError, RayTaskError

    if isinstance(exc, RayActorError):
        return True
    return isinstance(exc, RayTaskError) and isinstance(getattr(exc, "cause", None), RayActorError)


async def with_retries(
    call: Callable[[], Awaitable[T]],
    what: str,
    *,
    attempts: int = ATTEMPTS,
    first_pause_s: float = FIRST_PAUSE_S,
    lost: Callable[[BaseException], bool] = is_replica_lost,
    logger: logging.Logger = log,
    on_retry: Callable[[], None] | None = None,
) -> T:
    """``await call()``, again (up to ``attempts`` in all) while it fails because the replica
    was lost (``lost``); other errors, and the last loss, are raised. Each retry is logged
    to ``logger`` and reported to ``on_retry``."""
    pause = first_pause_s
    for attempt in range(1, attempts + 1):
        try:
            return await call()
        except Exception as exc:
            if attempt == attempts or not lost(exc):
                raise
            logger.warning(
                "%s: the replica was lost before answering (%s), trying another (%d of %d)",
                what,
                _first_line(exc),
                attempt + 1,
                attempts,
            )
            if on_retry is not None:
                on_retry()
        await asyncio.sleep(pause)
        pause *= 2
    raise AssertionError("unreachable")  # pragma: no cover


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
