"""A graph program as an ONNX model: export, and the graphs of the ``onnxruntime`` executor.

The ops of a graph program are ONNX operators with ONNX attributes, so the translation is one
to one (docs/runtime.md, "Export to ONNX"):

- every ``Node`` becomes an ONNX ``NodeProto`` of the same op type, name, inputs, outputs and
  attributes (attribute kinds are ONNX's ``AttributeType`` values);
- a ``HostToDevice`` from a user input becomes a graph input named like the anchor; from an
  anchor with stored data (weights, frozen inputs), an initializer holding that data;
- a ``DeviceToHost`` to a user output becomes a graph output named like the anchor;
- tensors defined by load programs from stored data are initializers, and the nodes of the
  load programs come first (onnxruntime folds them, as the load program runs once).

A tensor whose name differs from its anchor's is renamed to it everywhere, unless the name is
taken, in which case an ``Identity`` node links the two. The graph describes one replica's
step: per-replica anchors lose their replica dimension; per-replica stored data is taken for
``replica``. Save programs are not part of the graph (they run on request, after the main
programs, and have no ONNX equivalent).

``onnx`` is imported when a function here is called, never when ``popef`` is imported.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from ..atomic import write_atomically
from ..errors import ExecutionError, PopefError
from .batching import fold_blocker
from .executors.base import Executor
from .loaded import BoundNode, BoundProgram, LoadedModel
from .messages import quote
from .program import DeviceToHost, HostToDevice

if TYPE_CHECKING:  # pragma: no cover
    import onnx

__all__ = [
    "BATCH_DIM",
    "ONNX_IR_VERSION",
    "ONNX_OPSET",
    "OnnxGraph",
    "export_onnx",
    "graph_to_onnx",
    "import_onnx_module",
    "loaded_to_onnx",
]

# The ONNX operator set the ops follow (Gelu needs 20) and the IR version written with it,
# one onnxruntime 1.17 and later reads.
ONNX_OPSET = 20
ONNX_IR_VERSION = 10
# The symbolic name of the leading (batch) dimension of a batch-polymorphic graph.
BATCH_DIM = "N"
# Where the initializers of a graph made with ``embed=False`` say their data is: nowhere on
# disk; the arrays are given to onnxruntime from memory (``add_external_initializers``).
IN_MEMORY_LOCATION = "popef-memory"

Source = str | os.PathLike | Sequence[str | os.PathLike] | Any


def import_onnx_module():
    """``onnx``, or an ExecutionError naming the extra that installs it."""
    try:
        import onnx
    except ImportError as exc:
        raise ExecutionError(
            "exporting to ONNX needs the onnx package: pip install 'popef[onnxruntime]'"
        ) from exc
    return onnx


@dataclass
class OnnxGraph:
    """An ONNX model of a graph program, with what it was made of.

    ``model`` is the ``onnx.ModelProto``. ``constants`` maps the names of the initializers
    that ``model`` declares as external data (type and shape only) to their arrays, to be
    given to onnxruntime from memory (``SessionOptions.add_external_initializers``); it is
    empty when every initializer is embedded. ``inputs`` and ``outputs`` are the graph's input
    and output names, which are the user anchors' names.
    """

    model: onnx.ModelProto
    constants: dict[str, np.ndarray] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)


def graph_to_onnx(
    loaded: LoadedModel,
    programs: Sequence[BoundProgram],
    *,
    constants: Mapping[str, np.ndarray] = {},
    replica: int = 0,
    batch_dim: str | None = None,
    embed: bool = True,
    embed_below: int = 0,
    opset: int = ONNX_OPSET,
) -> OnnxGraph:
    """``programs`` of ``loaded`` (load and main programs, in order) as one ONNX graph.

    ``constants`` are tensors whose values are known before the programs run (the persistent
    tensors of an executor that ran the load programs itself); the tensors of stored streams
    are added to them. Only the constants the nodes or outputs read become initializers.
    ``batch_dim`` names the leading dimension of the inputs and outputs symbolically (for a
    batch-polymorphic graph, see ``popef.runtime.batching``). With ``embed=False``, arrays
    of fewer than ``embed_below`` bytes are embedded all the same: shape inference reads small
    constants (Reshape's shape, Slice's starts...) from the model itself.
    """
    onnx = import_onnx_module()
    from onnx import TensorProto, helper

    values: dict[str, np.ndarray] = dict(constants)
    inputs: list[tuple[str, Any]] = []  # (anchor name, stream)
    input_tensors: list[tuple[str, str]] = []  # (anchor name, tensor)
    nodes: list[BoundNode] = []
    written: dict[str, tuple[str, Any]] = {}  # handle -> (tensor, stream); the last write wins
    for program in programs:
        for step in program.steps:
            if isinstance(step, HostToDevice):
                stream = loaded.streams[step.handle]
                if stream.stored:
                    values[step.tensor] = loaded.stored_for_replica(stream, replica)
                else:
                    if all(stream.name != name for name, _ in inputs):
                        inputs.append((stream.name, stream))
                    input_tensors.append((stream.name, step.tensor))
            elif isinstance(step, DeviceToHost):
                written[step.handle] = (step.tensor, loaded.streams[step.handle])
            else:
                nodes.append(step)

    produced = {name for node in nodes for name in node.outputs if name}
    taken = set(values) | produced | {t for _, t in input_tensors}
    taken |= {name for node in nodes for name in node.inputs if name}
    rename: dict[str, str] = {}
    links: list[Any] = []  # Identity NodeProtos linking an anchor name to a tensor

    def claim(old: str, new: str) -> bool:
        """Rename tensor ``old`` to ``new`` everywhere, if ``new`` is free."""
        if new in taken or old in rename:
            return False
        rename[old] = new
        taken.add(new)
        return True

    for anchor_name, tensor in input_tensors:
        if tensor != anchor_name and not claim(tensor, anchor_name):
            links.append(
                helper.make_node(
                    "Identity", [anchor_name], [tensor], name=f"popef_input_{anchor_name}"
                )
            )
    output_names: list[str] = []
    output_links: list[Any] = []
    graph_outputs = []
    for stream in loaded.outputs:
        if stream.handle not in written:
            continue
        tensor, _ = written[stream.handle]
        current = rename.get(tensor, tensor)
        if current != stream.name and not (
            tensor in produced and tensor not in rename and claim(tensor, stream.name)
        ):
            output_links.append(
                helper.make_node(
                    "Identity", [current], [stream.name], name=f"popef_output_{stream.name}"
                )
            )
        output_names.append(stream.name)
        graph_outputs.append(
            _value_info(helper, stream.name, stream.spec.dtype, stream.spec.shape, batch_dim)
        )

    onnx_nodes = list(links)
    for step in nodes:
        node = step.node
        onnx_node = helper.make_node(
            node.op_type,
            [rename.get(n, n) for n in node.inputs],
            [rename.get(n, n) for n in node.outputs],
            name=node.name,
        )
        for attribute in node.attributes:
            onnx_node.attribute.append(
                helper.make_attribute(
                    attribute.name, attribute.python_value, attr_type=int(attribute.kind)
                )
            )
        onnx_nodes.append(onnx_node)
    onnx_nodes += output_links

    used = {name for n in onnx_nodes for name in n.input if name} | set(output_names)
    initializers = []
    kept: dict[str, np.ndarray] = {}
    for name, array in values.items():
        if name not in used:
            continue
        array = np.asarray(array)
        if embed or array.nbytes < embed_below:
            initializers.append(onnx.numpy_helper.from_array(array, name))
        else:
            kept[name] = array
            tensor = TensorProto(
                name=name,
                data_type=_elem_type(helper, array.dtype, name),
                data_location=TensorProto.EXTERNAL,
            )
            tensor.dims.extend(array.shape)
            tensor.external_data.add(key="location", value=IN_MEMORY_LOCATION)
            initializers.append(tensor)
    graph_inputs = [
        _value_info(helper, name, stream.spec.dtype, stream.spec.shape, batch_dim)
        for name, stream in inputs
    ]
    graph = helper.make_graph(onnx_nodes, loaded.name, graph_inputs, graph_outputs, initializers)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="popef"
    )
    model.ir_version = ONNX_IR_VERSION
    return OnnxGraph(model, kept, [name for name, _ in inputs], output_names)


def loaded_to_onnx(
    loaded: LoadedModel, *, replica: int = 0, dynamic_batch: bool = False, opset: int = ONNX_OPSET
) -> onnx.ModelProto:
    """The load and main programs of ``loaded`` as a standalone ONNX model (weights embedded).

    With ``dynamic_batch`` the leading dimension of the inputs and outputs is symbolic
    (``"N"``); the graph must then be batch-polymorphic, or ExecutionError says why not.
    """
    rf = loaded.replication_factor
    if isinstance(replica, bool) or not isinstance(replica, int) or not 0 <= replica < rf:
        raise ExecutionError(
            f"replica must be an int in [0, {rf - 1}] for model "
            f"'{loaded.name}' (replication factor {rf}), got {replica!r}"
        )
    batch_dim = None
    if dynamic_batch:
        blocker = fold_blocker(loaded)
        if blocker is not None:
            raise ExecutionError(
                f"model {quote(loaded.name)} cannot be exported with a dynamic "
                f"batch dimension: {blocker}"
            )
        batch_dim = BATCH_DIM
    return graph_to_onnx(
        loaded, (*loaded.load, *loaded.main), replica=replica, batch_dim=batch_dim, opset=opset
    ).model


def export_onnx(
    source: Source,
    out: str | os.PathLike | IO[bytes] | None = None,
    *,
    executable: str | None = None,
    replica: int = 0,
    dynamic_batch: bool = False,
    opset: int = ONNX_OPSET,
    verify: bool = True,
    check: bool = True,
) -> onnx.ModelProto:
    """Export a PopEF model's graph program as an ONNX model; returns the ``ModelProto``.

    ``source`` is what :class:`popef.runtime.ModelRunner` takes (a path, several paths, a
    :class:`popef.Model` or :class:`popef.Reader`); the model is loaded and checked the same
    way (checksums unless ``verify=False``). ``out`` (a path or a binary stream), if given,
    receives the serialised model; a path is written atomically. ``check`` runs
    ``onnx.checker`` on the result. Raises :class:`popef.ExecutionError` for a model that
    cannot be exported.
    """
    onnx = import_onnx_module()
    from .runner import ModelRunner

    capture = _Capture()
    with ModelRunner(source, capture, executable=executable, verify=verify):
        loaded = capture.loaded
    model = loaded_to_onnx(loaded, replica=replica, dynamic_batch=dynamic_batch, opset=opset)
    if check:
        try:
            onnx.checker.check_model(model, full_check=False)
        except Exception as exc:  # onnx.checker.ValidationError and friends
            raise ExecutionError(
                f"model {quote(loaded.name)} does not make a valid ONNX model: "
                f"{str(exc).strip().splitlines()[0]}"
            ) from exc
    if out is not None:
        _write(model, out)
    return model


def _write(model: onnx.ModelProto, out: str | os.PathLike | IO[bytes]) -> None:
    data = model.SerializeToString()
    if hasattr(out, "write"):
        out.write(data)
        return
    path = os.fspath(out)
    if os.path.isdir(path):
        raise PopefError(
            f"cannot write '{path}': it is a directory (give a file name, e.g. "
            f"'{os.path.join(path, 'model.onnx')}')"
        )
    if os.path.exists(path) and not os.path.isfile(path):
        # a device or a pipe (/dev/stdout, a FIFO): written to, never replaced by a file
        try:
            with open(path, "wb") as file:
                file.write(data)
        except OSError as exc:
            raise PopefError(f"cannot write '{path}': {exc.strerror or exc}") from exc
        return
    # atomic, in place of the link's target for a symbolic link
    try:
        write_atomically(os.path.realpath(path), lambda file: file.write(data))
    except OSError as exc:
        raise PopefError(f"cannot write '{path}': {exc.strerror or exc}") from exc


def _value_info(helper, name: str, dtype: np.dtype, shape: Sequence[int], batch_dim: str | None):
    dims: list[int | str] = list(shape)
    if batch_dim is not None and dims:
        dims[0] = batch_dim
    return helper.make_tensor_value_info(name, _elem_type(helper, dtype, name), dims)


def _elem_type(helper, dtype: np.dtype, name: str) -> int:
    try:
        return int(helper.np_dtype_to_tensor_dtype(np.dtype(dtype)))
    except (KeyError, TypeError, ValueError) as exc:
        raise ExecutionError(
            f"tensor '{name}' has dtype {dtype}, which ONNX cannot express"
        ) from exc


class _Capture(Executor):
    """Stands in for an executor to get the checked LoadedModel out of a ModelRunner."""

    name = "export-onnx"
    description = "captures the loaded model for export"

    def load(self, model: LoadedModel) -> None:
        self.loaded = model

    def execute(self, inputs, steps):  # pragma: no cover - never called
        raise ExecutionError("exporting does not execute")

    def save(self):  # pragma: no cover - never called
        return {}
