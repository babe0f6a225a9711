"""examples/mnist/mnist_torch.py end to end: train briefly with PyTorch, save with the blog's
line, and the saved file runs under ``popef run`` and classifies the images with client.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from popef.cli import main

pytest.importorskip("torch")
pytest.importorskip("onnx")

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "mnist"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, check=False, timeout=600
    )


def test_trains_saves_and_classifies(tmp_path):
    # 1,500 images for one epoch: a few seconds, and ~85% held-out accuracy
    saved = tmp_path / "executable.popef"
    result = run(
        str(EXAMPLE / "mnist_torch.py"), "--epochs", "1", "--limit", "1500", "--output", str(saved)
    )
    assert result.returncode == 0, result.stderr
    accuracy = float(result.stdout.split("held-out accuracy (PyTorch):")[1].split()[0])
    assert accuracy >= 0.7, result.stdout
    assert f"saved {saved}" in result.stdout

    sys.path.insert(0, str(EXAMPLE))
    try:
        import mnist
    finally:
        sys.path.remove(str(EXAMPLE))
    pixels, _ = mnist.load_raw()
    images = mnist.to_input(pixels[[mnist.image_row(d) for d in range(10)]])
    np.save(tmp_path / "images.npy", images)
    result = CliRunner().invoke(main, ["run", str(saved), "-i", f"input={tmp_path / 'images.npy'}"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("output: F32[10, 10]"), result.output

    result = run(str(EXAMPLE / "client.py"), str(EXAMPLE / "img"), "--model", str(saved))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split('"')[1] for line in lines] == [f"{d}.png" for d in range(10)]
    correct = sum(line.endswith(f": {d}") for d, line in enumerate(lines))
    assert correct >= 6, result.stdout


def test_refuses_a_bad_limit(tmp_path):
    result = run(
        str(EXAMPLE / "mnist_torch.py"), "--limit", "0", "--output", str(tmp_path / "x.popef")
    )
    assert result.returncode == 2 and "--limit" in result.stderr
    assert not (tmp_path / "x.popef").exists()
