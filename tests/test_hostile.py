"""A corpus of hostile inputs, one defect each: the error class and the key message parts."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest

import popef
from popef import format as fmt
from popef.format import codec
from popef.format.infos import Codec

from .helpers import minimal_model_bytes, read_bytes


def blob(
    blob_type: int,
    info: bytes,
    payload: bytes = b"",
    *,
    version: str = "1.0",
    magic: bytes = fmt.MAGIC,
    total: int | None = None,
    info_size: int | None = None,
    payload_size: int | None = None,
    checksum: int | None = None,
) -> bytes:
    """One blob with every header field overridable."""
    body = info + bytes(fmt.payload_offset(len(info)) - fmt.HEADER_SIZE - len(info)) + payload
    body += bytes(fmt.total_size(len(info), len(payload)) - fmt.HEADER_SIZE - len(body))
    header = fmt.HEADER.build(
        dict(
            magic=magic,
            version=version,
            total_size=fmt.HEADER_SIZE + len(body) if total is None else total,
            blob_type=blob_type,
            flags=0,
            info_size=len(info) if info_size is None else info_size,
            payload_size=len(payload) if payload_size is None else payload_size,
            checksum=zlib.crc32(body) if checksum is None else checksum,
            reserved=0,
        )
    )
    return header + body


def metadata_blob(md: popef.Metadata, **kw) -> bytes:
    return blob(popef.BlobType.METADATA, codec.encode_metadata(md), **kw)


def executable_blob(name: str, payload: bytes = b"exe", **kw) -> bytes:
    return blob(
        popef.BlobType.POPLAR_EXECUTABLE,
        codec.encode_executable_info(name, Codec.NONE, 0),
        payload,
        **kw,
    )


def tensor_blob(name: str, array: np.ndarray, **kw) -> bytes:
    info = popef.TensorDataInfo(name, popef.TensorInfo.of(array))
    return blob(
        popef.BlobType.DATA_TENSOR, codec.encode_tensor_data_info(info), array.tobytes(), **kw
    )


def anchor(
    name: str,
    dtype=popef.DataType.F32,
    shape=(2,),
    ttype=popef.TensorType.INPUT,
    handle=None,
    programs=(5,),
) -> popef.Anchor:
    return popef.Anchor(
        name, handle or f"h2d_{name}", popef.TensorInfo(dtype, shape), programs, False, ttype
    )


def u32(n: int) -> bytes:
    return struct.pack("<I", n)


GOOD_MD = popef.Metadata("m", anchors=(anchor("x"), anchor("w", programs=(0,))))
GOOD = metadata_blob(GOOD_MD) + executable_blob("m")

# (id, bytes, error class, message parts)
FORMAT_CASES = [
    (
        "bad magic",
        b"This is not cache" + bytes(47),
        popef.BadMagicError,
        ["not a PopEF blob", "magic", "offset 0x0", "blob #0"],
    ),
    (
        "bad magic in second blob",
        GOOD + b"\x89PopEF\r\r" + GOOD[8:],
        popef.BadMagicError,
        ["blob #2", f"offset {len(GOOD):#x}"],
    ),
    (
        "truncated header",
        GOOD[:30],
        popef.TruncatedError,
        ["truncated blob header", "48 bytes needed but 30 remain"],
    ),
    (
        "truncated blob",
        GOOD[:-64],
        popef.PartialTailError,
        [
            "partial blob at the end of the file",
            "header says 128 bytes but 64 remain",
            "1 complete blob before offset 0xc0",
            "blob #1",
        ],
    ),
    (
        "truncated first blob",
        GOOD[:64],
        popef.TruncatedError,
        ["truncated blob: header says 192 bytes but 64 remain", "blob #0"],
    ),
    (
        "header never written after a blob",
        GOOD + bytes(128),
        popef.PartialTailError,
        [
            "partial blob at the end",
            "its header was never written",
            "2 complete blobs",
            f"offset {len(GOOD):#x}",
        ],
    ),
    (
        "partial header after a blob",
        GOOD + fmt.MAGIC + bytes(8),
        popef.PartialTailError,
        ["16 bytes where a 48-byte header belongs", f"before offset {len(GOOD):#x}"],
    ),
    # a provisional header (total_size 0): the blob's writer never finished it, whatever follows
    (
        "provisional header after a blob",
        GOOD + executable_blob("x", total=0, payload_size=0, checksum=0) + GOOD,
        popef.PartialTailError,
        [
            "partial blob at the end",
            "its writer never finished it",
            "2 complete blobs",
            f"before offset {len(GOOD):#x}",
            "field 'total_size'",
        ],
    ),
    (
        "provisional header first",
        executable_blob("x", total=0, payload_size=0, checksum=0),
        popef.PartialTailError,
        ["its writer never finished it", "0 complete blobs before offset 0x0", "cut the bytes"],
    ),
    (
        "zero total_size with a checksum",
        GOOD + executable_blob("x", total=0, payload_size=0),
        popef.FormatError,
        ["bad blob size 0", "blob #2"],
    ),
    (
        "zero header before a valid blob",
        GOOD[:192] + bytes(128) + GOOD,
        popef.BadMagicError,
        [
            "blob header is all zeros",
            "a valid blob header follows at offset 0x140",
            "damaged in the middle",
            "blob #1",
            "offset 0xc0",
        ],
    ),
    (
        "size past end before a valid blob",
        GOOD[:192] + executable_blob("m", total=1 << 40) + GOOD,
        popef.FormatError,
        [
            "bad blob size 1099511627776",
            "a valid blob header follows at offset 0x140",
            "blob #1",
            "field 'total_size'",
        ],
    ),
    # files given by mistake: say what they are
    (
        "a png image",
        b"\x89PNG\r\n\x1a\n" + bytes(100),
        popef.BadMagicError,
        ["this is a PNG image, not a PopEF file", "offset 0x0", "blob #0"],
    ),
    (
        "a jpeg image",
        b"\xff\xd8\xff\xe0" + bytes(100),
        popef.BadMagicError,
        ["this is a JPEG image, not a PopEF file"],
    ),
    ("an npz archive", b"PK\x03\x04" + bytes(100), popef.BadMagicError, ["a ZIP archive"]),
    (
        "an npy array",
        b"\x93NUMPY\x01\x00" + bytes(100),
        popef.BadMagicError,
        ["a NumPy array (.npy)"],
    ),
    (
        "a text file",
        b'name: "mnist"\nplatform: "poplar"\n' * 4,
        popef.BadMagicError,
        ["not a PopEF file (it starts with text 'name: \"mnist\"')", "offset 0x0"],
    ),
    (
        "a short text file",
        b"hello\n",
        popef.BadMagicError,
        ["not a PopEF file (it starts with text 'hello')", "blob #0"],
    ),
    (
        "size past end",
        metadata_blob(GOOD_MD, total=1 << 40),
        popef.TruncatedError,
        ["header says 1099511627776 bytes"],
    ),
    (
        "size smaller than header",
        metadata_blob(GOOD_MD, total=0),
        popef.FormatError,
        ["bad blob size 0"],
    ),
    (
        "size not aligned",
        metadata_blob(GOOD_MD, total=100),
        popef.FormatError,
        ["bad blob size 100", "multiple of 64"],
    ),
    (
        "sizes disagree",
        executable_blob("m", payload_size=500),
        popef.FormatError,
        ["inconsistent blob sizes", "payload_size"],
    ),
    (
        "huge info size",
        metadata_blob(GOOD_MD, info_size=2**32 - 1),
        popef.FormatError,
        ["exceeds the limit"],
    ),
    (
        "unknown major version",
        metadata_blob(GOOD_MD, version="2.0"),
        popef.UnsupportedVersionError,
        ["unsupported blob version 2.0", "offset 0x8"],
    ),
    (
        "garbage version",
        metadata_blob(GOOD_MD, version="v1"),
        popef.FormatError,
        ["bad version string", "MAJOR.MINOR"],
    ),
]

# Defects found when a blob's info is decoded: (id, bytes, accessor, class, message parts)
INFO_CASES = [
    (
        "huge anchor count",
        blob(1, codec.encode_metadata(popef.Metadata("m"))[:-4] + u32(2**31)),
        "metadata",
        popef.FormatError,
        ["count 2147483648", "anchors"],
    ),
    (
        "huge string length",
        blob(1, u32(2**30) + b"abc"),
        "metadata",
        popef.FormatError,
        ["exceeds the limit", "executable"],
    ),
    (
        "string past end",
        blob(1, u32(100) + b"abc"),
        "metadata",
        popef.FormatError,
        ["string of 100 bytes but 3 remain"],
    ),
    (
        "invalid utf-8",
        blob(1, u32(2) + b"\xff\xfe"),
        "metadata",
        popef.FormatError,
        ["not valid UTF-8"],
    ),
    (
        "trailing info bytes",
        blob(1, codec.encode_metadata(GOOD_MD) + b"\0"),
        "metadata",
        popef.FormatError,
        ["1 unexpected bytes"],
    ),
    (
        "rank over limit",
        blob(2, u32(1) + b"w" + b"\x03" + u32(33) + bytes(33 * 8)),
        "tensors",
        popef.FormatError,
        ["count 33 exceeds the limit of 32"],
    ),
    (
        "unknown dtype",
        blob(2, u32(1) + b"w" + b"\x63" + u32(0)),
        "tensors",
        popef.FormatError,
        ["unknown data type 99"],
    ),
    (
        "negative dimension",
        blob(2, u32(1) + b"w" + b"\x03" + u32(1) + struct.pack("<q", -5)),
        "tensors",
        popef.FormatError,
        ["shape must be in [0"],
    ),
    (
        "tensor payload wrong size",
        blob(
            2,
            codec.encode_tensor_data_info(
                popef.TensorDataInfo("w", popef.TensorInfo(popef.DataType.F32, (4,)))
            ),
            b"\0" * 8,
        ),
        "tensors",
        popef.FormatError,
        ["needs 16 bytes but the payload has 8"],
    ),
    (
        "unknown codec",
        blob(0, u32(1) + b"m" + b"\x07" + bytes(8), b"x"),
        "executables",
        popef.FormatError,
        ["unknown executable codec 7"],
    ),
    (
        "uncompressed size with codec none",
        blob(0, codec.encode_executable_info("m", Codec.NONE, 5), b"x"),
        "executables",
        popef.FormatError,
        ["must be 0 without compression"],
    ),
    (
        "unknown anchor type",
        blob(1, codec.encode_metadata(popef.Metadata("m", anchors=(anchor("a"),)))[:-1] + b"\x09"),
        "metadata",
        popef.FormatError,
        ["unknown tensor type 9"],
    ),
    (
        "duplicate program name",
        blob(
            1,
            codec.METADATA.build(
                dict(
                    codec.METADATA.parse(codec.encode_metadata(GOOD_MD)),
                    programs_map=[dict(index=1, name="a"), dict(index=1, name="b")],
                )
            ),
        ),
        "metadata",
        popef.FormatError,
        ["names program 1 twice"],
    ),
]


@pytest.mark.parametrize(
    "data, error, parts", [c[1:] for c in FORMAT_CASES], ids=[c[0] for c in FORMAT_CASES]
)
def test_format_defects_are_refused_on_open(data, error, parts):
    with pytest.raises(error) as info:
        read_bytes(data)
    for part in parts:
        assert part in str(info.value)
    assert info.value.offset is not None and info.value.blob_index is not None


@pytest.mark.parametrize(
    "data, accessor, error, parts", [c[1:] for c in INFO_CASES], ids=[c[0] for c in INFO_CASES]
)
def test_info_defects_are_refused_on_access(data, accessor, error, parts):
    reader = read_bytes(data)
    with pytest.raises(error) as info:
        getattr(reader, accessor)()
    for part in parts:
        assert part in str(info.value)
    assert "blob #0" in str(info.value) and "offset 0x" in str(info.value)


def test_bad_checksum_is_found_by_verify():
    data = bytearray(GOOD)
    data[60] ^= 0xFF  # inside the metadata info
    reader = read_bytes(bytes(data))
    with pytest.raises(popef.ChecksumError, match="checksum mismatch.*blob #0"):
        reader.blobs()[0].verify()
    with pytest.raises(popef.ChecksumError):
        reader.verify()


def test_corrupt_compressed_executable():
    payload = zlib.compress(b"a" * 1000)
    broken = blob(0, codec.encode_executable_info("m", Codec.ZLIB, 1000), payload[:-6] + b"xxxxxx")
    with pytest.raises(popef.FormatError, match="bad compressed executable"):
        read_bytes(broken).executables()[0].payload()
    bomb = blob(0, codec.encode_executable_info("m", Codec.ZLIB, 2**62), payload)
    with pytest.raises(popef.FormatError, match="cannot expand"):
        read_bytes(bomb).executables()[0].payload()
    short = blob(0, codec.encode_executable_info("m", Codec.ZLIB, 999), payload)
    with pytest.raises(popef.FormatError, match="expected 999 bytes"):
        read_bytes(short).executables()[0].payload()


LINK_CASES = [
    (
        "duplicate executable names",
        GOOD + executable_blob("m"),
        ["executable names must be unique", "'m'"],
    ),
    (
        "empty executable name",
        metadata_blob(popef.Metadata("")) + executable_blob(""),
        ["must not be empty"],
    ),
    (
        "dangling metadata",
        GOOD + metadata_blob(popef.Metadata("ghost")),
        ["metadata must name an existing executable", "'ghost'"],
    ),
    ("executable without metadata", executable_blob("m"), ["exactly one metadata", "has 0"]),
    ("two metadata", GOOD + metadata_blob(GOOD_MD), ["exactly one metadata", "has 2"]),
    (
        "dangling opaque",
        GOOD + blob(4, codec.encode_opaque_info(popef.OpaqueInfo("popart", "x"))),
        ["opaque blobs must name an existing executable", "'popart'", "'x'"],
    ),
    (
        "tensor dtype differs",
        GOOD + tensor_blob("w", np.zeros(2, np.float64)),
        ["must match its anchor's dtype and shape", "'w'", "F64[2]", "F32[2]"],
    ),
    (
        "tensor shape differs",
        GOOD + tensor_blob("w", np.zeros(3, np.float32)),
        ["F32[3]", "F32[2]"],
    ),
    (
        "tensor for an output",
        metadata_blob(popef.Metadata("m", anchors=(anchor("y", ttype=popef.TensorType.OUTPUT),)))
        + executable_blob("m")
        + tensor_blob("y", np.zeros(2, np.float32)),
        ["must feed an input", "'y'"],
    ),
    (
        "tensor matching nothing",
        GOOD + tensor_blob("nope", np.zeros(2, np.float32)),
        ["matches no anchor", "'nope'"],
    ),
    (
        "two tensors for one anchor",
        GOOD + tensor_blob("w", np.zeros(2, np.float32)) + tensor_blob("w", np.ones(2, np.float32)),
        ["at most one", "'w'"],
    ),
    (
        "seed handle without anchor",
        metadata_blob(popef.Metadata("m", seed_handle="h2d_seed")) + executable_blob("m"),
        ["seed handle", "'h2d_seed'"],
    ),
    (
        "duplicate anchor names",
        metadata_blob(popef.Metadata("m", anchors=(anchor("a"), anchor("a"))))
        + executable_blob("m"),
        ["anchor names must be unique", "'a'"],
    ),
]


@pytest.mark.parametrize("data, parts", [c[1:] for c in LINK_CASES], ids=[c[0] for c in LINK_CASES])
def test_broken_links_raise_model_error(data, parts):
    reader = read_bytes(data)
    with pytest.raises(popef.ModelError) as info:
        reader.models()
    for part in parts:
        assert part in str(info.value)


def test_unknown_blob_types_and_newer_minor_versions_are_kept():
    unknown = blob(77, b"future info", b"future payload")
    newer = metadata_blob(GOOD_MD, info_size=None, version="1.9")
    # a newer minor version may append fields to an info: they are skipped
    newer_with_field = blob(1, codec.encode_metadata(GOOD_MD) + b"new field", version="1.9")
    data = minimal_model_bytes() + unknown + newer_with_field
    reader = read_bytes(data)
    kinds = [b.type_name for b in reader.blobs()]
    assert kinds == ["METADATA", "POPLAR_EXECUTABLE", "UNKNOWN(77)", "METADATA"]
    assert reader.metadata()[1] == GOOD_MD
    assert reader.unknown_blobs()[0].read_payload() == b"future payload"
    stream = io.BytesIO()
    with popef.Writer(stream) as writer:
        for b in reader.blobs():
            writer.copy_blob(b)
    assert stream.getvalue() == data
    assert read_bytes(newer).metadata() == [GOOD_MD]


def test_reader_keeps_earlier_sources_when_a_later_one_is_bad():
    reader = read_bytes(GOOD)
    with pytest.raises(popef.BadMagicError):
        reader.parse_bytes(b"\0" * 64, name="bad.popef")
    assert len(reader.blobs()) == 2
    with pytest.raises(popef.BadMagicError, match="in bad.popef"):
        reader.parse_bytes(b"\0" * 64, name="bad.popef")


def test_missing_file_is_a_popef_error(tmp_path):
    with pytest.raises(popef.PopefError, match="cannot read"):
        popef.Reader().parse_file(tmp_path / "nope.popef")
    with pytest.raises(popef.PopefError, match="cannot read"):
        popef.Reader().parse_file(tmp_path)


@pytest.mark.parametrize(
    "call",
    [
        lambda r: r.parse_file("bad\0path"),
        lambda r: r.parse_file(42),
        lambda r: r.parse_stream(object()),
        lambda r: r.parse_stream(io.StringIO("text")),
        lambda r: r.parse_stream(io.StringIO("text" * 100)),
        lambda r: r.parse_bytes(np.zeros((4, 4))[:, ::2]),
        lambda r: r.parse_bytes("text"),
    ],
)
def test_wrong_arguments_raise_popef_errors(call):
    with pytest.raises(popef.PopefError):
        call(popef.Reader())
