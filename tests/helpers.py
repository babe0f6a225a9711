"""Small helpers shared by the tests."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

import popef

# Graphcore's own `popef_dump --user-anchors` output for the tutorial MNIST model (the blog
# post's listing), after its first line `PopEF file: <path as given>`.
TUTORIAL_USER_ANCHORS = """\
Anchors:
  Inputs (User-provided):
    Name: "input":
      TensorInfo: { dtype: F32, sizeInBytes: 3136, shape [1, 1, 28, 28] }
      Programs: [5]
      Handle: h2d_input
      IsPerReplica: False
  Outputs (User-provided):
    Name: "softmax/Softmax:0":
      TensorInfo: { dtype: F32, sizeInBytes: 40, shape [1, 10] }
      Programs: [5]
      Handle: anchor_d2h_softmax/Softmax:0
      IsPerReplica: False
"""


def write_models(target, model_list) -> None:
    """Write models drawn by ``strategies.models`` to a path or stream."""
    with popef.Writer(target) as writer:
        for md, executable, compress, stored, opaque in model_list:
            writer.write_metadata(md)
            with writer.create_executable(md.executable, compress) as blob:
                blob.write(executable)
            for name, array in stored.items():
                writer.write_tensor(name, array)
            for name, data in opaque:
                with writer.create_opaque_blob(name, md.executable) as blob:
                    blob.write(data)


def models_bytes(model_list) -> bytes:
    stream = io.BytesIO()
    write_models(stream, model_list)
    return stream.getvalue()


def read_bytes(data: bytes) -> popef.Reader:
    reader = popef.Reader()
    reader.parse_bytes(data)
    return reader


def rewrite(reader: popef.Reader) -> bytes:
    """Copy every blob of a reader into new bytes."""
    stream = io.BytesIO()
    with popef.Writer(stream) as writer:
        for blob in reader.blobs():
            writer.copy_blob(blob)
    return stream.getvalue()


def minimal_model_bytes() -> bytes:
    """The smallest model file: one metadata blob and one empty executable."""
    stream = io.BytesIO()
    with popef.Writer(stream) as writer:
        writer.write_metadata(popef.Metadata(executable="m"))
        writer.create_executable("m").close()
    return stream.getvalue()


def save_linear_softmax(
    path: Path,
    weights: np.ndarray,
    *,
    batch: int = 1,
    input_name: str = "input",
    output_name: str = "out",
    executable_name: str = "m",
    replication_factor: int = 1,
    device_iterations: int = 1,
) -> Path:
    """The model of the serving and Triton tests, ``softmax(x @ weights)``: input F32
    ``(batch, K)`` (per replica), output F32 ``(batch, N)`` for ``weights`` of shape (K, N)."""
    from popef.runtime import GraphBuilder

    g = GraphBuilder()
    x = g.add_input(input_name, popef.DataType.F32, (batch, weights.shape[0]))
    w = g.add_weight("w", weights)
    g.add_output(g.add_node("Softmax", [g.add_node("MatMul", [x, w])], axis=-1), output_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    g.save(
        path,
        executable_name=executable_name,
        replication_factor=replication_factor,
        device_iterations=device_iterations,
    )
    return path


def linear_softmax_reference(x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """What :func:`save_linear_softmax`'s model computes, in float64."""
    z = x.astype(np.float64) @ weights.astype(np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def without_unnamed_files(monkeypatch) -> None:
    """Make ``os.open`` refuse ``O_TMPFILE`` as a file system without unnamed files does, so
    that writers fall back to a hidden named temporary file."""
    import errno
    import os

    real_open = os.open
    tmpfile = getattr(os, "O_TMPFILE", 0)

    def open_without_tmpfile(path, flags, *args, **kwargs):
        if tmpfile and flags & tmpfile == tmpfile:
            raise OSError(errno.EOPNOTSUPP, "Operation not supported")
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_without_tmpfile)
