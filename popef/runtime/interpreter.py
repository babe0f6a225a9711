"""Loading a model for execution: the graph program checked, shaped and planned (docs/runtime.md §1).

:func:`load_model` turns a :class:`popef.Model` into a :class:`LoadedModel`: it decodes the
graph program of the executable, follows ``program_flow`` (load programs, then main programs,
then save programs), binds every host↔device copy to its anchor by handle, creates one op per
node through the op registry and infers the shape and dtype of every tensor. Anything wrong —
a missing program, an unknown handle, an unknown op or attribute, an undefined tensor, shapes
that do not fit — raises :class:`popef.ExecutionError` naming the program, the step or node.

Executors (``popef.runtime.executors``) run a LoadedModel; this module also holds what they
share: splitting a request into steps and replicas and assembling the outputs (the layout is
described in docs/runtime.md, "Steps, device iterations and replicas"), and the readable,
step-by-step program interpreter :func:`run_program`.

Tensors live in two scopes. Tensors defined by load programs are *persistent*: they stay on
the device for the life of the model (weights), and every later program may read them. Tensors
defined by a main program are *step-local*: they are recomputed at every step. Save programs
see the persistent tensors and their own. A tensor name is defined by exactly one step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import ExecutionError, PopefError
from ..escaping import escape_text
from ..model import Model, corrupt_as, is_user_anchor
from ..program import (
    MAX_GRAPH_PROGRAM_SIZE,
    MAX_GRAPH_STEPS,
    DeviceToHost,
    GraphProgram,
    HostToDevice,
    Node,
    Program,
    decode_program,
)
from ..types import Anchor, BlobType, DataType, TensorType
from .ops import Op, TensorSpec, create_op

__all__ = [
    "StreamSpec",
    "CompiledNode",
    "CompiledProgram",
    "LoadedModel",
    "load_model",
    "run_program",
    "MAIN_STEP_LIMIT",
    "MAX_GRAPH_STEPS",
    "MAX_TENSOR_BYTES",
    "MAX_REQUEST_BYTES",
    "RuntimeLimits",
]

# Refuse requests of more steps than this in one call: the sanity bound of a request.
MAIN_STEP_LIMIT = 1 << 31

GiB = 1 << 30
# The largest tensor a model may declare (anchors) or compute (every node output), per
# replica, checked by shape inference at load (docs/runtime.md, "Limits").
MAX_TENSOR_BYTES = 16 * GiB
# The most memory one request may need, by the estimate made at load: steps × replicas × the
# peak of one replica's live step tensors (docs/runtime.md, "Limits").
MAX_REQUEST_BYTES = 16 * GiB


@dataclass(frozen=True)
class RuntimeLimits:
    """What a model may cost: refused at load (steps, tensor sizes) or per request (memory).

    ``max_graph_steps`` bounds the steps (nodes and copies) of a graph program, checked before
    decoding them; ``max_tensor_bytes`` bounds every tensor shape inference finds;
    ``max_request_bytes`` bounds the estimated memory of one request (see
    :attr:`LoadedModel.request_step_bytes`).
    """

    max_graph_steps: int = MAX_GRAPH_STEPS
    max_tensor_bytes: int = MAX_TENSOR_BYTES
    max_request_bytes: int = MAX_REQUEST_BYTES

    def __post_init__(self) -> None:
        for name in ("max_graph_steps", "max_tensor_bytes", "max_request_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ExecutionError(f"runtime limit '{name}' must be a positive int, "
                                     f"got {value!r}")


@dataclass(frozen=True)
class StreamSpec:
    """An anchor as the graph program uses it.

    ``spec`` is what one replica's step sees (the anchor's shape without its leading replica
    dimension when the anchor is per replica); ``shape`` is the anchor's own shape, what one
    step of a request carries.
    """

    anchor: Anchor
    spec: TensorSpec
    per_replica: bool  # the anchor shape has a leading replication_factor dimension
    stored: bool  # its data is stored in the model (weights, frozen inputs)

    @property
    def name(self) -> str:
        return self.anchor.name

    @property
    def handle(self) -> str:
        return self.anchor.handle

    @property
    def shape(self) -> tuple[int, ...]:
        return self.anchor.tensor_info.shape

    @property
    def dtype(self) -> DataType:
        return self.anchor.tensor_info.dtype

    @property
    def numpy_dtype(self) -> np.dtype:
        return self.anchor.tensor_info.numpy_dtype

    @property
    def batch(self) -> int | None:
        """Rows per step along the leading dimension; None for scalars (no leading dimension)."""
        return self.shape[0] if self.shape else None


@dataclass(eq=False)
class CompiledNode:
    """A node with its op, bound once at load."""

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
        return f"{self.node.op_type} node '{self.node.name}'"


CompiledStep = HostToDevice | CompiledNode | DeviceToHost


@dataclass(eq=False)
class CompiledProgram:
    index: int
    name: str
    phase: str  # "load", "main" or "save"
    steps: tuple[CompiledStep, ...]

    def describe(self) -> str:
        return f"program {self.index} ('{self.name}')" if self.name else f"program {self.index}"

    def nodes(self) -> list[CompiledNode]:
        return [s for s in self.steps if isinstance(s, CompiledNode)]


@dataclass(eq=False)
class LoadedModel:
    """A model whose graph program is checked and shaped, ready for an executor."""

    model: Model
    graph: GraphProgram
    load: tuple[CompiledProgram, ...]
    main: tuple[CompiledProgram, ...]
    save: tuple[CompiledProgram, ...]
    inputs: tuple[StreamSpec, ...]  # user inputs, in metadata order
    outputs: tuple[StreamSpec, ...]  # user outputs, in metadata order
    streams: dict[str, StreamSpec]  # handle -> stream, for every handle a step uses
    specs: dict[str, TensorSpec]  # tensor -> spec (one replica's)
    persistent: frozenset[str]  # tensors defined by load programs
    save_outputs: tuple[StreamSpec, ...] = ()
    # anchor name -> the stored data, read into memory at load (see _Loader.stored_array)
    stored_arrays: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    limits: RuntimeLimits = RuntimeLimits()
    # the estimated memory of one step of a request: every replica's peak of step tensors
    request_step_bytes: int = 0

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

    def programs(self) -> tuple[CompiledProgram, ...]:
        return (*self.load, *self.main, *self.save)

    # ---- stored data
    def stored_data(self, stream: StreamSpec) -> np.ndarray:
        """The stored data of a weight or frozen input: read-only, in memory (read and checked
        at load, so it no longer depends on the file)."""
        return self.stored_arrays[stream.name]

    def stored_for_replica(self, stream: StreamSpec, replica: int) -> np.ndarray:
        data = self.stored_data(stream)
        return data[replica] if stream.per_replica else data

    @property
    def has_per_replica_state(self) -> bool:
        """Whether replicas hold different persistent tensors (per-replica weights)."""
        return any(self.streams[s.handle].per_replica
                   for p in self.load for s in p.steps if isinstance(s, HostToDevice))

    # ---- requests
    def check_inputs(self, inputs: Mapping[str, object]) -> tuple[dict[str, np.ndarray], int]:
        """Validate a request: ``({input name: array}, steps)``.

        Every user input must be given, with the anchor's dtype and either the anchor's shape
        or ``n`` times its leading dimension (``n`` steps; the same ``n`` for every input).
        Scalar inputs are used by every step. This runs on every request: the common case (the
        exact shapes) costs a dict lookup and two comparisons per input.
        """
        checks = self.__dict__.get("_checks")
        if checks is None:
            checks = self.__dict__["_checks"] = [
                (s.name, s.numpy_dtype, s.shape, s) for s in self.inputs]
        if type(inputs) is not dict and not isinstance(inputs, Mapping):
            raise ExecutionError(f"inputs must be a mapping of input name to array, "
                                 f"got {type(inputs).__name__}")
        if len(inputs) != len(checks):
            self._unknown_or_missing(inputs)
        arrays: dict[str, np.ndarray] = {}
        steps: int | None = None
        first = ""
        for name, dtype, shape, stream in checks:
            try:
                value = inputs[name]
            except KeyError:
                self._unknown_or_missing(inputs)
                raise  # pragma: no cover - the line above raises
            array = value if type(value) is np.ndarray else np.asarray(value)
            if array.dtype != dtype:
                raise ExecutionError(f"input '{name}' has dtype {_dtype_name(array.dtype)}"
                                     f", expected {stream.dtype.name} ({_describe(stream)})")
            if array.shape == shape:
                n = 1 if shape and shape[0] else None
            else:
                n = _steps_of(array.shape, shape)
                if n is None:
                    raise ExecutionError(
                        f"input '{name}' has shape {list(array.shape)}, expected "
                        f"{_expected_shapes(shape)}")
            if n is not None:
                if steps is None:
                    steps, first = n, name
                elif n != steps:
                    raise ExecutionError(
                        f"inputs disagree on the number of steps: '{first}' carries {steps} "
                        f"and '{name}' carries {n} (input shape {list(array.shape)}, "
                        f"one step is {list(shape)})")
            arrays[name] = array
        if steps is None:
            return arrays, 1
        if steps * self.request_step_bytes > self.limits.max_request_bytes:
            raise ExecutionError(
                f"a request of {steps} steps to model '{self.name}' needs about "
                f"{steps * self.request_step_bytes} bytes ({self.request_step_bytes} per step), "
                f"more than the limit of {self.limits.max_request_bytes} (max_request_bytes): "
                f"send at most {self.limits.max_request_bytes // self.request_step_bytes} steps "
                "per request")
        if steps > 1:
            scalar = next((s for s in self.outputs if not s.shape), None)
            if scalar is not None:
                raise ExecutionError(f"output '{scalar.name}' is a scalar, so model '{self.name}'"
                                     f" runs one step per call; the inputs carry {steps}")
        return arrays, steps

    def _unknown_or_missing(self, inputs: Mapping[str, object]) -> None:
        """Raise for a name that is not an input, else for the first input not given."""
        names = {s.name for s in self.inputs}
        for key in inputs:
            if key not in names:
                raise ExecutionError(f"unknown input {_quote(str(key))}: model '{self.name}' "
                                     f"takes {_names(self.inputs)}")
        for stream in self.inputs:
            if stream.name not in inputs:
                raise ExecutionError(f"missing input '{stream.name}' ({_describe(stream)}): "
                                     f"model '{self.name}' takes {_names(self.inputs)}")

    # ---- one step of one replica
    def step_input(self, stream: StreamSpec, array: np.ndarray, steps: int, step: int,
                   replica: int) -> np.ndarray:
        """The slice of a request's input that ``replica`` reads at ``step``."""
        if not stream.shape:
            return array
        if stream.per_replica:
            rf = self.replication_factor
            return array.reshape(steps, rf, *stream.spec.shape)[step, replica]
        return array.reshape(steps, *stream.shape)[step]

    def assemble_outputs(self, results: Sequence[Sequence[Mapping[str, np.ndarray]]],
                         steps: int) -> dict[str, np.ndarray]:
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
            outputs[stream.name] = np.stack(parts).reshape(steps * stream.shape[0],
                                                           *stream.shape[1:])
        return outputs

    # ---- memory
    def memory_need(self) -> tuple[int, int]:
        """Bytes one replica needs on the device: ``(persistent tensors, peak of step tensors)``.

        The peak is the largest sum of live step-local tensors over the steps of the main and
        save programs (a tensor lives from the step defining it to its last use).
        """
        need = self.__dict__.get("_memory_need")
        if need is None:
            persistent = sum(self.specs[t].nbytes for t in self.persistent)
            peak = 0
            for program in (*self.main, *self.save):
                peak = max(peak, _peak_live_bytes(program, self.specs, self.persistent))
            need = self.__dict__["_memory_need"] = (persistent, peak)
        return need


def _peak_live_bytes(program: CompiledProgram, specs: Mapping[str, TensorSpec],
                     persistent: frozenset[str]) -> int:
    """One pass over the steps with a running total (linear in the steps and tensors)."""
    last_use: dict[str, int] = {}
    for i, step in enumerate(program.steps):
        used = (step.inputs if isinstance(step, CompiledNode)
                else (step.tensor,) if isinstance(step, DeviceToHost) else ())
        for name in used:
            if name and name not in persistent:
                last_use[name] = i
    dying: dict[int, list[str]] = {}  # step -> the tensors that die after it
    live = peak = 0
    for i, step in enumerate(program.steps):
        defined = (step.outputs if isinstance(step, CompiledNode)
                   else (step.tensor,) if isinstance(step, HostToDevice) else ())
        for name in defined:
            if name and name not in persistent:
                live += specs[name].nbytes
                dying.setdefault(max(i, last_use.get(name, i)), []).append(name)
        peak = max(peak, live)
        for name in dying.pop(i, ()):
            live -= specs[name].nbytes
    return peak


# -- loading ---------------------------------------------------------------------------------

def load_model(model: Model, *, verify: bool = True,
               limits: RuntimeLimits | None = None) -> LoadedModel:
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
        name=model.name, max_steps=limits.max_graph_steps)
    loaded = _Loader(model, graph, verify, limits).run()
    if verify:
        for tensor in model.tensors:  # data no program loads: checked all the same
            if tensor.name not in loaded.stored_arrays:
                corrupt_as(f"tensor data '{tensor.name}'", tensor.blob.verify)
    return loaded


class _Loader:
    def __init__(self, model: Model, graph: GraphProgram, verify: bool = True,
                 limits: RuntimeLimits = RuntimeLimits()):
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
        self.streams: dict[str, StreamSpec] = {}
        self.specs: dict[str, TensorSpec] = {}
        self.defined_by: dict[str, str] = {}  # tensor -> where, for messages
        self.constants: dict[str, np.ndarray] = {}  # tensors whose value is known at load
        self.persistent: set[str] = set()

    def fail(self, where: str, message: str) -> ExecutionError:
        return ExecutionError(f"model '{self.model.name}', {where}: {message}")

    def run(self) -> LoadedModel:
        flow = self.md.program_flow
        if not flow.main:
            raise ExecutionError(f"model '{self.model.name}' has no main program "
                                 "(program_flow.main is empty)")
        load = tuple(self.program(i, "load") for i in flow.load)
        self.persistent = set(self.specs)
        main = tuple(self.program(i, "main") for i in flow.main)
        main_defined = set(self.specs) - self.persistent
        save = tuple(self.program(i, "save", hidden=main_defined) for i in flow.save)

        user_inputs, user_outputs = [], []
        main_out_handles = {s.handle for p in main for s in p.steps
                            if isinstance(s, DeviceToHost)}
        for anchor in self.model.user_anchors():
            if anchor.type is TensorType.INPUT:
                user_inputs.append(self.stream(anchor))
            elif anchor.type is TensorType.OUTPUT:
                if anchor.handle not in main_out_handles:
                    raise ExecutionError(
                        f"model '{self.model.name}': output '{anchor.name}' (handle "
                        f"'{anchor.handle}') is written by no step of the main programs")
                user_outputs.append(self.stream(anchor))
        save_outputs = tuple(self.streams[s.handle] for p in save for s in p.steps
                             if isinstance(s, DeviceToHost))
        loaded = LoadedModel(
            model=self.model, graph=self.graph, load=load, main=main, save=save,
            inputs=tuple(user_inputs), outputs=tuple(user_outputs), streams=self.streams,
            specs=self.specs, persistent=frozenset(self.persistent), save_outputs=save_outputs,
            stored_arrays=self.stored_arrays, limits=self.limits)
        loaded.request_step_bytes = self.rf * loaded.memory_need()[1]
        if loaded.request_step_bytes > self.limits.max_request_bytes:
            raise ExecutionError(
                f"model '{self.model.name}' needs about {loaded.request_step_bytes} bytes of "
                f"step tensors for one step ({self.rf} replicas), more than the limit of "
                f"{self.limits.max_request_bytes} per request (max_request_bytes)")
        return loaded

    def stored_array(self, name: str) -> np.ndarray:
        """The stored data of an anchor, read once into memory (checked when verifying)."""
        array = self.stored_arrays.get(name)
        if array is None:
            tensor = self.model.get_tensor_data(name)
            array = corrupt_as(f"tensor data '{name}'", lambda: tensor.read(verify=self.verify))
            array.flags.writeable = False
            self.stored_arrays[name] = array
        return array

    # ---- anchors
    def stream(self, anchor: Anchor) -> StreamSpec:
        if anchor.handle in self.streams:
            return self.streams[anchor.handle]
        info = anchor.tensor_info
        shape = info.shape
        per_replica = anchor.is_per_replica and self.rf > 1
        if per_replica:
            if not shape or shape[0] != self.rf:
                raise ExecutionError(
                    f"model '{self.model.name}': anchor '{anchor.name}' is per replica, so its "
                    f"shape {list(shape)} must start with the replication factor {self.rf}")
            shape = shape[1:]
        if info.dtype in (DataType.F8, DataType.F8143, DataType.F8152):
            raise ExecutionError(f"model '{self.model.name}': anchor '{anchor.name}' is "
                                 f"{info.dtype.name}, which this runtime cannot compute with")
        spec = TensorSpec(shape, info.numpy_dtype)
        if spec.nbytes > self.limits.max_tensor_bytes:
            raise ExecutionError(
                f"model '{self.model.name}': anchor {_quote(anchor.name)} is {spec} per replica"
                f", {spec.nbytes} bytes, more than the limit of {self.limits.max_tensor_bytes} "
                "bytes per tensor (max_tensor_bytes)")
        stream = StreamSpec(anchor, spec, per_replica, anchor.name in self.stored)
        self.streams[anchor.handle] = stream
        return stream

    def anchor_of(self, handle: str, where: str) -> Anchor:
        found = self.by_handle.get(handle, [])
        if not found:
            raise self.fail(where, f"no anchor has the handle {_quote(handle)}")
        if len(found) > 1:
            raise self.fail(where, f"{len(found)} anchors have the handle {_quote(handle)}: "
                                   + ", ".join(f"'{a.name}'" for a in found))
        return found[0]

    # ---- programs
    def program(self, index: int, phase: str, hidden: set[str] = frozenset()) -> CompiledProgram:
        try:
            program = self.graph.get_program(index)
        except KeyError:
            name = self.md.program_name(index)
            label = f"program {index}" + (f" ('{name}')" if name else "")
            raise ExecutionError(
                f"model '{self.model.name}': {label} is listed in program_flow.{phase} but the "
                f"executable defines only programs {list(self.graph.indices)}") from None
        return CompiledProgram(program.index, program.name or self.md.program_name(index) or "",
                               phase, tuple(self.step(program, i, s, phase, hidden)
                                            for i, s in enumerate(program.steps)))

    def step(self, program: Program, i: int, step, phase: str, hidden: set[str]):
        label = f"program {program.index}" + (f" ('{program.name}')" if program.name else "")
        if isinstance(step, HostToDevice):
            where = f"{label}, step {i} (copy from host stream {_quote(step.handle)})"
            anchor = self.anchor_of(step.handle, where)
            if anchor.type is TensorType.OUTPUT:
                raise self.fail(where, f"anchor '{anchor.name}' is an output; it cannot feed "
                                       "the device")
            if anchor.name in self.feeds:
                raise self.fail(where, f"anchor '{anchor.name}' has feed data, which this "
                                       "runtime does not stream")
            stored = anchor.name in self.stored
            if phase != "main" and not stored:
                raise self.fail(where, f"anchor '{anchor.name}' has no tensor data, and only "
                                       "main programs read streams the caller feeds")
            if not stored and (anchor.type is not TensorType.INPUT
                               or not is_user_anchor(anchor, self.md, self.stored)):
                raise self.fail(where, f"anchor '{anchor.name}' has no tensor data but is not a "
                                       f"user input (type {anchor.type.name}, programs "
                                       f"{list(anchor.programs)}, main programs "
                                       f"{list(self.md.program_flow.main)})")
            stream = self.stream(anchor)
            self.define(step.tensor, stream.spec, where, hidden)
            if stored:
                data = self.stored_array(anchor.name)
                self.constants[step.tensor] = data[0] if stream.per_replica else data
            return step
        if isinstance(step, DeviceToHost):
            where = f"{label}, step {i} (copy to host stream {_quote(step.handle)})"
            if phase == "load":
                raise self.fail(where, "load programs cannot copy to the host")
            spec = self.use(step.tensor, where, hidden)
            anchor = self.anchor_of(step.handle, where)
            if anchor.type is not TensorType.OUTPUT:
                raise self.fail(where, f"anchor '{anchor.name}' is not an output "
                                       f"(its type is {anchor.type.name})")
            stream = self.stream(anchor)
            if stream.spec != spec:
                raise self.fail(where, f"tensor '{step.tensor}' is {spec} but anchor "
                                       f"'{anchor.name}' takes {stream.spec} per replica")
            return step
        return self.node(label, i, step, hidden)

    def node(self, label: str, i: int, node: Node, hidden: set[str]) -> CompiledNode:
        where = f"{label}, step {i}"
        try:
            return self._node(where, node, hidden)
        except ExecutionError as exc:
            if str(exc).startswith(f"model '{self.model.name}', "):
                raise
            raise self.fail(where, str(exc)) from exc

    def _node(self, where: str, node: Node, hidden: set[str]) -> CompiledNode:
        op = create_op(node.op_type, node.name, node.attribute_values(), len(node.outputs))
        where = f"{where} ({node.op_type} node '{node.name}')"
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
            raise self.fail(where, f"the op gives {len(outputs)} outputs, the node names "
                                   f"{len(node.outputs)}")
        for name, spec in zip(node.outputs, outputs):
            if name:
                self.define(name, spec, where, hidden)
        return CompiledNode(node, op, tuple(specs), tuple(outputs[:len(node.outputs)]))

    def define(self, tensor: str, spec: TensorSpec, where: str, hidden: set[str]) -> None:
        if tensor in self.specs:
            raise self.fail(where, f"tensor {_quote(tensor)} is already defined by "
                                   f"{self.defined_by[tensor]}")
        if spec.nbytes > self.limits.max_tensor_bytes:
            raise self.fail(where, f"tensor {_quote(tensor)} would be {spec}, {spec.nbytes} "
                                   f"bytes, more than the limit of "
                                   f"{self.limits.max_tensor_bytes} bytes per tensor "
                                   "(max_tensor_bytes)")
        self.specs[tensor] = spec
        self.defined_by[tensor] = where

    def use(self, tensor: str, where: str, hidden: set[str]) -> TensorSpec:
        if tensor in hidden:
            raise self.fail(where, f"tensor {_quote(tensor)} is defined by a main program; "
                                   "main-program tensors live for one step only")
        try:
            return self.specs[tensor]
        except KeyError:
            raise self.fail(where, f"tensor {_quote(tensor)} is not defined by an earlier "
                                   "step") from None


# -- the readable interpreter ----------------------------------------------------------------

def run_program(program: CompiledProgram, env: dict[str, np.ndarray],
                read: Callable[[str], np.ndarray], write: Callable[[str, np.ndarray], None]) -> None:
    """Run the steps of one program, in order, on the tensors in ``env``.

    ``read(handle)`` gives the host data of a stream, ``write(handle, array)`` takes a device
    tensor copied to the host. This is the reference semantics that every executor follows.
    """
    for step in program.steps:
        if isinstance(step, CompiledNode):
            values = [env[name] if name else None for name in step.inputs]
            results = step.op.run(values)
            for name, value in zip(step.outputs, results):
                if name:
                    env[name] = value
        elif isinstance(step, HostToDevice):
            env[step.tensor] = read(step.handle)
        else:
            write(step.handle, env[step.tensor])


# -- messages --------------------------------------------------------------------------------

def _quote(text: str) -> str:
    escaped = escape_text(text).replace("'", "\\'")
    return f"'{escaped}'"


def _describe(stream: StreamSpec) -> str:
    return f"{stream.dtype.name}{list(stream.shape)}"


def _names(streams: Sequence[StreamSpec]) -> str:
    if not streams:
        return "no inputs"
    return ", ".join(f"'{s.name}' {_describe(s)}" for s in streams)


def _dtype_name(dtype: np.dtype) -> str:
    try:
        return DataType.from_numpy(dtype).name
    except PopefError:
        return str(dtype)


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
    return (f"{list(shape)} (or n × {shape[0]} rows for n steps: [n*{shape[0]}"
            f"{', ' + rest if rest else ''}])")
