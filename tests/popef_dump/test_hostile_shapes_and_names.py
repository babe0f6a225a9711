"""popef_dump on hostile shapes and very long names (issue 11, items 7 and 10)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from rich.console import Console

import popef
import popef_dump.cli
from popef.format import codec
from popef_dump.doc import LONG_CELL, Column, Doc, to_rich

from ..test_hostile import blob, executable_blob, metadata_blob
from .conftest import invoke

VIEWS = [
    ["--stats"],
    ["--tensors"],
    ["--json"],
    ["--json", "--stats"],
    ["--all"],
    ["--blobs"],
    ["--color", "--all"],
    ["--color", "--stats"],
]


@pytest.fixture
def overflowing_shape(tmp_path):
    """A tensor of shape [0, 2**62] F32: zero bytes, yet no array of it can exist."""
    info = codec.TENSOR_DATA_INFO.build(
        {"name": "w", "tensor_info": {"dtype": int(popef.DataType.F32), "shape": [0, 2**62]}}
    )
    path = tmp_path / "overflow.popef"
    path.write_bytes(metadata_blob(popef.Metadata("m")) + executable_blob("m") + blob(2, info))
    return str(path)


@pytest.mark.parametrize("view", VIEWS, ids=" ".join)
def test_an_overflowing_empty_shape_is_one_error_line(overflowing_shape, view):
    result = invoke([*view, overflowing_shape])
    assert "Traceback" not in result.stdout + result.stderr
    if result.exit_code:
        assert result.exit_code == 1
        (line,) = result.stderr.splitlines()
        assert line.startswith("error: ") and "spans more than 2**63-1 bytes" in line


@pytest.mark.parametrize("view", VIEWS, ids=" ".join)
def test_an_empty_tensor_with_huge_dimensions_is_shown(tmp_path, view):
    path = tmp_path / "empty.popef"
    with popef.Writer(path) as writer:
        writer.write_tensor("w", np.empty((0, 2**60), np.float32))
    result = invoke([*view, str(path)])
    assert result.exit_code == 0, result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_a_table_with_a_long_cell_is_laid_out_once_not_folded(tmp_path, monkeypatch):
    """Folding a 1 MiB name into a table column made hundreds of thousands of rows (24 s)."""
    name = "n" * (1 << 20)
    path = tmp_path / "long.popef"
    with popef.Writer(path) as writer:
        writer.write_tensor(name, np.zeros(2, np.float32))
        writer.write_tensor("short", np.zeros(3, np.float32))
    monkeypatch.setattr(
        popef_dump.cli,
        "_console",
        lambda: Console(file=sys.stdout, width=100, force_terminal=True, highlight=False),
    )
    result = invoke(["--color", "--blobs", str(path)])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert len(lines) < 10  # one line per row, the name whole on its own
    assert sum(f'"{name}"' in line for line in lines) == 1
    assert "\x1b[" in result.stdout  # still in colour


def test_only_tables_with_a_long_cell_leave_the_boxed_layout():
    from rich.table import Table

    short = Doc().table([Column("name")], [("x" * LONG_CELL,)])
    long = Doc().table([Column("name")], [("x" * (LONG_CELL + 1),)])
    assert isinstance(to_rich(short).renderables[0].renderable, Table)
    assert not any(isinstance(r, Table) for r in to_rich(long).renderables)
