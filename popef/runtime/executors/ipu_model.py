"""The ``ipu-model`` executor: IPU execution semantics emulated on the host.

Like Poplar's IPUModel, it simulates a device — a number of IPUs of one version with a number
of tiles each — and refuses what would not run on it:

- a model compiled for another IPU version, or needing more IPUs
  (``num_ipus`` × ``replication_factor``) than the device has;
- a model whose tensors do not fit one replica's in-processor memory: ``num_ipus`` of the model
  × tiles per IPU × memory per tile (Mk1: 1216 tiles × 256 KiB; Mk2 and Bow: 1472 × 624 KiB),
  counting the persistent tensors (weights) plus the peak of the live step tensors.

It then runs the way the hardware does: each replica holds its persistent tensors (loaded once;
read-only, so replicas without per-replica weights share one host copy while the memory check
counts them per replica), host inputs are copied into device memory and outputs back,
and the main programs run step by step — runs of ``device_iterations`` steps, every replica in
each step — with the readable interpreter, ``popef.runtime.interpreter.run_program``.
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...errors import DeviceOutOfMemoryError, ExecutionError
from ..interpreter import run_program
from ..loaded import LoadedModel
from ..messages import quote
from .base import Executor, check_int_option, run_save_programs

__all__ = ["IpuModelExecutor", "IpuArch", "IPU_ARCHS"]

KiB = 1024


@dataclass(frozen=True)
class IpuArch:
    version: int  # as in Metadata.ipu_version
    target: str  # Poplar's target name
    product: str
    tiles: int
    memory_per_tile: int  # bytes

    def label(self) -> str:
        return f"{self.target} ({self.product})"


IPU_ARCHS: dict[int, IpuArch] = {
    1: IpuArch(1, "ipu1", "Mk1", 1216, 256 * KiB),
    2: IpuArch(2, "ipu2", "Mk2", 1472, 624 * KiB),
    21: IpuArch(21, "ipu21", "Bow", 1472, 624 * KiB),
}


def _bytes(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.2f} {unit} ({n} bytes)"
    return f"{n} bytes"


class IpuModelExecutor(Executor):
    name = "ipu-model"
    description = (
        "emulates IPU execution on the host like Poplar's IPUModel: simulated IPUs, "
        "tiles and memory, replicas and device iterations step by step"
    )
    options = {
        "num_ipus": "IPUs of the simulated device (default: what the model needs, num_ipus × "
        "replication_factor)",
        "tiles_per_ipu": "tiles per IPU (default: all the tiles of the IPU version)",
        "ipu_version": "1 (Mk1), 2 (Mk2) or 21 (Bow) (default: the model's)",
    }

    def __init__(
        self, *, num_ipus: Any = None, tiles_per_ipu: Any = None, ipu_version: Any = None
    ) -> None:
        super().__init__()
        self.num_ipus = check_int_option(self.name, "num_ipus", num_ipus)
        self.tiles_per_ipu = check_int_option(self.name, "tiles_per_ipu", tiles_per_ipu)
        version = check_int_option(self.name, "ipu_version", ipu_version)
        if version is not None and version not in IPU_ARCHS:
            raise ExecutionError(
                f"executor '{self.name}': unknown IPU version {version} (expected {_versions()})"
            )
        self.ipu_version = version
        self._replicas: list[dict[str, np.ndarray]] = []
        self.main_runs = 0  # launches of the main programs (each of up to device_iterations)

    def load(self, model: LoadedModel) -> None:
        arch = self._check_fit(model)
        self.model = model
        self.arch = arch
        # replicas without per-replica weights hold the same persistent tensors: they share
        # one read-only state (the memory check above still counts it once per replica)
        self._replicas = self.run_load_programs(model)
        for device in self._replicas:
            for array in device.values():
                if isinstance(array, np.ndarray):
                    array.flags.writeable = False
        if len(self._replicas) == 1:
            self._replicas *= model.replication_factor

    def _check_fit(self, model: LoadedModel) -> IpuArch:
        arch = IPU_ARCHS.get(model.ipu_version)
        if arch is None:
            raise ExecutionError(
                f"model {quote(model.name)} is compiled for IPU version "
                f"{model.ipu_version}, which the IPU model does not know "
                f"(expected {_versions()})"
            )
        if self.ipu_version is not None and self.ipu_version != model.ipu_version:
            device = IPU_ARCHS[self.ipu_version]
            raise ExecutionError(
                f"model {quote(model.name)} is compiled for {arch.label()} but the "
                f"simulated device is {device.label()}"
            )
        model_ipus = max(1, model.num_ipus)
        rf = model.replication_factor
        needed = model_ipus * rf
        available = self.num_ipus if self.num_ipus is not None else needed
        if needed > available:
            raise ExecutionError(
                f"model {quote(model.name)} needs {needed} IPUs ({model_ipus} per "
                f"replica × replication factor {rf}) but the simulated device "
                f"has {available}"
            )
        tiles = self.tiles_per_ipu if self.tiles_per_ipu is not None else arch.tiles
        budget = model_ipus * tiles * arch.memory_per_tile
        persistent, peak = model.memory_need()
        if persistent + peak > budget:
            raise DeviceOutOfMemoryError(
                f"model {quote(model.name)} does not fit in IPU memory: one replica needs "
                f"{_bytes(persistent + peak)} ({_bytes(persistent)} of persistent tensors and "
                f"a peak of {_bytes(peak)} of step tensors) but has {_bytes(budget)} "
                f"({model_ipus} IPU × {tiles} tiles × {arch.memory_per_tile // KiB} KiB, "
                f"{arch.label()})"
            )
        return arch

    def execute(self, inputs: Mapping[str, np.ndarray], steps: int) -> dict[str, np.ndarray]:
        model = self._require_model()
        iterations = model.device_iterations
        results = []
        for first in range(0, steps, iterations):  # one launch of the main programs
            self.main_runs += 1
            for step in range(first, min(first + iterations, steps)):
                per_replica = []
                for replica, device in enumerate(self._replicas):
                    per_replica.append(self._step(model, device, inputs, steps, step, replica))
                results.append(per_replica)
                for program in model.main:
                    self.program_runs[program.index] += 1
        return model.assemble_outputs(results, steps)

    def _step(
        self,
        model: LoadedModel,
        device: dict[str, np.ndarray],
        inputs: Mapping[str, np.ndarray],
        steps: int,
        step: int,
        replica: int,
    ) -> dict[str, np.ndarray]:
        """One step of one replica: step tensors live in a scope above the persistent ones."""
        scope: ChainMap = ChainMap({}, device)
        host: dict[str, np.ndarray] = {}

        def read(handle: str) -> np.ndarray:
            stream = model.streams[handle]
            if stream.stored:
                return model.stored_for_replica(stream, replica)  # read-only, like weights
            return np.array(model.step_input(stream, inputs[stream.name], steps, step, replica))

        def write(handle: str, array: np.ndarray) -> None:
            host[handle] = np.array(array)

        for program in model.main:
            run_program(program, scope, read, write)  # type: ignore[arg-type]
        return host

    def save(self) -> dict[str, np.ndarray]:
        model = self._require_model()
        result = run_save_programs(model, self._replicas)
        for program in model.save:
            self.program_runs[program.index] += 1
        return result

    def close(self) -> None:
        self._replicas = []
        super().close()


def _versions() -> str:
    return ", ".join(f"{v} ({a.product})" for v, a in IPU_ARCHS.items())
