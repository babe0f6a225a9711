"""ONNX's operator sets over time, as far as the importer must know them.

ONNX moved attributes into inputs over the opsets (Clip's ``min``/``max`` at 11, Slice's
``starts``... at 10, Squeeze's ``axes`` at 13, Reduce*'s ``axes`` at 13 or 18, ...). The
runtime's ops take the newer form as inputs and, for most of them, the older one as the
attribute too. A node is handed to the op in the form the op declares: an attribute the op does
not declare but takes as an input becomes a constant input (:data:`ATTRIBUTE_INPUTS`).
Attributes that later opsets dropped and that never change the result of inference are removed
(:data:`OBSOLETE_ATTRIBUTES`).
"""

from __future__ import annotations

__all__ = [
    "ATTRIBUTE_INPUTS",
    "CONTROL_FLOW",
    "MIN_OPSET",
    "NON_DETERMINISTIC",
    "OBSOLETE_ATTRIBUTES",
    "OLDEST_OPSET",
]

#: the opset whose op definitions the importer takes; a model of an older opset is imported
#: when every op it uses is defined as in this one (checked with ONNX's op schemas)
MIN_OPSET = 7
#: opset_import versions start at 1
OLDEST_OPSET = 1

#: op type -> {old attribute: (input index, how the constant is stored)} for attributes that
#: became inputs: "ints" (int64 vector), "float" (a scalar of the data input's dtype),
#: "int" (int64 scalar or vector of one), "floats" (float32 vector).
_REDUCE = {"axes": (1, "ints")}
ATTRIBUTE_INPUTS: dict[str, dict[str, tuple[int, str]]] = {
    "Clip": {"min": (1, "float"), "max": (2, "float")},
    "Slice": {"starts": (1, "ints"), "ends": (2, "ints"), "axes": (3, "ints")},
    "Squeeze": {"axes": (1, "ints")},
    "Unsqueeze": {"axes": (1, "ints")},
    "Split": {"split": (1, "ints")},
    "Pad": {"pads": (1, "ints"), "value": (2, "float")},
    "TopK": {"k": (1, "int")},
    "Dropout": {"ratio": (1, "float")},
    "Upsample": {"scales": (1, "floats")},
    **{
        op: _REDUCE
        for op in (
            "ReduceSum",
            "ReduceMean",
            "ReduceMax",
            "ReduceMin",
            "ReduceProd",
            "ReduceL1",
            "ReduceL2",
            "ReduceLogSum",
            "ReduceLogSumExp",
            "ReduceSumSquare",
        )
    },
}

#: (op type, attribute) pairs of early opsets that are dropped when the op does not declare them
#: (they describe training or legacy broadcasting that opset 7 made the default).
OBSOLETE_ATTRIBUTES = frozenset(
    {
        ("BatchNormalization", "spatial"),
        ("BatchNormalization", "is_test"),
        ("BatchNormalization", "consumed_inputs"),
        ("Dropout", "is_test"),
        ("Dropout", "seed"),
    }
)

#: ops whose result differs from run to run: never folded at import.
NON_DETERMINISTIC = frozenset(
    {
        "RandomNormal",
        "RandomUniform",
        "RandomNormalLike",
        "RandomUniformLike",
        "Multinomial",
        "Bernoulli",
    }
)

#: ops holding subgraphs: If with a condition known at import is inlined, the others refused.
CONTROL_FLOW = frozenset({"If", "Loop", "Scan"})
