"""Benchmark of loading a model: the cost of checking every blob's checksum at load.

Builds a model whose weights take ``--megabytes`` MiB (a chain of MatMuls over square F32
weights) and measures, interleaved in the same run and with the file in the page cache:

- ``ModelRunner(path)``: the default, every blob checked against its checksum while the
  weights are read into memory;
- ``ModelRunner(path, verify=False)``: the weights read into memory, nothing checked;
- reading the whole file into memory with ``numpy.fromfile`` (the floor of any load that
  copies the weights out of the file);
- ``zlib.crc32`` over the whole file, as a second peer for the checksum pass.

Prints the best time of each and the ratios: verify / no-verify is the price of the check.

    python benchmarks/bench_load.py [--megabytes 256] [--repeat 7]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import zlib

import numpy as np

from popef import DataType
from popef.runtime import GraphBuilder, ModelRunner


def build(path: str, megabytes: int) -> None:
    side = 1024  # 4 MiB per weight
    g = GraphBuilder()
    h = g.add_input("x", DataType.F32, (1, side))
    rng = np.random.default_rng(0)
    for i in range(max(1, megabytes // 4)):
        w = rng.standard_normal((side, side), dtype=np.float32) / side**0.5
        h = g.add_node("MatMul", [h, g.add_weight(f"w{i}", w)])
    g.add_output(h, "y")
    g.save(path, executable_name="chain")


def best(function, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megabytes", type=int, default=256, help="weights, MiB (default 256)")
    parser.add_argument("--repeat", type=int, default=7, help="rounds (default 7)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.popef")
        build(path, args.megabytes)
        size = os.path.getsize(path)

        def crc() -> None:
            with open(path, "rb") as f:
                value = 0
                while chunk := f.read(8 << 20):
                    value = zlib.crc32(chunk, value)

        engines = {
            "ModelRunner (verify)": lambda: ModelRunner(path).close(),
            "ModelRunner (verify=False)": lambda: ModelRunner(path, verify=False).close(),
            "numpy.fromfile": lambda: np.fromfile(path, np.uint8),
            "zlib.crc32 of the file": crc,
        }
        for function in engines.values():  # warm the page cache and the imports
            function()
        times = {name: float("inf") for name in engines}
        for _ in range(args.repeat):  # interleaved, so a slow moment hurts all alike
            for name, function in engines.items():
                times[name] = min(times[name], best(function, 1))
    print(f"model: {size / 2**20:.0f} MiB, best of {args.repeat}")
    for name, seconds in times.items():
        print(f"  {name:28s} {seconds * 1e3:8.1f} ms  {size / seconds / 2**30:6.2f} GiB/s")
    verify, plain = times["ModelRunner (verify)"], times["ModelRunner (verify=False)"]
    print(f"verify / verify=False:          {verify / plain:.2f}x")
    print(f"verify / numpy.fromfile:        {verify / times['numpy.fromfile']:.2f}x")
    print(f"verify=False / numpy.fromfile:  {plain / times['numpy.fromfile']:.2f}x")


if __name__ == "__main__":
    main()
