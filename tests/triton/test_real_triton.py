"""The poplar backend on a real tritonserver (Triton 2.51 from nvidia-pytriton), stock clients.

The server runs in the environment ``popef triton setup`` makes (``$POPEF_TRITON_ENV``, else
the default cache folder); without one these tests skip — unless ``POPEF_REQUIRE_TRITON=1``
(set by ``.ci/run``), which turns the skip into a failure. The repository is the blog's
(``examples/mnist/triton/models/mnist``: config.pbtxt with ``backend: "poplar"``,
``1/name_map.json``, ``1/executable.popef``), plus a model without config.pbtxt, one whose
config lets a bad shape through to the backend, and the MNIST model again on the
``onnxruntime`` executor (``mnist_onnxruntime``; its tests skip, or fail under
``POPEF_REQUIRE_TRITON=1``, when the environment has no onnxruntime). Everything listens on
127.0.0.1 only.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from ..serving.triton_examples import free_ports
from .helpers import linear_softmax, reference

ROOT = Path(__file__).resolve().parents[2]
MNIST = ROOT / "examples" / "mnist"
BLOG_MODELS = MNIST / "triton" / "models"
TRAINED = MNIST / "executable.popef"
REQUIRED = os.environ.get("POPEF_REQUIRE_TRITON", "") not in ("", "0")
START_TIMEOUT = 180  # seconds: a loaded 2-core machine starts the stubs slowly
WILD_CONFIG = """\
name: "linear_wild"
backend: "poplar"
max_batch_size: 4
input [ { name: "features" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "scores" data_type: TYPE_FP32 dims: [ 3 ] } ]
"""
NAME_MAP = {"input": "features", "out": "scores"}
# clients send [n, 2, 2]; Triton reshapes to [n, 4] before the backend sees it
RESHAPE_CONFIG = """\
name: "linear_reshape"
backend: "poplar"
max_batch_size: 4
input [ { name: "features" data_type: TYPE_FP32 dims: [ 2, 2 ] reshape: { shape: [ 4 ] } } ]
output [ { name: "scores" data_type: TYPE_FP32 dims: [ 3 ] } ]
"""
ORT_MODEL = "mnist_onnxruntime"
# the onnxruntime executor agrees with cpu to these tolerances (docs/runtime.md)
ORT_RTOL, ORT_ATOL = 1e-4, 1e-5


def _unavailable(reason: str):
    if REQUIRED:
        pytest.fail(f"POPEF_REQUIRE_TRITON is set, but {reason}", pytrace=False)
    pytest.skip(reason)


def _stub_processes(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "triton_python_backend_stub" in cmdline and marker in cmdline:
            found.append(int(entry.name))
    return found


def _shm_regions(prefix: str) -> set[str]:
    """The shared memory regions in /dev/shm whose names start with ``prefix``."""
    try:
        return {p.name for p in Path("/dev/shm").iterdir() if p.name.startswith(prefix)}
    except OSError:
        return set()


def read_digit(path: Path) -> np.ndarray:
    """As the blog's client.py reads an image: float32 [1, 28, 28] in [0, 1]."""
    from PIL import Image

    with Image.open(path) as image:
        pixels = np.asarray(image.convert("L").resize((28, 28)), dtype=np.float32)
    return (pixels / 255.0).reshape(1, 28, 28)


class Server:
    def __init__(
        self,
        process: subprocess.Popen,
        log: Path,
        ports: list[int],
        backends: Path,
        repository: Path,
        popef_file: Path,
        shm_prefix: str,
    ):
        self.process = process
        self.log = log
        self.http_port, self.grpc_port, self.metrics_port = ports
        self.backends = backends
        self.repository = repository
        self.popef_file = popef_file
        self.shm_prefix = shm_prefix

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(
                f"http://{self.http_url}/v2/health/ready", timeout=2
            ) as response:
                return response.status == 200
        except OSError:
            return False

    def stop(self, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
                raise
        return self.process.returncode


@pytest.fixture(scope="module")
def triton_env():
    for module in ("tritonclient.grpc", "tritonclient.http", "PIL"):
        try:
            __import__(module)
        except ImportError as exc:
            _unavailable(f"{module} is not installed ({exc}); pip install -e '.[test]'")
    from popef.triton.environment import TritonEnv, TritonEnvError, default_env_dir

    try:
        return TritonEnv.load(default_env_dir())
    except TritonEnvError as exc:
        _unavailable(f"no real Triton here: {exc} (or set POPEF_TRITON_ENV)")


@pytest.fixture(scope="module")
def server(triton_env, tmp_path_factory):
    base = tmp_path_factory.mktemp("triton")
    repository = base / "models"
    # the blog's repository: models/mnist/{config.pbtxt, 1/name_map.json, 1/executable.popef}
    (repository / "mnist" / "1").mkdir(parents=True)
    shutil.copyfile(BLOG_MODELS / "mnist" / "config.pbtxt", repository / "mnist" / "config.pbtxt")
    shutil.copyfile(
        BLOG_MODELS / "mnist" / "1" / "name_map.json", repository / "mnist" / "1" / "name_map.json"
    )
    popef_file = repository / "mnist" / "1" / "executable.popef"
    if TRAINED.is_file():
        shutil.copyfile(TRAINED, popef_file)
    else:  # the untrained network of the example (same graph, same anchors)
        sys.path.insert(0, str(MNIST))
        try:
            import mnist
        finally:
            sys.path.remove(str(MNIST))
        mnist.export_popef(mnist.init_params(0), popef_file)
    # no config.pbtxt: Triton takes the backend from the folder's name, the rest is ours
    auto = repository / "mnist_auto.poplar" / "1"
    linear_softmax(auto / "executable.popef", batch=2)
    (auto / "name_map.json").write_text(json.dumps(NAME_MAP))
    # dims [-1]: Triton lets any width through, the backend rejects the wrong ones
    wild = repository / "linear_wild"
    linear_softmax(wild / "1" / "executable.popef", batch=1)
    (wild / "1" / "name_map.json").write_text(json.dumps(NAME_MAP))
    (wild / "config.pbtxt").write_text(WILD_CONFIG)
    reshaped = repository / "linear_reshape"
    linear_softmax(reshaped / "1" / "executable.popef", batch=1)
    (reshaped / "1" / "name_map.json").write_text(json.dumps(NAME_MAP))
    (reshaped / "config.pbtxt").write_text(RESHAPE_CONFIG)
    # the blog's model on the onnxruntime executor, chosen in config.pbtxt (only where the
    # environment can load it: Triton exits when a model fails to load at start-up)
    if "onnxruntime" not in triton_env.missing_executors():
        ort = repository / ORT_MODEL
        shutil.copytree(repository / "mnist", ort)
        config = (repository / "mnist" / "config.pbtxt").read_text()
        for old, new in (
            ('name: "mnist"', f'name: "{ORT_MODEL}"'),
            ('string_value: "cpu"', 'string_value: "onnxruntime"'),
        ):
            assert old in config, f"the blog's config.pbtxt has no {old}"
            config = config.replace(old, new)
        (ort / "config.pbtxt").write_text(config)

    backends = base / "backends"
    ports = free_ports(3)
    log = base / "tritonserver.log"
    # the python backend names its regions with this prefix: this server's own, whatever else
    # runs on the machine
    shm_prefix = f"popef_test_{os.getpid()}_{ports[0]}_"
    command = [
        sys.executable,
        "-c",
        "import sys; from popef.cli import main; sys.exit(main())",
        "triton",
        "run",
        "--model-repository",
        str(repository),
        "--env",
        str(triton_env.path),
        "--no-setup",
        "--host",
        "127.0.0.1",
        "--http-port",
        str(ports[0]),
        "--grpc-port",
        str(ports[1]),
        "--metrics-port",
        str(ports[2]),
        "--backend-directory",
        str(backends),
        "--",
        f"--backend-config=python,shm-region-prefix-name={shm_prefix}",
    ]
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=base
        )
    srv = Server(process, log, ports, backends, repository, popef_file, shm_prefix)
    started = time.monotonic()
    try:
        while not srv.ready():
            if process.poll() is not None:
                pytest.fail(
                    f"tritonserver exited with {process.returncode}:\n{srv.log_tail()}",
                    pytrace=False,
                )
            if time.monotonic() - started > START_TIMEOUT:
                pytest.fail(
                    f"tritonserver not ready after {START_TIMEOUT} s:\n{srv.log_tail()}",
                    pytrace=False,
                )
            time.sleep(0.25)
        yield srv
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(30)


@pytest.fixture(scope="module")
def expected(server):
    """Per image of examples/mnist/img: its input row and the runtime's probabilities."""
    from popef.runtime import ModelRunner

    files = sorted((MNIST / "img").glob("*.png"), key=lambda p: int(p.stem))
    rows = np.stack([read_digit(f) for f in files])  # [10, 1, 28, 28]
    with ModelRunner(server.popef_file) as runner:
        [source] = runner.get_execute_inputs()
        [result] = runner.get_execute_outputs()
        probabilities = runner.execute({source.name: rows})[result.name].reshape(len(files), 10)
    return files, rows, probabilities


def _digits_checked(probabilities: np.ndarray) -> None:
    if TRAINED.is_file():
        assert list(probabilities.argmax(axis=1)) == list(range(10))


def test_it_is_a_real_triton(server):
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(server.http_url)
    try:
        metadata = client.get_server_metadata()
        assert metadata["name"] == "triton" and metadata["version"] == "2.51.0"
        assert client.is_server_live() and client.is_server_ready()
        index = {m["name"]: m["state"] for m in client.get_model_repository_index()}
        index.pop(ORT_MODEL, None)  # its own tests below
        assert index == {
            "mnist": "READY",
            "mnist_auto.poplar": "READY",
            "linear_wild": "READY",
            "linear_reshape": "READY",
        }
    finally:
        client.close()


def test_the_blog_client_prints_the_ten_predictions(server, expected):
    files, _, probabilities = expected
    for script, url in (("client.py", server.grpc_url), ("client_http.py", server.http_url)):
        path = MNIST / "triton" / script
        if not path.is_file():
            continue
        result = subprocess.run(
            [sys.executable, str(path), str(MNIST / "img"), "--url", url],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        lines = result.stdout.strip().splitlines()
        digits = [int(p.argmax()) for p in probabilities]
        assert lines == [f'Predicted digit for file "{f.name}": {d}' for f, d in zip(files, digits)]
        if TRAINED.is_file():
            assert digits == list(range(10))


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_ten_predictions(server, expected, protocol):
    _, rows, probabilities = expected
    if protocol == "grpc":
        import tritonclient.grpc as client_module

        client = client_module.InferenceServerClient(server.grpc_url)
    else:
        import tritonclient.http as client_module

        client = client_module.InferenceServerClient(server.http_url)
    try:
        got = []
        for row in rows:  # one request per image, as the blog's client sends them
            digit_image = client_module.InferInput("digit_image", [1, 1, 28, 28], "FP32")
            digit_image.set_data_from_numpy(row[None])
            result = client.infer(
                "mnist",
                [digit_image],
                outputs=[client_module.InferRequestedOutput("output_labels")],
            )
            got.append(result.as_numpy("output_labels")[0])
        np.testing.assert_allclose(np.stack(got), probabilities, rtol=1e-5, atol=1e-7)
        # and all ten in one request
        digit_image = client_module.InferInput("digit_image", list(rows.shape), "FP32")
        digit_image.set_data_from_numpy(rows)
        batch = client.infer("mnist", [digit_image]).as_numpy("output_labels")
        np.testing.assert_allclose(batch, probabilities, rtol=1e-5, atol=1e-7)
        _digits_checked(batch)
    finally:
        client.close()


def test_model_metadata_uses_the_name_map(server):
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        metadata = client.get_model_metadata("mnist")
        assert metadata.platform == "poplar"
        assert [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs] == [
            ("digit_image", "FP32", [-1, 1, 28, 28])
        ]
        assert [(t.name, t.datatype, list(t.shape)) for t in metadata.outputs] == [
            ("output_labels", "FP32", [-1, 10])
        ]
    finally:
        client.close()
    client = httpclient.InferenceServerClient(server.http_url)
    try:
        metadata = client.get_model_metadata("mnist_auto.poplar")
        assert [(t["name"], t["shape"]) for t in metadata["inputs"]] == [("features", [-1, 4])]
        assert [(t["name"], t["shape"]) for t in metadata["outputs"]] == [("scores", [-1, 3])]
    finally:
        client.close()


def test_the_config_triton_reports(server):
    import tritonclient.grpc as grpcclient
    from tritonclient.grpc import model_config_pb2 as mc

    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        config = client.get_model_config("mnist").config
        assert config.backend == "poplar" and config.max_batch_size == 16
        assert [(i.name, i.data_type, list(i.dims)) for i in config.input] == [
            ("digit_image", mc.TYPE_FP32, [1, 28, 28])
        ]
        assert [(o.name, o.data_type, list(o.dims)) for o in config.output] == [
            ("output_labels", mc.TYPE_FP32, [10])
        ]
        assert config.dynamic_batching.max_queue_delay_microseconds == 500
        assert config.parameters["executor"].string_value == "cpu"
        # no config.pbtxt: completed from the PopEF file by auto_complete_config
        auto = client.get_model_config("mnist_auto.poplar").config
        assert auto.backend == "poplar"
        assert auto.max_batch_size == 2  # micro batch 2 x 1 device iteration x 1 replica
        assert [(i.name, i.data_type, list(i.dims)) for i in auto.input] == [
            ("features", mc.TYPE_FP32, [4])
        ]
        assert [(o.name, o.data_type, list(o.dims)) for o in auto.output] == [
            ("scores", mc.TYPE_FP32, [3])
        ]
        assert auto.HasField("dynamic_batching")
        assert [g.kind for g in auto.instance_group] == [mc.ModelInstanceGroup.KIND_CPU]
    finally:
        client.close()
    # the auto-completed model serves what it says
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        x = np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4)
        features = grpcclient.InferInput("features", [2, 4], "FP32")
        features.set_data_from_numpy(x)
        got = client.infer("mnist_auto.poplar", [features]).as_numpy("scores")
        np.testing.assert_allclose(got, reference(x), rtol=1e-5)
    finally:
        client.close()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_an_input_with_reshape_is_served(server, protocol):
    """Triton hands the backend the tensor after the config's reshape ([n, 4], not the [n, 2,
    2] of dims): the backend takes it (it used to refuse every request)."""
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    module = httpclient if protocol == "http" else grpcclient
    client = module.InferenceServerClient(
        server.http_url if protocol == "http" else server.grpc_url
    )
    try:
        x = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 2, 2)
        features = module.InferInput("features", [3, 2, 2], "FP32")
        features.set_data_from_numpy(x)
        got = client.infer("linear_reshape", [features]).as_numpy("scores")
        assert got.shape == (3, 3)
        np.testing.assert_allclose(got, reference(x.reshape(3, 4)), rtol=1e-5)
    finally:
        client.close()


def test_dynamic_batching_merges_concurrent_requests(server, expected):
    import tritonclient.grpc as grpcclient

    _, rows, probabilities = expected
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:

        def counts():
            [stats] = client.get_inference_statistics("mnist").model_stats
            return stats.inference_count, stats.execution_count

        inferences0, executions0 = counts()
        n = 64
        results: list = [None] * n
        done = threading.Semaphore(0)

        def callback(index, result, error):
            results[index] = error if error is not None else result.as_numpy("output_labels")
            done.release()

        for i in range(n):
            digit_image = grpcclient.InferInput("digit_image", [1, 1, 28, 28], "FP32")
            digit_image.set_data_from_numpy(rows[i % 10][None])
            client.async_infer(
                "mnist",
                [digit_image],
                callback=lambda result, error, i=i: callback(i, result, error),
            )
        for _ in range(n):
            assert done.acquire(timeout=120), "an asynchronous request got no answer"
        for i, result in enumerate(results):
            assert not isinstance(result, Exception), result
            np.testing.assert_allclose(result[0], probabilities[i % 10], rtol=1e-5, atol=1e-7)
        inferences, executions = counts()
        assert inferences - inferences0 == n
        assert executions - executions0 < n, "no two requests were merged into one execution"
    finally:
        client.close()


def test_malformed_requests_get_errors_and_the_model_stays_ready(server, expected):
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    _, rows, probabilities = expected
    grpc = grpcclient.InferenceServerClient(server.grpc_url)
    http = httpclient.InferenceServerClient(server.http_url)
    try:
        # refused by Triton against the config: a wrong shape, a wrong type, a wrong name
        bad = grpcclient.InferInput("digit_image", [1, 1, 27, 28], "FP32")
        bad.set_data_from_numpy(np.zeros((1, 1, 27, 28), np.float32))
        with pytest.raises(InferenceServerException, match="digit_image"):
            grpc.infer("mnist", [bad])
        bad = httpclient.InferInput("digit_image", [1, 1, 28, 28], "FP64")
        bad.set_data_from_numpy(np.zeros((1, 1, 28, 28), np.float64))
        with pytest.raises(InferenceServerException, match="FP64|data-type|TYPE_FP64"):
            http.infer("mnist", [bad])
        bad = grpcclient.InferInput("image", [1, 1, 28, 28], "FP32")
        bad.set_data_from_numpy(np.zeros((1, 1, 28, 28), np.float32))
        with pytest.raises(InferenceServerException, match="image"):
            grpc.infer("mnist", [bad])
        # let through by Triton (dims [-1]), refused by the backend: its own error response
        bad = grpcclient.InferInput("features", [1, 5], "FP32")
        bad.set_data_from_numpy(np.ones((1, 5), np.float32))
        with pytest.raises(InferenceServerException) as info:
            grpc.infer("linear_wild", [bad])
        assert (
            "unexpected shape for input 'features' for model 'linear_wild': expected "
            "[-1, 4], got [1, 5]"
        ) in str(info.value)
        assert "INVALID_ARG" in str(info.value.status()) or "400" in str(info.value.status())
        bad = httpclient.InferInput("features", [1, 5], "FP32")
        bad.set_data_from_numpy(np.ones((1, 5), np.float32))
        with pytest.raises(InferenceServerException, match="expected .-1, 4., got .1, 5."):
            http.infer("linear_wild", [bad])
        # the models stay ready and keep answering
        assert grpc.is_server_live() and grpc.is_server_ready()
        for model in ("mnist", "linear_wild"):
            assert grpc.is_model_ready(model) and http.is_model_ready(model)
        good = grpcclient.InferInput("features", [1, 4], "FP32")
        x = np.ones((1, 4), np.float32)
        good.set_data_from_numpy(x)
        np.testing.assert_allclose(
            grpc.infer("linear_wild", [good]).as_numpy("scores"), reference(x), rtol=1e-5
        )
        digit_image = grpcclient.InferInput("digit_image", [1, 1, 28, 28], "FP32")
        digit_image.set_data_from_numpy(rows[3][None])
        np.testing.assert_allclose(
            grpc.infer("mnist", [digit_image]).as_numpy("output_labels")[0],
            probabilities[3],
            rtol=1e-5,
            atol=1e-7,
        )
    finally:
        grpc.close()
        http.close()


@pytest.fixture(scope="module")
def ort_model(server, triton_env):
    """The name of the MNIST model on the onnxruntime executor, where the environment has
    onnxruntime."""
    if "onnxruntime" in triton_env.missing_executors():
        _unavailable(
            f"the Triton environment at {triton_env.path} has no onnxruntime: "
            f"popef triton setup --env {triton_env.path} installs it"
        )
    return ORT_MODEL


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_the_onnxruntime_executor_answers_as_cpu(server, expected, ort_model, protocol):
    """The same ten images, one request each and all in one request, on the model whose
    config.pbtxt picks executor onnxruntime: cpu's probabilities, to onnxruntime's tolerance."""
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    _, rows, probabilities = expected
    module = grpcclient if protocol == "grpc" else httpclient
    client = module.InferenceServerClient(
        server.grpc_url if protocol == "grpc" else server.http_url
    )
    try:
        assert client.is_model_ready(ort_model)
        got = []
        for row in rows:
            digit_image = module.InferInput("digit_image", [1, 1, 28, 28], "FP32")
            digit_image.set_data_from_numpy(row[None])
            got.append(client.infer(ort_model, [digit_image]).as_numpy("output_labels")[0])
        np.testing.assert_allclose(np.stack(got), probabilities, rtol=ORT_RTOL, atol=ORT_ATOL)
        digit_image = module.InferInput("digit_image", list(rows.shape), "FP32")
        digit_image.set_data_from_numpy(rows)
        batch = client.infer(ort_model, [digit_image]).as_numpy("output_labels")
        np.testing.assert_allclose(batch, probabilities, rtol=ORT_RTOL, atol=ORT_ATOL)
        assert list(batch.argmax(axis=1)) == list(probabilities.argmax(axis=1))
        _digits_checked(batch)
    finally:
        client.close()


def test_the_onnxruntime_model_reports_its_executor(server, ort_model):
    """Triton's config says executor onnxruntime, and the backend's load log line names the
    executor, onnxruntime's version and the providers the session got."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        config = client.get_model_config(ort_model).config
        assert config.parameters["executor"].string_value == "onnxruntime"
        assert config.backend == "poplar" and config.max_batch_size == 16
    finally:
        client.close()
    log = server.log.read_text(errors="replace")
    assert re.search(
        rf"model '{ort_model}' instance '[^']*': executable\.popef on executor "
        r"'onnxruntime' \(onnxruntime \d+\.\d+\.\d+\S*, providers "
        r"CPUExecutionProvider\)",
        log,
    ), server.log_tail()
    assert re.search(r"model 'mnist' instance '[^']*': executable\.popef on executor 'cpu'", log), (
        server.log_tail()
    )


def test_clean_shutdown(server):
    """Last: SIGTERM stops Triton with status 0, its stubs and shared memory gone. Only what
    this server made is compared: its stubs (by backend folder) and its regions (by prefix)."""
    assert _stub_processes(str(server.backends)), "the model instances run as stub processes"
    assert _shm_regions(server.shm_prefix), f"the stubs talk through /dev/shm/{server.shm_prefix}*"
    code = server.stop()
    assert code == 0, server.log_tail()
    deadline = time.monotonic() + START_TIMEOUT
    while _stub_processes(str(server.backends)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _stub_processes(str(server.backends))
    assert not _shm_regions(server.shm_prefix)
    assert "successfully unloaded 'mnist' version 1" in server.log.read_text(errors="replace")
