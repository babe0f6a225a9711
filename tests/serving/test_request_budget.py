"""The HTTP service's budget of request bytes in flight, and requests whose client goes away.

The app is driven through ASGI directly, with request bodies sent chunk by chunk from queues,
so a test decides when each request's bytes arrive; nothing depends on timing but the short
budget wait, and no test asserts how long anything took.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time

import pytest

from popef.servable.errors import ServingError, Status
from popef.serving.budget import ByteBudget
from popef.serving.connections import SERVER_PAUSE
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

    def __init__(self, app, path: str, length: int, *, encoding: str = "") -> None:
        self.chunks: asyncio.Queue = asyncio.Queue()
        self.status: int | None = None
        self.body = b""
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 80),
            "headers": [
                (b"content-length", str(length).encode()),
                (b"content-type", b"application/json"),
            ],
        }
        if encoding:
            scope["headers"].append((b"content-encoding", encoding.encode()))
        self.scope = scope
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
    # every byte counted against the budget, unless a test says otherwise
    return create_app(IndexOnlyCore(), **{"free_body_bytes": 0, **limits})


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


def test_a_declared_but_unsent_body_holds_nothing():
    async def scenario():
        app = index_app(max_input_size=100, max_inflight_bytes=100, inflight_wait=0.05)
        stalled = [Client(app, "/v2/repository/index", 100) for _ in range(3)]
        await asyncio.sleep(0)
        client = Client(app, "/v2/repository/index", 100)
        client.send(BODY, more=False)
        assert await client.response() == (200, [])
        for request in stalled:
            request.disconnect()
            await request.response()

    asyncio.run(scenario())


def test_small_bodies_never_wait_for_the_budget():
    async def scenario():
        app = create_app(
            IndexOnlyCore(),
            max_input_size=1000,
            max_inflight_bytes=1000,
            inflight_wait=DEADLINE,
            free_body_bytes=100,
        )
        holder = Client(app, "/v2/repository/index", 1000)
        holder.send(b" " * 999)  # the whole budget held, its last byte not sent
        await asyncio.sleep(0)
        client = Client(app, "/v2/repository/index", 100)
        client.send(BODY, more=False)
        assert await client.response() == (200, [])
        holder.send(b"{}", more=False)
        assert (await holder.response())[0] == 400  # 1001 bytes: over the limit

    asyncio.run(scenario())


def test_requests_that_wait_for_each_other_settle_at_once():
    async def scenario():
        app = index_app(max_input_size=100, max_inflight_bytes=100, inflight_wait=DEADLINE)
        first = Client(app, "/v2/repository/index", 100)
        first.send(BODY[:40])
        await asyncio.sleep(0)
        second = Client(app, "/v2/repository/index", 100)
        second.send(BODY[:60])
        await until(lambda: second.chunks.empty())
        second.send(BODY[60:], more=False)  # waits for the first's 40 bytes
        first.send(BODY[40:], more=False)  # waits for the second's 60: the newer gives up
        status, answer = await second.response()
        assert status == 503 and "--http-max-inflight-bytes" in answer["error"]
        assert await first.response() == (200, [])

    asyncio.run(scenario())


def test_a_compressed_body_is_reserved_before_it_is_inflated(monkeypatch):
    import gzip

    from popef.serving import http_app

    inflated = []
    real_inflate = http_app._Inflater.inflate

    def counting_inflate(self, room):
        piece = real_inflate(self, room)
        inflated.append(len(piece))
        return piece

    monkeypatch.setattr(http_app._Inflater, "inflate", counting_inflate)
    monkeypatch.setattr(http_app, "_INFLATE_PIECE", 1000)
    compressed = gzip.compress(b'{"ready": false}' + b" " * 4000)

    async def scenario():
        app = index_app(max_input_size=5000, max_inflight_bytes=5000, inflight_wait=0.05)
        holder = Client(app, "/v2/repository/index", 5000)
        holder.send(b" " * 4500)  # all but 500 bytes of the budget held
        await asyncio.sleep(0)
        client = Client(app, "/v2/repository/index", len(compressed), encoding="gzip")
        client.send(compressed, more=False)
        status, answer = await client.response()
        assert status == 503, answer
        # no more than the room left was inflated before the request gave up
        assert sum(inflated) <= 500 - len(compressed)
        holder.disconnect()
        await holder.response()
        inflated.clear()
        again = Client(app, "/v2/repository/index", len(compressed), encoding="gzip")
        again.send(compressed, more=False)
        assert await again.response() == (200, [])
        assert len(inflated) > 1 and max(inflated) <= 1000  # in pieces

    asyncio.run(scenario())


class BlockingLoadCore(IndexOnlyCore):
    """``load_model`` blocks (in the app's worker thread) until the test opens ``gate``."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.entered = threading.Event()

    def load_model(self, name: str, parameters: dict) -> None:
        self.entered.set()
        assert self.gate.wait(DEADLINE)


def test_a_stalled_body_gives_its_bytes_back_and_a_waiting_request_goes_on():
    async def scenario():
        app = index_app(
            max_input_size=100,
            max_inflight_bytes=150,
            inflight_wait=DEADLINE,
            body_timeout=None,
            body_stall_timeout=0.5,
        )
        stalled = Client(app, "/v2/repository/index", 100)
        stalled.send(BODY[:90])  # holds 90 bytes, then nothing more comes
        await asyncio.sleep(0)
        waiting = Client(app, "/v2/repository/index", 100)
        waiting.send(BODY, more=False)  # waits for the budget until the stalled one is out
        status, answer = await stalled.response()
        assert status == 408
        assert "no byte of the request body arrived for 0.5 s" in answer["error"]
        assert "--http-body-stall-timeout-secs" in answer["error"]
        assert await waiting.response() == (200, [])

    asyncio.run(scenario())


def test_waiting_for_the_budget_is_not_a_stalled_body():
    async def scenario():
        core = BlockingLoadCore()
        app = create_app(
            core,
            free_body_bytes=0,
            max_input_size=100,
            max_inflight_bytes=150,
            inflight_wait=DEADLINE,
            body_timeout=None,
            body_stall_timeout=0.2,
        )
        loading = Client(app, "/v2/repository/models/m/load", 100)
        loading.send(BODY, more=False)  # holds 100 bytes while its load runs
        await until(core.entered.is_set)
        waiting = Client(app, "/v2/repository/index", 100)
        waiting.send(BODY, more=False)  # needs 100: waits, its body unread meanwhile
        pause = None

        def waited_past_the_stall_timeout() -> bool:
            nonlocal pause
            pause = pause or waiting.scope.get(SERVER_PAUSE)
            return pause is not None and pause.seconds(time.monotonic()) > 1.0

        await until(waited_past_the_stall_timeout)
        assert not waiting.task.done()
        core.gate.set()
        assert (await loading.response())[0] == 200
        assert await waiting.response() == (200, [])

    asyncio.run(scenario())
