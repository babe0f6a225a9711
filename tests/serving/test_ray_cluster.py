"""Ray Serve beyond one process: ``popef serve --ray`` as users run it (start-up lines, a
clean stop, no process left behind), and a two-node cluster on this machine whose worker node
is killed while 8 clients send requests: no request fails, and the application returns to
two replicas once a node is back. Skipped without ``ray[serve]``."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray")
pytest.importorskip("ray.serve")

from .test_ray import (
    kill_session,
    ray_environment,
    replica_of,
    session_processes,
    wait_for_no_processes,
)
from .triton_examples import build_repository

grpcclient = pytest.importorskip("tritonclient.grpc")
httpclient = pytest.importorskip("tritonclient.http")

STARTED = re.compile(r"Started (GRPCInferenceService|HTTPService) at (\S+):(\d+)")


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _infer(client, module) -> np.ndarray:
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    inputs = [
        module.InferInput("INPUT0", [1, 16], "INT32"),
        module.InferInput("INPUT1", [1, 16], "INT32"),
    ]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(a)
    return client.infer("simple", inputs).as_numpy("OUTPUT0")


def test_popef_serve_ray_starts_serves_and_leaves_nothing(tmp_path):
    repository = build_repository(tmp_path / "models")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    folder = ray_environment(env)
    command = [
        sys.executable,
        "-c",
        "from popef.cli import main; main()",
        "serve",
        "--ray",
        "--model-repository",
        str(repository),
        "--host",
        "127.0.0.1",
        "--http-port",
        str(_free_port()),
        "--grpc-port",
        str(_free_port()),
        "--strict-readiness",
        "false",
        "--ray-num-cpus",
        "0.5",
    ]
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    lines: list[str] = []
    ports: dict[str, int] = {}
    try:
        while len(ports) < 2:
            line = proc.stdout.readline()
            assert line, "popef serve --ray exited early:\n" + "".join(lines)
            lines.append(line)
            if match := STARTED.search(line):
                ports[match.group(1)] = int(match.group(3))
        http = httpclient.InferenceServerClient(f"127.0.0.1:{ports['HTTPService']}")
        grpc = grpcclient.InferenceServerClient(f"127.0.0.1:{ports['GRPCInferenceService']}")
        expected = 2 * np.arange(16, dtype=np.int32).reshape(1, 16)
        np.testing.assert_array_equal(_infer(http, httpclient), expected)
        np.testing.assert_array_equal(_infer(grpc, grpcclient), expected)
        http.close()
        grpc.close()
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, "".join(lines) + rest
        assert "server stopped" in rest
        assert wait_for_no_processes(folder) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        kill_session(folder)


def _ray(env: dict, *args: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ray.scripts.scripts", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _raylet_of(folder: str, node_ip: str) -> int:
    for pid in session_processes(folder):
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if (
            command
            and command[0].endswith(b"raylet")
            and f"--node_ip_address={node_ip}".encode() in command
        ):
            return pid
    raise AssertionError(f"no raylet of node {node_ip}")


def _failure(exc: Exception) -> str:
    """What a client got: tritonclient's exceptions say nothing in their ``repr``."""
    if isinstance(exc, httpclient.InferenceServerException):
        return f"HTTP {exc.status()}: {exc.message()!r} ({exc.debug_details()!r})"
    return repr(exc)


def _wait(predicate, what: str, deadline_s: float = 180) -> None:
    deadline = time.monotonic() + deadline_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def test_a_killed_node_loses_no_request(tmp_path):
    """Two nodes (127.0.0.2 head, 127.0.0.3 worker), one CPU and one replica each; the
    worker's raylet is killed under 8 clients; a new worker node brings back the replica."""
    import ray
    from ray import serve

    from popef.serving.ray import (
        APP_NAME,
        DEPLOYMENT_NAME,
        INGRESS_NAME,
        AppOptions,
        build_app,
    )

    repository = build_repository(tmp_path / "models")
    saved = dict(os.environ)
    folder = ray_environment(os.environ)
    # Ray's single-node loopback setting refuses a second node: the nodes take addresses
    # of 127/8 that Ray does not read as "localhost" instead
    os.environ.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")
    env = dict(os.environ)
    port = _free_port("127.0.0.2")
    head = f"127.0.0.2:{port}"
    worker = [
        "start",
        f"--address={head}",
        "--node-ip-address=127.0.0.3",
        "--num-cpus=1",
        "--disable-usage-stats",
    ]
    try:
        _ray(
            env,
            "start",
            "--head",
            "--node-ip-address=127.0.0.2",
            f"--port={port}",
            "--num-cpus=1",
            "--include-dashboard=false",
            "--disable-usage-stats",
        )
        _ray(env, *worker)
        ray.init(address=head, logging_level="WARNING")
        http_port = _free_port()
        serve.start(
            proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": http_port}
        )
        serve.run(
            build_app(
                AppOptions((str(repository),), strict_readiness=False, num_replicas=2, num_cpus=1)
            ),
            name=APP_NAME,
            route_prefix="/",
        )
        url = f"127.0.0.1:{http_port}"
        nodes = set()
        deadline = time.monotonic() + 120
        while len(nodes) < 2 and time.monotonic() < deadline:
            nodes.add(replica_of(url).split()[1])
        assert nodes == {"127.0.0.2", "127.0.0.3"}

        ok, failed, stop = [0], [], threading.Event()

        def client_loop() -> None:
            client = httpclient.InferenceServerClient(url, network_timeout=120)
            while not stop.is_set():
                try:
                    _infer(client, httpclient)
                    ok[0] += 1
                except Exception as exc:
                    failed.append(_failure(exc))
            client.close()

        threads = [threading.Thread(target=client_loop) for _ in range(8)]
        for thread in threads:
            thread.start()
        _wait(lambda: ok[0] >= 40, "requests before the kill")
        os.kill(_raylet_of(folder, "127.0.0.3"), signal.SIGKILL)
        before = ok[0]
        _wait(lambda: ok[0] >= before + 200, "requests after the kill")
        stop.set()
        for thread in threads:
            thread.join(120)
        assert failed == [], failed[:5]
        # what the ingress sent again (none when no request was in flight on the lost node)
        retried = serve.get_deployment_handle(INGRESS_NAME, APP_NAME).retries.remote().result()
        print(
            f"\n{ok[0]} requests answered, {before} before the kill; {retried} sent again "
            "after their replica was lost"
        )

        _ray(env, *worker)  # capacity is back: so is the second replica

        def two_running() -> bool:
            status = serve.status().applications[APP_NAME].deployments[DEPLOYMENT_NAME]
            return status.replica_states.get("RUNNING", 0) == 2

        _wait(two_running, "the second replica to come back")
    finally:
        stop_all = [serve.shutdown, ray.shutdown]
        for step in stop_all:
            try:
                step()
            except Exception:
                pass
        # the nodes' processes, by PID (``ray stop`` would stop every Ray of the machine)
        kill_session(folder)
        os.environ.clear()
        os.environ.update(saved)
