"""Text renderers: library objects in, a :class:`popef_dump.doc.Doc` out.

Pure functions with no I/O: the command prints what they return, with colour on a terminal
(:func:`~popef_dump.doc.to_rich`) or as plain text (:func:`~popef_dump.doc.to_plain`). Every
string read from a file goes through :func:`~popef_dump.doc.clean` or
:func:`~popef_dump.doc.quote` here. The layout of the anchor listings is Graphcore's
``popef_dump --user-anchors`` layout, byte for byte; docs/cli.md shows every other one.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum
from typing import TYPE_CHECKING

import popef

from .doc import (
    ADDED,
    BAD,
    CHANGED,
    DIM,
    GOOD,
    HEADING,
    NAME,
    REMOVED,
    TYPE,
    Column,
    Doc,
    clean,
    join,
    quote,
)
from .verify import MAX_PROBLEMS_PER_KIND
from .views import Stats, blob_counts, blob_name, checksum_state

if TYPE_CHECKING:
    from .diff import Change, DiffReport
    from .verify import Verification

CHECKSUM_STATES = {
    "unchecked": ("unchecked", DIM),
    "ok": ("ok", GOOD),
    "mismatch": ("MISMATCH", BAD),
}


def files_header(paths: Iterable[str]) -> Doc:
    """``PopEF file: <path>``, one line per file as given on the command line."""
    doc = Doc()
    for path in paths:
        doc.line(0, "PopEF file: ", (clean(path), NAME))
    return doc


def shape_text(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def count(n: int, word: str) -> str:
    """``1 blob``, ``2 blobs``."""
    return f"{n} {word}" + ("" if n == 1 else "s")


def number(value) -> str:
    """A statistic: integers as they are, floats to 6 significant digits, None as ``-``."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


# -- anchors -------------------------------------------------------------------------


def _model_title(doc: Doc, view: popef.Model, several: bool) -> None:
    if several:
        doc.line(0, "Model: ", (quote(view.name), NAME))


def _anchor(doc: Doc, anchor: popef.Anchor, marked: popef.Model | None = None) -> None:
    """One anchor in Graphcore's layout; ``marked``: add whether it is stored, user-provided."""
    info = anchor.tensor_info
    doc.line(4, "Name: ", (quote(anchor.name), NAME), ":")
    doc.line(
        6,
        "TensorInfo: { dtype: ",
        (info.dtype.name, TYPE),
        f", sizeInBytes: {info.size_in_bytes}, shape {shape_text(info.shape)} }}",
    )
    doc.line(6, f"Programs: {shape_text(anchor.programs)}")
    doc.line(6, "Handle: ", clean(anchor.handle))
    doc.line(6, f"IsPerReplica: {anchor.is_per_replica}")
    if marked is not None:
        doc.line(6, f"Stored: {anchor.name in marked.stored_names}")
        doc.line(6, f"UserProvided: {marked.is_user_anchor(anchor)}")


def _group(
    doc: Doc, title: str, anchors: list[popef.Anchor], marked: popef.Model | None = None
) -> None:
    doc.line(2, (title + ":", HEADING))
    if not anchors:
        doc.line(4, ("(none)", DIM))
    for anchor in anchors:
        _anchor(doc, anchor, marked)


def _no_models(doc: Doc) -> Doc:
    return doc.line(2, ("(no model: the input has no metadata blob)", DIM))


def user_anchors(views: list[popef.Model]) -> Doc:
    """The anchors a caller feeds and reads (docs/format.md §6), in Graphcore's layout."""
    doc = Doc()
    for view in views:
        _model_title(doc, view, len(views) > 1)
        doc.line(0, ("Anchors:", HEADING))
        _group(doc, "Inputs (User-provided)", view.user_input_anchors())
        _group(doc, "Outputs (User-provided)", view.user_output_anchors())
    if not views:
        _no_models(doc.line(0, ("Anchors:", HEADING)))
    return doc


ANCHOR_GROUPS = (
    (popef.TensorType.INPUT, "Inputs"),
    (popef.TensorType.OUTPUT, "Outputs"),
    (popef.TensorType.UNKNOWN, "Unknown"),
)


def all_anchors(views: list[popef.Model]) -> Doc:
    """Every anchor, grouped by type, each marked ``Stored`` and ``UserProvided``."""
    doc = Doc()
    for view in views:
        _model_title(doc, view, len(views) > 1)
        doc.line(0, ("Anchors:", HEADING))
        for anchor_type, title in ANCHOR_GROUPS:
            anchors = [a for a in view.metadata.anchors if a.type is anchor_type]
            if anchors or anchor_type is not popef.TensorType.UNKNOWN:
                _group(doc, title, anchors, marked=view)
    if not views:
        _no_models(doc.line(0, ("Anchors:", HEADING)))
    return doc


# -- metadata ------------------------------------------------------------------------


def _missing_executable(view: popef.Model) -> tuple:
    """Spans that flag a metadata blob naming no executable blob of the input."""
    return () if view.executable else ("  ", ("(no such executable blob)", BAD))


def _programs(md: popef.Metadata, indices: tuple[int, ...]) -> str:
    names = [md.program_name(i) for i in indices]
    text = shape_text(indices)
    if indices:
        text += " (" + ", ".join("?" if n is None else clean(n) for n in names) + ")"
    return text


def _options(doc: Doc, title: str, options: tuple[popef.Option, ...]) -> None:
    doc.line(2, f"{title}:" + ("" if options else " []"))
    for option in options:
        doc.line(4, (quote(option.name), NAME), ": ", quote(option.value))


def metadata(views: list[popef.Model]) -> Doc:
    """Every field of each metadata blob, program indices named from the programs map."""
    doc = Doc()
    for view in views:
        md = view.metadata
        _model_title(doc, view, len(views) > 1)
        doc.line(0, ("Metadata:", HEADING))
        doc.line(2, "Executable: ", (quote(md.executable), NAME), *_missing_executable(view))
        doc.line(2, f"ReplicationFactor: {md.replication_factor}")
        doc.line(2, f"NumIpus: {md.num_ipus}")
        doc.line(2, f"IpuVersion: {md.ipu_version}")
        doc.line(2, f"IsPOD: {md.is_pod}")
        doc.line(2, f"NumProcesses: {md.num_processes}")
        doc.line(2, f"IsInference: {md.is_inference}")
        doc.line(2, f"SeedHandle: {quote(md.seed_handle)}")
        doc.line(2, f"DeviceIterations: {md.device_iterations}")
        doc.line(2, "ProgramFlow:")
        flow = md.program_flow
        for title, indices in (("Load", flow.load), ("Main", flow.main), ("Save", flow.save)):
            doc.line(4, f"{title}: {_programs(md, indices)}")
        doc.line(2, "ProgramsMap:" + ("" if md.programs_map else " {}"))
        for index, name in md.programs_map.items():
            doc.line(4, f"{index}: ", clean(name))
        _options(doc, "EngineOptions", md.engine_options)
        _options(doc, "DeviceOptions", md.device_options)
        doc.line(2, f"Anchors: {len(md.anchors)}")
    if not views:
        _no_models(doc.line(0, ("Metadata:", HEADING)))
    return doc


# -- summary -------------------------------------------------------------------------


def summary(reader: popef.Reader, views: list[popef.Model], total_size: int) -> Doc:
    """Blob counts per type, the total size, the models and their user anchors."""
    doc = Doc()
    counts = blob_counts(reader)
    doc.line(0, ("Blobs:", HEADING), f" {sum(counts.values())} in {total_size} bytes")
    if counts:
        doc.table(
            [Column("Type"), Column("Count", right=True)],
            [((name, TYPE), str(n)) for name, n in counts.items()],
        )
    doc.line(0, ("Models:", HEADING), f" {len(views)}")
    for view in views:
        anchors = view.metadata.anchors
        doc.line(
            2,
            "Model ",
            (quote(view.name), NAME),
            f": {count(len(anchors), 'anchor')}, "
            f"{count(len(view.tensors), 'stored tensor')}, {count(len(view.feeds), 'feed')}",
            *_missing_executable(view),
        )
        rows = [
            (
                kind,
                (quote(a.name), NAME),
                (a.tensor_info.dtype.name, TYPE),
                shape_text(a.tensor_info.shape),
                str(a.tensor_info.size_in_bytes),
            )
            for kind, group in (
                ("input", view.user_input_anchors()),
                ("output", view.user_output_anchors()),
            )
            for a in group
        ]
        if rows:
            doc.table(
                [
                    Column("User"),
                    Column("Name"),
                    Column("DType"),
                    Column("Shape"),
                    Column("Size", right=True),
                ],
                rows,
                indent=4,
            )
        else:
            doc.line(4, ("(no user anchors)", DIM))
    return doc


# -- blob listings -------------------------------------------------------------------


def blobs(reader: popef.Reader, checksums: dict[popef.Blob, bool] | None = None) -> Doc:
    """One row per blob: where it is, what it is, its checksum and whether it was checked."""
    rows = []
    for blob in reader.blobs():
        name = blob_name(reader, blob)
        state = CHECKSUM_STATES[checksum_state(blob, checksums)]
        rows.append(
            (
                clean(blob.source),
                str(blob.index),
                (blob.type_name, TYPE),
                clean(blob.version),
                f"{blob.offset:#x}",
                str(blob.size),
                "-" if name is None else (quote(name), NAME),
                f"{blob.checksum:#010x}",
                state,
            )
        )
    doc = Doc().line(0, ("Blobs:", HEADING), f" {len(rows)}")
    if rows:
        doc.table(
            [
                Column("File"),
                Column("#", right=True),
                Column("Type"),
                Column("Version"),
                Column("Offset", right=True),
                Column("Size", right=True),
                Column("Name"),
                Column("Checksum"),
                Column("State"),
            ],
            rows,
        )
    return doc


STATS_COLUMNS = [
    Column("Min", right=True),
    Column("Max", right=True),
    Column("Mean", right=True),
    Column("NaN", right=True),
]


def _stats_cells(stats: Stats | None) -> tuple[str, ...]:
    if stats is None:
        return ("n/a",) * 4
    return (number(stats.min), number(stats.max), number(stats.mean), str(stats.nan_count))


def _listing(title: str, columns: list[Column], rows: list[tuple]) -> Doc:
    doc = Doc().line(0, (f"{title}:", HEADING), f" {len(rows)}")
    if rows:
        doc.table(columns, rows)
    return doc


def tensors(
    readers: list[popef.TensorReader], stats: dict[popef.TensorReader, Stats | None] | None = None
) -> Doc:
    columns = [
        Column("Name"),
        Column("DType"),
        Column("Shape"),
        Column("Size", right=True),
        Column("Offset", right=True),
        Column("File"),
    ]
    rows = []
    for t in readers:
        info = t.info.tensor_info
        row = (
            (quote(t.name), NAME),
            (info.dtype.name, TYPE),
            shape_text(info.shape),
            str(t.info.size_in_bytes),
            f"{t.blob.payload_offset:#x}",
            clean(t.blob.source),
        )
        rows.append(row + (_stats_cells(stats[t]) if stats is not None else ()))
    return _listing("Tensors", columns + (STATS_COLUMNS if stats is not None else []), rows)


def feeds(
    readers: list[popef.FeedReader], stats: dict[popef.TensorReader, Stats | None] | None = None
) -> Doc:
    columns = [
        Column("Name"),
        Column("DType"),
        Column("Items", right=True),
        Column("ItemShape"),
        Column("Size", right=True),
        Column("Offset", right=True),
        Column("File"),
    ]
    rows = []
    for f in readers:
        info = f.info.tensor_info
        row = (
            (quote(f.name), NAME),
            (info.dtype.name, TYPE),
            str(f.info.num_items),
            shape_text(info.shape),
            str(f.info.size_in_bytes),
            f"{f.blob.payload_offset:#x}",
            clean(f.blob.source),
        )
        rows.append(row + (_stats_cells(stats[f]) if stats is not None else ()))
    return _listing("Feeds", columns + (STATS_COLUMNS if stats is not None else []), rows)


def executables(readers: list[popef.ExecutableReader]) -> Doc:
    columns = [
        Column("Name"),
        Column("Compressed"),
        Column("Size", right=True),
        Column("Stored", right=True),
        Column("Offset", right=True),
        Column("File"),
    ]
    rows = [
        (
            (quote(e.name), NAME),
            str(e.compressed),
            str(e.size),
            str(e.blob.payload_size),
            f"{e.blob.payload_offset:#x}",
            clean(e.blob.source),
        )
        for e in readers
    ]
    return _listing("Executables", columns, rows)


def opaque(readers: list[popef.OpaqueReader]) -> Doc:
    columns = [
        Column("Name"),
        Column("Executable"),
        Column("Size", right=True),
        Column("Offset", right=True),
        Column("File"),
    ]
    rows = [
        (
            (quote(o.name), NAME),
            quote(o.executable),
            str(o.blob.payload_size),
            f"{o.blob.payload_offset:#x}",
            clean(o.blob.source),
        )
        for o in readers
    ]
    return _listing("Opaque blobs", columns, rows)


# -- verify and diff -----------------------------------------------------------------


def verification(report: Verification) -> Doc:
    doc = Doc().line(0, ("Verify:", HEADING))
    total = len(report.checksums)
    doc.line(2, f"Checksums: {report.checksums_ok} of {count(total, 'blob')} match")
    doc.line(2, f"Decoding: {report.decoded} of {count(total, 'blob')} decode")
    if report.links_checked:
        doc.line(
            2,
            f"Linking rules: {count(report.num_models, 'model')}, "
            f"{count(report.link_problems, 'problem')}",
        )
    else:
        doc.line(2, "Linking rules: ", ("not checked: some blobs do not decode", DIM))
    if report.ok:
        doc.line(2, "Result: ", ("OK", GOOD))
        return doc
    doc.line(2, "Result: ", (count(report.num_problems, "problem"), BAD))
    for problem in report.problems:
        doc.line(4, (f"{problem.kind}:", BAD), " ", clean(problem.message))
    for kind, omitted in report.omitted.items():
        more = (
            f"... and {omitted} more {kind} problems like these (the first "
            f"{MAX_PROBLEMS_PER_KIND} of each kind are listed)"
        )
        doc.line(4, (f"{kind}:", BAD), " ", (more, DIM))
    return doc


LABELS = {
    "executable": "Executable",
    "replication_factor": "ReplicationFactor",
    "num_ipus": "NumIpus",
    "ipu_version": "IpuVersion",
    "is_pod": "IsPOD",
    "num_processes": "NumProcesses",
    "is_inference": "IsInference",
    "seed_handle": "SeedHandle",
    "device_iterations": "DeviceIterations",
    "program_flow": "ProgramFlow",
    "programs_map": "ProgramsMap",
    "engine_options": "EngineOptions",
    "device_options": "DeviceOptions",
    "type": "Type",
    "dtype": "DType",
    "shape": "Shape",
    "handle": "Handle",
    "programs": "Programs",
    "is_per_replica": "IsPerReplica",
    "num_items": "Items",
    "compressed": "Compressed",
    "size": "Size",
    "name": "Name",
    "sha256": "SHA-256",
}


def _value(value) -> str:
    """A value of a diff: enums by name, strings quoted and escaped, containers bracketed."""
    if isinstance(value, Enum):
        return value.name
    if isinstance(value, str):
        return quote(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_value(k)}: {_value(v)}" for k, v in value.items()) + "}"
    return str(value)


def _change(change: Change) -> str:
    if change.field == "sha256":  # a digest, not a name: shortened and unquoted
        old, new = str(change.old)[:16], str(change.new)[:16]
    elif change.field in ("engine_options", "device_options"):  # [name, value] pairs
        old, new = (_options_text(v) for v in (change.old, change.new))
    else:
        old, new = _value(change.old), _value(change.new)
    return f"{LABELS.get(change.field, change.field)}: {old} -> {new}"


def _options_text(options) -> str:
    return "[" + ", ".join(f"{quote(name)}: {quote(value)}" for name, value in options) + "]"


def describe(reader) -> str:
    """A blob of a diff in a few words: dtype and shape, items, or size."""
    if isinstance(reader, popef.ExecutableReader):
        return f"{reader.size} bytes" + (", compressed" if reader.compressed else "")
    info = reader.info.tensor_info
    items = f"{reader.info.num_items} x " if isinstance(reader, popef.FeedReader) else ""
    return f"{info.dtype.name} {items}{shape_text(info.shape)}"


def _anchor_brief(anchor: popef.Anchor) -> str:
    info = anchor.tensor_info
    return f"{anchor.type.name} {info.dtype.name} {shape_text(info.shape)}"


def _changed_items(doc: Doc, indent: int, removed, added, changed, brief) -> None:
    """Lines ``- name``, ``+ name`` and ``~ name: changes`` for named things of a diff."""
    for item in removed:
        doc.line(indent, ("- ", REMOVED), (quote(item.name), REMOVED), " " + brief(item))
    for item in added:
        doc.line(indent, ("+ ", ADDED), (quote(item.name), ADDED), " " + brief(item))
    for name, changes in changed:
        doc.line(
            indent,
            ("~ ", CHANGED),
            (quote(name), CHANGED),
            ": " + "; ".join(_change(c) for c in changes),
        )


def diff(report: DiffReport) -> Doc:
    """What changed between two files: models, metadata fields, anchors, tensors, executables."""
    head = Doc().line(0, ("--- ", REMOVED), (clean(report.old), REMOVED))
    head.line(0, ("+++ ", ADDED), (clean(report.new), ADDED))
    sections = [head]
    models = Doc()
    for name in report.models_removed:
        models.line(0, ("- Model ", REMOVED), (quote(name), REMOVED))
    for name in report.models_added:
        models.line(0, ("+ Model ", ADDED), (quote(name), ADDED))
    sections.append(models)
    for model in report.models:
        if not model.changed:
            continue
        doc = Doc().line(0, ("Model:", HEADING), " ", (quote(model.name), NAME))
        if model.metadata:
            doc.line(2, ("Metadata:", HEADING))
            for change in model.metadata:
                doc.line(4, ("~ ", CHANGED), _change(change))
        if model.anchors_added or model.anchors_removed or model.anchors_changed:
            doc.line(2, ("Anchors:", HEADING))
            _changed_items(
                doc,
                4,
                model.anchors_removed,
                model.anchors_added,
                model.anchors_changed,
                _anchor_brief,
            )
        sections.append(doc)
    for title, blob_diff in (
        ("Executables", report.executables),
        ("Tensors", report.tensors),
        ("Feeds", report.feeds),
    ):
        if not blob_diff.changed:
            continue
        doc = Doc().line(0, (f"{title}:", HEADING))
        _changed_items(
            doc, 2, blob_diff.removed, blob_diff.added, blob_diff.changed_items, describe
        )
        sections.append(doc)
    if report.identical:
        sections.append(Doc().line(0, ("No differences", GOOD)))
    return join(sections)
