"""The serving core on Ray Serve, one node: stock tritonclient through Ray's HTTP and gRPC
proxies (Triton's conformance tests again, the MNIST example's clients), replicas that all
answer, an in-place rescale, and no process left behind. Skipped without ``ray[serve]``.

One local Ray instance (2 CPUs, its own temporary folder) serves every test of the module.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray")
pytest.importorskip("ray.serve")

# the conformance tests run again against the Ray application (fixtures `client` and
# `server` of that module, `server` replaced below); tests of the load / unload API, of a
# server's own state (log settings) and of servers built in the test are not for Ray
from . import test_conformance
from .test_conformance import (  # noqa: F401
    _inputs,
    test_contents_with_raw_input_contents_is_tritons_error,
    test_sequence_flags_are_ignored_without_sequence_batching,
    test_simple_sums_and_differences,
    test_unknown_models_and_versions_in_tritons_words,
)
from .triton_examples import build_repository

client = test_conformance.client  # the fixture, bound to this module's `server`

grpcclient = pytest.importorskip("tritonclient.grpc")
httpclient = pytest.importorskip("tritonclient.http")

MNIST = Path(__file__).resolve().parents[2] / "examples" / "mnist"

#: what every Ray process of a test session needs: no usage reports, no token file in the
#: home folder, proxies that spread requests over all nodes, loopback addresses throughout
RAY_TEST_ENVIRONMENT = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_SERVE_PROXY_PREFER_LOCAL_NODE_ROUTING": "0",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
}


def ray_environment(monkeypatch_env: dict) -> str:
    """Set :data:`RAY_TEST_ENVIRONMENT` and a short RAY_TMPDIR of its own (Ray's Unix sockets
    live there) in ``monkeypatch_env``; returns the folder."""
    folder = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    monkeypatch_env.update(RAY_TEST_ENVIRONMENT, RAY_TMPDIR=folder)
    return folder


def session_processes(folder: str) -> list[int]:
    """PIDs of the processes whose command line names ``folder`` (Ray's session folder is
    inside it: every Ray process of the session names it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if folder.encode() in command:
            found.append(int(entry.name))
    return found


def wait_for_no_processes(folder: str, deadline_s: float = 60) -> list[int]:
    """Wait until no process of the session is left; the ones still there at the deadline."""
    deadline = time.monotonic() + deadline_s
    while (left := session_processes(folder)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def kill_session(folder: str) -> None:
    """SIGKILL every process of the session, by PID (the last resort of a teardown)."""
    for pid in session_processes(folder):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    shutil.rmtree(folder, ignore_errors=True)


def replica_of(url: str, model: str = "simple") -> str:
    """The replica (``<id> <node> <pid>``) that answers one JSON inference over HTTP."""
    body = (
        b'{"inputs":[{"name":"INPUT0","shape":[1,16],"datatype":"INT32","data":'
        + str(list(range(16))).encode()
        + b'},{"name":"INPUT1","shape":[1,16],'
        b'"datatype":"INT32","data":' + str([1] * 16).encode() + b"}]}"
    )
    request = urllib.request.Request(
        f"http://{url}/v2/models/{model}/infer", body, {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
        return response.headers["popef-replica"]


@pytest.fixture(scope="module")
def ray_folder():
    saved = dict(os.environ)
    folder = ray_environment(os.environ)
    yield folder
    os.environ.clear()
    os.environ.update(saved)
    kill_session(folder)


@pytest.fixture(scope="module")
def repository(tmp_path_factory):
    """Triton's example models, and the MNIST example's repository as a second one."""
    root = tmp_path_factory.mktemp("ray")
    examples = build_repository(root / "models")
    mnist = root / "mnist_models" / "mnist"
    shutil.copytree(MNIST / "triton" / "models" / "mnist", mnist)
    if not (mnist / "1" / "executable.popef").is_file():
        shutil.copy(MNIST / "executable.popef", mnist / "1" / "executable.popef")
    return examples, mnist.parent


@pytest.fixture(scope="module")
def server(ray_folder, repository):
    """The repository on a local Ray instance: 2 replicas, half a CPU each."""
    from popef.serving.ray import AppOptions
    from popef.serving.ray.launcher import RayLaunch, RayService

    service = RayService(
        AppOptions(
            tuple(str(r) for r in repository), strict_readiness=False, num_replicas=2, num_cpus=0.5
        ),
        RayLaunch(host="127.0.0.1", http_port=0, grpc_port=0, num_cpus=2),
    )
    service.start()
    yield service
    service.stop()


def test_server_metadata_leaves_out_shared_memory(client):
    metadata = client.get_server_metadata()
    extensions = metadata["extensions"] if client.protocol == "http" else metadata.extensions
    assert "binary_tensor_data" in extensions
    assert "system_shared_memory" not in extensions


def test_repository_index_gives_each_models_state(client):
    index = client.get_model_repository_index()
    if client.protocol == "grpc":
        index = [{"name": m.name, "state": m.state, "reason": m.reason} for m in index.models]
    reasons = {m["name"]: (m["state"], m["reason"]) for m in index}
    assert len(reasons) == 9  # Triton's eight example models and mnist
    assert reasons["simple"][0] == reasons["mnist"][0] == "READY"
    assert reasons["simple_ensemble"][1].startswith("ensembles are not supported")


def test_load_unload_and_shared_memory_are_refused_in_words(client):
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException) as info:
        client.load_model("simple")
    assert "redeploy the application" in info.value.message()
    with pytest.raises(InferenceServerException) as info:
        client.register_system_shared_memory("region", "/popef_none", 64)
    assert "system shared memory is not available" in info.value.message()


def test_json_and_binary_http_agree(server):
    http_client = httpclient.InferenceServerClient(server.url("http"))
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    for binary in (True, False):
        inputs = _inputs(httpclient, a, a)
        for tensor in inputs:
            tensor.set_data_from_numpy(a, binary_data=binary)
        outputs = [httpclient.InferRequestedOutput("OUTPUT0", binary_data=binary)]
        result = http_client.infer("simple", inputs, outputs=outputs)
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + a)
    http_client.close()


def _client_lines(script: str, *args: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, str(MNIST / "triton" / script), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=MNIST / "triton",
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_mnist_clients_read_the_ten_digits(server):
    """The blog's clients, unchanged, through Ray's gRPC and HTTP proxies."""
    expected = [f'Predicted digit for file "{d}.png": {d}' for d in range(10)]
    assert _client_lines("client.py", "--url", server.url("grpc")) == expected
    assert _client_lines("client_http.py", "--url", server.url("http")) == expected


def test_both_replicas_answer(server):
    seen = set()
    deadline = time.monotonic() + 120
    while len(seen) < 2 and time.monotonic() < deadline:
        seen.add(replica_of(server.url("http")))
    assert len(seen) == 2, seen


def test_rescale_in_place_keeps_serving(server):
    """A third replica joins without a request failing; then back to two."""
    from ray import serve

    from popef.serving.ray import APP_NAME, DEPLOYMENT_NAME, Scaling, build_app

    for count in (3, 2):
        serve.run(
            build_app(server.options, Scaling(num_replicas=count, num_cpus=0.5)),
            name=APP_NAME,
            route_prefix="/",
        )
        seen = set()
        deadline = time.monotonic() + 120
        while len(seen) < count and time.monotonic() < deadline:
            seen.add(replica_of(server.url("http")))
        assert len(seen) == count, seen
        status = serve.status().applications[APP_NAME].deployments[DEPLOYMENT_NAME]
        assert status.replica_states.get("RUNNING") == count


def test_without_the_retrying_ingress_the_proxies_call_the_replicas(server):
    """``retry_lost_requests=False``: one deployment, which Ray's proxies call themselves;
    both protocols still answer, refusals in Triton's words included. Then back."""
    from dataclasses import replace

    from ray import serve
    from tritonclient.utils import InferenceServerException

    from popef.serving.ray import APP_NAME, DEPLOYMENT_NAME, INGRESS_NAME, Scaling, build_app

    for retrying in (False, True):
        serve.run(
            build_app(
                replace(server.options, retry_lost_requests=retrying),
                Scaling(num_replicas=2, num_cpus=0.5),
            ),
            name=APP_NAME,
            route_prefix="/",
        )
        deployments = serve.status().applications[APP_NAME].deployments
        assert (INGRESS_NAME in deployments) is retrying
        assert DEPLOYMENT_NAME in deployments
        assert replica_of(server.url("http"))
        grpc_client = grpcclient.InferenceServerClient(server.url("grpc"))
        a = np.arange(16, dtype=np.int32).reshape(1, 16)
        result = grpc_client.infer("simple", _inputs(grpcclient, a, a))
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + a)
        with pytest.raises(InferenceServerException) as info:
            grpc_client.load_model("simple")
        assert "redeploy the application" in info.value.message()
        grpc_client.close()
