"""Classify digit images with the MNIST model served by ``popef serve`` — over gRPC.

This is the client of Graphcore's blog post "Getting started with the Poplar Triton backend":
it uses nothing but the stock ``tritonclient`` package (plus numpy and Pillow to read the
images), so it works unchanged against NVIDIA's ``tritonserver`` with the Poplar backend.

    python client.py [IMG_DIR] [--url localhost:8001] [--model mnist] [--batch]

For every image of IMG_DIR (default ``../img``), in file-name order, it prints::

    Predicted digit for file "0.png": 0
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
from PIL import Image
from tritonclient.utils import InferenceServerException

HERE = Path(__file__).resolve().parent
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".pgm", ".bmp"}


def read_digit(path: Path) -> np.ndarray:
    """A 28×28 greyscale image as the model's input row: float32 [1, 28, 28] in [0, 1]."""
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("L").resize((28, 28)), dtype=np.float32)
    return (pixels / 255.0).reshape(1, 28, 28)


def image_files(folder: Path) -> list[Path]:
    def key(path: Path):
        return (0, int(path.stem), "") if path.stem.isdigit() else (1, 0, path.name)

    return sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=key)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Classify digit images over gRPC.")
    parser.add_argument(
        "images",
        nargs="?",
        type=Path,
        default=HERE.parent / "img",
        help="folder of digit images (default: ../img)",
    )
    parser.add_argument("--url", default="localhost:8001", help="gRPC address of the server")
    parser.add_argument("--model", default="mnist", help="model name in the repository")
    parser.add_argument(
        "--batch",
        action="store_true",
        help="send all the images in one request instead of one per image",
    )
    args = parser.parse_args(argv)

    files = image_files(args.images)
    if not files:
        print(f"error: no images in '{args.images}'", file=sys.stderr)
        return 1
    client = grpcclient.InferenceServerClient(url=args.url)
    try:
        if not client.is_server_live():
            print(f"error: the server at {args.url} is not live", file=sys.stderr)
            return 1
        groups = [files] if args.batch else [[f] for f in files]
        for group in groups:
            batch = np.stack([read_digit(f) for f in group])  # [N, 1, 28, 28]
            digit_image = grpcclient.InferInput("digit_image", list(batch.shape), "FP32")
            digit_image.set_data_from_numpy(batch)
            output = grpcclient.InferRequestedOutput("output_labels")
            result = client.infer(model_name=args.model, inputs=[digit_image], outputs=[output])
            probabilities = result.as_numpy("output_labels")  # [N, 10]
            for path, row in zip(group, probabilities):
                print(f'Predicted digit for file "{path.name}": {int(np.argmax(row))}')
    except InferenceServerException as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
