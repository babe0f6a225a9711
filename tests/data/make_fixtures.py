"""Build the PopEF fixtures of the popef_dump tests, deterministically, with the library.

Run ``python tests/data/make_fixtures.py`` to regenerate ``tests/data/fixtures/*.popef``; then
``pytest tests/popef_dump --update-goldens`` to regenerate the golden outputs. The same seeds
always give the same bytes (a test checks that the committed fixtures are up to date).

Valid files:
  executable.popef       the tutorial MNIST model as PopART writes it: input "input", output
                         "softmax/Softmax:0" in program 5, weights in program 0 with their data
  executable_v2.popef    the same model changed a little (for --diff)
  split_executable.popef + split_variables.popef
                         the MNIST model with its weights in a second file (PopART's
                         executable.popef + variables.popef)
  multi.popef            two models in one file
  compressed.popef       a model whose executable is stored compressed
  full.popef             feeds, opaque blobs, options, a seed handle, replication, every kind
                         of anchor and tensors of several dtypes (NaN, inf, scalar, empty)
  unknown_blob.popef     a blob of a type this library does not know, between known ones
  empty.popef            no blobs at all (a valid, empty PopEF file)
  hostile_names.popef    valid, but its names carry rich markup, ANSI escapes and controls
Broken files:
  bad_magic.popef        blob #1 does not start with the magic
  truncated.popef        the file ends inside its last blob
  bad_version.popef      blob #0 has major version 2
  bad_metadata.popef     the metadata info claims more anchors than its bytes hold
  bad_checksum.popef     a byte of tensor data changed after the checksum was taken
  dangling.popef         valid bytes, broken linking rules
"""

from __future__ import annotations

import io
import os
import sys
import zlib

import numpy as np

import popef
from popef import (
    Anchor,
    DataType,
    Metadata,
    Option,
    ProgramFlow,
    TensorInfo,
    TensorType,
)
from popef import format as fmt

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "fixtures")

INPUT, OUTPUT, UNKNOWN = TensorType.INPUT, TensorType.OUTPUT, TensorType.UNKNOWN
F32 = DataType.F32

# PopART names an executable after the hash of its program.
MNIST_EXECUTABLE = "5930426818474381236"
MNIST_WEIGHTS = {
    "conv1.weight": (4, 1, 3, 3),
    "conv1.bias": (4,),
    "fc.weight": (10, 16),
    "fc.bias": (10,),
}


def fake_executable(seed: int, size: int = 512) -> bytes:
    """Bytes that stand for a compiled Poplar executable."""
    rng = np.random.default_rng(seed)
    return b"fake poplar executable\0" + rng.integers(0, 256, size, dtype=np.uint8).tobytes()


def weights(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal(shape).astype(np.float32)
            for name, shape in MNIST_WEIGHTS.items()}


def weight_anchor(name: str, array: np.ndarray, anchor_type=INPUT, programs=(0,)) -> Anchor:
    return Anchor(name, f"h2d_{name}", TensorInfo.of(array), programs=programs, type=anchor_type)


def mnist_metadata(params: dict[str, np.ndarray], batch: int = 1, extra=(), **fields) -> Metadata:
    anchors = (
        Anchor("input", "h2d_input", TensorInfo(F32, (batch, 1, 28, 28)), programs=(5,),
               type=INPUT),
        Anchor("softmax/Softmax:0", "anchor_d2h_softmax/Softmax:0", TensorInfo(F32, (batch, 10)),
               programs=(5,), type=OUTPUT),
        *(weight_anchor(name, array) for name, array in params.items()),
        *extra,
    )
    return Metadata(
        executable=MNIST_EXECUTABLE,
        anchors=anchors,
        program_flow=ProgramFlow(load=(0,), main=(5,), save=()),
        programs_map=dict(popef.POPART_PROGRAM_NAMES),
        **fields,
    )


def write(path: str, *, executables=(), metadata=(), tensors=(), feeds=(), opaque=()) -> None:
    """One file: executables ``(name, bytes, compress)``, then metadata, tensors, feeds, opaque."""
    with popef.Writer(path) as writer:
        for name, payload, compress in executables:
            with writer.create_executable(name, compress=compress) as blob:
                blob.write(payload)
        for md in metadata:
            writer.write_metadata(md)
        for name, array in tensors:
            writer.write_tensor(name, array)
        for name, array in feeds:
            writer.write_feed(name, array)
        for name, executable, payload in opaque:
            with writer.create_opaque_blob(name, executable) as blob:
                blob.write(payload)


def mnist(path: str) -> None:
    params = weights(seed=1)
    write(path, executables=[(MNIST_EXECUTABLE, fake_executable(1), False)],
          metadata=[mnist_metadata(params)], tensors=params.items())


def mnist_v2(path: str) -> None:
    """executable.popef, recompiled: batch 4, more device iterations, a new output anchor,
    conv1.bias dropped, fc.weight retrained, fc.bias of another shape."""
    params = weights(seed=1)
    del params["conv1.bias"]
    params["fc.weight"] = weights(seed=2)["fc.weight"]
    params["fc.bias"] = np.zeros((1, 10), np.float32)
    logits = Anchor("logits", "anchor_d2h_logits", TensorInfo(F32, (4, 10)), programs=(5,),
                    type=OUTPUT)
    md = mnist_metadata(params, batch=4, extra=(logits,), device_iterations=8,
                        engine_options=(Option("opt.enableStableNorm", "true"),))
    write(path, executables=[(MNIST_EXECUTABLE, fake_executable(2), False)],
          metadata=[md], tensors=params.items())


def split(executable_path: str, variables_path: str) -> None:
    params = weights(seed=1)
    write(executable_path, executables=[(MNIST_EXECUTABLE, fake_executable(1), False)],
          metadata=[mnist_metadata(params)],
          opaque=[("popart", MNIST_EXECUTABLE, b"popart session state\0" * 4)])
    write(variables_path, tensors=params.items())


def multi(path: str) -> None:
    rng = np.random.default_rng(3)
    enc_w = rng.standard_normal((8, 4)).astype(np.float32)
    dec_w = rng.standard_normal((4, 8)).astype(np.float16)
    enc = Metadata(
        executable="encoder",
        anchors=(
            Anchor("tokens", "h2d_tokens", TensorInfo(DataType.S32, (2, 8)), (5,), type=INPUT),
            Anchor("enc.w", "h2d_enc.w", TensorInfo.of(enc_w), (0,), type=INPUT),
            Anchor("hidden", "anchor_d2h_hidden", TensorInfo(F32, (2, 4)), (5,), type=OUTPUT),
        ),
        program_flow=ProgramFlow(load=(0,), main=(5,)),
        programs_map={0: "WeightsFromHost", 5: "Program"},
    )
    dec = Metadata(
        executable="decoder",
        anchors=(
            Anchor("hidden", "h2d_hidden", TensorInfo(F32, (2, 4)), (1,), type=INPUT),
            Anchor("dec.w", "h2d_dec.w", TensorInfo.of(dec_w), (0,), type=INPUT),
            Anchor("logits", "anchor_d2h_logits", TensorInfo(DataType.F16, (2, 8)), (1,),
                   type=OUTPUT),
        ),
        program_flow=ProgramFlow(load=(0,), main=(1,)),
        programs_map={0: "load", 1: "decode"},
        ipu_version=21,
        num_ipus=2,
    )
    write(path, executables=[("encoder", fake_executable(4, 256), False),
                             ("decoder", fake_executable(5, 256), False)],
          metadata=[enc, dec], tensors=[("enc.w", enc_w), ("dec.w", dec_w)])


def compressed(path: str) -> None:
    md = Metadata(
        executable="tiny_compressed",
        anchors=(
            Anchor("x", "h2d_x", TensorInfo(F32, (3,)), (5,), type=INPUT),
            Anchor("y", "anchor_d2h_y", TensorInfo(F32, (3,)), (5,), type=OUTPUT),
        ),
        program_flow=ProgramFlow(main=(5,)),
        programs_map={5: "Program"},
    )
    write(path, executables=[("tiny_compressed", b"fake poplar executable\0" * 400, True)],
          metadata=[md])


def full(path: str) -> None:
    rng = np.random.default_rng(6)
    w = rng.standard_normal((3, 4)).astype(np.float32)
    odd = np.array([1.5, np.nan, -np.inf, 2.0, np.nan, 0.25], dtype=np.float32)
    half = rng.standard_normal((2, 3)).astype(np.float16)
    counts = rng.integers(-100, 100, (5,)).astype(np.int32)
    mask = np.array([True, False, True, True])
    fp8 = np.arange(8, dtype=np.uint8)  # stored as F8143 (raw bytes)
    step = np.array(42, dtype=np.int64)  # a scalar
    empty = np.zeros((0, 3), dtype=np.float32)
    images = rng.integers(0, 256, (6, 2, 4), dtype=np.uint8)  # 6 items of [2, 4]
    tensors = {"w": w, "odd": odd, "half": half, "counts": counts, "mask": mask,
               "step": step, "empty": empty}
    anchors = (
        Anchor("images", "h2d_images", TensorInfo(DataType.U8, (2, 4)), (5,), True, INPUT),
        Anchor("labels", "h2d_labels", TensorInfo(DataType.S32, (2,)), (5,), True, INPUT),
        Anchor("randomSeed", "h2d_randomSeed", TensorInfo(DataType.U32, (2,)), (2,), False,
               INPUT),
        Anchor("w", "h2d_w", TensorInfo.of(w), (0,), False, INPUT),
        Anchor("fp8", "h2d_fp8", TensorInfo(DataType.F8143, (8,)), (0,), False, UNKNOWN),
        *(Anchor(name, f"h2d_{name}", TensorInfo.of(a), (0,), False, UNKNOWN)
          for name, a in tensors.items() if name != "w"),
        Anchor("loss", "anchor_d2h_loss", TensorInfo(F32, ()), (5,), True, OUTPUT),
        Anchor("probs", "anchor_d2h_probs", TensorInfo(F32, (2, 10)), (), True, OUTPUT),
        Anchor("w/grad", "d2h_w/grad", TensorInfo.of(w), (7,), False, OUTPUT),
    )
    md = Metadata(
        executable="full",
        anchors=anchors,
        program_flow=ProgramFlow(load=(0, 2), main=(5,), save=(7,)),
        programs_map={0: "WeightsFromHost", 2: "RandomSeedFromHost", 5: "Program",
                      7: "WeightsToHost"},
        replication_factor=4,
        num_ipus=4,
        ipu_version=21,
        is_pod=True,
        num_processes=2,
        is_inference=False,
        seed_handle="h2d_randomSeed",
        engine_options=(Option("opt.enableProfiling", "false"),
                        Option("target.syncReplicasIndependently", "true")),
        device_options=(Option("numIPUs", "4"), Option("ipuLinkDomainSize", "64")),
        device_iterations=16,
    )
    with popef.Writer(path) as writer:
        with writer.create_opaque_blob("popart", "full") as blob:
            blob.write(b"popart state\0" * 10)
        with writer.create_executable("full") as blob:
            blob.write(fake_executable(6, 300))
        writer.write_metadata(md)
        for name, array in tensors.items():
            writer.write_tensor(name, array)
        with writer.create_tensor_data(popef.TensorDataInfo("fp8", TensorInfo(DataType.F8143,
                                                                               (8,)))) as blob:
            blob.write(fp8)
        writer.write_feed("images", images)
        with writer.create_opaque_blob("poptorch", "full") as blob:
            blob.write(b"\x00\x01")


def unknown_blob(path: str) -> None:
    """A compressed-model file with an opaque blob turned into an unknown blob type (7)."""
    buffer = io.BytesIO()
    with popef.Writer(buffer) as writer:
        with writer.create_executable("exe") as blob:
            blob.write(b"exe")
        with writer.create_opaque_blob("future", "exe") as blob:
            blob.write(b"a blob of a future kind")
        writer.write_metadata(Metadata(executable="exe", anchors=(
            Anchor("x", "h2d_x", TensorInfo(F32, (1,)), (), type=INPUT),)))
    data = bytearray(buffer.getvalue())
    offset = blob_offsets(bytes(data))[1]
    set_header(data, offset, blob_type=7)
    save(path, bytes(data))


# -- broken files ------------------------------------------------------------------------

def blob_offsets(data: bytes) -> list[int]:
    offsets, offset = [], 0
    while offset < len(data):
        offsets.append(offset)
        offset += fmt.HEADER.parse(data[offset:offset + fmt.HEADER_SIZE]).total_size
    return offsets


def set_header(data: bytearray, offset: int, **fields) -> None:
    header = dict(fmt.HEADER.parse(bytes(data[offset:offset + fmt.HEADER_SIZE])))
    header.pop("_io", None)
    header.update(fields)
    data[offset:offset + fmt.HEADER_SIZE] = fmt.HEADER.build(header)


def fix_checksum(data: bytearray, offset: int) -> None:
    header = fmt.HEADER.parse(bytes(data[offset:offset + fmt.HEADER_SIZE]))
    content = bytes(data[offset + fmt.HEADER_SIZE:offset + header.total_size])
    set_header(data, offset, checksum=zlib.crc32(content))


def broken(base: bytes) -> dict[str, bytes]:
    offsets = blob_offsets(base)
    out = {}

    data = bytearray(base)
    data[offsets[1]:offsets[1] + 8] = b"NotPopEF"
    out["bad_magic.popef"] = bytes(data)

    out["truncated.popef"] = base[:offsets[-1] + 100]

    data = bytearray(base)
    set_header(data, 0, version="2.0")
    out["bad_version.popef"] = bytes(data)

    # The anchors count is the last uint32 before the first anchor ("input", 5 bytes + length).
    data = bytearray(base)
    info_start = offsets[1] + fmt.HEADER_SIZE
    count_at = bytes(data).index(b"\x05\x00\x00\x00input", info_start) - 4
    data[count_at:count_at + 4] = (100_000).to_bytes(4, "little")
    fix_checksum(data, offsets[1])
    out["bad_metadata.popef"] = bytes(data)

    # Flip one byte in the payload of the first tensor (conv1.weight).
    data = bytearray(base)
    header = fmt.HEADER.parse(bytes(data[offsets[2]:offsets[2] + fmt.HEADER_SIZE]))
    data[offsets[2] + fmt.payload_offset(header.info_size) + 5] ^= 0x40
    out["bad_checksum.popef"] = bytes(data)
    return out


def dangling(path: str) -> None:
    anchors = (Anchor("x", "h2d_x", TensorInfo(F32, (2,)), (5,), type=INPUT),
               Anchor("y", "anchor_d2h_y", TensorInfo(F32, (2,)), (5,), type=OUTPUT))
    write(path,
          executables=[("present", b"exe", False)],
          metadata=[Metadata(executable="present", anchors=anchors,
                             program_flow=ProgramFlow(main=(5,)), seed_handle="h2d_nowhere"),
                    Metadata(executable="missing", anchors=anchors)],
          tensors=[("orphan", np.ones(3, np.float32)), ("x", np.ones(3, np.float32)),
                   ("y", np.ones(2, np.float32))],
          opaque=[("popart", "ghost", b"state")])


HOSTILE = {
    "markup": "[bold red]x[/]",
    "ansi": "\x1b[31mred\x1b[0m",
    "newline": "line\nbreak",
    "controls": "bell\x07tab\tcr\rdel\x7fc1\x85",
    "bidi": "abc\u202edcba",
    "quotes": 'say "hi" \\o/',
}


def hostile_names(path: str) -> None:
    exe = "[link=https://example.invalid]exe[/link]\x1b]8;;x\x07"
    w = np.arange(4, dtype=np.float32)
    anchors = tuple(
        Anchor(name, f"h2d_{name}", TensorInfo(F32, (1,)), (5,),
               type=OUTPUT if key == "quotes" else INPUT)
        for key, name in HOSTILE.items()
    ) + (Anchor(HOSTILE["markup"] + "w", "[i]h[/i]", TensorInfo.of(w), (0,), type=INPUT),)
    md = Metadata(
        executable=exe,
        anchors=anchors,
        program_flow=ProgramFlow(load=(0,), main=(5,)),
        programs_map={0: "[blink]load[/]", 5: "main\x1b[2J"},
        seed_handle="",
        engine_options=(Option("[red]opt[/]", "\x1b[1mv\x1b[0m"),),
        device_options=(Option("k\nv", "a\tb"),),
    )
    write(path, executables=[(exe, b"exe", False)], metadata=[md],
          tensors=[(HOSTILE["markup"] + "w", w)],
          opaque=[("[b]op[/b]\x1b[5m", exe, b"x")])


def save(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def build(directory: str = FIXTURES) -> list[str]:
    """Write every fixture into ``directory``; returns the file names."""
    os.makedirs(directory, exist_ok=True)
    p = lambda name: os.path.join(directory, name)
    mnist(p("executable.popef"))
    mnist_v2(p("executable_v2.popef"))
    split(p("split_executable.popef"), p("split_variables.popef"))
    multi(p("multi.popef"))
    compressed(p("compressed.popef"))
    full(p("full.popef"))
    unknown_blob(p("unknown_blob.popef"))
    save(p("empty.popef"), b"")
    hostile_names(p("hostile_names.popef"))
    with open(p("executable.popef"), "rb") as f:
        for name, data in broken(f.read()).items():
            save(p(name), data)
    dangling(p("dangling.popef"))
    return sorted(n for n in os.listdir(directory) if n.endswith(".popef"))


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else FIXTURES
    for name in build(target):
        print(os.path.join(target, name))
