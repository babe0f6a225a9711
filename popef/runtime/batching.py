"""Whether the steps of a request can run as one batch (docs/runtime.md, "Batch folding").

A request of ``n`` steps (device iterations, and replicas) is ``n`` independent runs of the main
programs. When the main programs are *batch-polymorphic* — every tensor computed from the
caller's inputs keeps the samples of one step in its own rows along the leading axis — the
``cpu`` executor stacks the ``n`` steps along that axis and runs the main programs once, which
is much faster than ``n`` small runs. :func:`fold_blocker` decides, conservatively:

1. every user input and output has a leading dimension of at least 1;
2. shape inference with every input's leading dimension multiplied by ``K`` gives, for every
   tensor computed from the inputs, the same shape with its leading dimension multiplied by
   ``K`` (so the leading axis stays the batch axis all the way through);
3. every node reading a batched tensor uses an op known to treat the rows of the leading axis
   independently, with attributes and inputs that keep it so (``ROW_RULES``); an op without a
   rule is assumed to mix rows.

Reshapes that keep the leading dimension a multiple of ``K`` keep each step's rows together
(row-major order), so they fold too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..errors import ExecutionError
from .loaded import BoundNode, LoadedModel
from .ops import Op, TensorSpec
from .program import DeviceToHost, HostToDevice

__all__ = ["fold_blocker", "ROW_RULES"]

K = 3  # the factor of the scaled shape inference

Rule = Callable[[Op, Sequence[bool], Sequence["TensorSpec | None"]], bool]


def _any(op: Op, batched: Sequence[bool], specs) -> bool:
    return True


def _first_only(op: Op, batched: Sequence[bool], specs) -> bool:
    return not any(batched[1:])


def _axis_not_leading(op: Op, batched: Sequence[bool], specs) -> bool:
    axis = op.attrs.get("axis")
    rank = specs[0].rank if specs and specs[0] is not None else 0
    if axis is None or rank == 0:
        return False
    return axis % rank != 0 if -rank <= axis < rank else False


def _gemm(op: Op, batched: Sequence[bool], specs) -> bool:
    return _first_only(op, batched, specs) and not op.attrs.get("transA")


def _matmul(op: Op, batched: Sequence[bool], specs) -> bool:
    a, b = specs[0], specs[1]
    return (not batched[0] or a.rank >= 2) and (not batched[1] or b.rank >= 3)


def _flatten(op: Op, batched: Sequence[bool], specs) -> bool:
    axis = op.attrs.get("axis", 1)
    rank = specs[0].rank
    if axis is None or not -rank <= axis <= rank:
        return False
    return (axis + rank if axis < 0 else axis) >= 1


def _transpose(op: Op, batched: Sequence[bool], specs) -> bool:
    perm = op.attrs.get("perm")
    rank = specs[0].rank
    if perm is None:
        return rank == 1
    return len(perm) > 0 and perm[0] == 0


def _reshape(op: Op, batched: Sequence[bool], specs) -> bool:
    return not batched[1] if len(batched) > 1 else True


def _max_pool(op: Op, batched: Sequence[bool], specs) -> bool:
    # Indices are flat positions over the whole (N, C, *spatial) input: in a folded batch
    # step k's would be offset by the rows of the steps before it
    return _first_only(op, batched, specs) and op.output_count == 1


def _op_says(op: Op, batched: Sequence[bool], specs) -> bool:
    # ops whose rule depends on resolved attributes or constant inputs answer it themselves
    return bool(op.keeps_rows(batched, specs))  # type: ignore[attr-defined]


#: ops that keep rows independent whatever their inputs (elementwise, broadcasting)
_ELEMENTWISE = (
    "Reciprocal",
    "Ceil",
    "Floor",
    "Round",
    "Sign",
    "Sin",
    "Cos",
    "Tan",
    "Asin",
    "Acos",
    "Atan",
    "Sinh",
    "Cosh",
    "Asinh",
    "Acosh",
    "Atanh",
    "Mod",
    "Max",
    "Min",
    "Sum",
    "Mean",
    "Equal",
    "Less",
    "LessOrEqual",
    "Greater",
    "GreaterOrEqual",
    "And",
    "Or",
    "Xor",
    "Not",
    "BitShift",
    "BitwiseAnd",
    "BitwiseOr",
    "BitwiseXor",
    "BitwiseNot",
    "IsNaN",
    "IsInf",
    "Where",
    "CastLike",
    "Selu",
    "Celu",
    "Softsign",
    "HardSwish",
    "Swish",
    "Mish",
    "PRelu",
    "ThresholdedRelu",
    "Shrink",
    "BitCast",
    "SwiGLU",
    "Relu",
    "LeakyRelu",
    "Sigmoid",
    "Tanh",
    "Gelu",
    "Clip",
    "Identity",
    "Dropout",
    "Cast",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Exp",
    "Log",
    "Sqrt",
    "Neg",
    "Abs",
    "Pow",
    "Erf",
    "Elu",
    "HardSigmoid",
    "Softplus",
)

#: ops whose rule depends on resolved attributes or constant inputs: ``op.keeps_rows``
_OPS_SAY = (
    "ReduceMax",
    "ReduceMin",
    "ReduceSum",
    "ReduceMean",
    "ReduceProd",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceSumSquare",
    "CumSum",
    "CumProd",
    "Constant",
    "Shape",
    "Size",
    "ConstantOfShape",
    "Range",
    "EyeLike",
    "NonZero",
    "Unique",
    "Compress",
    "Squeeze",
    "Unsqueeze",
    "Expand",
    "Tile",
    "Split",
    "Slice",
    "DepthToSpace",
    "SpaceToDepth",
    "Gather",
    "GatherElements",
    "GatherND",
    "ScatterElements",
    "ScatterND",
    "TopK",
    "OneHot",
    "Trilu",
    "ReverseSequence",
    "Resize",
    "Upsample",
    "Einsum",
    "Det",
    "LayerNormalization",
    "RMSNormalization",
    "InstanceNormalization",
    "GroupNormalization",
    "LpNormalization",
    "MeanVarianceNormalization",
    "QuantizeLinear",
    "DequantizeLinear",
    "NegativeLogLikelihoodLoss",
    "SoftmaxCrossEntropyLoss",
    "Attention",
    "RotaryEmbedding",
    "RNN",
    "GRU",
    "LSTM",
    "GridSample",
    "AffineGrid",
    "MatMulInteger",
    "QLinearMatMul",
    "ConvInteger",
    "QLinearConv",
    "TfIdfVectorizer",
    "Scatter",
    "DFT",
    "STFT",
    "HannWindow",
    "HammingWindow",
    "BlackmanWindow",
    "MelWeightMatrix",
    "LinearAttention",
    "CausalConvWithState",
    "TensorScatter",
    "Col2Im",
    "CenterCropPad",
    "ai.onnx.ml.Binarizer",
    "ai.onnx.ml.ArrayFeatureExtractor",
    "DeformConv",
    "RoiAlign",
)

#: ops that keep rows when only their first input is batched
_FIRST_ONLY = (
    "Conv",
    "ConvTranspose",
    "AveragePool",
    "LpPool",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "GlobalLpPool",
    "BatchNormalization",
    "LRN",
    "Pad",
)

#: ops that keep rows unless their ``axis`` is the leading one
_AXIS_NOT_LEADING = (
    "Concat",
    "Softmax",
    "LogSoftmax",
    "ArgMax",
    "ArgMin",
    "Hardmax",
)

#: op type -> rule: does the node keep rows of the leading axis independent?
ROW_RULES: dict[str, Rule] = {
    **{name: _any for name in _ELEMENTWISE},
    **{name: _op_says for name in _OPS_SAY},
    **{name: _first_only for name in _FIRST_ONLY},
    **{name: _axis_not_leading for name in _AXIS_NOT_LEADING},
    "Gemm": _gemm,
    "MatMul": _matmul,
    "Flatten": _flatten,
    "Transpose": _transpose,
    "Reshape": _reshape,
    "MaxPool": _max_pool,
}


def fold_blocker(model: LoadedModel) -> str | None:
    """None when the main programs fold a request's steps into one batch; else the reason."""
    user_inputs = {s.handle for s in model.inputs}
    for stream in (*model.inputs, *model.outputs):
        if not stream.spec.shape or stream.spec.shape[0] < 1:
            return f"'{stream.name}' has no leading batch dimension"
    scaled: dict[str, TensorSpec] = {}  # batched tensor -> its spec with K times the rows
    for program in model.main:
        for step in program.steps:
            if isinstance(step, HostToDevice):
                if step.handle in user_inputs:
                    base = model.specs[step.tensor]
                    scaled[step.tensor] = TensorSpec(
                        (base.shape[0] * K, *base.shape[1:]), base.dtype
                    )
            elif isinstance(step, DeviceToHost):
                if step.tensor not in scaled and model.streams[step.handle] in model.outputs:
                    return (
                        f"output '{model.streams[step.handle].name}' does not depend on the inputs"
                    )
            else:
                reason = _node_blocker(step, scaled, model)
                if reason:
                    return reason
    return None


def _node_blocker(step: BoundNode, scaled: dict[str, TensorSpec], model: LoadedModel) -> str | None:
    batched = [bool(name) and name in scaled for name in step.inputs]
    if not any(batched):
        return None
    label = step.describe()
    rule = ROW_RULES.get(step.node.op_type)
    if rule is None:
        return f"{label}: no batch rule for {step.node.op_type}"
    try:
        if not rule(step.op, batched, step.input_specs):
            return f"{label} mixes the rows of the leading axis"
        specs = [
            scaled[name] if is_batched else spec
            for name, is_batched, spec in zip(step.inputs, batched, step.input_specs)
        ]
        outputs = step.op.infer(specs)
    except (ExecutionError, TypeError, ValueError, IndexError, KeyError) as exc:
        return f"{label} does not take {K}x the rows: {exc}"
    for name, base, out in zip(step.outputs, step.output_specs, outputs):
        if not name:
            continue
        want = (base.shape[0] * K, *base.shape[1:]) if base.shape else None
        if not base.shape or not base.shape[0] or out.shape != want or out.dtype != base.dtype:
            return f"{label}: output '{name}' is {base} for one step but {out} for {K} steps"
        scaled[name] = out
    return None
