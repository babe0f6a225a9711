"""GridSample and AffineGrid against onnx's ReferenceEvaluator (skipped without onnx)."""

from __future__ import annotations

import numpy as np
import pytest

from popef.errors import ExecutionError

from .op_oracle import OpCase, check_case, i64, rand, run_case

X2 = rand(0, (2, 3, 4, 5))
GRID2 = rand(1, (2, 3, 6, 2), low=-1.3, high=1.3)  # some positions fall outside
X3 = rand(2, (1, 2, 3, 4, 5))
GRID3 = rand(3, (1, 2, 3, 2, 3), low=-1.2, high=1.2)
TOL = {"rtol": 1e-5, "atol": 1e-5, "opset": 22}
CASES = (
    [
        OpCase(
            f"grid_{mode}_{padding}_{align}",
            "GridSample",
            {"mode": mode, "padding_mode": padding, "align_corners": align},
            [X2, GRID2],
            **TOL,
        )
        for mode in ("nearest", "linear", "cubic")
        for padding in ("zeros", "border", "reflection")
        for align in (0, 1)
    ]
    + [
        OpCase(
            f"grid_3d_{mode}_{align}",
            "GridSample",
            {"mode": mode, "align_corners": align},
            [X3, GRID3],
            **TOL,
        )
        for mode in ("nearest", "linear")
        for align in (0, 1)
    ]
    + [
        OpCase(
            f"affine_{len(size) - 2}d_{align}",
            "AffineGrid",
            {"align_corners": align},
            [rand(4, (2, len(size) - 2, len(size) - 1)), i64(*size)],
            constants=(1,),
            **TOL,
        )
        for size in ((2, 3, 4, 5), (2, 1, 3, 4, 2))
        for align in (0, 1)
    ]
)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_op_matches_reference(case: OpCase) -> None:
    check_case(case)


def test_identity_grid_gives_the_input_back() -> None:
    theta = np.tile(np.array([[1, 0, 0], [0, 1, 0]], np.float32), (2, 1, 1))
    [grid] = run_case("AffineGrid", {"align_corners": 1}, [theta, i64(2, 3, 4, 5)], (1,))
    [y] = run_case("GridSample", {"align_corners": 1}, [X2, grid])
    np.testing.assert_allclose(y, X2, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "op_type, attrs, inputs, constants, message",
    [
        ("GridSample", {"mode": "area"}, [X2, GRID2], (), "attribute 'mode'"),
        ("GridSample", {}, [X2, rand(0, (2, 3, 6, 3))], (), "do not fit"),
        ("GridSample", {"mode": "cubic"}, [X3, GRID3], (), "needs a 4-D X"),
        ("GridSample", {}, [X2.astype(np.int32), GRID2], (), "unsupported dtype int32"),
        ("AffineGrid", {}, [rand(0, (2, 2, 3)), i64(2, 3, 4)], (1,), "size must be"),
        ("AffineGrid", {}, [rand(0, (2, 2, 3)), i64(2, 3, 4, 5)], (), "must be a constant"),
        ("AffineGrid", {}, [rand(0, (2, 3, 4)), i64(2, 3, 4, 5)], (1,), "theta must be"),
    ],
)
def test_bad_input_is_a_clear_error(op_type, attrs, inputs, constants, message) -> None:
    with pytest.raises(ExecutionError, match=message):
        run_case(op_type, attrs, inputs, constants)
