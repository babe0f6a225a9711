"""Hostile clients and careless operators against the serving extensions of Triton's protocol:
system shared memory, the logging and trace settings, and ``popef serve --id``.

Each test is the regression test of a fault found by attacking the server: unbounded
registrations (one open descriptor each), huge names kept, objects that are not shared memory,
descriptors closed under a running request, unbounded copies from a sparse object, unbounded
numbers in messages, and odd ``--id`` values.
"""

from __future__ import annotations

import errno
import os
import uuid

import pytest
from click.testing import CliRunner

from popef.cli import main
from popef.servable.errors import ServingError, Status
from popef.serving.protocol import InferRequest, InputTensor, RequestedOutput
from popef.serving.settings import TraceSettings
from popef.serving.shared_memory import MAX_REGION_NAME, SystemSharedMemory

pytestmark = pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="no POSIX shared memory")

NBYTES = 64


@pytest.fixture()
def shm_object():
    """Creates shared memory objects (unique keys, ``size`` bytes) and removes them after."""
    made = []

    def create(size: int = NBYTES, fifo: bool = False) -> str:
        key = f"/popef_hostile_{uuid.uuid4().hex[:12]}"
        path = "/dev/shm" + key
        if fifo:
            os.mkfifo(path, 0o600)
        else:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
            os.ftruncate(fd, size)
            os.close(fd)
        made.append(path)
        return key

    yield create
    for path in made:
        os.unlink(path)


def _request(region: str, size: int = NBYTES) -> InferRequest:
    parameters = {"shared_memory_region": region, "shared_memory_byte_size": size}
    return InferRequest(
        "m",
        inputs=[InputTensor("x", "INT32", (size // 4,), parameters=dict(parameters))],
        outputs=[RequestedOutput("y", parameters=dict(parameters))],
    )


def _raises(call, status: Status, match: str) -> ServingError:
    with pytest.raises(ServingError, match=match) as info:
        call()
    assert info.value.status is status
    return info.value


# -- system shared memory ------------------------------------------------------------------------


def test_registrations_are_limited_with_a_clear_error(shm_object):
    key = shm_object()
    memory = SystemSharedMemory(max_regions=3)
    for i in range(3):
        memory.register(f"r{i}", key, 0, NBYTES)
    error = _raises(
        lambda: memory.register("r3", key, 0, NBYTES),
        Status.UNAVAILABLE,
        "holds 3 regions, its limit",
    )
    assert "'r3'" in error.message
    memory.unregister("r0")
    memory.register("r3", key, 0, NBYTES)  # room again
    memory.close()


def test_region_names_are_bounded(shm_object):
    key = shm_object()
    memory = SystemSharedMemory()
    memory.register("n" * MAX_REGION_NAME, key, 0, NBYTES)
    error = _raises(
        lambda: memory.register("n" * 10_000_000, key, 0, NBYTES),
        Status.INVALID_ARG,
        "10000000 characters",
    )
    assert len(error.message) < 300
    assert len(memory) == 1
    memory.close()


def test_only_shared_memory_objects_register(shm_object):
    memory = SystemSharedMemory()
    fifo = shm_object(fifo=True)
    _raises(
        lambda: memory.register("f", fifo, 0, 0),
        Status.INVALID_ARG,
        "is not a shared memory object",
    )
    for key in ("/../etc/passwd", "/dev/shm" + shm_object(), "/", "", "..", "/a\x00b"):
        _raises(
            lambda key=key: memory.register("k", key, 0, 0),
            Status.INTERNAL,
            "Unable to open shared memory region",
        )
    assert len(memory) == 0


def test_a_symlink_in_dev_shm_is_not_followed(tmp_path):
    target = tmp_path / "secret"
    target.write_bytes(b"x" * NBYTES)
    link = f"popef_hostile_{uuid.uuid4().hex[:12]}"
    os.symlink(target, "/dev/shm/" + link)
    try:
        _raises(
            lambda: SystemSharedMemory().register("s", "/" + link, 0, 1),
            Status.INTERNAL,
            "Unable to open shared memory region",
        )
    finally:
        os.unlink("/dev/shm/" + link)


@pytest.mark.parametrize(
    "offset, byte_size", [(-8, NBYTES), (0, -1), (1.0, 8), (0, True), (0, "8")]
)
def test_register_checks_its_numbers_itself(shm_object, offset, byte_size):
    # the HTTP front end checks them too; the registry is also called by other hosts
    memory = SystemSharedMemory()
    _raises(
        lambda: memory.register("r", shm_object(), offset, byte_size),
        Status.INVALID_ARG,
        "must be a whole number >= 0",
    )
    assert len(memory) == 0


def test_huge_numbers_are_shortened_in_messages(shm_object):
    memory = SystemSharedMemory()
    error = _raises(
        lambda: memory.register("r", shm_object(), 0, 10**4000), Status.INVALID_ARG, "invalid args"
    )
    assert len(error.message) < 300


def test_close_waits_for_the_requests_using_a_region(shm_object):
    # a descriptor closed under a running request may be reused by another file at once:
    # the request's late write would go there
    memory = SystemSharedMemory()
    memory.register("r", shm_object(), 0, NBYTES)
    held = memory.bind(_request("r"))
    region = held.outputs["y"].region
    fd = region.fd
    memory.close()
    assert len(memory) == 0
    os.fstat(fd)  # still open
    held.outputs["y"].write(b"\x01" * NBYTES)
    held.release()
    assert region.fd == -1
    with pytest.raises(OSError):
        os.fstat(fd)


def test_reads_from_shared_memory_are_bounded(shm_object):
    key = shm_object(1 << 30)  # sparse: a client can make such an object at no cost
    memory = SystemSharedMemory(max_request_bytes=1024)
    memory.register("big", key, 0, 1 << 30)
    request = _request("big", 1 << 30)
    _raises(
        lambda: memory.bind(request),
        Status.INVALID_ARG,
        "read 1073741824 bytes from shared memory, the most is 1024",
    )
    memory.unregister("big")  # nothing was held
    memory.close()


def test_os_errors_become_serving_errors(shm_object, monkeypatch):
    memory = SystemSharedMemory()
    memory.register("r", shm_object(), 0, NBYTES)
    held = memory.bind(_request("r"))

    def failing(*args):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "pread", failing)
    monkeypatch.setattr(os, "pwrite", failing)
    piece = held.outputs["y"]
    _raises(piece.read, Status.INTERNAL, "cannot read shared memory region 'r'")
    _raises(
        lambda: piece.write(b"\0" * NBYTES),
        Status.INTERNAL,
        "cannot write shared memory region 'r'",
    )
    held.release()
    memory.close()


# -- logging and trace settings ------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [{"trace_rate": "9" * 3000}, {"trace_count": "-" + "9" * 3000}, {"log_frequency": 10**3000}],
)
def test_trace_numbers_are_shortened_in_messages(changes):
    error = _raises(lambda: TraceSettings().update(changes), Status.INVALID_ARG, "Unable to parse")
    assert len(error.message) < 300


def test_an_empty_trace_level_says_so():
    _raises(
        lambda: TraceSettings().update({"trace_level": []}),
        Status.INVALID_ARG,
        "'trace_level' names no level",
    )


def test_trace_settings_of_an_unknown_model_are_bounded(tmp_path):
    from popef.serving.core import InferenceCore
    from popef.serving.repository import ModelRepository

    core = InferenceCore(ModelRepository([tmp_path]))
    error = _raises(
        lambda: core.trace_setting("m\x1b" * 100_000),
        Status.INVALID_ARG,
        "Request for unknown model",
    )
    assert len(error.message) < 400


# -- popef serve --id ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "server_id, message",
    [
        ("", "--id must not be empty"),
        ("a\x1b[31mb\nc", "--id must be printable text, got 'a\\x1b[31mb\\nc'"),
        ("x" * 5000, "--id has 5000 characters, the most is 256"),
        ("name\u202e", "--id must be printable text"),
    ],
)
def test_odd_ids_are_refused_with_one_line(tmp_path, server_id, message):
    pytest.importorskip("uvicorn")
    pytest.importorskip("grpc")
    # a missing repository: without the check, serve fails on it instead of serving
    result = CliRunner().invoke(
        main, ["serve", "--model-repository", str(tmp_path / "none"), "--id", server_id]
    )
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert "\x1b" not in result.output
