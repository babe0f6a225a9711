"""Benchmark of the runtime's ``cpu`` executor on the MNIST network, against peers.

Builds the network of the MNIST example with random weights::

    Conv 1→32 3×3, MaxPool 2, Relu; Conv 32→64 3×3, MaxPool 2, Relu; Flatten;
    Gemm 1600→128, Relu; Gemm 128→10; Softmax

saves it as a PopEF file (anchor batch 1) and measures, on the same inputs and in the same run,
the time per sample at batch 1 and batch 64 of:

- ``ModelRunner(..., "cpu").execute`` (a batch of 64 is 64 steps, folded into one batch);
- onnxruntime on the same network exported to ONNX (skipped when not installed);
- PyTorch eager (``torch.no_grad``) on the same weights (skipped when not installed);
- a hand-written forward pass calling the same op kernels directly, which measures the
  interpreter's own overhead.

Targets: batch 64 ≤ 1.5× onnxruntime and batch 1 ≤ 2× onnxruntime (issue 13, one thread each
and with default threads); batch-1 latency ≤ PyTorch eager; the interpreter ≤ 1.2× the
hand-written forward. Prints the times and the ratios.

    python benchmarks/bench_runtime.py [--threads N] [--repeat R]

``--threads`` (default 1) sets the threads of every engine alike (BLAS, onnxruntime's intra-op
pool, PyTorch), before numpy is imported; ``--threads 0`` leaves each engine its default (all
cores). One thread is the default because benchmarks run on
shared machines, where spinning BLAS threads of several engines fight for the same cores.
Each engine's calls are interleaved with the others'; the ratios use the best time of each.
With more than one thread, each engine's turn starts ``SETTLE_SECONDS`` after the previous
engine's last call: onnxruntime's and PyTorch's thread pools spin on the cores for a while
after a call, and would otherwise take the cores from whichever engine is timed next.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time


def _set_threads(threads: int) -> None:
    if threads == 0:  # every engine's own default
        return
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="threads per engine (default 1; 0: each engine's default)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=60,
        help="rounds of turns: with one thread a call at batch 64 and ten times as many "
        "rounds at batch 1; with more, 3 calls at batch 64 and 10 at batch 1 (default 60)",
    )
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


ARGS = _args() if __name__ == "__main__" else None
if ARGS is not None:
    _set_threads(ARGS.threads)

import numpy as np

from popef import DataType
from popef.runtime import GraphBuilder, ModelRunner
from popef.runtime.ops import TensorSpec, create_op

SHAPES = {
    "conv1.weight": (32, 1, 3, 3), "conv1.bias": (32,),
    "conv2.weight": (64, 32, 3, 3), "conv2.bias": (64,),
    "fc1.weight": (128, 1600), "fc1.bias": (128,),
    "fc2.weight": (10, 128), "fc2.bias": (10,),
}  # fmt: skip


def random_params(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    params = {}
    for name, shape in SHAPES.items():
        fan_in = int(np.prod(SHAPES[name.replace("bias", "weight")][1:]))
        bound = 1 / np.sqrt(fan_in)
        params[name] = rng.uniform(-bound, bound, shape).astype(np.float32)
    return params


def build(params: dict[str, np.ndarray]) -> GraphBuilder:
    g = GraphBuilder()
    h = g.add_input("input", DataType.F32, (1, 1, 28, 28))
    for layer in ("conv1", "conv2"):
        h = g.add_node(
            "Conv",
            [
                h,
                g.add_weight(f"{layer}.weight", params[f"{layer}.weight"]),
                g.add_weight(f"{layer}.bias", params[f"{layer}.bias"]),
            ],
            kernel_shape=[3, 3],
        )
        h = g.add_node("MaxPool", [h], kernel_shape=[2, 2], strides=[2, 2])
        h = g.add_node("Relu", [h])
    h = g.add_node("Flatten", [h], axis=1)
    h = g.add_node(
        "Gemm",
        [
            h,
            g.add_weight("fc1.weight", params["fc1.weight"]),
            g.add_weight("fc1.bias", params["fc1.bias"]),
        ],
        transB=1,
    )
    h = g.add_node("Relu", [h])
    h = g.add_node(
        "Gemm",
        [
            h,
            g.add_weight("fc2.weight", params["fc2.weight"]),
            g.add_weight("fc2.bias", params["fc2.bias"]),
        ],
        transB=1,
    )
    g.add_output(g.add_node("Softmax", [h], axis=-1), "probs")
    return g


# -- the peers -------------------------------------------------------------------------------


class HandWritten:
    """The forward pass written out by hand with the same op kernels: no interpreter."""

    def __init__(self, params: dict[str, np.ndarray]):
        self.p = params
        f32 = np.dtype(np.float32)
        self.conv1 = create_op("Conv", "conv1", {"kernel_shape": [3, 3]})
        self.conv2 = create_op("Conv", "conv2", {"kernel_shape": [3, 3]})
        self.pool1 = create_op("MaxPool", "pool1", {"kernel_shape": [2, 2], "strides": [2, 2]})
        self.pool2 = create_op("MaxPool", "pool2", {"kernel_shape": [2, 2], "strides": [2, 2]})
        self.relu = create_op("Relu", "relu")
        self.flatten = create_op("Flatten", "flatten", {"axis": 1})
        self.fc1 = create_op("Gemm", "fc1", {"transB": 1})
        self.fc2 = create_op("Gemm", "fc2", {"transB": 1})
        self.softmax = create_op("Softmax", "softmax", {"axis": -1})
        # shape inference once, as the interpreter does at load (some kernels plan there)
        spec = TensorSpec((1, 1, 28, 28), f32)
        [spec] = self.conv1.infer([spec, TensorSpec((32, 1, 3, 3), f32), TensorSpec((32,), f32)])
        [spec] = self.pool1.infer([spec])
        [spec] = self.conv2.infer([spec, TensorSpec((64, 32, 3, 3), f32), TensorSpec((64,), f32)])
        [spec] = self.pool2.infer([spec])
        [spec] = self.flatten.infer([spec])
        [spec] = self.fc1.infer([spec, TensorSpec((128, 1600), f32), TensorSpec((128,), f32)])
        [spec] = self.fc2.infer([spec, TensorSpec((10, 128), f32), TensorSpec((10,), f32)])
        self.softmax.infer([spec])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        p = self.p
        [h] = self.conv1.run([x, p["conv1.weight"], p["conv1.bias"]])
        [h] = self.relu.run(self.pool1.run([h]))
        [h] = self.conv2.run([h, p["conv2.weight"], p["conv2.bias"]])
        [h] = self.relu.run(self.pool2.run([h]))
        [h] = self.flatten.run([h])
        [h] = self.relu.run(self.fc1.run([h, p["fc1.weight"], p["fc1.bias"]]))
        [h] = self.fc2.run([h, p["fc2.weight"], p["fc2.bias"]])
        return self.softmax.run([h])[0]


def onnxruntime_session(params: dict[str, np.ndarray], threads: int):
    try:
        import onnx
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        return None
    nodes = []
    h = "input"
    for i, layer in enumerate(("conv1", "conv2")):
        nodes += [
            helper.make_node(
                "Conv", [h, f"{layer}.weight", f"{layer}.bias"], [f"c{i}"], kernel_shape=[3, 3]
            ),
            helper.make_node("MaxPool", [f"c{i}"], [f"p{i}"], kernel_shape=[2, 2], strides=[2, 2]),
            helper.make_node("Relu", [f"p{i}"], [f"r{i}"]),
        ]
        h = f"r{i}"
    nodes += [
        helper.make_node("Flatten", [h], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "fc1.weight", "fc1.bias"], ["f1"], transB=1),
        helper.make_node("Relu", ["f1"], ["r2"]),
        helper.make_node("Gemm", ["r2", "fc2.weight", "fc2.bias"], ["f2"], transB=1),
        helper.make_node("Softmax", ["f2"], ["probs"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "mnist",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 28, 28])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 10])],
        [numpy_helper.from_array(v, k) for k, v in params.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = min(model.ir_version, 8)
    onnx.checker.check_model(model)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    return lambda x: session.run(None, {"input": x})[0]


def torch_module(params: dict[str, np.ndarray], threads: int):
    try:
        import torch
    except ImportError:
        return None
    if threads:
        torch.set_num_threads(threads)
    nn = torch.nn
    model = nn.Sequential(
        nn.Conv2d(1, 32, 3),
        nn.MaxPool2d(2),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3),
        nn.MaxPool2d(2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(1600, 128),
        nn.ReLU(),
        nn.Linear(128, 10),
        nn.Softmax(dim=-1),
    )
    layers = {"conv1": model[0], "conv2": model[3], "fc1": model[7], "fc2": model[9]}
    with torch.no_grad():
        for name, layer in layers.items():
            layer.weight.copy_(torch.from_numpy(params[f"{name}.weight"]))
            layer.bias.copy_(torch.from_numpy(params[f"{name}.bias"]))
    model.eval()

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(x)).numpy()

    return run


# -- measuring -------------------------------------------------------------------------------


#: With more than one thread, an engine's thread pool keeps spinning on the cores for a while
#: after its call returns (measured as CPU time while the process sleeps: onnxruntime's about
#: 50 ms, PyTorch's OpenMP about 10 ms), so that the next engine timed would share the cores
#: with it, which no deployment does. Then each engine's turn starts this long after the last
#: call of the one before.
SETTLE_SECONDS = 0.1


def measure(
    engines: dict, x: np.ndarray, rounds: int, settle: float = 0.0, burst: int = 1
) -> dict[str, tuple[float, float]]:
    """Per-sample microseconds of each engine on ``x``: ``(best, median)`` over its calls.

    The engines take turns, ``burst`` timed calls each per round and each round starting with
    the next engine (so that none always runs just after another one has filled the caches),
    so that a slow patch of a shared machine hits all of them alike; the best time is the
    least disturbed one, used for the ratios. With ``settle`` (seconds), a turn waits that
    long for the other engines' thread pools to go idle, then makes one untimed call (which
    wakes the engine's own pool, as a steady stream of requests keeps it awake).
    """
    for function in engines.values():
        for _ in range(3):
            function(x)
    samples: dict[str, list[float]] = {name: [] for name in engines}
    order = list(engines.items())
    for i in range(rounds):
        for name, function in order[i % len(order) :] + order[: i % len(order)]:  # rotated
            if settle:
                time.sleep(settle)
                function(x)
            for _ in range(burst):
                start = time.perf_counter()
                function(x)
                samples[name].append(time.perf_counter() - start)
    return {
        name: (min(t) / len(x) * 1e6, float(np.median(t)) / len(x) * 1e6)
        for name, t in samples.items()
    }


def schedule(args: argparse.Namespace, batch: int) -> dict[str, float | int]:
    """``measure``'s rounds, settle and burst for ``batch``: with one thread, one call per
    turn (``--repeat`` rounds at batch 64, ten times as many at batch 1, ~60x cheaper);
    with more, turns that settle first, of 3 calls at batch 64 and 10 at batch 1."""
    if args.threads == 1:
        return {"rounds": args.repeat * (10 if batch == 1 else 1)}
    return {"rounds": args.repeat, "settle": SETTLE_SECONDS, "burst": 10 if batch == 1 else 3}


def main(args: argparse.Namespace) -> int:
    params = random_params(args.seed)
    rng = np.random.default_rng(args.seed + 1)
    batches = {
        1: rng.random((1, 1, 28, 28), dtype=np.float32),
        64: rng.random((64, 1, 28, 28), dtype=np.float32),
    }
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "mnist.popef")
        build(params).save(path, executable_name="mnist")
        runner = ModelRunner(path, "cpu", threads=args.threads or None)
        hand = HandWritten(params)
        candidates = {
            "popef cpu": lambda x: runner.execute({"input": x})["probs"],
            "hand-written": hand,
            "onnxruntime": onnxruntime_session(params, args.threads),
            "pytorch eager": torch_module(params, args.threads),
        }
        engines = {}
        reference = hand(batches[64])
        for name, function in candidates.items():
            if function is None:
                print(f"{name}: not installed, skipped")
                continue
            np.testing.assert_allclose(function(batches[64]), reference, rtol=1e-4, atol=1e-6)
            engines[name] = function
        results = {b: measure(engines, x, **schedule(args, b)) for b, x in batches.items()}
        runner.close()

    threads = f"{args.threads} thread(s)" if args.threads else "default threads"
    calls = [schedule(args, b) for b in batches]
    counts = " / ".join(str(c["rounds"] * c.get("burst", 1)) for c in calls)
    print(
        f"\nMNIST network, random weights, {threads}, {counts} calls per engine; "
        "microseconds per sample, best / median"
    )
    print(f"{'engine':14s} {'batch 1':>18s} {'batch 64':>18s}")
    for name in engines:
        cells = [f"{results[b][name][0]:8.1f} /{results[b][name][1]:8.1f}" for b in batches]
        print(f"{name:14s} {cells[0]:>18s} {cells[1]:>18s}")

    def best(name: str, batch: int) -> float:
        return results[batch][name][0]

    print("\nratios of the best times (target in brackets)")
    rows = []
    if "onnxruntime" in engines:
        for batch, target in ((64, 1.5), (1, 2.0)):
            rows.append(
                (
                    f"batch {batch}: popef cpu / onnxruntime",
                    best("popef cpu", batch) / best("onnxruntime", batch),
                    target,
                )
            )
    if "pytorch eager" in engines:
        rows.append(
            (
                "batch 1: popef cpu / pytorch eager",
                best("popef cpu", 1) / best("pytorch eager", 1),
                1.0,
            )
        )
    for batch in batches:
        rows.append(
            (
                f"batch {batch}: interpreter / hand-written",
                best("popef cpu", batch) / best("hand-written", batch),
                1.2,
            )
        )
    for label, ratio, target in rows:
        print(f"  {label:40s} {ratio:6.2f}  [<= {target}]  {'ok' if ratio <= target else 'MISSED'}")
    return 0


# -- the onnxruntime executor against onnxruntime itself -------------------------------------


def resnet_builder(seed: int, width: int = 32, blocks: int = 3) -> GraphBuilder:
    """A ResNet-style CNN on 3×32×32 images: a stem, ``blocks`` residual blocks of two
    Conv + BatchNormalization (+ Relu) with an identity shortcut, global pooling, a classifier."""
    rng = np.random.default_rng(seed)
    g = GraphBuilder()

    def weight(name: str, shape, scale: float = 0.1) -> str:
        return g.add_weight(name, (rng.standard_normal(shape) * scale).astype(np.float32))

    def conv_bn(name: str, x: str, c_in: int, c_out: int) -> str:
        h = g.add_node(
            "Conv",
            [x, weight(f"{name}.w", (c_out, c_in, 3, 3)), weight(f"{name}.b", (c_out,))],
            kernel_shape=[3, 3],
            pads=[1, 1, 1, 1],
        )
        variance = g.add_weight(f"{name}.var", rng.uniform(0.5, 2, c_out).astype(np.float32))
        return g.add_node(
            "BatchNormalization",
            [
                h,
                weight(f"{name}.scale", (c_out,), 1.0),
                weight(f"{name}.bias", (c_out,)),
                weight(f"{name}.mean", (c_out,)),
                variance,
            ],
        )

    h = g.add_node(
        "Relu", [conv_bn("stem", g.add_input("image", DataType.F32, (1, 3, 32, 32)), 3, width)]
    )
    for i in range(blocks):
        y = g.add_node("Relu", [conv_bn(f"block{i}.a", h, width, width)])
        y = conv_bn(f"block{i}.b", y, width, width)
        h = g.add_node("Relu", [g.add_node("Add", [h, y])])
    h = g.add_node("Flatten", [g.add_node("GlobalAveragePool", [h])], axis=1)
    h = g.add_node("Gemm", [h, weight("fc.w", (10, width)), weight("fc.b", (10,))], transB=1)
    g.add_output(g.add_node("Softmax", [h], axis=-1), "probs")
    return g


def executor_vs_onnxruntime(args: argparse.Namespace) -> int:
    """The ``onnxruntime`` executor against onnxruntime called directly on the model that
    ``popef.export_onnx`` makes of the same file (same providers, threads, optimisation)."""
    try:
        import onnxruntime as ort
    except ImportError:
        print("\nonnxruntime executor: onnxruntime not installed, skipped")
        return 0
    from popef import export_onnx

    rng = np.random.default_rng(args.seed + 2)
    networks = {
        "MNIST": (build(random_params(args.seed)), "input", (1, 28, 28)),
        "ResNet-style": (resnet_builder(args.seed), "image", (3, 32, 32)),
    }
    rows = []
    threads = args.threads or None
    with tempfile.TemporaryDirectory() as folder:
        for label, (builder, name, shape) in networks.items():
            path = os.path.join(folder, f"{label}.popef")
            builder.save(path)
            options = ort.SessionOptions()
            if threads:
                options.intra_op_num_threads = threads
            session = ort.InferenceSession(
                export_onnx(path, dynamic_batch=True).SerializeToString(),
                options,
                providers=["CPUExecutionProvider"],
            )
            output = session.get_outputs()[0].name
            runner = ModelRunner(path, "onnxruntime", intra_op_num_threads=threads)
            engines = {
                "popef onnxruntime": lambda x, r=runner, n=name, o=output: r.execute({n: x})[o],
                "onnxruntime": lambda x, s=session, n=name: s.run(None, {n: x})[0],
            }
            for batch in (1, 64):
                x = rng.random((batch, *shape), dtype=np.float32)
                np.testing.assert_allclose(
                    engines["popef onnxruntime"](x), engines["onnxruntime"](x), rtol=1e-5, atol=1e-6
                )
                result = measure(engines, x, **schedule(args, batch))
                rows.append((label, batch, result))
            runner.close()
    print(
        f"\nonnxruntime executor against onnxruntime on the exported model, "
        f"{args.threads or 'default'} thread(s); microseconds per sample, best / median"
    )
    for label, batch, result in rows:
        cells = "   ".join(
            f"{engine} {best:8.1f} /{median:8.1f}" for engine, (best, median) in result.items()
        )
        ratio = result["popef onnxruntime"][0] / result["onnxruntime"][0]
        print(
            f"  {label:12s} batch {batch:2d}: {cells}   ratio {ratio:5.2f}  [<= 1.1]  "
            f"{'ok' if ratio <= 1.1 else 'MISSED'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(ARGS) or executor_vs_onnxruntime(ARGS))
