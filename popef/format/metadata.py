"""The metadata blob's info: docs/format.md §4 "Metadata".

TensorInfo, Option, ProgramFlow, Anchor and Metadata, in the order and widths the format
specifies. Enumerations are stored as their integer values (``popef.types``).
"""

from __future__ import annotations

from construct import Flag, Int8ul, Int32ul, Int64sl, Int64ul, Struct

from ._constructs import BoundedArray, String

MAX_RANK = 32
# Options and program names are a handful in real models; these bound their decoded memory
# (a dict entry or an Option costs far more than its few encoded bytes).
MAX_OPTIONS = 1 << 16  # engine options, and device options, each
MAX_PROGRAM_NAMES = 1 << 16

TENSOR_INFO = Struct(
    "dtype" / Int8ul,  # DataType
    "shape" / BoundedArray(Int64sl, min_item_size=8, limit=MAX_RANK),
)

OPTION = Struct(
    "name" / String,
    "value" / String,
)

PROGRAM_LIST = BoundedArray(Int32ul, min_item_size=4)

PROGRAM_FLOW = Struct(
    "load" / PROGRAM_LIST,
    "main" / PROGRAM_LIST,
    "save" / PROGRAM_LIST,
)

ANCHOR = Struct(
    "name" / String,
    "handle" / String,
    "tensor_info" / TENSOR_INFO,
    "programs" / PROGRAM_LIST,
    "is_per_replica" / Flag,
    "type" / Int8ul,  # TensorType
)

PROGRAM_NAME = Struct(
    "index" / Int32ul,
    "name" / String,
)

# Smallest encodings, used to bound counts before parsing: 4 bytes per empty string,
# 5 for an empty shape, 12 for three empty program lists.
_MIN_OPTION = 8
_MIN_ANCHOR = 4 + 4 + 5 + 4 + 1 + 1
_MIN_PROGRAM_NAME = 8

METADATA = Struct(
    "executable" / String,
    "replication_factor" / Int32ul,
    "num_ipus" / Int32ul,
    "ipu_version" / Int32ul,
    "is_pod" / Flag,
    "is_inference" / Flag,
    "num_processes" / Int64ul,
    "device_iterations" / Int32ul,
    "seed_handle" / String,
    "engine_options" / BoundedArray(OPTION, _MIN_OPTION, limit=MAX_OPTIONS),
    "device_options" / BoundedArray(OPTION, _MIN_OPTION, limit=MAX_OPTIONS),
    "program_flow" / PROGRAM_FLOW,
    "programs_map" / BoundedArray(PROGRAM_NAME, _MIN_PROGRAM_NAME, limit=MAX_PROGRAM_NAMES),
    "anchors" / BoundedArray(ANCHOR, _MIN_ANCHOR),
)
