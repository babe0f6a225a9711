"""Slow or idle clients cannot hold the server: header and body timeouts, the connection
limit, and gRPC's handshake timeout. Timeouts here are short; every wait polls with a
generous deadline and nothing asserts how long anything took."""

from __future__ import annotations

import contextlib
import errno
import socket
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from popef.serving import Server, ServerOptions
from popef.serving.connections import ConnectionLimits, serving_event_loop
from popef.serving.grpc_servicer import GrpcLimits

from .conftest import config, write_model
from .gates import gated

DEADLINE = 60.0  # seconds to wait for something the server does after a short timeout
HEADERS_STARTED = b"POST /v2/models/simple/infer HTTP/1.1\r\nHost: x\r\n"
BODY_STARTED = (b"POST /v2/models/simple/infer HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"inputs\"")


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("slow_clients")
    write_model(repo, "simple", config("simple"))
    return repo


@contextlib.contextmanager
def running(repo, *, header_timeout=0.5, body_timeout=0.5, max_connections=20,
            handshake_ms=500):
    server = Server(ServerOptions(
        [repo], host="127.0.0.1", http_port=0, grpc_port=0, metrics_port=0, exit_timeout=5,
        http_limits=ConnectionLimits(header_timeout=header_timeout,
                                     max_connections=max_connections),
        http_body_timeout=body_timeout, grpc_limits=GrpcLimits(handshake_timeout=handshake_ms)))
    server.start()
    try:
        yield server
    finally:
        server.stop()


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


def http_infer_works(server) -> None:
    client = httpclient.InferenceServerClient(server.url("http"), network_timeout=DEADLINE)
    try:
        x = httpclient.InferInput("input", [1, 4], "FP32")
        x.set_data_from_numpy(np.ones((1, 4), np.float32))
        assert client.infer("simple", [x]).as_numpy("out").shape == (1, 3)
    finally:
        client.close()


def grpc_infer_works(server) -> None:
    client = grpcclient.InferenceServerClient(server.url("grpc"))
    try:
        x = grpcclient.InferInput("input", [1, 4], "FP32")
        x.set_data_from_numpy(np.ones((1, 4), np.float32))
        assert client.infer("simple", [x], client_timeout=DEADLINE).as_numpy("out").shape == (
            1, 3)
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
            sock = connect(server, "http", b"POST /v2/repository/index HTTP/1.1\r\nHost: x\r\n"
                           b"Expect: 100-continue\r\nContent-Length: 1\r\n\r\n")
            # the app asks for the body: the request is in progress
            assert sock.recv(65536).startswith(b"HTTP/1.1 100 Continue")
            stalled.append(sock)
        http_infer_works(server)
        with urllib.request.urlopen(f"http://{server.url('http')}/v2/health/ready",
                                    timeout=DEADLINE) as answer:
            assert answer.status == 200
        # the oldest stalled connection was closed to make room, without an answer
        assert read_until_closed(stalled[0]) == b""
        for sock in stalled[1:]:
            sock.close()


def test_connection_limit_answers_503_when_every_connection_is_executing(repo):
    with running(repo, body_timeout=None, header_timeout=None, max_connections=1) as server:
        with ThreadPoolExecutor(1) as pool, \
                gated(server.core.repository.get("simple")) as gate:
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
    assert not any(name == "grpc.max_connection_idle_ms"
                   for name, _ in GrpcLimits(max_connection_idle=0).options())


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
