"""The PopEF data model: enums and frozen, validating dataclasses.

Field names follow PopEF's C++ API in snake_case (``replicationFactor`` becomes
``replication_factor``). Enum values follow the documented declaration order, which is also
what Cap'n Proto would assign. Nothing here knows about bytes; see ``popef.format`` for that.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from enum import IntEnum
from typing import Any, NoReturn

import numpy as np

from .errors import PopefError

__all__ = [
    "BlobType",
    "DataType",
    "TensorType",
    "TensorInfo",
    "Option",
    "ProgramFlow",
    "Anchor",
    "Metadata",
    "ExecutableInfo",
    "TensorDataInfo",
    "FeedDataInfo",
    "OpaqueInfo",
    "POPART_PROGRAM_NAMES",
]

UINT32_MAX = 2**32 - 1
INT64_MAX = 2**63 - 1
MAX_RANK = 32


class BlobType(IntEnum):
    POPLAR_EXECUTABLE = 0
    METADATA = 1
    DATA_TENSOR = 2
    DATA_FEED = 3
    OPAQUE = 4


class DataType(IntEnum):
    BOOL = 0
    F8 = 1
    F16 = 2
    F32 = 3
    F64 = 4
    S8 = 5
    U8 = 6
    S16 = 7
    U16 = 8
    S32 = 9
    U32 = 10
    S64 = 11
    U64 = 12
    F8143 = 13
    F8152 = 14

    @property
    def item_size(self) -> int:
        """Bytes per element."""
        return _ITEM_SIZES[self]

    @property
    def numpy_dtype(self) -> np.dtype:
        """The numpy dtype of this type's elements (little-endian; F8 kinds as raw uint8)."""
        return _NUMPY_DTYPES[self]

    @classmethod
    def from_numpy(cls, dtype: np.typing.DTypeLike) -> DataType:
        """The PopEF type of a numpy dtype; ``uint8`` maps to ``U8``, never to an F8 kind."""
        dt = np.dtype(dtype)
        try:
            return _FROM_NUMPY[(dt.kind, dt.itemsize)]
        except KeyError:
            raise PopefError(f"numpy dtype {dt} has no PopEF data type") from None


_ITEM_SIZES = {
    DataType.BOOL: 1, DataType.F8: 1, DataType.F8143: 1, DataType.F8152: 1,
    DataType.S8: 1, DataType.U8: 1,
    DataType.F16: 2, DataType.S16: 2, DataType.U16: 2,
    DataType.F32: 4, DataType.S32: 4, DataType.U32: 4,
    DataType.F64: 8, DataType.S64: 8, DataType.U64: 8,
}  # fmt: skip

_NUMPY_DTYPES = {
    DataType.BOOL: np.dtype(np.bool_),
    # 8-bit float kinds have no numpy type: their bytes are exposed as raw uint8.
    DataType.F8: np.dtype(np.uint8),
    DataType.F8143: np.dtype(np.uint8),
    DataType.F8152: np.dtype(np.uint8),
    DataType.F16: np.dtype("<f2"),
    DataType.F32: np.dtype("<f4"),
    DataType.F64: np.dtype("<f8"),
    DataType.S8: np.dtype(np.int8),
    DataType.U8: np.dtype(np.uint8),
    DataType.S16: np.dtype("<i2"),
    DataType.U16: np.dtype("<u2"),
    DataType.S32: np.dtype("<i4"),
    DataType.U32: np.dtype("<u4"),
    DataType.S64: np.dtype("<i8"),
    DataType.U64: np.dtype("<u8"),
}

_FROM_NUMPY = {
    ("b", 1): DataType.BOOL,
    ("f", 2): DataType.F16, ("f", 4): DataType.F32, ("f", 8): DataType.F64,
    ("i", 1): DataType.S8, ("i", 2): DataType.S16, ("i", 4): DataType.S32, ("i", 8): DataType.S64,
    ("u", 1): DataType.U8, ("u", 2): DataType.U16, ("u", 4): DataType.U32, ("u", 8): DataType.U64,
}  # fmt: skip


class TensorType(IntEnum):
    UNKNOWN = 0
    INPUT = 1
    OUTPUT = 2


# PopART's program indices (PopPrograms::ProgramIndex) and the names it writes in programsMap.
POPART_PROGRAM_NAMES: Mapping[int, str] = {
    0: "WeightsFromHost",
    1: "OptimizerFromHost",
    2: "RandomSeedFromHost",
    3: "RandomSeedToHost",
    4: "RngStateFromHost",
    5: "Program",
    6: "RngStateToHost",
    7: "WeightsToHost",
    8: "CycleCountTensorToHost",
    9: "CustomProgramsStart",
}


def _invalid(what: str) -> PopefError:
    return PopefError(what)


def _check_str(owner: str, name: str, value: object) -> None:
    if not isinstance(value, str):
        raise _invalid(f"{owner}.{name} must be a str, got {type(value).__name__}")


def _check_uint(owner: str, name: str, value: object, maximum: int = INT64_MAX) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise _invalid(f"{owner}.{name} must be an int, got {type(value).__name__}")
    if not 0 <= value <= maximum:
        raise _invalid(f"{owner}.{name} must be in [0, {maximum}], got {value}")


def _all_uints(values: tuple[Any, ...], maximum: int) -> bool:
    """Whether every value is a plain int in [0, maximum]: the common case, checked at C speed
    (decoders give tuples of thousands of ints)."""
    return not values or (
        set(map(type, values)) == {int} and min(values) >= 0 and max(values) <= maximum
    )


def _program_list(owner: str, name: str, values: Iterable[int]) -> tuple[int, ...]:
    if type(values) is tuple and _all_uints(values, UINT32_MAX):
        return values
    out = tuple(int(v) if isinstance(v, np.integer) else v for v in values)
    for v in out:
        _check_uint(owner, name, v, UINT32_MAX)
    return out


def _span(dims: Iterable[int], item_size: int) -> int:
    """Bytes that the dimensions span, ignoring zeros: what numpy needs to fit in 63 bits to
    make an array of that shape, even an empty one (docs/format.md, "Limits")."""
    return math.prod(d for d in dims if d) * item_size


def _tensor_type(owner: str, value: object) -> TensorType:
    try:
        return _TENSOR_TYPES[value]
    except (KeyError, TypeError):
        raise _invalid(f"{owner}.type: unknown tensor type {value!r}") from None


_TENSOR_TYPES: dict[object, TensorType] = {int(t): t for t in TensorType}  # keyed by any value
_DATA_TYPES = {int(t): t for t in DataType}


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """Data type and shape of a tensor; ``shape == ()`` is a scalar."""

    dtype: DataType
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "dtype", _DATA_TYPES[self.dtype])
        except (KeyError, TypeError):
            raise _invalid(f"TensorInfo.dtype: unknown data type {self.dtype!r}") from None
        shape = self.shape
        if type(shape) is not tuple or not _all_uints(shape, INT64_MAX):
            shape = tuple(int(d) if isinstance(d, np.integer) else d for d in shape)
            for d in shape[: MAX_RANK + 1]:
                _check_uint("TensorInfo", "shape", d)
        if len(shape) > MAX_RANK:
            raise _invalid(f"TensorInfo.shape: rank {len(shape)} exceeds the limit of {MAX_RANK}")
        if _span(shape, self.dtype.item_size) > INT64_MAX:
            raise _invalid(
                f"TensorInfo.shape: {list(shape)} x {self.dtype.name} spans more than "
                "2**63-1 bytes (the non-zero dimensions times the element size "
                "must fit in 63 bits, even for an empty tensor)"
            )
        object.__setattr__(self, "shape", shape)

    @property
    def num_elements(self) -> int:
        return math.prod(self.shape)

    @property
    def size_in_bytes(self) -> int:
        return self.num_elements * self.dtype.item_size

    @property
    def numpy_dtype(self) -> np.dtype:
        return self.dtype.numpy_dtype

    @classmethod
    def of(cls, array: np.ndarray) -> TensorInfo:
        """The TensorInfo describing a numpy array."""
        return cls(DataType.from_numpy(array.dtype), tuple(array.shape))

    def __str__(self) -> str:
        return f"{self.dtype.name}{list(self.shape)}"


@dataclass(frozen=True, slots=True)
class Option:
    """One engine or device option; options form ordered lists, not maps."""

    name: str
    value: str

    def __post_init__(self) -> None:
        _check_str("Option", "name", self.name)
        _check_str("Option", "value", self.value)


@dataclass(frozen=True, slots=True)
class ProgramFlow:
    """Program indices run in the load (once), main (per step) and save phases."""

    load: tuple[int, ...] = ()
    main: tuple[int, ...] = ()
    save: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        for name in ("load", "main", "save"):
            object.__setattr__(self, name, _program_list("ProgramFlow", name, getattr(self, name)))


@dataclass(frozen=True, slots=True)
class Anchor:
    """One host<->device data stream of a model."""

    name: str
    handle: str
    tensor_info: TensorInfo
    programs: tuple[int, ...] = ()
    is_per_replica: bool = False
    type: TensorType = TensorType.UNKNOWN

    def __post_init__(self) -> None:
        _check_str("Anchor", "name", self.name)
        _check_str("Anchor", "handle", self.handle)
        if not isinstance(self.tensor_info, TensorInfo):
            raise _invalid(f"Anchor.tensor_info must be a TensorInfo (anchor '{self.name}')")
        object.__setattr__(self, "programs", _program_list("Anchor", "programs", self.programs))
        object.__setattr__(self, "is_per_replica", bool(self.is_per_replica))
        object.__setattr__(self, "type", _tensor_type("Anchor", self.type))


def trusted_constructor(cls: type) -> Callable[..., Any]:
    """A constructor of the frozen, slotted dataclass ``cls`` that skips ``__post_init__``:
    for decoders that have already checked every value (types, ranges, enum members), where
    the checks would cost more than the decoding. Arguments are the fields, in order."""
    names = [f.name for f in fields(cls)]
    scope = {
        "new": object.__new__,
        "cls": cls,
        **{f"set_{name}": getattr(cls, name).__set__ for name in names},
    }
    # Generated like dataclasses' own __init__: one call per field, no loop (twice as fast).
    body = "".join(f"    set_{name}(instance, {name})\n" for name in names)
    exec(
        f"def construct({', '.join(names)}):\n    instance = new(cls)\n{body}    return instance\n",
        scope,
    )
    return scope["construct"]


@dataclass(frozen=True, slots=True)
class Metadata:
    """How to run one executable: device, replication, anchors and program flow."""

    executable: str
    anchors: tuple[Anchor, ...] = ()
    program_flow: ProgramFlow = field(default_factory=ProgramFlow)
    programs_map: Mapping[int, str] = field(default_factory=dict)
    replication_factor: int = 1
    num_ipus: int = 1
    ipu_version: int = 2
    is_pod: bool = False
    num_processes: int = 1
    is_inference: bool = True
    seed_handle: str = ""
    engine_options: tuple[Option, ...] = ()
    device_options: tuple[Option, ...] = ()
    device_iterations: int = 1

    def __post_init__(self) -> None:
        _check_str("Metadata", "executable", self.executable)
        _check_str("Metadata", "seed_handle", self.seed_handle)
        for name in ("replication_factor", "num_ipus", "ipu_version", "device_iterations"):
            _check_uint("Metadata", name, getattr(self, name), UINT32_MAX)
        _check_uint("Metadata", "num_processes", self.num_processes)
        object.__setattr__(self, "is_pod", bool(self.is_pod))
        object.__setattr__(self, "is_inference", bool(self.is_inference))
        object.__setattr__(self, "anchors", tuple(self.anchors))
        for anchor in self.anchors:
            if not isinstance(anchor, Anchor):
                raise _invalid(f"Metadata.anchors holds a {type(anchor).__name__}, not an Anchor")
        if not isinstance(self.program_flow, ProgramFlow):
            raise _invalid("Metadata.program_flow must be a ProgramFlow")
        given = (
            self.programs_map if isinstance(self.programs_map, Mapping) else dict(self.programs_map)
        )
        # Sorted by index; sorting the keys alone keeps a large map's peak memory low.
        programs_map = _FrozenDict((index, given[index]) for index in sorted(given))
        if not (
            _all_uints(tuple(programs_map), UINT32_MAX)
            and set(map(type, programs_map.values())) <= {str}
        ):
            for index, name in programs_map.items():
                _check_uint("Metadata", "programs_map index", index, UINT32_MAX)
                _check_str("Metadata", "programs_map name", name)
        object.__setattr__(self, "programs_map", programs_map)
        for name in ("engine_options", "device_options"):
            options = tuple(getattr(self, name))
            for option in options:
                if not isinstance(option, Option):
                    raise _invalid(
                        f"Metadata.{name} holds a {type(option).__name__}, not an Option"
                    )
            object.__setattr__(self, name, options)

    def get_anchor(self, name: str) -> Anchor:
        for anchor in self.anchors:
            if anchor.name == name:
                return anchor
        raise KeyError(name)

    def program_name(self, index: int) -> str | None:
        return self.programs_map.get(index)


class _FrozenDict(dict[int, str]):
    """A dict that refuses mutation, so a frozen Metadata stays frozen (and hashable)."""

    def _refuse(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError("programs_map is read-only")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _refuse

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(self.items()))


@dataclass(frozen=True, slots=True)
class ExecutableInfo:
    """The info of an executable blob: its (unique) name and whether its payload is compressed."""

    name: str
    compressed: bool = False

    def __post_init__(self) -> None:
        _check_str("ExecutableInfo", "name", self.name)
        object.__setattr__(self, "compressed", bool(self.compressed))


@dataclass(frozen=True, slots=True)
class TensorDataInfo:
    """The info of a tensor data blob: the anchor it feeds and the data's type and shape."""

    name: str
    tensor_info: TensorInfo

    def __post_init__(self) -> None:
        _check_str("TensorDataInfo", "name", self.name)
        if not isinstance(self.tensor_info, TensorInfo):
            raise _invalid("TensorDataInfo.tensor_info must be a TensorInfo")

    @property
    def size_in_bytes(self) -> int:
        return self.tensor_info.size_in_bytes

    @property
    def data_shape(self) -> tuple[int, ...]:
        return self.tensor_info.shape


@dataclass(frozen=True, slots=True)
class FeedDataInfo:
    """The info of a feed data blob: ``num_items`` consecutive tensors of ``tensor_info``.

    A feed holds the data an infeed stream delivers step after step; its payload has shape
    ``(num_items, *tensor_info.shape)``.
    """

    name: str
    tensor_info: TensorInfo
    num_items: int = 1

    def __post_init__(self) -> None:
        _check_str("FeedDataInfo", "name", self.name)
        if not isinstance(self.tensor_info, TensorInfo):
            raise _invalid("FeedDataInfo.tensor_info must be a TensorInfo")
        _check_uint("FeedDataInfo", "num_items", self.num_items)
        if _span(self.data_shape, self.tensor_info.dtype.item_size) > INT64_MAX:
            raise _invalid(
                f"FeedDataInfo.num_items: {self.num_items} items of "
                f"{self.tensor_info} span more than 2**63-1 bytes (the non-zero "
                "dimensions times the element size must fit in 63 bits)"
            )

    @property
    def size_in_bytes(self) -> int:
        return self.num_items * self.tensor_info.size_in_bytes

    @property
    def data_shape(self) -> tuple[int, ...]:
        return (self.num_items, *self.tensor_info.shape)


@dataclass(frozen=True, slots=True)
class OpaqueInfo:
    """The info of an opaque blob: a producer tag (``popart``, ``poptorch``...) and its
    executable."""

    name: str
    executable: str

    def __post_init__(self) -> None:
        _check_str("OpaqueInfo", "name", self.name)
        _check_str("OpaqueInfo", "executable", self.executable)
