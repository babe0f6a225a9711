"""The type check: mypy on the format layer and the reader/writer API, and the PEP 561 marker.

What is checked, and how strictly, is setup.cfg's ``[mypy]`` configuration; this test runs
mypy with it from the repository root and fails on any error (skipped where mypy is not
installed: it comes with the ``test`` extra).
"""

from __future__ import annotations

import configparser
import importlib.resources
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SETUP_CFG = ROOT / "setup.cfg"


def test_type_hints_check(tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    # A cache of its own: nothing is left in the tree, and no stale result is trusted.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(SETUP_CFG),
            "--cache-dir",
            str(tmp_path / "mypy-cache"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"mypy found problems:\n{result.stdout}{result.stderr}"


def test_type_check_covers_the_typed_modules() -> None:
    config = configparser.ConfigParser()
    config.read(SETUP_CFG)
    files = {path.strip() for path in config["mypy"]["files"].split(",")}
    assert {"popef/format", "popef/reader.py", "popef/writer.py", "popef/types.py"} <= files
    for path in files:
        assert (ROOT / path).exists(), f"setup.cfg's [mypy] files names '{path}', which is missing"


def test_package_is_marked_typed() -> None:
    assert importlib.resources.files("popef").joinpath("py.typed").is_file()
    config = configparser.ConfigParser()
    config.read(SETUP_CFG)
    assert "py.typed" in config["options.package_data"]["popef"].split()
