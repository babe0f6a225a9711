"""DeformConv and RoiAlign against onnx's ReferenceEvaluator (skipped without onnx), their
batch rules with both executors, and bad inputs."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import popef
from popef import DataType
from popef.errors import ExecutionError
from popef.runtime import GraphBuilder, ModelRunner
from popef.runtime.batching import fold_blocker
from popef.runtime.loader import load_model
from popef.runtime.ops import TensorSpec, create_op
from popef.runtime.ops.detection import MAX_SAMPLES_PER_ROI

from .helpers import model_of, save_bytes
from .op_oracle import OpCase, check_case, i64, rand, run_case

OP22 = {"opset": 22}
F32_TOL = {"rtol": 1e-5, "atol": 1e-5}  # float32 sums in another order


def _deform(
    seed: int,
    n: int,
    c: int,
    hw: tuple[int, int],
    m: int,
    kernel: tuple[int, int],
    out: tuple[int, int],
    group: int = 1,
    offset_group: int = 1,
    *,
    bias: bool = False,
    mask: bool = False,
    dtype=np.float32,
    spread: float = 1.5,
) -> list:
    taps = kernel[0] * kernel[1]
    inputs = [
        rand(seed, (n, c, *hw), dtype),
        rand(seed + 1, (m, c // group, *kernel), dtype),
        rand(seed + 2, (n, offset_group * taps * 2, *out), dtype, -spread, spread),
    ]
    if bias or mask:
        inputs.append(rand(seed + 3, (m,), dtype) if bias else None)
    if mask:
        inputs.append(rand(seed + 4, (n, offset_group * taps, *out), dtype, 0.0, 1.0))
    return inputs


def _rois(*boxes) -> np.ndarray:
    return np.array(boxes, np.float32)


CASES = [
    OpCase(
        "deform_basic",
        "DeformConv",
        {"kernel_shape": [2, 2]},
        _deform(0, 1, 1, (3, 3), 1, (2, 2), (2, 2)),
        **OP22,
    ),
    OpCase(
        "deform_pads_strides_dilations",
        "DeformConv",
        {"pads": [1, 2, 0, 1], "strides": [2, 1], "dilations": [1, 2]},
        _deform(1, 2, 3, (6, 5), 4, (3, 2), (3, 6)),
        **F32_TOL,
        **OP22,
    ),
    OpCase(
        "deform_groups_offset_groups_bias_mask",
        "DeformConv",
        {"group": 2, "offset_group": 2, "pads": [1, 1, 1, 1]},
        _deform(2, 2, 4, (5, 5), 6, (3, 3), (5, 5), 2, 2, bias=True, mask=True),
        **F32_TOL,
        **OP22,
    ),
    OpCase(
        "deform_mask_without_bias",
        "DeformConv",
        {"offset_group": 3},
        _deform(3, 1, 3, (4, 4), 2, (2, 2), (3, 3), 1, 3, mask=True),
        **F32_TOL,
        **OP22,
    ),
    OpCase(
        "deform_offsets_far_outside",
        "DeformConv",
        {"pads": [1, 1, 1, 1]},
        _deform(4, 1, 2, (4, 4), 2, (2, 2), (5, 5), spread=6.0),
        **F32_TOL,
        **OP22,
    ),
    OpCase(
        "deform_float64",
        "DeformConv",
        {"group": 3},
        _deform(5, 2, 3, (4, 5), 3, (2, 3), (3, 3), 3, dtype=np.float64),
        rtol=1e-12,
        **OP22,
    ),
    OpCase(
        "deform_float16",
        "DeformConv",
        {},
        _deform(6, 1, 2, (4, 4), 2, (2, 2), (3, 3), dtype=np.float16),
        rtol=1e-2,
        atol=1e-2,
        **OP22,
    ),
    OpCase(
        "roialign_default_half_pixel_adaptive",
        "RoiAlign",
        {"output_height": 3, "output_width": 4},
        [
            rand(10, (2, 3, 9, 11)),
            _rois([0, 0, 8, 8], [1.5, 2.2, 7.4, 5.1], [3, 1, 10, 8.5]),
            i64(1, 0, 1),
        ],
        **OP22,
    ),
    OpCase(
        "roialign_output_half_pixel_scale",
        "RoiAlign",
        {
            "coordinate_transformation_mode": "output_half_pixel",
            "spatial_scale": 0.5,
            "output_height": 2,
            "output_width": 2,
        },
        [
            rand(11, (1, 2, 8, 8)),
            _rois([0, 0, 15, 15], [4, 4, 4.5, 4.2], [10, 2, 30, 20]),
            i64(0, 0, 0),
        ],
        **OP22,
    ),
    OpCase(
        "roialign_max_ratio",
        "RoiAlign",
        {"mode": "max", "sampling_ratio": 3, "output_height": 4, "output_width": 3},
        [rand(12, (2, 2, 7, 6)), _rois([-2, -1, 4, 8], [1, 1, 5, 5]), i64(1, 0)],
        **OP22,
    ),
    OpCase(
        "roialign_max_adaptive_outside",
        "RoiAlign",
        {"mode": "max", "output_height": 2, "output_width": 2},
        [rand(13, (1, 1, 5, 5)), _rois([-9, -9, -3, -2], [3.5, 3.5, 12, 12]), i64(0, 0)],
        **OP22,
    ),
    OpCase(
        "roialign_inverted_region",
        "RoiAlign",
        {"output_height": 2, "output_width": 2},
        [rand(14, (1, 1, 6, 6)), _rois([4, 4, 1, 1]), i64(0)],
        **OP22,
    ),
    OpCase(
        "roialign_float64",
        "RoiAlign",
        {"output_height": 3, "output_width": 3, "sampling_ratio": 2},
        [rand(15, (1, 2, 6, 7), np.float64), np.array([[0.5, 1, 5, 4.5]]), i64(0)],
        rtol=1e-12,
        **OP22,
    ),
    OpCase(
        "roialign_no_regions",
        "RoiAlign",
        {"output_height": 2, "output_width": 2},
        [rand(16, (1, 2, 4, 4)), np.zeros((0, 4), np.float32), np.zeros(0, np.int64)],
        **OP22,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_op_matches_reference(case: OpCase) -> None:
    check_case(case)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    size=st.integers(2, 6),
    kernel=st.integers(1, 3),
    pad=st.integers(0, 1),
    groups=st.sampled_from([(1, 1), (2, 1), (1, 2), (2, 2)]),
)
def test_deform_conv_matches_reference(
    seed: int, size: int, kernel: int, pad: int, groups: tuple[int, int]
) -> None:
    out = size + 2 * pad - kernel + 1
    if out < 1:
        return
    group, offset_group = groups
    inputs = _deform(
        seed,
        2,
        2,
        (size, size),
        2 * group,
        (kernel, kernel),
        (out, out),
        group,
        offset_group,
        bias=True,
        mask=bool(seed % 2),
        spread=2.5,
    )
    check_case(
        OpCase(
            "h",
            "DeformConv",
            {"group": group, "offset_group": offset_group, "pads": [pad] * 4},
            inputs,
            rtol=1e-5,
            atol=1e-5,
            **OP22,
        )
    )


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    corners=st.lists(st.floats(-4, 14, width=32), min_size=4, max_size=4),
    ratio=st.integers(0, 3),
    mode=st.sampled_from(["avg", "max"]),
    transform=st.sampled_from(["half_pixel", "output_half_pixel"]),
    cells=st.integers(1, 4),
)
def test_roi_align_matches_reference(
    seed: int, corners: list[float], ratio: int, mode: str, transform: str, cells: int
) -> None:
    x = rand(seed, (2, 2, 8, 9))
    attrs = {
        "sampling_ratio": ratio,
        "mode": mode,
        "output_height": cells,
        "output_width": cells + 1,
        "coordinate_transformation_mode": transform,
    }
    check_case(
        OpCase(
            "h", "RoiAlign", attrs, [x, _rois(corners), i64(seed % 2)], rtol=1e-4, atol=1e-5, **OP22
        )
    )


def test_deform_conv_without_offsets_is_conv() -> None:
    """Zero offsets and no mask: DeformConv is Conv."""
    x, w = rand(20, (2, 4, 6, 5)), rand(21, (6, 2, 3, 3))
    offset = np.zeros((2, 2 * 9 * 2, 3, 2), np.float32)
    attrs = {"group": 2, "offset_group": 2, "strides": [2, 2], "pads": [1, 0, 0, 0]}
    [deformed] = run_case("DeformConv", attrs, [x, w, offset])
    [plain] = run_case("Conv", {"group": 2, "strides": [2, 2], "pads": [1, 0, 0, 0]}, [x, w])
    np.testing.assert_allclose(deformed, plain, rtol=1e-5, atol=1e-5)


F32 = np.float32


@pytest.mark.parametrize(
    "op_type, attrs, specs, message",
    [
        (
            "DeformConv",
            {},
            [((1, 2, 4, 4), F32), ((1, 3, 2, 2), F32), ((1, 8, 3, 3), F32)],
            "X has 2 channels",
        ),
        (
            "DeformConv",
            {},
            [((1, 1, 4, 4), F32), ((1, 1, 2, 2), F32), ((1, 8, 2, 2), F32)],
            r"offset\) must be \[1, 8, 3, 3\]",
        ),
        (
            "DeformConv",
            {"offset_group": 2},
            [((1, 3, 4, 4), F32), ((1, 3, 2, 2), F32), ((1, 16, 3, 3), F32)],
            "not divisible by offset_group",
        ),
        (
            "DeformConv",
            {},
            [((1, 1, 4, 4), F32), ((1, 1, 2, 2), F32), ((1, 8, 3, 3), F32), ((2,), F32)],
            r"B\) must be \[1\]",
        ),
        (
            "DeformConv",
            {},
            [
                ((1, 1, 4, 4), F32),
                ((1, 1, 2, 2), F32),
                ((1, 8, 3, 3), F32),
                None,
                ((1, 4, 2, 3), F32),
            ],
            r"mask\) must be \[1, 4, 3, 3\]",
        ),
        (
            "DeformConv",
            {},
            [((1, 1, 4, 4, 4), F32), ((1, 1, 2, 2, 2), F32), ((1, 24, 3, 3, 3), F32)],
            "2-D DeformConv",
        ),
        (
            "DeformConv",
            {},
            [((1, 1, 4, 4), np.int32), ((1, 1, 2, 2), np.int32), ((1, 8, 3, 3), np.int32)],
            "unsupported dtype int32",
        ),
        (
            "DeformConv",
            {},
            [((1, 1, 4, 4), F32), ((1, 1, 2, 2), np.float64), ((1, 8, 3, 3), F32)],
            "they must match",
        ),
        (
            "DeformConv",
            {},
            [((1, 1, 1, 4), F32), ((1, 1, 2, 2), F32), ((1, 8, 1, 3), F32)],
            "does not fit spatial axis 0",
        ),
        (
            "DeformConv",
            {"kernel_shape": [3, 3]},
            [((1, 1, 4, 4), F32), ((1, 1, 2, 2), F32), ((1, 8, 3, 3), F32)],
            "differs from W's",
        ),
        (
            "RoiAlign",
            {},
            [((1, 1, 4, 4), F32), ((2, 5), F32), ((2,), np.int64)],
            r"rois\) must be \[num_rois, 4\]",
        ),
        (
            "RoiAlign",
            {},
            [((1, 1, 4, 4), F32), ((2, 4), F32), ((3,), np.int64)],
            r"batch_indices\) must be \[2\]",
        ),
        (
            "RoiAlign",
            {},
            [((1, 1, 4, 4), F32), ((2, 4), F32), ((2,), np.int32)],
            "unsupported dtype int32",
        ),
        ("RoiAlign", {}, [((1, 4, 4), F32), ((2, 4), F32), ((2,), np.int64)], r"\[N, C, H, W\]"),
    ],
)
def test_bad_shapes_are_refused(op_type: str, attrs: dict, specs: list, message: str) -> None:
    op = create_op(op_type, "n", attrs)
    with pytest.raises(ExecutionError, match=message):
        op.infer([None if s is None else TensorSpec(*s) for s in specs])


@pytest.mark.parametrize(
    "op_type, attrs, message",
    [
        ("DeformConv", {"group": 0}, "'group' must be positive"),
        ("DeformConv", {"pads": [1, 1]}, "'pads' must hold 4 values"),
        ("DeformConv", {"strides": [0, 1]}, "'strides' must hold 2 values of at least 1"),
        ("RoiAlign", {"mode": "sum"}, "'mode' must be avg or max, got 'sum'"),
        ("RoiAlign", {"coordinate_transformation_mode": "asymmetric"}, "half_pixel or"),
        ("RoiAlign", {"output_height": 0}, "'output_height' must be positive"),
        ("RoiAlign", {"sampling_ratio": -1}, "'sampling_ratio' must be 0"),
    ],
)
def test_bad_attributes_are_refused(op_type: str, attrs: dict, message: str) -> None:
    with pytest.raises(ExecutionError, match=message):
        create_op(op_type, "n", attrs)


@pytest.mark.parametrize(
    "rois, indices, message",
    [
        (_rois([0, 0, 2, 2]), i64(1), r"batch_indices\[0\] is 1, expected 0 to 0"),
        (_rois([0, 0, 2, 2], [0, 0, 1, 1]), i64(0, -1), r"batch_indices\[1\] is -1"),
        (_rois([0, 0, 2, 2], [0, np.nan, 1, 1]), i64(0, 0), "region 1 of rois is not finite"),
        (_rois([0, 0, 1e30, 1e30]), i64(0), "region 0 needs .* bilinear samples"),
    ],
)
def test_bad_regions_are_refused(rois: np.ndarray, indices: np.ndarray, message: str) -> None:
    op = create_op("RoiAlign", "n", {})
    x = rand(0, (1, 1, 4, 4))
    op.infer([TensorSpec.of(x), TensorSpec.of(rois), TensorSpec.of(indices)])
    with pytest.raises(ExecutionError, match=message):
        op.run([x, rois, indices])
    assert MAX_SAMPLES_PER_ROI < 1e30


def _deform_graph() -> GraphBuilder:
    g = GraphBuilder()
    x = g.add_input("x", DataType.F32, (2, 2, 5, 5))
    offset = g.add_input("offset", DataType.F32, (2, 2 * 9 * 2, 5, 5))
    weights = g.add_weight("w", rand(30, (4, 2, 3, 3)))
    bias = g.add_weight("b", rand(31, (4,)))
    g.add_output(
        g.add_node("DeformConv", [x, weights, offset, bias], pads=[1, 1, 1, 1], offset_group=2), "y"
    )
    return g


def _roi_graph(batched_image: bool) -> GraphBuilder:
    g = GraphBuilder()
    if batched_image:
        x = g.add_input("x", DataType.F32, (2, 2, 6, 6))
        rois = g.add_weight("rois", _rois([0, 0, 4, 4], [1, 2, 5, 5], [0, 0, 2, 3]))
        indices = g.add_weight("i", i64(1, 0, 1))
    else:
        x = g.add_weight("x", rand(32, (2, 2, 6, 6)))
        rois = g.add_input("rois", DataType.F32, (3, 4))
        indices = g.add_input("i", DataType.S64, (3,))
    g.add_output(g.add_node("RoiAlign", [x, rois, indices], output_height=2, output_width=3), "y")
    return g


@pytest.mark.parametrize(
    "build, folds",
    [
        (_deform_graph, True),
        (lambda: _roi_graph(batched_image=False), True),  # rows follow the regions
        (lambda: _roi_graph(batched_image=True), False),  # indices point into one step's images
    ],
    ids=["deform_conv", "roi_align_regions", "roi_align_images"],
)
def test_batch_rule_and_executors_agree(build, folds: bool) -> None:
    g = build()
    assert (fold_blocker(load_model(model_of(save_bytes(g)))) is None) == folds
    model = model_of(save_bytes(g, replication_factor=2, device_iterations=2))
    rng = np.random.default_rng(0)
    feeds = {}
    with ModelRunner(model_of(save_bytes(g)), "ipu-model") as runner:
        for d in runner.get_execute_inputs():
            shape = (4, *d.shape)
            feeds[d.name] = (
                rng.integers(0, 2, size=shape)
                if d.name == "i"
                else rng.uniform(-1, 6, size=shape).astype(np.float32)
            )
        alone = np.stack(
            [runner.execute({k: v[i] for k, v in feeds.items()})["y"] for i in range(4)]
        )
    for name, options in (("cpu", {}), ("cpu", {"fold": False}), ("ipu-model", {})):
        with ModelRunner(model, name, **options) as runner:
            got = runner.execute(feeds)["y"]
        np.testing.assert_allclose(got, alone, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("opset, mode", [(10, "output_half_pixel"), (16, "half_pixel")])
def test_imported_roi_align_takes_its_opsets_default(opset: int, mode: str) -> None:
    """Opset 10's RoiAlign, which has no coordinate_transformation_mode, behaves as
    output_half_pixel; from opset 16 on the default is half_pixel."""
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    x, rois = rand(40, (1, 1, 6, 6)), _rois([0.5, 1, 4, 5.5])
    node = helper.make_node(
        "RoiAlign", ["x", "rois", "i"], ["y"], output_height=2, output_width=2, sampling_ratio=2
    )
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, (1, 1, 2, 2))],
        [numpy_helper.from_array(rois, "rois"), numpy_helper.from_array(i64(0), "i")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    stream = io.BytesIO()
    popef.import_onnx(model, stream)
    reader = popef.Reader()
    reader.parse_bytes(stream.getvalue())
    [loaded] = reader.models()
    with ModelRunner(loaded, "cpu") as runner:
        got = runner.execute({"x": x})["y"]
    [want] = run_case(
        "RoiAlign",
        {
            "output_height": 2,
            "output_width": 2,
            "sampling_ratio": 2,
            "coordinate_transformation_mode": mode,
        },
        [x, rois, i64(0)],
    )
    np.testing.assert_array_equal(got, want)


def test_roi_align_in_channel_chunks_gives_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    """Many channels of a large region are taken a few at a time (bounded memory): same result."""
    from popef.runtime.ops import detection

    inputs = [rand(50, (1, 7, 9, 9)), _rois([0, 0, 8, 8], [2, 1, 6, 7]), i64(0, 0)]
    attrs = {"output_height": 2, "output_width": 3, "mode": "max"}
    [whole] = run_case("RoiAlign", attrs, inputs)
    monkeypatch.setattr(detection, "MAX_SAMPLES_PER_ROI", 150)  # 2 or 4 channels at a time
    [chunked] = run_case("RoiAlign", attrs, inputs)
    np.testing.assert_array_equal(chunked, whole)
