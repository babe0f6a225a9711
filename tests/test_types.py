"""The data model: enum values, sizes, numpy mapping, validation."""

from __future__ import annotations

import numpy as np
import pytest

import popef
from popef import Anchor, DataType, Metadata, TensorInfo, TensorType

# docs/format.md §4: declaration order of PopEF's enums, and element sizes
DATA_TYPES = [
    ("BOOL", 1),
    ("F8", 1),
    ("F16", 2),
    ("F32", 4),
    ("F64", 8),
    ("S8", 1),
    ("U8", 1),
    ("S16", 2),
    ("U16", 2),
    ("S32", 4),
    ("U32", 4),
    ("S64", 8),
    ("U64", 8),
    ("F8143", 1),
    ("F8152", 1),
]


def test_enum_values_follow_the_spec():
    assert [(t.name, t.value) for t in DataType] == [(n, i) for i, (n, _) in enumerate(DATA_TYPES)]
    assert [t.name for t in popef.BlobType] == [
        "POPLAR_EXECUTABLE",
        "METADATA",
        "DATA_TENSOR",
        "DATA_FEED",
        "OPAQUE",
    ]
    assert [t.name for t in TensorType] == ["UNKNOWN", "INPUT", "OUTPUT"]


@pytest.mark.parametrize("name, size", DATA_TYPES)
def test_item_sizes_and_numpy_views(name, size):
    dtype = DataType[name]
    assert dtype.item_size == size == dtype.numpy_dtype.itemsize
    assert TensorInfo(dtype, (2, 3)).size_in_bytes == 6 * size
    assert TensorInfo(dtype, ()).size_in_bytes == size
    assert TensorInfo(dtype, (0, 5)).size_in_bytes == 0


def test_numpy_round_trip_of_dtypes():
    for dtype in DataType:
        if dtype.name.startswith("F8"):
            assert dtype.numpy_dtype == np.uint8
            continue
        assert DataType.from_numpy(dtype.numpy_dtype) is dtype
    assert DataType.from_numpy(np.dtype(">f4")) is DataType.F32
    with pytest.raises(popef.PopefError, match="no PopEF data type"):
        DataType.from_numpy(np.complex64)


def test_mnist_input_size():
    assert TensorInfo(DataType.F32, (1, 1, 28, 28)).size_in_bytes == 3136


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: TensorInfo(DataType.F32, (-1,)), "shape must be in"),
        (lambda: TensorInfo(99, (1,)), "unknown data type"),
        (lambda: TensorInfo(DataType.F32, (1,) * 33), "rank 33"),
        (lambda: TensorInfo(DataType.F64, (2**62, 4)), r"spans more than 2\*\*63-1 bytes"),
        (lambda: Anchor("a", 5, TensorInfo(DataType.F32, ())), "handle must be a str"),
        (lambda: Anchor("a", "h", (1, 2)), "must be a TensorInfo"),
        (lambda: Anchor("a", "h", TensorInfo(DataType.F32, ()), programs=(-1,)), "programs"),
        (lambda: Anchor("a", "h", TensorInfo(DataType.F32, ()), type=7), "unknown tensor type"),
        (lambda: Metadata("m", replication_factor=2**32), "replication_factor"),
        (lambda: Metadata("m", anchors=("x",)), "not an Anchor"),
        (lambda: Metadata("m", engine_options=(("a", "b"),)), "not an Option"),
        (lambda: Metadata("m", programs_map={0: 5}), "programs_map name"),
    ],
)
def test_invalid_values_are_refused(make, message):
    with pytest.raises(popef.PopefError, match=message):
        make()


def test_dataclasses_are_frozen_and_hashable():
    md = Metadata("m", programs_map={5: "Program"})
    with pytest.raises(AttributeError):
        md.executable = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        md.programs_map[1] = "x"  # type: ignore[index]
    assert hash(md) == hash(Metadata("m", programs_map={5: "Program"}))
    assert md.program_name(5) == "Program" and md.program_name(1) is None
