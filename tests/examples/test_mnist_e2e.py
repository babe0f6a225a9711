"""The tutorial's workflow on the committed MNIST model: dump it, run it, get the right digits."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import popef

from ..helpers import TUTORIAL_USER_ANCHORS

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "mnist"
MODEL = EXAMPLE / "executable.popef"

TUTORIAL_LISTING = "PopEF file: examples/mnist/executable.popef\n" + TUTORIAL_USER_ANCHORS

EXPECTED_CLIENT = "".join(f'Predicted digit for file "{d}.png": {d}\n' for d in range(10))


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_popef_dump_prints_the_tutorial_listing():
    result = run("-m", "popef_dump", "--user-anchors", "examples/mnist/executable.popef")
    assert result.returncode == 0, result.stderr
    assert result.stdout == TUTORIAL_LISTING


@pytest.mark.parametrize("executor", ["cpu", "ipu-model"])
def test_client_predicts_the_ten_digits(executor):
    result = run("examples/mnist/client.py", "examples/mnist/img", "--executor", executor)
    assert result.returncode == 0, result.stderr
    assert result.stdout == EXPECTED_CLIENT


def test_client_reports_a_missing_model_as_one_line(tmp_path):
    result = run("examples/mnist/client.py", "--model", str(tmp_path / "nope.popef"))
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1


def test_committed_model_reaches_97_percent_held_out():
    result = run("examples/mnist/evaluate.py")
    assert result.returncode == 0, result.stderr
    percent = float(result.stdout.split(":")[1].split("%")[0])
    assert percent >= 97.0, result.stdout


def _stored_params() -> dict[str, np.ndarray]:
    reader = popef.Reader()
    reader.parse_file(MODEL)
    [model] = reader.models()
    return {t.name: t.data() for t in model.tensors if not t.name.startswith("normalise.")}


def _held_out_images(count: int = 64):
    """The example's module (loaded from its file) and its first held-out images."""
    spec = importlib.util.spec_from_file_location("mnist_example", EXAMPLE / "mnist.py")
    mnist = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mnist)
    return mnist, mnist.load_split()[2][:count]


def test_model_agrees_with_an_independent_numpy_forward_pass():
    from popef.runtime import ModelRunner

    mnist, images = _held_out_images()
    expected = mnist.forward(_stored_params(), images)
    with ModelRunner(MODEL) as runner:
        got = runner.execute({"input": images})["softmax/Softmax:0"]
    np.testing.assert_allclose(got.reshape(expected.shape), expected, rtol=1e-4, atol=1e-6)


def test_model_agrees_with_pytorch():
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    from popef.runtime import ModelRunner

    _, images = _held_out_images()
    p = {k: torch.from_numpy(np.array(v)) for k, v in _stored_params().items()}
    with torch.no_grad():
        h = (torch.from_numpy(images) - 0.1307) / 0.3081
        h = F.relu(F.max_pool2d(F.conv2d(h, p["conv1.weight"], p["conv1.bias"]), 2))
        h = F.relu(F.max_pool2d(F.conv2d(h, p["conv2.weight"], p["conv2.bias"]), 2))
        h = F.relu(F.linear(h.flatten(1), p["fc1.weight"], p["fc1.bias"]))
        expected = F.softmax(F.linear(h, p["fc2.weight"], p["fc2.bias"]), dim=-1).numpy()
    with ModelRunner(MODEL) as runner:
        got = runner.execute({"input": images})["softmax/Softmax:0"]
    np.testing.assert_allclose(got.reshape(expected.shape), expected, rtol=1e-4, atol=1e-6)
