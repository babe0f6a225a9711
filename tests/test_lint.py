"""Lint and formatting: ruff over the whole tree, as ``.ci/run`` checks it before the tests.

The rules and the line length are ``[tool.ruff]`` in pyproject.toml; these tests run ruff with
them from the repository root and fail on any finding (skipped where ruff is not installed: it
comes with the ``test`` extra).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def ruff(*args: str) -> subprocess.CompletedProcess[str]:
    pytest.importorskip("ruff")
    # --no-cache: nothing is left in the tree, and no stale result is trusted.
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args, "--no-cache", "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_lint_finds_nothing() -> None:
    result = ruff("check", "--output-format", "concise")
    assert result.returncode == 0, f"ruff check found problems:\n{result.stdout}{result.stderr}"


def test_tree_is_formatted() -> None:
    result = ruff("format", "--check")
    assert result.returncode == 0, (
        f"files ruff format would change (run `ruff format .`):\n{result.stdout}{result.stderr}"
    )
