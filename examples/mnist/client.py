"""Classify digit images with the MNIST model, as in Graphcore's tutorial.

    python client.py [IMG_DIR] [--model PATH] [--executor NAME]

Reads every image in IMG_DIR (default: img/ next to this script), runs the model through
``popef.runtime.ModelRunner`` and prints, in file-name order:

    Predicted digit for file "0.png": 0
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".pgm", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def predict(image_dir: Path, model: Path, executor: str = "cpu") -> list[tuple[str, int]]:
    """(file name, predicted digit) for every image of a folder, in name order."""
    from popef.runtime import ModelRunner
    from popef.runtime.inputs import image_to_array, load_image

    files = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SystemExit(f"error: no images in '{image_dir}'")
    with ModelRunner(model, executor=executor) as runner:
        [source] = runner.get_execute_inputs()
        [result] = runner.get_execute_outputs()
        images = [
            image_to_array(load_image(f), source.shape, source.dtype, source.name) for f in files
        ]
        # one call for all images: n steps of the model's batch, stacked on the leading axis
        probabilities = runner.execute({source.name: np.concatenate(images)})[result.name]
    digits = probabilities.reshape(len(files), -1).argmax(axis=1)
    return [(f.name, int(d)) for f, d in zip(files, digits)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "image_dir",
        nargs="?",
        type=Path,
        default=HERE / "img",
        help="folder of digit images (default: img/ next to this script)",
    )
    parser.add_argument(
        "--model",
        type=Path,
        default=HERE / "executable.popef",
        help="the PopEF model (default: executable.popef next to this script)",
    )
    parser.add_argument("--executor", default="cpu", help="executor to run on (default: cpu)")
    args = parser.parse_args(argv)
    from popef import PopefError

    try:
        for name, digit in predict(args.image_dir, args.model, args.executor):
            print(f'Predicted digit for file "{name}": {digit}')
    except (PopefError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
