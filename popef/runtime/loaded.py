"""A loaded model: its graph program checked, bound to ops and shaped, ready for an executor.

:func:`popef.runtime.loader.load_model` makes a :class:`LoadedModel`; executors
(``popef.runtime.executors``) run it. It holds the programs in ``program_flow`` order, each
step checked and each node bound to its op (:class:`BoundNode`), every anchor the programs use
as a :class:`TensorDesc`, every tensor's shape and dtype, the stored data the programs read,
and the layout of a request's steps and replicas (docs/runtime.md, "Steps, device iterations
and replicas").

Tensors live in two scopes. Tensors defined by load programs are *persistent*: they stay on
the device for the life of the model (weights), and every later program may read them. Tensors
defined by a main program are *step-local*: they are recomputed at every step. Save programs
see the persistent tensors and their own. A tensor name is defined by exactly one step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..model import Model
from ..types import Anchor, DataType, TensorInfo
from .limits import RuntimeLimits
from .messages import quote
from .ops import Op, TensorSpec
from .program import DeviceToHost, GraphProgram, HostToDevice, Node

__all__ = ["BoundNode", "BoundProgram", "BoundStep", "LoadedModel", "StreamSpec", "TensorDesc"]


@dataclass(frozen=True)
class TensorDesc:
    """One input or output of a model as the runtime uses it: its anchor, and what one replica
    computes with. :meth:`ModelRunner.get_execute_inputs
    <popef.runtime.ModelRunner.get_execute_inputs>` gives these (Model Runtime's ``DataDesc``),
    and serving builds its descriptor on them (:class:`popef.servable.ModelTensor`).

    Built from the format's :class:`~popef.types.Anchor` and its :class:`~popef.types.TensorInfo`,
    never re-listing them: ``name``, ``handle``, ``info``, ``shape``, ``dtype`` and
    ``is_per_replica`` are the anchor's. ``shape`` is one step's (one device iteration's) shape,
    with a leading replica dimension when the anchor is per replica; a request may carry ``n``
    steps stacked on the leading axis. ``spec`` is the op contract's value for what one
    replica's step sees: the shape without that replica dimension, as a numpy dtype.
    """

    anchor: Anchor
    spec: TensorSpec
    per_replica: bool  # the anchor shape has a leading replication_factor dimension (factor > 1)
    stored: bool  # its data is stored in the model (weights, frozen inputs)

    @property
    def name(self) -> str:
        return self.anchor.name

    @property
    def handle(self) -> str:
        return self.anchor.handle

    @property
    def info(self) -> TensorInfo:
        """The format's description: data type and shape."""
        return self.anchor.tensor_info

    @property
    def shape(self) -> tuple[int, ...]:
        return self.anchor.tensor_info.shape

    @property
    def dtype(self) -> DataType:
        return self.anchor.tensor_info.dtype

    @property
    def data_type(self) -> DataType:
        """Model Runtime's name for :attr:`dtype`."""
        return self.dtype

    @property
    def numpy_dtype(self) -> np.dtype:
        return self.anchor.tensor_info.numpy_dtype

    @property
    def size_in_bytes(self) -> int:
        return self.anchor.tensor_info.size_in_bytes

    @property
    def is_per_replica(self) -> bool:
        """The anchor's flag, as the file states it (``per_replica`` also needs a replication
        factor above 1)."""
        return self.anchor.is_per_replica

    @property
    def batch(self) -> int | None:
        """Rows per step along the leading dimension; None for scalars (no leading dimension)."""
        return self.shape[0] if self.shape else None

    def __repr__(self) -> str:
        return (
            f"TensorDesc(name={self.name!r}, shape={self.shape!r}, dtype={self.dtype!r}, "
            f"handle={self.handle!r}, is_per_replica={self.is_per_replica!r})"
        )

    def __str__(self) -> str:
        return f"{self.name}: {self.dtype.name}{list(self.shape)}"


#: the earlier name of :class:`TensorDesc` inside the runtime (executor plug-ins may use it)
StreamSpec = TensorDesc


@dataclass(eq=False)
class BoundNode:
    """A node bound once at load to its op, with the shapes its inputs and outputs have."""

    node: Node
    op: Op
    input_specs: tuple[TensorSpec | None, ...]
    output_specs: tuple[TensorSpec, ...]

    @property
    def name(self) -> str:
        return self.node.name

    @property
    def inputs(self) -> tuple[str, ...]:
        return self.node.inputs

    @property
    def outputs(self) -> tuple[str, ...]:
        return self.node.outputs

    def describe(self) -> str:
        return f"{self.node.op_type} node {quote(self.node.name)}"


# A step of a loaded program: the copies as decoded, the nodes bound to their ops.
BoundStep = HostToDevice | BoundNode | DeviceToHost


@dataclass(eq=False)
class BoundProgram:
    """A program of the graph whose steps are checked and whose nodes are bound to ops."""

    index: int
    name: str
    phase: str  # "load", "main" or "save"
    steps: tuple[BoundStep, ...]

    def describe(self) -> str:
        return f"program {self.index} ('{self.name}')" if self.name else f"program {self.index}"

    def nodes(self) -> list[BoundNode]:
        return [s for s in self.steps if isinstance(s, BoundNode)]


@dataclass(eq=False)
class LoadedModel:
    """A model whose graph program is checked and shaped, ready for an executor."""

    model: Model
    graph: GraphProgram
    load: tuple[BoundProgram, ...]
    main: tuple[BoundProgram, ...]
    save: tuple[BoundProgram, ...]
    inputs: tuple[TensorDesc, ...]  # user inputs, in metadata order
    outputs: tuple[TensorDesc, ...]  # user outputs, in metadata order
    streams: dict[str, TensorDesc]  # handle -> stream, for every handle a step uses
    specs: dict[str, TensorSpec]  # tensor -> spec (one replica's)
    persistent: frozenset[str]  # tensors defined by load programs
    save_outputs: tuple[TensorDesc, ...] = ()
    # anchor name -> the stored data, read into memory at load
    stored_arrays: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    limits: RuntimeLimits = RuntimeLimits()
    # bytes one replica needs on the device (popef.runtime.memory): its persistent tensors,
    # and the peak of its live step tensors over the main and save programs
    persistent_bytes: int = 0
    peak_step_bytes: int = 0

    # ---- what the metadata says
    @property
    def name(self) -> str:
        return self.model.name

    @property
    def replication_factor(self) -> int:
        return max(1, self.model.metadata.replication_factor)

    @property
    def device_iterations(self) -> int:
        return max(1, self.model.metadata.device_iterations)

    @property
    def num_ipus(self) -> int:
        return self.model.metadata.num_ipus

    @property
    def ipu_version(self) -> int:
        return self.model.metadata.ipu_version

    def programs(self) -> tuple[BoundProgram, ...]:
        return (*self.load, *self.main, *self.save)

    # ---- memory
    def memory_need(self) -> tuple[int, int]:
        """Bytes one replica needs on the device: ``(persistent tensors, peak of step tensors)``.

        The peak is the largest sum of live step-local tensors over the steps of the main and
        save programs (a tensor lives from the step defining it to its last use).
        """
        return self.persistent_bytes, self.peak_step_bytes

    @property
    def request_step_bytes(self) -> int:
        """The estimated memory of one step of a request: every replica's peak of step
        tensors (what ``RuntimeLimits.max_request_bytes`` bounds, times the steps)."""
        return self.replication_factor * self.peak_step_bytes

    # ---- stored data
    def stored_data(self, stream: TensorDesc) -> np.ndarray:
        """The stored data of a weight or frozen input: read-only, in memory (read and checked
        at load, so it no longer depends on the file)."""
        return self.stored_arrays[stream.name]

    def stored_for_replica(self, stream: TensorDesc, replica: int) -> np.ndarray:
        data = self.stored_data(stream)
        return data[replica] if stream.per_replica else data

    @property
    def has_per_replica_state(self) -> bool:
        """Whether replicas hold different persistent tensors (per-replica weights)."""
        return any(
            self.streams[s.handle].per_replica
            for p in self.load
            for s in p.steps
            if isinstance(s, HostToDevice)
        )

    # ---- the layout of a request: one step of one replica
    def step_input(
        self, stream: TensorDesc, array: np.ndarray, steps: int, step: int, replica: int
    ) -> np.ndarray:
        """The slice of a request's input that ``replica`` reads at ``step``."""
        if not stream.shape:
            return array
        if stream.per_replica:
            rf = self.replication_factor
            return array.reshape(steps, rf, *stream.spec.shape)[step, replica]
        return array.reshape(steps, *stream.shape)[step]

    def assemble_outputs(
        self, results: Sequence[Sequence[Mapping[str, np.ndarray]]], steps: int
    ) -> dict[str, np.ndarray]:
        """``{output name: array}`` from ``results[step][replica][handle]``.

        A per-replica output gathers every replica; any other output is replica 0's.
        """
        outputs = {}
        for stream in self.outputs:
            if not stream.shape:
                outputs[stream.name] = np.array(results[0][0][stream.handle])
                continue
            if stream.per_replica:
                parts = [r[stream.handle] for step in results for r in step]
            else:
                parts = [step[0][stream.handle] for step in results]
            outputs[stream.name] = np.stack(parts).reshape(
                steps * stream.shape[0], *stream.shape[1:]
            )
        return outputs
