"""Window ops across steps and replicas: the folded ``cpu`` executor agrees with the
step-by-step ``ipu-model`` (MaxPool's ``Indices`` are flat positions within one step's input,
so they must not see the other steps of a folded batch)."""

from __future__ import annotations

import numpy as np
import pytest

from popef import DataType
from popef.runtime import GraphBuilder, ModelRunner
from popef.runtime.batching import fold_blocker
from popef.runtime.loader import load_model

from .helpers import model_of, save_bytes


def _max_pool_model(batch: int, with_indices: bool) -> GraphBuilder:
    g = GraphBuilder()
    x = g.add_input("x", DataType.F32, (batch, 2, 4, 4))
    if with_indices:
        values, indices = g.add_node(
            "MaxPool", [x], num_outputs=2, kernel_shape=[2, 2], strides=[2, 2]
        )
        g.add_output(indices, "indices")
    else:
        values = g.add_node("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])
    g.add_output(g.add_node("Relu", [values]), "values")
    return g


def _expected_indices(x: np.ndarray, batch: int) -> np.ndarray:
    """Indices of each step computed on that step's rows alone (independent formula)."""
    steps = []
    for step in x.reshape(-1, batch, *x.shape[1:]):
        n, c, h, w = step.shape
        windows = step.reshape(n, c, h // 2, 2, w // 2, 2).transpose(0, 1, 2, 4, 3, 5)
        arg = windows.reshape(n, c, h // 2, w // 2, 4).argmax(axis=-1)
        row = np.arange(h // 2)[:, None] * 2 + arg // 2
        col = np.arange(w // 2)[None, :] * 2 + arg % 2
        base = (np.arange(n)[:, None] * c + np.arange(c)[None, :]) * h * w
        steps.append(base[:, :, None, None] + row * w + col)
    return np.concatenate(steps)


@pytest.mark.parametrize(
    "replicas, iterations, steps, batch",
    [
        (1, 1, 3, 1),
        (1, 4, 5, 2),
        (2, 1, 2, 1),
        (3, 2, 3, 2),
    ],
)
def test_max_pool_indices_agree_across_steps_and_replicas(replicas, iterations, steps, batch):
    model = model_of(
        save_bytes(
            _max_pool_model(batch, True), replication_factor=replicas, device_iterations=iterations
        )
    )
    rng = np.random.default_rng(replicas * 100 + steps)
    runners = [ModelRunner(model, "cpu"), ModelRunner(model, "ipu-model")]
    shape = runners[0].get_execute_inputs()[0].shape
    x = rng.standard_normal((steps * shape[0], *shape[1:])).astype(np.float32)
    cpu, ipu = (r.execute({"x": x}) for r in runners)
    for runner in runners:
        runner.close()
    np.testing.assert_array_equal(cpu["indices"], ipu["indices"])
    np.testing.assert_array_equal(cpu["values"], ipu["values"])
    if replicas == 1:
        np.testing.assert_array_equal(cpu["indices"], _expected_indices(x, batch))


def test_max_pool_folds_only_without_indices():
    assert fold_blocker(load_model(model_of(save_bytes(_max_pool_model(1, False))))) is None
    reason = fold_blocker(load_model(model_of(save_bytes(_max_pool_model(1, True)))))
    assert reason is not None and "mixes the rows" in reason
