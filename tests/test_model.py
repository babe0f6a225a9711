"""Models: grouping blobs and the user-anchor rule."""

from __future__ import annotations

import io

import numpy as np
from hypothesis import HealthCheck, given, settings

import popef
from popef import Anchor, DataType, TensorInfo, TensorType

from .helpers import models_bytes, read_bytes
from .strategies import model_sets


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


def _broken_file() -> bytes:
    """Two metadata blobs: 'a' whose executable is missing, 'b' complete but for a tensor of
    the wrong shape, then an orphan tensor."""
    stream = io.BytesIO()
    with popef.Writer(stream) as writer:
        writer.write_metadata(popef.Metadata("a", anchors=(_anchor("x", ()),)))
        writer.write_metadata(popef.Metadata("b", anchors=(_anchor("w", (0,)), _anchor("y", (5,)))))
        writer.create_executable("b").close()
        writer.write_tensor("w", np.zeros(3, np.float32))
        writer.write_tensor("orphan", np.zeros(2, np.float32))
    return stream.getvalue()


def test_lenient_linker_gives_a_model_per_metadata_and_every_problem():
    from popef.model import check_links, link_models

    reader = read_bytes(_broken_file())
    linking = link_models(reader)
    assert not linking.ok
    assert [m.name for m in linking.models] == ["a", "b"]
    missing, complete = linking.models
    assert missing.executable is None
    assert [label for label, _ in missing.blobs()] == ["metadata of 'a'"]
    assert [a.name for a in missing.user_input_anchors()] == ["x"]
    assert complete.executable is not None and complete.executable.name == "b"
    assert [t.name for t in complete.tensors] == ["w"]  # linked by name despite its shape
    assert not complete.is_user_anchor(complete.get_anchor("w"))
    assert list(linking.problems) == check_links(reader)
    assert [p.split(":")[0] for p in linking.problems] == [
        "metadata must name an existing executable",
        "tensor data must match its anchor's dtype and shape",
        "tensor data must match an anchor",
    ]


def test_strict_linker_raises_the_first_problem_the_lenient_one_lists():
    from popef.model import link_models

    reader = read_bytes(_broken_file())
    first = link_models(reader).problems[0]
    try:
        reader.models()
    except popef.ModelError as exc:
        assert str(exc) == f"{first} (and 2 more)"
    else:
        raise AssertionError("a broken file built its models")


def test_strict_models_follow_executable_order_lenient_ones_metadata_order():
    from popef.model import link_models

    stream = io.BytesIO()
    with popef.Writer(stream) as writer:
        writer.write_metadata(popef.Metadata("b"))
        writer.write_metadata(popef.Metadata("a"))
        writer.create_executable("a").close()
        writer.create_executable("b").close()
    reader = read_bytes(stream.getvalue())
    linking = link_models(reader)
    assert linking.ok
    assert [m.name for m in linking.models] == ["b", "a"]
    assert [m.name for m in reader.models()] == ["a", "b"]
    strict = {m.name: m for m in reader.models()}
    for lenient in linking.models:
        model = strict[lenient.name]
        assert lenient.executable is model.executable and lenient.metadata is model.metadata
        assert lenient.metadata_blob is model.metadata_blob


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model_sets())
def test_the_two_linkers_agree_on_any_drawn_file(model_list):
    from popef.model import link_models

    reader = read_bytes(models_bytes(model_list))
    linking = link_models(reader)
    assert [m.metadata for m in linking.models] == reader.metadata()
    try:
        strict = reader.models()
    except popef.ModelError as exc:
        assert not linking.ok and str(exc).startswith(linking.problems[0])
        return
    assert linking.ok
    lenient = {m.name: m for m in linking.models}
    assert [m.name for m in strict] == [e.name for e in reader.executables()]
    for model in strict:
        other = lenient[model.name]
        assert other.executable is model.executable
        assert [(label, blob.offset) for label, blob in other.blobs()] == [
            (label, blob.offset) for label, blob in model.blobs()
        ]
