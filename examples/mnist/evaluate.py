"""Held-out accuracy of a saved MNIST model, by batch inference through ModelRunner.

    python evaluate.py [--model PATH] [--executor NAME] [--batch N]

The held-out rows are the last 100 of each class in data/mnist_5k.npz (1,000 images).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import mnist
import numpy as np


def held_out_accuracy(model: Path, executor: str = "cpu", batch: int = 250) -> float:
    """Fraction of the held-out images the model classifies correctly."""
    from popef.runtime import ModelRunner

    _, _, images, labels = mnist.load_split()
    correct = 0
    with ModelRunner(model, executor=executor) as runner:
        [source] = runner.get_execute_inputs()
        [result] = runner.get_execute_outputs()
        for start in range(0, len(images), batch):
            chunk = images[start : start + batch].astype(source.numpy_dtype)
            probabilities = runner.execute({source.name: chunk})[result.name]
            predicted = probabilities.reshape(len(chunk), -1).argmax(axis=1)
            correct += int(np.sum(predicted == labels[start : start + batch]))
    return correct / len(images)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model",
        type=Path,
        default=mnist.HERE / "executable.popef",
        help="the PopEF model (default: executable.popef next to this script)",
    )
    parser.add_argument("--executor", default="cpu", help="executor to run on (default: cpu)")
    parser.add_argument("--batch", type=int, default=250, help="images per call (default: 250)")
    args = parser.parse_args(argv)
    from popef import PopefError

    try:
        accuracy = held_out_accuracy(args.model, args.executor, args.batch)
    except (PopefError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"Held-out accuracy: {100 * accuracy:.2f}% (1000 images)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
