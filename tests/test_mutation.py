"""Mutation sweep: thousands of corrupted or truncated variants of valid files.

Whatever the bytes, only PopefError may escape, nothing takes over a second, and memory
stays bounded.
"""

from __future__ import annotations

import io
import random
import resource
import time

import numpy as np
import pytest

import popef
from popef import format as fmt

from .helpers import read_bytes

VARIANTS = 10_000


def _seed_files() -> list[bytes]:
    rng = np.random.default_rng(1)
    files = []
    md = popef.Metadata(
        "net",
        anchors=(
            popef.Anchor(
                "x",
                "h2d_x",
                popef.TensorInfo(popef.DataType.F32, (2, 3)),
                (5,),
                False,
                popef.TensorType.INPUT,
            ),
            popef.Anchor(
                "w",
                "h2d_w",
                popef.TensorInfo(popef.DataType.S16, (3,)),
                (0,),
                False,
                popef.TensorType.INPUT,
            ),
            popef.Anchor(
                "f",
                "infeed",
                popef.TensorInfo(popef.DataType.U8, (2,)),
                (5,),
                False,
                popef.TensorType.INPUT,
            ),
            popef.Anchor(
                "y",
                "anchor_d2h_y",
                popef.TensorInfo(popef.DataType.F16, (2,)),
                (5,),
                True,
                popef.TensorType.OUTPUT,
            ),
        ),
        program_flow=popef.ProgramFlow((0,), (5,), (7,)),
        programs_map={0: "WeightsFromHost", 5: "Program", 7: "WeightsToHost"},
        engine_options=(popef.Option("opt", "1"),),
        seed_handle="h2d_x",
    )
    for compress in (False, True):
        stream = io.BytesIO()
        with popef.Writer(stream) as writer:
            writer.write_metadata(md)
            with writer.create_executable("net", compress=compress) as blob:
                blob.write(bytes(rng.integers(0, 4, 300, dtype=np.uint8)))
            writer.write_tensor("w", np.arange(3, dtype=np.int16))
            writer.write_feed("f", np.arange(8, dtype=np.uint8).reshape(4, 2))
            with writer.create_opaque_blob("popart", "net") as blob:
                blob.write(b"opaque bytes")
        files.append(stream.getvalue())
    return files


def _exercise(data: bytes) -> None:
    """Open and touch everything a user could touch."""
    reader = read_bytes(data)
    for blob in reader.blobs():
        blob.verify()
    reader.metadata()
    for executable in reader.executables():
        executable.payload()
    for tensor in (*reader.tensors(), *reader.feeds()):
        tensor.data().sum()
    for opaque in reader.opaque_blobs():
        opaque.data()
    for model in reader.models():
        model.user_input_anchors()


def _mutate(data: bytes, rng: random.Random) -> bytes:
    buf = bytearray(data)
    kind = rng.randrange(6)
    if kind == 0:  # flip bits
        for _ in range(rng.randint(1, 4)):
            buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
    elif kind == 1:  # extreme bytes
        for _ in range(rng.randint(1, 4)):
            buf[rng.randrange(len(buf))] = rng.choice((0x00, 0xFF, 0x7F, 0x80))
    elif kind == 2:  # truncate
        del buf[rng.randrange(len(buf)) :]
    elif kind == 3:  # insert or delete a run of bytes
        at = rng.randrange(len(buf))
        if rng.random() < 0.5:
            buf[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 70)))
        else:
            del buf[at : at + rng.randint(1, 70)]
    elif kind == 4:  # overwrite a header or info length with a large value
        blob_start = rng.choice(
            [i for i in range(0, len(buf), 64) if buf[i : i + 8] == fmt.MAGIC] or [0]
        )
        at = blob_start + rng.choice((16, 28, 32, 48, 52, 56, 60, 64, 72, 80, 96))
        buf[at : at + 4] = rng.choice(
            (b"\xff\xff\xff\xff", b"\x00\x00\x00\x80", b"\xff\xff\xff\x00", b"\x10\x00\x00\x00")
        )
    else:  # random 4-byte window anywhere in the first blobs' infos
        at = rng.randrange(min(len(buf), 600))
        buf[at : at + 4] = rng.randbytes(4)
    return bytes(buf)


def test_mutated_files_only_raise_popef_errors():
    rng = random.Random(20261125)
    seeds = _seed_files()
    for data in seeds:
        _exercise(data)  # the seeds themselves are valid
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    outcomes = {"ok": 0, "error": 0}
    slowest = 0.0
    for i in range(VARIANTS):
        variant = _mutate(rng.choice(seeds), rng)
        start = time.thread_time()  # CPU time: the work, however loaded the machine
        try:
            _exercise(variant)
            outcomes["ok"] += 1
        except popef.PopefError:
            outcomes["error"] += 1
        except Exception as exc:  # pragma: no cover - the failure we look for
            pytest.fail(f"variant {i} raised {type(exc).__name__}: {exc}")
        slowest = max(slowest, time.thread_time() - start)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert slowest < 1.0, f"a variant took {slowest:.3f} s of CPU time"
    assert grown_kib < 256 * 1024, f"memory grew by {grown_kib} KiB"
    # the sweep must actually hit errors, and must not be all errors
    assert outcomes["error"] > VARIANTS // 2 and outcomes["ok"] > 0, outcomes
