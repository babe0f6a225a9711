"""``popef run`` end to end, and the conversion of input files."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from click.testing import CliRunner

from popef import DataType, ExecutionError
from popef.cli import main
from popef.runtime import GraphBuilder
from popef.runtime.cli import is_probability, render_outputs, safe
from popef.runtime.inputs import fit_to_input, image_layout, image_to_array

from .helpers import conv_reference


@pytest.fixture
def Image():
    """Pillow's Image module; tests that need it are skipped without Pillow."""
    return pytest.importorskip("PIL.Image", reason="images need Pillow (the 'images' extra)")


def run(*args: str):
    return CliRunner().invoke(main, ["run", *map(str, args)], catch_exceptions=False)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """A tiny 'digit classifier': 1x8x8 greyscale -> Conv -> Flatten -> Gemm -> Softmax."""
    rng = np.random.default_rng(0)
    params = {
        "w": rng.standard_normal((2, 1, 3, 3)).astype(np.float32),
        "b": rng.standard_normal(2).astype(np.float32),
        "fc": rng.standard_normal((4, 72)).astype(np.float32) * 0.3,
    }
    g = GraphBuilder()
    x = g.add_input("image", DataType.F32, (1, 1, 8, 8))
    h = g.add_node(
        "Conv",
        [x, g.add_weight("w", params["w"]), g.add_weight("b", params["b"])],
        kernel_shape=[3, 3],
    )
    h = g.add_node("Flatten", [g.add_node("Relu", [h])], axis=1)
    h = g.add_node("Gemm", [h, g.add_weight("fc", params["fc"])], transB=1)
    g.add_output(g.add_node("Softmax", [h], axis=-1), "probs")
    folder = tmp_path_factory.mktemp("digits")
    path = folder / "digits.popef"
    g.save(path, executable_name="digits")
    return path, params, folder


def reference(params, x):
    h = np.maximum(conv_reference(x, params["w"], params["b"]), 0).reshape(len(x), -1)
    z = h @ params["fc"].T.astype(np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_a_png_runs_end_to_end(digits, Image):
    path, params, folder = digits
    pixels = (np.arange(64).reshape(8, 8) * 4).astype(np.uint8)
    Image.fromarray(pixels).convert("RGB").save(folder / "digit.png")  # colour: made grey
    result = run(path, "--input", folder / "digit.png")
    assert result.exit_code == 0, result.stderr
    expected = reference(params, (pixels / 255.0).reshape(1, 1, 8, 8))
    lines = result.stdout.splitlines()
    assert lines[0] == "probs: F32[1, 4]"
    values = np.array(lines[1].strip(" []").split(), dtype=np.float64)
    np.testing.assert_allclose(values, expected[0], atol=1e-6)
    assert lines[2] == (f"  argmax: {expected.argmax()} (probability {expected.max():.4f})")


@pytest.mark.parametrize("executor", ["cpu", "ipu-model"])
def test_npy_npz_and_output_file(digits, executor, tmp_path):
    path, params, _ = digits
    x = np.random.default_rng(1).random((3, 1, 8, 8)).astype(np.float32)  # 3 steps
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "x.npz", image=x)
    out = tmp_path / "out.npz"
    for spec in (f"image={tmp_path / 'x.npy'}", str(tmp_path / "x.npz")):
        result = run(path, "-i", spec, "-e", executor, "-o", out)
        assert result.exit_code == 0, result.stderr
        assert "argmax: [" in result.stdout
        assert f"outputs saved to {out}" in result.stderr
        with np.load(out) as saved:
            assert saved.files == ["probs"]
            np.testing.assert_allclose(saved["probs"], reference(params, x), atol=1e-5)


def test_float64_npy_and_a_missing_batch_dimension_are_forgiven(digits, tmp_path):
    path, params, _ = digits
    x = np.random.default_rng(2).random((8, 8))
    np.save(tmp_path / "x.npy", x)
    result = run(path, "-i", tmp_path / "x.npy")
    assert result.exit_code == 0, result.stderr


def test_executors_are_listed():
    result = run("--executors")
    assert result.exit_code == 0
    names = [line.split()[0] for line in result.stdout.splitlines()]
    assert names[:2] == ["cpu", "ipu-model"]


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["{model}", "-i", "nope={x}"],
            "error: the model has no input 'nope' (inputs: 'image' F32[1, 1, 8, 8])",
        ),
        (["{model}"], "error: no --input for 'image' (inputs: 'image' F32[1, 1, 8, 8])"),
        (
            ["{model}", "-i", "{folder}/missing.npy"],
            "error: input file '{folder}/missing.npy' does not exist",
        ),
        (
            ["{model}", "-i", "{x}", "-e", "gpu"],
            "error: unknown executor 'gpu'; installed executors: cpu, ipu-model",
        ),
        (
            ["{model}", "-i", "{x}", "-e", "ipu-model", "--option", "tiles_per_ipu=0"],
            "error: executor 'ipu-model': option 'tiles_per_ipu' must be an integer >= 1, got 0",
        ),
        (
            ["{model}", "-i", "{bad}"],
            "error: '{bad}': the array of shape [2, 8, 8] fits no input "
            "of the model (inputs: 'image' F32[1, 1, 8, 8])",
        ),
        (["{folder}/garbage.popef", "-i", "{x}"], "error: not a PopEF file (it starts with text "),
        (["{folder}/nothing.popef"], "error: '{folder}/nothing.popef' is not a file"),
        (
            ["{model}", "-i", "{complex}"],
            "error: input 'image' is complex64, which does not convert to F32",
        ),
    ],
)
def test_errors_are_one_line_and_exit_1(digits, tmp_path, args, message):
    path, _, folder = digits
    np.save(tmp_path / "x.npy", np.zeros((1, 1, 8, 8), np.float32))
    np.save(tmp_path / "bad.npy", np.zeros((2, 8, 8), np.float32))
    np.save(tmp_path / "complex.npy", np.zeros((1, 1, 8, 8), np.complex64))
    (folder / "garbage.popef").write_bytes(b"not a popef file at all" * 4)
    names = dict(
        model=path,
        folder=folder,
        x=tmp_path / "x.npy",
        bad=tmp_path / "bad.npy",
        complex=tmp_path / "complex.npy",
    )
    result = run(*(a.format(**names) for a in args))
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(message.format(**names)), result.stderr


def test_no_file_is_a_usage_error():
    result = run()
    assert result.exit_code == 2


# -- renderers and input conversion ----------------------------------------------------------


def test_render_outputs_escapes_names_and_marks_probabilities():
    text = render_outputs(
        {
            "a\x1b[31m": np.array([[0.25, 0.75]], np.float32),
            "logits": np.array([2.0, -1.0], np.float32),
        },
        [],
    )
    assert text.splitlines() == [
        "a\\x1b[31m: float32[1, 2]",
        "  [[0.25 0.75]]",
        "  argmax: 1 (probability 0.7500)",
        "logits: float32[2]",
        "  [ 2. -1.]",
    ]
    assert safe("ok\n") == "ok\\n"
    assert is_probability(np.array([[0.5, 0.5], [1.0, 0.0]]))
    assert not is_probability(np.array([0.5, 0.6]))
    assert not is_probability(np.array([1.0]))


@pytest.mark.parametrize(
    "shape, layout",
    [
        ((1, 1, 28, 28), (1, 28, 28, False)),
        ((1, 3, 32, 24), (3, 32, 24, False)),
        ((1, 32, 24, 3), (3, 32, 24, True)),
        ((3, 32, 24), (3, 32, 24, False)),
        ((32, 24, 4), (4, 32, 24, True)),
        ((28, 28), (1, 28, 28, False)),
        ((1, 784), (1, 28, 28, False)),
    ],
)
def test_image_layouts(shape, layout):
    found = image_layout(shape)
    assert (found.channels, found.height, found.width, found.channels_last) == layout


@pytest.mark.parametrize(
    "shape, message",
    [
        ((4, 1, 28, 28), "it takes a batch of 4"),
        ((1, 2, 28, 28), "no dimension of 1, 3 or 4 channels"),
        ((5,), "expected \\[H, W\\]"),
    ],
)
def test_shapes_that_take_no_image(shape, message):
    with pytest.raises(ExecutionError, match=message):
        image_layout(shape, "x")


def test_images_are_converted_to_the_input(Image):
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[..., 0] = 255  # pure red
    image = Image.fromarray(rgb)
    grey = image_to_array(image, (1, 1, 4, 6), DataType.F32)
    np.testing.assert_allclose(grey, np.full((1, 1, 4, 6), 76 / 255), atol=1 / 255)
    chw = image_to_array(image, (3, 4, 6), DataType.F32)
    assert chw[0].min() == 1.0 and chw[1:].max() == 0.0
    hwc = image_to_array(image, (1, 2, 3, 3), DataType.F16)  # resized, channels last
    assert hwc.shape == (1, 2, 3, 3) and hwc.dtype == np.float16 and hwc[..., 0].min() == 1.0
    raw = image_to_array(image, (4, 6), DataType.U8)
    assert raw.dtype == np.uint8 and raw.max() == 76


def test_sixteen_bit_pgm(tmp_path, Image):
    path = tmp_path / "deep.pgm"
    with open(path, "wb") as f:
        f.write(b"P5\n2 1\n65535\n" + np.array([0, 65535], ">u2").tobytes())
    from popef.runtime.inputs import load_image

    values = image_to_array(load_image(path), (1, 2), DataType.F32)
    np.testing.assert_allclose(values, [[0.0, 1.0]])


def test_fit_to_input():
    assert fit_to_input(np.zeros((8, 8)), (1, 1, 8, 8), DataType.F32, "x").shape == (1, 1, 8, 8)
    assert fit_to_input(np.zeros((2, 1, 8, 8)), (1, 1, 8, 8), DataType.F32, "x").shape == (
        2,
        1,
        8,
        8,
    )  # two steps: left for the runner
    with pytest.raises(ExecutionError, match="does not convert to S32"):
        fit_to_input(np.zeros(3), (3,), DataType.S32, "x")


def test_images_without_pillow_say_what_to_install(digits, monkeypatch):
    path, _, folder = digits
    (folder / "fake.png").write_bytes(b"\x89PNG")
    monkeypatch.setitem(sys.modules, "PIL", None)  # import PIL now raises ImportError
    result = run(path, "-i", folder / "fake.png")
    assert result.exit_code == 1
    assert result.stderr == "error: reading images needs Pillow: pip install 'popef[images]'\n"


def test_save_npz_replaces_atomically(tmp_path):
    import numpy as np

    from popef.runtime.cli import save_npz

    path = tmp_path / "out.npz"
    path.write_bytes(b"old")
    save_npz(str(path), {"file": np.arange(3), "probs/Softmax:0": np.ones((1, 2), np.float32)})
    with np.load(path) as saved:
        assert saved["file"].tolist() == [0, 1, 2] and saved["probs/Softmax:0"].shape == (1, 2)
    assert [p.name for p in tmp_path.iterdir()] == ["out.npz"]
    with pytest.raises(ValueError):  # object arrays are refused: the old file stays
        save_npz(str(path), {"bad": np.array([object()])})
    with np.load(path) as saved:
        assert saved["file"].tolist() == [0, 1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["out.npz"]


# -- mistakes a new user makes -------------------------------------------------------------------


def _one_error_line(result) -> str:
    assert result.exit_code == 1 and result.stdout == "", (result.exit_code, result.output)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_a_repeated_input_is_an_error_not_the_last_one_kept(digits, tmp_path):
    path, _, _ = digits
    for name in ("a", "b"):
        np.save(tmp_path / f"{name}.npy", np.zeros((1, 1, 8, 8), np.float32))
    line = _one_error_line(run(path, "-i", tmp_path / "a.npy", "-i", f"image={tmp_path}/b.npy"))
    assert line == (
        f"error: input 'image' is given twice (--input {tmp_path}/a.npy and --input "
        f"image={tmp_path}/b.npy); one run takes one value per input: to run several "
        "steps, stack them on the leading axis in one .npy file"
    )


def test_an_input_given_as_a_model_file_gets_a_hint(digits, tmp_path, Image):
    path, _, _ = digits
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "d.png")
    np.save(tmp_path / "d.npy", np.zeros((1, 1, 8, 8), np.float32))
    for given in ("d.png", "d.npy"):
        line = _one_error_line(run(path, tmp_path / given))
        assert line.endswith(
            f"; if it is an input of the model, give it with --input {tmp_path}/{given}"
        ), line


@pytest.mark.parametrize(
    "content, what",
    [
        (None, "it is a PopEF file (a model, not an input)"),
        (b"1, 2, 3\n4, 5, 6\n", "it is a text file"),
        (b"\x89PNG\r\n\x1a\n" + bytes(32), "it is a PNG image without an image suffix"),
        (b"", "it is empty"),
        (b"\x80\x04\x95pickled", "it does not start with the .npy or .npz signature"),
    ],
)
def test_a_file_that_is_no_array_says_what_it_is_and_never_suggests_pickles(
    digits, tmp_path, content, what
):
    path, _, _ = digits
    given = tmp_path / "given.npy"
    given.write_bytes(path.read_bytes() if content is None else content)
    line = _one_error_line(run(path, "-i", given))
    assert line == f"error: cannot read '{given}' as .npy or .npz: {what}"
    assert "pickle" not in line


def test_a_corrupt_model_is_refused_unless_no_verify(digits, tmp_path):
    import popef

    path, _, _ = digits
    corrupt = tmp_path / "corrupt.popef"
    corrupt.write_bytes(path.read_bytes())
    with popef.Reader() as reader:
        reader.parse_file(corrupt)
        blob = next(t.blob for t in reader.tensors() if t.name == "fc")
    data = bytearray(corrupt.read_bytes())
    data[blob.payload_offset : blob.payload_offset + blob.payload_size] = bytes(blob.payload_size)
    corrupt.write_bytes(data)
    np.save(tmp_path / "x.npy", np.zeros((1, 1, 8, 8), np.float32))
    line = _one_error_line(run(corrupt, "-i", tmp_path / "x.npy"))
    assert line.startswith("error: tensor data 'fc' is corrupt: checksum mismatch: header says ")
    result = run(corrupt, "-i", tmp_path / "x.npy", "--no-verify")
    assert result.exit_code == 0 and "probs: F32[1, 4]" in result.stdout


def test_huge_inputs_and_outputs_are_one_line_errors(digits, tmp_path, Image):
    """Arrays are checked against the model before numpy allocates them, image bombs are
    refused by Pillow's guard, and the probability check makes no float64 copy."""
    import zipfile

    path, _, _ = digits
    bomb = tmp_path / "bomb.npz"
    header = np.lib.format.header_data_from_array_1_0(np.zeros((1,), np.float64))
    header["shape"] = (40000, 40000)  # 11.9 GiB declared by a few bytes
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("image.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_1_0(member, header)
            member.write(bytes(1 << 20))
    line = _one_error_line(run(path, "-i", bomb))
    assert line == (
        f"error: '{bomb}': array 'image' of shape [40000, 40000] fits no input of "
        "the model (inputs: 'image' F32[1, 1, 8, 8])"
    )

    default, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, 1000  # 64 x 64 is then a bomb
    try:
        Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / "big.png")
        line = _one_error_line(run(path, "-i", tmp_path / "big.png"))
    finally:
        Image.MAX_IMAGE_PIXELS = default
    assert line.startswith(f"error: cannot read image '{tmp_path}/big.png': it is too large: ")

    wide = np.full((3, 1 << 20), 1 / (1 << 20), np.float32)
    assert is_probability(wide) and not is_probability(wide * 2)
    nan = wide.copy()
    nan[1, 5] = np.nan
    assert not is_probability(nan)
