"""The documentation's Python snippets run, so they cannot drift from the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), re.S)


SNIPPETS = [
    (path, i, code)
    for path in DOCS
    for i, code in enumerate(python_blocks(path))
    if "# doctest: skip" not in code
]


@pytest.mark.parametrize(
    "path, index, code", SNIPPETS, ids=[f"{p.relative_to(ROOT)}#{i}" for p, i, _ in SNIPPETS]
)
def test_snippet_runs(path, index, code, tmp_path, monkeypatch, capsys):
    # snippets run in an empty folder, where examples/ is the project's
    (tmp_path / "examples").symlink_to(ROOT / "examples", target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f"{path.name}[{index}]", "exec"), {"__name__": "__snippet__"})


def test_readme_has_a_snippet():
    assert python_blocks(ROOT / "README.md")
