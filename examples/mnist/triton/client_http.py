"""The same client over HTTP/REST: ``tritonclient.http`` (binary tensors by default).

    python client_http.py [IMG_DIR] [--url localhost:8000] [--model mnist] [--batch] [--json]

Prints ``Predicted digit for file "0.png": 0`` for every image of IMG_DIR (default ``../img``).
``--json`` sends and receives the tensors as JSON instead of the binary extension.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import tritonclient.http as httpclient
from client import HERE, image_files, read_digit
from tritonclient.utils import InferenceServerException


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Classify digit images over HTTP.")
    parser.add_argument(
        "images",
        nargs="?",
        type=Path,
        default=HERE.parent / "img",
        help="folder of digit images (default: ../img)",
    )
    parser.add_argument("--url", default="localhost:8000", help="HTTP address of the server")
    parser.add_argument("--model", default="mnist", help="model name in the repository")
    parser.add_argument(
        "--batch",
        action="store_true",
        help="send all the images in one request instead of one per image",
    )
    parser.add_argument(
        "--json", action="store_true", help="JSON tensors instead of the binary tensor extension"
    )
    args = parser.parse_args(argv)

    files = image_files(args.images)
    if not files:
        print(f"error: no images in '{args.images}'", file=sys.stderr)
        return 1
    client = httpclient.InferenceServerClient(url=args.url)
    try:
        if not client.is_server_live():
            print(f"error: the server at {args.url} is not live", file=sys.stderr)
            return 1
        groups = [files] if args.batch else [[f] for f in files]
        for group in groups:
            batch = np.stack([read_digit(f) for f in group])  # [N, 1, 28, 28]
            digit_image = httpclient.InferInput("digit_image", list(batch.shape), "FP32")
            digit_image.set_data_from_numpy(batch, binary_data=not args.json)
            output = httpclient.InferRequestedOutput("output_labels", binary_data=not args.json)
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
