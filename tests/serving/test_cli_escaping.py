"""``popef triton-config`` and ``popef serve`` print untrusted names escaped: error lines
escaped and bounded, names in a generated config as protobuf text escapes that read back."""

from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner

import popef
from popef.cli import main
from popef.servable import parse_config
from popef.serving.cli import MAX_ERROR_CHARS

from .conftest import build_tiny, serve_args

HOSTILE = '\x1b[31m\u202e"\\\n'
RAW = ("\x1b", "\u202e", "\r")


def test_config_names_with_control_characters_read_back(tmp_path):
    path = tmp_path / f"m{HOSTILE}x" / "1" / "executable.popef"
    build_tiny(path)
    (path.parent / "name_map.json").write_text(
        json.dumps({"input": f"in{HOSTILE}", "out": f"out{HOSTILE}"})
    )
    result = CliRunner().invoke(main, ["triton-config", str(path)])
    assert result.exit_code == 0, result.output
    assert not any(ch in result.output for ch in RAW)
    cfg = parse_config(result.output)
    assert cfg.name == f"m{HOSTILE}x"
    assert (cfg.input[0].name, cfg.output[0].name) == (f"in{HOSTILE}", f"out{HOSTILE}")


def test_comment_line_escapes_the_file_name(tmp_path):
    path = tmp_path / "m" / "1" / 'a\nname: "forged"\u202e.popef'
    build_tiny(path)
    result = CliRunner().invoke(main, ["triton-config", str(path)])
    assert result.exit_code == 0, result.output
    comment, *_ = result.output.splitlines()
    assert comment == (
        '# config.pbtxt for a\\nname: "forged"\\u202e.popef, written by popef triton-config'
    )
    assert parse_config(result.output).name == "m"


def test_error_line_is_escaped_and_bounded(tmp_path):
    name = "\x1b[31m\u202e" * 5000
    info = popef.TensorInfo(popef.DataType.F32, (1,))
    anchors = [
        popef.Anchor(
            name="x", handle="x", tensor_info=info, programs=[5], type=popef.TensorType.INPUT
        ),
        popef.Anchor(
            name="y", handle="y", tensor_info=info, programs=[5], type=popef.TensorType.OUTPUT
        ),
    ]
    path = tmp_path / "names.popef"
    with popef.Writer(path) as writer:
        writer.write_metadata(
            popef.Metadata(
                executable="m", anchors=anchors, program_flow=popef.ProgramFlow(main=[5])
            )
        )
        writer.create_executable("m").close()
        writer.write_tensor("t" + name, np.zeros(1, np.float32))
    result = CliRunner().invoke(main, ["triton-config", str(path)])
    assert result.exit_code == 1
    (line,) = result.output.splitlines()
    assert line.startswith("error: ") and "t\\x1b[31m\\u202e" in line
    assert not any(ch in line for ch in RAW)
    assert len(line) <= len("error: ") + MAX_ERROR_CHARS + 40


def test_serve_failure_escapes_the_repository_name(tmp_path, restored_loggers):
    missing = tmp_path / f"repo{HOSTILE}"
    result = CliRunner().invoke(main, ["serve", *serve_args(missing)])
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert errors and not any(ch in result.output for ch in RAW)
    assert "repo\\x1b[31m\\u202e" in errors[-1]
