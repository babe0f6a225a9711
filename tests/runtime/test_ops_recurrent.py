"""RNN, GRU and LSTM against onnx's ReferenceEvaluator (skipped without onnx), and
``sequence_lens`` against running each sample on its own."""

from __future__ import annotations

import numpy as np
import pytest

from popef.errors import ExecutionError

from .op_oracle import OpCase, check_case, rand, run_case

SEQ, BATCH, SIZE, HIDDEN = 4, 3, 5, 6
X = rand(0, (SEQ, BATCH, SIZE))


def weights(op: str, dirs: int, seed: int) -> list[np.ndarray]:
    g = {"RNN": 1, "GRU": 3, "LSTM": 4}[op]
    return [
        rand(seed, (dirs, g * HIDDEN, SIZE), low=-0.5, high=0.5),
        rand(seed + 1, (dirs, g * HIDDEN, HIDDEN), low=-0.5, high=0.5),
        rand(seed + 2, (dirs, 2 * g * HIDDEN), low=-0.5, high=0.5),
    ]


TOL = {"rtol": 1e-5, "atol": 1e-6, "opset": 22}
CASES = [
    OpCase(
        f"{op}_{direction}",
        op,
        {"hidden_size": HIDDEN, "direction": direction},
        [X, *weights(op, 2 if direction == "bidirectional" else 1, 1)],
        outputs=3 if op == "LSTM" else 2,
        **TOL,
    )
    for op in ("RNN", "GRU", "LSTM")
    for direction in ("forward", "reverse", "bidirectional")
] + [
    OpCase(
        "GRU_linear_before_reset_layout1_initial",
        "GRU",
        {"hidden_size": HIDDEN, "linear_before_reset": 1, "layout": 1},
        [X.transpose(1, 0, 2), *weights("GRU", 1, 5), None, rand(9, (BATCH, 1, HIDDEN))],
        outputs=2,
        **TOL,
    ),
    OpCase(
        "LSTM_peepholes_initial_states",
        "LSTM",
        {"hidden_size": HIDDEN},
        [
            X,
            *weights("LSTM", 1, 7),
            None,
            rand(10, (1, BATCH, HIDDEN)),
            rand(11, (1, BATCH, HIDDEN)),
            rand(12, (1, 3 * HIDDEN)),
        ],
        outputs=3,
        **TOL,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_op_matches_reference(case: OpCase) -> None:
    check_case(case)


@pytest.mark.parametrize("op", ["RNN", "GRU", "LSTM"])
@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
def test_sequence_lens_runs_each_sample_over_its_own_steps(op: str, direction: str) -> None:
    dirs = 2 if direction == "bidirectional" else 1
    w = weights(op, dirs, 20)
    lens = np.array([4, 1, 2], np.int32)
    attrs = {"hidden_size": HIDDEN, "direction": direction}
    outputs = 3 if op == "LSTM" else 2
    y, *last = run_case(op, attrs, [X, *w, lens], outputs=outputs)
    for b, n in enumerate(lens):
        alone_y, *alone_last = run_case(op, attrs, [X[:n, b : b + 1], *w], outputs=outputs)
        np.testing.assert_allclose(y[:n, :, b : b + 1], alone_y, rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(y[n:, :, b], 0)
        for state, alone in zip(last, alone_last):
            np.testing.assert_allclose(state[:, b : b + 1], alone, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    "op, attrs, inputs, message",
    [
        ("RNN", {"direction": "sideways"}, [X, *weights("RNN", 1, 0)], "attribute 'direction'"),
        ("RNN", {}, [X, *weights("RNN", 2, 0)], r"input 1 \(W\) must be \[1, 6, 5\]"),
        (
            "GRU",
            {},
            [X, *weights("GRU", 1, 0), np.array([1, 2, 3], np.int64)],
            "unsupported dtype int64",
        ),
        (
            "GRU",
            {},
            [X, *weights("GRU", 1, 0), np.array([5, 1, 1], np.int32)],
            "sequence_lens must be 0 to 4",
        ),
        ("LSTM", {"input_forget": 1}, [X, *weights("LSTM", 1, 0)], "input_forget=1"),
        (
            "LSTM",
            {"activations": ["Relu"]},
            [X, *weights("LSTM", 1, 0)],
            r"attribute 'activations' must name 3 functions \(3 per direction\), got 1",
        ),
    ],
)
def test_bad_input_is_a_clear_error(op, attrs, inputs, message) -> None:
    with pytest.raises(ExecutionError, match=message):
        run_case(op, attrs, inputs)


def test_clip_bounds_the_gate_inputs() -> None:
    # onnx's reference ignores clip: check against the formula, one RNN step
    w, r, b = weights("RNN", 1, 30)
    [y, h] = run_case("RNN", {"hidden_size": HIDDEN, "clip": 0.1}, [X[:1], w, r, b], outputs=2)
    pre = X[0] @ w[0].T + b[0, :HIDDEN] + b[0, HIDDEN:]
    np.testing.assert_allclose(h[0], np.tanh(np.clip(pre, -0.1, 0.1)), rtol=1e-6)
