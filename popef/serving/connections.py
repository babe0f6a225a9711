"""Limits on the HTTP server's connections, so that slow or idle clients cannot hold it.

uvicorn closes a connection idle after a response (``timeout_keep_alive``) but waits forever
for the headers of a request, and takes every connection the kernel hands it.
:func:`guarded_protocol` subclasses uvicorn's HTTP protocol (httptools or h11) with

- a **header timeout**: a connection must complete a request's headers within
  ``header_timeout`` seconds of opening, or of the first byte of a request that follows another
  on it; otherwise it is answered 408 (or, when nothing came, just closed);
- a **header size limit** (httptools; h11 bounds a request's head itself): a request whose line
  and headers run past ``max_header_bytes`` is answered 431 and its connection closed, so
  a client cannot make the server hold an endless header section in memory;
- a **connection limit**: when ``max_connections`` are open, a new connection closes one that
  waits for its client: first the one idle longest between requests, else the one whose current
  request (headers or body) has received the fewest bytes per second (:func:`receive_rate`).
  Never one whose request is being executed or answered, nor one whose body the server itself
  stopped reading (it waits for the byte budget, :class:`ServerPause`): so attackers that hold
  connections open, sending nothing or a byte now and then, cannot lock clients out nor evict a
  client uploading at a normal rate. When no open connection may be closed, the new one is
  answered 503 and closed.

The body of a request is bounded by the ASGI app (:func:`popef.serving.http_app.create_app`,
``body_timeout``). :func:`serving_event_loop` is the event loop to run them on: asyncio's, with
accept failures for lack of file descriptors retried once a second instead of in a tight loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

from .options import (
    DEFAULT_HEADER_TIMEOUT,
    DEFAULT_KEEPALIVE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    ConnectionLimits,
)

__all__ = [
    "DEFAULT_HEADER_TIMEOUT",
    "DEFAULT_KEEPALIVE_TIMEOUT",
    "DEFAULT_MAX_CONNECTIONS",
    "SERVER_PAUSE",
    "ConnectionLimits",
    "ServerPause",
    "guarded_protocol",
    "receive_rate",
    "serving_event_loop",
]

log = logging.getLogger("popef.serving")


#: a request younger than this is rated as if it had been this old: its first bytes do not make
#: it look fast, nor the moments before them slow
_RATE_FLOOR_SECONDS = 1.0
#: the ASGI scope key of a request's :class:`ServerPause`
SERVER_PAUSE = "popef.server_pause"


@dataclass
class ServerPause:
    """The time the server itself stopped reading a request's body (the app waits for room in
    the byte budget), which is not held against the client: the app keeps it in the request's
    ASGI scope under :data:`SERVER_PAUSE`, the connection limit reads it."""

    since: float | None = None  # time.monotonic() when the current pause began
    total: float = 0.0  # seconds of the pauses that ended

    @property
    def paused(self) -> bool:
        return self.since is not None

    def seconds(self, now: float) -> float:
        return self.total + (now - self.since if self.since is not None else 0.0)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        self.since = time.monotonic()
        try:
            yield
        finally:
            self.total += time.monotonic() - self.since
            self.since = None


def receive_rate(received: int, started: float, now: float, paused: float = 0.0) -> float:
    """Bytes per second a request has received since ``started``, not counting the ``paused``
    seconds; rated at least :data:`_RATE_FLOOR_SECONDS` old."""
    return received / max(now - started - paused, _RATE_FLOOR_SECONDS)


def _response(status: str, message: str) -> bytes:
    body = message.encode()
    return (
        f"HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode() + body


_TIMEOUT_408 = _response("408 Request Timeout", "the request headers did not arrive in time\n")
_HEADERS_TOO_LARGE_431 = _response(
    "431 Request Header Fields Too Large", "the request line and headers are too large\n"
)
_BUSY_503 = _response(
    "503 Service Unavailable",
    "too many connections have a request being executed or waiting for the "
    "server: try again later\n",
)


def guarded_protocol(base: type[asyncio.Protocol], limits: ConnectionLimits) -> type:
    """``base`` (uvicorn's ``HttpToolsProtocol`` or ``H11Protocol``) with ``limits``' header
    timeout and connection limit; pass it as ``uvicorn.Config(http=...)``."""

    class GuardedProtocol(base):  # type: ignore[misc, valid-type]
        _header_timer: asyncio.TimerHandle | None = None
        _bytes_since_armed = False
        # the current request (or, between requests, the wait for the next one)
        _request_started = 0.0  # time.monotonic(): connection opened, first byte, or answered
        _request_bytes = 0  # bytes received since then
        _answered = False  # a response was sent on this connection
        # bytes fed to the parser since the last request's headers were complete (httptools
        # reports where a head ends; h11 bounds a head itself)
        _head_bytes = 0
        _in_head = True
        _counts_head = hasattr(base, "on_headers_complete")

        # -- state
        def _in_request(self) -> bool:
            cycle = getattr(self, "cycle", None)
            return cycle is not None and not cycle.response_complete

        def _server_pause(self) -> ServerPause | None:
            cycle = getattr(self, "cycle", None)
            return cycle.scope.get(SERVER_PAUSE) if self._in_request() else None

        def _waits_for_client(self) -> bool:
            """Between requests or in one whose body has not all come, and that the server
            reads: the server owes nothing yet, so closing it loses no work."""
            if not self._in_request():
                return True
            pause = self._server_pause()
            return (
                self.cycle.more_body
                and not self.cycle.response_started
                and not (pause is not None and pause.paused)
            )

        def _eviction_order(self, now: float) -> tuple:
            """Lower goes first: idle between requests (longest first), then the request that
            received the fewest bytes per second (oldest first among equals)."""
            if not self._in_request() and self._answered and self._request_bytes == 0:
                return (0, self._request_started)
            pause = self._server_pause()
            rate = receive_rate(
                self._request_bytes,
                self._request_started,
                now,
                pause.seconds(now) if pause is not None else 0.0,
            )
            return (1, rate, self._request_started)

        def _arm_header_timer(self) -> None:
            if limits.header_timeout is not None and self._header_timer is None:
                self._bytes_since_armed = False
                self._header_timer = self.loop.call_later(
                    limits.header_timeout, self._header_timed_out
                )

        def _cancel_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _header_timed_out(self) -> None:
            self._header_timer = None
            if self.transport.is_closing() or self._in_request():
                return
            log.debug(
                "closing an HTTP connection from %s: no complete request headers within %g s",
                self.client,
                limits.header_timeout,
            )
            if self._bytes_since_armed:
                self.transport.write(_TIMEOUT_408)
            self.transport.close()

        # -- asyncio.Protocol
        def connection_made(self, transport) -> None:
            victim = self._victim() if limits.max_connections is not None else None
            super().connection_made(transport)
            self._request_started = time.monotonic()
            if victim is False:
                log.debug(
                    "refusing an HTTP connection from %s: %d connections have a "
                    "request being executed or waiting for the server",
                    self.client,
                    limits.max_connections,
                )
                transport.write(_BUSY_503)
                transport.close()
                return
            if victim is not None:
                log.debug(
                    "closing the HTTP connection from %s, idle or receiving the slowest, "
                    "to take one from %s (%d connections open)",
                    victim.client,
                    self.client,
                    limits.max_connections,
                )
                victim.transport.close()
            self._arm_header_timer()

        def _victim(self):
            """None when there is room; else the open connection to close (see
            ``_eviction_order``), or False when none waits for its client."""
            if len(self.connections) < limits.max_connections:
                return None
            open_connections = [
                c
                for c in self.connections
                if c.transport is not None and not c.transport.is_closing()
            ]
            if len(open_connections) < limits.max_connections:
                return None
            now = time.monotonic()
            waiting = [
                c
                for c in open_connections
                if isinstance(c, GuardedProtocol) and c._waits_for_client()
            ]
            return min(waiting, key=lambda c: c._eviction_order(now)) if waiting else False

        def data_received(self, data: bytes) -> None:
            if not self._in_request():
                if self._request_bytes == 0 and self._answered:
                    self._request_started = time.monotonic()  # the next request begins
                self._arm_header_timer()  # the first bytes of a request: its headers must end
                self._bytes_since_armed = True
            self._request_bytes += len(data)
            if self._in_head:
                self._head_bytes += len(data)
            cycle = getattr(self, "cycle", None)
            super().data_received(data)
            if getattr(self, "cycle", None) is not cycle:
                self._cancel_header_timer()  # the headers are complete: a request started
            if (
                self._counts_head
                and self._in_head
                and self._head_bytes > limits.max_header_bytes
                and not self.transport.is_closing()
            ):
                self._head_too_large()

        def _head_too_large(self) -> None:
            log.debug(
                "closing an HTTP connection from %s: a request's line and headers run past "
                "%d bytes",
                self.client,
                limits.max_header_bytes,
            )
            self._cancel_header_timer()
            if not self._in_request():  # else a response may be on its way: just close
                self.transport.write(_HEADERS_TOO_LARGE_431)
            self.transport.close()

        # -- httptools' parser callbacks: where a request's head ends and the next begins
        def on_headers_complete(self) -> None:
            self._in_head, self._head_bytes = False, 0
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._in_head = True

        def on_response_complete(self) -> None:
            self._request_started, self._request_bytes = time.monotonic(), 0
            self._answered = True
            super().on_response_complete()

        def connection_lost(self, exc) -> None:
            self._cancel_header_timer()
            super().connection_lost(exc)

    GuardedProtocol.__name__ = GuardedProtocol.__qualname__ = f"Guarded{base.__name__}"
    return GuardedProtocol


# -- accepting when out of file descriptors ---------------------------------------------------

_OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class _AcceptUntilOutOfResources:
    """A listening socket whose ``accept()``, once it has failed for lack of resources,
    reports an empty queue for the rest of the event loop's turn."""

    def __init__(self, sock) -> None:
        self._sock = sock
        self._out_of_resources = False

    def accept(self):
        if self._out_of_resources:
            raise BlockingIOError(errno.EAGAIN, "no more accepts this turn")
        try:
            return self._sock.accept()
        except OSError as exc:
            self._out_of_resources = exc.errno in _OUT_OF_RESOURCES
            raise

    def __getattr__(self, name: str):
        return getattr(self._sock, name)


class _ServingEventLoop(asyncio.SelectorEventLoop):
    # CPython's accept loop (3.11) goes on calling accept() after EMFILE, up to ``backlog``
    # times in one turn, logging and scheduling a retry each time: thousands of lines and
    # retries a second. With the socket above, the first failure ends the turn, so one retry,
    # a second later, is scheduled.
    def _accept_connection(self, protocol_factory, sock, *args, **kwargs):
        if isinstance(sock, _AcceptUntilOutOfResources):
            sock = sock._sock
        return super()._accept_connection(
            protocol_factory, _AcceptUntilOutOfResources(sock), *args, **kwargs
        )


def serving_event_loop() -> asyncio.AbstractEventLoop:
    """A new event loop for the HTTP services (see the module docstring)."""
    return _ServingEventLoop()
