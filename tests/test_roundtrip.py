"""Property tests: write -> read gives equal objects; write(read(f)) gives identical bytes."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings

import popef
from popef.format import ALIGNMENT

from .helpers import models_bytes, read_bytes, rewrite
from .strategies import metadata, model_sets

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(model_sets())
def test_written_models_read_back_equal(model_list):
    data = models_bytes(model_list)
    reader = read_bytes(data)
    assert len(data) % ALIGNMENT == 0
    assert [md for md, *_ in model_list] == reader.metadata()
    executables = {e.name: e for e in reader.executables()}
    for md, executable, compress, _stored, _opaque in model_list:
        assert executables[md.executable].payload() == executable
        assert executables[md.executable].compressed == compress
    tensors = reader.tensors()
    expected = [(name, array) for *_, stored, _ in model_list for name, array in stored.items()]
    assert [t.name for t in tensors] == [name for name, _ in expected]
    for tensor, (_, array) in zip(tensors, expected):
        assert tensor.info.tensor_info == popef.TensorInfo.of(array)
        assert tensor.data().dtype == array.dtype
        np.testing.assert_array_equal(tensor.data(), array)
        assert tensor.blob.payload_offset % ALIGNMENT == 0
        tensor.verify()
    opaque = [(o.name, o.executable, o.data()) for o in reader.opaque_blobs()]
    assert opaque == [(n, md.executable, d) for md, *_, op in model_list for n, d in op]


@SETTINGS
@given(model_sets())
def test_rewrite_is_byte_identical(model_list):
    data = models_bytes(model_list)
    assert rewrite(read_bytes(data)) == data


@SETTINGS
@given(metadata())
def test_metadata_rewritten_from_objects_is_byte_identical(md):
    import io

    first = io.BytesIO()
    with popef.Writer(first) as writer:
        writer.write_metadata(md)
    again = io.BytesIO()
    with popef.Writer(again) as writer:
        writer.write_metadata(read_bytes(first.getvalue()).metadata()[0])
    assert again.getvalue() == first.getvalue()


@SETTINGS
@given(model_sets(), model_sets())
def test_concatenated_files_hold_both(first, second):
    a, b = models_bytes(first), models_bytes(second)
    both = read_bytes(a + b)
    assert both.metadata() == read_bytes(a).metadata() + read_bytes(b).metadata()
    assert rewrite(both) == a + b
