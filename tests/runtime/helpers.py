"""Helpers of the runtime tests: small models, hand-written files and random graphs."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

import popef
from popef import Anchor, DataType, Metadata, ProgramFlow, TensorInfo, TensorType
from popef.errors import ExecutionError
from popef.runtime import GraphBuilder
from popef.runtime.program import GraphProgram, encode_program


def small_mlp(
    seed: int = 0, batch: int = 2, features: int = 5, hidden: int = 7, classes: int = 3
) -> tuple[GraphBuilder, dict[str, np.ndarray]]:
    """x -> Gemm -> Relu -> Gemm -> Softmax, and its parameters."""
    rng = np.random.default_rng(seed)
    params = {
        "w1": rng.standard_normal((features, hidden)).astype(np.float32),
        "b1": rng.standard_normal(hidden).astype(np.float32),
        "w2": rng.standard_normal((classes, hidden)).astype(np.float32),
        "b2": rng.standard_normal(classes).astype(np.float32),
    }
    g = GraphBuilder()
    x = g.add_input("x", DataType.F32, (batch, features))
    h = g.add_node("Gemm", [x, g.add_weight("w1", params["w1"]), g.add_weight("b1", params["b1"])])
    h = g.add_node("Relu", [h])
    h = g.add_node(
        "Gemm", [h, g.add_weight("w2", params["w2"]), g.add_weight("b2", params["b2"])], transB=1
    )
    g.add_output(g.add_node("Softmax", [h], axis=-1), "probs")
    return g, params


def mlp_reference(params: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """The same network written independently, in float64."""
    x = x.astype(np.float64)
    h = np.maximum(x @ params["w1"].astype(np.float64) + params["b1"], 0)
    z = h @ params["w2"].T.astype(np.float64) + params["b2"]
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def conv_reference(x: np.ndarray, w: np.ndarray, b: np.ndarray, pad: int = 0) -> np.ndarray:
    """Direct-loop NCHW cross-correlation, stride 1, in float64 (tiny sizes only)."""
    x = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    n, c, h, wd = x.shape
    m, _, kh, kw = w.shape
    out = np.zeros((n, m, h - kh + 1, wd - kw + 1))
    for i in range(out.shape[2]):
        for j in range(out.shape[3]):
            patch = x[:, :, i : i + kh, j : j + kw]
            out[:, :, i, j] = np.einsum("nckl,mckl->nm", patch, w.astype(np.float64))
    return out + b.astype(np.float64)[None, :, None, None]


def save_bytes(builder: GraphBuilder, **kwargs) -> bytes:
    stream = io.BytesIO()
    builder.save(stream, **kwargs)
    return stream.getvalue()


def model_of(data: bytes) -> popef.Model:
    reader = popef.Reader()
    reader.parse_bytes(data)
    [model] = reader.models()
    return model


def write_model(
    target,
    program: GraphProgram | bytes,
    anchors: Sequence[Anchor],
    tensors: dict[str, np.ndarray] | None = None,
    *,
    name: str = "m",
    load: Sequence[int] = (0,),
    main: Sequence[int] = (5,),
    save: Sequence[int] = (),
    replication_factor: int = 1,
    device_iterations: int = 1,
) -> None:
    """A model file written by hand: any program (or raw executable bytes) and anchors."""
    payload = program if isinstance(program, bytes) else encode_program(program)
    metadata = Metadata(
        executable=name,
        anchors=tuple(anchors),
        program_flow=ProgramFlow(tuple(load), tuple(main), tuple(save)),
        programs_map={i: popef.POPART_PROGRAM_NAMES.get(i, f"p{i}") for i in (*load, *main, *save)},
        replication_factor=replication_factor,
        device_iterations=device_iterations,
    )
    with popef.Writer(target) as writer:
        writer.write_metadata(metadata)
        with writer.create_executable(name) as blob:
            blob.write(payload)
        for key, array in (tensors or {}).items():
            writer.write_tensor(key, array)


def anchor(
    name: str,
    shape: Sequence[int],
    kind: TensorType,
    programs: Sequence[int] = (5,),
    handle: str | None = None,
    dtype: DataType = DataType.F32,
    per_replica: bool = False,
) -> Anchor:
    if handle is None:
        handle = ("h2d_" if kind is TensorType.INPUT else "anchor_d2h_") + name
    return Anchor(name, handle, TensorInfo(dtype, tuple(shape)), tuple(programs), per_replica, kind)


# -- random graphs ---------------------------------------------------------------------------


def str_choice(rng: np.random.Generator, options: Sequence[str]) -> str:
    return str(options[int(rng.integers(len(options)))])


class RandomGraph:
    """A random, valid graph built by trying random ops on the tensors defined so far."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.builder = GraphBuilder()
        self.image: list[str] = []  # 4-d tensors
        self.flat: list[str] = []  # 2-d tensors
        self.weights = 0

    def weight(self, shape, scale=0.5) -> str:
        self.weights += 1
        data = (self.rng.standard_normal(shape) * scale).astype(np.float32)
        return self.builder.add_weight(f"w{self.weights}", data)

    def build(self, steps: int = 6) -> GraphBuilder:
        g, rng = self.builder, self.rng
        batch = int(rng.integers(1, 3))
        if rng.random() < 0.7:
            c, h = int(rng.integers(1, 4)), int(rng.integers(5, 9))
            self.image.append(g.add_input("x", DataType.F32, (batch, c, h, h)))
        else:
            self.flat.append(g.add_input("x", DataType.F32, (batch, int(rng.integers(2, 7)))))
        if rng.random() < 0.4:
            self.flat.append(g.add_input("z", DataType.F32, (batch, int(rng.integers(2, 5)))))
        done = 0
        for _ in range(steps * 8):
            if done >= steps:
                break
            try:
                if self.try_op():
                    done += 1
            except ExecutionError:
                continue
        outputs = self.flat[-2:] if self.flat else []
        if not outputs or rng.random() < 0.5:
            if self.image:
                outputs = [self.image[-1], *outputs]
        for i, tensor in enumerate(outputs):
            g.add_output(tensor, f"out{i}")
        return g

    def try_op(self) -> bool:
        g, rng = self.builder, self.rng
        spec = g.spec
        if self.image and (not self.flat or rng.random() < 0.6):
            x = self.image[int(rng.integers(len(self.image)))]
            n, c, h, w = spec(x).shape
            kind = str_choice(
                rng,
                [
                    "Conv",
                    "MaxPool",
                    "AveragePool",
                    "act",
                    "Add",
                    "Mul",
                    "BatchNormalization",
                    "Concat",
                    "GlobalAveragePool",
                    "Flatten",
                    "Clip",
                    "Transpose",
                ],
            )
            if kind == "Conv":
                k = int(rng.integers(1, 4))
                group = int(rng.choice([1, c])) if c > 1 else 1
                m = group * int(rng.integers(1, 3))
                pad = int(rng.integers(0, 2))
                stride = int(rng.integers(1, 3))
                y = g.add_node(
                    "Conv",
                    [x, self.weight((m, c // group, k, k)), self.weight((m,))],
                    kernel_shape=[k, k],
                    pads=[pad] * 4,
                    strides=[stride] * 2,
                    group=group,
                )
            elif kind in ("MaxPool", "AveragePool"):
                k = int(rng.integers(2, 4))
                y = g.add_node(
                    kind, [x], kernel_shape=[k, k], strides=[int(rng.integers(1, 3))] * 2
                )
            elif kind == "act":
                op = str(rng.choice(["Relu", "Sigmoid", "Tanh", "LeakyRelu", "Gelu"]))
                y = g.add_node(op, [x])
            elif kind in ("Add", "Mul"):
                other = self.weight((1, c, 1, 1)) if rng.random() < 0.5 else x
                y = g.add_node(kind, [x, other])
            elif kind == "BatchNormalization":
                scale = self.weight((c,))
                y = g.add_node(
                    kind,
                    [
                        x,
                        scale,
                        self.weight((c,)),
                        self.weight((c,)),
                        g.add_weight(
                            f"var{self.weights}", rng.uniform(0.5, 2, c).astype(np.float32)
                        ),
                    ],
                )
            elif kind == "Concat":
                y = g.add_node("Concat", [x, x], axis=1)
            elif kind == "Clip":
                y = g.add_node(
                    "Clip",
                    [
                        x,
                        g.add_weight(f"lo{self.weights}", np.float32(-0.5)),
                        g.add_weight(f"hi{self.weights}", np.float32(0.7)),
                    ],
                )
                self.weights += 1
            elif kind == "Transpose":
                y = g.add_node("Transpose", [x], perm=[0, 1, 3, 2])
            elif kind == "GlobalAveragePool":
                y = g.add_node(kind, [x])
            else:
                y = g.add_node("Flatten", [x], axis=1)
                self.flat.append(y)
                return True
            if len(spec(y).shape) == 4 and min(spec(y).shape[2:]) >= 1:
                self.image.append(y)
            else:
                self.flat.append(y)
            return True
        if not self.flat:
            return False
        x = self.flat[int(rng.integers(len(self.flat)))]
        n, f = spec(x).shape
        kind = str_choice(
            rng,
            [
                "Gemm",
                "MatMul",
                "Softmax",
                "LogSoftmax",
                "act",
                "Add",
                "Reshape",
                "Concat",
                "Sub",
                "Div",
            ],
        )
        if kind == "Gemm":
            out = int(rng.integers(1, 6))
            if rng.random() < 0.5:
                y = g.add_node(
                    "Gemm",
                    [x, self.weight((out, f)), self.weight((out,))],
                    transB=1,
                    alpha=float(rng.uniform(0.5, 1.5)),
                )
            else:
                y = g.add_node("Gemm", [x, self.weight((f, out)), None], beta=0.5)
        elif kind == "MatMul":
            y = g.add_node("MatMul", [x, self.weight((f, int(rng.integers(1, 6))))])
        elif kind in ("Softmax", "LogSoftmax"):
            y = g.add_node(kind, [x], axis=-1)
        elif kind == "act":
            y = g.add_node(str(rng.choice(["Relu", "Tanh", "Sigmoid"])), [x])
        elif kind in ("Add", "Sub"):
            others = [t for t in self.flat if spec(t).shape == (n, f)]
            y = g.add_node(kind, [x, others[int(rng.integers(len(others)))]])
        elif kind == "Div":
            y = g.add_node(
                "Div",
                [x, g.add_weight(f"d{self.weights}", rng.uniform(1, 2, f).astype(np.float32))],
            )
            self.weights += 1
        elif kind == "Reshape":
            if f % 2:
                return False
            shape = g.add_weight(f"shape{self.weights}", np.array([-1, f // 2], np.int64))
            self.weights += 1
            y = g.add_node("Reshape", [x, shape])
            z = g.add_weight(f"shape{self.weights}", np.array([-1, f], np.int64))
            self.weights += 1
            y = g.add_node("Reshape", [y, z])
        else:
            others = [t for t in self.flat if spec(t).shape[0] == n]
            y = g.add_node("Concat", [x, others[int(rng.integers(len(others)))]], axis=1)
        self.flat.append(y)
        return True


def to_onnx(builder: GraphBuilder, opset: int = 20):
    """The builder's graph as an ONNX model (for onnxruntime as an oracle); outputs are
    renamed to the output anchors' names with Identity nodes."""
    import onnx
    from onnx import helper, numpy_helper

    main = builder.graph_program().get_program(5)
    nodes = [
        helper.make_node(
            n.op_type, list(n.inputs), list(n.outputs), name=n.name, **n.attribute_values()
        )
        for n in main.nodes()
    ]
    nodes += [
        helper.make_node("Identity", [tensor], [name]) for name, tensor in builder.outputs.items()
    ]
    elem = {DataType.F32: onnx.TensorProto.FLOAT}
    inputs = [
        helper.make_tensor_value_info(name, elem[info.dtype], list(info.shape))
        for name, info in builder.inputs.items()
    ]
    outputs = [
        helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
        for name in builder.outputs
    ]
    initializers = [
        numpy_helper.from_array(np.asarray(a), name) for name, a in builder.weights.items()
    ]
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10
    return model


def random_model(seed: int) -> popef.Model:
    """The model of ``RandomGraph(seed)``, with 1, 2 or 3 replicas and 1 or 3 device
    iterations picked by the seed: the executors' agreement tests run it."""
    rf = (1, 2, 1, 3)[seed % 4]
    iterations = (1, 3)[(seed // 4) % 2]
    builder = RandomGraph(seed).build()
    return model_of(save_bytes(builder, replication_factor=rf, device_iterations=iterations))


def random_inputs(seed: int, descs) -> dict[str, np.ndarray]:
    """Standard-normal inputs of 1 to 4 steps (picked by the seed) for the input ``descs``."""
    rng = np.random.default_rng(seed)
    steps = 1 + seed % 4
    return {
        d.name: rng.standard_normal((steps * d.shape[0], *d.shape[1:])).astype(np.float32)
        for d in descs
    }
