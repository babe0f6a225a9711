"""The executor contract: what a plug-in implements to run models (docs/runtime.md).

An executor owns one model's device state. The runtime creates it with its options
(``get_executor(name, **options)``), gives it a checked :class:`LoadedModel` once with
:meth:`Executor.load` (which runs the load programs), then calls :meth:`Executor.execute` for
every request and :meth:`Executor.save` when the caller asks for the save programs.
"""

from __future__ import annotations

import abc
from collections import Counter
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from ...errors import ExecutionError
from ...options import parse_bool
from ..interpreter import run_load_programs, run_program
from ..loaded import LoadedModel, TensorDesc

__all__ = [
    "Executor",
    "check_bool_option",
    "check_int_option",
    "persistent_states",
    "replica_rows",
    "run_save_programs",
]


class Executor(abc.ABC):
    """Base class of executors.

    Subclasses set ``name`` and ``description``, list the options they take in ``options``
    (option name -> one-line help) and implement :meth:`load`, :meth:`execute` and
    :meth:`save`. ``program_runs`` counts, per program index, how many times the program ran
    (a main program once per step, all replicas together).
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    options: ClassVar[Mapping[str, str]] = {}

    def __init__(self, **options: Any) -> None:
        for key in options:
            if key not in self.options:
                accepted = ", ".join(sorted(self.options)) or "none"
                raise ExecutionError(
                    f"executor '{self.name}' has no option '{key}' (options: {accepted})"
                )
        self.program_runs: Counter[int] = Counter()
        self.model: LoadedModel | None = None

    @abc.abstractmethod
    def load(self, model: LoadedModel) -> None:
        """Check that ``model`` fits this executor and run its load programs, once."""

    @abc.abstractmethod
    def execute(self, inputs: Mapping[str, np.ndarray], steps: int) -> dict[str, np.ndarray]:
        """Run ``steps`` steps of the main programs.

        ``inputs`` holds every user input by name, already checked by
        :meth:`LoadedModel.check_inputs`: the anchor's dtype, ``steps`` × the anchor's leading
        dimension. Returns every user output by name, ``steps`` × the anchor's leading
        dimension (see :meth:`LoadedModel.assemble_outputs` for the layout).
        """

    @abc.abstractmethod
    def save(self) -> dict[str, np.ndarray]:
        """Run the save programs; returns the anchors they write, by name."""

    def close(self) -> None:
        """Release the device state."""
        self.model = None

    def run_load_programs(self, model: LoadedModel) -> list[dict[str, np.ndarray]]:
        """Run the load programs once per distinct replica state (:func:`persistent_states`)
        and count them in ``program_runs``: what most :meth:`load` implementations start with."""
        states = persistent_states(model)
        for program in model.load:
            self.program_runs[program.index] += 1
        return states

    def describe(self) -> str:
        return self.description

    def _require_model(self) -> LoadedModel:
        if self.model is None:
            raise ExecutionError(f"executor '{self.name}' has no model loaded")
        return self.model


def check_int_option(executor: str, name: str, value: object, minimum: int = 1) -> int | None:
    """An optional integer option, at least ``minimum``."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ExecutionError(
            f"executor '{executor}': option '{name}' must be an integer >= {minimum}, got {value!r}"
        )
    return int(value)


def check_bool_option(executor: str, name: str, value: object) -> bool:
    """A boolean option (:func:`popef.options.parse_bool`'s words)."""
    return parse_bool(value, f"executor '{executor}': option '{name}'", ExecutionError)


def replica_rows(x: np.ndarray, s: TensorDesc, n: int, rf: int, replica: int) -> np.ndarray:
    """The rows replica ``replica`` reads in all ``n`` steps of a request input."""
    if not s.per_replica:
        return x
    p = s.spec.shape
    return x.reshape(n, rf, *p)[:, replica].reshape(n * p[0], *p[1:])


def persistent_states(model: LoadedModel) -> list[dict[str, np.ndarray]]:
    """The persistent tensors after the load programs, one dictionary per distinct replica
    state: one per replica when the model has per-replica weights
    (:attr:`LoadedModel.has_per_replica_state`), else one that every replica shares."""
    distinct = model.replication_factor if model.has_per_replica_state else 1
    return [run_load_programs(model, replica) for replica in range(distinct)]


def run_save_programs(
    model: LoadedModel, envs: list[dict[str, np.ndarray]]
) -> dict[str, np.ndarray]:
    """Run the save programs on each replica's tensors; per-replica anchors gather replicas."""
    per_replica: list[dict[str, np.ndarray]] = []
    for replica, env in enumerate(envs):
        out: dict[str, np.ndarray] = {}
        scope = dict(env)

        def read(handle: str, replica: int = replica) -> np.ndarray:
            return model.stored_for_replica(model.streams[handle], replica)

        for program in model.save:
            run_program(program, scope, read, lambda h, a, out=out: out.__setitem__(h, np.array(a)))
        per_replica.append(out)
    result = {}
    for stream in model.save_outputs:
        if stream.per_replica and len(envs) > 1:
            result[stream.name] = np.stack([out[stream.handle] for out in per_replica])
        elif stream.per_replica:
            result[stream.name] = np.stack(
                [per_replica[0][stream.handle]] * model.replication_factor
            )
        else:
            result[stream.name] = per_replica[0][stream.handle]
    return result
