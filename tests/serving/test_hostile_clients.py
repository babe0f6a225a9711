"""A hostile client's requests that previous rounds did not cover: endless request heads (the
request line and headers), repository and unload bodies of the wrong type. Every wait has a
generous deadline; nothing asserts how long anything took."""

from __future__ import annotations

import http.client
import json
import socket

import pytest

from popef.serving.connections import ConnectionLimits

from .conftest import config, http_infer_works, local_server, write_model

DEADLINE = 60.0  # seconds for the server to answer or close; far above any timeout below
HEAD_LIMIT = 4096


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("hostile_clients")
    write_model(repo, "simple", config("simple"))
    write_model(repo, "other", config("other"))
    return repo


def running(repo, **options):
    return local_server(
        [repo],
        exit_timeout=5,
        # the header timeout is far away: only the size limit can end these requests
        http_limits=ConnectionLimits(header_timeout=3600, max_header_bytes=HEAD_LIMIT),
        **options,
    )


@pytest.fixture(scope="module")
def server(repo):
    with running(repo, model_control_mode="explicit", load_models=["*"]) as srv:
        yield srv


def connect(server) -> socket.socket:
    host, port = server.url("http").rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=DEADLINE)


def answer_until_closed(sock: socket.socket, payload: bytes) -> bytes:
    """What the server answers to ``payload`` before it closes the connection (a reset while
    sending or reading counts as closed); fails when it neither answers nor closes."""
    data = b""
    with sock:
        try:
            sock.sendall(payload)
            while chunk := sock.recv(65536):
                data += chunk
        except (ConnectionResetError, BrokenPipeError):
            pass
    return data


def padding(size: int) -> bytes:
    line = b"X-Padding: " + b"a" * 100 + b"\r\n"
    return line * (size // len(line) + 1)


# -- the request head is bounded ---------------------------------------------------------------


@pytest.mark.parametrize(
    "head",
    [
        pytest.param(b"GET /v2 HTTP/1.1\r\nHost: x\r\n" + padding(4 * HEAD_LIMIT), id="headers"),
        pytest.param(b"GET /v2 HTTP/1.1\r\nX-Long: " + b"a" * 4 * HEAD_LIMIT, id="one-value"),
        pytest.param(b"GET /v2/models/" + b"a" * 4 * HEAD_LIMIT, id="url"),
    ],
)
def test_a_head_past_the_limit_is_answered_431_and_closed(server, head):
    # the head never ends: before the limit, the server held all of it until the header timeout
    answer = answer_until_closed(connect(server), head)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large")
    http_infer_works(server)


def test_a_head_just_past_the_limit_gets_431(server):
    head = b"GET /v2 HTTP/1.1\r\nHost: x\r\n" + padding(HEAD_LIMIT)
    answer = answer_until_closed(connect(server), head[: HEAD_LIMIT + 200])
    assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large"), answer[:200]


def test_heads_under_the_limit_and_large_bodies_pass(server):
    # the limit is on the head alone: a body many times its size, sent with the head in one
    # write, and keep-alive requests one after another on one connection are served
    host, port = server.url("http").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=DEADLINE)
    try:
        headers = {f"X-Padding-{i}": "a" * 100 for i in range(HEAD_LIMIT // 200)}
        body = json.dumps(
            {"inputs": [{"name": "input", "datatype": "FP32", "shape": [8, 4], "data": [0.5] * 32}]}
        ).encode()
        body += b" " * (8 * HEAD_LIMIT)
        for _ in range(3):
            connection.request("POST", "/v2/models/simple/infer", body=body, headers=headers)
            response = connection.getresponse()
            assert response.status == 200, response.read()
            assert json.loads(response.read())["outputs"][0]["shape"] == [8, 3]
    finally:
        connection.close()


def test_a_pipelined_head_past_the_limit_closes_the_connection(server):
    # the second request's head arrives while the first is answered: it is bounded too
    first = b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n\r\n"
    second = b"GET /v2 HTTP/1.1\r\nHost: x\r\n" + padding(4 * HEAD_LIMIT)
    answer = answer_until_closed(connect(server), first + second)
    assert b"HTTP/1.1 200" in answer.split(b"\r\n", 1)[0] or answer == b""
    assert answer.count(b"HTTP/1.1 ") <= 2
    http_infer_works(server)


def test_the_limit_is_checked():
    with pytest.raises(ValueError, match="max_header_bytes must be >= 1, got 0"):
        ConnectionLimits(max_header_bytes=0)


# -- repository bodies are typed -----------------------------------------------------------------


def post(server, path: str, document) -> tuple[int, bytes]:
    host, port = server.url("http").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=DEADLINE)
    try:
        connection.request("POST", path, body=json.dumps(document).encode())
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_the_index_reads_ready_as_a_boolean(server):
    status, data = post(server, "/v2/repository/index", {"ready": "false"})
    assert status == 200
    assert {entry["name"] for entry in json.loads(data)} == {"other", "simple"}
    status, data = post(server, "/v2/repository/index", {"ready": "maybe"})
    assert status == 400
    assert json.loads(data)["error"] == (
        "'ready' must be true or false (or 1/0, yes/no, on/off), got 'maybe'"
    )


def test_the_index_without_ready_models_lists_only_ready_ones_when_asked(server):
    # unloaded, 'other' stays in the index but not among the ready models, whatever the word
    assert post(server, "/v2/repository/models/other/unload", {})[0] == 200
    try:
        for ready, names in (("no", {"other", "simple"}), ("yes", {"simple"}), (True, {"simple"})):
            status, data = post(server, "/v2/repository/index", {"ready": ready})
            assert status == 200 and {e["name"] for e in json.loads(data)} == names, ready
    finally:
        assert post(server, "/v2/repository/models/other/load", {})[0] == 200


@pytest.mark.parametrize("action", ["load", "unload"])
@pytest.mark.parametrize("parameters", [[1], "unload_dependents", 7])
def test_load_and_unload_parameters_must_be_an_object(server, action, parameters):
    status, data = post(
        server, f"/v2/repository/models/simple/{action}", {"parameters": parameters}
    )
    assert status == 400 and json.loads(data)["error"] == "'parameters' must be a JSON object"
    # and nothing was done: the model still answers
    http_infer_works(server)
