"""A compressed executable is checked and compared in bounded memory: `popef check` inflates it
in chunks and keeps none of it, `--diff` hashes it chunk by chunk (or compares the stored bytes)."""

from __future__ import annotations

import functools
import tracemalloc
import zlib

import pytest

import popef
from popef.format import codec
from popef.format.infos import Codec
from popef_dump.diff import diff
from popef_dump.verify import verify

from ..helpers import read_bytes
from ..test_hostile import blob

INFLATED = 96 << 20  # zeros: about 96 KiB once compressed
# What streaming may hold at once: a few chunks of the reader's CHUNK_SIZE (8 MiB) at most.
BOUND = 40 << 20


@pytest.fixture(scope="module")
def bomb_bytes() -> bytes:
    payload = zlib.compress(bytes(INFLATED), 9)
    md = codec.encode_metadata(popef.Metadata(executable="m"))
    return blob(int(popef.BlobType.METADATA), md) + blob(
        int(popef.BlobType.POPLAR_EXECUTABLE),
        codec.encode_executable_info("m", Codec.ZLIB, INFLATED),
        payload,
    )


def peak_memory(work) -> int:
    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_check_inflates_in_bounded_memory(bomb_bytes):
    reader = read_bytes(bomb_bytes)
    report = None

    def check():
        nonlocal report
        report = verify(reader)

    assert peak_memory(check) < BOUND
    assert report.ok and report.decoded == 2


def test_diff_hashes_in_bounded_memory(bomb_bytes):
    old = read_bytes(bomb_bytes)
    # Same content, stored differently: the digests must be computed, chunk by chunk.
    other = zlib.compress(bytes(INFLATED), 1)
    assert other != zlib.compress(bytes(INFLATED), 9)
    new = read_bytes(
        blob(int(popef.BlobType.METADATA), codec.encode_metadata(popef.Metadata(executable="m")))
        + blob(
            int(popef.BlobType.POPLAR_EXECUTABLE),
            codec.encode_executable_info("m", Codec.ZLIB, INFLATED),
            other,
        )
    )
    for other_file in (new, read_bytes(bomb_bytes)):
        reports: list = []
        compare = functools.partial(
            lambda a, b, out: out.append(diff(a, b, "old", "new")), old, other_file, reports
        )
        assert peak_memory(compare) < BOUND
        assert reports[0].identical


def test_diff_reports_changed_executable_content():
    def file_with(content: bytes) -> popef.Reader:
        with_md = blob(
            int(popef.BlobType.METADATA), codec.encode_metadata(popef.Metadata(executable="m"))
        )
        return read_bytes(
            with_md
            + blob(
                int(popef.BlobType.POPLAR_EXECUTABLE),
                codec.encode_executable_info("m", Codec.ZLIB, len(content)),
                zlib.compress(content),
            )
        )

    report = diff(file_with(b"a" * 1000), file_with(b"b" * 1000), "old", "new")
    [(name, changes)] = report.executables.changed_items
    assert name == "m" and [c.field for c in changes] == ["sha256"]


@pytest.mark.parametrize("content", [b"", b"x", bytes(1000), bytes(range(256)) * 300])
@pytest.mark.parametrize("chunk_size", [1, 7, 4096, 1 << 20])
def test_iter_payload_gives_the_payload_in_bounded_chunks(content, chunk_size):
    for compressed in (False, True):
        info = codec.encode_executable_info(
            "m", Codec.ZLIB if compressed else Codec.NONE, len(content) if compressed else 0
        )
        stored = zlib.compress(content) if compressed else content
        executable = read_bytes(
            blob(int(popef.BlobType.POPLAR_EXECUTABLE), info, stored)
        ).executables()[0]
        chunks = list(executable.iter_payload(chunk_size))
        assert b"".join(chunks) == content == executable.payload()
        assert all(0 < len(chunk) <= chunk_size for chunk in chunks)
        assert b"".join(executable.iter_stored(chunk_size)) == stored
        executable.check_payload()


def executable_of(claimed: int, stored: bytes) -> popef.ExecutableReader:
    info = codec.encode_executable_info("m", Codec.ZLIB, claimed)
    return read_bytes(blob(int(popef.BlobType.POPLAR_EXECUTABLE), info, stored)).executables()[0]


@pytest.mark.parametrize(
    "claimed, stored, message",
    [
        (1000, zlib.compress(b"a" * 1000)[:-6] + b"xxxxxx", "bad compressed executable: "),
        (
            999,
            zlib.compress(b"a" * 1000),
            "expected 999 bytes once decompressed, got more than 999",
        ),
        (1001, zlib.compress(b"a" * 1000), "expected 1001 bytes once decompressed, got 1000"),
        (1000, zlib.compress(b"a" * 1000)[:-4], "got 1000 before the end of the stream"),
        (2**62, zlib.compress(b"a"), "cannot expand to 4611686018427387904"),
    ],
)
def test_streamed_checks_find_what_payload_finds(claimed, stored, message):
    with pytest.raises(popef.FormatError, match="bad compressed executable"):
        executable_of(claimed, stored).payload()
    for check in (lambda e: e.check_payload(), lambda e: list(e.iter_payload(64))):
        with pytest.raises(popef.FormatError, match="bad compressed executable") as info:
            check(executable_of(claimed, stored))
        assert info.value.field == "payload" and info.value.blob_index == 0
        assert message in str(info.value)


def test_check_payload_honours_the_limit():
    executable = executable_of(1 << 20, zlib.compress(bytes(1 << 20)))
    with pytest.raises(popef.FormatError, match="over the limit of 1000") as info:
        executable.check_payload(max_size=1000)
    assert info.value.field == "uncompressed_size"
