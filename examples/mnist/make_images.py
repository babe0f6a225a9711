"""Regenerate ``img/0.png`` … ``img/9.png`` from the data.

For each digit d the image is data row ``500·d + 400``, the first held-out image of that
class, saved as a 28×28 8-bit greyscale PNG holding exactly the raw uint8 pixels.

    python make_images.py [--output DIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import mnist  # noqa: E402


def make_images(output: str | Path = mnist.IMG_DIR) -> list[Path]:
    from PIL import Image

    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    x, y = mnist.load_raw()
    paths = []
    for digit in range(mnist.NUM_CLASSES):
        row = mnist.image_row(digit)
        assert int(y[row]) == digit, (row, y[row])
        path = output / f"{digit}.png"
        Image.fromarray(np.ascontiguousarray(x[row], dtype=np.uint8)).save(path, optimize=True)
        paths.append(path)
    return paths


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Write img/<digit>.png from the MNIST data.")
    p.add_argument("--output", type=Path, default=mnist.IMG_DIR, help="folder (default: img/)")
    args = p.parse_args(argv)
    for path in make_images(args.output):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
