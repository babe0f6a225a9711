"""Hypothesis strategies drawing consistent PopEF models."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from popef import (
    Anchor,
    DataType,
    Metadata,
    Option,
    ProgramFlow,
    TensorInfo,
    TensorType,
)

names = st.text(min_size=1, max_size=12)  # unicode, including astral planes
any_text = st.text(max_size=12)
program_indices = st.lists(st.integers(0, 2**32 - 1), max_size=4).map(tuple)
small_shapes = st.lists(st.integers(0, 4), min_size=0, max_size=6).map(tuple)
# Empty tensors with huge other dimensions: valid while the non-zero dimensions times the
# element size fit in 63 bits (docs/format.md, "Limits"); numpy must still make their arrays.
empty_shapes = (
    st.tuples(st.integers(1, 2**50), st.lists(st.integers(0, 16), max_size=2))
    .flatmap(lambda t: st.permutations([0, t[0], *t[1]]))
    .map(tuple)
)
shapes = st.one_of(small_shapes, empty_shapes)
dtypes = st.sampled_from(list(DataType))


def _fits(dtype: DataType, shape: tuple[int, ...]) -> bool:
    span = dtype.item_size
    for d in shape:
        span *= d or 1
    return span <= 2**63 - 1


tensor_infos = st.tuples(dtypes, shapes).filter(lambda t: _fits(*t)).map(lambda t: TensorInfo(*t))
options = st.lists(st.builds(Option, any_text, any_text), max_size=3).map(tuple)


@st.composite
def anchors(draw, name=None):
    return Anchor(
        name=draw(names) if name is None else name,
        handle=draw(any_text),
        tensor_info=draw(tensor_infos),
        programs=draw(program_indices),
        is_per_replica=draw(st.booleans()),
        type=draw(st.sampled_from(list(TensorType))),
    )


@st.composite
def metadata(draw, executable=None):
    anchor_names = draw(st.lists(names, max_size=5, unique=True))
    anchor_list = tuple(draw(anchors(name=n)) for n in anchor_names)
    seed = draw(st.sampled_from([""] + [a.handle for a in anchor_list if a.handle]))
    return Metadata(
        executable=draw(names) if executable is None else executable,
        anchors=anchor_list,
        program_flow=ProgramFlow(
            draw(program_indices), draw(program_indices), draw(program_indices)
        ),
        programs_map=draw(st.dictionaries(st.integers(0, 2**32 - 1), any_text, max_size=4)),
        replication_factor=draw(st.integers(0, 2**32 - 1)),
        num_ipus=draw(st.integers(0, 2**32 - 1)),
        ipu_version=draw(st.sampled_from([1, 2, 21])),
        is_pod=draw(st.booleans()),
        num_processes=draw(st.integers(0, 2**63 - 1)),
        is_inference=draw(st.booleans()),
        seed_handle=seed,
        engine_options=draw(options),
        device_options=draw(options),
        device_iterations=draw(st.integers(0, 2**32 - 1)),
    )


def array_for(info: TensorInfo, seed: int) -> np.ndarray:
    """Deterministic data of any dtype and shape."""
    raw = np.random.default_rng(seed).integers(0, 256, info.size_in_bytes, dtype=np.uint8)
    if info.dtype is DataType.BOOL:
        raw = raw & 1
    return raw.view(info.numpy_dtype).reshape(info.shape)


@st.composite
def models(draw):
    """A consistent model: metadata, executable, data for some input anchors, opaque blobs.

    Returns (metadata, executable bytes, compress flag, {anchor name: array},
    [(opaque name, bytes)]).
    """
    md = draw(metadata())
    executable = draw(st.binary(max_size=300))
    compress = draw(st.booleans())
    stored = {}
    for i, anchor in enumerate(md.anchors):
        if anchor.type is not TensorType.OUTPUT and draw(st.booleans()):
            stored[anchor.name] = array_for(anchor.tensor_info, i)
    opaque = draw(st.lists(st.tuples(any_text, st.binary(max_size=40)), max_size=2))
    return md, executable, compress, stored, opaque


@st.composite
def model_sets(draw):
    """Several models with distinct executable names."""
    drawn = draw(st.lists(models(), min_size=0, max_size=3, unique_by=lambda m: m[0].executable))
    return drawn
