"""The readable interpreter: the reference semantics of a loaded program (docs/runtime.md §1.1).

:func:`run_program` runs the steps of one :class:`~popef.runtime.loaded.BoundProgram` in order
on a dictionary of tensors. The ``ipu-model`` executor runs every program with it; the other
executors run load and save programs with it (:func:`run_load_programs`) and must give the
same results for main programs.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..errors import ExecutionError
from .loaded import BoundNode, BoundProgram, LoadedModel
from .program import HostToDevice

__all__ = ["run_load_programs", "run_program"]


def run_program(
    program: BoundProgram,
    env: dict[str, np.ndarray],
    read: Callable[[str], np.ndarray],
    write: Callable[[str, np.ndarray], None],
) -> None:
    """Run the steps of one program, in order, on the tensors in ``env``.

    ``read(handle)`` gives the host data of a stream, ``write(handle, array)`` takes a device
    tensor copied to the host. This is the reference semantics that every executor follows.
    """
    for step in program.steps:
        if isinstance(step, BoundNode):
            values = [env[name] if name else None for name in step.inputs]
            results = step.op.run(values)
            for name, value in zip(step.outputs, results):
                if name:
                    env[name] = value
        elif isinstance(step, HostToDevice):
            env[step.tensor] = read(step.handle)
        else:
            write(step.handle, env[step.tensor])


def run_load_programs(model: LoadedModel, replica: int = 0) -> dict[str, np.ndarray]:
    """The persistent tensors of ``replica`` after the load programs, on the stored data (which
    is read-only: a load program only names it)."""
    env: dict[str, np.ndarray] = {}

    def read(handle: str) -> np.ndarray:
        return model.stored_for_replica(model.streams[handle], replica)

    for program in model.load:
        run_program(program, env, read, _refuse_write)
    return env


def _refuse_write(handle: str, array: np.ndarray) -> None:  # pragma: no cover - load checks
    raise ExecutionError(f"load programs do not copy to the host (handle '{handle}')")
