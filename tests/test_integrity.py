"""Integrity at load: checksums checked before a model runs, and files that change on disk.

A file replaced or truncated under a reader must give :class:`TruncatedError`, never kill the
process (reading a memory-mapped page past the end of a file raises SIGBUS). The cases that
would kill the process run in a child process, so a regression fails the test instead of
ending the test run.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import popef
from popef import ChecksumError, DataType, TruncatedError
from popef.runtime import GraphBuilder, ModelRunner


def build(path, seed: int = 0, size: int = 4096) -> np.ndarray:
    """softmax(x @ w) with a weight of ``size`` x 3 floats; returns w."""
    w = np.random.default_rng(seed).standard_normal((size, 3)).astype(np.float32)
    g = GraphBuilder()
    x = g.add_input("x", DataType.F32, (1, size))
    g.add_output(
        g.add_node("Softmax", [g.add_node("MatMul", [x, g.add_weight("w", w)])], axis=-1), "probs"
    )
    g.save(path, executable_name="tiny")
    return w


def zero_payload(path, name: str) -> None:
    """Zero the bytes of tensor ``name``, leaving its header's checksum as it was."""
    with popef.Reader() as reader:
        reader.parse_file(path)
        blob = next(t.blob for t in reader.tensors() if t.name == name)
        offset, size = blob.payload_offset, blob.payload_size
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(bytes(size))


def in_child(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120
    )


# -- checksums at load --------------------------------------------------------------------------


def test_a_corrupt_weight_is_refused_at_load_naming_the_tensor(tmp_path):
    path = tmp_path / "m.popef"
    build(path)
    zero_payload(path, "w")
    with pytest.raises(ChecksumError, match=r"tensor data 'w' is corrupt: checksum mismatch") as e:
        ModelRunner(path)
    assert e.value.field == "checksum" and e.value.source == str(path)


def test_verify_false_runs_what_the_file_holds(tmp_path):
    path = tmp_path / "m.popef"
    build(path)
    zero_payload(path, "w")
    with ModelRunner(path, verify=False) as runner:
        out = runner.execute({"x": np.ones((1, 4096), np.float32)})["probs"]
    np.testing.assert_allclose(out, np.full((1, 3), 1 / 3), rtol=1e-6)  # zero weights


@pytest.mark.parametrize("kind", ["executable", "metadata"])
def test_a_corrupt_executable_or_metadata_is_refused(tmp_path, kind):
    path = tmp_path / "m.popef"
    build(path, size=8)
    with popef.Reader() as reader:
        reader.parse_file(path)
        [model] = reader.models()
        blob = dict(model.blobs())[
            f"{kind} 'tiny'" if kind == "executable" else "metadata of 'tiny'"
        ]
        last = blob.offset + blob.size - 1  # a padding byte: decoding still works
    with open(path, "r+b") as f:
        f.seek(last)
        f.write(b"\x01")
    with pytest.raises(ChecksumError, match=f"{kind}.* is corrupt"):
        ModelRunner(path)


def test_unused_tensor_data_is_checked_too(tmp_path):
    """Every blob of the model counts, even data that no program loads."""
    w = np.ones((2, 3), np.float32)
    g = GraphBuilder()
    x = g.add_input("x", DataType.F32, (1, 2))
    g.add_output(g.add_node("MatMul", [x, g.add_weight("w", w)]), "y")
    path = tmp_path / "m.popef"
    g.save(path, executable_name="m")
    md = next(iter(_metadata(path)))
    spare = popef.Anchor(
        "spare",
        "h2d_spare",
        popef.TensorInfo(DataType.F32, (4,)),
        programs=(),
        type=popef.TensorType.INPUT,
    )
    rewritten = tmp_path / "r.popef"
    with popef.Reader() as reader, popef.Writer(rewritten) as writer:
        reader.parse_file(path)
        for blob in reader.blobs():
            if blob.type != popef.BlobType.METADATA:
                writer.copy_blob(blob)
        writer.write_metadata(_with_anchor(md, spare))
        writer.write_tensor("spare", np.arange(4, dtype=np.float32))
    ModelRunner(rewritten).close()
    zero_payload(rewritten, "spare")
    with pytest.raises(ChecksumError, match="tensor data 'spare' is corrupt"):
        ModelRunner(rewritten)


def _metadata(path):
    with popef.Reader() as reader:
        reader.parse_file(path)
        return reader.metadata()


def _with_anchor(md: popef.Metadata, anchor: popef.Anchor) -> popef.Metadata:
    import dataclasses

    return dataclasses.replace(md, anchors=(*md.anchors, anchor))


def test_tensor_read_verifies_in_the_same_pass(tmp_path):
    path = tmp_path / "m.popef"
    w = build(path, size=64)
    with popef.Reader() as reader:
        reader.parse_file(path)
        [tensor] = reader.tensors()
        data = tensor.read(verify=True)
        assert data.flags.owndata and data.flags.writeable
        np.testing.assert_array_equal(data, w)
    zero_payload(path, "w")
    with popef.Reader() as reader:
        reader.parse_file(path)
        [tensor] = reader.tensors()
        with pytest.raises(ChecksumError):
            tensor.read(verify=True)
        np.testing.assert_array_equal(tensor.read(), 0)


# -- files that change on disk -------------------------------------------------------------------


def test_a_file_that_shrank_gives_truncated_error_not_sigbus(tmp_path):
    path = tmp_path / "m.popef"
    build(path, size=65536)  # 768 KiB of weights: many pages past the new end
    result = in_child(f"""
        import os, popef
        reader = popef.Reader()
        reader.parse_file({str(path)!r})
        [tensor] = reader.tensors()
        os.truncate({str(path)!r}, 4096)
        for what in ("data", "read", "verify", "blob.verify"):
            try:
                target = tensor
                for part in what.split("."):
                    target = getattr(target, part)
                target()
            except popef.TruncatedError as exc:
                print(what, "TruncatedError", exc.reason)
        reader.close()
        try:
            tensor.data()  # the reader is closed: only the map is left
        except popef.TruncatedError as exc:
            print("closed data TruncatedError")
    """)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines[:4]] == ["data", "read", "verify", "blob.verify"]
    assert all("TruncatedError" in line for line in lines)
    assert "the file shrank after it was opened" in lines[0]
    assert lines[4] == "closed data TruncatedError"


def test_a_file_that_shrank_is_reported_in_process(tmp_path):
    """Checked before mapping, so this is safe in the test process itself."""
    path = tmp_path / "m.popef"
    build(path, size=4096)
    with popef.Reader() as reader:
        reader.parse_file(path)
        [tensor] = reader.tensors()
        with open(path, "r+b") as f:
            f.truncate(tensor.blob.payload_offset + 10)
        with pytest.raises(TruncatedError, match="shrank") as e:
            tensor.data()
        assert e.value.source == str(path)


def test_a_loaded_model_survives_its_file_being_overwritten(tmp_path):
    """``cp small.popef model.popef`` over a loaded model: it keeps what it loaded."""
    path, pristine, other = tmp_path / "m.popef", tmp_path / "pristine", tmp_path / "o.popef"
    w = build(pristine, seed=1, size=65536)
    build(other, seed=2, size=8)
    result = in_child(f"""
        import json, shutil, numpy as np
        from popef.runtime import ModelRunner
        x = np.ones((1, 65536), np.float32)
        for executor in ("cpu", "ipu-model"):
            shutil.copyfile({str(pristine)!r}, {str(path)!r})
            runner = ModelRunner({str(path)!r}, executor)
            before = runner.execute({{"x": x}})["probs"]
            shutil.copyfile({str(other)!r}, {str(path)!r})  # same inode, truncated, rewritten
            after = runner.execute({{"x": x}})["probs"]
            runner.close()
            print(json.dumps([executor, before.tolist(), after.tolist()]))
    """)
    assert result.returncode == 0, (result.returncode, result.stderr)
    z = np.ones((1, 65536)) @ w.astype(np.float64)
    expected = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    runs = [json.loads(line) for line in result.stdout.splitlines()]
    assert [executor for executor, _, _ in runs] == ["cpu", "ipu-model"]
    for _, before, after in runs:
        assert before == after
        np.testing.assert_allclose(before, expected, rtol=1e-3, atol=1e-6)
