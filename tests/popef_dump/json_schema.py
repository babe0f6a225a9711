"""The schema of ``popef_dump --json`` (docs/cli.md, "Schema (schema_version 1)") as data, and a
small checker for it.

The golden files pin the exact output of the fixtures; this schema says what any output must
look like, so a regenerated golden that drifts from the documented format fails here. Objects
are checked strictly: a key the schema does not list is a problem (the docs allow readers to
ignore new keys, so a new key must be documented, then listed here).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field


class Schema:
    """A type of JSON value; :meth:`problems` yields what is wrong with a value, by path."""

    def problems(self, value: object, path: str) -> Iterator[str]:
        raise NotImplementedError


@dataclass(frozen=True)
class Scalar(Schema):
    """A JSON scalar of one kind: ``int`` (never a bool), ``float``, ``str``, ``bool`` or None."""

    kind: type | None

    def problems(self, value, path):
        if self.kind is None:
            ok = value is None
        elif self.kind is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif self.kind is float:
            ok = isinstance(value, float) and math.isfinite(value)
        else:
            ok = isinstance(value, self.kind)
        if not ok:
            expected = "null" if self.kind is None else self.kind.__name__
            yield f"{path}: expected {expected}, found {value!r}"


@dataclass(frozen=True)
class OneOf(Schema):
    """Any one of several schemas (a value, or the first schema's problems)."""

    options: tuple[Schema, ...]

    def problems(self, value, path):
        found = [list(s.problems(value, path)) for s in self.options]
        if all(found):
            first_of_each = "; ".join(p[0] for p in found)
            yield f"{path}: no alternative fits {value!r} ({first_of_each})"


@dataclass(frozen=True)
class Const(Schema):
    """One of a few exact values (an enum given by name, a version)."""

    values: tuple

    def problems(self, value, path):
        if isinstance(value, bool) or value not in self.values:
            yield f"{path}: expected one of {list(self.values)}, found {value!r}"


@dataclass(frozen=True)
class ListOf(Schema):
    item: Schema

    def problems(self, value, path):
        if not isinstance(value, list):
            yield f"{path}: expected a list, found {type(value).__name__}"
            return
        for i, item in enumerate(value):
            yield from self.item.problems(item, f"{path}[{i}]")


@dataclass(frozen=True)
class MapOf(Schema):
    """An object used as a map: any keys ``key`` accepts, values of one schema."""

    key: Schema
    value: Schema

    def problems(self, value, path):
        if not isinstance(value, dict):
            yield f"{path}: expected an object, found {type(value).__name__}"
            return
        for k, v in value.items():
            yield from self.key.problems(k, f"{path} key {k!r}")
            yield from self.value.problems(v, f"{path}.{k}")


@dataclass(frozen=True)
class Obj(Schema):
    """An object with ``required`` keys and ``optional`` ones; no other key."""

    required: Mapping[str, Schema]
    optional: Mapping[str, Schema] = field(default_factory=dict)

    def extended(
        self, required: Mapping[str, Schema] = {}, optional: Mapping[str, Schema] = {}
    ) -> Obj:
        return Obj({**self.required, **required}, {**self.optional, **optional})

    def keys(self) -> set[str]:
        return set(self.required) | set(self.optional)

    def problems(self, value, path):
        if not isinstance(value, dict):
            yield f"{path}: expected an object, found {type(value).__name__}"
            return
        for key in self.required:
            if key not in value:
                yield f"{path}: missing key '{key}'"
        for key, item in value.items():
            schema = self.required.get(key) or self.optional.get(key)
            if schema is None:
                yield f"{path}: undocumented key '{key}'"
            else:
                yield from schema.problems(item, f"{path}.{key}")


class AnyValue(Schema):
    """Any JSON value (a change's old and new values have the type of their field)."""

    def problems(self, value, path):
        return iter(())


INT, STR, BOOL, NULL = Scalar(int), Scalar(str), Scalar(bool), Scalar(None)
INTS = ListOf(INT)
# a statistic: a finite number, or a non-finite one spelt as a string
NUMBER = OneOf((INT, Scalar(float), Const(("inf", "-inf", "nan"))))

ANCHOR = Obj(
    {
        "name": STR,
        "handle": STR,
        "type": Const(("INPUT", "OUTPUT", "UNKNOWN")),
        "dtype": STR,
        "shape": INTS,
        "size_in_bytes": INT,
        "programs": INTS,
        "is_per_replica": BOOL,
    }
)
NAME_VALUE = Obj({"name": STR, "value": STR})
METADATA = Obj(
    {
        "executable": STR,
        "seed_handle": STR,
        "replication_factor": INT,
        "num_ipus": INT,
        "ipu_version": INT,
        "num_processes": INT,
        "device_iterations": INT,
        "is_pod": BOOL,
        "is_inference": BOOL,
        "program_flow": Obj({"load": INTS, "main": INTS, "save": INTS}),
        "programs_map": ListOf(Obj({"index": INT, "name": STR})),
        "engine_options": ListOf(NAME_VALUE),
        "device_options": ListOf(NAME_VALUE),
        "num_anchors": INT,
    }
)
MODEL = Obj(
    {"name": STR, "executable_found": BOOL},
    {
        "user_anchors": Obj({"inputs": ListOf(ANCHOR), "outputs": ListOf(ANCHOR)}),
        "anchors": ListOf(ANCHOR.extended({"stored": BOOL, "user_provided": BOOL})),
        "metadata": METADATA,
    },
)
BLOB = Obj(
    {
        "source": STR,
        "index": INT,
        "offset": INT,
        "size": INT,
        "type": STR,
        "type_code": INT,
        "version": STR,
        "name": OneOf((STR, NULL)),
        "info_offset": INT,
        "info_size": INT,
        "payload_offset": INT,
        "payload_size": INT,
        "checksum": INT,
        "checksum_state": Const(("unchecked", "ok", "mismatch")),
    }
)
_PLACE = {"offset": INT, "blob_offset": INT, "source": STR, "blob_index": INT}
STATS = Obj(
    {
        "min": OneOf((NUMBER, NULL)),
        "max": OneOf((NUMBER, NULL)),
        "mean": OneOf((NUMBER, NULL)),
        "nan_count": INT,
    }
)
TENSOR = Obj(
    {"name": STR, "dtype": STR, "shape": INTS, "size_in_bytes": INT, **_PLACE},
    {
        "num_items": INT,
        "item_shape": INTS,
        "stats": OneOf((STATS, NULL)),
    },
)
EXECUTABLE = Obj({"name": STR, "compressed": BOOL, "size": INT, "stored_size": INT, **_PLACE})
OPAQUE = Obj({"name": STR, "executable": STR, "size": INT, **_PLACE})
PROBLEM_KINDS = ("checksum", "format", "link")
VERIFY = Obj(
    {
        "ok": BOOL,
        "blobs": INT,
        "checksums_ok": INT,
        "decoded": INT,
        "links_checked": BOOL,
        "num_models": INT,
        "problems": ListOf(
            Obj(
                {
                    "kind": Const(PROBLEM_KINDS),
                    "message": STR,
                    "source": OneOf((STR, NULL)),
                    "blob_index": OneOf((INT, NULL)),
                    "offset": OneOf((INT, NULL)),
                }
            )
        ),
        "num_problems": INT,
        "problems_omitted": MapOf(Const(PROBLEM_KINDS), INT),
    }
)
CHANGE = Obj({"field": STR, "old": AnyValue(), "new": AnyValue()})
CHANGED = Obj({"name": STR, "changes": ListOf(CHANGE)})


def _blob_diff(entry: Schema) -> Obj:
    return Obj({"added": ListOf(entry), "removed": ListOf(entry), "changed": ListOf(CHANGED)})


DIFF = Obj(
    {
        "old": STR,
        "new": STR,
        "identical": BOOL,
        "models_added": ListOf(STR),
        "models_removed": ListOf(STR),
        "models": ListOf(
            Obj(
                {
                    "old_name": STR,
                    "name": STR,
                    "metadata": ListOf(CHANGE),
                    "anchors_added": ListOf(ANCHOR),
                    "anchors_removed": ListOf(ANCHOR),
                    "anchors_changed": ListOf(CHANGED),
                }
            )
        ),
        "executables": _blob_diff(EXECUTABLE),
        "tensors": _blob_diff(TENSOR),
        "feeds": _blob_diff(TENSOR),
    }
)
DOCUMENT = Obj(
    {"schema_version": Const((1,))},
    {
        "files": ListOf(Obj({"path": STR, "size": INT})),
        "summary": Obj(
            {"num_blobs": INT, "total_size": INT, "blob_counts": MapOf(STR, INT), "num_models": INT}
        ),
        "models": ListOf(MODEL),
        "blobs": ListOf(BLOB),
        "tensors": ListOf(TENSOR),
        "feeds": ListOf(TENSOR),
        "executables": ListOf(EXECUTABLE),
        "opaque": ListOf(OPAQUE),
        "verify": VERIFY,
        "diff": DIFF,
    },
)


def document_problems(document: object) -> list[str]:
    """Every way ``document`` departs from the schema, plus the one presence rule the types
    cannot say: ``files`` is there exactly when ``diff`` is not."""
    problems = list(DOCUMENT.problems(document, "$"))
    if isinstance(document, dict) and ("files" in document) == ("diff" in document):
        problems.append("$: expected 'files' or 'diff', exactly one of them")
    return problems


def all_keys(schema: Schema = DOCUMENT) -> set[str]:
    """Every object key the schema names, at any depth."""
    if isinstance(schema, Obj):
        keys = schema.keys()
        for sub in (*schema.required.values(), *schema.optional.values()):
            keys |= all_keys(sub)
        return keys
    if isinstance(schema, ListOf):
        return all_keys(schema.item)
    if isinstance(schema, MapOf):
        return all_keys(schema.value)
    if isinstance(schema, OneOf):
        return set().union(*(all_keys(s) for s in schema.options))
    return set()
