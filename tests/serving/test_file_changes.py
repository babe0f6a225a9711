"""``popef serve`` and the files of its models: a corrupt model is never served, and a served
file replaced or truncated on disk never kills the server (issue: SIGBUS on ``cp``)."""

from __future__ import annotations

import shutil

import numpy as np
import tritonclient.http as httpclient

import popef

from .conftest import ServeProcess, config, serve_args, write_model


def _zero_weights(path) -> None:
    with popef.Reader() as reader:
        reader.parse_file(path)
        blob = next(t.blob for t in reader.tensors() if t.name == "w")
        offset, size = blob.payload_offset, blob.payload_size
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(bytes(size))


def _infer(client, x: np.ndarray) -> np.ndarray:
    tensor = httpclient.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    return client.infer("good", [tensor]).as_numpy("out")


def test_corrupt_model_is_unavailable_and_a_served_file_can_be_overwritten(tmp_path):
    repo = tmp_path / "repo"
    models = write_model(repo, "good", config("good"))
    write_model(repo, "corrupt", config("corrupt"))
    _zero_weights(repo / "corrupt" / "1" / "executable.popef")
    small = tmp_path / "small.popef"
    small.write_bytes(b"not a model" * 3)
    server = ServeProcess(*serve_args(repo, "--strict-readiness", "false"))
    try:
        client = httpclient.InferenceServerClient(server.url("HTTPService"))
        index = {m["name"]: m for m in client.get_model_repository_index()}
        assert index["corrupt"]["state"] == "UNAVAILABLE"
        assert "tensor data 'w' is corrupt: checksum mismatch" in index["corrupt"]["reason"]
        assert not client.is_model_ready("corrupt")
        assert client.is_model_ready("good")

        x = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
        before = _infer(client, x)
        np.testing.assert_allclose(before, models[1].reference(x), rtol=1e-5)
        # what `cp small.popef executable.popef` does: same inode, truncated, rewritten
        shutil.copyfile(small, repo / "good" / "1" / "executable.popef")
        np.testing.assert_array_equal(_infer(client, x), before)
        assert server.proc.poll() is None
        client.close()
    finally:
        code, log = server.stop()
    assert code == 0, log
