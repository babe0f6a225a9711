"""The graph program: the payload of an executable blob run by ``popef.runtime``.

Implements docs/format.md §9 "Graph program payload". Construct schemas only: the typed
program (``popef.program``) converts to and from these containers, and decodes through
``popef.format.codec.decode``, the choke point for parse errors.

Every count and length is bounded (``BoundedArray``, ``String``): a hostile payload can make
decoding fail, never allocate more than a small multiple of its own size.
"""

from __future__ import annotations

from enum import IntEnum
from typing import IO, Any, NoReturn

import construct as c
from construct import Bytes, Float64l, Int8ul, Int16ul, Int32ul, Int64sl, Struct, this

from ._constructs import MAX_ARRAY_ITEMS, BoundedArray, String

GRAPH_MAGIC = b"PopEFgp\x00"  # 8 bytes: a PopEF graph program
#: the newest version this library reads and writes; a program is written with the lowest minor
#: version that can hold it (1.1 only when it has a STRINGS attribute), see docs/format.md §9.2
GRAPH_VERSION = (1, 1)


class StepKind(IntEnum):
    """What a step of a program does."""

    HOST_TO_DEVICE = 0  # copy a host stream (by handle) into a device tensor
    NODE = 1  # run one op
    DEVICE_TO_HOST = 2  # copy a device tensor to a host stream (by handle)


class AttributeKind(IntEnum):
    """Type of an op attribute's value; the values are ONNX's ``AttributeProto.AttributeType``."""

    FLOAT = 1
    INT = 2
    STRING = 3
    FLOATS = 6
    INTS = 7
    STRINGS = 8  # since version 1.1


#: the minor version (of major 1) that added an attribute kind; the others are in 1.0
ATTRIBUTE_KIND_SINCE = {AttributeKind.STRINGS: 1}


class _Unknown(c.Construct):
    """Refuses an enumerated value this version does not define (the default of a Switch)."""

    def __init__(self, what: str, key: str) -> None:
        super().__init__()
        self.what = what
        self.key = key

    def _parse(self, stream: IO[bytes], context: Any, path: str) -> NoReturn:
        raise c.ExplicitError(f"unknown {self.what} {context[self.key]}", path=path)

    def _build(self, obj: Any, stream: IO[bytes], context: Any, path: str) -> NoReturn:
        raise c.ExplicitError(f"unknown {self.what} {context[self.key]}", path=path)


HOST_TO_DEVICE = Struct(
    "handle" / String,  # the anchor's stream handle
    "tensor" / String,  # the device tensor it defines
)

DEVICE_TO_HOST = Struct(
    "tensor" / String,
    "handle" / String,
)

ATTRIBUTE = Struct(
    "name" / String,
    "kind" / Int8ul,  # AttributeKind
    "value"
    / c.Switch(
        this.kind,
        {
            AttributeKind.INT: Int64sl,
            AttributeKind.FLOAT: Float64l,
            AttributeKind.STRING: String,
            AttributeKind.INTS: BoundedArray(Int64sl, min_item_size=8),
            AttributeKind.FLOATS: BoundedArray(Float64l, min_item_size=8),
            AttributeKind.STRINGS: BoundedArray(String, min_item_size=4),
        },
        default=_Unknown("attribute kind", "kind"),
    ),
)

NAME_LIST = BoundedArray(String, min_item_size=4)

_MIN_ATTRIBUTE = 4 + 1 + 4  # an empty name, a kind byte, an empty string or array
MAX_ATTRIBUTES = 1 << 10  # per node: ONNX operators take a few dozen at most

NODE = Struct(
    "op_type" / String,  # ONNX operator name, e.g. "Conv"
    "name" / String,  # unique node name, for messages
    "inputs" / NAME_LIST,  # "" for an omitted optional input
    "outputs" / NAME_LIST,  # "" for an omitted optional output
    "attributes" / BoundedArray(ATTRIBUTE, min_item_size=_MIN_ATTRIBUTE, limit=MAX_ATTRIBUTES),
)

STEP = Struct(
    "kind" / Int8ul,  # StepKind
    "body"
    / c.Switch(
        this.kind,
        {
            StepKind.HOST_TO_DEVICE: HOST_TO_DEVICE,
            StepKind.NODE: NODE,
            StepKind.DEVICE_TO_HOST: DEVICE_TO_HOST,
        },
        default=_Unknown("step kind", "kind"),
    ),
)

# Smallest encodings, used to bound counts before parsing: a step is a kind byte and two
# empty strings; a program an index, an empty name and an empty step list.
_MIN_STEP = 1 + 4 + 4
_MIN_PROGRAM = 4 + 4 + 4

PROGRAM = Struct(
    "index" / Int32ul,
    "name" / String,
    "steps" / BoundedArray(STEP, min_item_size=_MIN_STEP, limit=MAX_ARRAY_ITEMS),
)

PREAMBLE = Struct(
    "magic" / Bytes(8),
    "major" / Int16ul,
    "minor" / Int16ul,
)
PREAMBLE_SIZE = 12

GRAPH_PROGRAM = Struct(
    "preamble" / PREAMBLE,
    "programs" / BoundedArray(PROGRAM, min_item_size=_MIN_PROGRAM),
)
