"""ONNX → PopEF: :func:`import_onnx` (docs/import.md).

The graph is read node by node, in order (ONNX graphs are topologically sorted):

- a node whose inputs are all known at import (initializers, ``Constant``, the results of
  ``Shape`` once the input shapes are fixed, and of every node folded before it) is evaluated
  at once and its outputs become constants (:mod:`popef.importers.folding`);
- every other node is mapped one to one onto a graph-program node of the same op type and
  attributes, checked through the runtime's op registry and shape inference;
- ``If`` with a condition known at import is replaced by the branch it takes.

Only the nodes the outputs depend on are kept; the constants they read become tensor data
loaded by program 0 (``WeightsFromHost``), the graph runs in program 5 (``Program``), and the
anchors keep the ONNX input and output names with PopART's handles (``h2d_<name>``,
``anchor_d2h_<name>``). Nothing is written until the whole model has been converted, and the
file is created atomically: a failed import leaves no file behind.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

from ..errors import ExecutionError, PopefError
from ..escaping import escape_text
from ..runtime.builder import (
    LOAD_PROGRAM,
    MAIN_PROGRAM,
    input_handle,
    output_handle,
    popart_programs,
    weight_anchors,
)
from ..runtime.ops import OPS, TensorSpec, create_op
from ..runtime.program import (
    Attribute,
    GraphProgram,
    Node,
    encode_program,
)
from ..types import (
    POPART_PROGRAM_NAMES,
    Anchor,
    DataType,
    Metadata,
    ProgramFlow,
    TensorInfo,
    TensorType,
)
from ..writer import Writer
from .folding import check_size, constant_of_shape, fold_node
from .opsets import (
    ATTRIBUTE_INPUTS,
    CONTROL_FLOW,
    MIN_OPSET,
    NON_DETERMINISTIC,
    OBSOLETE_ATTRIBUTES,
    OLDEST_OPSET,
)
from .source import (
    OnnxSource,
    load_source,
    numpy_dtype_of,
    require_onnx,
    tensor_to_array,
)

__all__ = ["ConvertedGraph", "ImportResult", "convert", "import_onnx", "parse_input_shape"]

#: progress(stage, done, total): stage "nodes" (nodes converted) or "weights" (bytes written)
Progress = Callable[[str, int, int], None]

_DEFAULT_DOMAINS = ("", "ai.onnx")
_FIRST_NAMES = 3  # node names shown per unsupported op type


@dataclass(frozen=True)
class ImportResult:
    """What :func:`import_onnx` wrote."""

    path: str | None
    metadata: Metadata
    opset: int
    onnx_nodes: int  # nodes of the ONNX graph, inlined If branches included
    kept_nodes: int  # nodes of the saved program
    folded_nodes: int  # nodes evaluated at import
    weights: int
    weight_bytes: int


@dataclass
class ConvertedGraph:
    """The result of converting a graph, before anything is written."""

    inputs: dict[str, TensorInfo]
    weights: dict[str, np.ndarray]
    nodes: list[Node]
    outputs: dict[str, tuple[str, TensorSpec]]  # anchor name -> (tensor, spec)
    opset: int
    onnx_nodes: int
    folded_nodes: int

    def graph_program(self) -> GraphProgram:
        outputs = ((name, tensor) for name, (tensor, _) in self.outputs.items())
        return popart_programs(self.weights, self.inputs, self.nodes, outputs)

    def metadata(self, executable_name: str) -> Metadata:
        anchors = [
            Anchor(name, input_handle(name), info, (MAIN_PROGRAM,), False, TensorType.INPUT)
            for name, info in self.inputs.items()
        ]
        anchors += [
            Anchor(
                name,
                output_handle(name),
                TensorInfo(DataType.from_numpy(spec.dtype), spec.shape),
                (MAIN_PROGRAM,),
                False,
                TensorType.OUTPUT,
            )
            for name, (_, spec) in self.outputs.items()
        ]
        anchors += weight_anchors(self.weights)
        return Metadata(
            executable=executable_name,
            anchors=tuple(anchors),
            program_flow=ProgramFlow(load=(LOAD_PROGRAM,), main=(MAIN_PROGRAM,)),
            programs_map={i: POPART_PROGRAM_NAMES[i] for i in (LOAD_PROGRAM, MAIN_PROGRAM)},
            is_inference=True,
        )


def parse_input_shape(text: str) -> tuple[str, tuple[int, ...]]:
    """``"input=1,3,224,224"`` -> ``("input", (1, 3, 224, 224))``; ``"x="`` is a scalar."""
    name, sep, dims = text.rpartition("=")
    shown = escape_text(text, limit=200)  # a command line can be megabytes long
    if not sep or not name:
        raise ExecutionError(
            f"input shape '{shown}' must be NAME=D1,D2,... (for example input=1,3,224,224)"
        )
    try:
        shape = tuple(int(d) for d in dims.replace("x", ",").split(",") if d.strip())
    except ValueError:
        raise ExecutionError(
            f"input shape '{shown}': dimensions must be integers separated by commas"
        ) from None
    if any(d < 0 for d in shape):
        raise ExecutionError(f"input shape '{shown}': dimensions must be >= 0")
    if any(d >= 2**63 for d in shape):  # a PopEF shape holds int64 dimensions
        raise ExecutionError(f"input shape '{shown}': dimensions must be below 2**63")
    return name, shape


def import_onnx(
    model: Any,
    path: str | os.PathLike | BinaryIO,
    *,
    input_shapes: Mapping[str, Iterable[int]] | None = None,
    batch_size: int | None = None,
    executable_name: str | None = None,
    compress: bool = False,
    progress: Progress | None = None,
) -> ImportResult:
    """Import an ONNX model into a PopEF file at ``path`` (or a binary stream).

    ``model`` is a path to an ``.onnx`` file (external data is read from beside it), its
    bytes, or an ``onnx.ModelProto``. ``input_shapes`` (``{input: shape}``) and
    ``batch_size`` (the leading dimension of every input whose leading dimension is symbolic)
    fix dimensions the model leaves open. ``executable_name`` defaults to the file's stem (or
    the graph's name); ``compress`` zlib-compresses the graph program. Raises
    :class:`popef.ExecutionError` on anything the importer cannot convert, and then writes
    nothing.
    """
    if batch_size is not None and (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, (int, np.integer))
        or batch_size < 1
    ):
        raise ExecutionError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    source = load_source(model)
    graph = convert(source, input_shapes=input_shapes, batch_size=batch_size, progress=progress)
    name = executable_name or _default_name(model, source)
    if not isinstance(name, str) or not name:
        raise ExecutionError("executable_name must be a non-empty str")
    try:
        metadata = graph.metadata(name)
    except PopefError as exc:
        raise ExecutionError(f"cannot describe the imported model: {exc}") from exc
    payload = encode_program(graph.graph_program())
    total = sum(int(a.nbytes) for a in graph.weights.values())
    done = 0
    with Writer(path) as writer:
        writer.write_metadata(metadata)
        with writer.create_executable(name, compress=compress) as blob:
            blob.write(payload)
        for weight, array in graph.weights.items():
            writer.write_tensor(weight, array)
            done += int(array.nbytes)
            if progress is not None:
                progress("weights", done, total)
    return ImportResult(
        path=None if not isinstance(path, (str, os.PathLike)) else os.fspath(path),
        metadata=metadata,
        opset=graph.opset,
        onnx_nodes=graph.onnx_nodes,
        kept_nodes=len(graph.nodes),
        folded_nodes=graph.folded_nodes,
        weights=len(graph.weights),
        weight_bytes=total,
    )


def _default_name(model: Any, source: OnnxSource) -> str:
    if isinstance(model, (str, os.PathLike)):
        stem = os.path.splitext(os.path.basename(os.fspath(model)))[0]
        if stem:
            return stem
    return source.model.graph.name or "model"


def convert(
    source: OnnxSource | Any,
    *,
    input_shapes: Mapping[str, Iterable[int]] | None = None,
    batch_size: int | None = None,
    progress: Progress | None = None,
) -> ConvertedGraph:
    """Convert a model (an :class:`OnnxSource` or anything ``import_onnx`` takes) in memory."""
    if not isinstance(source, OnnxSource):
        source = load_source(source)
    return _Converter(source, input_shapes or {}, batch_size, progress).run()


class _Converter:
    def __init__(
        self,
        source: OnnxSource,
        input_shapes: Mapping[str, Iterable[int]],
        batch_size: int | None,
        progress: Progress | None,
    ) -> None:
        self.source = source
        self.onnx = require_onnx()
        self.model = source.model
        self.opset = self._opset()
        self.input_shapes = self._given_shapes(input_shapes)
        self.batch_size = None if batch_size is None else int(batch_size)
        self.progress = progress
        self.static: dict[str, np.ndarray] = {}  # tensors known at import
        self.specs: dict[str, TensorSpec] = {}  # tensors computed at run time
        self.unknown: set[str] = set()  # outputs of unsupported ops
        self.alias: dict[str, str] = {}  # ONNX name -> the tensor standing for it
        self.inputs: dict[str, TensorInfo] = {}
        self.nodes: list[Node] = []
        self.node_names: set[str] = set()
        self.weights: dict[str, np.ndarray] = {}  # static tensors the data path reads
        self.unsupported: dict[str, list[str]] = {}
        self.unsupported_counts: Counter[str] = Counter()
        self.onnx_nodes = 0
        self.folded = 0
        self.done = 0
        self.total = 0

    # ---- the whole model
    def _opset(self) -> int | None:
        """The default domain's opset; None when the model imports only other domains (then
        any node of the default domain is refused, and every other node is an unsupported op).
        """
        versions = [o.version for o in self.model.opset_import if o.domain in _DEFAULT_DOMAINS]
        if not versions:
            if self.model.ir_version and self.model.ir_version < 3:
                return MIN_OPSET  # IR 1-2 predate opset_import: the oldest the importer takes
            return None
        opset = int(max(versions))
        current = self.onnx.defs.onnx_opset_version()
        if not OLDEST_OPSET <= opset <= current:
            raise ExecutionError(
                f"{self.source.label} uses ONNX opset {opset}; the importer "
                f"takes opsets {OLDEST_OPSET} to {current} (opsets below "
                f"{MIN_OPSET} for ops unchanged since)"
            )
        return opset

    def _check_old_opset(self, op_type: str, where: str) -> None:
        """Below opset 7, an op is taken only where its definition is the one opset 7 has."""
        assert self.opset is not None
        if self.opset >= MIN_OPSET:
            return
        defs = self.onnx.defs
        try:
            old = defs.get_schema(op_type, self.opset).since_version
            new = defs.get_schema(op_type, MIN_OPSET).since_version
        except defs.SchemaError:
            return  # not an ONNX op at this opset: reported as unsupported
        if old != new:
            raise ExecutionError(
                f"{where}: the model's opset {self.opset} defines {op_type} as of version "
                f"{old}, which opset {new} changed; the importer takes {op_type} as defined "
                f"from opset {MIN_OPSET} on (convert the model with "
                f"onnx.version_converter.convert_version(model, {MIN_OPSET}))"
            )

    def _given_shapes(self, shapes: Mapping[str, Iterable[int]]) -> dict[str, tuple[int, ...]]:
        if not isinstance(shapes, Mapping):
            raise ExecutionError(
                f"input_shapes must be a mapping of input name to shape, got "
                f"{type(shapes).__name__}"
            )
        out = {}
        for name, shape in shapes.items():
            try:
                dims = tuple(int(d) for d in shape)
            except (TypeError, ValueError):
                raise ExecutionError(
                    f"input_shapes['{escape_text(str(name))}'] must be a "
                    f"sequence of ints, got {shape!r}"
                ) from None
            if any(d < 0 for d in dims):
                raise ExecutionError(
                    f"input_shapes['{escape_text(str(name))}'] has a negative "
                    f"dimension: {list(dims)}"
                )
            out[str(name)] = dims
        return out

    def run(self) -> ConvertedGraph:
        graph = self.model.graph
        self.total = _count_nodes(graph)
        for tensor in graph.initializer:
            self._define_static(
                tensor.name,
                tensor_to_array(tensor, self.source, f"initializer '{escape_text(tensor.name)}'"),
                "initializer",
            )
        self._inputs(graph)
        for node in graph.node:
            self._node(node)
        self._fail_on_unsupported()
        outputs = self._outputs(graph)
        self._prune(outputs)
        opset = 0 if self.opset is None else self.opset  # 0: no default-domain opset
        return ConvertedGraph(
            self.inputs, self.weights, self.nodes, outputs, opset, self.onnx_nodes, self.folded
        )

    def _inputs(self, graph: Any) -> None:
        symbols: dict[str, int] = {}
        declared = [v for v in graph.input if v.name not in self.static]
        names = {v.name for v in declared}
        for name in self.input_shapes:
            if name not in names:
                listed = ", ".join(f"'{escape_text(n)}'" for n in names) or "none"
                raise ExecutionError(
                    f"input shape given for '{escape_text(name)}', which is not "
                    f"an input of the model (inputs: {listed})"
                )
        # symbolic dimensions named in one input take the value given for another
        for value in declared:
            dims = _dims(value)
            given = self.input_shapes.get(value.name)
            for i, (_, param) in enumerate(dims or ()):
                if param and given is not None and i < len(given):
                    symbols.setdefault(param, given[i])
                if param and i == 0 and self.batch_size is not None:
                    symbols.setdefault(param, self.batch_size)
        problems = []
        for value in declared:
            name = value.name
            shown = escape_text(name)
            kind = value.type.WhichOneof("value")
            if kind != "tensor_type":
                raise ExecutionError(
                    f"input '{shown}' is a {kind or 'value of unknown type'}; "
                    "only tensor inputs are supported"
                )
            dtype = numpy_dtype_of(value.type.tensor_type.elem_type, f"input '{shown}'")
            dims = _dims(value)
            given = self.input_shapes.get(name)
            if given is not None:
                if dims is not None and len(dims) != len(given):
                    raise ExecutionError(
                        f"input '{shown}' has rank {len(dims)} but the shape "
                        f"given has {len(given)} dimensions: {list(given)}"
                    )
                for i, (dim_value, _) in enumerate(dims or ()):
                    if dim_value is not None and dim_value != given[i]:
                        raise ExecutionError(
                            f"input '{shown}' has dimension {i} fixed to "
                            f"{dim_value} by the model, but {given[i]} was "
                            "given"
                        )
                shape = given
            elif dims is None:
                problems.append(
                    f"input '{shown}' has no shape in the model: give it with "
                    f"--input-shape {shown}=D1,D2,..."
                )
                continue
            else:
                resolved = []
                for i, (dim_value, param) in enumerate(dims):
                    if dim_value is not None:
                        resolved.append(dim_value)
                    elif param in symbols:
                        resolved.append(symbols[param])
                    else:
                        label = f" ('{escape_text(param)}')" if param else ""
                        hint = " or --batch-size" if i == 0 else ""
                        problems.append(
                            f"input '{shown}' has an unknown dimension {i}{label}: "
                            f"fix it with --input-shape {shown}=...{hint}"
                        )
                        resolved = None
                        break
                if resolved is None:
                    continue
                shape = tuple(resolved)
            info = TensorInfo(DataType.from_numpy(dtype), shape)
            self.inputs[name] = info
            self._define(name, TensorSpec(shape, dtype), "input")
        if problems:
            raise ExecutionError("; ".join(problems))

    def _outputs(self, graph: Any) -> dict[str, tuple[str, TensorSpec]]:
        outputs: dict[str, tuple[str, TensorSpec]] = {}
        for value in graph.output:
            name = value.name
            shown = escape_text(name)
            if name in self.inputs:
                raise ExecutionError(
                    f"output '{shown}' is also an input of the model: PopEF "
                    "anchors need distinct names"
                )
            if name in outputs:
                raise ExecutionError(f"output '{shown}' is listed twice")
            tensor = self.alias.get(name, name)
            if tensor in self.static:
                # an output known at import: stored, and copied out by an Identity node
                stored = self._fresh(f"{name}/folded")
                self.static[stored] = self.static[tensor]
                out = self._fresh(f"{name}/value")
                self._emit(
                    Node(
                        "Identity",
                        self._node_name("Identity", f"{name}/Identity"),
                        (stored,),
                        (out,),
                    ),
                    [TensorSpec.of(self.static[stored])],
                    {0: self.static[stored]},
                )
                tensor = out
            if tensor not in self.specs:
                raise ExecutionError(f"output '{shown}' is not computed by any node of the model")
            outputs[name] = (tensor, self.specs[tensor])
        if not outputs:
            raise ExecutionError(f"{self.source.label} has no outputs")
        return outputs

    def _prune(self, outputs: Mapping[str, tuple[str, TensorSpec]]) -> None:
        """Keep the nodes the outputs depend on, and the constants they read."""
        live = {tensor for tensor, _ in outputs.values()}
        kept = []
        for node in reversed(self.nodes):
            if any(t in live for t in node.outputs if t):
                kept.append(node)
                live.update(t for t in node.inputs if t)
        self.nodes = kept[::-1]
        self.weights = {name: self.static[name] for name in self.weights if name in live}

    def _fail_on_unsupported(self) -> None:
        if not self.unsupported_counts:
            return
        parts = []
        for op_type, count in sorted(
            self.unsupported_counts.items(), key=lambda item: (-item[1], item[0])
        ):
            first = ", ".join(f"'{escape_text(n)}'" for n in self.unsupported[op_type])
            more = ", ..." if count > len(self.unsupported[op_type]) else ""
            parts.append(f"{escape_text(op_type)} ×{count} ({first}{more})")
        kinds = len(self.unsupported_counts)
        raise ExecutionError(
            f"{self.source.label} uses {kinds} op type"
            f"{'s' if kinds > 1 else ''} the runtime does not have: " + "; ".join(parts)
        )

    # ---- tensors
    def _define(self, name: str, spec: TensorSpec, what: str) -> None:
        if name in self.specs or name in self.static or name in self.unknown:
            raise ExecutionError(f"tensor '{escape_text(name)}' is defined twice (by {what})")
        self.specs[name] = spec

    def _define_static(self, name: str, array: np.ndarray, what: str) -> None:
        if name in self.specs or name in self.static or name in self.unknown:
            raise ExecutionError(f"tensor '{escape_text(name)}' is defined twice (by {what})")
        self.static[name] = array

    def _fresh(self, base: str) -> str:
        name, k = base, 1
        while name in self.static or name in self.specs or name in self.unknown:
            name, k = f"{base}_{k}", k + 1
        return name

    def _node_name(self, op_type: str, given: str) -> str:
        base = given or f"{op_type}_{len(self.node_names)}"
        name, k = base, 1
        while name in self.node_names:
            name, k = f"{base}_{k}", k + 1
        self.node_names.add(name)
        return name

    # ---- nodes
    def _node(self, node: Any) -> None:
        self.onnx_nodes += 1
        self.done += 1
        if self.progress is not None and (self.done % 64 == 0 or self.done == self.total):
            self.progress("nodes", self.done, self.total)
        domain = node.domain
        op_type = node.op_type if domain in _DEFAULT_DOMAINS else f"{domain}.{node.op_type}"
        name = self._node_name(node.op_type, node.name)
        where = f"{escape_text(op_type)} node '{escape_text(name)}'"
        inputs = _strip(self.alias.get(t, t) for t in node.input)
        outputs = _strip(node.output)
        for k, tensor in enumerate(inputs):
            if (
                tensor
                and tensor not in self.static
                and tensor not in self.specs
                and tensor not in self.unknown
            ):
                raise ExecutionError(
                    f"{where}: input {k} '{escape_text(tensor)}' is not defined "
                    "before it (the graph must be topologically sorted)"
                )
        if domain in _DEFAULT_DOMAINS:
            if self.opset is None:
                raise ExecutionError(
                    f"{where}: {self.source.label} does not say which ONNX opset "
                    "it uses (no opset_import for the default domain)"
                )
            self._check_old_opset(op_type, where)
        if any(t in self.unknown for t in inputs if t):
            self._unsupported_or_unknown(op_type, name, outputs)
            return
        if domain not in _DEFAULT_DOMAINS and op_type not in OPS:
            # other domains' ops are registered as "<domain>.<op type>" (ai.onnx.ml.Binarizer)
            self._unsupported(op_type, name, outputs)
            return
        if op_type in CONTROL_FLOW:
            self._control_flow(node, op_type, name, where, inputs, outputs)
            return
        attrs = self._attributes(node, where)
        if self._fold_special(op_type, name, where, node, attrs, inputs, outputs):
            return
        if op_type not in NON_DETERMINISTIC and all(not t or t in self.static for t in inputs):
            values = [self.static[t] if t else None for t in inputs]
            results = fold_node(
                op_type, name, _plain(attrs), values, max(len(outputs), 1), node, self.opset
            )
            self._folded(outputs, results, where)
            return
        self._data_path(op_type, name, where, attrs, inputs, outputs)

    def _folded(self, outputs: list[str], results: list[np.ndarray], where: str) -> None:
        self.folded += 1
        for tensor, value in zip(outputs, results):
            if tensor:
                value = np.asarray(value)
                numpy_dtype_of_array(value, where)
                if value.flags.writeable:
                    value.flags.writeable = False
                self._define_static(tensor, value, where)

    def _fold_special(
        self,
        op_type: str,
        name: str,
        where: str,
        node: Any,
        attrs: dict[str, Any],
        inputs: list[str],
        outputs: list[str],
    ) -> bool:
        """Constant, Shape, Size, ConstantOfShape and Identity: folded without a kernel."""
        if op_type == "Constant":
            self._folded(outputs, [self._constant_value(node, where)], where)
            return True
        if op_type in ("Shape", "Size") and inputs and inputs[0]:
            spec = self._spec(inputs[0])
            if op_type == "Size":
                value = np.array(spec.size, np.int64)
            else:
                rank = spec.rank
                start = int(attrs.get("start", 0))
                end = int(attrs.get("end", rank))
                start = min(max(start + rank if start < 0 else start, 0), rank)
                end = min(max(end + rank if end < 0 else end, 0), rank)
                value = np.array(spec.shape[start:end], np.int64)
            self._folded(outputs, [value], where)
            return True
        if op_type == "ConstantOfShape" and inputs and inputs[0] in self.static:
            fill = attrs.get("value")
            self._folded(outputs, [constant_of_shape(where, self.static[inputs[0]], fill)], where)
            return True
        if op_type == "Identity" and inputs and outputs and inputs[0] in self.static:
            self._folded(outputs, [self.static[inputs[0]]], where)
            return True
        return False

    def _spec(self, tensor: str) -> TensorSpec:
        if tensor in self.static:
            return TensorSpec.of(self.static[tensor])
        return self.specs[tensor]

    def _constant_value(self, node: Any, where: str) -> np.ndarray:
        if len(node.attribute) != 1:
            raise ExecutionError(
                f"{where}: a Constant takes exactly one value attribute, got {len(node.attribute)}"
            )
        attribute = node.attribute[0]
        kind = attribute.name
        if kind == "value":
            return tensor_to_array(attribute.t, self.source, where)
        if kind == "value_float":
            return np.array(attribute.f, np.float32)
        if kind == "value_floats":
            return np.array(list(attribute.floats), np.float32)
        if kind == "value_int":
            return np.array(attribute.i, np.int64)
        if kind == "value_ints":
            return np.array(list(attribute.ints), np.int64)
        raise ExecutionError(
            f"{where}: Constant '{escape_text(kind)}' values are not supported "
            "(PopEF holds numeric tensors only)"
        )

    def _attributes(self, node: Any, where: str) -> dict[str, Any]:
        attrs: dict[str, Any] = {}
        A = self.onnx.AttributeProto
        for attribute in node.attribute:
            key = attribute.name
            kind = attribute.type
            if attribute.ref_attr_name:
                raise ExecutionError(
                    f"{where}: attribute '{escape_text(key)}' refers to a "
                    "function attribute; functions are not supported"
                )
            if kind == A.INT:
                attrs[key] = int(attribute.i)
            elif kind == A.FLOAT:
                attrs[key] = float(attribute.f)
            elif kind == A.STRING:
                try:
                    attrs[key] = attribute.s.decode("utf-8")
                except UnicodeDecodeError:
                    raise ExecutionError(
                        f"{where}: attribute '{escape_text(key)}' is not UTF-8 text"
                    ) from None
            elif kind == A.STRINGS:
                try:
                    attrs[key] = [v.decode("utf-8") for v in attribute.strings]
                except UnicodeDecodeError:
                    raise ExecutionError(
                        f"{where}: attribute '{escape_text(key)}' holds an item "
                        "that is not UTF-8 text"
                    ) from None
            elif kind == A.INTS:
                attrs[key] = [int(v) for v in attribute.ints]
            elif kind == A.FLOATS:
                attrs[key] = [float(v) for v in attribute.floats]
            elif kind == A.TENSOR:
                attrs[key] = tensor_to_array(
                    attribute.t, self.source, f"{where}, attribute '{escape_text(key)}'"
                )
            elif kind == A.GRAPH:
                attrs[key] = attribute.g
            else:
                raise ExecutionError(
                    f"{where}: attribute '{escape_text(key)}' has type "
                    f"{A.AttributeType.Name(kind)}, which the importer does "
                    "not support"
                )
        return attrs

    def _unsupported(self, op_type: str, name: str, outputs: list[str]) -> None:
        names = self.unsupported.setdefault(op_type, [])
        if len(names) < _FIRST_NAMES:
            names.append(name)
        self.unsupported_counts[op_type] += 1
        self.unknown.update(t for t in outputs if t)

    def _unsupported_or_unknown(self, op_type: str, name: str, outputs: list[str]) -> None:
        """A node downstream of an unsupported op: only its own support is checked."""
        if op_type not in OPS and op_type not in CONTROL_FLOW and op_type != "Constant":
            self._unsupported(op_type, name, outputs)
        else:
            self.unknown.update(t for t in outputs if t)

    def _control_flow(
        self, node: Any, op_type: str, name: str, where: str, inputs: list[str], outputs: list[str]
    ) -> None:
        if op_type != "If":
            raise ExecutionError(
                f"{where}: {op_type} is not supported (control flow is "
                "imported only as If with a condition known at import)"
            )
        cond = inputs[0] if inputs else ""
        if cond not in self.static:
            raise ExecutionError(
                f"{where}: its condition '{escape_text(cond)}' is computed at "
                "run time, so it cannot be folded at import (only If with a "
                "condition known at import is supported)"
            )
        attrs = {a.name: a.g for a in node.attribute if a.name in ("then_branch", "else_branch")}
        taken = bool(np.asarray(self.static[cond]).reshape(-1)[0])
        branch = attrs.get("then_branch" if taken else "else_branch")
        if branch is None:
            raise ExecutionError(f"{where}: has no {'then' if taken else 'else'}_branch")
        self.folded += 1
        for tensor in branch.initializer:
            self._define_static(
                tensor.name,
                tensor_to_array(
                    tensor, self.source, f"{where}: initializer '{escape_text(tensor.name)}'"
                ),
                where,
            )
        for inner in branch.node:
            self._node(inner)
        if len(branch.output) != len(node.output):
            raise ExecutionError(
                f"{where}: its branch has {len(branch.output)} outputs, the node {len(node.output)}"
            )
        for outer, inner in zip(node.output, branch.output):
            if outer:
                target = self.alias.get(inner.name, inner.name)
                if target in self.static:
                    self._define_static(outer, self.static[target], where)
                else:
                    self.alias[outer] = target

    def _data_path(
        self,
        op_type: str,
        name: str,
        where: str,
        attrs: dict[str, Any],
        inputs: list[str],
        outputs: list[str],
    ) -> None:
        op_class = OPS.get(op_type)
        if op_class is None:
            self._unsupported(op_type, name, outputs)
            return
        declared = op_class.attributes
        inputs = list(inputs)
        for key in list(attrs):
            if key in declared:
                continue
            if (op_type, key) in OBSOLETE_ATTRIBUTES:
                del attrs[key]
                continue
            moved = ATTRIBUTE_INPUTS.get(op_type, {}).get(key)
            if moved is not None and moved[0] < op_class.num_inputs[1]:
                index, form = moved
                value = _attribute_as_input(attrs.pop(key), form, self._spec(inputs[0]).dtype)
                while len(inputs) <= index:
                    inputs.append("")
                if inputs[index]:
                    raise ExecutionError(
                        f"{where}: '{key}' is given both as an attribute and as input {index}"
                    )
                tensor = self._fresh(f"{name}/{key}")
                self._define_static(tensor, value, where)
                inputs[index] = tensor
        if op_type == "Resize" and len(inputs) == 2 and self.opset != 10:
            # the runtime reads two inputs as opset 10's (X, scales); later opsets need
            # scales or sizes as input 2 or 3
            raise ExecutionError(
                f"{where}: at opset {self.opset} Resize takes scales or sizes "
                "as input 2 or 3, but it has only 2 inputs (X, roi)"
            )
        if op_type == "RoiAlign" and self.opset is not None and self.opset < 16:
            # opset 10's RoiAlign has no coordinate_transformation_mode and behaves as this
            attrs.setdefault("coordinate_transformation_mode", "output_half_pixel")
        tensor_valued = getattr(op_class, "tensor_attributes", ())
        for key, value in attrs.items():
            if key in tensor_valued and isinstance(value, np.ndarray):
                raise ExecutionError(
                    f"{where}: attribute '{escape_text(key)}' is a tensor, which a saved graph "
                    "program cannot hold, so the node must be folded at import: every input "
                    "of it must be a constant known at import"
                )
            if isinstance(value, np.ndarray) or not isinstance(value, (int, float, str, list)):
                raise ExecutionError(
                    f"{where}: attribute '{escape_text(key)}' holds a "
                    f"{type(value).__name__}, which the runtime's op does not take"
                )
        op = create_op(op_type, name, _plain(attrs), max(len(outputs), 1))
        typed = []
        for key, value in attrs.items():
            try:
                typed.append(Attribute.of(key, value, declared[key].kind))
            except PopefError as exc:
                raise op.error(str(exc)) from None
        specs: list[TensorSpec | None] = []
        constants: dict[int, np.ndarray] = {}
        for k, tensor in enumerate(inputs):
            if not tensor:
                specs.append(None)
                continue
            specs.append(self._spec(tensor))
            if tensor in self.static:
                constants[k] = self.static[tensor]
        if not outputs:
            outputs = [self._fresh(f"{name}:0")]
        self._emit(
            Node(op_type, name, tuple(inputs), tuple(outputs), tuple(typed)), specs, constants, op
        )

    def _emit(
        self,
        node: Node,
        specs: list[TensorSpec | None],
        constants: dict[int, np.ndarray],
        op: Any = None,
    ) -> None:
        if op is None:
            op = create_op(node.op_type, node.name, node.attribute_values(), len(node.outputs))
        for k, value in constants.items():
            op.constant_inputs[k] = value
            self.weights.setdefault(node.inputs[k], value)
        out_specs = op.infer(specs)
        for tensor, spec in zip(node.outputs, out_specs):
            if tensor:
                self._define(tensor, spec, f"{node.op_type} node '{node.name}'")
        self.nodes.append(node)


def _count_nodes(graph: Any) -> int:
    return len(graph.node)


def _dims(value: Any) -> list[tuple[int | None, str]] | None:
    """``[(dim_value or None, dim_param)]`` of a graph input, None when it has no shape."""
    tensor_type = value.type.tensor_type
    if not tensor_type.HasField("shape"):
        return None
    dims = []
    for dim in tensor_type.shape.dim:
        if dim.HasField("dim_value") and dim.dim_value >= 0:
            dims.append((int(dim.dim_value), ""))
        else:
            dims.append((None, dim.dim_param if dim.HasField("dim_param") else ""))
    return dims


def _strip(names: Iterable[str]) -> list[str]:
    out = list(names)
    while out and not out[-1]:
        out.pop()
    return out


def _plain(attrs: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in attrs.items() if not hasattr(v, "node")}  # subgraphs stay out


def numpy_dtype_of_array(value: np.ndarray, where: str) -> None:
    """Refuse a folded value whose dtype PopEF cannot hold (strings, complex, bfloat16...)."""
    try:
        DataType.from_numpy(value.dtype)
    except PopefError:
        raise ExecutionError(
            f"{where}: folding gives a {value.dtype} tensor, which PopEF cannot hold"
        ) from None
    check_size(where, value.shape, value.dtype)


def _attribute_as_input(value: Any, form: str, dtype: np.dtype) -> np.ndarray:
    if form == "ints":
        return np.asarray(value, np.int64).reshape(-1)
    if form == "int":
        return np.asarray([value], np.int64).reshape(-1)
    if form == "floats":
        return np.asarray(value, np.float32).reshape(-1)
    return np.asarray(value, dtype).reshape(())
