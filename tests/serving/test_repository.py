"""The model repository: index, versions, broken models, load and unload over both APIs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from popef.servable.errors import ServingError
from popef.serving import InferenceCore, ModelRepository

from .conftest import config, write_model
from .test_protocol import grpc_input, http_input, rows


def test_index_lists_every_model_with_state_and_reason(grpc_client, http_client):
    index = {(e["name"], e.get("version", "")): e for e in http_client.get_model_repository_index()}
    assert index[("simple", "1")]["state"] == "READY"
    broken = index[("broken_dtype", "1")]
    assert broken["state"] == "UNAVAILABLE"
    assert (
        "input 'input' has data_type TYPE_FP16 but the model's anchor 'input' is F32"
        in broken["reason"]
    )
    corrupt = index[("corrupt", "1")]
    assert corrupt["state"] == "UNAVAILABLE" and corrupt["reason"]
    assert ("versions", "2") not in index  # the policy serves versions 1 and 3
    gindex = grpc_client.get_model_repository_index()
    assert {(m.name, m.version, m.state) for m in gindex.models} >= {
        ("simple", "1", "READY"),
        ("broken_dtype", "1", "UNAVAILABLE"),
    }


def test_index_of_ready_models(server):
    from .test_protocol import raw_http

    status, data, _ = raw_http(server, "POST", "/v2/repository/index", b'{"ready": true}')
    assert status == 200
    entries = json.loads(data)
    assert entries and all(e["state"] == "READY" for e in entries)
    assert "broken_dtype" not in {e["name"] for e in entries}


def test_broken_models_are_logged_with_their_reason(server, serving_log):
    assert (
        "failed to load 'broken_dtype' version 1: input 'input' has data_type TYPE_FP16"
        in serving_log.text
    )
    assert "failed to load 'corrupt' version 1:" in serving_log.text
    assert "successfully loaded 'simple' version 1" in serving_log.text


def test_version_policy(grpc_client, http_client, models):
    x = rows(2)
    latest = grpc_client.infer("versions", [grpc_input("input", x)])
    assert latest.get_response().model_version == "3"
    np.testing.assert_allclose(
        latest.as_numpy("out"), models["versions"][3].reference(x), rtol=1e-5, atol=1e-6
    )
    v1 = http_client.infer("versions", [http_input("input", x)], model_version="1")
    np.testing.assert_allclose(
        v1.as_numpy("out"), models["versions"][1].reference(x), rtol=1e-5, atol=1e-6
    )
    with pytest.raises(
        InferenceServerException,
        match="Request for unknown model: 'versions' version 2 is not found",
    ):
        grpc_client.infer("versions", [grpc_input("input", x)], model_version="2")
    assert http_client.get_model_metadata("versions")["versions"] == ["1", "3"]
    # the default policy serves the latest version only
    assert http_client.get_model_metadata("latest")["versions"] == ["2"]
    assert not http_client.is_model_ready("latest", "1")


def test_unload_and_load_over_http_and_grpc(grpc_client, http_client, models):
    x = rows(1)
    http_client.unload_model("simple")
    assert not http_client.is_model_ready("simple")
    entry = next(e for e in http_client.get_model_repository_index() if e["name"] == "simple")
    assert entry["state"] == "UNAVAILABLE" and entry["reason"] == "unloaded"
    with pytest.raises(InferenceServerException, match="has no available versions") as info:
        grpc_client.infer("simple", [grpc_input("x", x)])
    assert info.value.status() == "StatusCode.NOT_FOUND"  # as Triton
    grpc_client.load_model("simple")
    assert grpc_client.is_model_ready("simple")
    got = grpc_client.infer("simple", [grpc_input("x", x)]).as_numpy("probs")
    np.testing.assert_allclose(got, models["simple"].reference(x), rtol=1e-5, atol=1e-6)
    grpc_client.unload_model("simple")
    assert not grpc_client.is_model_ready("simple")
    http_client.load_model("simple")
    assert http_client.is_model_ready("simple")


def test_load_with_a_config_from_the_client(http_client, grpc_client):
    override = json.loads(
        json.dumps(
            {
                "name": "latest",
                "backend": "poplar",
                "max_batch_size": 2,
                "version_policy": {"all": {}},
            }
        )
    )
    http_client.load_model("latest", config=json.dumps(override))
    try:
        assert http_client.get_model_config("latest")["max_batch_size"] == 2
        assert http_client.get_model_metadata("latest")["versions"] == ["1", "2"]
        with pytest.raises(InferenceServerException, match="batch-size must be <= 2"):
            grpc_client.infer("latest", [grpc_input("input", rows(3))])
        with pytest.raises(
            InferenceServerException,
            match="load failed for model 'latest': version 2 is at UNAVAILABLE state: .*TYPE_INT8",
        ):
            grpc_client.load_model(
                "latest",
                config=json.dumps(
                    {
                        "max_batch_size": 2,
                        "input": [{"name": "input", "data_type": "TYPE_INT8", "dims": [4]}],
                    }
                ),
            )
        # a failed reload keeps the loaded versions serving
        assert grpc_client.is_model_ready("latest")
    finally:
        http_client.load_model("latest")
    assert http_client.get_model_metadata("latest")["versions"] == ["2"]


def test_load_errors(http_client, grpc_client):
    # Triton's text and code (INTERNAL), then why
    with pytest.raises(
        InferenceServerException,
        match="failed to load 'ghost', failed to poll "
        "from model repository: there is no folder 'ghost'",
    ) as info:
        http_client.load_model("ghost")
    assert info.value.status() == "500"
    with pytest.raises(InferenceServerException) as info:
        grpc_client.load_model("broken_dtype")
    assert info.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "data_type TYPE_FP16" in info.value.message()
    with pytest.raises(
        InferenceServerException,
        match="failed to load 'simple', failed to poll "
        "from model repository: Invalid config override: .*not a ModelConfig "
        "in JSON",
    ) as info:
        http_client.load_model("simple", config='{"bogus": 1}')
    assert info.value.status() == "500"
    # unloading a model that is not loaded (or does not exist) succeeds, as in Triton
    grpc_client.unload_model("ghost")


def test_strict_readiness_and_control_mode_none(tmp_path):
    write_model(tmp_path, "good", config("good"))
    write_model(tmp_path, "bad", config("bad").replace("TYPE_FP32", "TYPE_INT64", 1))
    core = InferenceCore(ModelRepository(tmp_path), model_control_mode="none")
    core.start()
    try:
        assert core.model_ready("good") and not core.model_ready("bad")
        assert not core.ready()  # strict: a model that failed makes the server not ready
        with pytest.raises(ServingError, match="--model-control-mode=explicit") as info:
            core.load_model("good")
        assert info.value.status.http_status == 503
        with pytest.raises(ServingError, match="not allowed"):
            core.unload_model("good")
        index = {e["name"]: e for e in core.repository_index()}
        assert index["good"]["state"] == "READY" and index["bad"]["state"] == "UNAVAILABLE"
    finally:
        core.close()
    assert not core.ready()


def test_explicit_mode_loads_only_the_models_named(tmp_path):
    write_model(tmp_path, "a", config("a"))
    write_model(tmp_path, "b", config("b"))
    core = InferenceCore(ModelRepository(tmp_path), model_control_mode="explicit")
    core.start(["a"])
    try:
        assert core.ready() and core.model_ready("a") and not core.model_ready("b")
        index = {e["name"]: e for e in core.repository_index()}
        assert index["b"]["reason"] == "not loaded"
        core.load_model("b")
        assert core.model_ready("b")
    finally:
        core.close()


def test_repository_problems_are_reasons_not_crashes(tmp_path):
    (tmp_path / "empty").mkdir()
    write_model(tmp_path, "noconfigname", 'max_batch_size: 2\ndefault_model_filename: "m.popef"')
    (tmp_path / "parse").mkdir()
    (tmp_path / "parse" / "config.pbtxt").write_text("max_batch_size: [")
    write_model(tmp_path, "auto", None)
    repo = ModelRepository(tmp_path)
    repo.load_all()
    try:
        reasons = {r.name: (r.state, r.reason) for r in repo.records()}
        assert reasons["auto"][0] == "READY"
        assert "no version folder" in reasons["empty"][1]
        assert "has no 'm.popef'" in reasons["noconfigname"][1]
        assert "config.pbtxt: 1:" in reasons["parse"][1]
    finally:
        repo.close()


def test_clients_with_http_and_grpc_clients_for_each_other(server):
    # The same server answers both protocols at once
    g = grpcclient.InferenceServerClient(server.url("grpc"))
    h = httpclient.InferenceServerClient(server.url("http"))
    try:
        assert g.is_server_live() and h.is_server_live()
    finally:
        g.close()
        h.close()
