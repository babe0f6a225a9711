"""System shared memory (Triton's ``system_shared_memory`` extension) over HTTP and gRPC.

The clients are tritonclient's, with its own ``tritonclient.utils.shared_memory`` to create
and fill the POSIX shared memory objects, against Triton's ``simple`` model of its examples.
"""

from __future__ import annotations

import os
import uuid

import numpy as np
import pytest

import popef
from popef.runtime import GraphBuilder
from popef.servable.errors import ServingError, Status
from popef.serving.protocol import InferRequest, InputTensor, RequestedOutput
from popef.serving.shared_memory import SystemSharedMemory, tensor_reference

shm = pytest.importorskip("tritonclient.utils.shared_memory")
httpclient = pytest.importorskip("tritonclient.http")
grpcclient = pytest.importorskip("tritonclient.grpc")
from tritonclient.utils import InferenceServerException

from .conftest import local_server

pytestmark = pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="no POSIX shared memory")

SIMPLE_CONFIG = """name: "simple"
backend: "poplar"
max_batch_size: 8
input [ { name: "INPUT0" data_type: TYPE_INT32 dims: [ 16 ] },
        { name: "INPUT1" data_type: TYPE_INT32 dims: [ 16 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_INT32 dims: [ 16 ] },
         { name: "OUTPUT1" data_type: TYPE_INT32 dims: [ 16 ] } ]
"""
NBYTES = 16 * 4  # one INT32 [1, 16] tensor


def build_simple(repo):
    """Triton's ``simple`` model: OUTPUT0 = INPUT0 + INPUT1, OUTPUT1 = INPUT0 - INPUT1."""
    g = GraphBuilder()
    a = g.add_input("INPUT0", popef.DataType.S32, (1, 16))
    b = g.add_input("INPUT1", popef.DataType.S32, (1, 16))
    g.add_output(g.add_node("Add", [a, b]), "OUTPUT0")
    g.add_output(g.add_node("Sub", [a, b]), "OUTPUT1")
    (repo / "simple" / "1").mkdir(parents=True)
    g.save(repo / "simple" / "1" / "executable.popef", executable_name="simple")
    (repo / "simple" / "config.pbtxt").write_text(SIMPLE_CONFIG)


@pytest.fixture(scope="module")
def shm_server(tmp_path_factory, serving_log):
    repo = tmp_path_factory.mktemp("shm_repo")
    build_simple(repo)
    with local_server([repo]) as srv:
        yield srv


@pytest.fixture(params=["http", "grpc"])
def client(request, shm_server):
    module = httpclient if request.param == "http" else grpcclient
    c = module.InferenceServerClient(shm_server.url(request.param))
    c.module = module
    c.unregister_system_shared_memory()
    yield c
    c.unregister_system_shared_memory()
    c.close()


@pytest.fixture()
def regions():
    """Creates shared memory objects (unique keys) and destroys them after the test."""
    made = []

    def create(byte_size: int):
        key = f"/popef_test_{uuid.uuid4().hex[:12]}"
        handle = shm.create_shared_memory_region(key[1:], key, byte_size)
        made.append(handle)
        return key, handle

    yield create
    for handle in made:
        shm.destroy_shared_memory_region(handle)


X0 = np.arange(16, dtype=np.int32).reshape(1, 16)
X1 = np.full((1, 16), 3, dtype=np.int32)


def _inputs(c, region="in", size=NBYTES, offsets=(0, NBYTES)):
    inputs = []
    for name, offset in zip(("INPUT0", "INPUT1"), offsets):
        tensor = c.module.InferInput(name, [1, 16], "INT32")
        tensor.set_shared_memory(region, size, offset=offset)
        inputs.append(tensor)
    return inputs


def _error(call) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as info:
        call()
    return info.value


def _registered_input(c, regions):
    key, handle = regions(2 * NBYTES)
    shm.set_shared_memory_region(handle, [X0])
    shm.set_shared_memory_region(handle, [X1], offset=NBYTES)
    c.register_system_shared_memory("in", key, 2 * NBYTES)
    return key, handle


# -- the round trip -------------------------------------------------------------------------------


def test_inputs_and_outputs_in_shared_memory(client, regions):
    c = client
    in_key, _ = _registered_input(c, regions)
    out_key, out_handle = regions(2 * NBYTES)
    c.register_system_shared_memory("out", out_key, 2 * NBYTES)
    outputs = []
    for name, offset in (("OUTPUT0", 0), ("OUTPUT1", NBYTES)):
        out = c.module.InferRequestedOutput(name)
        out.set_shared_memory("out", NBYTES, offset=offset)
        outputs.append(out)
    result = c.infer("simple", _inputs(c), outputs=outputs)

    sum_ = shm.get_contents_as_numpy(out_handle, np.int32, [1, 16])
    difference = shm.get_contents_as_numpy(out_handle, np.int32, [1, 16], offset=NBYTES)
    np.testing.assert_array_equal(sum_, X0 + X1)
    np.testing.assert_array_equal(difference, X0 - X1)
    if c.module is httpclient:
        entry = result.get_output("OUTPUT0")
        assert entry == {"name": "OUTPUT0", "datatype": "INT32", "shape": [1, 16]}
    else:
        entry = result.get_output("OUTPUT0")
        assert (entry.datatype, list(entry.shape)) == ("INT32", [1, 16])
        assert result.get_response().raw_output_contents == [b"", b""]
    status = c.get_system_shared_memory_status()
    if c.module is grpcclient:
        status = [
            {"name": r.name, "key": r.key, "offset": r.offset, "byte_size": r.byte_size}
            for r in status.regions.values()
        ]
    assert sorted(status, key=lambda r: r["name"]) == [
        {"name": "in", "key": in_key, "offset": 0, "byte_size": 2 * NBYTES},
        {"name": "out", "key": out_key, "offset": 0, "byte_size": 2 * NBYTES},
    ]


@pytest.mark.parametrize("binary", [True, False])
def test_inputs_in_shared_memory_outputs_in_the_response(client, regions, binary):
    c = client
    _registered_input(c, regions)
    if c.module is httpclient:
        outputs = [
            httpclient.InferRequestedOutput(n, binary_data=binary) for n in ("OUTPUT0", "OUTPUT1")
        ]
    else:
        outputs = None
    result = c.infer("simple", _inputs(c), outputs=outputs)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), X0 + X1)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), X0 - X1)


def test_one_input_in_shared_memory_the_other_in_the_request(client, regions):
    c = client
    _registered_input(c, regions)
    first = _inputs(c)[0]
    second = c.module.InferInput("INPUT1", [1, 16], "INT32")
    second.set_data_from_numpy(X1)
    result = c.infer("simple", [second, first])
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), X0 + X1)


def test_a_region_at_an_offset_of_its_object(client, regions):
    c = client
    key, handle = regions(3 * NBYTES)
    shm.set_shared_memory_region(handle, [X0], offset=NBYTES)
    shm.set_shared_memory_region(handle, [X1], offset=2 * NBYTES)
    c.register_system_shared_memory("in", key, 2 * NBYTES, offset=NBYTES)
    result = c.infer("simple", _inputs(c))
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), X0 - X1)


# -- registering ----------------------------------------------------------------------------------


def test_register_errors_are_tritons(client, regions):
    c = client
    key, _ = regions(NBYTES)
    error = _error(lambda: c.register_system_shared_memory("r", "/popef_no_such_key", 8))
    assert "Unable to open shared memory region: '/popef_no_such_key'" in str(error)
    error = _error(lambda: c.register_system_shared_memory("r", key, NBYTES, offset=8))
    assert "failed to register shared memory region 'r': invalid args" in str(error)
    c.register_system_shared_memory("r", key, NBYTES)
    error = _error(lambda: c.register_system_shared_memory("r", key, 8))
    assert "shared memory region 'r' already in manager" in str(error)
    if c.module is grpcclient:
        assert error.status() == "StatusCode.ALREADY_EXISTS"
    error = _error(lambda: c.get_system_shared_memory_status("nope"))
    assert "Unable to find system shared memory region: 'nope'" in str(error)
    c.unregister_system_shared_memory("r")
    c.unregister_system_shared_memory("r")  # unregistering an unknown name is no error
    status = c.get_system_shared_memory_status()
    assert (status == []) if c.module is httpclient else not status.regions


def test_cuda_shared_memory_is_refused_as_by_a_triton_without_gpus(client):
    c = client
    error = _error(lambda: c.register_cuda_shared_memory("g", b"\0" * 64, 0, 64))
    assert "failed to register CUDA shared memory region: 'g', GPUs not supported" in str(error)
    c.unregister_cuda_shared_memory()
    status = c.get_cuda_shared_memory_status()
    assert (status == []) if c.module is httpclient else not status.regions
    metadata = c.get_server_metadata()
    extensions = metadata["extensions"] if c.module is httpclient else metadata.extensions
    assert {"system_shared_memory", "cuda_shared_memory"} <= set(extensions)


# -- bounds and hostile requests ------------------------------------------------------------------


@pytest.mark.parametrize(
    "offsets, size, message",
    [
        ((0, 2 * NBYTES), NBYTES, "Invalid offset for shared memory region: 'in'"),
        ((0, NBYTES + 4), NBYTES, "Invalid offset + byte size for shared memory region: 'in'"),
        ((0, NBYTES), NBYTES - 4, "input byte size mismatch for input 'INPUT0' for model 'simple'"),
    ],
)
def test_out_of_bounds_and_wrong_sizes(client, regions, offsets, size, message):
    c = client
    _registered_input(c, regions)
    error = _error(lambda: c.infer("simple", _inputs(c, size=size, offsets=offsets)))
    assert message in str(error)


def test_unknown_region(client):
    c = client
    error = _error(lambda: c.infer("simple", _inputs(c, region="ghost")))
    assert "Unable to find shared memory region: 'ghost'" in str(error)


def test_output_region_too_small(client, regions):
    c = client
    _registered_input(c, regions)
    key, _ = regions(NBYTES)
    c.register_system_shared_memory("out", key, NBYTES)
    out = c.module.InferRequestedOutput("OUTPUT0")
    out.set_shared_memory("out", NBYTES // 2)
    error = _error(lambda: c.infer("simple", _inputs(c), outputs=[out]))
    assert (
        "shared memory size specified with the request for output 'OUTPUT0' (32 bytes) "
        "should be at least 64 bytes to hold the results"
    ) in str(error)


def test_truncated_object_is_an_error_not_a_crash(client, regions):
    c = client
    key, handle = _registered_input(c, regions)
    os.truncate(f"/dev/shm/{key[1:]}", 8)
    error = _error(lambda: c.infer("simple", _inputs(c)))
    assert "shared memory region 'in' is no longer valid" in str(error)
    assert c.is_server_live()
    os.truncate(f"/dev/shm/{key[1:]}", 2 * NBYTES)  # grown back: served again
    shm.set_shared_memory_region(handle, [X0])
    shm.set_shared_memory_region(handle, [X1], offset=NBYTES)
    np.testing.assert_array_equal(c.infer("simple", _inputs(c)).as_numpy("OUTPUT0"), X0 + X1)


def test_bad_parameters_over_http(shm_server, regions):
    import json
    import urllib.request

    def post(document):
        request = urllib.request.Request(
            f"http://{shm_server.url('http')}/v2/models/simple/infer",
            data=json.dumps(document).encode(),
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def infer(parameters, **more):
        tensor = {
            "name": "INPUT0",
            "datatype": "INT32",
            "shape": [1, 16],
            "parameters": parameters,
            **more,
        }
        return post({"inputs": [tensor, dict(tensor, name="INPUT1")]})

    status, body = infer({"shared_memory_region": 7, "shared_memory_byte_size": 64})
    assert status == 400 and "expected string_param" in body["error"]
    status, body = infer({"shared_memory_region": "in"})
    assert status == 400 and "'shared_memory_byte_size' must be specified" in body["error"]
    status, body = infer({"shared_memory_offset": 0}, data=list(range(16)))
    assert status == 400 and "can not be specified without" in body["error"]
    status, body = infer({"shared_memory_region": "in", "shared_memory_byte_size": -1})
    assert status == 400 and "must be >= 0" in body["error"]
    status, body = infer(
        {"shared_memory_region": "in", "shared_memory_byte_size": 64}, data=list(range(16))
    )
    assert status == 400 and "But set 'data' 'shared_memory_region'" in body["error"]


# -- the registry on its own ---------------------------------------------------------------------


def _request(region: str, size: int = NBYTES) -> InferRequest:
    parameters = {"shared_memory_region": region, "shared_memory_byte_size": size}
    return InferRequest(
        "simple",
        inputs=[InputTensor("INPUT0", "INT32", (1, 16), parameters=dict(parameters))],
        outputs=[RequestedOutput("OUTPUT0", parameters=dict(parameters))],
    )


def test_a_region_in_use_cannot_be_unregistered(regions):
    key, _ = regions(NBYTES)
    memory = SystemSharedMemory()
    memory.register("r", key, 0, NBYTES)
    held = memory.bind(_request("r"))
    in_use = "Cannot unregister shared memory region 'r', it is currently in use."
    busy = "Failed to unregister the following system shared memory regions: r ,"
    for name, message in (("r", in_use), ("", busy)):
        with pytest.raises(ServingError) as info:
            memory.unregister(name)
        assert info.value.status is Status.INTERNAL
        assert info.value.message == message
    held.release()
    memory.unregister("r")
    assert len(memory) == 0
    memory.close()


def test_close_closes_every_region(regions):
    key, _ = regions(NBYTES)
    memory = SystemSharedMemory()
    memory.register("a", key, 0, NBYTES)
    memory.register("b", key, 0, 8)
    memory.bind(_request("a"))  # never released: close still closes it
    memory.close()
    assert len(memory) == 0 and memory.status() == []


def test_shutdown_closes_the_regions(tmp_path, regions, serving_log):
    build_simple(tmp_path)
    key, _ = regions(NBYTES)
    srv = local_server([tmp_path]).start()
    try:
        client = httpclient.InferenceServerClient(srv.url("http"))
        client.register_system_shared_memory("r", key, NBYTES)
        client.close()
        assert len(srv.core.shared_memory) == 1
    finally:
        srv.stop()
    assert len(srv.core.shared_memory) == 0


@pytest.mark.parametrize(
    "parameters, message",
    [
        ({"shared_memory_region": "r", "shared_memory_byte_size": True}, "expected int64_param"),
        ({"shared_memory_region": "r", "shared_memory_byte_size": 1.5}, "expected int64_param"),
        (
            {
                "shared_memory_region": "r",
                "shared_memory_byte_size": 4,
                "shared_memory_offset": "0",
            },
            "expected int64_param",
        ),
        ({"shared_memory_byte_size": 4}, "can not be specified without"),
    ],
)
def test_tensor_reference_rejects(parameters, message):
    with pytest.raises(ServingError, match=message):
        tensor_reference("input", "x", parameters)


def test_slices_match_the_object(regions):
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies
    size = 256
    key, handle = regions(size)
    content = np.arange(size, dtype=np.uint8)
    shm.set_shared_memory_region(handle, [content])
    memory = SystemSharedMemory()

    @hypothesis.settings(max_examples=60, deadline=None)
    @hypothesis.given(
        st.integers(0, size), st.integers(0, size), st.integers(0, 300), st.integers(0, 300)
    )
    def check(region_offset, region_size, offset, byte_size):
        memory.unregister()
        if region_offset + region_size > size:
            with pytest.raises(ServingError, match="invalid args"):
                memory.register("r", key, region_offset, region_size)
            return
        memory.register("r", key, region_offset, region_size)
        tensor = InputTensor(
            "x",
            "UINT8",
            (byte_size,),
            parameters={
                "shared_memory_region": "r",
                "shared_memory_byte_size": byte_size,
                "shared_memory_offset": offset,
            },
        )
        try:
            held = memory.bind(InferRequest("simple", inputs=[tensor]))
        except ServingError as exc:
            assert offset >= region_size or offset + byte_size > region_size
            assert "Invalid offset" in exc.message
            return
        assert offset < region_size and offset + byte_size <= region_size
        start = region_offset + offset
        assert tensor.shared_memory.read() == content[start : start + byte_size].tobytes()
        held.release()

    check()
    memory.close()
