"""Integer and quantised ops (MatMulInteger, QLinearMatMul, ConvInteger, QLinearConv,
DynamicQuantizeLinear), TfIdfVectorizer, Scatter and Compress with a constant condition, against
onnx's ReferenceEvaluator (skipped without onnx) and numpy formulas; their refusals; their batch
rules on both executors."""

from __future__ import annotations

import numpy as np
import pytest

from popef import DataType
from popef.errors import ExecutionError
from popef.runtime import GraphBuilder, ModelRunner
from popef.runtime.batching import fold_blocker
from popef.runtime.loader import load_model

from .helpers import model_of, save_bytes
from .op_oracle import OpCase, check_case, rand, run_case

U8, I8, F32, F16 = np.uint8, np.int8, np.float32, np.float16


def _q(seed, shape, dtype):
    info = np.iinfo(dtype)
    return rand(seed, shape, dtype, info.min, info.max + 1)


def _scatter_axis1(data, indices, updates):
    out = data.copy()
    for r in range(indices.shape[0]):
        for c in range(indices.shape[1]):
            out[r, indices[r, c]] = updates[r, c]
    return out


def _tfidf(mode, **extra):
    return {
        "mode": mode,
        "min_gram_length": 1,
        "max_gram_length": 2,
        "max_skip_count": 2,
        "ngram_counts": [0, 3],
        "ngram_indexes": [0, 1, 2, 3, 4],
        "pool_int64s": [2, 3, 5, 2, 3, 5, 7],
        **extra,
    }


TOKENS = np.array([[2, 3, 5, 2, 7, 3], [5, 5, 2, 1, 3, 3]], np.int64)

CASES = [
    OpCase(
        "matmulinteger_uint8",
        "MatMulInteger",
        {},
        [_q(0, (3, 4), U8), _q(1, (4, 5), U8), U8(12), U8(200)],
    ),
    OpCase(
        "matmulinteger_int8_per_row_column",
        "MatMulInteger",
        {},
        [_q(2, (3, 4), I8), _q(3, (4, 5), I8), _q(4, (3,), I8), _q(5, (5,), I8)],
        ref=lambda a, b, za, zb: [
            (
                (a.astype(np.int32) - za.astype(np.int32)[:, None])
                @ (b.astype(np.int32) - zb.astype(np.int32))
            )
        ],
    ),
    OpCase(
        "matmulinteger_batched_no_zero_points",
        "MatMulInteger",
        {},
        [_q(6, (2, 3, 4), U8), _q(7, (4, 2), I8)],
    ),
    OpCase(
        "qlinearmatmul_uint8",
        "QLinearMatMul",
        {},
        [
            _q(8, (2, 3), U8),
            F32(0.02),
            U8(113),
            _q(9, (3, 4), U8),
            F32(0.05),
            U8(114),
            F32(0.3),
            U8(118),
        ],
    ),
    OpCase(
        "qlinearmatmul_int8_float16_3d",
        "QLinearMatMul",
        {},
        [
            _q(10, (2, 2, 3), I8),
            F16(0.03),
            I8(-3),
            _q(11, (2, 3, 4), I8),
            F16(0.01),
            I8(5),
            F16(0.2),
            I8(-1),
        ],
    ),
    OpCase(
        "convinteger_padded",
        "ConvInteger",
        {"pads": [1, 1, 1, 1]},
        [_q(12, (1, 2, 4, 4), U8), _q(13, (3, 2, 3, 3), U8), U8(7), U8(9)],
    ),
    OpCase(
        "convinteger_strided_per_channel",
        "ConvInteger",
        {"strides": [2, 2]},
        [_q(14, (2, 2, 5, 5), I8), _q(15, (2, 2, 2, 2), I8), I8(1), np.array([1, -2], I8)],
    ),
    OpCase(
        "qlinearconv_bias_per_channel",
        "QLinearConv",
        {"pads": [1, 1, 1, 1]},
        [
            _q(16, (1, 2, 4, 4), U8),
            F32(0.01),
            U8(100),
            _q(17, (3, 2, 3, 3), U8),
            np.array([0.02, 0.03, 0.01], F32),
            np.array([120, 130, 125], U8),
            F32(0.2),
            U8(90),
            rand(18, (3,), np.int32, -500, 500),
        ],
    ),
    OpCase(
        "qlinearconv_int8",
        "QLinearConv",
        {"group": 2},
        [
            _q(19, (1, 4, 3, 3), I8),
            F32(0.05),
            I8(0),
            _q(20, (2, 2, 2, 2), I8),
            F32(0.04),
            I8(0),
            F32(0.5),
            I8(3),
        ],
    ),
    OpCase(
        "dynamicquantizelinear",
        "DynamicQuantizeLinear",
        {},
        [rand(21, (3, 4), low=-3, high=5)],
        outputs=3,
    ),
    OpCase(
        "dynamicquantizelinear_positive",
        "DynamicQuantizeLinear",
        {},
        [rand(22, (5,), low=1, high=5)],
        outputs=3,
    ),
    OpCase("tfidf_tf", "TfIdfVectorizer", _tfidf("TF"), [TOKENS]),
    OpCase(
        "tfidf_idf_weighted", "TfIdfVectorizer", _tfidf("IDF", weights=[0.5, 1, 2, 3, 4]), [TOKENS]
    ),
    OpCase(
        "tfidf_tfidf_1d",
        "TfIdfVectorizer",
        _tfidf("TFIDF", weights=[0.5, 1, 2, 3, 4]),
        [TOKENS[0].astype(np.int32)],
    ),
    OpCase(
        "scatter_axis1",
        "Scatter",
        {"axis": 1},
        [rand(23, (3, 4)), np.array([[3, 0], [1, 2], [0, 0]], np.int64), rand(24, (3, 2))],
        ref=lambda d, i, u: [_scatter_axis1(d, i, u)],
    ),
    OpCase(
        "compress_axis1",
        "Compress",
        {"axis": 1},
        [rand(25, (2, 4)), np.array([True, False, True], bool)],
        constants=(1,),
    ),
    OpCase(
        "compress_flat",
        "Compress",
        {},
        [rand(26, (2, 3)), np.array([False, True, True, False, True], bool)],
        constants=(1,),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_op_matches_reference(case: OpCase) -> None:
    check_case(case)


def test_tfidf_counts_skipped_bigrams_and_unigrams_once() -> None:
    attrs = _tfidf("TF")
    [y] = run_case("TfIdfVectorizer", attrs, [np.array([2, 9, 3, 2, 3, 2, 2], np.int64)])
    # unigrams 2, 3, 5 once per occurrence; bigram (2, 3) at skips 1 and 2: 2-3 at positions
    # (3, 4) skip 1 and (0, 2) skip 2; (5, 7) never
    assert y.tolist() == [4, 2, 0, 2, 0]


def test_dynamic_quantize_matches_formula() -> None:
    x = np.array([-1.0, 0.0, 1.5, 3.0], F32)
    y, scale, zero = run_case("DynamicQuantizeLinear", {}, [x], outputs=3)
    assert scale == np.float32(4.0) / np.float32(255) and zero == 64
    assert y.tolist() == [0, 64, 160, 255]


@pytest.mark.parametrize(
    "op_type, attrs, outputs, inputs, constants, message",
    [
        (
            "MatMulInteger",
            {},
            1,
            [np.zeros((2, 3), F32), np.zeros((3, 2), U8)],
            (),
            r"input 0 \(A\) has unsupported dtype float32",
        ),
        (
            "MatMulInteger",
            {},
            1,
            [np.zeros((2, 3), U8), np.zeros((4, 2), U8)],
            (),
            r"do not agree on the reduced dim \(3 and 4\)",
        ),
        (
            "MatMulInteger",
            {},
            1,
            [np.zeros((2, 3), U8), np.zeros((3, 2), U8), I8(0)],
            (),
            r"input 2 \(a_zero_point\) has dtype int8, expected uint8",
        ),
        (
            "QLinearMatMul",
            {},
            1,
            [
                np.zeros((2, 3), U8),
                np.ones(2, F32),
                U8(0),
                np.zeros((3, 2), U8),
                F32(1),
                U8(0),
                F32(1),
                U8(0),
            ],
            (),
            r"input 1 \(a_scale\) \[2\] must be one value",
        ),
        (
            "ConvInteger",
            {},
            1,
            [np.zeros((1, 2, 3, 3), U8), np.zeros((1, 3, 2, 2), U8)],
            (),
            r"has 2 channels but weight W",
        ),
        (
            "QLinearConv",
            {},
            1,
            [
                np.zeros((1, 1, 3, 3), U8),
                F32(1),
                U8(0),
                np.zeros((2, 1, 2, 2), U8),
                F32(1),
                U8(0),
                F32(1),
                U8(0),
                np.zeros(3, np.int32),
            ],
            (),
            r"input 8 \(B\) \[3\] must have shape \[2\]",
        ),
        (
            "DynamicQuantizeLinear",
            {},
            3,
            [np.zeros(3, np.float64)],
            (),
            r"input 0 \(x\) has unsupported dtype float64",
        ),
        (
            "TfIdfVectorizer",
            _tfidf("TF"),
            1,
            [np.zeros((2, 2, 2), np.int64)],
            (),
            r"input X must be \[C\] or \[N, C\]",
        ),
        ("TfIdfVectorizer", _tfidf("BM25"), 1, [TOKENS], (), r"attribute 'mode' must be one of"),
        (
            "TfIdfVectorizer",
            _tfidf("TF", ngram_counts=[0, 2]),
            1,
            [TOKENS],
            (),
            r"the pool's 2-grams span 5 ids, not a multiple of 2",
        ),
        (
            "TfIdfVectorizer",
            {k: v for k, v in _tfidf("TF").items() if k != "pool_int64s"},
            1,
            [TOKENS],
            (),
            r"'pool_strings' is not supported",
        ),
        (
            "Compress",
            {"axis": 0},
            1,
            [np.zeros((2, 3), F32), np.ones(2, bool)],
            (),
            r"input 1 \('condition'\) must be a constant",
        ),
        (
            "Compress",
            {"axis": 0},
            1,
            [np.zeros((2, 3), F32), np.ones(3, bool)],
            (1,),
            r"condition has 3 entries but the compressed axis 0 has 2",
        ),
        (
            "BatchNormalization",
            {},
            3,
            [np.zeros((1, 2, 2), F32)] + [np.ones(2, F32)] * 4,
            (),
            r"the outputs after Y \(running or saved mean and variance\) "
            r"exist only in training mode",
        ),
        (
            "Cast",
            {"to": 24, "round_mode": "up"},
            1,
            [np.zeros(2, F32)],
            (),
            r"casting to FLOAT8E8M0 \(to=24\) is not supported: PopEF has no such data type",
        ),
    ],
)
def test_refusals_name_the_reason(op_type, attrs, outputs, inputs, constants, message) -> None:
    with pytest.raises(ExecutionError, match=f"{op_type} node '[^']+': .*{message}"):
        run_case(op_type, attrs, inputs, constants, outputs)


def test_clip_of_a_scalar_keeps_an_array() -> None:
    [y] = run_case("Clip", {}, [np.array(5.0, F32), np.array(0.0, F32), np.array(2.0, F32)])
    assert y.shape == () and y == 2


def _w(g: GraphBuilder, name: str, value) -> str:
    return g.add_weight(name, np.asarray(value))


# (id, input dtype, build(g, x) -> output, folds?) on an input x of shape [2, 4, 6]
GRAPHS = [
    (
        "matmulinteger",
        U8,
        lambda g, x: g.add_node(
            "MatMulInteger", [x, _w(g, "b", _q(1, (6, 3), U8)), _w(g, "za", U8(3))]
        ),
        True,
    ),
    (
        "qlinearmatmul",
        I8,
        lambda g, x: g.add_node(
            "QLinearMatMul",
            [
                x,
                _w(g, "sa", F32(0.1)),
                _w(g, "za", I8(1)),
                _w(g, "b", _q(2, (6, 3), I8)),
                _w(g, "sb", F32(0.2)),
                _w(g, "zb", I8(0)),
                _w(g, "sy", F32(3)),
                _w(g, "zy", I8(-2)),
            ],
        ),
        True,
    ),
    (
        "convinteger",
        U8,
        lambda g, x: g.add_node(
            "ConvInteger",
            [
                g.add_node("Unsqueeze", [x, _w(g, "a", np.array([1]))]),
                _w(g, "w", _q(3, (2, 1, 2, 3), U8)),
            ],
        ),
        True,
    ),
    (
        "qlinearconv",
        U8,
        lambda g, x: g.add_node(
            "QLinearConv",
            [
                g.add_node("Unsqueeze", [x, _w(g, "a", np.array([1]))]),
                _w(g, "sx", F32(0.1)),
                _w(g, "zx", U8(100)),
                _w(g, "w", _q(4, (2, 1, 2, 3), U8)),
                _w(g, "sw", F32(0.01)),
                _w(g, "zw", U8(128)),
                _w(g, "sy", F32(0.5)),
                _w(g, "zy", U8(20)),
            ],
        ),
        True,
    ),
    (
        "tfidf",
        np.int64,
        lambda g, x: g.add_node(
            "TfIdfVectorizer",
            [g.add_node("Reshape", [x, _w(g, "s", np.array([0, 24]))])],
            **_tfidf("TF"),
        ),
        True,
    ),
    (
        "compress_inner",
        F32,
        lambda g, x: g.add_node("Compress", [x, _w(g, "c", np.array([True, False, True]))], axis=2),
        True,
    ),
    (
        "compress_axis0",
        F32,
        lambda g, x: g.add_node("Compress", [x, _w(g, "c", np.array([True, False]))], axis=0),
        False,
    ),
    (
        "dynamicquantizelinear_mixes_rows",
        F32,
        lambda g, x: g.add_node("DynamicQuantizeLinear", [x]),
        False,
    ),
]

_DATA_TYPES = {
    np.dtype(U8): DataType.U8,
    np.dtype(I8): DataType.S8,
    np.dtype(np.int64): DataType.S64,
    np.dtype(F32): DataType.F32,
}


@pytest.mark.parametrize(
    "dtype, build, folds", [(d, b, f) for _, d, b, f in GRAPHS], ids=[i for i, *_ in GRAPHS]
)
def test_batch_rule_and_executors_agree(dtype, build, folds) -> None:
    def graph() -> GraphBuilder:
        g = GraphBuilder()
        x = g.add_input("x", _DATA_TYPES[np.dtype(dtype)], (2, 4, 6))
        g.add_output(build(g, x), "y")
        return g

    reason = fold_blocker(load_model(model_of(save_bytes(graph()))))
    assert (reason is None) == folds, reason
    model = model_of(save_bytes(graph(), replication_factor=2, device_iterations=2))
    x = (
        _q(9, (6, 2, 4, 6), dtype)
        if np.dtype(dtype).kind in "iu" and dtype != np.int64
        else rand(9, (6, 2, 4, 6), dtype, 0, 8)
    )
    results = []
    for name, options in (("cpu", {}), ("cpu", {"fold": False}), ("ipu-model", {})):
        with ModelRunner(model, name, **options) as runner:
            results.append(runner.execute({"x": x})["y"])
    with ModelRunner(model_of(save_bytes(graph())), "ipu-model") as runner:
        alone = np.stack([runner.execute({"x": sample})["y"] for sample in x])
    for got in results:
        assert got.dtype == alone.dtype
        np.testing.assert_array_equal(got, alone)
