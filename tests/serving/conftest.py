"""Fixtures of the serving tests: small PopEF models, model repositories and live servers.

Servers run in this process on free ports of 127.0.0.1 (port 0), except where a test needs
the ``popef serve`` process itself; every server is stopped by its fixture.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from ..helpers import linear_softmax_reference, save_linear_softmax

pytest.importorskip("tritonclient.grpc")
pytest.importorskip("tritonclient.http")


@dataclass
class TinyModel:
    """softmax(x @ w): input 'input' F32 [m, 4] (per replica), output 'out' F32 [m, 3]."""

    w: np.ndarray

    def reference(self, x: np.ndarray) -> np.ndarray:
        return linear_softmax_reference(x, self.w).astype(np.float32)


def build_tiny(
    path: Path,
    *,
    seed: int = 0,
    micro_batch: int = 1,
    replicas: int = 1,
    device_iterations: int = 1,
    name: str = "tiny",
) -> TinyModel:
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((4, 3)).astype(np.float32)
    save_linear_softmax(
        path,
        w,
        batch=micro_batch,
        executable_name=name,
        replication_factor=replicas,
        device_iterations=device_iterations,
    )
    return TinyModel(w)


def write_model(
    repo: Path,
    name: str,
    config: str | None = None,
    *,
    versions=(1,),
    name_map: dict | None = None,
    **build,
) -> dict[int, TinyModel]:
    """``repo/name/<v>/executable.popef`` for each version (seed = version), config.pbtxt."""
    models = {}
    for v in versions:
        models[v] = build_tiny(repo / name / str(v) / "executable.popef", seed=v, **build)
        if name_map is not None:
            (repo / name / str(v) / "name_map.json").write_text(json.dumps(name_map))
    if config is not None:
        (repo / name / "config.pbtxt").write_text(config)
    return models


def config(
    name: str,
    *,
    max_batch_size: int = 8,
    input_name: str = "input",
    output_name: str = "out",
    in_dims: str = "4",
    out_dims: str = "3",
    extra: str = "",
) -> str:
    return (
        f'name: "{name}"\nbackend: "poplar"\nmax_batch_size: {max_batch_size}\n'
        f'input [ {{ name: "{input_name}" data_type: TYPE_FP32 dims: [ {in_dims} ] }} ]\n'
        f'output [ {{ name: "{output_name}" data_type: TYPE_FP32 dims: [ {out_dims} ] }} ]\n'
        f"{extra}\n"
    )


class LogCapture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record.getMessage())

    @property
    def text(self) -> str:
        return "\n".join(self.records)


@pytest.fixture(autouse=True)
def restored_loggers(serving_log):
    """``popef serve`` run in this process installs its own log handlers (configure_logging):
    every test gets the loggers back as they were, so the ``serving_log`` capture (set up
    first) keeps working whatever ran before."""
    from popef.serving.logs import LOGGER_NAMES

    saved = {
        name: (lg.handlers[:], lg.propagate, lg.level)
        for name in LOGGER_NAMES
        for lg in [logging.getLogger(name)]
    }
    yield
    for name, (handlers, propagate, level) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:], logger.propagate = handlers, propagate
        logger.setLevel(level)


@pytest.fixture(scope="session")
def serving_log():
    handler = LogCapture()
    logger = logging.getLogger("popef.serving")
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old)


@pytest.fixture(scope="module")
def main_repo(tmp_path_factory):
    """The repository most tests share: working, batched and deliberately broken models."""
    repo = tmp_path_factory.mktemp("models")
    models = {}
    models["simple"] = write_model(
        repo,
        "simple",
        config("simple", input_name="x", output_name="probs"),
        name_map={"input": "x", "out": "probs"},
    )[1]
    # an hour's delay: only the preferred size (8) sends a batch within a test's lifetime
    models["batched"] = write_model(
        repo,
        "batched",
        config(
            "batched",
            max_batch_size=16,
            extra=(
                "dynamic_batching { max_queue_delay_microseconds: 3600000000\n"
                "  preferred_batch_size: [ 8 ] }"
            ),
        ),
    )[1]
    models["micro"] = write_model(repo, "micro", None, micro_batch=2, replicas=2)[1]
    models["nobatch"] = write_model(
        repo, "nobatch", config("nobatch", max_batch_size=0, in_dims="1, 4", out_dims="1, 3")
    )[1]
    write_model(
        repo,
        "broken_dtype",
        config("broken_dtype").replace(
            'name: "input" data_type: TYPE_FP32', 'name: "input" data_type: TYPE_FP16'
        ),
    )
    corrupt = repo / "corrupt" / "1"
    corrupt.mkdir(parents=True)
    (corrupt / "executable.popef").write_bytes(b"this is not a PopEF file at all")
    models["slow"] = write_model(
        repo,
        "slow",
        config(
            "slow",
            max_batch_size=1,
            extra=(
                'parameters [ { key: "execute_delay_ms" value: { string_value: "400" } },\n'
                '  { key: "max_queue_size" value: { string_value: "1" } } ]'
            ),
        ),
    )[1]
    models["pair"] = write_model(
        repo,
        "pair",
        config(
            "pair",
            max_batch_size=1,
            extra=(
                "instance_group [ { kind: KIND_CPU count: 2 } ]\n"
                'parameters [ { key: "execute_delay_ms" value: { string_value: "300" } } ]'
            ),
        ),
    )[1]
    models["versions"] = write_model(
        repo,
        "versions",
        config("versions", extra=("version_policy { specific { versions: [ 1, 3 ] } }")),
        versions=(1, 2, 3),
    )
    models["latest"] = write_model(repo, "latest", None, versions=(1, 2))
    models["async"] = write_model(
        repo,
        "async",
        config(
            "async",
            max_batch_size=8,
            extra=(
                "dynamic_batching { }\n"
                'parameters [ { key: "synchronous_execution" value: { string_value: "0" } },\n'
                '  { key: "timeout_ns" value: { string_value: "20000000" } } ]'
            ),
        ),
    )[1]
    models["ipu"] = write_model(
        repo,
        "ipu",
        config(
            "ipu", extra=('parameters [ { key: "executor" value: { string_value: "ipu-model" } } ]')
        ),
    )[1]
    write_model(
        repo,
        "no_executor",
        config(
            "no_executor",
            extra=('parameters [ { key: "executor" value: { string_value: "warp-drive" } } ]'),
        ),
    )
    return repo, models


def local_server(repositories, **options):
    """A ``popef serve`` server of this process on 127.0.0.1, every port chosen by the OS
    (``with local_server(...) as srv`` starts and stops it); ``options``: ServerOptions
    fields, over an ``exit_timeout`` of 10 s."""
    from popef.serving import Server, ServerOptions

    ports = {"http_port": 0, "grpc_port": 0, "metrics_port": 0, "exit_timeout": 10}
    return Server(ServerOptions(list(repositories), host="127.0.0.1", **{**ports, **options}))


def http_infer_works(server, timeout: float = 60.0) -> None:
    """One inference of the model 'simple' (``config("simple")``: input [1, 4] FP32, output
    'out' [1, 3]) over HTTP succeeds: the server still serves."""
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(server.url("http"), network_timeout=timeout)
    try:
        x = httpclient.InferInput("input", [1, 4], "FP32")
        x.set_data_from_numpy(np.ones((1, 4), np.float32))
        assert client.infer("simple", [x]).as_numpy("out").shape == (1, 3)
    finally:
        client.close()


@pytest.fixture(scope="module")
def server(main_repo, serving_log):
    repo, _ = main_repo
    with local_server(
        [repo],
        model_control_mode="explicit",
        load_models=["*"],
        strict_readiness=False,
        http_max_input_size=1 << 20,
        grpc_max_input_size=1 << 20,
    ) as srv:
        yield srv


@pytest.fixture(scope="module")
def models(main_repo):
    return main_repo[1]


@pytest.fixture()
def grpc_client(server):
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(server.url("grpc"))
    yield client
    client.close()


@pytest.fixture()
def http_client(server):
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(server.url("http"), concurrency=4)
    yield client
    client.close()


# -- the popef serve process -----------------------------------------------------------------------

STARTED = re.compile(r"Started (GRPCInferenceService|HTTPService|Metrics Service) at (\S+):(\d+)")


def serve_args(repository, *extra: str) -> list[str]:
    """``popef serve`` arguments for ``repository`` on 127.0.0.1, every port chosen by the
    system, then ``extra``."""
    return [
        "--model-repository",
        str(repository),
        "--host",
        "127.0.0.1",
        *("--http-port", "0", "--grpc-port", "0", "--metrics-port", "0"),
        *extra,
    ]


class ServeProcess:
    """``popef serve`` in a child process; ``ports`` read from its start-up lines."""

    def __init__(
        self,
        *args: str,
        cwd: str | None = None,
        launcher: str = "from popef.cli import main; main()",
    ) -> None:
        command = [sys.executable, "-c", launcher, "serve", *args]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd, env=env
        )
        self.lines: list[str] = []
        self.ports: dict[str, int] = {}
        deadline = time.monotonic() + 60
        want = {"GRPCInferenceService", "HTTPService", "Metrics Service"}
        while set(self.ports) != want:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("popef serve exited early:\n" + "".join(self.lines))
            self.lines.append(line)
            match = STARTED.search(line)
            if match:
                self.ports[match.group(1)] = int(match.group(3))
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError("popef serve did not start:\n" + "".join(self.lines))

    def url(self, service: str) -> str:
        return f"127.0.0.1:{self.ports[service]}"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rest, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        return self.proc.returncode, "".join(self.lines) + (rest or "")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()
