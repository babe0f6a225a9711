"""Graphcore's ``model_runtime`` Python module, over :class:`popef.runtime.ModelRunner`.

::

    runner = model_runtime.ModelRunner("model.popef", config=model_runtime.ModelRunnerConfig())
    view = model_runtime.InputMemoryView()
    for desc in runner.getExecuteInputs():                  # .name .shape .data_type
        view[desc.name] = np.zeros(desc.shape, popef.popefTypeToNumpyDType(desc.data_type))
    result = runner.execute(view)                           # {name: buffer}
    out = np.frombuffer(result[name], dtype).reshape(desc.shape)

Inputs are memory, as Model Runtime reads them: an array of the input's data type holding the
elements of one step (or of ``n`` steps, for ``n`` device iterations) is taken whatever its
shape, and raw bytes are read as the input's data type. Outputs are C-contiguous numpy arrays
of the output's type and shape, which ``np.frombuffer`` takes as a buffer.
"""

from __future__ import annotations

import enum
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np

from ..errors import ExecutionError
from ..model import Model
from ..runtime.runner import ModelRunner as _Runner
from ..runtime.runner import OutputFutures, TensorDesc
from .enums import DataType

__all__ = [
    "ModelRunner",
    "ModelRunnerConfig",
    "DeviceWaitConfig",
    "DeviceWaitStrategy",
    "DataDesc",
    "InputDesc",
    "OutputDesc",
    "InputMemoryView",
    "OutputMemoryView",
    "PopefPaths",
    "OutputFutureMemory",
]


class DeviceWaitStrategy(enum.Enum):
    """What to do when no device is free. Here a device is always free, so every strategy
    gets one at once."""

    NO_WAIT = 0
    WAIT_WITH_TIMEOUT = 1
    WAIT_FOREVER = 2


@dataclass
class DeviceWaitConfig:
    """How long to wait for a device (``timeout``) and how often to look (``sleepTime``)."""

    strategy: DeviceWaitStrategy = DeviceWaitStrategy.NO_WAIT
    timeout: timedelta = timedelta(0)
    sleepTime: timedelta = timedelta(0)

    def _check(self) -> None:
        if not isinstance(self.strategy, DeviceWaitStrategy):
            raise ExecutionError(
                f"DeviceWaitConfig.strategy must be a DeviceWaitStrategy, got {self.strategy!r}"
            )
        for name in ("timeout", "sleepTime"):
            _seconds(f"DeviceWaitConfig.{name}", getattr(self, name))


@dataclass
class ModelRunnerConfig:
    """Model Runtime's runner options.

    ``device_wait_config``: accepted and checked; a device is always free here.
    ``thread_safe``: executions are serialised by the runner whatever its value, so it is
    always thread safe. ``timeout_ns`` (nanoseconds or a ``timedelta``): accepted and
    checked; inputs arrive with the call, so nothing waits for them. ``executor`` (this
    library's) names the executor that runs the model (``cpu``, ``ipu-model``, plug-ins).
    """

    device_wait_config: DeviceWaitConfig = field(default_factory=DeviceWaitConfig)
    thread_safe: bool = True
    timeout_ns: int | timedelta = 0
    executor: str = "cpu"

    def _check(self) -> None:
        if not isinstance(self.device_wait_config, DeviceWaitConfig):
            raise ExecutionError(
                f"ModelRunnerConfig.device_wait_config must be a "
                f"DeviceWaitConfig, got {type(self.device_wait_config).__name__}"
            )
        self.device_wait_config._check()
        if not isinstance(self.thread_safe, bool):
            raise ExecutionError(
                f"ModelRunnerConfig.thread_safe must be a bool, got {self.thread_safe!r}"
            )
        timeout = self.timeout_ns
        if isinstance(timeout, timedelta):
            _seconds("ModelRunnerConfig.timeout_ns", timeout)
        elif isinstance(timeout, bool) or not isinstance(timeout, (int, np.integer)) or timeout < 0:
            raise ExecutionError(
                f"ModelRunnerConfig.timeout_ns must be nanoseconds >= 0 or a "
                f"timedelta, got {timeout!r}"
            )


def _seconds(where: str, value: object) -> float:
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise ExecutionError(f"{where} must be a timedelta or seconds, got {value!r}")
    if not seconds >= 0:
        raise ExecutionError(f"{where} must not be negative, got {value!r}")
    return seconds


class PopefPaths(list):
    """The PopEF files of one model: ``PopefPaths(path)`` or ``PopefPaths([path, ...])``."""

    def __init__(self, paths: str | os.PathLike | Iterable[str | os.PathLike] = ()):
        super().__init__([paths] if isinstance(paths, (str, os.PathLike)) else paths)


class DataDesc:
    """An input or output as Model Runtime describes it (one device iteration's shape).

    As Model Runtime's are, a description is a copy: ``getExecuteInputs()`` returns new ones
    and ``desc.shape`` a new list each time it is read, so a caller that scales
    ``desc.shape[0]`` by its batches per step changes its own list and nothing else.
    """

    __slots__ = ("name", "_shape", "size_in_bytes", "data_type")

    def __init__(self, name: str, shape: Iterable[int], size_in_bytes: int, data_type: DataType):
        self.name = name
        self.shape = shape
        self.size_in_bytes = size_in_bytes
        self.data_type = data_type

    @property
    def shape(self) -> list[int]:
        return list(self._shape)

    @shape.setter
    def shape(self, value: Iterable[int]) -> None:
        self._shape = tuple(value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DataDesc):
            return NotImplemented
        return self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]  # mutable, like Model Runtime's

    def __repr__(self) -> str:
        return (
            f"DataDesc(name={self.name!r}, shape={self.shape!r}, "
            f"size_in_bytes={self.size_in_bytes!r}, data_type={self.data_type!r})"
        )

    def _fields(self) -> tuple:
        return (self.name, self._shape, self.size_in_bytes, self.data_type)

    def _copy(self) -> DataDesc:
        return DataDesc(*self._fields())

    @classmethod
    def _of(cls, desc: TensorDesc) -> DataDesc:
        return cls(desc.name, desc.shape, desc.size_in_bytes, DataType(desc.data_type))


InputDesc = OutputDesc = DataDesc


class InputMemoryView(dict):
    """The inputs of one execution: input name -> array (or any buffer)."""


class OutputMemoryView(dict):
    """Caller-owned output memory: output name -> writable buffer that the results fill."""


class OutputFutureMemory(Mapping[str, np.ndarray]):
    """The outputs of :meth:`ModelRunner.executeAsync`: ``wait()`` blocks until they are all
    there; ``result[name]`` is one output (waiting for it if need be)."""

    def __init__(self, futures: OutputFutures):
        self._futures = futures

    def wait(self) -> None:
        self._futures.wait()

    def __getitem__(self, name: str) -> np.ndarray:
        return np.ascontiguousarray(self._futures[name].result())

    def __iter__(self) -> Iterator[str]:
        return iter(self._futures)

    def __len__(self) -> int:
        return len(self._futures)


class ModelRunner:
    """``model_runtime::ModelRunner`` on a path, a list of paths (:class:`PopefPaths`) or a
    :class:`popef.Model`: loads the model once, then runs it."""

    def __init__(
        self,
        popef: str | os.PathLike | Iterable[str | os.PathLike] | Model,
        config: ModelRunnerConfig | None = None,
    ):
        config = ModelRunnerConfig() if config is None else config
        if not isinstance(config, ModelRunnerConfig):
            raise ExecutionError(f"config must be a ModelRunnerConfig, got {type(config).__name__}")
        config._check()
        source = popef if isinstance(popef, (str, os.PathLike, Model)) else list(popef)
        self.config = config
        self._runner = _Runner(source, config.executor)
        self._inputs = [DataDesc._of(d) for d in self._runner.get_execute_inputs()]
        self._outputs = [DataDesc._of(d) for d in self._runner.get_execute_outputs()]

    def getExecuteInputs(self) -> list[DataDesc]:
        return [desc._copy() for desc in self._inputs]

    def getExecuteOutputs(self) -> list[DataDesc]:
        return [desc._copy() for desc in self._outputs]

    def execute(
        self, inputs: Mapping[str, Any], outputs: Mapping[str, Any] | None = None
    ) -> dict[str, np.ndarray] | None:
        """Run once; returns ``{output name: array}``, or fills ``outputs`` (an
        :class:`OutputMemoryView`) and returns None."""
        results = self._runner.execute(self._arrays(inputs))
        if outputs is None:
            return {name: np.ascontiguousarray(array) for name, array in results.items()}
        _fill(outputs, results)
        return None

    def executeAsync(self, inputs: Mapping[str, Any]) -> OutputFutureMemory:
        return OutputFutureMemory(self._runner.execute_async(self._arrays(inputs)))

    def close(self) -> None:
        self._runner.close()

    def __enter__(self) -> ModelRunner:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _arrays(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(inputs, Mapping):
            raise ExecutionError(
                f"inputs must be an InputMemoryView (name -> array), got {type(inputs).__name__}"
            )
        arrays = dict(inputs)
        for desc in self._inputs:
            if desc.name in arrays:
                arrays[desc.name] = _as_input(desc, arrays[desc.name])
        return arrays


def _as_input(desc: DataDesc, value: Any) -> Any:
    """An input as memory: bytes (or a ``uint8`` array, for a wider type) read as the input's
    type; an array of that type holding one or ``n`` steps' elements laid out in the input's
    shape (anything else is left for the runner to refuse, naming what it expected)."""
    dtype = desc.data_type.numpy_dtype
    if isinstance(value, np.ndarray) and value.dtype == np.uint8 and dtype.itemsize > 1:
        value = memoryview(np.ascontiguousarray(value).reshape(-1))
    if isinstance(value, (bytes, bytearray, memoryview)):
        view = memoryview(value).cast("B")
        if view.nbytes % dtype.itemsize:
            return np.frombuffer(view, np.uint8)  # the runner names the dtype it expected
        value = np.frombuffer(view, dtype)
    if not isinstance(value, np.ndarray) or value.dtype != dtype:
        return value
    shape = tuple(desc.shape)
    step = math.prod(shape)
    if value.shape == shape or not shape or not step or value.size % step:
        return value
    steps = value.size // step
    return np.ascontiguousarray(value).reshape((steps * shape[0], *shape[1:]))


def _fill(outputs: Mapping[str, Any], results: Mapping[str, np.ndarray]) -> None:
    for name, buffer in outputs.items():
        if name not in results:
            raise ExecutionError(
                f"output view names '{name}', which is not an output; the "
                f"outputs are {', '.join(repr(n) for n in results)}"
            )
        source = np.ascontiguousarray(results[name]).reshape(-1).view(np.uint8)
        try:
            target = memoryview(buffer).cast("B")
        except TypeError:
            raise ExecutionError(
                f"output view '{name}' must be a writable buffer, got {type(buffer).__name__}"
            ) from None
        if target.readonly or target.nbytes != source.nbytes:
            raise ExecutionError(
                f"output view '{name}' needs {source.nbytes} writable bytes, "
                f"found {target.nbytes}{' read-only' if target.readonly else ''}"
            )
        np.frombuffer(target, np.uint8)[:] = source
