"""DFT, STFT, the windows and MelWeightMatrix against onnx's ReferenceEvaluator (skipped without
onnx), a forward/inverse round trip, and bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from popef.errors import ExecutionError
from popef.runtime.ops import create_op

from .op_oracle import OpCase, check_case, i64, rand, run_case

REAL = rand(0, (2, 8, 5, 1))
CPLX = rand(1, (2, 8, 5, 2))
SIGNAL = rand(2, (2, 40, 1))
TOL = {"rtol": 1e-4, "atol": 1e-4, "opset": 20}
WIN = {"opset": 17, "constants": (0,), "rtol": 1e-5, "atol": 1e-6}


def _i32(v: int) -> np.ndarray:
    return np.array(v, np.int32)


CASES = [
    OpCase("dft_real_axis1", "DFT", {}, [REAL, None, np.array(1, np.int64)], constants=(2,), **TOL),
    OpCase(
        "dft_complex_default_axis_neg",
        "DFT",
        {},
        [CPLX, None, np.array(-2, np.int64)],
        constants=(2,),
        **TOL,
    ),
    OpCase(
        "dft_padded_length",
        "DFT",
        {},
        [REAL, np.array(12, np.int64), np.array(1, np.int64)],
        constants=(1, 2),
        **TOL,
    ),
    OpCase(
        "dft_onesided",
        "DFT",
        {"onesided": 1},
        [REAL, None, np.array(1, np.int64)],
        constants=(2,),
        **TOL,
    ),
    OpCase(
        "dft_inverse",
        "DFT",
        {"inverse": 1},
        [CPLX, None, np.array(2, np.int64)],
        constants=(2,),
        **TOL,
    ),
    OpCase(
        "dft_irfft",
        "DFT",
        {"inverse": 1, "onesided": 1},
        [CPLX, None, np.array(1, np.int64)],
        constants=(2,),
        **TOL,
    ),
    OpCase("dft_opset19_attribute", "DFT", {"axis": 2}, [REAL], **{**TOL, "opset": 19}),
    OpCase(
        "stft_frame_length",
        "STFT",
        {},
        [SIGNAL, i64(6)[0], None, i64(16)[0]],
        constants=(1, 3),
        opset=17,
        rtol=1e-4,
        atol=1e-4,
    ),
    OpCase(
        "stft_window_full",
        "STFT",
        {"onesided": 0},
        [SIGNAL, np.array(5, np.int64), rand(3, (10,))],
        constants=(1,),
        opset=17,
        rtol=1e-4,
        atol=1e-4,
    ),
    OpCase("hann_periodic", "HannWindow", {}, [_i32(10)], **WIN),
    OpCase(
        "hann_symmetric_f64",
        "HannWindow",
        {"periodic": 0, "output_datatype": 11},
        [np.array(7, np.int64)],
        **WIN,
    ),
    OpCase("hamming", "HammingWindow", {}, [_i32(9)], **WIN),
    OpCase("blackman_symmetric", "BlackmanWindow", {"periodic": 0}, [_i32(12)], **WIN),
    OpCase(
        "mel",
        "MelWeightMatrix",
        {},
        [_i32(8), _i32(16), _i32(8192), np.float32(0), np.float32(4096)],
        constants=(0, 1, 2, 3, 4),
        opset=17,
    ),
    OpCase(
        "mel_f64_edges",
        "MelWeightMatrix",
        {"output_datatype": 11},
        [_i32(5), _i32(64), _i32(16000), np.float64(100), np.float64(7000)],
        constants=(0, 1, 2, 3, 4),
        opset=17,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_op_matches_reference(case: OpCase) -> None:
    check_case(case)


@settings(max_examples=40, deadline=None)
@given(
    length=st.integers(1, 12),
    rows=st.integers(1, 3),
    seed=st.integers(0, 2**16),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_inverse_undoes_forward(length: int, rows: int, seed: int, dtype: type) -> None:
    x = rand(seed, (rows, length, 2), dtype)
    axis = np.array(1, np.int64)
    [y] = run_case("DFT", {}, [x, None, axis], (2,))
    [back] = run_case("DFT", {"inverse": 1}, [y, None, axis], (2,))
    np.testing.assert_allclose(back, x, rtol=1e-4, atol=1e-4)
    real = x[..., :1]
    [half] = run_case("DFT", {"onesided": 1}, [real, None, axis], (2,))
    [again] = run_case(
        "DFT", {"inverse": 1, "onesided": 1}, [half, np.array(length, np.int64), axis], (1, 2)
    )
    np.testing.assert_allclose(again, real, rtol=1e-4, atol=1e-4)


def test_windows_of_one_and_zero_samples() -> None:
    [one] = run_case("HannWindow", {"periodic": 0}, [_i32(1)], (0,))
    assert one.tolist() == [0.0]  # a symmetric window of one sample: 0.5 - 0.5
    [none] = run_case("BlackmanWindow", {}, [_i32(0)], (0,))
    assert none.shape == (0,) and none.dtype == np.float32


@pytest.mark.parametrize(
    "op_type, attrs, inputs, constants, message",
    [
        ("DFT", {}, [rand(0, (2, 8, 3))], (), "end with an axis of 1 (real) or 2"),
        ("DFT", {}, [REAL], (), "needs an explicit 'axis'"),
        ("DFT", {}, [REAL, None, np.array(3, np.int64)], (2,), "the (real, imaginary) axis"),
        ("DFT", {"axis": 1}, [REAL, None, np.array(1, np.int64)], (2,), "both as an attribute"),
        (
            "DFT",
            {},
            [REAL, np.array(0, np.int64), np.array(1, np.int64)],
            (1, 2),
            "dft_length must be positive",
        ),
        ("DFT", {}, [REAL, None, np.array(1, np.int64)], (), "must be a constant"),
        ("DFT", {}, [rand(0, (2, 8, 1)).astype(np.int32)], (), "unsupported dtype int32"),
        ("DFT", {"inverse": 2}, [REAL], (), "'inverse' must be 0 or 1"),
        ("STFT", {}, [SIGNAL, np.array(4, np.int64)], (1,), "needs a window or a frame_length"),
        (
            "STFT",
            {},
            [SIGNAL, np.array(0, np.int64), None, np.array(8, np.int64)],
            (1, 3),
            "frame_step must be positive",
        ),
        (
            "STFT",
            {},
            [SIGNAL, np.array(4, np.int64), None, np.array(41, np.int64)],
            (1, 3),
            "frame_length 1 to the signal length 40",
        ),
        (
            "STFT",
            {},
            [rand(0, (2, 40, 2)), np.array(4, np.int64), None, np.array(8, np.int64)],
            (1, 3),
            "needs a real signal",
        ),
        (
            "STFT",
            {},
            [SIGNAL, np.array(4, np.int64), rand(0, (8,)), np.array(9, np.int64)],
            (1, 3),
            "differs from the window's length 8",
        ),
        ("HannWindow", {}, [_i32(-1)], (0,), "must not be negative"),
        ("HannWindow", {}, [np.array([3, 4], np.int32)], (0,), "must hold one value"),
        ("HannWindow", {"output_datatype": 16}, [_i32(4)], (0,), "'output_datatype' 16"),
        ("HammingWindow", {}, [_i32(4)], (), "must be a constant"),
        (
            "MelWeightMatrix",
            {},
            [_i32(8), _i32(16), _i32(8192), np.float32(10), np.float32(5)],
            (0, 1, 2, 3, 4),
            "lower_edge_hertz < upper_edge_hertz",
        ),
        (
            "MelWeightMatrix",
            {},
            [_i32(0), _i32(16), _i32(8192), np.float32(0), np.float32(5)],
            (0, 1, 2, 3, 4),
            "must be positive",
        ),
    ],
)
def test_bad_inputs_are_refused(
    op_type: str, attrs: dict, inputs: list, constants: tuple, message: str
) -> None:
    with pytest.raises(ExecutionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run_case(op_type, attrs, inputs, constants)


def test_mel_edges_above_nyquist_are_refused_at_run() -> None:
    op = create_op("MelWeightMatrix", "mel")
    args = [_i32(8), _i32(16), _i32(100), np.float32(0), np.float32(4096)]
    with pytest.raises(ExecutionError, match="outside the 9 spectrogram bins"):
        op.run(args)


def test_batch_rules() -> None:
    from popef.runtime.batching import ROW_RULES

    op = create_op("DFT", "d")
    op.constant_inputs = {2: np.array(0, np.int64)}
    from popef.runtime.ops import TensorSpec

    specs = [TensorSpec(REAL.shape, REAL.dtype), None, TensorSpec((), np.int64)]
    assert not ROW_RULES["DFT"](op, [True, False, False], specs)  # along the batch axis
    op.constant_inputs = {2: np.array(1, np.int64)}
    assert ROW_RULES["DFT"](op, [True, False, False], specs)
    stft = create_op("STFT", "s")
    assert ROW_RULES["STFT"](stft, [True, False, False], [])
    assert not ROW_RULES["STFT"](stft, [True, False, True], [])
