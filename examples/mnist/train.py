"""Train the MNIST example's CNN with numpy alone and export it as a PopEF file.

    python train.py                       # ~2–4 minutes on 2 cores, writes trained.popef
    python train.py --output executable.popef   # replaces the committed model
    python train.py --epochs 1 --limit 800 --no-export --save-params params.npz

Everything is float32 numpy: convolutions are im2col + BLAS matrix products on channels-last
activations, the backward pass is written out by hand, the loss is softmax cross-entropy,
training uses Dropout 0.5, random shifts of up to ±2 pixels and Adam with a learning rate
that decays exponentially per epoch. A run is reproducible for a given ``--seed`` (on a given
machine and BLAS build).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import glob
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import mnist  # noqa: E402

DEFAULT_EPOCHS = 40
DEFAULT_BATCH_SIZE = 32
DEFAULT_LR = 1e-3
DEFAULT_LR_DECAY = 0.93
DEFAULT_SHIFT = 2
DROPOUT = 0.5

Params = dict[str, np.ndarray]


# ----------------------------------------------------------------------------- BLAS threads


def _openblas():
    """The OpenBLAS library that numpy's wheel bundles, or None (other builds)."""
    libs = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
    for path in sorted(glob.glob(os.path.join(libs, "libscipy_openblas*"))):
        try:
            lib = ctypes.CDLL(path)
            get = lib.scipy_openblas_get_num_threads64_
            set_ = lib.scipy_openblas_set_num_threads64_
        except (OSError, AttributeError):
            continue
        get.restype, set_.argtypes = ctypes.c_int, [ctypes.c_int]
        return get, set_
    return None


@contextlib.contextmanager
def blas_threads(n: int | None):
    """Run the block with ``n`` OpenBLAS threads (best effort; ``None`` or 0: unchanged).

    The matrices here are small: one thread is about as fast as two on an idle machine and
    several times faster on a busy one, where OpenBLAS threads wait on each other.
    """
    lib = _openblas() if n else None
    if lib is None:
        yield
        return
    get, set_ = lib
    old = get()
    set_(n)
    try:
        yield
    finally:
        set_(old)


# ------------------------------------------------------------------------ layer primitives


def _im2col(x: np.ndarray, k: int = 3) -> np.ndarray:
    """Channels-last valid k×k patches: (B, H, W, C) → (B, H-k+1, W-k+1, k·k·C), (kh, kw, c)."""
    b, h, w, c = x.shape
    ho, wo = h - k + 1, w - k + 1
    cols = np.empty((b, ho, wo, k * k * c), dtype=x.dtype)
    for i in range(k):
        for j in range(k):
            s = (i * k + j) * c
            cols[..., s : s + c] = x[:, i : i + ho, j : j + wo, :]
    return cols


def _col2im(dcols: np.ndarray, shape: tuple[int, ...], k: int = 3) -> np.ndarray:
    """Adjoint of :func:`_im2col`: scatter-add patch gradients back onto (B, H, W, C)."""
    b, h, w, c = shape
    ho, wo = h - k + 1, w - k + 1
    dx = np.zeros(shape, dtype=dcols.dtype)
    for i in range(k):
        for j in range(k):
            s = (i * k + j) * c
            dx[:, i : i + ho, j : j + wo, :] += dcols[..., s : s + c]
    return dx


def _conv_matrix(w: np.ndarray) -> np.ndarray:
    """OIHW weight → (O, kh·kw·I) matrix matching :func:`_im2col`'s (kh, kw, c) order."""
    o = w.shape[0]
    return w.transpose(0, 2, 3, 1).reshape(o, -1)


def _conv_weight_grad(dwm: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of :func:`_conv_matrix` for a gradient (O, kh·kw·I) → OIHW."""
    o, i, kh, kw = shape
    return dwm.reshape(o, kh, kw, i).transpose(0, 3, 1, 2)


def _pool_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """2×2/2 max pooling on (B, H, W, C), floor mode. Returns the output and, per output
    element, which of the four window positions won (first maximum in row-major order)."""
    h2, w2 = x.shape[1] // 2, x.shape[2] // 2
    q = [x[:, i : 2 * h2 : 2, j : 2 * w2 : 2] for i in (0, 1) for j in (0, 1)]
    out = np.maximum(np.maximum(q[0], q[1]), np.maximum(q[2], q[3]))
    which = np.full(out.shape, 3, dtype=np.uint8)
    for pos in (2, 1, 0):  # the lowest position holding the maximum wins
        which[q[pos] == out] = pos
    return out, which


def _pool_backward(dout: np.ndarray, which: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    dx = np.zeros(shape, dtype=dout.dtype)
    h2, w2 = dout.shape[1], dout.shape[2]
    for pos in range(4):
        i, j = divmod(pos, 2)
        dx[:, i : 2 * h2 : 2, j : 2 * w2 : 2] = np.where(which == pos, dout, 0)
    return dx


# ---------------------------------------------------------------------------- the network


def forward_train(
    params: Params, x: np.ndarray, drop_mask: np.ndarray | None = None
) -> tuple[np.ndarray, dict]:
    """Logits for images ``x`` (B, 1, 28, 28) in [0, 1], keeping what backprop needs.

    ``drop_mask`` (B, 128) multiplies the fc1 activations (0 or 1/(1-p) for inverted
    dropout); ``None`` is inference (no dropout). Runs in the parameters' dtype.
    """
    dt = params["conv1.weight"].dtype
    b = len(x)
    h0 = (x.reshape(b, 28, 28, 1).astype(dt, copy=False) - dt.type(mnist.MEAN)) / dt.type(mnist.STD)

    cols1 = _im2col(h0)  # (B, 26, 26, 9)
    w1 = _conv_matrix(params["conv1.weight"])
    a1 = cols1 @ w1.T + params["conv1.bias"]  # (B, 26, 26, 32)
    p1, which1 = _pool_forward(a1)  # (B, 13, 13, 32)
    h1 = np.maximum(p1, 0)

    cols2 = _im2col(h1)  # (B, 11, 11, 288)
    w2 = _conv_matrix(params["conv2.weight"])
    a2 = cols2.reshape(-1, cols2.shape[-1]) @ w2.T  # (B·121, 64)
    a2 = a2.reshape(b, 11, 11, 64) + params["conv2.bias"]
    p2, which2 = _pool_forward(a2)  # (B, 5, 5, 64)
    h2 = np.maximum(p2, 0)

    f = h2.transpose(0, 3, 1, 2).reshape(b, -1)  # (B, 1600) in PyTorch's (C, H, W) order
    z3 = f @ params["fc1.weight"].T + params["fc1.bias"]
    h3 = np.maximum(z3, 0)
    d3 = h3 if drop_mask is None else h3 * drop_mask
    logits = d3 @ params["fc2.weight"].T + params["fc2.bias"]

    cache = dict(
        cols1=cols1,
        a1_shape=a1.shape,
        which1=which1,
        p1=p1,
        h1_shape=h1.shape,
        cols2=cols2,
        a2_shape=a2.shape,
        which2=which2,
        p2=p2,
        f=f,
        z3=z3,
        d3=d3,
        drop_mask=drop_mask,
    )
    return logits, cache


def cross_entropy(logits: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean softmax cross-entropy and its gradient with respect to the logits."""
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    n = len(y)
    loss = -float(logp[np.arange(n), y].mean())
    dlogits = np.exp(logp)
    dlogits[np.arange(n), y] -= 1
    dlogits /= n
    return loss, dlogits


def backward(params: Params, cache: dict, dlogits: np.ndarray) -> Params:
    """Gradients of the loss with respect to every parameter, given d loss / d logits."""
    g: Params = {}
    b = len(dlogits)
    g["fc2.weight"] = dlogits.T @ cache["d3"]
    g["fc2.bias"] = dlogits.sum(axis=0)
    dd3 = dlogits @ params["fc2.weight"]
    dh3 = dd3 if cache["drop_mask"] is None else dd3 * cache["drop_mask"]
    dz3 = dh3 * (cache["z3"] > 0)
    g["fc1.weight"] = dz3.T @ cache["f"]
    g["fc1.bias"] = dz3.sum(axis=0)
    df = dz3 @ params["fc1.weight"]

    dh2 = df.reshape(b, 64, 5, 5).transpose(0, 2, 3, 1)
    dp2 = dh2 * (cache["p2"] > 0)
    da2 = _pool_backward(dp2, cache["which2"], cache["a2_shape"]).reshape(-1, 64)
    cols2 = cache["cols2"].reshape(da2.shape[0], -1)
    g["conv2.weight"] = _conv_weight_grad(da2.T @ cols2, params["conv2.weight"].shape)
    g["conv2.bias"] = da2.sum(axis=0)
    dcols2 = (da2 @ _conv_matrix(params["conv2.weight"])).reshape(cache["cols2"].shape)
    dh1 = _col2im(dcols2, cache["h1_shape"])

    dp1 = dh1 * (cache["p1"] > 0)
    da1 = _pool_backward(dp1, cache["which1"], cache["a1_shape"]).reshape(-1, 32)
    cols1 = cache["cols1"].reshape(da1.shape[0], -1)
    g["conv1.weight"] = _conv_weight_grad(da1.T @ cols1, params["conv1.weight"].shape)
    g["conv1.bias"] = da1.sum(axis=0)
    return g


def loss_and_grads(
    params: Params, x: np.ndarray, y: np.ndarray, drop_mask: np.ndarray | None = None
) -> tuple[float, Params, np.ndarray]:
    """``(mean cross-entropy, gradients, logits)`` for one batch."""
    logits, cache = forward_train(params, x, drop_mask)
    loss, dlogits = cross_entropy(logits, y)
    return loss, backward(params, cache, dlogits), logits


def predict_fast(params: Params, x: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """Predicted classes using the trainer's (im2col) forward pass in inference mode."""
    out = [
        forward_train(params, x[i : i + batch_size])[0].argmax(axis=1)
        for i in range(0, len(x), batch_size)
    ]
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


# ------------------------------------------------------------------------------- training


class Adam:
    def __init__(self, params: Params, lr: float, betas=(0.9, 0.999), eps: float = 1e-8):
        self.lr = lr
        self.b1, self.b2 = betas
        self.eps = eps
        self.t = 0
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}

    def step(self, params: Params, grads: Params) -> None:
        self.t += 1
        c1 = 1 - self.b1**self.t
        c2 = 1 - self.b2**self.t
        step = np.float32(self.lr * np.sqrt(c2) / c1)
        eps = np.float32(self.eps * np.sqrt(c2))
        for k, g in grads.items():
            m, v = self.m[k], self.v[k]
            m *= self.b1
            m += (1 - self.b1) * g
            v *= self.b2
            v += (1 - self.b2) * (g * g)
            params[k] -= step * m / (np.sqrt(v) + eps)


def random_shift(images: np.ndarray, max_shift: int, rng: np.random.Generator) -> np.ndarray:
    """Shift each image (B, 1, 28, 28) by up to ±``max_shift`` pixels in x and y, zero-filled."""
    if max_shift <= 0:
        return images
    b = len(images)
    m = max_shift
    padded = np.pad(images.reshape(b, 28, 28), ((0, 0), (m, m), (m, m)))
    oy = rng.integers(0, 2 * m + 1, size=b)
    ox = rng.integers(0, 2 * m + 1, size=b)
    rows = (oy[:, None] + np.arange(28))[:, :, None]
    cols = (ox[:, None] + np.arange(28))[:, None, :]
    return padded[np.arange(b)[:, None, None], rows, cols].reshape(b, 1, 28, 28)


def train(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_held: np.ndarray | None = None,
    y_held: np.ndarray | None = None,
    *,
    epochs: int = DEFAULT_EPOCHS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    lr: float = DEFAULT_LR,
    lr_decay: float = DEFAULT_LR_DECAY,
    max_shift: int = DEFAULT_SHIFT,
    seed: int = 0,
    progress: bool = True,
    log=print,
) -> tuple[Params, list[dict]]:
    """Train from :func:`mnist.init_params` (``seed``) and return ``(params, history)``.

    ``history`` has one dict per epoch: ``epoch``, ``lr``, ``loss`` (mean training loss),
    ``train_acc`` (running accuracy over the epoch's training batches, as trained: shifted,
    with dropout), ``held_acc`` (held-out accuracy, or None without held-out data) and
    ``seconds``.
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    rng = np.random.default_rng(seed)
    params = mnist.init_params(seed)
    opt = Adam(params, lr)
    n = len(x_train)
    steps = (n + batch_size - 1) // batch_size
    history: list[dict] = []
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, disable=not progress, transient=False) as bar:
        task = bar.add_task("training", total=epochs * steps, loss=float("nan"))
        for epoch in range(1, epochs + 1):
            t0 = time.perf_counter()
            opt.lr = lr * lr_decay ** (epoch - 1)
            order = rng.permutation(n)
            total_loss = 0.0
            correct = 0
            for s in range(steps):
                idx = order[s * batch_size : (s + 1) * batch_size]
                xb = random_shift(x_train[idx], max_shift, rng)
                keep = rng.random((len(idx), 128), dtype=np.float32) >= DROPOUT
                mask = keep.astype(np.float32) / np.float32(1 - DROPOUT)
                loss, grads, logits = loss_and_grads(params, xb, y_train[idx], mask)
                opt.step(params, grads)
                total_loss += loss * len(idx)
                correct += int(np.sum(logits.argmax(axis=1) == y_train[idx]))
                bar.update(task, advance=1, loss=loss, description=f"epoch {epoch}/{epochs}")
            train_acc = correct / n
            held_acc = None
            if x_held is not None and len(x_held):
                held_acc = float(np.mean(predict_fast(params, x_held) == y_held))
            rec = dict(
                epoch=epoch,
                lr=opt.lr,
                loss=total_loss / n,
                train_acc=train_acc,
                held_acc=held_acc,
                seconds=time.perf_counter() - t0,
            )
            history.append(rec)
            line = (
                f"epoch {epoch:2d}/{epochs}  lr {rec['lr']:.2e}  loss {rec['loss']:.4f}  "
                f"train acc {100 * train_acc:6.2f}%"
            )
            if held_acc is not None:
                line += f"  held-out acc {100 * held_acc:6.2f}%"
            line += f"  ({rec['seconds']:.1f} s)"
            if progress:
                bar.console.print(line, soft_wrap=True, highlight=False)
            else:
                log(line)
    return params, history


# ------------------------------------------------------------------------------------ CLI


def limit_rows(y: np.ndarray, n: int | None) -> np.ndarray:
    """Indices of the "first ``n``" training rows for ``--limit``.

    The data is sorted by class, so the rows are taken in class-interleaved order: the first
    row of each class, then the second of each class, and so on (row order kept within a
    class). ``n=None`` keeps every row, in the original order.
    """
    if n is None:
        return np.arange(len(y))
    rank = np.empty(len(y), dtype=np.int64)
    for c in np.unique(y):
        where = np.flatnonzero(y == c)
        rank[where] = np.arange(len(where))
    order = np.lexsort((y, rank))  # by rank within class, then by class
    return np.sort(order[: max(n, 0)])


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--epochs",
        type=int,
        default=DEFAULT_EPOCHS,
        help=f"training epochs (default {DEFAULT_EPOCHS})",
    )
    p.add_argument(
        "--limit",
        type=int,
        default=None,
        metavar="N",
        help="train on the first N training rows only, taken in "
        "class-interleaved order (quick runs)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        help=f"mini-batch size (default {DEFAULT_BATCH_SIZE})",
    )
    p.add_argument(
        "--lr",
        type=float,
        default=DEFAULT_LR,
        help=f"initial Adam learning rate (default {DEFAULT_LR})",
    )
    p.add_argument(
        "--lr-decay",
        type=float,
        default=DEFAULT_LR_DECAY,
        help=f"learning rate factor per epoch (default {DEFAULT_LR_DECAY})",
    )
    p.add_argument(
        "--shift",
        type=int,
        default=DEFAULT_SHIFT,
        help=f"random shift of training images, ± pixels (default {DEFAULT_SHIFT})",
    )
    p.add_argument(
        "--output",
        type=Path,
        default=Path("trained.popef"),
        help="PopEF file to write (default: trained.popef in the current folder; "
        "the committed model, executable.popef next to this script, is "
        "replaced only when named here)",
    )
    p.add_argument(
        "--save-params",
        type=Path,
        default=None,
        metavar="PATH",
        help="also save the trained parameters with np.savez",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="OpenBLAS threads while training (default 1; 0: leave as it is)",
    )
    p.add_argument("--no-export", action="store_true", help="do not write the PopEF file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--data", type=Path, default=mnist.DATA_PATH, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for name in ("epochs", "batch_size", "limit"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    x_train, y_train, x_held, y_held = mnist.load_split(args.data)
    keep = limit_rows(y_train, args.limit)
    x_train, y_train = x_train[keep], y_train[keep]
    print(
        f"training on {len(x_train)} images, {len(x_held)} held out; "
        f"{args.epochs} epochs, seed {args.seed}",
        flush=True,
    )
    t0 = time.perf_counter()
    with blas_threads(args.threads):
        params, history = train(
            x_train,
            y_train,
            x_held,
            y_held,
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            lr_decay=args.lr_decay,
            max_shift=args.shift,
            seed=args.seed,
            progress=not args.no_progress,
        )
    elapsed = time.perf_counter() - t0
    final = history[-1]["held_acc"] if history else None
    if final is not None:
        print(f"final held-out accuracy {100 * final:.2f}% after {elapsed:.1f} s", flush=True)
    if args.save_params is not None:
        mnist.save_params(params, args.save_params)
        print(f"saved parameters to {args.save_params}", flush=True)
    if not args.no_export:
        path = mnist.export_popef(params, args.output)
        print(f"saved the model to {path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
