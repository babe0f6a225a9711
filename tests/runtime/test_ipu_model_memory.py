"""ipu-model: replicas share the weights they have in common instead of copying them.

The simulated device still counts each replica's memory (its memory check is per replica), but
on the host a model of replication factor ``r`` costs its weights once, as on the cpu
executor, not ``r`` times. Memory is measured with ``tracemalloc``, which sees numpy's buffers.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from popef import DataType
from popef.runtime import GraphBuilder, ModelRunner

from .helpers import model_of, save_bytes

REPLICAS = 64
WEIGHT_SHAPE = (256, 4096)  # 4 MiB of float32
WEIGHT_BYTES = 256 * 4096 * 4


def _replicated_matmul() -> tuple[bytes, np.ndarray]:
    w = np.random.default_rng(0).standard_normal(WEIGHT_SHAPE).astype(np.float32)
    g = GraphBuilder()
    x = g.add_input("x", DataType.F32, (1, WEIGHT_SHAPE[0]))
    g.add_output(g.add_node("MatMul", [x, g.add_weight("w", w)]), "y")
    return save_bytes(g, replication_factor=REPLICAS), w


def _peak_of(action) -> int:
    """The most bytes allocated at once while ``action()`` runs, above what was there before."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        result = action()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    result.close()
    return peak - before


@pytest.fixture(scope="module")
def replicated():
    data, w = _replicated_matmul()
    return model_of(data), w


def test_loading_many_replicas_costs_the_weights_once(replicated):
    model, _ = replicated
    ipu = _peak_of(lambda: ModelRunner(model, "ipu-model"))
    cpu = _peak_of(lambda: ModelRunner(model, "cpu"))
    # a copy per replica would be 64 x 4 MiB; the load itself reads and checks them once
    assert ipu <= cpu + WEIGHT_BYTES, (
        f"ipu-model load peaked at {ipu} bytes for {REPLICAS} replicas of "
        f"{WEIGHT_BYTES} bytes of weights (cpu executor: {cpu})"
    )


def test_shared_weights_give_the_cpu_results(replicated):
    model, w = replicated
    # two steps of every replica
    x = np.random.default_rng(1).standard_normal((2 * REPLICAS, 1, WEIGHT_SHAPE[0]))
    inputs = {"x": x.astype(np.float32)}
    with ModelRunner(model, "ipu-model") as ipu, ModelRunner(model, "cpu") as cpu:
        expected = cpu.execute(inputs)["y"]
        got = ipu.execute(inputs)["y"]
    # float32 sums of 256 products (values up to ~50), added in another order by each executor
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)
    reference = inputs["x"][:, 0].astype(np.float64) @ w.astype(np.float64)
    np.testing.assert_allclose(got[:, 0], reference, rtol=1e-5, atol=1e-4)
