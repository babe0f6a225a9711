"""Resize and Upsample against onnx's ReferenceEvaluator (skipped without onnx): every mode,
coordinate transformation, nearest rounding, scales and sizes, axes and aspect-ratio policy."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from popef.errors import ExecutionError

from .op_oracle import OpCase, check_case, i64, onnx_reference, rand, run_case

X = rand(0, (1, 2, 4, 5))
UP = np.array([1, 1, 2, 1.5], np.float32)
DOWN = np.array([1, 1, 0.6, 0.8], np.float32)
EMPTY = np.zeros(0, np.float32)
COORDS = (
    "half_pixel",
    "half_pixel_symmetric",
    "pytorch_half_pixel",
    "align_corners",
    "asymmetric",
    "tf_half_pixel_for_nearest",
)

CASES = []
for mode, coords, scales in itertools.product(("nearest", "linear", "cubic"), COORDS, (UP, DOWN)):
    if coords == "tf_half_pixel_for_nearest":
        continue  # not in onnx's reference: checked by hand below
    tag = "up" if scales is UP else "down"
    CASES.append(
        OpCase(
            f"{mode}_{coords}_{tag}",
            "Resize",
            {"mode": mode, "coordinate_transformation_mode": coords},
            [X, EMPTY, scales],
            (1, 2),
            opset=19,
            rtol=1e-5,
            atol=1e-5,
        )
    )
for nearest in ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil"):
    CASES.append(
        OpCase(
            f"nearest_mode_{nearest}",
            "Resize",
            {"nearest_mode": nearest},
            [X, None, None, i64(1, 2, 7, 3)],
            (3,),
            opset=19,
        )
    )
CASES += [
    OpCase(
        "sizes_linear",
        "Resize",
        {"mode": "linear"},
        [X, None, None, i64(1, 2, 3, 9)],
        (3,),
        opset=19,
        rtol=1e-5,
        atol=1e-5,
    ),
    OpCase(
        "cubic_exclude_outside",
        "Resize",
        {"mode": "cubic", "exclude_outside": 1, "cubic_coeff_a": -0.5},
        [X, EMPTY, UP],
        (1, 2),
        opset=19,
        rtol=1e-5,
        atol=1e-5,
    ),
    OpCase(
        "axes_sizes",
        "Resize",
        {"axes": [3, 2], "mode": "linear"},
        [X, None, None, i64(8, 2)],
        (3,),
        opset=19,
        rtol=1e-5,
        atol=1e-5,
    ),
    OpCase(
        "keep_aspect_not_larger",
        "Resize",
        {"axes": [2, 3], "keep_aspect_ratio_policy": "not_larger"},
        [X, None, None, i64(7, 7)],
        (3,),
        opset=19,
    ),
    OpCase(
        "keep_aspect_not_smaller",
        "Resize",
        {"axes": [2, 3], "keep_aspect_ratio_policy": "not_smaller"},
        [X, None, None, i64(7, 7)],
        (3,),
        opset=19,
    ),
    OpCase(
        "tf_crop_and_resize",
        "Resize",
        {
            "mode": "linear",
            "coordinate_transformation_mode": "tf_crop_and_resize",
            "extrapolation_value": 10.0,
        },
        [X, np.array([0, 0, 0.2, -0.3, 1, 1, 0.9, 1.2], np.float32), None, i64(1, 2, 3, 4)],
        (1, 3),
        opset=19,
        rtol=1e-5,
        atol=1e-5,
    ),
    OpCase(
        "integers_nearest",
        "Resize",
        {},
        [rand(1, (1, 1, 3, 3), np.uint8, 0, 255), EMPTY, np.array([1, 1, 2, 2], np.float32)],
        (1, 2),
    ),
    OpCase(
        "upsample_nearest_opset9",
        "Upsample",
        {},
        [X, np.array([1, 1, 2, 3], np.float32)],
        (1,),
        opset=9,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_op_matches_reference(case: OpCase) -> None:
    check_case(case)


def test_opset10_form_is_asymmetric_and_rounds_down_up() -> None:
    """Resize-10 (X, scales): nearest takes floor(y / scale) upsampling (a repeat) and
    ceil when downsampling (ONNX's resize_downsample_nearest example)."""
    x = np.arange(1, 9, dtype=np.float32).reshape(1, 1, 2, 4)
    [y] = run_case("Resize", {}, [x, np.array([1, 1, 0.6, 0.6], np.float32)], (1,))
    np.testing.assert_array_equal(y, [[[[1, 3]]]])
    [y] = run_case("Resize", {}, [x, np.array([1, 1, 2, 2], np.float32)], (1,))
    np.testing.assert_array_equal(y, x.repeat(2, axis=2).repeat(2, axis=3))


@pytest.mark.parametrize(
    "attrs, inputs, constants, message",
    [
        ({}, [X, EMPTY, UP, i64(1, 1, 2, 2)], (1, 2, 3), "exactly one of scales and sizes"),
        ({}, [X, EMPTY, np.array([1, 2], np.float32)], (1, 2), "one value per resized axis"),
        ({"mode": "area"}, [X, EMPTY, UP], (1, 2), "'mode' must be one of"),
        ({"antialias": 2}, [X, EMPTY, UP], (1, 2), "'antialias' must be 0 or 1"),
        ({}, [X, EMPTY, UP], (1,), r"input 2 \('scales'\) must be a constant"),
        ({}, [X, EMPTY, -UP], (1, 2), "must be positive"),
    ],
)
def test_bad_input_is_a_clear_error(attrs, inputs, constants, message) -> None:
    with pytest.raises(ExecutionError, match=message):
        run_case("Resize", attrs, inputs, constants)


def test_upsample_linear_is_asymmetric_resize() -> None:
    scales = np.array([1, 1, 2, 3], np.float32)
    resize = OpCase(
        "r",
        "Resize",
        {"mode": "linear", "coordinate_transformation_mode": "asymmetric"},
        [X, EMPTY, scales],
        opset=19,
    )
    [want] = onnx_reference(resize)
    [got] = run_case("Upsample", {"mode": "linear", "scales": scales.tolist()}, [X])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    [got] = run_case("Upsample", {"mode": "bilinear"}, [X, scales], (1,))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_tf_half_pixel_for_nearest() -> None:
    x = np.arange(4, dtype=np.float32).reshape(1, 1, 1, 4)
    [y] = run_case(
        "Resize",
        {"coordinate_transformation_mode": "tf_half_pixel_for_nearest"},
        [x, EMPTY, np.array([1, 1, 1, 0.5], np.float32)],
        (1, 2),
    )
    # source (y + 0.5) / 0.5 = 1, 3 -> round_prefer_floor -> 1, 3
    np.testing.assert_array_equal(y.reshape(-1), [1, 3])


@pytest.mark.parametrize("mode", ["linear", "cubic"])
@pytest.mark.parametrize("exclude_outside", [0, 1])
@pytest.mark.parametrize("scales", [[1, 1, 0.6, 0.8], [1, 1, 0.5, 0.35], [1, 1, 1.5, 0.5]])
def test_antialias_matches_onnx(mode, exclude_outside, scales) -> None:
    x = np.arange(2 * 3 * 7 * 9, dtype=np.float32).reshape(2, 3, 7, 9) % 11
    case = OpCase(
        "aa",
        "Resize",
        {"mode": mode, "antialias": 1, "exclude_outside": exclude_outside},
        [x, EMPTY, np.array(scales, np.float32)],
        constants=(1, 2),
        opset=19,
        rtol=1e-5,
        atol=1e-5,
    )
    check_case(case)


def test_antialias_does_not_change_upsampling_or_nearest() -> None:
    for mode, scales in (("linear", UP), ("nearest", np.array([1, 1, 0.5, 0.5], np.float32))):
        inputs = [X, EMPTY, scales]
        [plain] = run_case("Resize", {"mode": mode}, inputs, (1, 2))
        [anti] = run_case("Resize", {"mode": mode, "antialias": 1}, inputs, (1, 2))
        np.testing.assert_array_equal(plain, anti)
