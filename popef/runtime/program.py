"""The graph program: what the executable blob of a runnable model holds.

A :class:`GraphProgram` is a set of numbered :class:`Program` s (PopART's numbering: 0
``WeightsFromHost``, 5 ``Program``...), each a list of steps run in order:

- :class:`HostToDevice` copies the host stream of an anchor (found by its handle) into a device
  tensor;
- :class:`Node` runs one op with ONNX semantics on device tensors;
- :class:`DeviceToHost` copies a device tensor to the host stream of an anchor.

These are frozen, validating dataclasses; :func:`encode_program` and :func:`decode_program`
convert them to and from the bytes of docs/format.md §9. The rest of the runtime
(``popef.runtime``), the ONNX importer and exporter use this module and never the schemas of
``popef.format`` directly. ``popef.program`` re-exports it, as documented before it moved here.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import construct

from ..errors import ExecutionError, FormatError, PopefError, UnsupportedVersionError
from ..format._cursor import Cursor, DecodeError
from ..format.codec import Location, read_all
from ..format.graph import (
    _MIN_ATTRIBUTE,
    _MIN_PROGRAM,
    _MIN_STEP,
    ATTRIBUTE_KIND_SINCE,
    GRAPH_MAGIC,
    GRAPH_PROGRAM,
    GRAPH_VERSION,
    MAX_ATTRIBUTES,
    PREAMBLE_SIZE,
    AttributeKind,
    StepKind,
)

__all__ = [
    "GRAPH_MAGIC",
    "GRAPH_VERSION",
    "MAX_GRAPH_PROGRAM_SIZE",
    "MAX_GRAPH_STEPS",
    "Attribute",
    "AttributeKind",
    "DeviceToHost",
    "GraphProgram",
    "HostToDevice",
    "Node",
    "Program",
    "Step",
    "decode_program",
    "encode_program",
    "is_graph_program",
    "minor_version_of",
]

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# The largest graph program a runtime decompresses (docs/format.md §9): programs hold steps and
# attributes, never weights, so real ones are kilobytes to a few megabytes.
MAX_GRAPH_PROGRAM_SIZE = 16 << 20
# The most steps (nodes and copies, over all programs) a runtime decodes and loads
# (docs/runtime.md, "Limits"): real graphs have thousands of nodes (BERT-large about 3,000,
# GPT-2 XL about 10,000), and loading costs time and memory in proportion to the steps.
MAX_GRAPH_STEPS = 100_000
UINT32_MAX = 2**32 - 1

AttributeValue = int | float | str | tuple[int, ...] | tuple[float, ...] | tuple[str, ...]


def _check_str(owner: str, name: str, value: object, *, empty: bool = True) -> None:
    if not isinstance(value, str):
        raise PopefError(f"{owner}.{name} must be a str, got {type(value).__name__}")
    if not empty and not value:
        raise PopefError(f"{owner}.{name} must not be empty")


def _int(owner: str, value: object) -> int:
    if not hasattr(value, "__index__"):
        raise PopefError(f"{owner} must be an int, got {type(value).__name__}")
    value = value.__index__()
    if not INT64_MIN <= value <= INT64_MAX:
        raise PopefError(f"{owner} {value} does not fit in 64 bits")
    return value


def _float(owner: str, value: object) -> float:
    if isinstance(value, bool) or isinstance(value, str):
        raise PopefError(f"{owner} must be a float, got {type(value).__name__}")
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise PopefError(f"{owner} must be a float, got {type(value).__name__}") from None


_ATTRIBUTE_KINDS = {int(k): k for k in AttributeKind}


def _plain_sequence(value: object, kind: AttributeKind) -> bool:
    """Whether ``value`` is already a tuple of plain ints in 64 bits (INTS) or of floats
    (FLOATS): what the decoder gives, checked at C speed."""
    if type(value) is not tuple or not value:
        return type(value) is tuple
    if kind is AttributeKind.FLOATS:
        return set(map(type, value)) == {float}
    if kind is AttributeKind.STRINGS:
        return set(map(type, value)) == {str}
    return set(map(type, value)) == {int} and min(value) >= INT64_MIN and max(value) <= INT64_MAX


def _str(owner: str, value: object) -> str:
    if not isinstance(value, str):
        raise PopefError(f"{owner} must hold str items, got {type(value).__name__}")
    return value


def _is_int(value: object) -> bool:
    return not isinstance(value, bool) and hasattr(value, "__index__")


@dataclass(frozen=True, slots=True)
class Attribute:
    """One attribute of a node: a name, the kind of its value and the value.

    ``INT`` values are ints, ``FLOAT`` floats, ``STRING`` str, ``INTS``, ``FLOATS`` and
    ``STRINGS`` tuples (``STRINGS``: graph program version 1.1, docs/format.md §9).
    """

    name: str
    kind: AttributeKind
    value: AttributeValue

    def __post_init__(self) -> None:
        _check_str("Attribute", "name", self.name, empty=False)
        try:
            kind = _ATTRIBUTE_KINDS[self.kind]
        except (KeyError, TypeError):
            raise PopefError(f"attribute '{self.name}': unknown kind {self.kind!r}") from None
        object.__setattr__(self, "kind", kind)
        owner = f"attribute '{self.name}'"
        value = self.value
        if kind is AttributeKind.INT:
            value = _int(owner, value)
        elif kind is AttributeKind.FLOAT:
            value = _float(owner, value)
        elif kind is AttributeKind.STRING:
            _check_str("Attribute", "value", value)
        else:
            if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
                raise PopefError(f"{owner} must be a sequence, got {type(value).__name__}")
            if not _plain_sequence(value, kind):
                convert = {
                    AttributeKind.INTS: _int,
                    AttributeKind.FLOATS: _float,
                    AttributeKind.STRINGS: _str,
                }[kind]
                value = tuple(convert(owner, v) for v in value)
        object.__setattr__(self, "value", value)

    @classmethod
    def of(cls, name: str, value: object, kind: AttributeKind | str | None = None) -> Attribute:
        """An attribute from a Python value; the kind is inferred from it unless given.

        ``kind`` may be an :class:`AttributeKind` or one of the op library's names
        (``"int"``, ``"float"``, ``"string"``, ``"ints"``, ``"floats"``, ``"strings"``). An
        empty sequence is inferred as ``INTS``.
        """
        if isinstance(kind, str):
            try:
                kind = AttributeKind[kind.upper()]
            except KeyError:
                raise PopefError(f"attribute '{name}': unknown kind {kind!r}") from None
        if kind is None:
            kind = _infer_kind(name, value)
        return cls(name, kind, value)  # type: ignore[arg-type]

    @property
    def python_value(self) -> int | float | str | list:
        """The value as the op library takes it: lists for the sequence kinds."""
        return list(self.value) if isinstance(self.value, tuple) else self.value


def _infer_kind(name: str, value: object) -> AttributeKind:
    if isinstance(value, bool) or _is_int(value):
        return AttributeKind.INT
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return AttributeKind.FLOAT
    if isinstance(value, str):
        return AttributeKind.STRING
    if isinstance(value, Iterable) and not isinstance(value, (bytes, Mapping)):
        items = list(value)
        if all(_is_int(v) for v in items):
            return AttributeKind.INTS
        if all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in items):
            return AttributeKind.FLOATS
        if all(isinstance(v, str) for v in items):
            return AttributeKind.STRINGS
    raise PopefError(
        f"attribute '{name}': cannot store a value of type {type(value).__name__} "
        "(expected int, float, str or a sequence of ints, floats or strs)"
    )


@dataclass(frozen=True, slots=True)
class HostToDevice:
    """Copy the host stream ``handle`` (an anchor's handle) into the device tensor ``tensor``."""

    handle: str
    tensor: str

    def __post_init__(self) -> None:
        _check_str("HostToDevice", "handle", self.handle)
        _check_str("HostToDevice", "tensor", self.tensor, empty=False)


@dataclass(frozen=True, slots=True)
class DeviceToHost:
    """Copy the device tensor ``tensor`` to the host stream ``handle`` (an anchor's handle)."""

    tensor: str
    handle: str

    def __post_init__(self) -> None:
        _check_str("DeviceToHost", "tensor", self.tensor, empty=False)
        _check_str("DeviceToHost", "handle", self.handle)


@dataclass(frozen=True, slots=True)
class Node:
    """Run the op ``op_type`` (an ONNX operator) on tensors ``inputs``, defining ``outputs``.

    An empty string stands for an omitted optional input or output. ``attributes`` is a tuple
    of :class:`Attribute`; a mapping ``{name: value}`` is accepted and converted with
    :meth:`Attribute.of`.
    """

    op_type: str
    name: str
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    attributes: tuple[Attribute, ...] = ()

    def __post_init__(self) -> None:
        _check_str("Node", "op_type", self.op_type, empty=False)
        _check_str("Node", "name", self.name)
        for field_name in ("inputs", "outputs"):
            values = getattr(self, field_name)
            if isinstance(values, str):
                raise PopefError(f"Node.{field_name} must be a sequence of str, not a str")
            values = tuple(values)
            if values and set(map(type, values)) != {str}:
                for value in values:
                    _check_str("Node", field_name, value)
            object.__setattr__(self, field_name, values)
        attributes = self.attributes
        if isinstance(attributes, Mapping):
            attributes = tuple(Attribute.of(k, v) for k, v in attributes.items())
        attributes = tuple(attributes)
        seen: set[str] = set()
        for attribute in attributes:
            if not isinstance(attribute, Attribute):
                raise PopefError(
                    f"Node.attributes holds a {type(attribute).__name__}, not an Attribute"
                )
            if attribute.name in seen:
                raise PopefError(f"node '{self.name}' has attribute '{attribute.name}' twice")
            seen.add(attribute.name)
        object.__setattr__(self, "attributes", attributes)

    def attribute_values(self) -> dict[str, int | float | str | list]:
        """``{name: value}`` with lists for the sequence kinds."""
        return {a.name: a.python_value for a in self.attributes}

    def get_attribute(self, name: str) -> Attribute:
        for attribute in self.attributes:
            if attribute.name == name:
                return attribute
        raise KeyError(name)


Step = HostToDevice | Node | DeviceToHost
_STEP_TYPES = (HostToDevice, Node, DeviceToHost)


@dataclass(frozen=True, slots=True)
class Program:
    """One program: its index (as in ``program_flow``), its name and its steps."""

    index: int
    name: str
    steps: tuple[Step, ...] = ()

    def __post_init__(self) -> None:
        if not _is_int(self.index) or not 0 <= self.index <= UINT32_MAX:
            raise PopefError(
                f"Program.index must be an int in [0, {UINT32_MAX}], got {self.index!r}"
            )
        object.__setattr__(self, "index", self.index.__index__())
        _check_str("Program", "name", self.name)
        steps = tuple(self.steps)
        for step in steps:
            if not isinstance(step, _STEP_TYPES):
                raise PopefError(f"program {self.index} holds a {type(step).__name__}, not a step")
        object.__setattr__(self, "steps", steps)

    def nodes(self) -> list[Node]:
        return [s for s in self.steps if isinstance(s, Node)]


@dataclass(frozen=True, slots=True)
class GraphProgram:
    """The programs of one executable, by index (each index at most once)."""

    programs: tuple[Program, ...] = ()

    def __post_init__(self) -> None:
        programs = tuple(self.programs)
        seen: set[int] = set()
        for program in programs:
            if not isinstance(program, Program):
                raise PopefError(
                    f"GraphProgram.programs holds a {type(program).__name__}, not a Program"
                )
            if program.index in seen:
                raise PopefError(f"program {program.index} is defined twice")
            seen.add(program.index)
        object.__setattr__(self, "programs", programs)

    @property
    def indices(self) -> tuple[int, ...]:
        return tuple(p.index for p in self.programs)

    def has_program(self, index: int) -> bool:
        return any(p.index == index for p in self.programs)

    def get_program(self, index: int) -> Program:
        for program in self.programs:
            if program.index == index:
                return program
        raise KeyError(index)


# -- bytes ----------------------------------------------------------------------------------


def _step_dict(step: Step) -> dict:
    if isinstance(step, HostToDevice):
        return {
            "kind": StepKind.HOST_TO_DEVICE,
            "body": {"handle": step.handle, "tensor": step.tensor},
        }
    if isinstance(step, DeviceToHost):
        return {
            "kind": StepKind.DEVICE_TO_HOST,
            "body": {"tensor": step.tensor, "handle": step.handle},
        }
    return {
        "kind": StepKind.NODE,
        "body": {
            "op_type": step.op_type,
            "name": step.name,
            "inputs": list(step.inputs),
            "outputs": list(step.outputs),
            "attributes": [
                {
                    "name": a.name,
                    "kind": int(a.kind),
                    "value": list(a.value) if isinstance(a.value, tuple) else a.value,
                }
                for a in step.attributes
            ],
        },
    }


def encode_program(program: GraphProgram) -> bytes:
    """The bytes of a graph program (docs/format.md §9)."""
    if not isinstance(program, GraphProgram):
        raise PopefError(f"encode_program() needs a GraphProgram, got {type(program).__name__}")
    try:
        return GRAPH_PROGRAM.build(
            {
                "preamble": {
                    "magic": GRAPH_MAGIC,
                    "major": GRAPH_VERSION[0],
                    "minor": minor_version_of(program),
                },
                "programs": [
                    {"index": p.index, "name": p.name, "steps": [_step_dict(s) for s in p.steps]}
                    for p in program.programs
                ],
            }
        )
    except construct.ConstructError as exc:
        message = str(exc).split("\n", 1)[-1].strip()
        raise FormatError(f"cannot encode graph program: {message}") from exc


def minor_version_of(program: GraphProgram) -> int:
    """The lowest minor version that holds ``program``: older readers can read every program
    that does not use what a later minor version added (docs/format.md §9.2)."""
    return max(
        (
            ATTRIBUTE_KIND_SINCE.get(a.kind, 0)
            for p in program.programs
            for s in p.steps
            if isinstance(s, Node)
            for a in s.attributes
        ),
        default=0,
    )


def is_graph_program(data: bytes | memoryview) -> bool:
    """Whether ``data`` starts like a graph program (its magic), whatever its version."""
    return bytes(data[: len(GRAPH_MAGIC)]) == GRAPH_MAGIC


# -- bytes -> dataclasses, the fast path of the schemas in format/graph.py -----------------


def _read_attribute(cur: Cursor) -> Attribute:
    name = cur.string("name")
    kind = cur.u8("kind")
    if kind == AttributeKind.INT:
        value: AttributeValue = cur.i64("value")
    elif kind == AttributeKind.FLOAT:
        value = cur.f64("value")
    elif kind == AttributeKind.STRING:
        value = cur.string("value")
    elif kind == AttributeKind.INTS:
        value = cur.numbers("q", "value")
    elif kind == AttributeKind.FLOATS:
        value = cur.numbers("d", "value")
    elif kind == AttributeKind.STRINGS:
        value = cur.strings("value")
    else:
        raise DecodeError(f"unknown attribute kind {kind}", cur.pos, "value")
    return Attribute(name, kind, value)


def _read_node(cur: Cursor) -> Node:
    return Node(
        cur.string("op_type"),
        cur.string("name"),
        cur.strings("inputs"),
        cur.strings("outputs"),
        tuple(cur.items(_read_attribute, _MIN_ATTRIBUTE, "attributes", MAX_ATTRIBUTES)),
    )


def _read_step(cur: Cursor) -> Step:
    kind = cur.u8("kind")
    try:
        if kind == StepKind.HOST_TO_DEVICE:
            return HostToDevice(cur.string("handle"), cur.string("tensor"))
        if kind == StepKind.NODE:
            return _read_node(cur)
        if kind == StepKind.DEVICE_TO_HOST:
            return DeviceToHost(cur.string("tensor"), cur.string("handle"))
    except DecodeError as exc:
        exc.within("body")
        raise
    raise DecodeError(f"unknown step kind {kind}", cur.pos, "body")


class _TooManySteps(Exception):
    """The programs hold more steps than the limit (not a PopefError, so that ``read_all``
    lets it through to :func:`decode_program`)."""

    def __init__(self, steps: int):
        super().__init__(steps)
        self.steps = steps


def _graph_reader(max_steps: int):
    """A reader of the programs that refuses, before decoding them, more than ``max_steps``
    steps in all."""
    total = 0

    def read_program(cur: Cursor) -> Program:
        nonlocal total
        index = cur.u32("index")
        name = cur.string("name")
        if cur.remaining >= 4:  # peek at the count; a count the bytes cannot hold is a
            count = int.from_bytes(cur.data[cur.pos : cur.pos + 4], "little")  # format error
            if count * _MIN_STEP <= cur.remaining - 4 and total + count > max_steps:
                raise _TooManySteps(total + count)
            total += count
        return Program(index, name, tuple(cur.items(_read_step, _MIN_STEP, "steps")))

    def read_graph_program(cur: Cursor) -> GraphProgram:
        cur.raw(PREAMBLE_SIZE, "preamble")  # checked by decode_program
        return GraphProgram(tuple(cur.items(read_program, _MIN_PROGRAM, "programs")))

    return read_graph_program


def decode_program(
    data: bytes | bytearray | memoryview,
    *,
    name: str | None = None,
    max_steps: int = MAX_GRAPH_STEPS,
) -> GraphProgram:
    """The graph program in ``data``, the (decompressed) payload of executable ``name``.

    Raises :class:`ExecutionError` when the payload is not a graph program at all (for example
    a real Poplar executable) or when its programs hold more than ``max_steps`` steps in all
    (refused before they are decoded), :class:`UnsupportedVersionError` for a major version this
    library does not run, and :class:`FormatError` naming the field and offset when its bytes
    break the encoding. Nothing else escapes, whatever the bytes.
    """
    if not isinstance(data, bytes):
        data = bytes(data)
    what = f"executable '{name}'" if name is not None else "the executable"
    if not is_graph_program(data):
        found = data[: len(GRAPH_MAGIC)].hex(" ") or "nothing"
        raise ExecutionError(
            f"{what} is not a graph program: it starts with {found}, not the graph program "
            f"magic {GRAPH_MAGIC.hex(' ')} (a compiled Poplar executable needs Graphcore's "
            "SDK and an IPU; this runtime only runs graph programs)"
        )
    source = what if name is not None else "<graph program>"
    if len(data) > MAX_GRAPH_PROGRAM_SIZE:
        raise FormatError(
            f"graph program of {len(data)} bytes exceeds the limit of {MAX_GRAPH_PROGRAM_SIZE}",
            offset=0,
            source=source,
        )
    if len(data) < PREAMBLE_SIZE:
        raise FormatError(
            f"truncated graph program: {len(data)} bytes, the preamble alone takes {PREAMBLE_SIZE}",
            offset=0,
            field="preamble",
            source=source,
        )
    major = int.from_bytes(data[8:10], "little")
    minor = int.from_bytes(data[10:12], "little")
    if major != GRAPH_VERSION[0]:
        raise UnsupportedVersionError(
            f"unsupported graph program version {major}.{minor}: this library runs "
            f"{GRAPH_VERSION[0]}.x",
            offset=8,
            field="preamble.major",
            source=source,
        )
    try:
        return read_all(
            _graph_reader(max_steps),
            data,  # type: ignore[arg-type]
            Location(source, None, 0),
            "graph program",
            allow_trailing=minor > GRAPH_VERSION[1],
        )
    except _TooManySteps as exc:
        raise ExecutionError(
            f"{what} has more steps than this runtime loads: its programs hold at least "
            f"{exc.steps} steps (nodes and copies), the limit is {max_steps}"
        ) from None
