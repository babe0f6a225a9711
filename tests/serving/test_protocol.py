"""The v2 protocol over gRPC and HTTP with the stock tritonclient: every call and its errors."""

from __future__ import annotations

import gzip
import http.client
import json

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.grpc import model_config_pb2
from tritonclient.utils import InferenceServerException

from .gates import DEADLINE


def grpc_input(name, array, datatype="FP32"):
    tensor = grpcclient.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    return tensor


def http_input(name, array, datatype="FP32", binary=True):
    tensor = httpclient.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array, binary_data=binary)
    return tensor


def rows(n, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 4)).astype(np.float32)


# -- health and metadata -------------------------------------------------------------------------


def test_health(grpc_client, http_client):
    assert grpc_client.is_server_live() and http_client.is_server_live()
    # not strict: the broken models do not make the server unready
    assert grpc_client.is_server_ready() and http_client.is_server_ready()
    for client in (grpc_client, http_client):
        assert client.is_model_ready("simple")
        assert client.is_model_ready("simple", "1")
        assert not client.is_model_ready("simple", "7")
        assert not client.is_model_ready("broken_dtype")
        assert not client.is_model_ready("no_such_model")


def test_server_metadata(grpc_client, http_client):
    md = http_client.get_server_metadata()
    assert md["name"] == "triton" and "binary_tensor_data" in md["extensions"]
    assert {"model_repository", "model_configuration", "statistics"} <= set(md["extensions"])
    gmd = grpc_client.get_server_metadata()
    assert gmd.name == "triton" and list(gmd.extensions) == md["extensions"]


def test_model_metadata_uses_served_names(grpc_client, http_client):
    md = http_client.get_model_metadata("simple")
    assert md["name"] == "simple" and md["versions"] == ["1"] and md["platform"] == "poplar"
    assert md["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
    assert md["outputs"] == [{"name": "probs", "datatype": "FP32", "shape": [-1, 3]}]
    gmd = grpc_client.get_model_metadata("simple", "1")
    assert gmd.inputs[0].name == "x" and list(gmd.inputs[0].shape) == [-1, 4]
    nb = http_client.get_model_metadata("nobatch")
    assert nb["inputs"][0]["shape"] == [1, 4]


def test_model_config_both_transports(grpc_client, http_client):
    config = grpc_client.get_model_config("simple").config
    assert isinstance(config, model_config_pb2.ModelConfig)
    assert config.max_batch_size == 8 and config.input[0].name == "x"
    assert config.input[0].data_type == model_config_pb2.TYPE_FP32
    data = http_client.get_model_config("simple")
    assert data["max_batch_size"] == 8 and data["input"][0]["dims"] == [4]
    assert data["backend"] == "poplar"
    # the auto-completed config is what the server reports
    micro = http_client.get_model_config("micro")
    assert micro["max_batch_size"] == 4 and "dynamic_batching" in micro


# -- inference ----------------------------------------------------------------------------------


@pytest.mark.parametrize("batch", [1, 5, 8])
def test_grpc_infer(grpc_client, models, batch):
    x = rows(batch, batch)
    result = grpc_client.infer(
        "simple", [grpc_input("x", x)], outputs=[grpcclient.InferRequestedOutput("probs")]
    )
    np.testing.assert_allclose(
        result.as_numpy("probs"), models["simple"].reference(x), rtol=1e-5, atol=1e-6
    )
    response = result.get_response()
    assert response.model_name == "simple" and response.model_version == "1"


@pytest.mark.parametrize(
    "binary_in, binary_out", [(True, True), (False, False), (True, False), (False, True)]
)
def test_http_infer_json_and_binary(http_client, models, binary_in, binary_out):
    x = rows(3, 7)
    result = http_client.infer(
        "simple",
        [http_input("x", x, binary=binary_in)],
        outputs=[httpclient.InferRequestedOutput("probs", binary_data=binary_out)],
        request_id="r1",
    )
    np.testing.assert_allclose(
        result.as_numpy("probs"), models["simple"].reference(x), rtol=1e-5, atol=1e-6
    )
    assert result.get_response()["id"] == "r1"


def test_http_infer_default_outputs_are_binary(http_client, models):
    x = rows(2)
    result = http_client.infer("simple", [http_input("x", x)])
    assert result.get_output("probs")["parameters"]["binary_data_size"] == 2 * 3 * 4
    np.testing.assert_allclose(
        result.as_numpy("probs"), models["simple"].reference(x), rtol=1e-5, atol=1e-6
    )


def test_async_infer(grpc_client, http_client, models):
    import queue

    x = rows(2, 3)
    done: queue.Queue = queue.Queue()
    grpc_client.async_infer(
        "simple", [grpc_input("x", x)], callback=lambda result, error: done.put((result, error))
    )
    http_result = http_client.async_infer("simple", [http_input("x", x)]).get_result()
    np.testing.assert_allclose(
        http_result.as_numpy("probs"), models["simple"].reference(x), rtol=1e-5, atol=1e-6
    )
    result, error = done.get(timeout=DEADLINE)
    assert error is None
    np.testing.assert_allclose(
        result.as_numpy("probs"), models["simple"].reference(x), rtol=1e-5, atol=1e-6
    )


def test_grpc_stream_infer(grpc_client, models):
    import queue

    results: queue.Queue = queue.Queue()
    grpc_client.start_stream(callback=lambda result, error: results.put((result, error)))
    inputs = [rows(1, i) for i in range(4)]
    for i, x in enumerate(inputs):
        grpc_client.async_stream_infer("simple", [grpc_input("x", x)], request_id=str(i))
    grpc_client.async_stream_infer("simple", [grpc_input("nope", inputs[0])])
    got, errors = {}, []
    for _ in range(5):
        result, error = results.get(timeout=DEADLINE)
        if error is not None:
            errors.append(str(error))
        else:
            got[result.get_response().id] = result.as_numpy("probs")
    grpc_client.stop_stream()
    assert len(errors) == 1 and "unexpected inference input 'nope'" in errors[0]
    for i, x in enumerate(inputs):
        np.testing.assert_allclose(got[str(i)], models["simple"].reference(x), rtol=1e-5, atol=1e-6)


def test_micro_batch_and_replicas_pad_the_batch(grpc_client, http_client, models):
    # micro batch 2 x 2 replicas: one step takes 4 rows; 3 rows are padded to 4 and cut back
    for n in (1, 3, 4):
        x = rows(n, n)
        result = grpc_client.infer("micro", [grpc_input("input", x)])
        np.testing.assert_allclose(
            result.as_numpy("out"), models["micro"].reference(x), rtol=1e-5, atol=1e-6
        )
    result = http_client.infer("micro", [http_input("input", rows(3))])
    assert result.as_numpy("out").shape == (3, 3)


def test_model_without_batching(grpc_client, models):
    x = rows(1).reshape(1, 4)
    result = grpc_client.infer("nobatch", [grpc_input("input", x)])
    np.testing.assert_allclose(
        result.as_numpy("out"), models["nobatch"].reference(x), rtol=1e-5, atol=1e-6
    )
    with pytest.raises(InferenceServerException, match=r"expected \[1, 4\], got \[2, 4\]"):
        grpc_client.infer("nobatch", [grpc_input("input", rows(2))])


def test_classification_extension(http_client, grpc_client, models):
    x = rows(2, 11)
    expected = models["simple"].reference(x)
    for client, output in (
        (http_client, httpclient.InferRequestedOutput("probs", class_count=2)),
        (grpc_client, grpcclient.InferRequestedOutput("probs", class_count=2)),
    ):
        client_input = http_input if client is http_client else grpc_input
        result = client.infer("simple", [client_input("x", x)], outputs=[output])
        top = result.as_numpy("probs")
        assert top.shape == (2, 2)
        for row, got in zip(expected, top):
            best = int(np.argmax(row))
            score, index = got[0].decode().split(":")[:2]
            assert int(index) == best and abs(float(score) - row[best]) < 1e-5


# -- errors ---------------------------------------------------------------------------------------


def grpc_error(call) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as info:
        call()
    return info.value


def test_unknown_model_and_version(grpc_client, http_client):
    x = rows(1)
    e = grpc_error(lambda: grpc_client.infer("no_such_model", [grpc_input("x", x)]))
    assert e.status() == "StatusCode.NOT_FOUND"
    assert e.message() == "Request for unknown model: 'no_such_model' is not found"
    e = grpc_error(lambda: http_client.infer("no_such_model", [http_input("x", x)]))
    assert e.status() == "404"
    assert e.message() == "Request for unknown model: 'no_such_model' is not found"
    e = grpc_error(lambda: http_client.infer("simple", [http_input("x", x)], model_version="9"))
    assert e.status() == "404" and e.message().startswith(
        "Request for unknown model: 'simple' version 9 is not found"
    )
    e = grpc_error(lambda: grpc_client.get_model_metadata("no_such_model"))
    assert e.status() == "StatusCode.NOT_FOUND"
    e = grpc_error(lambda: http_client.get_model_config("no_such_model"))
    assert e.status() == "404"


def test_broken_model_is_unavailable_with_its_reason(grpc_client, http_client):
    e = grpc_error(lambda: http_client.infer("broken_dtype", [http_input("input", rows(1))]))
    # Triton's answer for a model with no ready version, then why
    assert e.status() == "404" and "data_type TYPE_FP16" in e.message()
    assert e.message().startswith(
        "Request for unknown model: 'broken_dtype' has no available versions"
    )
    e = grpc_error(lambda: grpc_client.infer("corrupt", [grpc_input("input", rows(1))]))
    assert e.status() == "StatusCode.NOT_FOUND" and "no available versions" in e.message()


@pytest.mark.parametrize(
    "case",
    [
        "unknown input",
        "missing input",
        "wrong dtype",
        "wrong shape",
        "batch too big",
        "unknown output",
    ],
)
def test_request_errors_say_what_was_wrong(grpc_client, http_client, case):
    x = rows(2)
    outputs = None
    if case == "unknown input":
        named, dtype, array = "y", "FP32", x
        message = "unexpected inference input 'y' for model 'simple'; its inputs are 'x'"
    elif case == "missing input":
        named = None
        message = "expected 1 inputs but got 0 inputs for model 'simple': missing input 'x'"
    elif case == "wrong dtype":
        named, dtype, array = "x", "FP64", x.astype(np.float64)
        message = "inference input 'x' data-type is 'FP64', but model 'simple' expects 'FP32'"
    elif case == "wrong shape":
        named, dtype, array = "x", "FP32", np.zeros((2, 5), np.float32)
        message = "unexpected shape for input 'x' for model 'simple': expected [-1, 4], got [2, 5]"
    elif case == "batch too big":
        named, dtype, array = "x", "FP32", rows(9)
        message = "inference request batch-size must be <= 8 for 'simple', got 9"
    else:
        named, dtype, array = "x", "FP32", x
        message = "unexpected inference output 'nope' for model 'simple'; its outputs are 'probs'"
        outputs = "nope"
    for client, make_input, requested, status in (
        (grpc_client, grpc_input, grpcclient.InferRequestedOutput, "StatusCode.INVALID_ARGUMENT"),
        (http_client, http_input, httpclient.InferRequestedOutput, "400"),
    ):
        inputs = [] if named is None else [make_input(named, array, dtype)]
        outs = [requested(outputs)] if outputs else None
        e = grpc_error(lambda c=client, i=inputs, o=outs: c.infer("simple", i, outputs=o))
        assert e.status() == status
        assert message in e.message()


def raw_http(server, method, path, body=b"", headers=None):
    host, port = server.url("http").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=DEADLINE)
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, data, dict(response.getheaders())


def binary_x_header(binary_data_size: int) -> bytes:
    """The JSON header of a request whose FP32 [1, 4] input ``x`` is ``binary_data_size``
    bytes of binary data."""
    x = {
        "name": "x",
        "datatype": "FP32",
        "shape": [1, 4],
        "parameters": {"binary_data_size": binary_data_size},
    }
    return json.dumps({"inputs": [x]}).encode()


def post_binary(server, header: bytes, binary: bytes):
    return raw_http(
        server,
        "POST",
        "/v2/models/simple/infer",
        header + binary,
        {"Inference-Header-Content-Length": str(len(header))},
    )


def test_http_body_errors(server):
    status, data, _ = post_binary(server, binary_x_header(16), b"\0" * 12)
    assert (
        status == 400 and "binary_data_size 16 runs past the 12 bytes" in json.loads(data)["error"]
    )
    status, data, _ = post_binary(server, binary_x_header(8), b"\0" * 8)
    assert status == 400
    assert (
        "input byte size mismatch for input 'x' for model 'simple': expected 16 bytes"
        in json.loads(data)["error"]
    )
    status, data, _ = raw_http(server, "POST", "/v2/models/simple/infer", b"{not json")
    assert status == 400 and "not valid JSON" in json.loads(data)["error"]
    status, data, _ = raw_http(
        server,
        "POST",
        "/v2/models/simple/infer",
        json.dumps(
            {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3]}]}
        ),
    )
    assert status == 400 and "has 3 values but shape [1, 4] needs 4" in json.loads(data)["error"]
    status, data, _ = raw_http(server, "GET", "/v2/nowhere")
    assert status == 404 and "no such endpoint" in json.loads(data)["error"]


def test_http_json_request_by_hand_and_gzip(server, models):
    x = rows(2, 5)
    body = json.dumps(
        {
            "id": "7",
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 4], "data": x.tolist()}],
        }
    ).encode()
    status, data, _ = raw_http(
        server,
        "POST",
        "/v2/models/simple/versions/1/infer",
        gzip.compress(body),
        {"Content-Encoding": "gzip"},
    )
    assert status == 200, data
    response = json.loads(data)
    assert response["id"] == "7" and response["model_version"] == "1"
    [output] = response["outputs"]
    assert output["name"] == "probs" and output["shape"] == [2, 3]
    np.testing.assert_allclose(
        np.array(output["data"]).reshape(2, 3), models["simple"].reference(x), rtol=1e-5, atol=1e-6
    )


def test_request_size_limits(server, grpc_client, http_client):
    big = np.zeros((8, 4), np.float32)  # fine
    http_client.infer("simple", [http_input("x", big)])
    status, data, _ = raw_http(server, "POST", "/v2/models/simple/infer", b"x" * (2 << 20))
    assert status == 400 and "over the limit of 1048576 bytes" in json.loads(data)["error"]
    huge = np.zeros((300000, 4), np.float32)  # 4.8 MB > the 1 MiB limit of the fixture
    e = grpc_error(lambda: grpc_client.infer("simple", [grpc_input("x", huge)]))
    assert e.status() == "StatusCode.RESOURCE_EXHAUSTED"


# -- statistics and metrics --------------------------------------------------------------------


def test_statistics_and_metrics_agree(server, grpc_client, http_client):
    before = http_client.get_inference_statistics("simple")["model_stats"][0]
    grpc_client.infer("simple", [grpc_input("x", rows(3))])
    http_client.infer("simple", [http_input("x", rows(2))])
    grpc_error(
        lambda: grpc_client.infer(
            "simple", [grpc_input("x", rows(2), "FP32"), grpc_input("x", rows(2))]
        )
    )
    stats = http_client.get_inference_statistics("simple")["model_stats"][0]
    assert stats["name"] == "simple" and stats["version"] == "1"
    assert stats["inference_count"] - before["inference_count"] == 5
    assert stats["execution_count"] - before["execution_count"] == 2
    success = stats["inference_stats"]["success"]
    assert success["count"] - before["inference_stats"]["success"]["count"] == 2
    assert (
        stats["inference_stats"]["fail"]["count"] - before["inference_stats"]["fail"]["count"] == 1
    )
    assert success["ns"] > 0 and stats["inference_stats"]["compute_infer"]["ns"] > 0
    gstats = grpc_client.get_inference_statistics("simple", "1").model_stats[0]
    assert gstats.inference_count == stats["inference_count"]
    everything = http_client.get_inference_statistics()["model_stats"]
    assert {"simple", "micro", "batched"} <= {s["name"] for s in everything}

    import urllib.request

    text = urllib.request.urlopen(
        f"http://{server.url('metrics')}/metrics", timeout=DEADLINE
    ).read()
    text = text.decode()
    labels = '{model="simple",version="1"}'
    values = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in text.splitlines()
        if line.startswith("nv_") and labels in line
    }
    assert values[f"nv_inference_request_success{labels}"] == success["count"]
    assert (
        values[f"nv_inference_request_failure{labels}"] == stats["inference_stats"]["fail"]["count"]
    )
    assert values[f"nv_inference_count{labels}"] == stats["inference_count"]
    assert values[f"nv_inference_exec_count{labels}"] == stats["execution_count"]
    for name in (
        "request_duration_us",
        "queue_duration_us",
        "compute_input_duration_us",
        "compute_infer_duration_us",
        "compute_output_duration_us",
    ):
        assert f"nv_inference_{name}{labels}" in values
    assert "# TYPE nv_inference_request_success counter" in text
