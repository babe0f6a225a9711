"""Slow or idle clients cannot hold the server: header and body timeouts, the connection
limit, and gRPC's handshake timeout. Timeouts here are short; every wait polls with a
generous deadline and nothing asserts how long anything took."""

from __future__ import annotations

import asyncio
import errno
import socket
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from popef.serving.connections import (
    SERVER_PAUSE,
    ConnectionLimits,
    guarded_protocol,
    serving_event_loop,
)
from popef.serving.grpc_servicer import GrpcLimits
from popef.serving.http_app import create_app

from .conftest import config, http_infer_works, local_server, write_model
from .gates import gated

DEADLINE = 60.0  # seconds to wait for something the server does after a short timeout
HEADERS_STARTED = b"POST /v2/models/simple/infer HTTP/1.1\r\nHost: x\r\n"
BODY_STARTED = (
    b"POST /v2/models/simple/infer HTTP/1.1\r\nHost: x\r\n"
    b'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"inputs"'
)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("slow_clients")
    write_model(repo, "simple", config("simple"))
    return repo


def running(repo, *, header_timeout=0.5, body_timeout=0.5, max_connections=20, handshake_ms=500):
    return local_server(
        [repo],
        exit_timeout=5,
        http_limits=ConnectionLimits(
            header_timeout=header_timeout, max_connections=max_connections
        ),
        http_body_timeout=body_timeout,
        grpc_limits=GrpcLimits(handshake_timeout=handshake_ms),
    )


def connect(server, kind: str, payload: bytes = b"") -> socket.socket:
    host, port = server.url(kind).rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=DEADLINE)
    if payload:
        sock.sendall(payload)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (fails after DEADLINE)."""
    data = b""
    with sock:
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                return data
            if not chunk:
                return data
            data += chunk


def grpc_infer_works(server) -> None:
    client = grpcclient.InferenceServerClient(server.url("grpc"))
    try:
        x = grpcclient.InferInput("input", [1, 4], "FP32")
        x.set_data_from_numpy(np.ones((1, 4), np.float32))
        assert client.infer("simple", [x], client_timeout=DEADLINE).as_numpy("out").shape == (1, 3)
    finally:
        client.close()


def test_idle_and_slow_clients_do_not_lock_others_out(repo):
    with running(repo, max_connections=20) as server:
        idle = [connect(server, "http") for _ in range(40)]
        slow_headers = [connect(server, "http", HEADERS_STARTED) for _ in range(40)]
        grpc_idle = [connect(server, "grpc") for _ in range(40)]
        # more connections than the limit are open and waiting: clients are still served
        http_infer_works(server)
        grpc_infer_works(server)
        # and the server closes every one of the idle and slow connections by itself
        for sock in idle + grpc_idle:
            read_until_closed(sock)
        answers = {read_until_closed(sock).split(b"\r\n", 1)[0] for sock in slow_headers}
        # closed to make room for a newer one (nothing sent) or timed out (408)
        assert answers <= {b"", b"HTTP/1.1 408 Request Timeout"}, answers
        assert b"HTTP/1.1 408 Request Timeout" in answers
        http_infer_works(server)


def test_header_timeout_answers_408(repo):
    with running(repo, header_timeout=0.5, max_connections=100) as server:
        response = read_until_closed(connect(server, "http", HEADERS_STARTED))
        assert response.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
        assert b"the request headers did not arrive in time" in response
        # a connection that sends nothing is closed without an answer
        assert read_until_closed(connect(server, "http")) == b""


def test_keepalive_connection_then_slow_headers_times_out(repo):
    with running(repo, header_timeout=0.5, max_connections=100) as server:
        sock = connect(server, "http", b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\n")  # a second request, never finished
        assert read_until_closed(sock).startswith(b"HTTP/1.1 408")


def test_unsent_body_is_answered_408_and_closed(repo):
    with running(repo, body_timeout=0.5, max_connections=100) as server:
        response = read_until_closed(connect(server, "http", BODY_STARTED))
        status, _, rest = response.partition(b"\r\n")
        assert status == b"HTTP/1.1 408 Request Timeout", response
        assert b"connection: close" in rest.lower()
        assert b"did not arrive within 0.5 s" in rest and b"--http-body-timeout-secs" in rest
        http_infer_works(server)


def test_connections_waiting_for_their_body_do_not_lock_others_out(repo):
    """Connections that declared a body and send none of it are in a request, yet evictable:
    the one without progress the longest makes room for a new client."""
    with running(repo, body_timeout=None, header_timeout=None, max_connections=5) as server:
        stalled = []
        for _ in range(5):
            sock = connect(
                server,
                "http",
                b"POST /v2/repository/index HTTP/1.1\r\nHost: x\r\n"
                b"Expect: 100-continue\r\nContent-Length: 1\r\n\r\n",
            )
            # the app asks for the body: the request is in progress
            assert sock.recv(65536).startswith(b"HTTP/1.1 100 Continue")
            stalled.append(sock)
        http_infer_works(server)
        with urllib.request.urlopen(
            f"http://{server.url('http')}/v2/health/ready", timeout=DEADLINE
        ) as answer:
            assert answer.status == 200
        # the oldest stalled connection was closed to make room, without an answer
        assert read_until_closed(stalled[0]) == b""
        for sock in stalled[1:]:
            sock.close()


def test_connection_limit_answers_503_when_every_connection_is_executing(repo):
    with running(repo, body_timeout=None, header_timeout=None, max_connections=1) as server:
        with ThreadPoolExecutor(1) as pool, gated(server.core.repository.get("simple")) as gate:
            executing = pool.submit(http_infer_works, server)
            gate.wait_entered(1)
            response = read_until_closed(connect(server, "http"))
            assert response.startswith(b"HTTP/1.1 503 Service Unavailable\r\n"), response
            assert b"too many connections have a request being executed" in response
            gate.open()
            executing.result(DEADLINE)
        # the executing one answered, clients are served again
        deadline = time.monotonic() + DEADLINE
        while True:
            try:
                http_infer_works(server)
                break
            except Exception:  # noqa: BLE001 - refused until the server sees the close
                assert time.monotonic() < deadline
                time.sleep(0.05)


def test_limits_are_checked():
    with pytest.raises(ValueError, match="header_timeout must be > 0"):
        ConnectionLimits(header_timeout=0)
    with pytest.raises(ValueError, match="max_connections must be >= 1"):
        ConnectionLimits(max_connections=0)
    assert ("grpc.max_connection_idle_ms", 300_000) in GrpcLimits().options()
    assert not any(
        name == "grpc.max_connection_idle_ms"
        for name, _ in GrpcLimits(max_connection_idle=0).options()
    )


def test_accept_out_of_file_descriptors_does_not_spin():
    """asyncio's own loop calls accept() up to ``backlog`` times after EMFILE, each logging
    and scheduling a retry; the serving loop stops at the first and retries once."""

    class OutOfDescriptors:
        def __init__(self, sock):
            self.sock = sock

        def accept(self):
            raise OSError(errno.EMFILE, "Too many open files")

        def fileno(self):
            return self.sock.fileno()

    loop = serving_event_loop()
    errors = []
    loop.set_exception_handler(lambda loop, context: errors.append(context["message"]))
    with socket.create_server(("127.0.0.1", 0)) as listening:
        try:
            loop._accept_connection(lambda: None, OutOfDescriptors(listening), backlog=100)
            assert errors == ["socket.accept() out of system resource"]
            assert len(loop._scheduled) == 1  # one retry, a second later
        finally:
            loop.close()


# -- the connection limit's choice, driven without sockets --------------------------------------


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.closed = False
        self.written = b""

    def get_extra_info(self, name, default=None):
        return default

    def write(self, data) -> None:
        self.written += bytes(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class Connections:
    """Connections to ``app`` through the guarded httptools protocol, at most ``limit`` open."""

    def __init__(self, app, limit: int) -> None:
        from uvicorn.config import Config
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
        from uvicorn.server import ServerState

        self.config = Config(app, lifespan="off", log_config=None)
        self.config.load()
        self.state = ServerState()
        self.protocol = guarded_protocol(
            HttpToolsProtocol, ConnectionLimits(header_timeout=None, max_connections=limit)
        )

    def open(self, data: bytes = b""):
        connection = self.protocol(config=self.config, server_state=self.state, app_state={})
        connection.connection_made(FakeTransport())
        if data:
            connection.data_received(data)
        return connection


def post(path: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


class IndexAndLoadCore:
    def __init__(self) -> None:
        self.gate = threading.Event()
        self.entered = threading.Event()

    def repository_index(self, ready_only: bool = False) -> list[dict]:
        return []

    def load_model(self, name: str, parameters: dict) -> None:
        self.entered.set()
        assert self.gate.wait(DEADLINE)


async def until(condition) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        await asyncio.sleep(0.001)


def test_attackers_trickling_bytes_do_not_evict_a_normal_upload():
    """Attackers send a byte on each of their connections right before opening another: the
    upload, which received far more per second, is never the one closed."""

    async def scenario():
        app = create_app(IndexAndLoadCore(), body_timeout=None, body_stall_timeout=None)
        connections = Connections(app, limit=4)
        body = b'{"ready": false}' + b" " * 299_984
        upload = connections.open(post("/v2/repository/index", len(body)) + body[:200_000])
        await until(lambda: upload.cycle is not None and not upload.cycle.body)  # read
        attackers = [connections.open(post("/v2/repository/index", 1000) + b" ") for _ in range(3)]
        for _ in range(10):
            for attacker in attackers:
                if not attacker.transport.closed:
                    attacker.data_received(b" ")
            attackers.append(connections.open(post("/v2/repository/index", 1000) + b" "))
            assert not upload.transport.closed
            for attacker in attackers:
                if attacker.transport.closed and attacker in connections.state.connections:
                    attacker.connection_lost(None)
        assert sum(attacker.transport.closed for attacker in attackers) == 10
        upload.data_received(body[200_000:])
        await until(lambda: upload.transport.written)
        assert upload.transport.written.startswith(b"HTTP/1.1 200 OK\r\n")
        for connection in list(connections.state.connections):
            connection.connection_lost(None)

    asyncio.run(scenario())


def test_a_request_waiting_for_the_budget_is_not_evicted_and_the_newcomer_gets_503():
    async def scenario():
        core = IndexAndLoadCore()
        app = create_app(
            core,
            max_input_size=1000,
            max_inflight_bytes=1000,
            free_body_bytes=0,
            inflight_wait=None,
            body_timeout=None,
            body_stall_timeout=None,
        )
        connections = Connections(app, limit=2)
        loading = connections.open(
            post("/v2/repository/models/m/load", 900) + b"{}" + b" " * 898
        )  # holds 900 bytes while it loads
        await until(core.entered.is_set)
        index_body = b'{"ready": false}' + b" " * 484
        waiting = connections.open(post("/v2/repository/index", 500) + index_body[:499])
        await until(
            lambda: (pause := waiting.cycle.scope.get(SERVER_PAUSE)) is not None and pause.paused
        )  # read, now waiting for 499 bytes of the budget
        newcomer = connections.open()
        assert newcomer.transport.written.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
        assert newcomer.transport.closed and not waiting.transport.closed
        newcomer.connection_lost(None)
        core.gate.set()
        await until(lambda: loading.transport.written)
        assert loading.transport.written.startswith(b"HTTP/1.1 200 OK\r\n")
        waiting.data_received(index_body[499:])
        await until(lambda: waiting.transport.written.endswith(b"\r\n\r\n[]"))
        assert waiting.transport.written.startswith(b"HTTP/1.1 200 OK\r\n")
        for connection in list(connections.state.connections):
            connection.connection_lost(None)

    asyncio.run(scenario())
