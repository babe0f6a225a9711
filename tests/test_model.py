"""Models: grouping blobs and the user-anchor rule."""

from __future__ import annotations

import io

import numpy as np

import popef
from popef import Anchor, DataType, TensorInfo, TensorType

from .helpers import read_bytes


def _anchor(name, programs, ttype=TensorType.INPUT):
    return Anchor(name, f"h2d_{name}", TensorInfo(DataType.F32, (2,)), programs, False, ttype)


def test_user_anchors_are_main_program_anchors_without_data():
    md = popef.Metadata(
        "m",
        anchors=(
            _anchor("x", (5,)),
            _anchor("y", (5,), TensorType.OUTPUT),
            _anchor("w", (0,)),  # weight, stored
            _anchor("frozen", (5,)),  # main-program input with stored data: not user-provided
            _anchor("nolist", ()),  # empty programs list counts as main
            _anchor("saved", (7,), TensorType.OUTPUT),  # save program only
            _anchor("unknown", (5,), TensorType.UNKNOWN),
        ),
        program_flow=popef.ProgramFlow((0,), (5,), (7,)),
    )
    stream = io.BytesIO()
    with popef.Writer(stream) as writer:
        writer.write_metadata(md)
        writer.create_executable("m").close()
        writer.write_tensor("w", np.zeros(2, np.float32))
        writer.write_tensor("frozen", np.ones(2, np.float32))
    model = read_bytes(stream.getvalue()).models()[0]
    assert [a.name for a in model.user_anchors()] == ["x", "y", "nolist", "unknown"]
    assert [a.name for a in model.user_input_anchors()] == ["x", "nolist"]
    assert [a.name for a in model.user_output_anchors()] == ["y"]
    assert model.stored_names == {"w", "frozen"}
    assert model.get_tensor_data("frozen").data().tolist() == [1, 1]


def test_several_models_in_one_file_each_get_their_blobs():
    stream = io.BytesIO()
    with popef.Writer(stream) as writer:
        for name in ("a", "b"):
            writer.write_metadata(popef.Metadata(name, anchors=(_anchor(f"w_{name}", (0,)),)))
            writer.create_executable(name).close()
            writer.write_tensor(f"w_{name}", np.zeros(2, np.float32))
            writer.create_opaque_blob("popart", name).close()
    models = read_bytes(stream.getvalue()).models()
    assert [m.name for m in models] == ["a", "b"]
    assert [[t.name for t in m.tensors] for m in models] == [["w_a"], ["w_b"]]
    assert [len(m.opaque_blobs) for m in models] == [1, 1]


def test_seed_anchor_found_by_handle():
    md = popef.Metadata("m", anchors=(_anchor("seed", (2,)),), seed_handle="h2d_seed")
    stream = io.BytesIO()
    with popef.Writer(stream) as writer:
        writer.write_metadata(md)
        writer.create_executable("m").close()
    assert read_bytes(stream.getvalue()).models()[0].seed_anchor().name == "seed"


def test_variables_alone_make_no_model():
    stream = io.BytesIO()
    with popef.Writer(stream) as writer:
        writer.write_tensor("w", np.zeros(2))
    assert read_bytes(stream.getvalue()).models() == []
