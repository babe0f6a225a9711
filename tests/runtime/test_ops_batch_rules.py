"""The batch rules of the shape, indexing, resampling and normalisation ops: the ops that keep
the rows of the leading axis independent fold a request's steps into one batch, the ones that
mix them (Slice, Gather, Tile, Split ... on axis 0) do not — and in every case the folded `cpu`
run, the step-by-step `cpu` run and `ipu-model` agree, with replicas and device iterations."""

from __future__ import annotations

import numpy as np
import pytest

from popef import DataType
from popef.runtime import GraphBuilder, ModelRunner
from popef.runtime.batching import fold_blocker
from popef.runtime.loader import load_model

from .helpers import model_of, save_bytes

I64 = np.int64


def w(g: GraphBuilder, name: str, *values, dtype=I64) -> str:
    return g.add_weight(name, np.array(values, dtype=dtype))


# (id, build(g, x) -> output tensor, folds?) on an input x of shape [2, 4, 6] float32
GRAPHS = [
    (
        "squeeze_unsqueeze",
        lambda g, x: g.add_node(
            "Squeeze", [g.add_node("Unsqueeze", [x, w(g, "a", 2)]), w(g, "b", 2)]
        ),
        True,
    ),
    ("unsqueeze_axis0", lambda g, x: g.add_node("Unsqueeze", [x, w(g, "a", 0)]), False),
    (
        "slice_inner",
        lambda g, x: g.add_node("Slice", [x, w(g, "s", 1), w(g, "e", -1), w(g, "a", 2)]),
        True,
    ),
    (
        "slice_axis0",
        lambda g, x: g.add_node("Slice", [x, w(g, "s", 0, 1), w(g, "e", 1, 3), w(g, "a", 0, 1)]),
        False,
    ),
    (
        "slice_axis0_reversed",
        lambda g, x: g.add_node(
            "Slice", [x, w(g, "s", -1), w(g, "e", -100), w(g, "a", 0), w(g, "t", -1)]
        ),
        False,
    ),
    ("expand", lambda g, x: g.add_node("Expand", [x, w(g, "s", 1, 1, 6)]), True),
    ("tile_inner", lambda g, x: g.add_node("Tile", [x, w(g, "r", 1, 2, 1)]), True),
    ("tile_axis0", lambda g, x: g.add_node("Tile", [x, w(g, "r", 2, 1, 1)]), False),
    ("split_inner", lambda g, x: g.add_node("Split", [x], axis=2, num_outputs=2)[1], True),
    ("split_axis0", lambda g, x: g.add_node("Split", [x], axis=0, num_outputs=2)[0], False),
    (
        "pad_inner",
        lambda g, x: g.add_node("Pad", [x, w(g, "p", 0, 1, 0, 0, 2, 1)], mode="reflect"),
        True,
    ),
    ("gather_inner", lambda g, x: g.add_node("Gather", [x, w(g, "i", 5, 0, -1)], axis=2), True),
    ("gather_axis0", lambda g, x: g.add_node("Gather", [x, w(g, "i", 1, 0)]), False),
    (
        "gather_elements",
        lambda g, x: g.add_node("GatherElements", [x, g.add_node("Cast", [x], to=7)], axis=2),
        True,
    ),
    ("topk", lambda g, x: g.add_node("TopK", [x, w(g, "k", 3)], num_outputs=2)[1], True),
    (
        "topk_axis0",
        lambda g, x: g.add_node("TopK", [x, w(g, "k", 1)], axis=0, num_outputs=2)[0],
        False,
    ),
    ("trilu", lambda g, x: g.add_node("Trilu", [x], upper=0), True),
    (
        "onehot",
        lambda g, x: g.add_node(
            "OneHot",
            [g.add_node("Cast", [x], to=7), w(g, "d", 3), w(g, "v", 0, 1, dtype=np.float32)],
        ),
        True,
    ),
    (
        "depth_to_space",
        lambda g, x: g.add_node(
            "DepthToSpace", [g.add_node("Reshape", [x, w(g, "s", 0, 4, 2, 3)])], blocksize=2
        ),
        True,
    ),
    (
        "resize_inner",
        lambda g, x: g.add_node(
            "Resize", [x, "", w(g, "s", 1, 1.5, 0.5, dtype=np.float32)], mode="linear"
        ),
        True,
    ),
    (
        "resize_axis0",
        lambda g, x: g.add_node(
            "Resize", [x, "", w(g, "s", 2, 1, 1, dtype=np.float32)], mode="linear"
        ),
        False,
    ),
    (
        "layer_norm",
        lambda g, x: g.add_node(
            "LayerNormalization", [x, g.add_weight("s", np.full(6, 2, np.float32))]
        ),
        True,
    ),
    (
        "layer_norm_axis0",
        lambda g, x: g.add_node(
            "LayerNormalization", [x, g.add_weight("s", np.ones((2, 4, 6), np.float32))], axis=0
        ),
        False,
    ),
    (
        "instance_norm",
        lambda g, x: g.add_node(
            "InstanceNormalization",
            [
                x,
                g.add_weight("s", np.ones(4, np.float32)),
                g.add_weight("b", np.zeros(4, np.float32)),
            ],
        ),
        True,
    ),
    (
        "group_norm",
        lambda g, x: g.add_node(
            "GroupNormalization",
            [
                x,
                g.add_weight("s", np.ones(4, np.float32)),
                g.add_weight("b", np.zeros(4, np.float32)),
            ],
            num_groups=2,
        ),
        True,
    ),
    (
        "mvn_default_axes",
        lambda g, x: g.add_node(
            "MeanVarianceNormalization", [g.add_node("Unsqueeze", [x, w(g, "a", 3)])]
        ),
        False,
    ),
    ("lp_norm", lambda g, x: g.add_node("LpNormalization", [x], axis=1), True),
    (
        "einsum_batch",
        lambda g, x: g.add_node(
            "Einsum", [x, g.add_weight("m", np.ones((6, 3), np.float32))], equation="bij,jk->bik"
        ),
        True,
    ),
    ("einsum_mixes", lambda g, x: g.add_node("Einsum", [x], equation="bij->jb"), False),
    (
        "quantize_roundtrip",
        lambda g, x: g.add_node(
            "DequantizeLinear",
            [
                g.add_node(
                    "QuantizeLinear",
                    [x, w(g, "s", 0.05, dtype=np.float32), w(g, "z", 0, dtype=np.int8)],
                ),
                w(g, "s2", 0.05, dtype=np.float32),
                w(g, "z2", 0, dtype=np.int8),
            ],
        ),
        True,
    ),
    ("shape_is_not_batched", lambda g, x: g.add_node("Shape", [x]), False),
]


def _build(build):
    g = GraphBuilder()
    x = g.add_input("x", DataType.F32, (2, 4, 6))
    g.add_output(build(g, x), "y")
    return g


@pytest.mark.parametrize(
    "build, folds", [(b, f) for _, b, f in GRAPHS], ids=[i for i, _, _ in GRAPHS]
)
def test_batch_rule_and_executors_agree(build, folds):
    g = _build(build)
    reason = fold_blocker(load_model(model_of(save_bytes(g))))
    assert (reason is None) == folds, reason
    model = model_of(save_bytes(g, replication_factor=2, device_iterations=2))
    rng = np.random.default_rng(0)
    # 3 steps of 2 replicas, each reading one [2, 4, 6] sample
    x = rng.uniform(-2, 2, size=(3 * 2, 2, 4, 6)).astype(np.float32)
    results = []
    for name, options in (("cpu", {}), ("cpu", {"fold": False}), ("ipu-model", {})):
        with ModelRunner(model, name, **options) as runner:
            results.append(runner.execute({"x": x})["y"])
    folded, stepwise, ipu = results
    assert folded.shape == stepwise.shape == ipu.shape and folded.dtype == ipu.dtype
    np.testing.assert_allclose(folded, ipu, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(stepwise, ipu, rtol=1e-5, atol=1e-5)
    # each sample computed alone gives the same result
    with ModelRunner(model_of(save_bytes(g)), "ipu-model") as runner:
        alone = np.stack([runner.execute({"x": sample})["y"] for sample in x])
    np.testing.assert_allclose(ipu, alone, rtol=1e-5, atol=1e-5)


def test_embedding_lookup_folds():
    """Gather(table, ids) on axis 0 with the batch in the indices: BERT's embeddings."""
    g = GraphBuilder()
    ids = g.add_input("ids", DataType.S64, (2, 5))
    table = g.add_weight("table", np.arange(40, dtype=np.float32).reshape(10, 4))
    g.add_output(g.add_node("Gather", [table, ids]), "y")
    model = model_of(save_bytes(g))
    assert fold_blocker(load_model(model)) is None
    x = np.random.default_rng(1).integers(-10, 10, size=(6, 5))
    with ModelRunner(model, "cpu") as runner:
        y = runner.execute({"ids": x})["y"]
    np.testing.assert_array_equal(y, np.arange(40, dtype=np.float32).reshape(10, 4)[x])
