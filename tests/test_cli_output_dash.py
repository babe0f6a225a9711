"""``-o -`` of the commands that write a PopEF file: a usage error, not a file named '-'."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from popef.cli import main

from .helpers import minimal_model_bytes


@pytest.mark.parametrize("command", ["rewrite", "import"])
def test_dash_as_output_is_a_usage_error(tmp_path, monkeypatch, command):
    source = tmp_path / "in.popef"
    source.write_bytes(minimal_model_bytes())  # import refuses it later; the option comes first
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, [command, str(source), "-o", "-"])
    assert result.exit_code == 2
    assert "expected a file path, found '-'" in result.output
    assert "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.popef"]


def test_a_file_named_dash_is_written_as_dot_slash_dash(tmp_path, monkeypatch):
    source = tmp_path / "in.popef"
    source.write_bytes(minimal_model_bytes())
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["rewrite", str(source), "-o", "./-"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "-").read_bytes() == source.read_bytes()
