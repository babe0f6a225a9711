"""GraphBuilder: author a model in Python and save it as a complete PopEF file.

::

    g = GraphBuilder()
    x = g.add_input("input", DataType.F32, (1, 1, 28, 28))
    w = g.add_weight("conv1.weight", weights)
    h = g.add_node("Conv", [x, w], kernel_shape=[3, 3])
    g.add_output(h, "features")
    g.save("model.popef", executable_name="model")

Every node is checked as it is added: the op type and attributes through the op registry, the
inputs against the tensors defined so far, and the output shapes by the op's shape inference;
errors are :class:`popef.ExecutionError` naming the node. ``save`` writes what PopART would
(spec §3.1): program flow ``load=[0]`` (``WeightsFromHost``), ``main=[5]`` (``Program``),
anchors ``h2d_<name>`` for inputs and weights and ``anchor_d2h_<name>`` for outputs, weights as
tensor data, and the graph program as the executable.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from enum import Enum
from typing import Any, BinaryIO

import numpy as np

from ..errors import ExecutionError, PopefError
from ..types import (
    POPART_PROGRAM_NAMES,
    Anchor,
    DataType,
    Metadata,
    Option,
    ProgramFlow,
    TensorInfo,
    TensorType,
)
from ..writer import Writer
from .ops import TensorSpec, create_op, get_op_class
from .program import (
    Attribute,
    DeviceToHost,
    GraphProgram,
    HostToDevice,
    Node,
    Program,
    encode_program,
)

__all__ = [
    "GraphBuilder",
    "LOAD_PROGRAM",
    "MAIN_PROGRAM",
    "input_handle",
    "output_handle",
    "popart_programs",
    "weight_anchors",
]

LOAD_PROGRAM = 0  # PopART's WeightsFromHost
MAIN_PROGRAM = 5  # PopART's Program


def input_handle(name: str) -> str:
    """PopART's stream handle of an input or weight."""
    return f"h2d_{name}"


def output_handle(name: str) -> str:
    """PopART's stream handle of an output anchor."""
    return f"anchor_d2h_{name}"


def popart_programs(
    weights: Iterable[str],
    inputs: Iterable[str],
    nodes: Iterable[Node],
    outputs: Iterable[tuple[str, str]],
) -> GraphProgram:
    """PopART's two programs: 0 copies the weights in, 5 feeds the inputs, runs ``nodes`` and
    copies each ``(anchor name, tensor)`` of ``outputs`` out."""
    load = tuple(HostToDevice(input_handle(name), name) for name in weights)
    main: list = [HostToDevice(input_handle(name), name) for name in inputs]
    main += nodes
    main += [DeviceToHost(tensor, output_handle(name)) for name, tensor in outputs]
    return GraphProgram(
        (
            Program(LOAD_PROGRAM, POPART_PROGRAM_NAMES[LOAD_PROGRAM], load),
            Program(MAIN_PROGRAM, POPART_PROGRAM_NAMES[MAIN_PROGRAM], tuple(main)),
        )
    )


def weight_anchors(weights: Mapping[str, np.ndarray]) -> list[Anchor]:
    """The anchors PopART writes for weights: one ``h2d_<name>`` input each, fed by program 0."""
    return [
        Anchor(
            name,
            input_handle(name),
            TensorInfo.of(array),
            (LOAD_PROGRAM,),
            False,
            TensorType.INPUT,
        )
        for name, array in weights.items()
    ]


def _data_type(dtype: Any) -> DataType:
    if isinstance(dtype, DataType):
        return dtype
    if isinstance(dtype, Enum):  # another API's DataType (popef.graphcore's): by member name
        dtype = dtype.name
    if isinstance(dtype, str) and dtype.upper() in DataType.__members__:
        return DataType[dtype.upper()]
    try:
        return DataType.from_numpy(np.dtype(dtype))
    except (TypeError, ValueError, PopefError):
        raise ExecutionError(
            f"not a data type: {dtype!r} (expected a popef.DataType, its name or a numpy dtype)"
        ) from None


class GraphBuilder:
    """Builds a graph program with its inputs, weights and outputs (see the module docstring)."""

    def __init__(self) -> None:
        self._inputs: dict[str, TensorInfo] = {}
        self._weights: dict[str, np.ndarray] = {}
        self._nodes: list[Node] = []
        self._outputs: dict[str, str] = {}  # anchor name -> tensor
        self._specs: dict[str, TensorSpec] = {}
        self._node_names: set[str] = set()
        self._counts: Counter[str] = Counter()

    # ---- tensors
    def _new_tensor(self, name: object, what: str) -> str:
        if not isinstance(name, str) or not name:
            raise ExecutionError(f"{what} name must be a non-empty str, got {name!r}")
        if name in self._specs:
            raise ExecutionError(f"tensor '{name}' is already defined")
        if name in self._outputs:
            raise ExecutionError(f"'{name}' already names an output")
        return name

    def add_input(self, name: str, dtype: Any, shape: Iterable[int]) -> str:
        """Declare an input fed by the caller at every step; returns its tensor name."""
        self._new_tensor(name, "an input")
        try:
            info = TensorInfo(_data_type(dtype), tuple(shape))
        except PopefError as exc:
            raise ExecutionError(f"input '{name}': {exc}") from None
        except TypeError:
            raise ExecutionError(
                f"input '{name}': shape must be a sequence of ints, got {shape!r}"
            ) from None
        self._inputs[name] = info
        self._specs[name] = TensorSpec(info.shape, info.numpy_dtype)
        return name

    def add_weight(self, name: str, array: Any) -> str:
        """Declare a constant stored in the file and loaded once; returns its tensor name."""
        self._new_tensor(name, "a weight")
        data = np.array(array, copy=True)
        try:
            dtype = DataType.from_numpy(data.dtype)
        except PopefError:
            raise ExecutionError(
                f"weight '{name}' has dtype {data.dtype}, which PopEF cannot store"
            ) from None
        data = data.astype(dtype.numpy_dtype, copy=False)
        data.flags.writeable = False
        self._weights[name] = data
        self._specs[name] = TensorSpec(data.shape, data.dtype)
        return name

    def add_node(
        self,
        op_type: str,
        inputs: Sequence[str | None],
        *,
        name: str | None = None,
        num_outputs: int = 1,
        **attributes: Any,
    ) -> str | tuple[str, ...]:
        """Add one op (ONNX semantics); returns its output tensor name, a tuple if several.

        ``inputs`` may hold ``None`` or ``""`` for an omitted optional input. An attribute given
        as ``None`` takes the op's default.
        """
        if not isinstance(op_type, str) or not op_type:
            raise ExecutionError(f"an op type must be a non-empty str, got {op_type!r}")
        op_type = str(op_type)
        if name is None:
            name = self._auto_name(op_type)
        elif not isinstance(name, str) or not name:
            raise ExecutionError(f"a node name must be a non-empty str, got {name!r}")
        if name in self._node_names:
            raise ExecutionError(f"node '{name}' already exists")
        if isinstance(inputs, str) or not isinstance(inputs, Sequence):
            raise ExecutionError(
                f"{op_type} node '{name}': inputs must be a list of tensor names, got {inputs!r}"
            )
        given = {k: v for k, v in attributes.items() if v is not None}
        op_class = get_op_class(op_type, name)
        op = create_op(op_type, name, given, num_outputs)
        declared = op_class.attributes
        try:
            typed = tuple(Attribute.of(k, v, declared[k].kind) for k, v in given.items())
        except PopefError as exc:
            raise op.error(str(exc)) from None

        names = tuple("" if t is None else t for t in inputs)
        specs: list[TensorSpec | None] = []
        for k, tensor in enumerate(names):
            if not isinstance(tensor, str):
                raise op.error(f"input {k} must be a tensor name, got {tensor!r}")
            if not tensor:
                specs.append(None)
                continue
            if tensor not in self._specs:
                raise op.error(
                    f"input {k} '{tensor}' is not defined (add it as an input, a "
                    "weight or another node's output first)"
                )
            specs.append(self._specs[tensor])
            if tensor in self._weights:
                op.constant_inputs[k] = self._weights[tensor]
        out_specs = op.infer(specs)
        outputs = tuple(f"{name}:{i}" for i in range(num_outputs))
        for tensor in outputs:
            self._new_tensor(tensor, "an output tensor")
        node = Node(op_type, name, names, outputs, typed)
        for tensor, spec in zip(outputs, out_specs):
            self._specs[tensor] = spec
        self._nodes.append(node)
        self._node_names.add(name)
        return outputs[0] if num_outputs == 1 else outputs

    def _auto_name(self, op_type: str) -> str:
        while True:
            candidate = f"{op_type}_{self._counts[op_type]}"
            self._counts[op_type] += 1
            if candidate not in self._node_names:
                return candidate

    def add_output(self, tensor: str, name: str) -> str:
        """Expose ``tensor`` to the caller as the output anchor ``name``; returns ``name``."""
        if not isinstance(tensor, str) or tensor not in self._specs:
            raise ExecutionError(f"output '{name}': tensor {tensor!r} is not defined")
        if not isinstance(name, str) or not name:
            raise ExecutionError(f"an output name must be a non-empty str, got {name!r}")
        if name in self._outputs or name in self._inputs or name in self._weights:
            raise ExecutionError(f"'{name}' already names an anchor")
        self._outputs[name] = tensor
        return name

    @property
    def inputs(self) -> dict[str, TensorInfo]:
        """The inputs added so far: name -> dtype and shape (one replica's, one step's)."""
        return dict(self._inputs)

    @property
    def weights(self) -> dict[str, np.ndarray]:
        """The weights added so far: name -> (read-only) array."""
        return dict(self._weights)

    @property
    def outputs(self) -> dict[str, str]:
        """The outputs added so far: output name -> tensor."""
        return dict(self._outputs)

    def spec(self, tensor: str) -> TensorSpec:
        """The shape and numpy dtype of a tensor defined so far (one replica's, one step's)."""
        try:
            return self._specs[tensor]
        except KeyError:
            raise ExecutionError(f"tensor '{tensor}' is not defined") from None

    # ---- what save writes
    def graph_program(self) -> GraphProgram:
        """The programs: 0 copies the weights in, 5 runs one step."""
        return popart_programs(self._weights, self._inputs, self._nodes, self._outputs.items())

    def metadata(
        self,
        executable_name: str = "model",
        *,
        replication_factor: int = 1,
        device_iterations: int = 1,
        num_ipus: int = 1,
        ipu_version: int = 2,
        engine_options: Iterable[Option | tuple[str, str]] = (),
        device_options: Iterable[Option | tuple[str, str]] = (),
    ) -> Metadata:
        """The metadata ``save`` writes (PopART's conventions, spec §3.1)."""
        for label, value in (
            ("replication_factor", replication_factor),
            ("device_iterations", device_iterations),
            ("num_ipus", num_ipus),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ExecutionError(f"{label} must be an integer >= 1, got {value!r}")
        rf = int(replication_factor)
        per_replica = rf > 1

        def user_info(info: TensorInfo) -> TensorInfo:
            return TensorInfo(info.dtype, (rf, *info.shape)) if per_replica else info

        anchors = [
            Anchor(
                name,
                input_handle(name),
                user_info(info),
                (MAIN_PROGRAM,),
                per_replica,
                TensorType.INPUT,
            )
            for name, info in self._inputs.items()
        ]
        for name, tensor in self._outputs.items():
            spec = self._specs[tensor]
            info = TensorInfo(DataType.from_numpy(spec.dtype), spec.shape)
            anchors.append(
                Anchor(
                    name,
                    output_handle(name),
                    user_info(info),
                    (MAIN_PROGRAM,),
                    per_replica,
                    TensorType.OUTPUT,
                )
            )
        anchors += weight_anchors(self._weights)
        try:
            return Metadata(
                executable=executable_name,
                anchors=tuple(anchors),
                program_flow=ProgramFlow(load=(LOAD_PROGRAM,), main=(MAIN_PROGRAM,)),
                programs_map={i: POPART_PROGRAM_NAMES[i] for i in (LOAD_PROGRAM, MAIN_PROGRAM)},
                replication_factor=rf,
                num_ipus=int(num_ipus),
                ipu_version=ipu_version,
                is_inference=True,
                engine_options=tuple(_option(o) for o in engine_options),
                device_options=tuple(_option(o) for o in device_options),
                device_iterations=int(device_iterations),
            )
        except PopefError as exc:
            raise ExecutionError(f"cannot describe the model: {exc}") from exc

    def save(
        self,
        path: str | os.PathLike | BinaryIO,
        executable_name: str = "model",
        *,
        replication_factor: int = 1,
        device_iterations: int = 1,
        num_ipus: int = 1,
        ipu_version: int = 2,
        compress: bool = False,
        engine_options: Iterable[Option | tuple[str, str]] = (),
        device_options: Iterable[Option | tuple[str, str]] = (),
    ) -> Metadata:
        """Write the model as a PopEF file (or to a binary stream); returns its metadata.

        Blobs, in PopART's order: the metadata, the executable (the encoded graph program,
        zlib-compressed if ``compress``), then one tensor data blob per weight. User input and
        output anchors have the per-replica shape, with a leading ``replication_factor``
        dimension and ``is_per_replica`` when it is above 1; ``device_iterations`` is not part
        of any shape.
        """
        if not isinstance(executable_name, str) or not executable_name:
            raise ExecutionError("executable_name must be a non-empty str")
        metadata = self.metadata(
            executable_name,
            replication_factor=replication_factor,
            device_iterations=device_iterations,
            num_ipus=num_ipus,
            ipu_version=ipu_version,
            engine_options=engine_options,
            device_options=device_options,
        )
        payload = encode_program(self.graph_program())
        with Writer(path) as writer:
            writer.write_metadata(metadata)
            with writer.create_executable(executable_name, compress=compress) as blob:
                blob.write(payload)
            for name, array in self._weights.items():
                writer.write_tensor(name, array)
        return metadata


def _option(option: Option | tuple[str, str]) -> Option:
    if isinstance(option, Option):
        return option
    name, value = option
    return Option(str(name), str(value))
