"""Loading a model for execution: its graph program decoded, checked, bound and shaped
(docs/runtime.md §1).

:func:`load_model` turns a :class:`popef.Model` into a :class:`~popef.runtime.loaded.LoadedModel`:
it decodes the graph program of the executable, follows ``program_flow`` (load programs, then
main programs, then save programs), binds every host↔device copy to its anchor by handle,
creates one op per node through the op registry and infers the shape and dtype of every
tensor. Anything wrong — a missing program, an unknown handle, an unknown op or attribute, an
undefined tensor, shapes that do not fit, a tensor or a step over the limits — raises
:class:`popef.ExecutionError` naming the model, the program, the step or node (its ``where``).
"""

from __future__ import annotations

import numpy as np

from ..errors import ExecutionError
from ..model import Model, corrupt_as, is_user_anchor
from ..types import Anchor, BlobType, DataType, TensorType
from .limits import RuntimeLimits
from .loaded import BoundNode, BoundProgram, LoadedModel, TensorDesc
from .memory import memory_need
from .messages import quote
from .ops import TensorSpec, create_op
from .program import (
    MAX_GRAPH_PROGRAM_SIZE,
    DeviceToHost,
    GraphProgram,
    HostToDevice,
    Node,
    Program,
    decode_program,
)

__all__ = ["load_model"]

# The largest span of an array's dims, in bytes (as numpy and docs/format.md count it).
MAX_ARRAY_SPAN = (1 << 63) - 1


def _span_bytes(spec: TensorSpec) -> int:
    """The product of the non-zero dims times the element size: what numpy must index."""
    span = spec.dtype.itemsize
    for d in spec.shape:
        span *= d or 1
    return span


def load_model(
    model: Model, *, verify: bool = True, limits: RuntimeLimits | None = None
) -> LoadedModel:
    """Decode, bind and check the graph program of ``model`` (see the module docstring).

    The tensor data the programs load is read into memory, so the loaded model no longer
    depends on its files. With ``verify`` (the default) every blob of the model is checked
    against its checksum first: a corrupt model raises :class:`popef.ChecksumError`.
    ``limits`` (default :class:`RuntimeLimits`) bounds the steps of the graph program, every
    tensor and the memory of one step; a model over them raises :class:`ExecutionError`.
    """
    if not isinstance(model, Model):
        raise ExecutionError(f"load_model() needs a popef.Model, got {type(model).__name__}")
    limits = RuntimeLimits() if limits is None else limits
    if not isinstance(limits, RuntimeLimits):
        raise ExecutionError(f"limits must be a RuntimeLimits, got {type(limits).__name__}")
    blobs = model.blobs()
    if verify:
        for label, blob in blobs:
            if blob.type != BlobType.DATA_TENSOR:  # tensor data is checked as _Loader reads it
                corrupt_as(label, blob.verify)
    graph = decode_program(
        corrupt_as(blobs[0][0], lambda: model.executable.payload(MAX_GRAPH_PROGRAM_SIZE)),
        name=model.name,
        max_steps=limits.max_graph_steps,
    )
    loaded = _Loader(model, graph, verify, limits).run()
    if verify:
        for tensor in model.tensors:  # data no program loads: checked all the same
            if tensor.name not in loaded.stored_arrays:
                corrupt_as(f"tensor data {quote(tensor.name)}", tensor.blob.verify)
    return loaded


class _Loader:
    def __init__(
        self,
        model: Model,
        graph: GraphProgram,
        verify: bool,
        limits: RuntimeLimits,
    ):
        self.model = model
        self.verify = verify
        self.limits = limits
        self.stored_arrays: dict[str, np.ndarray] = {}
        self.md = model.metadata
        self.graph = graph
        self.rf = max(1, self.md.replication_factor)
        self.stored = model.stored_names
        self.feeds = frozenset(f.name for f in model.feeds)
        self.by_handle: dict[str, list[Anchor]] = {}
        for anchor in self.md.anchors:
            self.by_handle.setdefault(anchor.handle, []).append(anchor)
        self.streams: dict[str, TensorDesc] = {}
        self.specs: dict[str, TensorSpec] = {}
        self.defined_by: dict[str, str] = {}  # tensor -> where, for messages
        self.constants: dict[str, np.ndarray] = {}  # tensors whose value is known at load
        self.persistent: set[str] = set()

    def fail(self, where: str, message: str) -> ExecutionError:
        error = ExecutionError(f"model {quote(self.model.name)}, {where}: {message}")
        error.where = where
        return error

    def run(self) -> LoadedModel:
        flow = self.md.program_flow
        if not flow.main:
            raise ExecutionError(
                f"model {quote(self.model.name)} has no main program (program_flow.main is empty)"
            )
        load = tuple(self.program(i, "load") for i in flow.load)
        self.persistent = set(self.specs)
        main = tuple(self.program(i, "main") for i in flow.main)
        main_defined = set(self.specs) - self.persistent
        save = tuple(self.program(i, "save", hidden=main_defined) for i in flow.save)

        user_inputs, user_outputs = [], []
        main_out_handles = {s.handle for p in main for s in p.steps if isinstance(s, DeviceToHost)}
        for anchor in self.model.user_anchors():
            if anchor.type is TensorType.INPUT:
                user_inputs.append(self.stream(anchor))
            elif anchor.type is TensorType.OUTPUT:
                if anchor.handle not in main_out_handles:
                    raise ExecutionError(
                        f"model {quote(self.model.name)}: output {quote(anchor.name)} (handle "
                        f"{quote(anchor.handle)}) is written by no step of the main programs"
                    )
                user_outputs.append(self.stream(anchor))
        save_outputs = tuple(
            self.streams[s.handle] for p in save for s in p.steps if isinstance(s, DeviceToHost)
        )
        persistent = frozenset(self.persistent)
        persistent_bytes, peak_step_bytes = memory_need((*main, *save), self.specs, persistent)
        loaded = LoadedModel(
            model=self.model,
            graph=self.graph,
            load=load,
            main=main,
            save=save,
            inputs=tuple(user_inputs),
            outputs=tuple(user_outputs),
            streams=self.streams,
            specs=self.specs,
            persistent=persistent,
            save_outputs=save_outputs,
            stored_arrays=self.stored_arrays,
            limits=self.limits,
            persistent_bytes=persistent_bytes,
            peak_step_bytes=peak_step_bytes,
        )
        if loaded.request_step_bytes > self.limits.max_request_bytes:
            raise ExecutionError(
                f"model {quote(self.model.name)} needs about {loaded.request_step_bytes} bytes of "
                f"step tensors for one step ({self.rf} replicas), more than the limit of "
                f"{self.limits.max_request_bytes} per request (max_request_bytes)"
            )
        return loaded

    def stored_array(self, name: str) -> np.ndarray:
        """The stored data of an anchor, read once into memory (checked when verifying)."""
        array = self.stored_arrays.get(name)
        if array is None:
            tensor = self.model.get_tensor_data(name)
            array = corrupt_as(
                f"tensor data {quote(name)}", lambda: tensor.read(verify=self.verify)
            )
            array.flags.writeable = False
            self.stored_arrays[name] = array
        return array

    # ---- anchors
    def stream(self, anchor: Anchor) -> TensorDesc:
        if anchor.handle in self.streams:
            return self.streams[anchor.handle]
        info = anchor.tensor_info
        shape = info.shape
        per_replica = anchor.is_per_replica and self.rf > 1
        if per_replica:
            if not shape or shape[0] != self.rf:
                raise ExecutionError(
                    f"model {quote(self.model.name)}: anchor {quote(anchor.name)} is per "
                    f"replica, so its shape {list(shape)} must start with the replication "
                    f"factor {self.rf}"
                )
            shape = shape[1:]
        if info.dtype in (DataType.F8, DataType.F8143, DataType.F8152):
            raise ExecutionError(
                f"model {quote(self.model.name)}: anchor {quote(anchor.name)} is "
                f"{info.dtype.name}, which this runtime cannot compute with"
            )
        spec = TensorSpec(shape, info.numpy_dtype)
        if spec.nbytes > self.limits.max_tensor_bytes:
            raise ExecutionError(
                f"model {quote(self.model.name)}: anchor {quote(anchor.name)} is {spec} per replica"
                f", {spec.nbytes} bytes, more than the limit of {self.limits.max_tensor_bytes} "
                "bytes per tensor (max_tensor_bytes)"
            )
        stream = TensorDesc(anchor, spec, per_replica, anchor.name in self.stored)
        self.streams[anchor.handle] = stream
        return stream

    def anchor_of(self, handle: str, where: str) -> Anchor:
        found = self.by_handle.get(handle, [])
        if not found:
            raise self.fail(where, f"no anchor has the handle {quote(handle)}")
        if len(found) > 1:
            raise self.fail(
                where,
                f"{len(found)} anchors have the handle {quote(handle)}: "
                + ", ".join(quote(a.name) for a in found),
            )
        return found[0]

    # ---- programs
    def program(self, index: int, phase: str, hidden: set[str] = frozenset()) -> BoundProgram:
        try:
            program = self.graph.get_program(index)
        except KeyError:
            name = self.md.program_name(index)
            label = f"program {index}" + (f" ({quote(name)})" if name else "")
            raise ExecutionError(
                f"model {quote(self.model.name)}: {label} is listed in program_flow.{phase} "
                f"but the executable defines only programs {list(self.graph.indices)}"
            ) from None
        return BoundProgram(
            program.index,
            program.name or self.md.program_name(index) or "",
            phase,
            tuple(self.step(program, i, s, phase, hidden) for i, s in enumerate(program.steps)),
        )

    def step(self, program: Program, i: int, step, phase: str, hidden: set[str]):
        label = f"program {program.index}" + (f" ({quote(program.name)})" if program.name else "")
        if isinstance(step, HostToDevice):
            where = f"{label}, step {i} (copy from host stream {quote(step.handle)})"
            anchor = self.anchor_of(step.handle, where)
            if anchor.type is TensorType.OUTPUT:
                raise self.fail(
                    where, f"anchor {quote(anchor.name)} is an output; it cannot feed the device"
                )
            if anchor.name in self.feeds:
                raise self.fail(
                    where,
                    f"anchor {quote(anchor.name)} has feed data, which this runtime does not "
                    "stream",
                )
            stored = anchor.name in self.stored
            if phase != "main" and not stored:
                raise self.fail(
                    where,
                    f"anchor {quote(anchor.name)} has no tensor data, and only "
                    "main programs read streams the caller feeds",
                )
            if not stored and (
                anchor.type is not TensorType.INPUT
                or not is_user_anchor(anchor, self.md, self.stored)
            ):
                raise self.fail(
                    where,
                    f"anchor {quote(anchor.name)} has no tensor data but is not a "
                    f"user input (type {anchor.type.name}, programs "
                    f"{list(anchor.programs)}, main programs "
                    f"{list(self.md.program_flow.main)})",
                )
            stream = self.stream(anchor)
            self.define(step.tensor, stream.spec, where, hidden)
            if stored:
                data = self.stored_array(anchor.name)
                self.constants[step.tensor] = data[0] if stream.per_replica else data
            return step
        if isinstance(step, DeviceToHost):
            where = f"{label}, step {i} (copy to host stream {quote(step.handle)})"
            if phase == "load":
                raise self.fail(where, "load programs cannot copy to the host")
            spec = self.use(step.tensor, where, hidden)
            anchor = self.anchor_of(step.handle, where)
            if anchor.type is not TensorType.OUTPUT:
                raise self.fail(
                    where,
                    f"anchor {quote(anchor.name)} is not an output "
                    f"(its type is {anchor.type.name})",
                )
            stream = self.stream(anchor)
            if stream.spec != spec:
                raise self.fail(
                    where,
                    f"tensor {quote(step.tensor)} is {spec} but anchor "
                    f"{quote(anchor.name)} takes {stream.spec} per replica",
                )
            return step
        return self.node(label, i, step, hidden)

    def node(self, label: str, i: int, node: Node, hidden: set[str]) -> BoundNode:
        where = f"{label}, step {i}"
        try:
            return self._node(where, node, hidden)
        except ExecutionError as exc:
            if exc.where is not None:  # already names the model and the place
                raise
            raise self.fail(where, str(exc)) from exc

    def _node(self, where: str, node: Node, hidden: set[str]) -> BoundNode:
        op = create_op(node.op_type, node.name, node.attribute_values(), len(node.outputs))
        where = f"{where} ({node.op_type} node {quote(node.name)})"
        specs = []
        for k, name in enumerate(node.inputs):
            if not name:
                specs.append(None)
                continue
            specs.append(self.use(name, where, hidden))
            if name in self.constants:
                op.constant_inputs[k] = self.constants[name]
        outputs = op.infer(specs)
        if len(outputs) < len(node.outputs):
            raise self.fail(
                where, f"the op gives {len(outputs)} outputs, the node names {len(node.outputs)}"
            )
        for name, spec in zip(node.outputs, outputs):
            if name:
                self.define(name, spec, where, hidden)
        return BoundNode(node, op, tuple(specs), tuple(outputs[: len(node.outputs)]))

    def define(self, tensor: str, spec: TensorSpec, where: str, hidden: set[str]) -> None:
        if tensor in self.specs:
            raise self.fail(
                where, f"tensor {quote(tensor)} is already defined by {self.defined_by[tensor]}"
            )
        if spec.nbytes > self.limits.max_tensor_bytes:
            raise self.fail(
                where,
                f"tensor {quote(tensor)} would be {spec}, {spec.nbytes} "
                f"bytes, more than the limit of "
                f"{self.limits.max_tensor_bytes} bytes per tensor "
                "(max_tensor_bytes)",
            )
        if _span_bytes(spec) > MAX_ARRAY_SPAN:
            # an empty tensor passes the byte limit, but numpy refuses such a shape at run time
            raise self.fail(
                where,
                f"tensor {quote(tensor)} would be {spec}: its non-zero dims times the element "
                f"size exceed {MAX_ARRAY_SPAN} bytes, which no array can hold, even an empty one",
            )
        self.specs[tensor] = spec
        self.defined_by[tensor] = where

    def use(self, tensor: str, where: str, hidden: set[str]) -> TensorSpec:
        if tensor in hidden:
            raise self.fail(
                where,
                f"tensor {quote(tensor)} is defined by a main program; "
                "main-program tensors live for one step only",
            )
        try:
            return self.specs[tensor]
        except KeyError:
            raise self.fail(
                where, f"tensor {quote(tensor)} is not defined by an earlier step"
            ) from None
