"""Model inputs from files: ``.npy``, ``.npz`` and images (PNG, JPEG, PGM... through Pillow).

Used by ``popef run``. An image is converted to the shape of the input it feeds: greyscale
when the input has one channel (RGB for 3, RGBA for 4), resized to its height and width, laid
out channels-first (``[1, C, H, W]``, ``[C, H, W]``) or channels-last (``[1, H, W, C]``,
``[H, W, C]``) as the input's shape says, and, for a floating-point input, scaled to [0, 1].
"""

from __future__ import annotations

import math
import os
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from ..errors import ExecutionError, PopefError
from ..types import DataType

__all__ = [
    "ImageLayout",
    "image_layout",
    "load_array_file",
    "load_image",
    "image_to_array",
    "fit_to_input",
    "fits_input",
    "IMAGE_SUFFIXES",
    "ARRAY_SUFFIXES",
]

IMAGE_SUFFIXES = frozenset(
    {
        ".png",
        ".jpg",
        ".jpeg",
        ".pgm",
        ".ppm",
        ".pbm",
        ".pnm",
        ".bmp",
        ".gif",
        ".tif",
        ".tiff",
        ".webp",
    }
)
ARRAY_SUFFIXES = frozenset({".npy", ".npz"})
_CHANNELS = (1, 3, 4)
_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


@dataclass(frozen=True)
class ImageLayout:
    """How one image fills an input of shape ``shape``."""

    shape: tuple[int, ...]
    channels: int
    height: int
    width: int
    channels_last: bool


def image_layout(shape: tuple[int, ...], name: str = "input") -> ImageLayout:
    """Where channels, height and width are in an input's shape (one image, batch of 1)."""
    shape = tuple(shape)

    def fail(why: str) -> ExecutionError:
        return ExecutionError(f"input '{name}' of shape {list(shape)} cannot take an image: {why}")

    dims = list(shape)
    if len(dims) == 4:
        if dims[0] != 1:
            raise fail(f"it takes a batch of {dims[0]}; give the batch as .npy or .npz")
        dims = dims[1:]
    if len(dims) == 3:
        if dims[0] in _CHANNELS:
            return ImageLayout(shape, dims[0], dims[1], dims[2], False)
        if dims[2] in _CHANNELS:
            return ImageLayout(shape, dims[2], dims[0], dims[1], True)
        raise fail("no dimension of 1, 3 or 4 channels before or after height and width")
    if len(dims) == 2:
        if dims[0] == 1 and math.isqrt(dims[1]) ** 2 == dims[1] and dims[1] > 1:
            side = math.isqrt(dims[1])  # a flattened square greyscale image
            return ImageLayout(shape, 1, side, side, False)
        return ImageLayout(shape, 1, dims[0], dims[1], False)
    raise fail("expected [H, W], [C, H, W], [H, W, C] or the same with a batch of 1")


def load_image(path: str | os.PathLike):
    """Open an image with Pillow (a clear error when Pillow is not installed)."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise ExecutionError("reading images needs Pillow: pip install 'popef[images]'") from None
    try:
        with Image.open(path) as image:
            return image.copy()  # loads the pixels; the file is closed on leaving
    except Image.DecompressionBombError as exc:  # Pillow's guard against pixel bombs
        raise ExecutionError(
            f"cannot read image '{os.fspath(path)}': it is too large: {exc}"
        ) from None
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise ExecutionError(f"cannot read image '{os.fspath(path)}': {exc}") from exc


def image_to_array(
    image, shape: tuple[int, ...], dtype: DataType, name: str = "input"
) -> np.ndarray:
    """An image (a Pillow image) converted to an input of ``shape`` and ``dtype``."""
    from PIL import Image

    layout = image_layout(shape, name)
    scale = 255.0
    if layout.channels == 1 and image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        image = image.convert("I")  # 16-bit greyscale (PGM with maxval > 255)
        scale = 65535.0
        if dtype.numpy_dtype.kind != "f":
            image = image.point(lambda v: v / 257).convert("L")
            scale = 255.0
    else:
        if layout.channels == 1 and image.mode == "F":
            image = image.convert("I")
        image = image.convert(_MODES[layout.channels])
    if image.size != (layout.width, layout.height):
        image = image.resize((layout.width, layout.height), Image.BILINEAR)
    pixels = np.asarray(image)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if not layout.channels_last:
        pixels = pixels.transpose(2, 0, 1)
    target = dtype.numpy_dtype
    if target.kind == "f":
        values = pixels.astype(np.float64) / scale
    elif target.kind in "iub":
        values = pixels
    else:  # pragma: no cover - every DataType is f, i, u or b
        raise ExecutionError(f"input '{name}' has dtype {dtype.name}, which images cannot fill")
    return np.ascontiguousarray(values.astype(target).reshape(shape))


_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"  # an .npz file is a zip archive


def _what_it_is(path: str, head: bytes) -> str:
    """What a file that is not an .npy/.npz file seems to be, for the error message."""
    from ..blob import known_file_kind
    from ..reader import Reader

    kind = known_file_kind(head)
    if kind is not None:
        return f"it is {kind}" + (" without an image suffix" if kind.endswith(" image") else "")
    if not head:
        return "it is empty"
    try:
        with Reader() as reader:
            reader.parse_file(path)
        return "it is a PopEF file (a model, not an input)"
    except PopefError:
        pass
    if all(byte >= 0x20 or byte in b"\t\n\r" for byte in head):
        return "it is a text file"
    return "it does not start with the .npy or .npz signature"


ArrayCheck = Callable[[str | None, tuple[int, ...], np.dtype], None]


def load_array_file(
    path: str | os.PathLike, check: ArrayCheck | None = None
) -> np.ndarray | Mapping[str, np.ndarray]:
    """An ``.npy`` file's array or an ``.npz`` file's arrays by name (no pickles).

    ``check(name, shape, dtype)`` sees each array's header (``name`` None for an ``.npy``)
    before its data is read and may refuse it with :class:`ExecutionError`: a few bytes can
    declare an array of any size, which ``numpy.load`` would allocate first.
    """
    text = os.fspath(path)
    try:
        with open(text, "rb") as f:
            head = f.read(16)
            if not head.startswith((_NPY_MAGIC, _ZIP_MAGIC)):
                raise ExecutionError(
                    f"cannot read '{text}' as .npy or .npz: {_what_it_is(text, head)}"
                )
            f.seek(0)
            if check is not None:
                _check_headers(f, head.startswith(_ZIP_MAGIC), check)
                f.seek(0)
            loaded = np.load(f, allow_pickle=False)
            if isinstance(loaded, np.lib.npyio.NpzFile):
                with loaded:
                    return {key: loaded[key] for key in loaded.files}
            return loaded
    except OSError as exc:
        raise ExecutionError(f"cannot read '{text}': {exc.strerror or exc}") from exc
    except (ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ExecutionError(f"cannot read '{text}' as .npy or .npz: {exc}") from exc


def _check_headers(f, is_zip: bool, check: ArrayCheck) -> None:
    """Read the header of the ``.npy`` file or of every ``.npy`` member of the ``.npz`` file
    ``f`` and pass its shape and dtype to ``check``."""
    if not is_zip:
        shape, dtype = _npy_header(f)
        check(None, shape, dtype)
        return
    with zipfile.ZipFile(f) as archive:
        for member in archive.namelist():
            if member.endswith(".npy"):
                with archive.open(member) as stream:
                    shape, dtype = _npy_header(stream)
                check(member[:-4], shape, dtype)


#: the longest .npy header read (numpy's own limit for headers it trusts)
NPY_HEADER_LIMIT = 10_000


def _npy_header(stream) -> tuple[tuple[int, ...], np.dtype]:
    fmt = np.lib.format
    version = fmt.read_magic(stream)
    readers = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}
    if version not in readers:  # 3.0 (UTF-8 field names): numpy has no public reader
        raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]}")
    if version == (2, 0):  # a 4-byte header length: numpy would read that much before checking
        start = stream.tell()
        length = int.from_bytes(stream.read(4), "little")
        if length > NPY_HEADER_LIMIT:
            raise ValueError(
                f"the .npy header is {length} bytes long, more than {NPY_HEADER_LIMIT}"
            )
        stream.seek(start)
    shape, _fortran_order, dtype = readers[version](stream)
    return tuple(shape), dtype


def fits_input(shape: tuple[int, ...], step_shape: tuple[int, ...]) -> bool:
    """Whether an array of ``shape`` can feed an input of ``step_shape``: one step's elements
    (reshaped), or ``n`` steps stacked on the leading axis (as :func:`fit_to_input` takes)."""
    if math.prod(shape) == math.prod(step_shape):
        return True
    return (
        len(shape) == len(step_shape) > 0
        and shape[1:] == step_shape[1:]
        and step_shape[0] > 0
        and shape[0] % step_shape[0] == 0
    )


def fit_to_input(
    array: np.ndarray, shape: tuple[int, ...], dtype: DataType, name: str
) -> np.ndarray:
    """What a command line can forgive: a same-kind dtype cast, and a missing batch of 1.

    An array holding exactly one step's elements takes the input's shape; ``n`` steps stacked
    on the leading axis are left for the runner to check. Float data does not silently become
    integers.
    """
    target = dtype.numpy_dtype
    if array.dtype != target:
        if not np.can_cast(array.dtype, target, casting="same_kind"):
            raise ExecutionError(
                f"input '{name}' is {array.dtype}, which does not convert to "
                f"{dtype.name} without losing its kind"
            )
        array = array.astype(target)
    steps = len(array.shape) == len(shape) and shape and shape[0] and array.shape[1:] == shape[1:]
    if array.shape != tuple(shape) and array.size == math.prod(shape) and not steps:
        array = array.reshape(shape)
    return array
