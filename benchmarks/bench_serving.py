"""Serving benchmark: round-trip latency and throughput of ``popef serve`` on loopback.

    python benchmarks/bench_serving.py [--seconds 3] [--model examples/mnist/executable.popef]
    python benchmarks/bench_serving.py --executors [--triton-env DIR]

``--executors`` runs only the executor comparison (:func:`compare_executors`): the MNIST model
on ``popef serve`` with the ``cpu`` and ``onnxruntime`` executors (chosen in config.pbtxt) and,
with ``--triton-env``, on a real Triton with the poplar backend (each executor the Triton
environment can import); batch-1 gRPC latency and 16-client throughput, with ratios to
``popef serve`` on ``cpu``. Without it:

Starts ``popef serve`` in a child process on free ports of 127.0.0.1 with a repository of:

- ``tiny``: softmax(x @ w) on 4 numbers — the server's own overhead, compute is ~50 µs;
- ``mnist``: the MNIST example (the committed model, or the same network with untrained
  weights when it is missing), max_batch_size 16, no dynamic batching;
- ``mnist_dyn``: the same with ``dynamic_batching { max_queue_delay_microseconds: 500 }``;
- ``mnist_dev``, ``mnist_dev_dyn``: the same two with an emulated device round trip of 2 ms
  per execution (Graphcore's ``execute_delay_ms`` test knob), the fixed cost per execution an
  accelerator has and the CPU executor lacks, which is what dynamic batching amortises;

and measures, with the stock ``tritonclient`` in this process:

1. batch-1 round trips, one client, gRPC and HTTP (binary tensors): median, p90, p99;
2. throughput (images/s) with 1, 4 and 16 concurrent gRPC clients (threads, batch 1 each,
   closed loop for ``--seconds``), without and with dynamic batching, on the CPU executor and
   with the emulated device latency, and the average batch the server executed (from its
   statistics);
3. ``ModelRunner.execute`` alone at batch 1 and 16, the compute the server wraps.

Targets (issue 6): median batch-1 gRPC round trip ≤ 1.5 ms; with 16 clients, dynamic batching
≥ 3× the throughput of no batching. Everything runs on one machine, so client and server share
its cores. Next to each ratio it prints the most that batching could gain on this machine
(:func:`batching_bound`): what a server with no overhead beyond the gRPC floor would reach,
given the floor's CPU cost per request and the model's cost at batch 1 and 16. Batching saves
execution cost only; where transport costs more than execution, no server gains 3×.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MNIST_DIR = ROOT / "examples" / "mnist"

MNIST_CONFIG = """name: "{name}"
backend: "poplar"
max_batch_size: 16
input [ {{ name: "digit_image" data_type: TYPE_FP32 dims: [ 1, 28, 28 ] }} ]
output [ {{ name: "output_labels" data_type: TYPE_FP32 dims: [ 10 ] }} ]
instance_group [ {{ kind: KIND_CPU count: 1 }} ]
{extra}
"""
NAME_MAP = '{"input": "digit_image", "softmax/Softmax:0": "output_labels"}'
DEVICE_MS = 2  # emulated device round trip per execution (Graphcore's execute_delay_ms knob)


def build_repository(root: Path, model: Path | None) -> str:
    import popef
    from popef.runtime import GraphBuilder

    rng = np.random.default_rng(0)
    g = GraphBuilder()
    x = g.add_input("input", popef.DataType.F32, (1, 4))
    w = g.add_weight("w", rng.standard_normal((4, 3)).astype(np.float32))
    g.add_output(g.add_node("Softmax", [g.add_node("MatMul", [x, w])], axis=-1), "out")
    (root / "tiny" / "1").mkdir(parents=True)
    g.save(root / "tiny" / "1" / "executable.popef", executable_name="tiny")
    (root / "tiny" / "config.pbtxt").write_text(
        'name: "tiny"\nbackend: "poplar"\nmax_batch_size: 8\n'
    )

    source = (
        "the committed model"
        if model is not None and model.resolve() == (MNIST_DIR / "executable.popef").resolve()
        else str(model)
    )
    if model is None or not model.is_file():
        spec = importlib.util.spec_from_file_location("bench_mnist", MNIST_DIR / "mnist.py")
        mnist = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mnist)
        model = root / "mnist_stand_in.popef"
        mnist.export_popef(mnist.init_params(0), model)
        source = "MNIST network with untrained weights (no committed model found)"
    dyn = "dynamic_batching { max_queue_delay_microseconds: 500 }"
    device = (
        f'parameters [ {{ key: "execute_delay_ms" value: {{ string_value: "{DEVICE_MS}" }} }} ]'
    )
    for name, extra in (
        ("mnist", ""),
        ("mnist_dyn", dyn),
        ("mnist_dev", device),
        ("mnist_dev_dyn", dyn + "\n" + device),
    ):
        (root / name / "1").mkdir(parents=True)
        shutil.copy(model, root / name / "1" / "executable.popef")
        (root / name / "1" / "name_map.json").write_text(NAME_MAP)
        (root / name / "config.pbtxt").write_text(MNIST_CONFIG.format(name=name, extra=extra))
    return source


class Serve:
    def __init__(self, repository: Path) -> None:
        command = [
            sys.executable,
            "-c",
            "from popef.cli import main; main()",
            "serve",
            "--model-repository",
            str(repository),
            "--host",
            "127.0.0.1",
            "--http-port",
            "0",
            "--grpc-port",
            "0",
            "--metrics-port",
            "0",
        ]
        self.proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        self.ports = {}
        pattern = re.compile(
            r"Started (GRPCInferenceService|HTTPService|Metrics Service) at "
            r"\S+:(\d+)"
        )
        log = []
        while len(self.ports) < 3:
            line = self.proc.stdout.readline()
            if not line:
                raise SystemExit("popef serve failed to start:\n" + "".join(log))
            log.append(line)
            match = pattern.search(line)
            if match:
                self.ports[match.group(1)] = int(match.group(2))
        # keep draining the log so the child never blocks on a full pipe
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()

    def url(self, service: str) -> str:
        return f"127.0.0.1:{self.ports[service]}"

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def percentiles(samples: list[float]) -> tuple[float, float, float]:
    a = np.array(samples) * 1e3
    return float(np.median(a)), float(np.percentile(a, 90)), float(np.percentile(a, 99))


def latency(kind: str, url: str, model: str, name: str, array: np.ndarray, n: int) -> list[float]:
    if kind == "grpc":
        import tritonclient.grpc as client_module
    else:
        import tritonclient.http as client_module
    client = client_module.InferenceServerClient(url)
    tensor = client_module.InferInput(name, list(array.shape), "FP32")
    tensor.set_data_from_numpy(array)
    for _ in range(max(10, n // 10)):
        client.infer(model, [tensor])
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        client.infer(model, [tensor])
        times.append(time.perf_counter() - t0)
    client.close()
    return times


def throughput(url: str, model: str, clients: int, seconds: float) -> tuple[float, int]:
    import tritonclient.grpc as grpcclient

    x = np.random.default_rng(1).random((1, 1, 28, 28), dtype=np.float32)
    counts = [0] * clients
    errors = []
    start = threading.Barrier(clients + 1)
    stop = threading.Event()

    def worker(k: int) -> None:
        client = grpcclient.InferenceServerClient(url)
        tensor = grpcclient.InferInput("digit_image", [1, 1, 28, 28], "FP32")
        tensor.set_data_from_numpy(x)
        client.infer(model, [tensor])  # connect and warm up
        start.wait()
        try:
            while not stop.is_set():
                client.infer(model, [tensor])
                counts[k] += 1
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            client.close()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise SystemExit(f"a client failed: {errors[0]}")
    return sum(counts) / elapsed, sum(counts)


def stats(url: str, model: str) -> tuple[int, int]:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url)
    s = client.get_inference_statistics(model)["model_stats"][0]
    client.close()
    return s["inference_count"], s["execution_count"]


FLOOR_CLIENT = """
import sys, time, numpy as np, tritonclient.grpc as grpcclient
client = grpcclient.InferenceServerClient(sys.argv[1])
tensor = grpcclient.InferInput("input", [1, 4], "FP32")
tensor.set_data_from_numpy(np.zeros((1, 4), np.float32))
for _ in range(100):
    client.infer("tiny", [tensor])
times = []
cpu0 = time.process_time()
for _ in range(int(sys.argv[2])):
    t0 = time.perf_counter()
    client.infer("tiny", [tensor])
    times.append(time.perf_counter() - t0)
cpu = (time.process_time() - cpu0) / len(times)
times.sort()
print(times[len(times) // 2], cpu)
"""


def grpc_floor(n: int) -> tuple[float, float, float]:
    """A gRPC server that answers ModelInfer with a constant, on tritonclient's stubs: the
    round trip (median, s), the server's and the client's CPU seconds per request. Nothing
    can be faster."""
    import concurrent.futures
    import resource

    import grpc
    from tritonclient.grpc import service_pb2 as pb
    from tritonclient.grpc import service_pb2_grpc

    response = pb.ModelInferResponse(
        model_name="tiny",
        model_version="1",
        outputs=[
            pb.ModelInferResponse.InferOutputTensor(name="out", datatype="FP32", shape=[1, 3])
        ],
        raw_output_contents=[bytes(12)],
    )

    class Constant(service_pb2_grpc.GRPCInferenceServiceServicer):
        def ModelInfer(self, request, context):
            return response

    server = grpc.server(concurrent.futures.ThreadPoolExecutor(8))
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(Constant(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    out = subprocess.run(
        [sys.executable, "-c", FLOOR_CLIENT, f"127.0.0.1:{port}", str(n)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    server.stop(0)
    cpu = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
    median, client_cpu = (float(v) for v in out.split())
    return median, cpu / (n + 100), client_cpu


def batching_bound(transport: float, one: float, batched: float, fixed: float, cores: int) -> float:
    """The most dynamic batching can gain over no batching with 16 closed-loop clients, for a
    server with no overhead of its own beyond the gRPC floor: every request costs
    ``transport`` CPU seconds (floor server + client, on the same ``cores``), and an execution
    ``fixed`` seconds of device time plus ``one`` (batch 1) or ``batched`` (per image, batch
    16) CPU seconds. Without batching, executions run one at a time (one instance)."""
    plain = min(cores / (transport + one), 1 / (fixed + one))
    dynamic = min(cores / (transport + batched), 16 / (fixed + 16 * batched))
    return dynamic / plain


def process_cpu(pid: int) -> float | None:
    """CPU seconds a process has used (Linux), None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def runner_baseline(model: Path, n: int) -> dict[int, float]:
    from popef.runtime import ModelRunner

    out = {}
    with ModelRunner(str(model)) as runner:
        [source] = runner.get_execute_inputs()
        for batch in (1, 16):
            x = np.random.default_rng(2).random((batch, 1, 28, 28), dtype=np.float32)
            runner.execute({source.name: x})
            times = []
            for _ in range(max(5, n // batch)):
                t0 = time.perf_counter()
                runner.execute({source.name: x})
                times.append(time.perf_counter() - t0)
            out[batch] = statistics.median(times)
    return out


# ---- executors side by side (issue 13): popef serve on cpu and onnxruntime, real Triton

EXECUTOR_PARAMETER = 'parameters [ {{ key: "executor" value: {{ string_value: "{executor}" }} }} ]'
TRITON_START_TIMEOUT = 180  # seconds: a loaded 2-core machine starts Triton's stubs slowly


def module_available(python: str | Path, module: str) -> bool:
    """Whether ``python`` can import ``module`` (checked in a child process)."""
    probe = subprocess.run(
        [str(python), "-c", f"import {module}"], capture_output=True, check=False
    )
    return probe.returncode == 0


def build_executor_repository(
    root: Path, model: Path | None, executors: list[str]
) -> tuple[Path, str]:
    """A repository with the MNIST model once per executor (``mnist_<executor>``, config
    ``parameters { key: "executor" ... }``, max_batch_size 16, no dynamic batching)."""
    source = build_repository(root / "base", model)
    popef_file = root / "base" / "mnist" / "1" / "executable.popef"
    repository = root / "models"
    for executor in executors:
        name = f"mnist_{executor}"
        (repository / name / "1").mkdir(parents=True)
        shutil.copy(popef_file, repository / name / "1" / "executable.popef")
        (repository / name / "1" / "name_map.json").write_text(NAME_MAP)
        (repository / name / "config.pbtxt").write_text(
            MNIST_CONFIG.format(name=name, extra=EXECUTOR_PARAMETER.format(executor=executor))
        )
    return repository, source


def free_ports(n: int) -> list[int]:
    import socket

    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class Triton:
    """A real tritonserver with the poplar backend (``popef triton run``) on ``repository``."""

    def __init__(self, env_dir: Path, repository: Path, work: Path) -> None:
        import urllib.request

        self.http_port, self.grpc_port, metrics_port = free_ports(3)
        self.log = work / "tritonserver.log"
        command = [
            sys.executable,
            "-c",
            "import sys; from popef.cli import main; sys.exit(main())",
            "triton",
            "run",
            "--model-repository",
            str(repository),
            "--env",
            str(env_dir),
            "--no-setup",
            "--host",
            "127.0.0.1",
            "--http-port",
            str(self.http_port),
            "--grpc-port",
            str(self.grpc_port),
            "--metrics-port",
            str(metrics_port),
            "--backend-directory",
            str(work / "backends"),
            "--",
            f"--backend-config=python,shm-region-prefix-name=bench_{os.getpid()}_",
        ]
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=work
            )
        deadline = time.monotonic() + TRITON_START_TIMEOUT
        while True:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.http_port}/v2/health/ready", timeout=2
                ) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = self.log.read_text(errors="replace").splitlines()[-15:]
                raise RuntimeError("tritonserver did not become ready:\n" + "\n".join(tail))
            time.sleep(0.25)

    def url(self, service: str) -> str:
        port = self.grpc_port if service == "GRPCInferenceService" else self.http_port
        return f"127.0.0.1:{port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def measure_models(
    server, models: list[str], requests: int, seconds: float
) -> dict[str, tuple[float, float, float]]:
    """Per model: batch-1 gRPC round trip (median and p90, ms) and images/s with 16 clients."""
    digit = np.random.default_rng(4).random((1, 1, 28, 28), dtype=np.float32)
    url = server.url("GRPCInferenceService")
    figures = {}
    for model in models:
        median, p90, _ = percentiles(latency("grpc", url, model, "digit_image", digit, requests))
        rate, _ = throughput(url, model, 16, seconds)
        figures[model] = median, p90, rate
    return figures


def compare_executors(args: argparse.Namespace) -> int:
    """Batch-1 gRPC latency and 16-client throughput of the MNIST model on ``popef serve``
    with the ``cpu`` and ``onnxruntime`` executors and on real Triton (poplar backend), one
    server at a time, with ratios to ``popef serve`` on ``cpu``."""
    executors = ["cpu"]
    skipped = []
    if module_available(sys.executable, "onnxruntime"):
        executors.append("onnxruntime")
    else:
        skipped.append(
            "popef serve, onnxruntime: skipped, onnxruntime is not installed "
            "(pip install 'popef[onnxruntime]')"
        )
    requests = max(50, args.requests // 5)
    rows: list[tuple[str, tuple[float, float, float]]] = []
    with tempfile.TemporaryDirectory(prefix="bench_executors_") as tmp:
        root = Path(tmp)
        repository, source = build_executor_repository(root, args.model, executors)
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        print(
            f"machine: {os.cpu_count()} CPUs, load average {load} before the run; "
            f"python {sys.version.split()[0]}; MNIST: {source}"
        )
        print(
            f"each figure: {requests} batch-1 gRPC round trips (one client), then 16 gRPC "
            f"clients (batch 1, closed loop) for {args.seconds:g} s; one server at a time"
        )
        models = [f"mnist_{e}" for e in executors]
        server = Serve(repository)
        try:
            figures = measure_models(server, models, requests, args.seconds)
        finally:
            server.stop()
        rows += [(f"popef serve, {e}", figures[f"mnist_{e}"]) for e in executors]

        env = args.triton_env
        if env is None:
            skipped.append("real Triton: skipped, no --triton-env given")
        elif not (Path(env) / "popef-triton.json").is_file():
            skipped.append(
                f"real Triton: skipped, '{env}' is not a Triton environment "
                "(make one with: popef triton setup --env DIR)"
            )
        else:
            from popef.triton.environment import TritonEnv

            triton_env = TritonEnv.load(env)
            triton_executors = [
                e for e in executors if e == "cpu" or module_available(triton_env.python, e)
            ]
            for e in executors:
                if e not in triton_executors:
                    skipped.append(
                        f"real Triton, {e}: skipped, the Triton environment has no "
                        f"{e} package (pip install it with {triton_env.python})"
                    )
            triton_repository = root / "triton_models"
            triton_repository.mkdir()
            for e in triton_executors:
                shutil.copytree(repository / f"mnist_{e}", triton_repository / f"mnist_{e}")
            work = root / "triton"
            work.mkdir()
            try:
                triton = Triton(Path(env), triton_repository, work)
            except RuntimeError as exc:
                skipped.append(f"real Triton: failed to start: {exc}")
            else:
                try:
                    figures = measure_models(
                        triton, [f"mnist_{e}" for e in triton_executors], requests, args.seconds
                    )
                finally:
                    triton.stop()
                rows += [
                    (f"real Triton 2.51 (poplar backend), {e}", figures[f"mnist_{e}"])
                    for e in triton_executors
                ]

    base_latency, _, base_rate = rows[0][1]
    print("\nMNIST, gRPC                              batch-1 round trip (ms)        16 clients")
    print("  server, executor                        median    p90   vs cpu    images/s   vs cpu")
    for label, (median, p90, rate) in rows:
        print(
            f"  {label:38s} {median:7.3f} {p90:6.3f} {median / base_latency:7.2f}x "
            f"{rate:10.0f} {rate / base_rate:7.2f}x"
        )
    for line in skipped:
        print(f"  {line}")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"\nload average after the run: {load}; client and servers share this machine's "
        "cores, so the figures are noisy (a few runs tell the spread)"
    )
    return 0


# -- Ray Serve (docs/scale-out.md) -----------------------------------------------------------------


def compare_ray(args: argparse.Namespace) -> int:
    """``--ray``: the MNIST model on Ray Serve with 1, 2 and 4 replicas (rescaled in place),
    16 gRPC clients each, next to ``popef serve``; and the batch-1 round trip through Ray's
    HTTP and gRPC proxies next to ``popef serve``'s (the proxies' added latency). Needs the
    extra ``popef[ray]``; a local Ray instance with the machine's CPUs, on 127.0.0.1."""
    from dataclasses import replace

    import ray
    from ray import serve

    from popef.serving.ray import APP_NAME, AppOptions, Scaling, build_app
    from popef.serving.ray.launcher import RayLaunch, RayService

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    digit = np.random.default_rng(4).random((1, 1, 28, 28), dtype=np.float32)
    n = max(50, args.requests // 5)
    with tempfile.TemporaryDirectory(prefix="bench_ray_") as tmp:
        root = Path(tmp)
        build_repository(root, args.model)
        rows = {}
        server = Serve(root)
        try:
            grpc_url, http_url = server.url("GRPCInferenceService"), server.url("HTTPService")
            rows["popef serve"] = (
                percentiles(latency("grpc", grpc_url, "mnist", "digit_image", digit, n))[0],
                percentiles(latency("http", http_url, "mnist", "digit_image", digit, n))[0],
                throughput(grpc_url, "mnist_dyn", 16, args.seconds)[0],
            )
        finally:
            server.stop()
        http_port, grpc_port = free_ports(2)
        options = AppOptions((str(root),), num_replicas=1, num_cpus=0)
        service = RayService(
            options, RayLaunch(host="127.0.0.1", http_port=http_port, grpc_port=grpc_port)
        )
        service.start()
        try:
            grpc_url, http_url = service.url("grpc"), service.url("http")
            # with the retrying ingress (the default), then without (retry_lost_requests=False)
            for retrying, kind in ((True, ""), (False, " direct")):
                mode = replace(options, retry_lost_requests=retrying)
                for replicas in (1, 2, 4):
                    serve.run(
                        build_app(mode, Scaling(num_replicas=replicas, num_cpus=0)),
                        name=APP_NAME,
                        route_prefix="/",
                    )
                    if replicas == 1:
                        ray_latency = (
                            percentiles(
                                latency("grpc", grpc_url, "mnist", "digit_image", digit, n)
                            )[0],
                            percentiles(
                                latency("http", http_url, "mnist", "digit_image", digit, n)
                            )[0],
                        )
                    label = f"Ray Serve{kind}, {replicas} replica{'s' if replicas > 1 else ''}"
                    rows[label] = (
                        *ray_latency,
                        throughput(grpc_url, "mnist_dyn", 16, args.seconds)[0],
                    )
        finally:
            service.stop()
            ray.shutdown()
    base = rows["popef serve"]
    print(
        f"MNIST on {os.cpu_count()} CPUs (client and servers share them); batch-1 medians "
        f"of {n} round trips; 16 gRPC clients for {args.seconds:g} s, dynamic batching; "
        "'direct': retry_lost_requests=false (no ingress)"
    )
    print("                                gRPC b1 ms   HTTP b1 ms   images/s   vs popef serve")
    for label, (grpc_ms, http_ms, rate) in rows.items():
        print(f"  {label:28s} {grpc_ms:10.2f} {http_ms:12.2f} {rate:10.0f} {rate / base[2]:12.2f}x")
    for kind, what in (("", "with the retrying ingress"), (" direct", "direct")):
        one = rows[f"Ray Serve{kind}, 1 replica"]
        print(
            f"Ray added latency at batch 1, {what}: gRPC {one[0] - base[0]:+.2f} ms, "
            f"HTTP {one[1] - base[1]:+.2f} ms"
        )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--seconds", type=float, default=3.0, help="duration of each throughput run (default 3)"
    )
    parser.add_argument(
        "--requests",
        type=int,
        default=500,
        help="batch-1 round trips per latency figure (default 500)",
    )
    parser.add_argument(
        "--model",
        type=Path,
        default=MNIST_DIR / "executable.popef",
        help="MNIST PopEF model (default: the example's)",
    )
    parser.add_argument(
        "--executors",
        action="store_true",
        help="only compare executors: popef serve on cpu and onnxruntime, and "
        "real Triton with --triton-env (batch-1 gRPC latency, 16 clients)",
    )
    parser.add_argument(
        "--triton-env",
        type=Path,
        metavar="DIR",
        help="Triton environment (popef triton setup) for --executors; "
        "without it real Triton is skipped",
    )
    parser.add_argument(
        "--ray",
        action="store_true",
        help="only Ray Serve: 1, 2 and 4 replicas at 16 clients next to popef "
        "serve, and the proxies' batch-1 latency (needs popef[ray])",
    )
    args = parser.parse_args()
    if args.ray:
        return compare_ray(args)
    if args.executors:
        return compare_executors(args)

    with tempfile.TemporaryDirectory(prefix="bench_serving_") as tmp:
        root = Path(tmp)
        source = build_repository(root, args.model)
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        print(
            f"machine: {os.cpu_count()} CPUs, load average {load} before the run; "
            f"python {sys.version.split()[0]}; MNIST: {source}"
        )
        base = runner_baseline(root / "mnist" / "1" / "executable.popef", 100)
        print(
            f"ModelRunner.execute alone (MNIST): batch 1 {base[1] * 1e3:.2f} ms, "
            f"batch 16 {base[16] * 1e3:.2f} ms ({16 / base[16]:.0f} images/s)"
        )
        floor, floor_cpu, client_cpu = grpc_floor(args.requests)
        print(
            f"gRPC floor (a servicer answering a constant, same stubs): round trip "
            f"{floor * 1e3:.3f} ms, CPU per request: server {floor_cpu * 1e3:.3f} ms, "
            f"client {client_cpu * 1e3:.3f} ms"
        )
        cores = os.cpu_count() or 1
        bounds = {
            fixed: batching_bound(floor_cpu + client_cpu, base[1], base[16] / 16, fixed, cores)
            for fixed in (0.0, DEVICE_MS / 1e3)
        }
        server = Serve(root)
        try:
            grpc_url, http_url = server.url("GRPCInferenceService"), server.url("HTTPService")
            print("\nbatch-1 round trip, one client (ms)      median     p90     p99")
            tiny_x = np.random.default_rng(3).random((1, 4), dtype=np.float32)
            digit = np.random.default_rng(4).random((1, 1, 28, 28), dtype=np.float32)
            results = {}
            for kind, url in (("grpc", grpc_url), ("http", http_url)):
                for model, name, x, n in (
                    ("tiny", "input", tiny_x, args.requests),
                    ("mnist", "digit_image", digit, max(50, args.requests // 5)),
                ):
                    cpu0 = process_cpu(server.proc.pid)
                    med, p90, p99 = percentiles(latency(kind, url, model, name, x, n))
                    cpu1 = process_cpu(server.proc.pid)
                    results[(kind, model)] = med
                    cpu = (
                        f"   server CPU {(cpu1 - cpu0) / (n + max(10, n // 10)) * 1e3:.3f} "
                        "ms/request"
                        if cpu0 is not None and cpu1 is not None
                        else ""
                    )
                    print(
                        f"  {kind:4s} {model:5s} (n={n:4d})                  "
                        f"{med:7.3f} {p90:7.3f} {p99:7.3f}{cpu}"
                    )

            ratio16 = {}
            for label, plain_model, dyn_model, fixed in (
                ("cpu executor", "mnist", "mnist_dyn", 0.0),
                (
                    f"cpu executor + {DEVICE_MS} ms emulated device latency per execution",
                    "mnist_dev",
                    "mnist_dev_dyn",
                    DEVICE_MS / 1e3,
                ),
            ):
                print(f"\nthroughput, gRPC, batch-1 requests (images/s): {label}")
                print("  clients   no batching   dynamic batching   ratio   avg batch (dyn)")
                for clients in (1, 4, 16):
                    plain, _ = throughput(grpc_url, plain_model, clients, args.seconds)
                    before = stats(http_url, dyn_model)
                    dyn, _ = throughput(grpc_url, dyn_model, clients, args.seconds)
                    after = stats(http_url, dyn_model)
                    samples = after[0] - before[0]
                    executions = max(1, after[1] - before[1])
                    ratio = dyn / plain
                    if clients == 16:
                        ratio16[label] = ratio, bounds[fixed]
                    print(
                        f"  {clients:7d}   {plain:11.0f}   {dyn:16.0f}   {ratio:5.2f}   "
                        f"{samples / executions:15.1f}"
                    )
        finally:
            server.stop()

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\nload average after the run: {load} (other work on the machine skews the figures)")
    print("\ntargets")
    grpc_median = results[("grpc", "tiny")]
    print(
        f"  median batch-1 gRPC round trip (server overhead, tiny model): {grpc_median:.3f} ms "
        f"(target <= 1.5 ms: {'met' if grpc_median <= 1.5 else 'MISSED'})"
    )
    print(
        f"  median batch-1 gRPC round trip (MNIST): {results[('grpc', 'mnist')]:.3f} ms "
        f"(the model alone: {base[1] * 1e3:.3f} ms)"
    )
    for label, (ratio, bound) in ratio16.items():
        print(
            f"  16 clients, dynamic batching / no batching, {label}: {ratio:.2f}x "
            f"(target >= 3x: {'met' if ratio >= 3 else 'MISSED'}; at most {bound:.2f}x on "
            f"this machine, see batching_bound)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
