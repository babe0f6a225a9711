"""``popef serve`` and ``popef triton-config`` as commands: start-up lines, flags, shutdown."""

from __future__ import annotations

import signal
import threading
import time

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from click.testing import CliRunner

from popef.cli import main
from popef.serving.config import parse_config

from .conftest import ServeProcess, config, write_model
from .test_protocol import grpc_input, http_input, rows


@pytest.fixture(scope="module")
def process_repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("process_models")
    models = write_model(repo, "slow", config("slow", max_batch_size=4, extra=(
        'parameters [ { key: "execute_delay_ms" value: { string_value: "1500" } } ]')))
    write_model(repo, "fast", None)
    write_model(repo, "bad", config("bad").replace("TYPE_FP32", "TYPE_UINT8", 1))
    return repo, models[1]


def test_serve_prints_tritons_start_up_lines_and_shuts_down_gracefully(process_repo):
    """SIGTERM while a request runs: the request finishes, the models unload, exit code 0."""
    repo, model = process_repo
    server = ServeProcess("--model-repository", str(repo), "--backend-directory", "/opt/none",
                          "--host", "127.0.0.1", "--http-port", "0", "--grpc-port", "0",
                          "--metrics-port", "0", "--log-verbose", "1")
    try:
        head = "".join(server.lines)
        assert "Started GRPCInferenceService at 127.0.0.1:" in head
        assert "Started HTTPService at 127.0.0.1:" in head
        assert "Started Metrics Service at 127.0.0.1:" in head
        order = [line for line in server.lines if "Started" in line]
        assert "GRPCInferenceService" in order[0] and "HTTPService" in order[1]
        # the model table, with the broken model's reason
        assert "| Model" in head and "| fast" in head and "| slow" in head
        assert "UNAVAILABLE: input 'input' has data_type TYPE_UINT8" in head
        assert "--backend-directory '/opt/none' is not used" in head

        client = grpcclient.InferenceServerClient(server.url("GRPCInferenceService"))
        assert client.is_server_live()
        assert not client.is_server_ready()  # strict readiness: 'bad' failed
        assert client.is_model_ready("fast") and client.is_model_ready("slow")
        x = rows(2)
        outcome = {}

        def slow_request() -> None:
            try:
                result = client.infer("slow", [grpc_input("input", x)])
                outcome["out"] = result.as_numpy("out")
            except Exception as exc:  # noqa: BLE001
                outcome["error"] = exc

        request = threading.Thread(target=slow_request)
        request.start()
        time.sleep(0.5)  # the request is executing (1.5 s)
        code, log = server.stop(signal.SIGTERM)
        request.join(10)
    finally:
        server.kill()
    assert "error" not in outcome, outcome.get("error")
    np.testing.assert_allclose(outcome["out"], model.reference(x), rtol=1e-5, atol=1e-6)
    assert code == 0, log
    assert "Signal (15) received, stopping..." in log
    assert "successfully unloaded 'slow' version 1" in log


def test_serve_over_http_with_tritonserver_flags(process_repo):
    repo, _ = process_repo
    server = ServeProcess("--model-repository", str(repo), "--http-port", "0", "--grpc-port",
                          "0", "--metrics-port", "0", "--host", "127.0.0.1",
                          "--strict-readiness", "false", "--allow-metrics", "true",
                          "--model-control-mode", "explicit", "--load-model", "fast",
                          "--backend-config", "poplar,executor=cpu",
                          "--backend-config", "poplar,default-max-batch-size=6")
    try:
        client = httpclient.InferenceServerClient(server.url("HTTPService"))
        assert client.is_server_ready()
        assert client.get_model_config("fast")["max_batch_size"] == 6
        out = client.infer("fast", [http_input("input", rows(6))]).as_numpy("out")
        assert out.shape == (6, 3)
        assert not client.is_model_ready("slow")
        code, log = server.stop(signal.SIGINT)
    finally:
        server.kill()
    assert code == 0, log
    assert "Signal (2) received" in log


def test_serve_refuses_bad_flags(tmp_path):
    result = CliRunner().invoke(main, ["serve", "--model-repository", str(tmp_path),
                                       "--model-control-mode", "poll"])
    assert result.exit_code == 1 and "poll is not supported" in result.output
    result = CliRunner().invoke(main, ["serve", "--model-repository", str(tmp_path / "none")])
    assert result.exit_code == 1 and "is not a folder" in result.output
    result = CliRunner().invoke(main, ["serve", "--model-repository", str(tmp_path),
                                       "--load-model", "x"])
    assert result.exit_code == 1 and "--model-control-mode=explicit" in result.output


def test_exit_on_error(tmp_path):
    write_model(tmp_path, "bad", config("bad").replace("TYPE_FP32", "TYPE_UINT8", 1))
    result = CliRunner().invoke(main, ["serve", "--model-repository", str(tmp_path),
                                       "--exit-on-error", "true", "--http-port", "0",
                                       "--grpc-port", "0", "--metrics-port", "0"])
    assert result.exit_code == 1
    assert "failed to load all models" in result.output


def test_triton_config_command(tmp_path):
    write_model(tmp_path, "mnist", None, micro_batch=2, device_iterations=4)
    path = tmp_path / "mnist" / "1" / "executable.popef"
    result = CliRunner().invoke(main, ["triton-config", str(path)])
    assert result.exit_code == 0, result.output
    cfg = parse_config(result.output)
    assert cfg.name == "mnist" and cfg.backend == "poplar" and cfg.max_batch_size == 8
    assert [(i.name, list(i.dims)) for i in cfg.input] == [("input", [4])]
    names = tmp_path / "names.json"
    names.write_text('{"input": "digit_image", "out": "output_labels"}')
    result = CliRunner().invoke(main, ["triton-config", str(path), "--name-map", str(names),
                                       "--max-batch-size", "0"])
    assert result.exit_code == 0, result.output
    cfg = parse_config(result.output)
    assert cfg.max_batch_size == 0 and list(cfg.input[0].dims) == [2, 4]
    assert cfg.input[0].name == "digit_image" and cfg.output[0].name == "output_labels"
    # the name map beside the file is used by default
    (path.parent / "name_map.json").write_text('{"out": "probabilities"}')
    cfg = parse_config(CliRunner().invoke(main, ["triton-config", str(path)]).output)
    assert cfg.output[0].name == "probabilities"
    names.write_text('{"nope": "x"}')
    result = CliRunner().invoke(main, ["triton-config", str(path), "--name-map", str(names)])
    assert result.exit_code == 1 and "renames 'nope'" in result.output
    bad = tmp_path / "bad.popef"
    bad.write_bytes(b"garbage")
    result = CliRunner().invoke(main, ["triton-config", str(bad)])
    assert result.exit_code == 1 and result.output.startswith("error: ")
