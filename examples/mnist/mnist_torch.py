"""The MNIST tutorial the PyTorch way: train with PyTorch, save with one line, classify.

    python mnist_torch.py                 # 3 epochs, ~1 minute on 2 cores
    python mnist_torch.py --epochs 1 --output torch_executable.popef
    python mnist_torch.py --epochs 1 --limit 256 --output quick.popef   # a smoke run

The network is the tutorial's (``mnist.py``), written as a ``torch.nn.Module``; it is trained
on the example's data (``data/mnist_5k.npz``), then handed to ``popef.torch.inferenceModel``,
which runs it on the PopEF runtime, and saved with the blog's line::

    inference_model.save("executable.popef")

The file is written to ``--output`` (default ``torch_executable.popef``, so the committed
``executable.popef`` made by ``train.py`` is not overwritten). Finally the ten images of
``img/`` are classified by the saved file with ``client.py``'s code, one image a step.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# this folder's triton/ (the Triton model repository) would shadow the triton package torch
# probes for: keep the folder off the import path and load mnist.py by its path
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]

import numpy as np
import torch
from torch import nn

import popef.torch
from popef.runtime import ModelRunner


def _load_sibling(name: str):
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


mnist = _load_sibling("mnist")
client = _load_sibling("client")


class Network(nn.Module):
    """Conv 1→32, MaxPool, ReLU; Conv 32→64, MaxPool, ReLU; Linear 1600→128, ReLU, Dropout;
    Linear 128→10, Softmax. Takes pixels in [0, 1]."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.fc1 = nn.Linear(1600, 128)
        self.fc2 = nn.Linear(128, 10)
        self.dropout = nn.Dropout(0.5)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - mnist.MEAN) / mnist.STD
        x = torch.relu(nn.functional.max_pool2d(self.conv1(x), 2))
        x = torch.relu(nn.functional.max_pool2d(self.conv2(x), 2))
        x = self.dropout(torch.relu(self.fc1(torch.flatten(x, 1))))
        return self.fc2(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(x), dim=-1)


def train(
    model: Network, epochs: int, batch_size: int = 32, seed: int = 0, limit: int | None = None
) -> float:
    """Adam on the 4,000 training images (``limit`` of them drawn at random when given);
    returns the held-out accuracy."""
    torch.manual_seed(seed)
    x_train, y_train, x_held, y_held = mnist.load_split()
    x, y = torch.from_numpy(x_train), torch.from_numpy(y_train)
    if limit is not None:  # the file is sorted by class: draw, do not take the first rows
        rows = torch.randperm(len(x))[:limit]
        x, y = x[rows], y[rows]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(x))
        for start in range(0, len(x), batch_size):
            rows = order[start : start + batch_size]
            loss = nn.functional.cross_entropy(model.logits(x[rows]), y[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        print(f"epoch {epoch + 1}/{epochs}: loss {loss.item():.3f}")
    model.eval()
    with torch.no_grad():
        predicted = model(torch.from_numpy(x_held)).argmax(-1).numpy()
    return float((predicted == y_held).mean())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="training epochs (default: 3)")
    parser.add_argument(
        "--limit",
        type=int,
        default=None,
        metavar="N",
        help="train on N of the 4,000 training images, drawn at random (default: all)",
    )
    parser.add_argument(
        "--output",
        default=str(HERE / "torch_executable.popef"),
        help="where to save the PopEF file (default: torch_executable.popef)",
    )
    args = parser.parse_args(argv)
    if args.epochs < 0 or (args.limit is not None and args.limit < 1):
        parser.error("--epochs must be >= 0 and --limit >= 1")

    model = Network()
    accuracy = train(model, args.epochs, limit=args.limit)
    print(f"held-out accuracy (PyTorch): {accuracy:.3f}")

    x, _ = mnist.load_raw()
    images = torch.from_numpy(mnist.to_input(x[[mnist.image_row(d) for d in range(10)]]))
    inference_model = popef.torch.inferenceModel(model)
    # one image a call, as the tutorial's client sends them: the first call exports the model
    # for a batch of 1 and the saved file takes single images, like train.py's
    probabilities = torch.cat([inference_model(image[None]) for image in images])
    inference_model.save(args.output)  # the blog's inference_model.save("executable.popef")
    print(f"saved {args.output}")

    # the saved file, as the client (and a server) runs it: the ten images as ten steps
    for file_name, digit in client.predict(HERE / "img", Path(args.output)):
        print(f'Predicted digit for file "{file_name}": {digit}')
    with ModelRunner(args.output) as runner:
        [name] = [d.name for d in runner.get_execute_outputs()]
        saved = runner.execute({"input": images.numpy()})[name]
    assert np.allclose(saved, probabilities.numpy(), atol=1e-6), "the saved file disagrees"
    return 0


if __name__ == "__main__":
    sys.exit(main())
