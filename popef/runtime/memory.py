"""Memory accounting: what one replica of a loaded model needs on the device.

The loader (``popef.runtime.loader``) computes it once per model; the ``ipu-model`` executor
checks it against the simulated IPUs' memory and every request's estimate is checked against
``RuntimeLimits.max_request_bytes`` (docs/runtime.md, "Limits").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .loaded import BoundNode, BoundProgram
from .ops import TensorSpec
from .program import DeviceToHost, HostToDevice

__all__ = ["memory_need", "peak_live_bytes"]


def memory_need(
    programs: Iterable[BoundProgram], specs: Mapping[str, TensorSpec], persistent: frozenset[str]
) -> tuple[int, int]:
    """``(bytes of the persistent tensors, peak of the live step tensors of ``programs``)``.

    ``programs`` are those that run after load (the main and save programs); a step tensor
    lives from the step defining it to its last use.
    """
    persistent_bytes = sum(specs[t].nbytes for t in persistent)
    peak = max((peak_live_bytes(p, specs, persistent) for p in programs), default=0)
    return persistent_bytes, peak


def peak_live_bytes(
    program: BoundProgram, specs: Mapping[str, TensorSpec], persistent: frozenset[str]
) -> int:
    """The largest sum of live step tensors over the steps of ``program``: one pass over the
    steps with a running total (linear in the steps and tensors)."""
    last_use: dict[str, int] = {}
    for i, step in enumerate(program.steps):
        used = (
            step.inputs
            if isinstance(step, BoundNode)
            else (step.tensor,)
            if isinstance(step, DeviceToHost)
            else ()
        )
        for name in used:
            if name and name not in persistent:
                last_use[name] = i
    dying: dict[int, list[str]] = {}  # step -> the tensors that die after it
    live = peak = 0
    for i, step in enumerate(program.steps):
        defined = (
            step.outputs
            if isinstance(step, BoundNode)
            else (step.tensor,)
            if isinstance(step, HostToDevice)
            else ()
        )
        for name in defined:
            if name and name not in persistent:
                live += specs[name].nbytes
                dying.setdefault(max(i, last_use.get(name, i)), []).append(name)
        peak = max(peak, live)
        for name in dying.pop(i, ()):
            live -= specs[name].nbytes
    return peak
