"""Bad requests get 4xx / INVALID_ARGUMENT naming the field, never 500, INTERNAL or a 200
with invalid JSON; responses are standard JSON even when a model outputs NaN or infinity."""

from __future__ import annotations

import http.client
import json

import grpc
import numpy as np
import pytest
import tritonclient.http as httpclient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc


def strict_json(data: bytes):
    """``json.loads`` that refuses what standard JSON does not have (NaN, Infinity)."""

    def refuse(constant):
        raise ValueError(f"{constant} is not standard JSON")

    return json.loads(data, parse_constant=refuse)


def post(server, path: str, body: bytes, headers: dict | None = None) -> tuple[int, bytes]:
    """The status and JSON part of the response (the header of a binary one)."""
    host, port = server.url("http").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        connection.request("POST", path, body=body, headers=headers or {})
        response = connection.getresponse()
        data = response.read()
        json_size = response.getheader("Inference-Header-Content-Length")
        return response.status, data if json_size is None else data[: int(json_size)]
    finally:
        connection.close()


def infer_json(server, document: dict | str, model: str = "simple") -> tuple[int, dict]:
    body = document if isinstance(document, str) else json.dumps(document)
    status, data = post(server, f"/v2/models/{model}/infer", body.encode())
    return status, strict_json(data)


def x_input(**fields) -> dict:
    return {
        "inputs": [
            {
                "name": "x",
                "datatype": "FP32",
                "shape": [1, 4],
                "data": [1.0, 2.0, 3.0, 4.0],
                **fields,
            }
        ]
    }


def grpc_infer(server, request: pb.ModelInferRequest):
    with grpc.insecure_channel(server.url("grpc")) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        return stub.ModelInfer(request, timeout=60)


def grpc_x(values=(1.0, 2.0, 3.0, 4.0), shape=(1, 4), **request) -> pb.ModelInferRequest:
    tensor = pb.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=list(shape))
    tensor.contents.fp32_contents.extend(values)
    return pb.ModelInferRequest(model_name="simple", inputs=[tensor], **request)


# -- the cases of the issue ------------------------------------------------------------------------


def test_deeply_nested_json_is_400(server):
    depth = 100_000
    status, body = infer_json(server, '{"inputs": ' + "[" * depth + "]" * depth + "}")
    assert status == 400 and "nested too deeply" in body["error"]
    status, data = post(server, "/v2/repository/index", b"[" * depth + b"]" * depth)
    assert status == 400 and "nested too deeply" in strict_json(data)["error"]


@pytest.mark.parametrize(
    "timeout",
    [
        "1e999",
        "-1e999",
        "Infinity",
        "-Infinity",
        "NaN",
        "1.5",
        '"inf"',
        '"1e999"',
        "-1",
        str(2**64),
        "true",
        "[1]",
    ],
)
def test_bad_timeout_is_400_naming_it(server, timeout):
    document = json.dumps(x_input()).replace(
        '"inputs"', f'"parameters": {{"timeout": {timeout}}}, "inputs"', 1
    )
    status, body = infer_json(server, document)
    assert status == 400, body
    assert "timeout" in body["error"]


@pytest.mark.parametrize("timeout", [float("inf"), float("-inf"), float("nan"), 1e300, 2.5])
def test_bad_timeout_is_invalid_argument_over_grpc(server, timeout):
    request = grpc_x()
    request.parameters["timeout"].double_param = timeout
    with pytest.raises(grpc.RpcError) as info:
        grpc_infer(server, request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "'timeout'" in info.value.details()


def test_whole_float_and_integer_timeouts_are_taken(server):
    for timeout in ("1000000", "1e6", '"1000000"'):
        document = json.dumps(x_input()).replace(
            '"inputs"', f'"parameters": {{"timeout": {timeout}}}, "inputs"', 1
        )
        status, body = infer_json(server, document)
        assert status == 200, body


@pytest.mark.parametrize(
    "data",
    [
        "[null, 1, 2, 3]",
        "[NaN, 1, 2, 3]",
        "[Infinity, 1, 2, 3]",
        '["1", 2, 3, 4]',
        "[true, false, true, false]",
        "[[1, 2], [3]]",
        "[1, 2, 3, {}]",
        '{"a": 1}',
        "1e999",
        "[1e999, 1, 2, 3]",
        "[1, 2, 3, 1e39]",
    ],
)
def test_bad_json_data_is_400_naming_the_input(server, data):
    document = json.dumps(x_input()).replace("[1.0, 2.0, 3.0, 4.0]", data)
    status, body = infer_json(server, document)
    assert status == 400, body
    assert "input 'x'" in body["error"]


@pytest.mark.parametrize(
    "shape",
    [[1.5, 4], [1.0, 4], ["1", 4], [True, 4], [1, None], [2**70, 4], [-1, 4], "[1, 4]", [[1], 4]],
)
def test_bad_shape_is_400_naming_it(server, shape):
    status, body = infer_json(server, x_input(shape=shape))
    assert status == 400, body
    assert "shape" in body["error"] and (
        "input 'x'" in body["error"] or "inputs[0]" in body["error"]
    )


def test_nan_elsewhere_in_the_request_is_400_naming_the_field(server):
    document = json.dumps(x_input()).replace('"inputs"', '"id": NaN, "inputs"', 1)
    status, body = infer_json(server, document)
    assert status == 400 and "'id' is NaN" in body["error"]
    status, data = post(server, "/v2/repository/index", b'{"ready": Infinity}')
    assert status == 400 and "'ready' is Infinity" in strict_json(data)["error"]
    # only an input's own values are left to the input check: a 'data' key elsewhere is not
    document = json.dumps(x_input()).replace('"inputs"', '"parameters": {"data": NaN}, "inputs"', 1)
    status, body = infer_json(server, document)
    assert status == 400 and "'parameters.data' is NaN" in body["error"]


def test_integer_data_out_of_range_is_400(server):
    # 'simple' takes FP32; an integer model is not needed to check that ints are range-checked
    from popef.servable.errors import ServingError
    from popef.serving.core import _values
    from popef.serving.protocol import InputTensor

    with pytest.raises(ServingError, match=r"value 300 is out of the range of INT8"):
        _values(InputTensor("i", "INT8", (2,), data=[1, 300]), np.dtype("i1"))
    with pytest.raises(ServingError, match=r"value -1 is out of the range of UINT8"):
        _values(InputTensor("i", "UINT8", (2,), data=[1, -1]), np.dtype("u1"))
    with pytest.raises(ServingError, match=r"'data' must be a list of INT32 values"):
        _values(InputTensor("i", "INT32", (2,), data=[1, 2.5]), np.dtype("<i4"))
    with pytest.raises(ServingError, match=r"'data' must be a list of INT64 values"):
        _values(InputTensor("i", "INT64", (2,), data=[1, 2**70]), np.dtype("<i8"))
    assert _values(InputTensor("i", "BOOL", (2,), data=[True, False]), np.dtype("?")).tolist() == [
        True,
        False,
    ]
    assert _values(InputTensor("i", "INT8", (0,), data=[]), np.dtype("i1")).dtype == np.int8


def test_nan_outputs_are_standard_json(server):
    # an infinite input makes softmax(x @ w) NaN: sent as binary data, answered as JSON
    x = np.array([[np.inf, 0, 0, 0]], np.float32)
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "datatype": "FP32",
                    "shape": [1, 4],
                    "parameters": {"binary_data_size": 16},
                }
            ],
            "outputs": [{"name": "probs", "parameters": {"binary_data": False}}],
        }
    ).encode()
    status, data = post(
        server,
        "/v2/models/simple/infer",
        header + x.tobytes(),
        {"Inference-Header-Content-Length": str(len(header))},
    )
    assert status == 200, data
    [output] = strict_json(data)["outputs"]
    assert "NaN" in output["data"]
    # tritonclient reads the strings back as floats
    client = httpclient.InferenceServerClient(server.url("http"))
    try:
        tensor = httpclient.InferInput("x", [1, 4], "FP32")
        tensor.set_data_from_numpy(x, binary_data=True)
        result = client.infer(
            "simple",
            [tensor],
            outputs=[httpclient.InferRequestedOutput("probs", binary_data=False)],
        )
        assert np.isnan(result.as_numpy("probs")).any()
    finally:
        client.close()


def test_grpc_nan_data_is_taken_as_data(server):
    # gRPC floats are IEEE values, not JSON: NaN is a value the model may be given
    response = grpc_infer(server, grpc_x(values=(float("nan"), 1.0, 2.0, 3.0)))
    assert np.isnan(np.frombuffer(response.raw_output_contents[0], np.float32)).all()


# -- no 200 built from a guess -----------------------------------------------------------------


@pytest.mark.parametrize("request_id", ['{"a": 1}', "[1]", "7", "null", "true"])
def test_a_request_id_that_is_not_a_string_is_400(server, request_id):
    document = json.dumps(x_input()).replace('"inputs"', f'"id": {request_id}, "inputs"', 1)
    status, body = infer_json(server, document)
    assert status == 400, body
    assert "'id' must be a string" in body["error"]


def test_binary_data_size_and_data_in_one_input_is_400(server):
    header = json.dumps(x_input(parameters={"binary_data_size": 16})).encode()
    body = header + np.arange(4, dtype=np.float32).tobytes()
    status, data = post(
        server,
        "/v2/models/simple/infer",
        body,
        {"Inference-Header-Content-Length": str(len(header))},
    )
    assert status == 400
    assert "both 'data' and binary_data_size" in strict_json(data)["error"]


# (whitespace around a header value is not part of it, as HTTP says)
@pytest.mark.parametrize("form", ["+{}", "0x{:x}", "{}.0", "-0", "1_0", "\u0661"])
def test_inference_header_content_length_is_digits_only(server, form):
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "datatype": "FP32",
                    "shape": [1, 4],
                    "parameters": {"binary_data_size": 16},
                }
            ]
        }
    ).encode()
    body = header + np.arange(4, dtype=np.float32).tobytes()
    value = form.format(len(header)).encode().decode("unicode_escape")
    status, data = post(
        server,
        "/v2/models/simple/infer",
        body,
        {"Inference-Header-Content-Length": value.encode("utf-8")},
    )
    assert status == 400
    assert "Inference-Header-Content-Length" in strict_json(data)["error"]
    status, _ = post(
        server,
        "/v2/models/simple/infer",
        body,
        {"Inference-Header-Content-Length": str(len(header))},
    )
    assert status == 200


def test_grpc_raw_and_typed_contents_together_is_invalid_argument(server):
    request = grpc_x()
    request.raw_input_contents.append(np.arange(4, dtype=np.float32).tobytes())
    with pytest.raises(grpc.RpcError) as info:
        grpc_infer(server, request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == (
        "contents field must not be specified when using "
        "raw_input_contents for 'x' for model 'simple'"
    )


def test_grpc_values_in_the_wrong_contents_field_name_both(server):
    tensor = pb.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=[1, 4])
    tensor.contents.int_contents.extend([1, 2, 3, 4])
    with pytest.raises(grpc.RpcError) as info:
        grpc_infer(server, pb.ModelInferRequest(model_name="simple", inputs=[tensor]))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == (
        "input 'x' of datatype 'FP32' must send its values in "
        "contents.fp32_contents, got int_contents"
    )


# -- errors that quote client input stay short --------------------------------------------------


def test_a_huge_model_name_is_not_found_over_grpc(server):
    request = grpc_x()
    request.model_name = "m" * 70_000
    with pytest.raises(grpc.RpcError) as info:
        grpc_infer(server, request)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert len(info.value.details()) < 4200 and "(truncated)" not in info.value.details()
    assert "more characters)" in info.value.details()


def test_a_shape_of_100k_dimensions_is_invalid_argument_over_grpc(server):
    request = grpc_x(shape=[1] * 100_000)
    with pytest.raises(grpc.RpcError) as info:
        grpc_infer(server, request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "unexpected shape for input 'x'" in info.value.details()
    assert len(info.value.details()) < 1000


def test_a_huge_model_name_gets_a_short_error_over_http(server):
    status, data = post(
        server, "/v2/models/" + "m" * 8_000 + "/infer", json.dumps(x_input()).encode()
    )
    assert status in (400, 404)
    assert len(strict_json(data)["error"]) < 4200


# -- fuzzing ---------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(
            st.sampled_from(
                [
                    "name",
                    "datatype",
                    "shape",
                    "data",
                    "parameters",
                    "binary_data_size",
                    "binary_data",
                    "classification",
                    "timeout",
                    "id",
                    "x",
                ]
            ),
            children,
            max_size=5,
        )
    ),
    max_leaves=20,
)

tensor_fields = st.fixed_dictionaries(
    {},
    optional={
        "name": st.sampled_from(["x", "y", ""]) | json_values,
        "datatype": st.sampled_from(["FP32", "INT8", "BYTES", "BF16", "FP16"]) | json_values,
        "shape": st.lists(st.integers(-2, 5) | json_values, max_size=4) | json_values,
        "data": st.lists(st.floats() | st.integers(-300, 300) | json_values, max_size=8)
        | json_values,
        "parameters": st.fixed_dictionaries(
            {},
            optional={
                "binary_data_size": st.integers(-4, 40) | json_values,
                "binary_data": json_values,
                "classification": st.integers(-2, 5) | json_values,
            },
        )
        | json_values,
    },
)

requests = st.fixed_dictionaries(
    {},
    optional={
        "id": json_values,
        "inputs": st.lists(tensor_fields, max_size=2) | json_values,
        "outputs": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "name": st.sampled_from(["probs", "nope"]) | json_values,
                    "parameters": json_values,
                },
            ),
            max_size=2,
        )
        | json_values,
        "parameters": st.fixed_dictionaries(
            {},
            optional={
                "timeout": json_values,
                "sequence_id": json_values,
                "binary_data_output": json_values,
            },
        )
        | json_values,
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    document=requests,
    binary=st.binary(max_size=40),
    split=st.integers(-5, 400),
    model=st.sampled_from(["simple", "nobatch", "missing"]),
)
def test_fuzz_http_infer_never_500(server, document, binary, split, model):
    header = json.dumps(document).encode()  # NaN and Infinity written bare, as Python does
    headers = {
        "Inference-Header-Content-Length": str(
            split if split < 0 or split < len(header) else len(header)
        )
    }
    status, data = post(server, f"/v2/models/{model}/infer", header + binary, headers)
    assert status < 500 or status == 503, data
    strict_json(data)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.binary(max_size=200))
def test_fuzz_grpc_bytes_never_internal(server, data):
    """Arbitrary bytes as a ModelInferRequest: a message that does not parse is
    INVALID_ARGUMENT, never INTERNAL."""
    with grpc.insecure_channel(server.url("grpc")) as channel:
        call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        try:
            call(data, timeout=60)
        except grpc.RpcError as exc:
            assert exc.code() != grpc.StatusCode.INTERNAL, exc.details()
            assert exc.code() != grpc.StatusCode.UNKNOWN, exc.details()


grpc_values = st.floats() | st.integers(-(2**63), 2**63 - 1)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    shape=st.lists(st.integers(-(2**63), 2**63 - 1) | st.integers(-1, 5), max_size=4),
    datatype=st.sampled_from(["FP32", "INT8", "BYTES", "BF16", "", "FP64"]),
    values=st.lists(st.floats(width=32), max_size=8),
    raw=st.none() | st.binary(max_size=40),
    timeout=st.none() | grpc_values | st.text(max_size=5),
    classification=st.none() | st.integers(-(2**63), 2**63 - 1),
)
def test_fuzz_grpc_infer_never_internal(
    server, shape, datatype, values, raw, timeout, classification
):
    tensor = pb.ModelInferRequest.InferInputTensor(name="x", datatype=datatype, shape=shape)
    request = pb.ModelInferRequest(model_name="simple", inputs=[tensor])
    if raw is None:
        tensor = request.inputs[0]
        tensor.contents.fp32_contents.extend(values)
    else:
        request.raw_input_contents.append(raw)
    if isinstance(timeout, float):
        request.parameters["timeout"].double_param = timeout
    elif isinstance(timeout, int):
        request.parameters["timeout"].int64_param = timeout
    elif isinstance(timeout, str):
        request.parameters["timeout"].string_param = timeout
    if classification is not None:
        out = request.outputs.add(name="probs")
        out.parameters["classification"].int64_param = classification
    try:
        grpc_infer(server, request)
    except grpc.RpcError as exc:
        assert exc.code() in (
            grpc.StatusCode.INVALID_ARGUMENT,
            grpc.StatusCode.UNAVAILABLE,
            grpc.StatusCode.UNIMPLEMENTED,
        ), exc.details()
