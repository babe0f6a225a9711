"""popef rewrite: every blob copied losslessly, executables optionally compressed, atomically."""

from __future__ import annotations

import os

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import popef
from popef.cli import main as popef_main
from popef.rewrite import rewrite

from . import strategies
from .helpers import write_models
from .test_hostile import blob, executable_blob, tensor_blob


def _contents(path) -> list:
    """Every blob of a file as what a reader sees: type, info and decoded payload."""
    with popef.Reader() as reader:
        reader.parse_file(path)
        reader.verify()
        out = []
        for b in reader.blobs():
            typed = reader.decoded(b)
            if isinstance(typed, popef.ExecutableReader):
                out.append(("executable", typed.name, typed.payload()))
            elif isinstance(typed, popef.TensorReader):
                out.append((type(typed).__name__, typed.info, typed.read().tobytes()))
            elif typed is None:  # unknown blob type: its bytes
                out.append(("unknown", b.type, b.info_bytes(), b.read_payload()))
            else:
                out.append((type(typed).__name__, getattr(typed, "info", typed), b.read_payload()))
        return out


def _compressed(path) -> list[bool]:
    with popef.Reader() as reader:
        reader.parse_file(path)
        return [e.compressed for e in reader.executables()]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(strategies.model_sets(), st.booleans())
def test_rewrite_keeps_every_blob(tmp_path, model_list, compress):
    source, copy = tmp_path / "in.popef", tmp_path / "out.popef"
    write_models(source, model_list)
    summary = rewrite(source, copy, compress=compress)
    assert _contents(copy) == _contents(source)
    with popef.Reader() as reader:
        reader.parse_file(source)
        assert summary.blobs == len(reader.blobs())
    if compress:
        assert all(_compressed(copy))
    else:  # byte for byte
        assert copy.read_bytes() == source.read_bytes()
    assert summary.bytes_in == source.stat().st_size
    assert summary.bytes_out == copy.stat().st_size


def test_compressing_shrinks_a_compressible_executable_and_reads_back_the_same(tmp_path):
    source, copy = tmp_path / "in.popef", tmp_path / "out.popef"
    payload = bytes(range(256)) * 4096
    with popef.Writer(source) as writer:
        writer.write_metadata(popef.Metadata(executable="m"))
        with writer.create_executable("m") as exe:
            exe.write(payload)
        writer.write_tensor("w", np.arange(6, dtype=np.float32).reshape(2, 3))
    summary = rewrite(source, copy, compress=True)
    assert summary.compressed == 1 and summary.bytes_out < summary.bytes_in / 10
    assert _contents(copy) == _contents(source)
    # compressing again changes nothing: an executable already compressed is copied
    again = tmp_path / "again.popef"
    assert rewrite(copy, again, compress=True).compressed == 0
    assert again.read_bytes() == copy.read_bytes()


def test_unknown_blobs_are_copied_verbatim(tmp_path):
    source, copy = tmp_path / "in.popef", tmp_path / "out.popef"
    source.write_bytes(executable_blob("m", b"x" * 100) + blob(0x7777, b"info", b"payload"))
    rewrite(source, copy, compress=True)
    assert _contents(copy)[1] == ("unknown", 0x7777, b"info", b"payload")


def test_rewriting_in_place_is_atomic(tmp_path):
    path = tmp_path / "m.popef"
    path.write_bytes(executable_blob("m", b"abc" * 1000))
    before = _contents(path)
    rewrite(path, path, compress=True)
    assert _contents(path) == before and all(_compressed(path))
    assert sorted(os.listdir(tmp_path)) == ["m.popef"]  # no temporary file left


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda data: data[:-10], "truncated|partial|remain"),  # cut short
        (lambda data: data[:200] + bytes([data[200] ^ 0xFF]) + data[201:], "checksum"),
        (lambda data: b"GIF89a" + data[6:], "magic"),
        (lambda data: data + b"\0" * 5, "remain|partial|header"),
    ],
)
def test_a_damaged_source_is_refused_and_the_destination_left_alone(tmp_path, damage, message):
    source, copy = tmp_path / "in.popef", tmp_path / "out.popef"
    source.write_bytes(
        damage(executable_blob("m", b"exe" * 100) + tensor_blob("w", np.ones(64, np.float32)))
    )
    copy.write_bytes(b"precious")
    with pytest.raises(popef.PopefError, match=message):
        rewrite(source, copy, compress=True)
    assert copy.read_bytes() == b"precious"
    assert sorted(os.listdir(tmp_path)) == ["in.popef", "out.popef"]


def test_the_command_reports_and_refuses_in_one_line(tmp_path):
    source, copy = tmp_path / "in.popef", tmp_path / "out.popef"
    source.write_bytes(executable_blob("m", b"exe" * 1000))
    result = CliRunner().invoke(popef_main, ["rewrite", str(source), "-o", str(copy), "--compress"])
    assert result.exit_code == 0, result.output
    assert "1 blob, 1 executable compressed" in result.output
    assert _contents(copy) == _contents(source)

    missing = CliRunner().invoke(
        popef_main, ["rewrite", str(tmp_path / "no\x1b.popef"), "-o", str(copy)]
    )
    assert missing.exit_code == 1
    assert missing.output.startswith("error: ") and missing.output.count("\n") == 1
    assert "\x1b" not in missing.output  # the path is escaped
    assert "Traceback" not in missing.output

    directory = CliRunner().invoke(popef_main, ["rewrite", str(source), "-o", str(tmp_path)])
    assert directory.exit_code != 0 and "Traceback" not in directory.output
