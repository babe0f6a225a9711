"""Atomic file replacement (popef.atomic): whole or nothing, durable, permissions kept."""

from __future__ import annotations

import os
import stat

import pytest

from popef.atomic import PrivateFile, write_atomically

from .helpers import without_unnamed_files


def test_a_committed_file_replaces_the_destination_and_keeps_its_mode(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    os.chmod(path, 0o640)
    with PrivateFile(path) as private:
        private.file.write(b"new")
        assert path.read_bytes() == b"old"  # invisible until committed
    assert path.read_bytes() == b"new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert os.listdir(tmp_path) == ["out.bin"]


def test_a_failed_write_leaves_the_destination_and_no_temporary(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")

    def fail(file):
        file.write(b"partial")
        raise ValueError("refused")

    with pytest.raises(ValueError, match="refused"):
        write_atomically(path, fail)
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_a_new_file_gets_the_umask_mode(tmp_path):
    umask = os.umask(0o027)
    try:
        write_atomically(tmp_path / "new.bin", lambda file: file.write(b"x"))
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "new.bin").stat().st_mode) == 0o640


@pytest.mark.parametrize("outcome", ["commit", "abort"])
def test_without_unnamed_files_a_hidden_named_file_is_used_and_cleaned(
    tmp_path, monkeypatch, outcome
):
    without_unnamed_files(monkeypatch)
    path = tmp_path / "out.bin"
    private = PrivateFile(path)
    private.file.write(b"data")
    (hidden,) = [n for n in os.listdir(tmp_path)]
    assert hidden.startswith(".out.bin.") and hidden.endswith(".tmp")
    getattr(private, outcome)()
    private.abort()  # a second end is a no-op
    assert os.listdir(tmp_path) == (["out.bin"] if outcome == "commit" else [])
