"""What the renderers show, gathered from a :class:`popef.Reader` without reading tensor data.

A :class:`ModelView` is one metadata blob with the blobs linked to it by name. It is built
whether or not the file keeps PopEF's linking rules (a dump must show a broken file too); when
the rules hold it has exactly the content of the library's :class:`popef.Model`. The rules
themselves are checked by :func:`popef.model.check_links` (``--verify``).
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass

import numpy as np

import popef
from popef.model import is_user_anchor

# Elements per step when reducing tensor data, so that memory stays bounded on huge tensors.
STATS_CHUNK = 1 << 20

# Kinds whose bytes have no numpy type: their statistics would mean nothing.
RAW_DTYPES = frozenset({popef.DataType.F8, popef.DataType.F8143, popef.DataType.F8152})


@dataclass(frozen=True)
class ModelView:
    """One metadata blob and the blobs that its names link to."""

    metadata: popef.Metadata
    executable: popef.ExecutableReader | None  # None when no executable has that name
    tensors: tuple[popef.TensorReader, ...]
    feeds: tuple[popef.FeedReader, ...]
    opaque_blobs: tuple[popef.OpaqueReader, ...]

    @property
    def name(self) -> str:
        return self.metadata.executable

    @property
    def stored_names(self) -> frozenset[str]:
        return frozenset(t.name for t in self.tensors) | frozenset(f.name for f in self.feeds)

    def is_user(self, anchor: popef.Anchor) -> bool:
        return is_user_anchor(anchor, self.metadata, self.stored_names)

    def user_inputs(self) -> list[popef.Anchor]:
        return [a for a in self.metadata.anchors
                if a.type is popef.TensorType.INPUT and self.is_user(a)]

    def user_outputs(self) -> list[popef.Anchor]:
        return [a for a in self.metadata.anchors
                if a.type is popef.TensorType.OUTPUT and self.is_user(a)]


def model_views(reader: popef.Reader) -> list[ModelView]:
    """One view per metadata blob, in file order."""
    executables: dict[str, popef.ExecutableReader] = {}
    for executable in reader.executables():
        executables.setdefault(executable.name, executable)
    tensors, feeds, opaque = reader.tensors(), reader.feeds(), reader.opaque_blobs()
    views = []
    for md in reader.metadata():
        names = {a.name for a in md.anchors}
        views.append(ModelView(
            metadata=md,
            executable=executables.get(md.executable),
            tensors=tuple(t for t in tensors if t.name in names),
            feeds=tuple(f for f in feeds if f.name in names),
            opaque_blobs=tuple(o for o in opaque if o.executable == md.executable),
        ))
    return views


def blob_counts(reader: popef.Reader) -> dict[str, int]:
    """How many blobs of each type, known types first in their order, unknown ones after."""
    counts = Counter(blob.type_name for blob in reader.blobs())
    known = [t.name for t in popef.BlobType]
    order = known + sorted(set(counts) - set(known))
    return {name: counts[name] for name in order if counts[name]}


def checksum_state(blob: popef.Blob, checksums: dict[popef.Blob, bool] | None) -> str:
    """``unchecked`` (a dump reads no payload), else ``ok`` or ``mismatch`` (``--verify``)."""
    if checksums is None or blob not in checksums:
        return "unchecked"
    return "ok" if checksums[blob] else "mismatch"


def blob_name(reader: popef.Reader, blob: popef.Blob) -> str | None:
    """The name a blob carries (a metadata blob: the executable it describes); None if unknown."""
    decoded = reader.decoded(blob)
    if decoded is None:
        return None
    if isinstance(decoded, popef.Metadata):
        return decoded.executable
    return decoded.name


def file_sizes(paths: list[str]) -> list[tuple[str, int]]:
    """Each file as given on the command line, with its size in bytes."""
    return [(path, os.path.getsize(path)) for path in paths]


# -- tensor statistics (the only place that reads tensor data, besides verify and diff) ----

@dataclass(frozen=True)
class Stats:
    """min/max/mean over the values that are not NaN; None when there are none."""

    min: int | float | None
    max: int | float | None
    mean: float | None
    nan_count: int


def tensor_stats(reader: popef.TensorReader) -> Stats | None:
    """Statistics of a tensor's (or a feed's) data; None for the raw 8-bit float kinds."""
    dtype = reader.info.tensor_info.dtype
    if dtype in RAW_DTYPES:
        return None
    flat = reader.data().reshape(-1)
    if dtype is popef.DataType.BOOL:
        flat = flat.view(np.uint8)
    is_float = flat.dtype.kind == "f"
    lo = hi = None
    total, count, nans = 0.0, 0, 0
    for start in range(0, flat.size, STATS_CHUNK):
        chunk = flat[start:start + STATS_CHUNK]
        if is_float:
            nan_mask = np.isnan(chunk)
            chunk_nans = int(nan_mask.sum())
            nans += chunk_nans
            if chunk_nans == chunk.size:
                continue
            if chunk_nans:
                chunk = chunk[~nan_mask]
        c_lo, c_hi = chunk.min(), chunk.max()
        lo = c_lo if lo is None else min(lo, c_lo)
        hi = c_hi if hi is None else max(hi, c_hi)
        total += float(chunk.sum(dtype=np.float64))
        count += chunk.size
    if count == 0:
        return Stats(None, None, None, nans)
    convert = float if is_float else int
    return Stats(convert(lo), convert(hi), total / count, nans)
