"""``--diff OLD NEW``: what changed between two PopEF files.

Models are paired by executable name (when one model is left unpaired on each side, the two are
paired: a recompiled PopART model gets a new hashed name). For each pair: metadata fields and
anchors added, removed or changed. Executables (with the same rule), tensors and feeds are
paired by name; content is compared by SHA-256, and only when size, type and shape agree
(otherwise it differs anyway). Only ``--diff`` reads tensor data, and only of such pairs. The
digests are computed chunk by chunk: a compressed executable is never held whole in memory.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import popef

from .views import model_views


@dataclass(frozen=True)
class Change:
    field: str
    old: object
    new: object


@dataclass
class ModelDiff:
    old_name: str
    name: str
    metadata: list[Change] = field(default_factory=list)
    anchors_added: list[popef.Anchor] = field(default_factory=list)
    anchors_removed: list[popef.Anchor] = field(default_factory=list)
    anchors_changed: list[tuple[str, list[Change]]] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(
            self.metadata or self.anchors_added or self.anchors_removed or self.anchors_changed
        )


@dataclass
class BlobDiff:
    """Blobs of one kind, paired by name: readers added and removed, changes of the others."""

    added: list = field(default_factory=list)
    removed: list = field(default_factory=list)
    changed_items: list[tuple[str, list[Change]]] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed or self.changed_items)


@dataclass
class DiffReport:
    old: str
    new: str
    models_added: list[str]
    models_removed: list[str]
    models: list[ModelDiff]
    executables: BlobDiff
    tensors: BlobDiff
    feeds: BlobDiff

    @property
    def identical(self) -> bool:
        return not (
            self.models_added
            or self.models_removed
            or any(m.changed for m in self.models)
            or self.executables.changed
            or self.tensors.changed
            or self.feeds.changed
        )


def metadata_fields(md: popef.Metadata) -> dict[str, object]:
    """The metadata's fields but its anchors, as plain values (what a diff compares)."""
    flow = md.program_flow
    return {
        "executable": md.executable,
        "replication_factor": md.replication_factor,
        "num_ipus": md.num_ipus,
        "ipu_version": md.ipu_version,
        "is_pod": md.is_pod,
        "num_processes": md.num_processes,
        "is_inference": md.is_inference,
        "seed_handle": md.seed_handle,
        "device_iterations": md.device_iterations,
        "program_flow": {"load": list(flow.load), "main": list(flow.main), "save": list(flow.save)},
        "programs_map": dict(md.programs_map),
        "engine_options": [[o.name, o.value] for o in md.engine_options],
        "device_options": [[o.name, o.value] for o in md.device_options],
    }


def _changes(old: dict, new: dict) -> list[Change]:
    return [Change(key, old[key], new[key]) for key in old if old[key] != new[key]]


def _anchor_fields(anchor: popef.Anchor) -> dict[str, object]:
    return {
        "type": anchor.type,
        "dtype": anchor.tensor_info.dtype,
        "shape": anchor.tensor_info.shape,
        "handle": anchor.handle,
        "programs": anchor.programs,
        "is_per_replica": anchor.is_per_replica,
    }


def _pair(old: dict, new: dict):
    """Names only in old, only in new, and the pairs (old name, new name)."""
    common = [name for name in old if name in new]
    removed = [name for name in old if name not in new]
    added = [name for name in new if name not in old]
    return removed, added, [(name, name) for name in common]


def _model_diff(old: popef.Model, new: popef.Model) -> ModelDiff:
    result = ModelDiff(
        old.name, new.name, _changes(metadata_fields(old.metadata), metadata_fields(new.metadata))
    )
    old_anchors = {a.name: a for a in old.metadata.anchors}
    new_anchors = {a.name: a for a in new.metadata.anchors}
    removed, added, common = _pair(old_anchors, new_anchors)
    result.anchors_removed = [old_anchors[n] for n in removed]
    result.anchors_added = [new_anchors[n] for n in added]
    for name, _ in common:
        changes = _changes(_anchor_fields(old_anchors[name]), _anchor_fields(new_anchors[name]))
        if changes:
            result.anchors_changed.append((name, changes))
    return result


def _digest(chunks: Iterable) -> str:
    """SHA-256 of content given in chunks, so that none of it need be held whole."""
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


def _pair_single(removed: list, added: list, pairs: list) -> None:
    """Pair the last two unpaired names when exactly one is left on each side."""
    if len(removed) == 1 and len(added) == 1:
        pairs.append((removed.pop(), added.pop()))


def _blob_diff(
    old: list,
    new: list,
    fields: Callable[[object], dict],
    layout: tuple[str, ...],
    content: Callable[[object], Iterable],
    pair_single: bool = False,
    stored: Callable[[object], Iterable] | None = None,
) -> BlobDiff:
    """Pair blobs by name; hash the content of a pair whose ``layout`` fields agree."""
    old_by, new_by = {}, {}
    for reader in old:
        old_by.setdefault(reader.name, reader)
    for reader in new:
        new_by.setdefault(reader.name, reader)
    removed, added, pairs = _pair(old_by, new_by)
    if pair_single:
        _pair_single(removed, added, pairs)
    result = BlobDiff([new_by[n] for n in added], [old_by[n] for n in removed])
    for old_name, new_name in pairs:
        a, b = old_by[old_name], new_by[new_name]
        before, after = fields(a), fields(b)
        changes = _changes(before, after)
        if old_name != new_name:
            changes.insert(0, Change("name", old_name, new_name))
        # Equal fields and equal stored bytes: equal content, without inflating or hashing.
        if all(before[key] == after[key] for key in layout) and not (
            stored and before == after and _same_chunks(stored(a), stored(b))
        ):
            digest_a, digest_b = _digest(content(a)), _digest(content(b))
            if digest_a != digest_b:
                changes.append(Change("sha256", digest_a, digest_b))
        if changes:
            result.changed_items.append((new_name, changes))
    return result


def _same_chunks(a: Iterable[bytes], b: Iterable[bytes]) -> bool:
    """Whether two streams of equally cut chunks hold the same bytes (stops at the first
    difference)."""
    missing = object()
    return all(x == y for x, y in itertools.zip_longest(a, b, fillvalue=missing))


TENSOR_LAYOUT = ("dtype", "shape")
FEED_LAYOUT = ("dtype", "shape", "num_items")


def _tensor_fields(reader) -> dict[str, object]:
    info = reader.info
    fields: dict[str, object] = {"dtype": info.tensor_info.dtype, "shape": info.tensor_info.shape}
    if isinstance(info, popef.FeedDataInfo):
        fields["num_items"] = info.num_items
    return fields


def _data(reader) -> Iterable:
    """A tensor's or feed's bytes: one zero-copy view when the file is mapped."""
    view = reader.blob.payload_view()
    return (view if view is not None else reader.blob.read_payload(),)


def diff(old: popef.Reader, new: popef.Reader, old_name: str, new_name: str) -> DiffReport:
    old_models = {v.name: v for v in model_views(old)}
    new_models = {v.name: v for v in model_views(new)}
    removed, added, pairs = _pair(old_models, new_models)
    _pair_single(removed, added, pairs)
    models = [_model_diff(old_models[a], new_models[b]) for a, b in pairs]
    return DiffReport(
        old=old_name,
        new=new_name,
        models_added=added,
        models_removed=removed,
        models=models,
        executables=_blob_diff(
            old.executables(),
            new.executables(),
            lambda e: {"compressed": e.compressed, "size": e.size},
            ("size",),
            lambda e: e.iter_payload(),
            pair_single=True,
            stored=lambda e: e.iter_stored(),
        ),
        tensors=_blob_diff(old.tensors(), new.tensors(), _tensor_fields, TENSOR_LAYOUT, _data),
        feeds=_blob_diff(old.feeds(), new.feeds(), _tensor_fields, FEED_LAYOUT, _data),
    )
