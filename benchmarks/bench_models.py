"""Benchmark of ONNX import and of whole models on the ``cpu`` executor, against onnxruntime.

Builds two networks with PyTorch (random weights, no downloads; the definitions are the test
suite's ``tests/importers/torch_models.py``): a ResNet-18-style CNN and a BERT-style encoder,
exports each with ``torch.onnx.export`` and measures, in the same run:

- import time: ``popef.import_onnx`` of the ``.onnx`` file, as MB/s of weights (goal: >= 200
  MB/s, i.e. dominated by reading the weights);
- time per sample at batch 1 and batch 64 on ``ModelRunner(path, "cpu")`` and on onnxruntime
  with the same file, one thread each, the engines taking turns; printed as ratios.

    python benchmarks/bench_models.py [--repeat R] [--threads N] [--image 64] [--seq 64]

Short by default (a few seconds per model on 2 cores); the batch-64 shapes are fixed at import
(``batch_size``), as a server would.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _set_threads(threads: int) -> None:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)


def _torch_models():
    spec = importlib.util.spec_from_file_location(
        "torch_models", ROOT / "tests" / "importers" / "torch_models.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _best(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def bench(name, model, make_inputs, names, args, folder) -> None:
    import numpy as np
    import onnxruntime as ort
    import torch

    import popef
    from popef.runtime import ModelRunner

    onnx_path = os.path.join(folder, f"{name}.onnx")
    example = make_inputs(1)
    with torch.no_grad():
        torch.onnx.export(
            model.eval(),
            example,
            onnx_path,
            dynamo=False,
            input_names=names,
            dynamic_axes={n: {0: "batch"} for n in names},
            opset_version=17,
        )
    print(f"\n{name}: {os.path.getsize(onnx_path) / 1e6:.1f} MB of ONNX")
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = args.threads
    session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
    for batch in (1, 64):
        popef_path = os.path.join(folder, f"{name}_{batch}.popef")

        def run_import(path=popef_path, batch=batch):
            popef.import_onnx(onnx_path, path, batch_size=batch)

        try:
            seconds = _best(run_import, args.repeat if batch == 1 else 1)
        except popef.PopefError as exc:
            print(f"  import: cannot import: {exc}")
            return
        if batch == 1:
            weights = _weight_bytes(popef_path)
            peer = _best(lambda: _onnx_load_and_copy(onnx_path), args.repeat)
            print(
                f"  import: {seconds * 1e3:.1f} ms, {weights / 1e6:.1f} MB of weights, "
                f"{weights / 1e6 / seconds:.0f} MB/s  [goal >= 200 MB/s]; peer onnx.load + "
                f"numpy copy of the initializers {weights / 1e6 / peer:.0f} MB/s, ratio "
                f"{seconds / peer:.2f}"
            )
        inputs = {n: np.ascontiguousarray(t.numpy()) for n, t in zip(names, make_inputs(batch))}
        with ModelRunner(popef_path, "cpu") as runner:
            ours = theirs = float("inf")
            for _ in range(args.repeat):  # the engines take turns
                ours = min(ours, _best(lambda: runner.execute(inputs), 1))  # noqa: B023
                theirs = min(theirs, _best(lambda: session.run(None, inputs), 1))  # noqa: B023
            got = runner.execute(inputs)
        expected = session.run(None, inputs)
        error = max(
            float(np.abs(got[o.name] - e).max()) for o, e in zip(session.get_outputs(), expected)
        )
        print(
            f"  batch {batch:2d}: popef cpu {ours / batch * 1e6:9.1f} us/sample, onnxruntime "
            f"{theirs / batch * 1e6:9.1f} us/sample, ratio {ours / theirs:5.2f}  "
            f"(max abs difference {error:.2g})"
        )


def _onnx_load_and_copy(path: str) -> None:
    """The peer of an import: parse the file and copy every initializer out as numpy."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(path)
    for tensor in model.graph.initializer:
        numpy_helper.to_array(tensor, os.path.dirname(path)).copy()


def _weight_bytes(path: str) -> int:
    import popef

    with popef.Reader() as reader:
        reader.parse_file(path)
        return sum(t.info.tensor_info.size_in_bytes for t in reader.tensors())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--image", type=int, default=64, help="ResNet input height and width")
    parser.add_argument("--seq", type=int, default=64, help="BERT sequence length")
    args = parser.parse_args(argv)
    _set_threads(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    models = _torch_models()
    with tempfile.TemporaryDirectory() as folder:
        bench(
            "resnet",
            models.ResNet(width=64, classes=1000),
            lambda b: (torch.randn(b, 3, args.image, args.image),),
            ["image"],
            args,
            folder,
        )
        bench(
            "bert",
            models.Bert(vocab=30522, hidden=256, layers=4, heads=4, max_len=512),
            lambda b: (
                torch.randint(0, 30522, (b, args.seq)),
                torch.ones(b, args.seq, dtype=torch.int64),
            ),
            ["input_ids", "attention_mask"],
            args,
            folder,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
