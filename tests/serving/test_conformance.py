"""Conformance with Triton: its ``simple`` example model, stock tritonclient calls on both
transports, and Triton 2.51's answers (server name, error texts and codes, tolerated request
parameters, the logging and trace extensions, models PopEF cannot express)."""

from __future__ import annotations

import numpy as np
import pytest

from .conftest import local_server
from .triton_examples import build_repository

grpcclient = pytest.importorskip("tritonclient.grpc")
httpclient = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repository = build_repository(tmp_path_factory.mktemp("examples") / "models")
    with local_server(
        [repository], model_control_mode="explicit", load_models=["*"], strict_readiness=False
    ) as srv:
        yield srv


@pytest.fixture(params=["http", "grpc"])
def client(request, server):
    module = httpclient if request.param == "http" else grpcclient
    c = module.InferenceServerClient(server.url(request.param))
    c.module = module
    c.protocol = request.param
    yield c
    c.close()


def _inputs(module, a: np.ndarray, b: np.ndarray):
    inputs = [
        module.InferInput("INPUT0", list(a.shape), "INT32"),
        module.InferInput("INPUT1", list(b.shape), "INT32"),
    ]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(b)
    return inputs


def _error(call) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as info:
        call()
    return info.value


def _status(client, http: str, grpc: str) -> str:
    return http if client.protocol == "http" else grpc


def test_simple_sums_and_differences(client):
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    b = np.ones((1, 16), dtype=np.int32)
    result = client.infer("simple", _inputs(client.module, a, b))
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)
    batch = np.arange(8 * 16, dtype=np.int32).reshape(8, 16)
    result = client.infer("simple", _inputs(client.module, batch, batch))
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), np.zeros((8, 16), np.int32))


def test_server_metadata_is_tritons(client):
    metadata = client.get_server_metadata()
    name = metadata["name"] if client.protocol == "http" else metadata.name
    extensions = metadata["extensions"] if client.protocol == "http" else metadata.extensions
    assert name == "triton"
    assert {"logging", "trace", "binary_tensor_data", "statistics"} <= set(extensions)


def test_the_server_id_names_the_server(tmp_path):
    build_repository(tmp_path)
    with local_server(
        [tmp_path], allow_metrics=False, server_id="edge-7", strict_readiness=False
    ) as srv:
        http = httpclient.InferenceServerClient(srv.url("http"))
        grpc = grpcclient.InferenceServerClient(srv.url("grpc"))
        try:
            assert http.get_server_metadata()["name"] == "edge-7"
            assert grpc.get_server_metadata().name == "edge-7"
        finally:
            http.close()
            grpc.close()


def test_unknown_models_and_versions_in_tritons_words(client):
    a = np.zeros((1, 16), np.int32)
    e = _error(lambda: client.get_model_metadata("wrong_model_name"))
    assert e.message() == "Request for unknown model: 'wrong_model_name' is not found"
    assert e.status() == _status(client, "404", "StatusCode.NOT_FOUND")
    e = _error(lambda: client.infer("simple", _inputs(client.module, a, a), model_version="3"))
    assert e.message().startswith("Request for unknown model: 'simple' version 3 is not found")
    assert e.status() == _status(client, "404", "StatusCode.NOT_FOUND")
    e = _error(lambda: client.infer("simple", _inputs(client.module, a, a), model_version="x1"))
    assert e.message() == (
        "failed to get model version from specified version string 'x1' "
        "(details: stol), version should be an integral value > 0"
    )
    assert e.status() == _status(client, "400", "StatusCode.INVALID_ARGUMENT")
    e = _error(lambda: client.get_model_config("simple", model_version="-2"))
    assert e.message() == (
        "invalid model version specified '-2' , version should be an integral value > 0"
    )


def test_sequence_flags_are_ignored_without_sequence_batching(client):
    a = np.full((1, 16), 3, np.int32)
    result = client.infer(
        "simple",
        _inputs(client.module, a, a),
        sequence_id=42,
        sequence_start=True,
        sequence_end=True,
    )
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a * 2)


def test_models_popef_cannot_express_have_their_reasons(client):
    index = client.get_model_repository_index()
    if client.protocol == "grpc":
        index = [{"name": m.name, "state": m.state, "reason": m.reason} for m in index.models]
    reasons = {m["name"]: (m["state"], m["reason"]) for m in index}
    assert len(reasons) == 8  # Triton's example repository has eight models
    assert reasons["simple"][0] == "READY"
    assert reasons["simple_ensemble"] == ("UNAVAILABLE", reasons["simple_ensemble"][1])
    assert reasons["simple_ensemble"][1].startswith("ensembles are not supported")
    assert "PopEF has no string type" in reasons["simple_string"][1]
    assert "TYPE_STRING" in reasons["simple_identity"][1]
    assert "sequence_batching is not supported" in reasons["simple_sequence"][1]
    assert "decoupled models are not supported" in reasons["repeat_int32"][1]


def test_load_and_unload_in_tritons_words(client):
    e = _error(lambda: client.load_model("wrong_model_name"))
    assert e.message().startswith(
        "failed to load 'wrong_model_name', failed to poll from model repository"
    )
    assert e.status() == _status(client, "500", "StatusCode.INTERNAL")
    e = _error(lambda: client.load_model("simple", config='{"max_batch_size": "many"}'))
    assert "failed to load 'simple'" in e.message()
    e = _error(lambda: client.load_model("simple", config="{}", files={"file:1/x": b"a"}))
    assert e.status() == _status(client, "500", "StatusCode.INTERNAL")
    assert "failed to poll from model repository" in e.message()
    e = _error(lambda: client.load_model("simple_string"))
    assert e.message().startswith(
        "load failed for model 'simple_string': version 1 is at UNAVAILABLE state: "
    )
    assert e.status() == _status(client, "400", "StatusCode.INVALID_ARGUMENT")
    client.unload_model("wrong_model_name")  # nothing to unload: success, as in Triton
    client.load_model("custom_identity_int32", config='{"max_batch_size": 4}')
    config = client.get_model_config("custom_identity_int32")
    mbs = config["max_batch_size"] if client.protocol == "http" else config.config.max_batch_size
    assert mbs == 4
    client.unload_model("custom_identity_int32")
    assert not client.is_model_ready("custom_identity_int32")
    client.load_model("custom_identity_int32")
    assert client.is_model_ready("custom_identity_int32")


def test_contents_with_raw_input_contents_is_tritons_error(server):
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    request = service_pb2.ModelInferRequest(model_name="simple")
    for name in ("INPUT0", "INPUT1"):
        tensor = request.inputs.add(name=name, datatype="INT32", shape=[1, 16])
        tensor.contents.int_contents.extend(range(16))
        request.raw_input_contents.append(np.zeros(16, np.int32).tobytes())
    with grpc.insecure_channel(server.url("grpc")) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelInfer(request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == (
        "contents field must not be specified when using "
        "raw_input_contents for 'INPUT0' for model 'simple'"
    )


def _plain(settings, protocol):
    """gRPC settings as the JSON tritonclient's HTTP client gives."""
    if protocol == "http":
        return settings
    out = {}
    for key, value in settings.settings.items():
        if key == "trace_level":
            out[key] = list(value.value)
        elif hasattr(value, "value"):
            out[key] = value.value[0] if value.value else ""
        else:
            out[key] = getattr(value, value.WhichOneof("parameter_choice"))
    return out


def test_log_settings_change_what_is_logged(client, server):
    import logging

    logger = logging.getLogger("popef.serving")
    before = logger.level
    server.core.log_settings._apply = True  # as popef serve does
    try:
        settings = _plain(client.get_log_settings(), client.protocol)
        assert settings == {
            "log_file": "",
            "log_info": True,
            "log_warning": True,
            "log_error": True,
            "log_verbose_level": 0,
            "log_format": "default",
        }
        settings = _plain(client.update_log_settings({"log_info": False}), client.protocol)
        assert settings["log_info"] is False and logger.level == logging.WARNING
        settings = _plain(client.update_log_settings({"log_verbose_level": 1}), client.protocol)
        assert settings["log_verbose_level"] == 1 and logger.level == logging.DEBUG
        e = _error(lambda: client.update_log_settings({"log_file": "server.log"}))
        assert e.message() == "log file location can not be updated through network protocol"
        assert e.status() == _status(client, "501", "StatusCode.UNIMPLEMENTED")
        e = _error(lambda: client.update_log_settings({"log_format": "fancy"}))
        assert e.message() == "invalid argument for --log_format, got: fancy"
    finally:
        client.update_log_settings({"log_info": True, "log_verbose_level": 0})
        server.core.log_settings._apply = False
        logger.setLevel(before)


def test_trace_settings_are_kept_globally_and_per_model(client):
    settings = _plain(client.get_trace_settings(), client.protocol)
    assert settings["trace_level"] == ["OFF"] and settings["trace_rate"] == "1000"
    assert settings["trace_mode"] == "triton"
    updated = _plain(
        client.update_trace_settings(
            model_name="simple", settings={"trace_level": ["TIMESTAMPS"], "trace_rate": "5"}
        ),
        client.protocol,
    )
    assert updated["trace_level"] == ["TIMESTAMPS"] and updated["trace_rate"] == "5"
    # the global settings are untouched; the model follows them where it has none of its own
    assert _plain(client.get_trace_settings(), client.protocol)["trace_level"] == ["OFF"]
    cleared = _plain(
        client.update_trace_settings(
            model_name="simple", settings={"trace_level": None, "trace_rate": None}
        ),
        client.protocol,
    )
    assert cleared["trace_level"] == ["OFF"] and cleared["trace_rate"] == "1000"
    e = _error(lambda: client.update_trace_settings(settings={"trace_count": "-5"}))
    assert e.message() == "Unable to parse 'trace_count'. Expecting value >= -1, got:-5"
    e = _error(lambda: client.update_trace_settings(settings={"trace_level": ["OFF", "TENSORS"]}))
    assert e.message() == "Expect only one trace level 'OFF' is specified"
    e = _error(lambda: client.get_trace_settings(model_name="wrong_model_name"))
    assert e.message() == "Request for unknown model : wrong_model_name"
    assert e.status() == _status(client, "400", "StatusCode.INVALID_ARGUMENT")


@pytest.mark.parametrize(
    "changes",
    [
        {"log_info": "yes"},
        {"log_verbose_level": -1},
        {"log_verbose_level": 2**32},
        {"log_verbose_level": True},
        {"bogus": 1},
        [1, 2],
        "log_info",
    ],
)
def test_bad_log_settings_are_refused_and_change_nothing(changes):
    from popef.servable.errors import ServingError
    from popef.serving.settings import LogSettings

    settings = LogSettings()
    before = settings.get()
    with pytest.raises(ServingError) as info:
        settings.update(changes)
    assert info.value.status.http_status == 400
    assert settings.get() == before


@pytest.mark.parametrize(
    "changes",
    [
        {"trace_rate": "fast"},
        {"trace_rate": "-1"},
        {"trace_rate": str(2**32)},
        {"trace_count": "-2"},
        {"trace_level": "LOUD"},
        {"trace_level": [1]},
        {"trace_level": []},
        {"log_frequency": 1.5},
        {"trace_mode": "opentelemetry"},
        {"nope": "1"},
        [],
    ],
)
def test_bad_trace_settings_are_refused_and_change_nothing(changes):
    from popef.servable.errors import ServingError
    from popef.serving.settings import TraceSettings

    settings = TraceSettings()
    before = settings.get()
    with pytest.raises(ServingError) as info:
        settings.update(changes)
    assert info.value.status.http_status == 400
    assert settings.get() == before
