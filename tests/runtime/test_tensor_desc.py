"""One runtime descriptor of a model's inputs and outputs, built on the format's anchor."""

from __future__ import annotations

import numpy as np

from popef import DataType
from popef.runtime import ModelRunner, TensorDesc
from popef.runtime.loaded import StreamSpec
from popef.runtime.ops import TensorSpec

from .helpers import model_of, save_bytes, small_mlp


def test_runner_describes_with_the_loaded_models_descriptors():
    g, _ = small_mlp(batch=2)
    with ModelRunner(model_of(save_bytes(g))) as runner:
        inputs, outputs = runner.get_execute_inputs(), runner.get_execute_outputs()
        assert all(a is b for a, b in zip(inputs, runner.loaded.inputs))
        assert all(a is b for a, b in zip(outputs, runner.loaded.outputs))
        anchors = {a.name: a for a in runner.model.metadata.anchors}
    [x] = inputs
    assert isinstance(x, TensorDesc) and StreamSpec is TensorDesc
    assert x.anchor is anchors["x"] and x.info is anchors["x"].tensor_info
    assert (x.name, x.handle, x.shape, x.dtype, x.data_type) == (
        "x",
        anchors["x"].handle,
        (2, 5),
        DataType.F32,
        DataType.F32,
    )
    assert x.numpy_dtype == np.float32 and x.size_in_bytes == 2 * 5 * 4
    assert not x.is_per_replica and x.spec == TensorSpec((2, 5), np.float32)
    assert str(x) == "x: F32[2, 5]"
    assert repr(x) == (
        f"TensorDesc(name='x', shape=(2, 5), dtype={DataType.F32!r}, "
        f"handle={anchors['x'].handle!r}, is_per_replica=False)"
    )


def test_per_replica_descriptor_keeps_the_anchors_shape_and_one_replicas_spec():
    g, _ = small_mlp(batch=1)
    with ModelRunner(model_of(save_bytes(g, replication_factor=3))) as runner:
        [x] = runner.get_execute_inputs()
    assert x.shape == (3, 1, 5) and x.is_per_replica and x.per_replica
    assert x.spec.shape == (1, 5) and x.size_in_bytes == 3 * 5 * 4
