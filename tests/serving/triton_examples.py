"""The models of Triton's client examples, built with GraphBuilder, and a runner of the examples.

``build_repository(path)`` writes a model repository with the models that NVIDIA's Python client
examples (triton-inference-server/client, ``src/python/examples``) use, as far as PopEF can
express them:

- ``simple``: INT32 ``INPUT0``, ``INPUT1`` [16] → ``OUTPUT0`` = sum, ``OUTPUT1`` = difference,
  max_batch_size 8 (Triton's ``simple`` example model);
- ``simple_int8``: the same in INT8; ``custom_identity_int32``: INT32 ``INPUT0`` [16] →
  ``OUTPUT0`` = ``INPUT0``;
- models PopEF cannot express, kept so that the repository has Triton's eight models and each
  is refused with its reason: ``simple_string`` and ``simple_identity`` (BYTES tensors),
  ``simple_sequence`` (sequence batching), ``repeat_int32`` (decoupled), and
  ``simple_ensemble`` (an ensemble).

Run as a script, it runs every example of an examples folder (a checkout of the client
repository: no network is used) against ``popef serve`` and, with ``--triton``, against real
Triton with the ``poplar`` backend (``popef triton run``), serving the same repository, and
prints the pass counts::

    python -m tests.serving.triton_examples CLIENT/src/python/examples [--triton]

The servers run in explicit model control mode with every model loaded, without strict
readiness (the repository holds models that cannot load) and on free ports of 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import popef
from popef.runtime import GraphBuilder

SIMPLE_CONFIG = """\
name: "{name}"
backend: "poplar"
max_batch_size: 8
input [ {{ name: "INPUT0" data_type: {dtype} dims: [ 16 ] }},
        {{ name: "INPUT1" data_type: {dtype} dims: [ 16 ] }} ]
output [ {{ name: "OUTPUT0" data_type: {dtype} dims: [ 16 ] }},
         {{ name: "OUTPUT1" data_type: {dtype} dims: [ 16 ] }} ]
"""

IDENTITY_CONFIG = """\
name: "{name}"
backend: "poplar"
max_batch_size: 8
input [ {{ name: "INPUT0" data_type: {dtype} dims: [ 16 ] }} ]
output [ {{ name: "OUTPUT0" data_type: {dtype} dims: [ 16 ] }} ]
"""


def build_simple(path: Path, dtype: popef.DataType = popef.DataType.S32) -> Path:
    """Triton's ``simple``: ``OUTPUT0 = INPUT0 + INPUT1``, ``OUTPUT1 = INPUT0 - INPUT1``, [16]
    per row (micro batch 1)."""
    g = GraphBuilder()
    a = g.add_input("INPUT0", dtype, (1, 16))
    b = g.add_input("INPUT1", dtype, (1, 16))
    g.add_output(g.add_node("Add", [a, b]), "OUTPUT0")
    g.add_output(g.add_node("Sub", [a, b]), "OUTPUT1")
    path.parent.mkdir(parents=True, exist_ok=True)
    g.save(path, executable_name="simple")
    return path


def build_identity(path: Path, dtype: popef.DataType = popef.DataType.S32) -> Path:
    g = GraphBuilder()
    x = g.add_input("INPUT0", dtype, (1, 16))
    g.add_output(g.add_node("Identity", [x]), "OUTPUT0")
    path.parent.mkdir(parents=True, exist_ok=True)
    g.save(path, executable_name="identity")
    return path


def _model(repository: Path, name: str, config: str, build=None, **kwargs) -> None:
    folder = repository / name
    (folder / "1").mkdir(parents=True, exist_ok=True)
    (folder / "config.pbtxt").write_text(config)
    if build is not None:
        build(folder / "1" / "executable.popef", **kwargs)


def build_repository(repository: Path) -> Path:
    """Triton's eight example models, as described in the module docstring."""
    repository.mkdir(parents=True, exist_ok=True)
    _model(
        repository, "simple", SIMPLE_CONFIG.format(name="simple", dtype="TYPE_INT32"), build_simple
    )
    _model(
        repository,
        "simple_int8",
        SIMPLE_CONFIG.format(name="simple_int8", dtype="TYPE_INT8"),
        build_simple,
        dtype=popef.DataType.S8,
    )
    _model(
        repository,
        "custom_identity_int32",
        IDENTITY_CONFIG.format(name="custom_identity_int32", dtype="TYPE_INT32"),
        build_identity,
    )
    # what PopEF cannot express: the same INT32 files under Triton's configs
    _model(
        repository,
        "simple_string",
        SIMPLE_CONFIG.format(name="simple_string", dtype="TYPE_STRING"),
        build_simple,
    )
    _model(
        repository,
        "simple_identity",
        IDENTITY_CONFIG.format(name="simple_identity", dtype="TYPE_STRING"),
        build_identity,
    )
    _model(
        repository,
        "simple_sequence",
        IDENTITY_CONFIG.format(name="simple_sequence", dtype="TYPE_INT32")
        + "sequence_batching { max_sequence_idle_microseconds: 5000000 }\n",
        build_identity,
    )
    _model(
        repository,
        "repeat_int32",
        IDENTITY_CONFIG.format(name="repeat_int32", dtype="TYPE_INT32")
        + "model_transaction_policy { decoupled: true }\n",
        build_identity,
    )
    _model(
        repository,
        "simple_ensemble",
        'name: "simple_ensemble"\nplatform: "ensemble"\n'
        "max_batch_size: 8\n"
        'input [ { name: "INPUT0" data_type: TYPE_INT32 dims: [ 16 ] } ]\n'
        'output [ { name: "OUTPUT0" data_type: TYPE_INT32 dims: [ 16 ] } ]\n'
        'ensemble_scheduling { step [ { model_name: "simple" model_version: -1 '
        'input_map { key: "INPUT0" value: "INPUT0" } '
        'output_map { key: "OUTPUT0" value: "OUTPUT0" } } ] }\n',
    )
    return repository


# -- running the examples --------------------------------------------------------------------------


@dataclass
class Outcome:
    example: str
    passed: bool
    tail: str


def free_ports(n: int) -> list[int]:
    """``n`` distinct free TCP ports of 127.0.0.1."""
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _wait_live(http_port: int, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{http_port}/v2/health/live", timeout=2
            ) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"the server did not start within {timeout:g} s")


def _server(kind: str, repository: Path, log: Path, triton_env: str | None):
    http, grpc, metrics = free_ports(3)
    flags = [
        "--model-repository",
        str(repository),
        "--model-control-mode",
        "explicit",
        "--load-model",
        "*",
        "--strict-readiness",
        "false",
        "--http-port",
        str(http),
        "--grpc-port",
        str(grpc),
        "--metrics-port",
        str(metrics),
    ]
    launcher = [sys.executable, "-c", "import sys; from popef.cli import main; sys.exit(main())"]
    if kind == "popef":
        command = [*launcher, "serve", "--host", "127.0.0.1", *flags]
    else:
        env = ["--env", triton_env] if triton_env else []
        command = [
            *launcher,
            "triton",
            "run",
            *env,
            "--no-setup",
            "--host",
            "127.0.0.1",
            *flags,
            "--",
            "--exit-on-error=false",
        ]
    out = open(log, "wb")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen(
        command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
    )
    process.log_file = out  # type: ignore[attr-defined]
    try:
        _wait_live(http, process, 240)
        time.sleep(1.0 if kind == "popef" else 5.0)  # models load after live
    except BaseException:
        process.kill()
        raise
    return process, http, grpc


def _runs(examples: Path) -> list[tuple[str, list[str], str]]:
    """``(label, arguments, protocol)`` per run: every example with ``-v`` (as Triton's CI),
    the two-protocol ones once per protocol."""
    runs = []
    # the model control examples unload 'simple': they run last (Triton's CI gives them a
    # server of their own)
    for script in sorted(examples.glob("*.py"), key=lambda p: ("model_control" in p.stem, p.name)):
        text = script.read_text(errors="replace")
        name = script.stem
        grpc = "grpc" in name or "tritonclient.grpc" in text and "tritonclient.http" not in text
        if "-i" in text and "--protocol" in text:
            for protocol in ("http", "grpc"):
                runs.append((f"{name} -i {protocol}", ["-v", "-i", protocol], protocol))
        else:
            runs.append((name, ["-v"], "grpc" if grpc else "http"))
    return runs


def run_examples(
    examples: Path,
    kind: str,
    repository: Path,
    work: Path,
    triton_env: str | None = None,
    timeout: float = 120,
) -> list[Outcome]:
    process, http, grpc = _server(kind, repository, work / f"{kind}-server.log", triton_env)
    outcomes = []
    try:
        for label, arguments, protocol in _runs(examples):
            script = examples / (label.split()[0] + ".py")
            url = f"127.0.0.1:{http if protocol == 'http' else grpc}"
            try:
                done = subprocess.run(
                    [sys.executable, str(script), *arguments, "-u", url],
                    check=False,
                    capture_output=True,
                    text=True,
                    timeout=timeout,
                    cwd=examples,
                    stdin=subprocess.DEVNULL,
                )
                passed, tail = done.returncode == 0, (done.stdout + done.stderr)[-600:]
            except subprocess.TimeoutExpired:
                passed, tail = False, f"timed out after {timeout:g} s"
            outcomes.append(Outcome(label, passed, tail))
    finally:
        process.terminate()
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
        process.log_file.close()  # type: ignore[attr-defined]
    return outcomes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("examples", type=Path, help="the client repository's src/python/examples")
    parser.add_argument(
        "--triton",
        action="store_true",
        help="also run them against real Triton with the poplar backend",
    )
    parser.add_argument(
        "--triton-env",
        default=os.environ.get("POPEF_TRITON_ENV"),
        help="the Triton environment (popef triton setup)",
    )
    parser.add_argument("--show-failures", action="store_true")
    args = parser.parse_args(argv)
    kinds = ["popef", "triton"] if args.triton else ["popef"]
    results = {}
    with tempfile.TemporaryDirectory(prefix="popef-examples-") as tmp:
        work = Path(tmp)
        for kind in kinds:
            repository = build_repository(work / f"{kind}-models")
            results[kind] = run_examples(args.examples, kind, repository, work, args.triton_env)
    labels = [o.example for o in results[kinds[0]]]
    print(f"{'example':52} " + " ".join(f"{k:>7}" for k in kinds))
    for i, label in enumerate(labels):
        print(
            f"{label:52} "
            + " ".join(f"{'pass' if results[k][i].passed else 'FAIL':>7}" for k in kinds)
        )
    for kind in kinds:
        print(f"{kind}: {sum(o.passed for o in results[kind])} of {len(labels)} runs pass")
    if args.show_failures:
        for kind in kinds:
            for o in results[kind]:
                if not o.passed:
                    print(f"--- {kind}: {o.example}\n{o.tail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
