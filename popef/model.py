"""Model: one executable with its metadata and the blobs linked to it by name.

Two linkers share one implementation. ``build_models`` (strict) groups the blobs of a reader
and enforces PopEF's linking rules (docs/format.md §6); a broken rule raises
:class:`ModelError` naming the rule and the names. ``link_models`` (lenient) never raises: it
gives one model per metadata blob however broken the file is, with every problem as a message,
for tools that must show a broken file too (``popef_dump``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from .errors import ChecksumError, ModelError, TruncatedError
from .types import Anchor, BlobType, Metadata, TensorType

if TYPE_CHECKING:
    from .reader import Blob, ExecutableReader, FeedReader, OpaqueReader, Reader, TensorReader

__all__ = [
    "Linking",
    "Model",
    "build_models",
    "check_links",
    "corrupt_as",
    "is_user_anchor",
    "link_models",
]

T = TypeVar("T")


def is_user_anchor(anchor: Anchor, metadata: Metadata, stored: set[str] | frozenset[str]) -> bool:
    """Fed or read by the caller: used by a main program (or by no listed program), no data
    stored."""
    if anchor.name in stored:
        return False
    return not anchor.programs or bool(set(anchor.programs) & set(metadata.program_flow.main))


@dataclass(frozen=True, eq=False)
class Model:
    """An executable, its metadata, and the tensor, feed and opaque blobs that belong to it.

    ``executable`` is None only in a model from the lenient :func:`link_models`, when no
    executable blob has the name the metadata gives."""

    executable: ExecutableReader | None
    metadata: Metadata
    tensors: tuple[TensorReader, ...] = ()
    feeds: tuple[FeedReader, ...] = ()
    opaque_blobs: tuple[OpaqueReader, ...] = ()
    metadata_blob: Blob | None = None  # None for a Model made by hand

    @property
    def name(self) -> str:
        return self.metadata.executable if self.executable is None else self.executable.name

    def blobs(self) -> list[tuple[str, Blob]]:
        """Every blob of the model with what it is (``"tensor data 'w'"``): executable,
        metadata, tensor, feed and opaque data."""
        found: list[tuple[str, Blob]] = []
        if self.executable is not None:
            found.append((f"executable '{self.name}'", self.executable.blob))
        if self.metadata_blob is not None:
            found.append((f"metadata of '{self.name}'", self.metadata_blob))
        found += [(f"tensor data '{t.name}'", t.blob) for t in self.tensors]
        found += [(f"feed data '{f.name}'", f.blob) for f in self.feeds]
        found += [(f"opaque blob '{o.name}'", o.blob) for o in self.opaque_blobs]
        return found

    def verify(self) -> None:
        """Check the checksum of every blob of the model; raises :class:`ChecksumError` naming
        the blob (or :class:`TruncatedError` when a file shrank since it was opened)."""
        for label, blob in self.blobs():
            corrupt_as(label, blob.verify)

    @property
    def stored_names(self) -> frozenset[str]:
        """Names of the anchors whose data is stored in the file (weights, frozen inputs)."""
        return frozenset(t.name for t in self.tensors) | frozenset(f.name for f in self.feeds)

    def is_user_anchor(self, anchor: Anchor) -> bool:
        """Whether the caller feeds or reads ``anchor`` (see :func:`is_user_anchor`)."""
        return is_user_anchor(anchor, self.metadata, self.stored_names)

    def user_anchors(self) -> list[Anchor]:
        stored = self.stored_names
        return [a for a in self.metadata.anchors if is_user_anchor(a, self.metadata, stored)]

    def user_input_anchors(self) -> list[Anchor]:
        return [a for a in self.user_anchors() if a.type is TensorType.INPUT]

    def user_output_anchors(self) -> list[Anchor]:
        return [a for a in self.user_anchors() if a.type is TensorType.OUTPUT]

    def get_anchor(self, name: str) -> Anchor:
        try:
            return self.metadata.get_anchor(name)
        except KeyError:
            raise ModelError(f"model '{self.name}' has no anchor '{name}'") from None

    def has_tensor_data(self, name: str) -> bool:
        return any(t.name == name for t in self.tensors)

    def get_tensor_data(self, name: str) -> TensorReader:
        """The stored data of an anchor, by anchor name."""
        for tensor in self.tensors:
            if tensor.name == name:
                return tensor
        raise ModelError(f"model '{self.name}' stores no tensor data for '{name}'")

    def seed_anchor(self) -> Anchor | None:
        handle = self.metadata.seed_handle
        return next((a for a in self.metadata.anchors if handle and a.handle == handle), None)

    def __repr__(self) -> str:
        return (
            f"<Model {self.name!r}: {len(self.metadata.anchors)} anchors, "
            f"{len(self.tensors)} tensors, {len(self.feeds)} feeds, "
            f"{len(self.opaque_blobs)} opaque blobs>"
        )


def corrupt_as(label: str, read: Callable[[], T]) -> T:
    """``read()``, with a checksum or truncation error saying which blob of the model it is."""
    try:
        return read()
    except (ChecksumError, TruncatedError) as exc:
        what = "is corrupt" if isinstance(exc, ChecksumError) else "cannot be read"
        raise exc.about(f"{label} {what}") from None


@dataclass(frozen=True)
class Linking:
    """What the lenient linker found: one model per metadata blob, in file order, and every
    broken linking rule as a message (empty when all is well)."""

    models: tuple[Model, ...]
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def link_models(reader: Reader) -> Linking:
    """Link a reader's blobs without raising: a model for every metadata blob (its executable
    None when none has that name; its blobs those whose names its anchors give) and the
    problems :func:`build_models` would raise."""
    return _link(reader)


def check_links(reader: Reader) -> list[str]:
    """Every linking problem of a reader's blobs, as messages (empty when all is well)."""
    return list(_link(reader).problems)


def build_models(reader: Reader) -> list[Model]:
    """One model per executable, in file order; raises :class:`ModelError` on the first broken
    linking rule, saying how many more there are."""
    linking = _link(reader)
    if linking.problems:
        problems = linking.problems
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ModelError(problems[0] + more)
    # no problems: executables and metadata blobs are one to one, so only the order changes
    by_name = {model.name: model for model in linking.models}
    return [by_name[executable.name] for executable in reader.executables()]


def _link(reader: Reader) -> Linking:
    problems: list[str] = []
    executables = reader.executables()
    metadata = reader.metadata()
    metadata_blobs = {
        id(reader.decoded(b)): b for b in reader.blobs() if b.type == BlobType.METADATA
    }
    names = Counter(e.name for e in executables)
    if "" in names:
        problems.append("executable names must not be empty: an executable blob has no name")
    for name, count in names.items():
        if name and count > 1:
            problems.append(f"executable names must be unique: '{name}' names {count} executables")

    by_executable: dict[str, list[Metadata]] = {}
    for md in metadata:
        if md.executable not in names:
            problems.append(
                f"metadata must name an existing executable: '{md.executable}' is not in the reader"
            )
        by_executable.setdefault(md.executable, []).append(md)
    for opaque in reader.opaque_blobs():
        if opaque.executable not in names:
            problems.append(
                f"opaque blobs must name an existing executable: opaque blob "
                f"'{opaque.name}' names '{opaque.executable}'"
            )

    claimed: set[str] = set()
    for executable in executables:
        found = by_executable.get(executable.name, [])
        if len(found) != 1:
            problems.append(
                f"an executable needs exactly one metadata: '{executable.name}' has {len(found)}"
            )
            continue
        md = found[0]
        anchors: dict[str, Anchor] = {}
        for anchor in md.anchors:
            if anchor.name in anchors:
                problems.append(
                    f"anchor names must be unique: '{anchor.name}' appears twice in "
                    f"the metadata of '{md.executable}'"
                )
            anchors[anchor.name] = anchor
        if md.seed_handle and not any(a.handle == md.seed_handle for a in md.anchors):
            problems.append(
                f"the seed handle must be an anchor's handle: '{md.seed_handle}' "
                f"matches no anchor of '{md.executable}'"
            )
        tensors = _linked(reader.tensors(), anchors, md, "tensor data", problems)
        feeds = _linked(reader.feeds(), anchors, md, "feed data", problems)
        claimed.update(t.name for t in tensors)
        claimed.update(f.name for f in feeds)
    if executables:
        for blob in (*reader.tensors(), *reader.feeds()):
            if blob.name not in claimed:
                kind = "tensor" if type(blob).__name__ == "TensorReader" else "feed"
                problems.append(
                    f"{kind} data must match an anchor: '{blob.name}' matches no "
                    "anchor of any model"
                )

    first_executable: dict[str, ExecutableReader] = {}
    for executable in executables:
        first_executable.setdefault(executable.name, executable)
    models = tuple(
        _model(reader, md, first_executable.get(md.executable), metadata_blobs.get(id(md)))
        for md in metadata
    )
    # duplicate executables repeat their problems
    return Linking(models, tuple(dict.fromkeys(problems)))


def _model(
    reader: Reader, md: Metadata, executable: ExecutableReader | None, metadata_blob: Blob | None
) -> Model:
    """The blobs a metadata's names link to, whether or not the linking rules hold."""
    names = {a.name for a in md.anchors}
    return Model(
        executable=executable,
        metadata=md,
        tensors=tuple(t for t in reader.tensors() if t.name in names),
        feeds=tuple(f for f in reader.feeds() if f.name in names),
        opaque_blobs=tuple(o for o in reader.opaque_blobs() if o.executable == md.executable),
        metadata_blob=metadata_blob,
    )


def _linked(
    blobs, anchors: dict[str, Anchor], md: Metadata, kind: str, problems: list[str]
) -> tuple:
    linked = []
    seen: set[str] = set()
    for blob in blobs:
        anchor = anchors.get(blob.name)
        if anchor is None:
            continue
        if anchor.type is TensorType.OUTPUT:
            problems.append(
                f"{kind} must feed an input: '{blob.name}' is an output of '{md.executable}'"
            )
        if blob.info.tensor_info != anchor.tensor_info:
            problems.append(
                f"{kind} must match its anchor's dtype and shape: '{blob.name}' is "
                f"{blob.info.tensor_info}, the anchor of '{md.executable}' is "
                f"{anchor.tensor_info}"
            )
        if blob.name in seen:
            problems.append(f"an anchor takes at most one {kind} blob: '{blob.name}' has several")
        seen.add(blob.name)
        linked.append(blob)
    return tuple(linked)
