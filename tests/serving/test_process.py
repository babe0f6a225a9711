"""``popef serve`` and ``popef triton-config`` as commands: start-up lines, flags, shutdown."""

from __future__ import annotations

import errno
import os
import signal
import threading
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from click.testing import CliRunner

from popef.cli import main
from popef.servable import parse_config

from .conftest import ServeProcess, config, serve_args, write_model
from .gates import DEADLINE, wait_until
from .test_protocol import grpc_input, http_input, rows

#: printed by the gated ``popef serve`` when an execution of model 'gated' reaches the gate
GATE_ENTERED = "test gate: an execution of 'gated' is waiting"

#: ``popef serve`` whose model 'gated' holds each execution until the test writes to a FIFO
GATED_SERVE = """\
from popef.serving.served import ServedModel

execute = ServedModel.execute


def gated(self, instance, inputs, rows):
    if self.name == "gated":
        print({entered!r}, flush=True)
        with open({fifo!r}) as gate:
            gate.read()
    return execute(self, instance, inputs, rows)


ServedModel.execute = gated
from popef.cli import main

main()
"""


@pytest.fixture(scope="module")
def process_repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("process_models")
    models = write_model(repo, "gated", config("gated", max_batch_size=4))
    write_model(repo, "fast", None)
    write_model(repo, "bad", config("bad").replace("TYPE_FP32", "TYPE_UINT8", 1))
    return repo, models[1]


class OutputWatcher:
    """Reads the server's output in a thread (into ``server.lines``) so that a wait for a line
    has a deadline even when the server stays silent."""

    def __init__(self, server: ServeProcess) -> None:
        self.server = server
        self._cond = threading.Condition()
        self._ended = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self.server.proc.stdout:
            with self._cond:
                self.server.lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    def wait_for(self, text: str) -> None:
        def seen() -> bool:
            return any(text in line for line in self.server.lines)

        with self._cond:
            self._cond.wait_for(lambda: seen() or self._ended, DEADLINE)
            if not seen():
                pytest.fail(
                    f"popef serve did not print {text!r} within {DEADLINE:g} s:\n"
                    + "".join(self.server.lines)
                )

    def exit_code_and_log(self) -> tuple[int, str]:
        code = self.server.proc.wait(DEADLINE)
        self._thread.join(DEADLINE)
        return code, "".join(self.server.lines)


def open_gate(fifo: Path) -> None:
    """Let the held execution go on: it reads the FIFO until a writer has come and gone."""

    def came_and_went() -> bool:
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError as exc:
            if exc.errno != errno.ENXIO:  # ENXIO: not open for reading yet
                raise
            return False
        return True

    wait_until(came_and_went, "the gated execution to open its end of the gate")


def test_serve_prints_tritons_start_up_lines_and_shuts_down_gracefully(process_repo, tmp_path):
    """SIGTERM while a request runs: the request finishes, the models unload, exit code 0.
    The request is held at a gate in the server until the server has begun to stop."""
    repo, model = process_repo
    fifo = tmp_path / "gate"
    os.mkfifo(fifo)
    server = ServeProcess(
        *serve_args(repo, "--backend-directory", "/opt/none", "--log-verbose", "1"),
        launcher=GATED_SERVE.format(entered=GATE_ENTERED, fifo=str(fifo)),
    )
    request = None
    try:
        head = "".join(server.lines)
        assert "Started GRPCInferenceService at 127.0.0.1:" in head
        assert "Started HTTPService at 127.0.0.1:" in head
        assert "Started Metrics Service at 127.0.0.1:" in head
        order = [line for line in server.lines if "Started" in line]
        assert "GRPCInferenceService" in order[0] and "HTTPService" in order[1]
        # the model table, with the broken model's reason
        assert "| Model" in head and "| fast" in head and "| gated" in head
        assert "UNAVAILABLE: input 'input' has data_type TYPE_UINT8" in head
        assert "--backend-directory '/opt/none' is not used" in head

        client = grpcclient.InferenceServerClient(server.url("GRPCInferenceService"))
        assert client.is_server_live()
        assert not client.is_server_ready()  # strict readiness: 'bad' failed
        assert client.is_model_ready("fast") and client.is_model_ready("gated")
        x = rows(2)
        outcome = {}

        def gated_request() -> None:
            try:
                result = client.infer("gated", [grpc_input("input", x)], client_timeout=DEADLINE)
                outcome["out"] = result.as_numpy("out")
            except Exception as exc:  # noqa: BLE001
                outcome["error"] = exc

        output = OutputWatcher(server)
        request = threading.Thread(target=gated_request)
        request.start()
        output.wait_for(GATE_ENTERED)  # the request is executing
        server.proc.send_signal(signal.SIGTERM)
        output.wait_for("Active request count: 1")  # stopping, the request in flight
        open_gate(fifo)
        code, log = output.exit_code_and_log()
    finally:
        server.kill()
        if request is not None:
            request.join(DEADLINE)
    assert "error" not in outcome, outcome.get("error")
    np.testing.assert_allclose(outcome["out"], model.reference(x), rtol=1e-5, atol=1e-6)
    assert code == 0, log
    assert "Signal (15) received, stopping..." in log
    assert "successfully unloaded 'gated' version 1" in log


def test_serve_over_http_with_tritonserver_flags(process_repo):
    repo, _ = process_repo
    server = ServeProcess(
        *serve_args(
            repo,
            "--strict-readiness",
            "false",
            "--allow-metrics",
            "true",
            "--model-control-mode",
            "explicit",
            "--load-model",
            "fast",
            "--backend-config",
            "poplar,executor=cpu",
            "--backend-config",
            "poplar,default-max-batch-size=6",
        )
    )
    try:
        client = httpclient.InferenceServerClient(server.url("HTTPService"))
        assert client.is_server_ready()
        assert client.get_model_config("fast")["max_batch_size"] == 6
        out = client.infer("fast", [http_input("input", rows(6))]).as_numpy("out")
        assert out.shape == (6, 3)
        assert not client.is_model_ready("gated")
        code, log = server.stop(signal.SIGINT)
    finally:
        server.kill()
    assert code == 0, log
    assert "Signal (2) received" in log


def test_serve_refuses_bad_flags(tmp_path):
    result = CliRunner().invoke(
        main, ["serve", "--model-repository", str(tmp_path), "--model-control-mode", "poll"]
    )
    assert result.exit_code == 1 and "poll is not supported" in result.output
    result = CliRunner().invoke(main, ["serve", "--model-repository", str(tmp_path / "none")])
    assert result.exit_code == 1 and "is not a folder" in result.output
    result = CliRunner().invoke(
        main, ["serve", "--model-repository", str(tmp_path), "--load-model", "x"]
    )
    assert result.exit_code == 1 and "--model-control-mode=explicit" in result.output


def test_exit_on_error(tmp_path):
    write_model(tmp_path, "bad", config("bad").replace("TYPE_FP32", "TYPE_UINT8", 1))
    result = CliRunner().invoke(main, ["serve", *serve_args(tmp_path, "--exit-on-error", "true")])
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
    result = CliRunner().invoke(
        main, ["triton-config", str(path), "--name-map", str(names), "--max-batch-size", "0"]
    )
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
