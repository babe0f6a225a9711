"""The blog's example (examples/mnist/triton): its repository, server and stock clients.

With the committed model (examples/mnist/executable.popef) the clients must print the ten
correct predictions; without it (a checkout where it is not trained yet) a stand-in model with
untrained weights checks everything but the predicted digits.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from popef.runtime import ModelRunner
from popef.servable import (
    build_plan,
    complete_config,
    read_config,
    read_name_map,
    signature_of,
)

from .conftest import ServeProcess, serve_args

pytest.importorskip("PIL")

MNIST = Path(__file__).resolve().parents[2] / "examples" / "mnist"
TRITON = MNIST / "triton"
REPOSITORY = TRITON / "models"
MODEL = MNIST / "executable.popef"
LINE = re.compile(r'^Predicted digit for file "(\d)\.png": (\d)$')


def _stand_in(path: Path) -> None:
    spec = importlib.util.spec_from_file_location("mnist_example_for_serving", MNIST / "mnist.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.export_popef(module.init_params(0), path)


@pytest.fixture(scope="module")
def repository(tmp_path_factory):
    """The example's repository, or a copy of it around a stand-in model."""
    if MODEL.is_file():
        return REPOSITORY, True
    root = tmp_path_factory.mktemp("example")
    version = root / "mnist" / "1"
    version.mkdir(parents=True)
    shutil.copy(REPOSITORY / "mnist" / "config.pbtxt", root / "mnist" / "config.pbtxt")
    shutil.copy(REPOSITORY / "mnist" / "1" / "name_map.json", version / "name_map.json")
    _stand_in(version / "executable.popef")
    return root, False


def test_repository_layout_is_the_blogs():
    version = REPOSITORY / "mnist" / "1"
    link = version / "executable.popef"
    assert link.is_symlink() and link.readlink() == Path("../../../../executable.popef")
    assert read_name_map(version / "name_map.json") == {
        "input": "digit_image",
        "softmax/Softmax:0": "output_labels",
    }
    config, _ = read_config(REPOSITORY / "mnist")
    assert config.name == "mnist" and config.backend == "poplar"
    assert [i.name for i in config.input] == ["digit_image"]
    assert [o.name for o in config.output] == ["output_labels"]


def test_config_matches_the_model(repository):
    root, _ = repository
    config, states = read_config(root / "mnist")
    with ModelRunner(str(root / "mnist" / "1" / "executable.popef")) as runner:
        signature = signature_of(runner, read_name_map(root / "mnist" / "1" / "name_map.json"))
    plan = build_plan(
        complete_config(config, "mnist", signature, states_max_batch_size=states), signature
    )
    assert plan.inputs[0].shape == (1, 28, 28) and plan.outputs[0].shape == (10,)


def _run(script: str, *args: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, str(TRITON / script), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=TRITON,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_stock_clients_print_the_predictions(repository):
    root, trained = repository
    server = ServeProcess(*serve_args(root))
    try:
        grpc_url = server.url("GRPCInferenceService")
        http_url = server.url("HTTPService")
        outputs = {
            "grpc": _run("client.py", "--url", grpc_url),
            "grpc batch": _run("client.py", "../img", "--url", grpc_url, "--batch"),
            "http": _run("client_http.py", "--url", http_url),
            "http json": _run("client_http.py", "--url", http_url, "--json", "--batch"),
        }
    finally:
        code, log = server.stop()
    assert code == 0, log
    for kind, lines in outputs.items():
        assert len(lines) == 10, (kind, lines)
        matches = [LINE.match(line) for line in lines]
        assert all(matches), (kind, lines)
        assert [m.group(1) for m in matches] == [str(d) for d in range(10)]
        if trained:
            assert all(m.group(1) == m.group(2) for m in matches), (kind, lines)
    assert outputs["grpc"] == outputs["http"] == outputs["grpc batch"] == outputs["http json"]
