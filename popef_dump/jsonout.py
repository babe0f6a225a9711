"""The ``--json`` document: library objects in, plain dicts out (schema in docs/cli.md).

Offsets and sizes are absolute byte counts, enums are given by name, and names are copied
as they are: JSON escapes them (the document is written with ``ensure_ascii``). Non-finite
statistics, which JSON cannot hold, are the strings ``"nan"``, ``"inf"`` and ``"-inf"``.

``SCHEMA_VERSION`` changes only when a field is removed, renamed or changes meaning; new fields
may appear without a change of version.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from enum import Enum
from typing import TYPE_CHECKING

import popef

from .diff import Change, metadata_fields
from .views import Stats, blob_counts, blob_name, checksum_state

if TYPE_CHECKING:
    from .diff import BlobDiff, DiffReport
    from .verify import Verification

SCHEMA_VERSION = 1


def dumps(document: dict) -> str:
    """The document as indented JSON, with lists of numbers and strings kept on one line."""
    pieces: list[str] = []
    dump(document, pieces.append)
    return "".join(pieces)


def dump(document: dict, write: Callable[[str], object]) -> None:
    """Write the document as :func:`dumps` does, piece by piece: memory stays bounded by the
    document, not by its text. An iterator in the document (e.g. :func:`blobs`) is written
    as a list, one item at a time, without being kept."""
    out: list[str] = []
    _encode(document, "\n", out, write)
    out.append("\n")
    write("".join(out))


_escape = json.encoder.encode_basestring_ascii  # what json.dumps(ensure_ascii=True) uses
_INDENT = "  "
_FLUSH_PIECES = 1 << 14  # pieces of text gathered before they are written


def _scalar(value) -> str:
    """One JSON scalar, as ``json.dumps(value, ensure_ascii=True, allow_nan=False)`` writes it
    (the common types directly: a million blobs make ten million scalars)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    kind = type(value)
    if kind is str:
        return _escape(value)
    if kind is int:
        return int.__repr__(value)
    if kind is float and math.isfinite(value):
        return float.__repr__(value)
    return json.dumps(value, ensure_ascii=True, allow_nan=False)  # raises on NaN, as before


def _encode(value, newline: str, out: list[str], write: Callable[[str], object]) -> None:
    """Append ``value`` to ``out``; ``newline`` is a line break and the current indentation.
    Between the items of a list, what ``out`` holds is written once it grows large."""
    if isinstance(value, dict):
        if not value:
            out.append("{}")
            return
        inner = newline + _INDENT
        separator = "{" + inner
        for key, item in value.items():
            out.append(separator)
            out.append(_escape(str(key)))
            out.append(": ")
            _encode(item, inner, out, write)
            separator = "," + inner
        out.append(newline + "}")
    elif isinstance(value, list) and all(not isinstance(v, (dict, list)) for v in value):
        out.append("[" + ", ".join([_scalar(v) for v in value]) + "]")
    elif isinstance(value, (list, Iterator)):
        inner = newline + _INDENT
        separator = "[" + inner
        for item in value:
            out.append(separator)
            _encode(item, inner, out, write)
            separator = "," + inner
            if len(out) > _FLUSH_PIECES:
                write("".join(out))
                out.clear()
        out.append("[]" if separator[0] == "[" else newline + "]")
    else:
        out.append(_scalar(value))


def document(files: list[tuple[str, int]] | None = None, **parts) -> dict:
    """The top-level object: the schema version, the files, then the selected parts."""
    out: dict = {"schema_version": SCHEMA_VERSION}
    if files is not None:
        out["files"] = [{"path": path, "size": size} for path, size in files]
    out.update(parts)
    return out


def _number(value):
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def _plain(value):
    """A value of a diff as JSON: enums by name, tuples as lists."""
    if isinstance(value, Enum):
        return value.name
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


# -- models --------------------------------------------------------------------------


def anchor(a: popef.Anchor) -> dict:
    info = a.tensor_info
    return {
        "name": a.name,
        "handle": a.handle,
        "type": a.type.name,
        "dtype": info.dtype.name,
        "shape": list(info.shape),
        "size_in_bytes": info.size_in_bytes,
        "programs": list(a.programs),
        "is_per_replica": a.is_per_replica,
    }


def _metadata_value(key: str, value):
    if key == "programs_map":
        return [{"index": index, "name": name} for index, name in value.items()]
    if key in ("engine_options", "device_options"):
        return [{"name": name, "value": v} for name, v in value]
    return _plain(value)


def metadata(md: popef.Metadata) -> dict:
    out = {key: _metadata_value(key, value) for key, value in metadata_fields(md).items()}
    out["num_anchors"] = len(md.anchors)
    return out


def models(
    views: list[popef.Model], *, user: bool = False, every: bool = False, meta: bool = False
) -> list[dict]:
    """One object per model with the parts asked for."""
    out = []
    for view in views:
        entry: dict = {"name": view.name, "executable_found": view.executable is not None}
        if user:
            entry["user_anchors"] = {
                "inputs": [anchor(a) for a in view.user_input_anchors()],
                "outputs": [anchor(a) for a in view.user_output_anchors()],
            }
        if every:
            stored = view.stored_names
            entry["anchors"] = [
                dict(anchor(a), stored=a.name in stored, user_provided=view.is_user_anchor(a))
                for a in view.metadata.anchors
            ]
        if meta:
            entry["metadata"] = metadata(view.metadata)
        out.append(entry)
    return out


def summary(reader: popef.Reader, views: list[popef.Model], total_size: int) -> dict:
    counts = blob_counts(reader)
    return {
        "num_blobs": sum(counts.values()),
        "total_size": total_size,
        "blob_counts": counts,
        "num_models": len(views),
    }


# -- blobs ---------------------------------------------------------------------------


def _where(reader) -> dict:
    blob = reader.blob
    return {
        "offset": blob.payload_offset,
        "blob_offset": blob.offset,
        "source": blob.source,
        "blob_index": blob.index,
    }


def blobs(reader: popef.Reader, checksums: dict[popef.Blob, bool] | None = None) -> Iterator[dict]:
    """One object per blob, made as it is written (see :func:`dump`)."""
    for blob in reader.blobs():
        yield {
            "source": blob.source,
            "index": blob.index,
            "offset": blob.offset,
            "size": blob.size,
            "type": blob.type_name,
            "type_code": int(blob.type),
            "version": blob.version,
            "name": blob_name(reader, blob),
            "info_offset": blob.info_offset,
            "info_size": blob.info_size,
            "payload_offset": blob.payload_offset,
            "payload_size": blob.payload_size,
            "checksum": blob.checksum,
            "checksum_state": checksum_state(blob, checksums),
        }


def stats(value: Stats | None) -> dict | None:
    if value is None:
        return None
    return {
        "min": _number(value.min),
        "max": _number(value.max),
        "mean": _number(value.mean),
        "nan_count": value.nan_count,
    }


def tensor(t: popef.TensorReader, stats_of: dict | None = None) -> dict:
    info = t.info.tensor_info
    out = {
        "name": t.name,
        "dtype": info.dtype.name,
        "shape": list(t.info.data_shape),
        "size_in_bytes": t.info.size_in_bytes,
    }
    if isinstance(t, popef.FeedReader):
        out["num_items"] = t.info.num_items
        out["item_shape"] = list(info.shape)
    out.update(_where(t))
    if stats_of is not None:
        out["stats"] = stats(stats_of[t])
    return out


def executable(e: popef.ExecutableReader) -> dict:
    return dict(
        {
            "name": e.name,
            "compressed": e.compressed,
            "size": e.size,
            "stored_size": e.blob.payload_size,
        },
        **_where(e),
    )


def opaque(o: popef.OpaqueReader) -> dict:
    return dict(
        {"name": o.name, "executable": o.executable, "size": o.blob.payload_size}, **_where(o)
    )


# -- verify and diff -----------------------------------------------------------------


def verification(report: Verification) -> dict:
    return {
        "ok": report.ok,
        "blobs": len(report.checksums),
        "checksums_ok": report.checksums_ok,
        "decoded": report.decoded,
        "links_checked": report.links_checked,
        "num_models": report.num_models,
        "problems": [
            {
                "kind": p.kind,
                "message": p.message,
                "source": p.source,
                "blob_index": p.blob_index,
                "offset": p.offset,
            }
            for p in report.problems
        ],
        "num_problems": report.num_problems,
        "problems_omitted": dict(report.omitted),
    }


def _change(change: Change, metadata_field: bool = False) -> dict:
    convert = (lambda v: _metadata_value(change.field, v)) if metadata_field else _plain
    return {"field": change.field, "old": convert(change.old), "new": convert(change.new)}


def _blob_diff(blob_diff: BlobDiff, describe) -> dict:
    return {
        "added": [describe(r) for r in blob_diff.added],
        "removed": [describe(r) for r in blob_diff.removed],
        "changed": [
            {"name": name, "changes": [_change(c) for c in changes]}
            for name, changes in blob_diff.changed_items
        ],
    }


def diff(report: DiffReport) -> dict:
    return {
        "old": report.old,
        "new": report.new,
        "identical": report.identical,
        "models_added": report.models_added,
        "models_removed": report.models_removed,
        "models": [
            {
                "old_name": m.old_name,
                "name": m.name,
                "metadata": [_change(c, metadata_field=True) for c in m.metadata],
                "anchors_added": [anchor(a) for a in m.anchors_added],
                "anchors_removed": [anchor(a) for a in m.anchors_removed],
                "anchors_changed": [
                    {"name": name, "changes": [_change(c) for c in changes]}
                    for name, changes in m.anchors_changed
                ],
            }
            for m in report.models
        ],
        "executables": _blob_diff(report.executables, executable),
        "tensors": _blob_diff(report.tensors, tensor),
        "feeds": _blob_diff(report.feeds, tensor),
    }
