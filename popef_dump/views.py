"""What the renderers show, gathered from a :class:`popef.Reader` without reading tensor data.

The models a dump shows come from the library's lenient linker,
:func:`popef.model.link_models`: one :class:`popef.Model` per metadata blob, built whether or
not the file keeps PopEF's linking rules (a dump must show a broken file too), with the broken
rules as messages (``--verify`` lists them all).
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass

import numpy as np

import popef
from popef.model import link_models

# Elements per step when reducing tensor data, so that memory stays bounded on huge tensors.
STATS_CHUNK = 1 << 20

# Kinds whose bytes have no numpy type: their statistics would mean nothing.
RAW_DTYPES = frozenset({popef.DataType.F8, popef.DataType.F8143, popef.DataType.F8152})


def model_views(reader: popef.Reader) -> list[popef.Model]:
    """One model per metadata blob, in file order, linked leniently."""
    return list(link_models(reader).models)


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
        chunk = flat[start : start + STATS_CHUNK]
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
