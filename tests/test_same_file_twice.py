"""One file given twice to one reader (by its path, a symbolic link or a hard link) is refused
with one clear error, not read twice into duplicate executables and confusing link problems."""

from __future__ import annotations

import os

import pytest
from click.testing import CliRunner

import popef
from popef.cli import main

from .helpers import minimal_model_bytes


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "model.popef"
    path.write_bytes(minimal_model_bytes())
    return path


def _aliases(model):
    """The ways to name ``model`` again: itself, a symbolic link, a hard link."""
    yield "itself", model
    if hasattr(os, "symlink"):
        link = model.with_name("soft.popef")
        os.symlink(model.name, link)
        yield "a symbolic link", link
    hard = model.with_name("hard.popef")
    try:
        os.link(model, hard)
    except OSError:  # a file system without hard links
        return
    yield "a hard link", hard


def test_the_reader_refuses_a_file_it_has_read(model):
    for kind, alias in _aliases(model):
        with popef.Reader() as reader:
            reader.parse_file(str(model))
            with pytest.raises(popef.PopefError) as caught:
                reader.parse_file(str(alias))
            assert str(caught.value) == (
                f"cannot read '{alias}' twice: it is the file already read as '{model}' "
                "(expected each file once)"
            ), kind
            assert len(reader.blobs()) == 2  # the refused file added nothing
            [only] = reader.models()
            assert only.name == "m"


def test_different_files_with_the_same_bytes_are_still_read(model):
    copy = model.with_name("copy.popef")
    copy.write_bytes(model.read_bytes())
    with popef.Reader() as reader:
        reader.parse_file(str(model))
        reader.parse_file(str(copy))
        assert len(reader.blobs()) == 4


@pytest.mark.parametrize("command", [["check"], ["dump"], ["run"]])
def test_cli_commands_say_so_in_one_line(model, command):
    link = model.with_name("again.popef")
    os.link(model, link) if hasattr(os, "link") else link.symlink_to(model.name)
    result = CliRunner().invoke(main, [*command, str(model), str(link)])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"error: cannot read '{link}' twice: it is the file already read as '{model}' "
        "(expected each file once)"
    ]
