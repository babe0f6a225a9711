"""External data of an ONNX model: the location must name a regular file inside the model's
folder, however it gets there (symbolic links included)."""

from __future__ import annotations

import os

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto

import popef
from popef.importers.onnx import import_onnx

from .test_onnx_import import gemm_model

needs_symlinks = pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symbolic links")


def external_model(folder, location: str):
    """gemm_model() with its weight 'w' stored in the external file ``location``; returns the
    model path and the bytes of 'w'."""
    model = gemm_model()
    w = model.graph.initializer[0]
    data = onnx.numpy_helper.to_array(w).tobytes()
    w.ClearField("raw_data")
    w.ClearField("float_data")
    w.data_location = TensorProto.EXTERNAL
    w.external_data.add(key="location", value=location)
    w.external_data.add(key="length", value=str(len(data)))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "m.onnx"
    path.write_bytes(model.SerializeToString())
    return path, data


def refused(model_path, out, match):
    with pytest.raises(popef.PopefError, match=match):
        import_onnx(str(model_path), out)
    assert not out.exists()


@needs_symlinks
def test_a_symlink_out_of_the_folder_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    path, data = external_model(tmp_path / "model", "w.bin")
    (outside / "secret.bin").write_bytes(data)
    os.symlink(outside / "secret.bin", tmp_path / "model" / "w.bin")
    refused(path, tmp_path / "out.popef", "'w.bin' leads out of the model's folder")


@needs_symlinks
def test_a_symlinked_folder_out_of_the_folder_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    path, data = external_model(tmp_path / "model", "sub/w.bin")
    (outside / "w.bin").write_bytes(data)
    os.symlink(outside, tmp_path / "model" / "sub")
    refused(path, tmp_path / "out.popef", "'sub/w.bin' leads out of the model's folder")


@needs_symlinks
def test_a_symlink_inside_the_folder_is_followed(tmp_path):
    path, data = external_model(tmp_path / "model", "w.bin")
    (tmp_path / "model" / "real.bin").write_bytes(data)
    os.symlink("real.bin", tmp_path / "model" / "w.bin")
    out = tmp_path / "out.popef"
    import_onnx(str(path), out)
    with popef.Reader() as reader:
        reader.parse_file(str(out))
        [tensor] = [t for t in reader.tensors() if t.name == "w"]
        assert np.asarray(tensor.data()).tobytes() == data


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs")
def test_a_fifo_is_refused_without_blocking(tmp_path):
    path, _ = external_model(tmp_path / "model", "w.bin")
    os.mkfifo(tmp_path / "model" / "w.bin")
    refused(path, tmp_path / "out.popef", "'w.bin' is a FIFO, expected a regular file")


def test_a_folder_is_refused(tmp_path):
    path, _ = external_model(tmp_path / "model", "w.bin")
    (tmp_path / "model" / "w.bin").mkdir()
    refused(path, tmp_path / "out.popef", "'w.bin' is a folder, expected a regular file")
