"""Checking a request against a loaded model: its inputs, then what its steps may cost.

:class:`RequestChecks` is built once per loaded model (``ModelRunner`` does) and runs on every
request: every user input given, with the anchor's dtype and either the anchor's shape or
``n`` times its leading dimension (``n`` steps, the same for every input; docs/runtime.md,
"Steps, device iterations and replicas"), then the steps against the model's limits. A front
end that has already checked its requests (``popef.servable.validation``) only needs the
second part, :meth:`RequestChecks.check_steps` (``ModelRunner.execute_checked``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..errors import ExecutionError, PopefError
from ..types import DataType
from .limits import MAIN_STEP_LIMIT
from .loaded import LoadedModel, TensorDesc
from .messages import quote

__all__ = ["RequestChecks"]


class RequestChecks:
    """The checks of one loaded model's requests; the common case (the exact shapes) costs a
    dict lookup and two comparisons per input."""

    def __init__(self, model: LoadedModel) -> None:
        self.model = model
        self._inputs = [(s.name, s.numpy_dtype, s.shape, s) for s in model.inputs]
        self._scalar_output = next((s for s in model.outputs if not s.shape), None)

    def check_inputs(self, inputs: Mapping[str, object]) -> tuple[dict[str, np.ndarray], int]:
        """Validate a request: ``({input name: array}, steps)``, then :meth:`check_steps`.

        Scalar inputs are used by every step; a request of scalars only is one step.
        """
        if type(inputs) is not dict and not isinstance(inputs, Mapping):
            raise ExecutionError(
                f"inputs must be a mapping of input name to array, got {type(inputs).__name__}"
            )
        if len(inputs) != len(self._inputs):
            self._unknown_or_missing(inputs)
        arrays: dict[str, np.ndarray] = {}
        steps: int | None = None
        first = ""
        for name, dtype, shape, stream in self._inputs:
            try:
                value = inputs[name]
            except KeyError:
                self._unknown_or_missing(inputs)
                raise  # pragma: no cover - the line above raises
            array = value if type(value) is np.ndarray else np.asarray(value)
            if array.dtype != dtype:
                raise ExecutionError(
                    f"input '{name}' has dtype {_dtype_name(array.dtype)}"
                    f", expected {stream.dtype.name} ({_describe(stream)})"
                )
            if array.shape == shape:
                n = 1 if shape and shape[0] else None
            else:
                n = _steps_of(array.shape, shape)
                if n is None:
                    raise ExecutionError(
                        f"input '{name}' has shape {list(array.shape)}, expected "
                        f"{_expected_shapes(shape)}"
                    )
            if n is not None:
                if steps is None:
                    steps, first = n, name
                elif n != steps:
                    raise ExecutionError(
                        f"inputs disagree on the number of steps: '{first}' carries {steps} "
                        f"and '{name}' carries {n} (input shape {list(array.shape)}, "
                        f"one step is {list(shape)})"
                    )
            arrays[name] = array
        if steps is None:
            return arrays, 1
        self.check_steps(steps)
        return arrays, steps

    def check_steps(self, steps: int) -> None:
        """What a request of ``steps`` steps may cost: its estimated memory within
        ``max_request_bytes``, and one step only for a model with a scalar output."""
        model = self.model
        limit = model.limits.max_request_bytes
        per_step = model.request_step_bytes
        if steps * per_step > limit:
            raise ExecutionError(
                f"a request of {steps} steps to model {quote(model.name)} needs about "
                f"{steps * per_step} bytes ({per_step} per step), more than the limit of "
                f"{limit} (max_request_bytes): send at most {limit // per_step} steps "
                "per request"
            )
        if steps > 1 and self._scalar_output is not None:
            raise ExecutionError(
                f"output '{self._scalar_output.name}' is a scalar, so model "
                f"'{model.name}' runs one step per call; the inputs carry "
                f"{steps}"
            )

    def _unknown_or_missing(self, inputs: Mapping[str, object]) -> None:
        """Raise for a name that is not an input, else for the first input not given."""
        model = self.model
        names = {s.name for s in model.inputs}
        for key in inputs:
            if key not in names:
                raise ExecutionError(
                    f"unknown input {quote(str(key))}: model {quote(model.name)} "
                    f"takes {_names(model.inputs)}"
                )
        for stream in model.inputs:
            if stream.name not in inputs:
                raise ExecutionError(
                    f"missing input {quote(stream.name)} ({_describe(stream)}): "
                    f"model {quote(model.name)} takes {_names(model.inputs)}"
                )


def _describe(stream: TensorDesc) -> str:
    return f"{stream.dtype.name}{list(stream.shape)}"


def _names(streams: Sequence[TensorDesc]) -> str:
    if not streams:
        return "no inputs"
    return ", ".join(f"'{s.name}' {_describe(s)}" for s in streams)


def _dtype_name(dtype: np.dtype) -> str:
    try:
        name = DataType.from_numpy(dtype).name
    except PopefError:
        return str(dtype)
    if not dtype.isnative:  # the same DataType, in the other byte order
        order = "big" if dtype.byteorder == ">" else "little"
        return f"{name} in {order}-endian byte order (numpy '{dtype.str}'; native order expected)"
    return name


def _steps_of(shape: tuple[int, ...], step_shape: tuple[int, ...]) -> int | None:
    """``n`` when ``shape`` is ``n`` steps of ``step_shape`` stacked on the leading axis."""
    if not step_shape or not step_shape[0] or len(shape) != len(step_shape):
        return None
    if shape[1:] != step_shape[1:] or shape[0] % step_shape[0]:
        return None
    n = shape[0] // step_shape[0]
    return n if 1 <= n <= MAIN_STEP_LIMIT else None


def _expected_shapes(shape: tuple[int, ...]) -> str:
    if not shape or not shape[0]:
        return f"{list(shape)}"
    rest = ", ".join(str(d) for d in shape[1:])
    return (
        f"{list(shape)} (or n × {shape[0]} rows for n steps: [n*{shape[0]}"
        f"{', ' + rest if rest else ''}])"
    )
