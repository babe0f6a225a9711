"""Shared pieces of the popef_dump tests: the fixtures folder, a CLI runner, golden files.

Regenerate the golden outputs with ``pytest --update-goldens`` (or, from any
directory, ``POPEF_UPDATE_GOLDENS=1 pytest``); regenerate the fixture files first with
``python tests/data/make_fixtures.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

DATA = Path(__file__).resolve().parent.parent / "data"
FIXTURES = DATA / "fixtures"
GOLDEN = DATA / "golden"


@pytest.fixture
def in_fixtures(monkeypatch):
    """Run in tests/data/fixtures, so that files are named as a user names them."""
    monkeypatch.chdir(FIXTURES)
    return FIXTURES


def invoke(args: list[str], command=None):
    """Run popef_dump (or another click command) in-process; stdout and stderr apart."""
    from popef_dump.cli import main

    return CliRunner().invoke(command or main, args, catch_exceptions=False)


def transcript(args: list[str], command=None) -> str:
    """A shell-like record of one run: the command, stdout, stderr lines, the exit status."""
    result = invoke(args, command)
    stderr = "".join(f"[stderr] {line}\n" for line in result.stderr.splitlines())
    return f"$ popef_dump {' '.join(args)}\n{result.stdout}{stderr}[exit {result.exit_code}]\n\n"


@pytest.fixture
def golden(request):
    """Compare text with a golden file (or rewrite the file when updating)."""
    update = (
        request.config.getoption("--update-goldens", default=False)
        or os.environ.get("POPEF_UPDATE_GOLDENS") == "1"
    )

    def check(name: str, text: str) -> None:
        path = GOLDEN / name
        if update:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8", newline="\n")
            return
        assert path.exists(), f"no golden file {path}: run pytest with --update-goldens"
        expected = path.read_text(encoding="utf-8")
        assert text == expected, f"output differs from {path.relative_to(DATA.parent.parent)}"

    return check
