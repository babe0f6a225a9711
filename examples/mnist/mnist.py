"""Shared pieces of the MNIST example: the data, its split, the network and its export.

The network is the one of Graphcore's MNIST tutorial::

    Conv 1→32 3×3, MaxPool 2, ReLU
    Conv 32→64 3×3, MaxPool 2, ReLU
    Flatten (64·5·5 = 1600)
    Linear 1600→128, ReLU, Dropout 0.5
    Linear 128→10, Softmax

It takes pixels in [0, 1] and normalises them itself with MNIST's mean and standard deviation.
Parameters are a ``dict`` of float32 arrays in PyTorch's layout (``Linear`` weights are
``(out, in)``, convolution weights ``(out, in, kh, kw)``, flattening is in (C, H, W) order).

``forward`` is a plain numpy inference pass written for clarity, not speed; the trainer in
``train.py`` has its own (im2col, channels-last) implementation, and the tests check one
against the other, against PyTorch and against the exported PopEF model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DATA_PATH = HERE / "data" / "mnist_5k.npz"
IMG_DIR = HERE / "img"

MEAN = 0.1307
STD = 0.3081
NUM_CLASSES = 10
PER_CLASS = 500  # images per class in mnist_5k.npz
TRAIN_PER_CLASS = 400  # the first 400 of each class are training data, the rest held out

INPUT_NAME = "input"
OUTPUT_NAME = "softmax/Softmax:0"
INPUT_SHAPE = (1, 1, 28, 28)

PARAM_SHAPES: dict[str, tuple[int, ...]] = {
    "conv1.weight": (32, 1, 3, 3),
    "conv1.bias": (32,),
    "conv2.weight": (64, 32, 3, 3),
    "conv2.bias": (64,),
    "fc1.weight": (128, 1600),
    "fc1.bias": (128,),
    "fc2.weight": (10, 128),
    "fc2.bias": (10,),
}


# ----------------------------------------------------------------------------------- data


def load_raw(path: str | Path = DATA_PATH) -> tuple[np.ndarray, np.ndarray]:
    """The whole data file: ``x`` (5000, 28, 28) uint8 and ``y`` (5000,) uint8."""
    with np.load(path) as data:
        return data["x"], data["y"]


def held_out_mask(n: int = NUM_CLASSES * PER_CLASS) -> np.ndarray:
    """Boolean mask over the rows: row ``i`` is held out when ``i % 500 >= 400``."""
    return np.arange(n) % PER_CLASS >= TRAIN_PER_CLASS


def to_input(pixels: np.ndarray) -> np.ndarray:
    """uint8 images (N, 28, 28) → float32 model input (N, 1, 28, 28) in [0, 1]."""
    pixels = np.asarray(pixels)
    return (pixels.astype(np.float32) / np.float32(255.0)).reshape(-1, 1, 28, 28)


def load_split(
    path: str | Path = DATA_PATH,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, y_train, x_held_out, y_held_out)``.

    Images are float32 (N, 1, 28, 28) in [0, 1], labels int64 (N,). 4,000 training and 1,000
    held-out images, in the file's order (sorted by class).
    """
    x, y = load_raw(path)
    held = held_out_mask(len(y))
    labels = y.astype(np.int64)
    return to_input(x[~held]), labels[~held], to_input(x[held]), labels[held]


def image_row(digit: int) -> int:
    """The data row of ``img/<digit>.png``: the first held-out image of that class."""
    return PER_CLASS * digit + TRAIN_PER_CLASS


# -------------------------------------------------------------------------------- network


def init_params(seed: int = 0) -> dict[str, np.ndarray]:
    """Fresh float32 parameters, initialised like PyTorch's defaults.

    PyTorch's ``Conv2d`` and ``Linear`` draw weights and biases from U(-1/√fan_in, 1/√fan_in)
    (Kaiming-uniform with a = √5 for the weights works out to the same bound).
    """
    rng = np.random.default_rng(seed)
    params: dict[str, np.ndarray] = {}
    for layer in ("conv1", "conv2", "fc1", "fc2"):
        w_shape = PARAM_SHAPES[f"{layer}.weight"]
        fan_in = int(np.prod(w_shape[1:]))
        bound = 1.0 / np.sqrt(fan_in)
        params[f"{layer}.weight"] = rng.uniform(-bound, bound, w_shape).astype(np.float32)
        params[f"{layer}.bias"] = rng.uniform(-bound, bound, w_shape[:1]).astype(np.float32)
    return params


def check_params(params: dict[str, np.ndarray]) -> None:
    """Raise ``ValueError`` unless ``params`` has exactly the expected names and shapes."""
    if set(params) != set(PARAM_SHAPES):
        raise ValueError(f"parameter names {sorted(params)} != {sorted(PARAM_SHAPES)}")
    for name, shape in PARAM_SHAPES.items():
        if tuple(np.shape(params[name])) != shape:
            raise ValueError(f"{name} has shape {np.shape(params[name])}, expected {shape}")


def _conv2d(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Valid (no padding), stride-1 cross-correlation, NCHW × OIHW → NCHW."""
    kh, kw = w.shape[2:]
    windows = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))
    # windows: (N, C, H', W', kh, kw)
    return np.einsum("nchwij,ocij->nohw", windows, w, optimize=True) + b[None, :, None, None]


def _max_pool2(x: np.ndarray) -> np.ndarray:
    """2×2 max pooling, stride 2, dropping an odd last row/column (floor mode)."""
    n, c, h, w = x.shape
    h2, w2 = h // 2, w // 2
    return x[:, :, : 2 * h2, : 2 * w2].reshape(n, c, h2, 2, w2, 2).max(axis=(3, 5))


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def forward(params: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """Inference: pixels in [0, 1], shape (N, 1, 28, 28) or (N, 28, 28) → probabilities (N, 10).

    Dropout is the identity at inference. The computation runs in the dtype that numpy
    promotes the inputs and parameters to (float32 for float32 ones).
    """
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[:, None]
    if x.shape[1:] != (1, 28, 28):
        raise ValueError(f"expected images of shape (N, 1, 28, 28), got {x.shape}")
    dtype = np.result_type(x.dtype, *(np.asarray(v).dtype for v in params.values()))
    p = {k: np.asarray(v, dtype=dtype) for k, v in params.items()}
    h = (x.astype(dtype) - dtype.type(MEAN)) / dtype.type(STD)
    h = _relu(_max_pool2(_conv2d(h, p["conv1.weight"], p["conv1.bias"])))  # (N, 32, 13, 13)
    h = _relu(_max_pool2(_conv2d(h, p["conv2.weight"], p["conv2.bias"])))  # (N, 64, 5, 5)
    h = h.reshape(len(h), -1)  # (N, 1600), (C, H, W) order
    h = _relu(h @ p["fc1.weight"].T + p["fc1.bias"])
    logits = h @ p["fc2.weight"].T + p["fc2.bias"]
    return _softmax(logits)


def predict(params: dict[str, np.ndarray], x: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """Predicted classes (N,) for images (N, 1, 28, 28), in batches."""
    out = [
        forward(params, x[i : i + batch_size]).argmax(axis=1) for i in range(0, len(x), batch_size)
    ]
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def accuracy(params: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> float:
    """Fraction of ``x`` that ``params`` classifies as ``y``."""
    return float(np.mean(predict(params, x) == y))


# ------------------------------------------------------------------------------ parameters


def save_params(params: dict[str, np.ndarray], path: str | Path) -> None:
    """Save parameters with ``np.savez`` (names as keys)."""
    np.savez(path, **{k: np.asarray(v, dtype=np.float32) for k, v in params.items()})


def load_params(path: str | Path) -> dict[str, np.ndarray]:
    """Load parameters saved by :func:`save_params`."""
    with np.load(path) as data:
        params = {k: data[k].astype(np.float32) for k in data.files}
    check_params(params)
    return params


# ---------------------------------------------------------------------------------- export


def build_graph(params: dict[str, np.ndarray]):
    """The inference graph as a ``popef.runtime.GraphBuilder`` (ONNX operators).

    Anchors: input ``input`` F32 [1, 1, 28, 28] in [0, 1]; output ``softmax/Softmax:0`` F32
    [1, 10]. Dropout is left out (it is the identity at inference).
    """
    from popef import DataType
    from popef.runtime import GraphBuilder

    check_params(params)
    p = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in params.items()}
    g = GraphBuilder()
    x = g.add_input(INPUT_NAME, DataType.F32, INPUT_SHAPE)
    mean = g.add_weight("normalise.mean", np.array([MEAN], dtype=np.float32))
    std = g.add_weight("normalise.std", np.array([STD], dtype=np.float32))
    h = g.add_node("Sub", [x, mean])
    h = g.add_node("Div", [h, std])
    for layer in ("conv1", "conv2"):
        w = g.add_weight(f"{layer}.weight", p[f"{layer}.weight"])
        b = g.add_weight(f"{layer}.bias", p[f"{layer}.bias"])
        h = g.add_node("Conv", [h, w, b], kernel_shape=[3, 3])
        h = g.add_node("MaxPool", [h], kernel_shape=[2, 2], strides=[2, 2])
        h = g.add_node("Relu", [h])
    h = g.add_node("Flatten", [h], axis=1)
    w = g.add_weight("fc1.weight", p["fc1.weight"])
    b = g.add_weight("fc1.bias", p["fc1.bias"])
    h = g.add_node("Gemm", [h, w, b], transB=1)
    h = g.add_node("Relu", [h])
    w = g.add_weight("fc2.weight", p["fc2.weight"])
    b = g.add_weight("fc2.bias", p["fc2.bias"])
    h = g.add_node("Gemm", [h, w, b], transB=1)
    h = g.add_node("Softmax", [h], axis=-1)
    g.add_output(h, OUTPUT_NAME)
    return g


def export_popef(params: dict[str, np.ndarray], path: str | Path) -> Path:
    """Build the inference graph for ``params`` and save it as a PopEF file at ``path``."""
    path = Path(path)
    build_graph(params).save(path, executable_name="mnist")
    return path
