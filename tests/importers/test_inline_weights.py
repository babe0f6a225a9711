"""Inline weights read straight from the ``.onnx`` file (popef/importers/wire.py): the same
model, imported from a file (weights memory-mapped) and from a proto (weights parsed), gives
the same PopEF weights; damaged files still fail with a PopefError only."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

onnx = pytest.importorskip("onnx")
from onnx import helper

import popef
from popef.importers.source import load_source, tensor_to_array
from popef.importers.wire import MIN_INLINE_BYTES, SELF_LOCATION, split_inline_weights
from popef.runtime import ModelRunner

from .test_onnx_import import init, make_model, tensor_in

DTYPES = [np.float32, np.float16, np.int64, np.int8, np.float64]


def chain_model(weights: list[np.ndarray]):
    """Adds of ``x`` and each weight (flattened to one row): every weight is used."""
    nodes, previous = [], "x"
    width = weights[0].size
    for i, _ in enumerate(weights):
        nodes.append(helper.make_node("Add", [previous, f"w{i}"], [f"h{i}"]))
        previous = f"h{i}"
    return make_model(
        nodes,
        [tensor_in("x", [1, width])],
        [tensor_in(previous, None)],
        [init(f"w{i}", w.reshape(1, width)) for i, w in enumerate(weights)],
    )


def test_large_weights_are_mapped_from_the_file(tmp_path):
    rng = np.random.default_rng(0)
    weights = [rng.standard_normal(MIN_INLINE_BYTES // 4 + 5).astype(np.float32) for _ in range(3)]
    model = chain_model(weights)
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    source = load_source(str(path))
    assert source.inline_weights_path is not None
    for tensor, expected in zip(source.model.graph.initializer, weights):
        location = {e.key: e.value for e in tensor.external_data}["location"]
        assert location == source.inline_location and not tensor.raw_data
        assert location.startswith(SELF_LOCATION)
        array = tensor_to_array(tensor, source, "w")
        assert isinstance(array, np.memmap)
        np.testing.assert_array_equal(array.reshape(-1), expected)

    popef.import_onnx(path, tmp_path / "from_file.popef")
    popef.import_onnx(model, tmp_path / "from_proto.popef")
    x = rng.standard_normal((1, weights[0].size)).astype(np.float32)
    with (
        ModelRunner(tmp_path / "from_file.popef") as a,
        ModelRunner(tmp_path / "from_proto.popef") as b,
    ):
        np.testing.assert_array_equal(a.execute({"x": x})["h2"], b.execute({"x": x})["h2"])
        np.testing.assert_allclose(a.execute({"x": x})["h2"], x + sum(weights), atol=1e-5)


def test_small_or_external_models_are_left_alone():
    small = chain_model([np.ones(10, np.float32)])
    assert split_inline_weights(small.SerializeToString()) is None
    assert split_inline_weights(b"\x0b\x00") is None  # a group wire type
    assert split_inline_weights(b"\x3a\x7f") is None  # the graph's length runs past the end


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    dtypes=st.lists(st.sampled_from(DTYPES), min_size=1, max_size=4),
    big=st.lists(st.booleans(), min_size=4, max_size=4),
    seed=st.integers(0, 2**16),
)
def test_split_round_trips_every_initializer(dtypes, big, seed):
    """The skeleton plus the file's bytes hold exactly the initializers of the original."""
    rng = np.random.default_rng(seed)
    arrays = []
    for dtype, large in zip(dtypes, big):
        count = (MIN_INLINE_BYTES // np.dtype(dtype).itemsize + 3) if large else 7
        arrays.append((rng.standard_normal(count) * 50).astype(dtype))
    model = make_model(
        [],
        [tensor_in("x", [1])],
        [tensor_in("x", None)],
        [init(f"w{i}", a) for i, a in enumerate(arrays)],
    )
    data = model.SerializeToString()
    skeleton = split_inline_weights(data)
    if not any(b for _, b in zip(dtypes, big)):
        assert skeleton is None
        return
    parsed = onnx.ModelProto()
    parsed.ParseFromString(skeleton)
    for tensor, expected in zip(parsed.graph.initializer, arrays):
        info = {e.key: e.value for e in tensor.external_data}
        if info:
            start = int(info["offset"])
            raw = data[start : start + int(info["length"])]
        else:
            raw = tensor.raw_data
        np.testing.assert_array_equal(np.frombuffer(raw, expected.dtype), expected)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_damaged_large_files_raise_only_popef_errors(tmp_path, data):
    model = chain_model([np.arange(MIN_INLINE_BYTES // 4 + 1, dtype=np.float32)] * 2)
    raw = bytearray(model.SerializeToString())
    for _ in range(data.draw(st.integers(0, 3))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(MIN_INLINE_BYTES, len(raw)))
    path, out = tmp_path / "m.onnx", tmp_path / "m.popef"
    path.write_bytes(bytes(raw[:cut]))
    try:
        popef.import_onnx(path, out)
    except popef.PopefError:
        assert not out.exists()
    else:
        out.unlink()
