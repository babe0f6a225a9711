"""Graphcore's PopEF data objects: mutable, with libpopef's getter methods and setters.

Each class holds the fields of its counterpart in :mod:`popef.types` and converts to it
(``_ours``) and from it (``_of``); validation is left to those dataclasses, so a bad value
raises :class:`popef.PopefError` when it is written, naming the field.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from .. import types as ours
from ..errors import PopefError
from .enums import DataType, TensorType

__all__ = [
    "DataType",
    "TensorType",
    "Name",
    "popefTypeToNumpyDType",
    "TensorInfo",
    "Option",
    "ProgramFlow",
    "Anchor",
    "Metadata",
    "TensorDataInfo",
    "FeedDataInfo",
]


class Name(str):
    """A name that reads both ways Graphcore's callers read it: ``info.name`` and
    ``info.name()`` (libpopef has a public member in some places, a getter in others)."""

    __slots__ = ()

    def __call__(self) -> str:
        return str(self)


def popefTypeToNumpyDType(dtype: DataType) -> np.dtype:
    """The numpy dtype of a PopEF data type (the 8-bit float kinds as raw ``uint8``)."""
    member = DataType._coerced(dtype)
    if not isinstance(member, DataType):
        raise PopefError(f"popefTypeToNumpyDType() needs a popef.DataType, got {dtype!r}")
    return member.numpy_dtype


def _accessors(attribute: str, convert: Callable[[Any], Any] = lambda value: value):
    """A getter method and a setter method over one attribute, as libpopef names them."""

    def get(self):
        return getattr(self, attribute)

    def set_(self, value) -> None:
        setattr(self, attribute, convert(value))

    return get, set_


class _Fields:
    """Equality and repr over the ``__slots__`` of the subclass."""

    __slots__ = ()

    def _values(self) -> tuple:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()

    __hash__ = None  # type: ignore[assignment]  # mutable, like libpopef's objects

    def __repr__(self) -> str:
        fields = ", ".join(f"{name.lstrip('_')}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({fields})"


class TensorInfo(_Fields):
    """``popef::TensorInfo``: ``dataType()``, ``shape()`` (a list), ``sizeInBytes()``."""

    __slots__ = ("_data_type", "_shape")

    def __init__(self, dataType: DataType = DataType.BOOL, shape: Iterable[int] = ()):
        self._data_type = DataType._coerced(dataType)
        self._shape = list(shape)

    dataType, setDataType = _accessors("_data_type", DataType._coerced)
    shape, setShape = _accessors("_shape", list)

    def sizeInBytes(self) -> int:
        return self._ours().size_in_bytes

    def _ours(self) -> ours.TensorInfo:
        return ours.TensorInfo(self._data_type, tuple(self._shape))

    @classmethod
    def _of(cls, info: ours.TensorInfo) -> TensorInfo:
        return cls(DataType(info.dtype), info.shape)


class Option(_Fields):
    """``popef::Option``: one engine or device option."""

    __slots__ = ("_name", "_value")

    def __init__(self, name: str = "", value: str = ""):
        self._name, self._value = name, value

    name, setName = _accessors("_name")
    value, setValue = _accessors("_value")

    def _ours(self) -> ours.Option:
        return ours.Option(self._name, self._value)

    @classmethod
    def _of(cls, option: ours.Option) -> Option:
        return cls(option.name, option.value)


class ProgramFlow(_Fields):
    """``popef::ProgramFlow``: ``load()``, ``main()``, ``save()`` lists of program indices."""

    __slots__ = ("_load", "_main", "_save")

    def __init__(
        self, load: Iterable[int] = (), main: Iterable[int] = (), save: Iterable[int] = ()
    ):
        self._load, self._main, self._save = list(load), list(main), list(save)

    load, setLoad = _accessors("_load", list)
    main, setMain = _accessors("_main", list)
    save, setSave = _accessors("_save", list)

    def _ours(self) -> ours.ProgramFlow:
        return ours.ProgramFlow(tuple(self._load), tuple(self._main), tuple(self._save))

    @classmethod
    def _of(cls, flow: ours.ProgramFlow) -> ProgramFlow:
        return cls(flow.load, flow.main, flow.save)


class Anchor(_Fields):
    """``popef::Anchor``: one host-device data stream of a model."""

    __slots__ = ("_name", "_handle", "_tensor_info", "_programs", "_is_per_replica", "_type")

    def __init__(
        self,
        name: str = "",
        handle: str = "",
        tensorInfo: TensorInfo | None = None,
        programs: Iterable[int] = (),
        isPerReplica: bool = False,
        type: TensorType = TensorType.UNKNOWN,
    ):
        self._name, self._handle = name, handle
        self._tensor_info = tensorInfo if tensorInfo is not None else TensorInfo()
        self._programs = list(programs)
        self._is_per_replica = isPerReplica
        self._type = TensorType._coerced(type)

    name, setName = _accessors("_name")
    handle, setHandle = _accessors("_handle")
    tensorInfo, setTensorInfo = _accessors("_tensor_info")
    programs, setPrograms = _accessors("_programs", list)
    isPerReplica, setIsPerReplica = _accessors("_is_per_replica")
    type, setType = _accessors("_type", TensorType._coerced)

    def _ours(self) -> ours.Anchor:
        return ours.Anchor(
            self._name,
            self._handle,
            _info_of(self._tensor_info, "Anchor"),
            tuple(self._programs),
            self._is_per_replica,
            self._type,
        )

    @classmethod
    def _of(cls, anchor: ours.Anchor) -> Anchor:
        return cls(
            anchor.name,
            anchor.handle,
            TensorInfo._of(anchor.tensor_info),
            anchor.programs,
            anchor.is_per_replica,
            TensorType(anchor.type),
        )


class Metadata(_Fields):
    """``popef::Metadata``: how to run one executable, with libpopef's getters and setters."""

    __slots__ = (
        "_executable",
        "_anchors",
        "_program_flow",
        "_programs_map",
        "_replication_factor",
        "_num_ipus",
        "_ipu_version",
        "_is_pod",
        "_num_processes",
        "_is_inference",
        "_seed_handle",
        "_engine_options",
        "_device_options",
        "_device_iterations",
    )

    def __init__(self) -> None:
        defaults = ours.Metadata(executable="")
        self._set_from(defaults)

    def _set_from(self, md: ours.Metadata) -> None:
        self._executable = md.executable
        self._anchors = [Anchor._of(a) for a in md.anchors]
        self._program_flow = ProgramFlow._of(md.program_flow)
        self._programs_map = dict(md.programs_map)
        self._replication_factor = md.replication_factor
        self._num_ipus = md.num_ipus
        self._ipu_version = md.ipu_version
        self._is_pod = md.is_pod
        self._num_processes = md.num_processes
        self._is_inference = md.is_inference
        self._seed_handle = md.seed_handle
        self._engine_options = [Option._of(o) for o in md.engine_options]
        self._device_options = [Option._of(o) for o in md.device_options]
        self._device_iterations = md.device_iterations

    executable, setExecutable = _accessors("_executable")
    anchors, setAnchors = _accessors("_anchors", list)
    programFlow, setProgramFlow = _accessors("_program_flow")
    programsMap, setProgramsMap = _accessors("_programs_map", dict)
    replicationFactor, setReplicationFactor = _accessors("_replication_factor")
    numIpus, setNumIpus = _accessors("_num_ipus")
    ipuVersion, setIpuVersion = _accessors("_ipu_version")
    isPOD, setIsPOD = _accessors("_is_pod")
    numProcesses, setNumProcesses = _accessors("_num_processes")
    isInference, setIsInference = _accessors("_is_inference")
    seedHandle, setSeedHandle = _accessors("_seed_handle")
    engineOptions, setEngineOptions = _accessors("_engine_options", list)
    deviceOptions, setDeviceOptions = _accessors("_device_options", list)
    deviceIterations, setDeviceIterations = _accessors("_device_iterations")

    def _ours(self) -> ours.Metadata:
        return ours.Metadata(
            executable=self._executable,
            anchors=tuple(_converted(a, Anchor, "Metadata.anchors") for a in self._anchors),
            program_flow=_converted(self._program_flow, ProgramFlow, "Metadata.programFlow"),
            programs_map=self._programs_map,
            replication_factor=self._replication_factor,
            num_ipus=self._num_ipus,
            ipu_version=self._ipu_version,
            is_pod=self._is_pod,
            num_processes=self._num_processes,
            is_inference=self._is_inference,
            seed_handle=self._seed_handle,
            engine_options=tuple(
                _converted(o, Option, "Metadata.engineOptions") for o in self._engine_options
            ),
            device_options=tuple(
                _converted(o, Option, "Metadata.deviceOptions") for o in self._device_options
            ),
            device_iterations=self._device_iterations,
        )

    @classmethod
    def _of(cls, md: ours.Metadata) -> Metadata:
        wrapper = cls.__new__(cls)
        wrapper._set_from(md)
        return wrapper


class TensorDataInfo(_Fields):
    """``popef::TensorDataInfo``: the anchor name and TensorInfo of a tensor data blob."""

    __slots__ = ("_name", "_tensor_info")

    def __init__(self, name: str = "", tensorInfo: TensorInfo | None = None):
        self._name = Name(name)
        self._tensor_info = tensorInfo if tensorInfo is not None else TensorInfo()

    @property
    def name(self) -> Name:
        return self._name

    @name.setter
    def name(self, value: str) -> None:
        self._name = Name(value)

    def setName(self, value: str) -> None:
        self._name = Name(value)

    tensorInfo, setTensorInfo = _accessors("_tensor_info")

    def _ours(self) -> ours.TensorDataInfo:
        return ours.TensorDataInfo(str(self._name), _info_of(self._tensor_info, "TensorDataInfo"))

    @classmethod
    def _of(cls, info: ours.TensorDataInfo) -> TensorDataInfo:
        return cls(info.name, TensorInfo._of(info.tensor_info))


class FeedDataInfo(TensorDataInfo):
    """``popef::FeedDataInfo``: a TensorDataInfo for ``numItems()`` consecutive tensors
    (``numItems`` is this library's: a feed's payload holds that many items)."""

    __slots__ = ("_num_items",)

    def __init__(self, name: str = "", tensorInfo: TensorInfo | None = None, numItems: int = 1):
        super().__init__(name, tensorInfo)
        self._num_items = numItems

    numItems, setNumItems = _accessors("_num_items")

    def _values(self) -> tuple:
        return (self._name, self._tensor_info, self._num_items)

    def __repr__(self) -> str:
        return (
            f"FeedDataInfo(name={self._name!r}, tensorInfo={self._tensor_info!r}, "
            f"numItems={self._num_items!r})"
        )

    def _ours(self) -> ours.FeedDataInfo:  # type: ignore[override]
        return ours.FeedDataInfo(
            str(self._name), _info_of(self._tensor_info, "FeedDataInfo"), self._num_items
        )

    @classmethod
    def _of(cls, info: ours.FeedDataInfo) -> FeedDataInfo:  # type: ignore[override]
        return cls(info.name, TensorInfo._of(info.tensor_info), info.num_items)


def _info_of(value: object, owner: str) -> ours.TensorInfo:
    return _converted(value, TensorInfo, f"{owner}.tensorInfo")


def _converted(value: object, kind: type, where: str):
    """Our dataclass for a Graphcore object (ours passes through); PopefError otherwise."""
    if isinstance(value, kind):
        return value._ours()
    mine = getattr(ours, kind.__name__)
    if isinstance(value, mine):
        return value
    raise PopefError(f"{where} must hold a popef.{kind.__name__}, got {type(value).__name__}")
