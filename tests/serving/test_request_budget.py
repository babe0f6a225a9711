"""The HTTP service's budget of request bytes in flight, and requests whose client goes away.

The app is driven through ASGI directly, with request bodies sent chunk by chunk from queues,
so a test decides when each request's bytes arrive; nothing depends on timing but the short
budget wait, and no test asserts how long anything took.
"""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from popef.serving.budget import ByteBudget
from popef.serving.errors import ServingError, Status
from popef.serving.http_app import create_app

DEADLINE = 60.0


class LevelCapture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[tuple[int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.levelno, record.getMessage()))


class IndexOnlyCore:
    """The one core call these tests make: the repository index."""

    def repository_index(self, ready_only: bool = False) -> list[dict]:
        return []


class Client:
    """One HTTP request to an ASGI app, its body sent when the test says."""

    def __init__(self, app, path: str, length: int) -> None:
        self.chunks: asyncio.Queue = asyncio.Queue()
        self.status: int | None = None
        self.body = b""
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(),
                 "query_string": b"", "root_path": "", "client": ("127.0.0.1", 1),
                 "server": ("127.0.0.1", 80),
                 "headers": [(b"content-length", str(length).encode()),
                             (b"content-type", b"application/json")]}
        self.task = asyncio.ensure_future(app(scope, self._receive, self._send))

    def send(self, data: bytes, *, more: bool = True) -> None:
        self.chunks.put_nowait({"type": "http.request", "body": data, "more_body": more})

    def disconnect(self) -> None:
        self.chunks.put_nowait({"type": "http.disconnect"})

    async def _receive(self):
        return await self.chunks.get()

    async def _send(self, message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        elif message["type"] == "http.response.body":
            self.body += message.get("body", b"")

    async def response(self) -> tuple[int, dict]:
        await asyncio.wait_for(self.task, DEADLINE)
        return self.status, json.loads(self.body) if self.body else None


def index_app(**limits):
    return create_app(IndexOnlyCore(), **limits)


BODY = b'{"ready": false}' + b" " * 84  # 100 bytes


async def until(condition) -> None:
    """Let the event loop run until ``condition()`` holds (fails after DEADLINE)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE
    while not condition():
        assert loop.time() < deadline, "the condition did not hold in time"
        await asyncio.sleep(0.001)


def test_a_request_over_the_budget_waits_then_gets_503():
    async def scenario():
        app = index_app(max_input_size=100, max_inflight_bytes=150, inflight_wait=0.05)
        first = Client(app, "/v2/repository/index", 100)
        first.send(BODY[:90])  # 90 of 150 bytes held, the rest of its body not yet sent
        await asyncio.sleep(0)
        second = Client(app, "/v2/repository/index", 100)
        second.send(BODY)  # needs 100 more: over the budget until the first one is answered
        status, answer = await second.response()
        assert status == 503
        assert "--http-max-inflight-bytes" in answer["error"]
        first.send(BODY[90:], more=False)
        assert await first.response() == (200, [])
        # everything was given back: a request of the whole body size fits again
        third = Client(app, "/v2/repository/index", 100)
        third.send(BODY, more=False)
        assert await third.response() == (200, [])

    asyncio.run(scenario())


def test_a_waiting_request_goes_on_when_bytes_are_given_back():
    async def scenario():
        app = index_app(max_input_size=100, max_inflight_bytes=100, inflight_wait=DEADLINE)
        first = Client(app, "/v2/repository/index", 100)
        first.send(BODY[:60])
        await asyncio.sleep(0)
        second = Client(app, "/v2/repository/index", 100)
        second.send(BODY, more=False)
        for _ in range(10):
            await asyncio.sleep(0)
        assert not second.task.done()  # waiting for the first request's bytes
        first.send(BODY[60:], more=False)
        assert await first.response() == (200, [])
        assert await second.response() == (200, [])

    asyncio.run(scenario())


def test_the_budget_must_hold_the_largest_body():
    with pytest.raises(ValueError, match="at least the largest request body"):
        index_app(max_input_size=100, max_inflight_bytes=99)


def test_byte_budget_is_first_come_first_served_and_gives_back_on_cancel():
    async def scenario():
        budget = ByteBudget(10, wait=None)
        holder = budget.reservation()
        await holder.grow(8)
        big, small = budget.reservation(), budget.reservation()
        big_task = asyncio.ensure_future(big.grow(5))
        await asyncio.sleep(0)
        small_task = asyncio.ensure_future(small.grow(1))
        await asyncio.sleep(0)
        # 1 byte would fit, but the 5-byte request came first
        assert not small_task.done()
        big_task.cancel()
        await until(small_task.done)
        assert (budget.in_use, small.held) == (9, 1)
        holder.release()
        small.release()
        assert budget.in_use == 0
        # one reservation never needs more than the whole budget
        whole = budget.reservation()
        await whole.grow(25)
        assert whole.held == 10
        whole.release()

    asyncio.run(scenario())


def test_byte_budget_wait_expires_as_unavailable():
    async def scenario():
        budget = ByteBudget(10, wait=0.01)
        holder = budget.reservation()
        await holder.grow(10)
        with pytest.raises(ServingError) as error:
            await budget.reservation().grow(1)
        assert error.value.status is Status.UNAVAILABLE
        holder.release()
        assert budget.in_use == 0

    asyncio.run(scenario())


def test_a_client_that_disconnects_mid_body_is_one_debug_line():
    logger = logging.getLogger("popef.serving")
    capture = LevelCapture()
    old_level = logger.level
    logger.addHandler(capture)
    logger.setLevel(logging.DEBUG)

    async def scenario():
        app = index_app(max_input_size=100, max_inflight_bytes=100)
        client = Client(app, "/v2/repository/index", 100)
        client.send(BODY[:10])
        client.disconnect()
        await client.response()
        # its bytes were given back
        again = Client(app, "/v2/repository/index", 100)
        again.send(BODY, more=False)
        assert await again.response() == (200, [])

    try:
        asyncio.run(scenario())
    finally:
        logger.removeHandler(capture)
        logger.setLevel(old_level)
    message = "HTTP POST /v2/repository/index: the client disconnected before its request was read"
    assert capture.lines == [(logging.DEBUG, message)]
