"""Golden outputs: every fixture with every option, as text and as JSON.

Each golden file is a transcript of runs (command, stdout, stderr lines, exit status) from
inside tests/data/fixtures, so that paths appear as a user would type them. Text is the plain
rendering (what a pipe gets); ``rich.txt`` holds the terminal rendering at a fixed width of
100 columns and without colour.
"""

from __future__ import annotations

import sys

import pytest

from .conftest import transcript

FIXTURE_SETS = {
    "executable": ["executable.popef"],
    "executable_v2": ["executable_v2.popef"],
    "split": ["split_executable.popef", "split_variables.popef"],
    "multi": ["multi.popef"],
    "compressed": ["compressed.popef"],
    "full": ["full.popef"],
    "unknown_blob": ["unknown_blob.popef"],
    "empty": ["empty.popef"],
    "hostile_names": ["hostile_names.popef"],
    "dangling": ["dangling.popef"],
    "bad_checksum": ["bad_checksum.popef"],
    "bad_magic": ["bad_magic.popef"],
    "truncated": ["truncated.popef"],
    "bad_version": ["bad_version.popef"],
    "bad_metadata": ["bad_metadata.popef"],
}

OPTIONS = [
    [],
    ["--user-anchors"],
    ["--all-anchors"],
    ["-m"],
    ["--blobs"],
    ["--tensors"],
    ["--feeds"],
    ["--executables"],
    ["--opaque"],
    ["--stats", "--tensors", "--feeds"],
    ["--all"],
    ["--verify"],
]

DIFFS = [
    ("executable.popef", "executable_v2.popef"),
    ("executable_v2.popef", "executable.popef"),
    ("executable.popef", "executable.popef"),
    ("executable.popef", "split_executable.popef"),
    ("multi.popef", "full.popef"),
    ("full.popef", "hostile_names.popef"),
    ("executable.popef", "bad_magic.popef"),
]


@pytest.mark.parametrize("fmt", ["text", "json"])
@pytest.mark.parametrize("fixture", sorted(FIXTURE_SETS))
def test_matrix(fixture, fmt, in_fixtures, golden):
    extra = ["--json"] if fmt == "json" else []
    text = "".join(transcript(extra + options + FIXTURE_SETS[fixture]) for options in OPTIONS)
    golden(f"{fixture}.{fmt}.txt", text)


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_diff(fmt, in_fixtures, golden):
    extra = ["--json"] if fmt == "json" else []
    text = "".join(transcript(extra + ["--diff", old, new]) for old, new in DIFFS)
    golden(f"diff.{fmt}.txt", text)


def test_check(in_fixtures, golden):
    from popef.cli import main

    text = "".join(
        transcript(["check", *files], command=main)
        for files in (
            ["executable.popef"],
            ["dangling.popef"],
            ["bad_checksum.popef", "multi.popef"],
            ["bad_metadata.popef"],
            ["--json", "bad_checksum.popef"],
        )
    )
    golden("check.text.txt", text.replace("$ popef_dump check", "$ popef check"))


def test_rich(in_fixtures, golden, monkeypatch):
    """The terminal rendering (tables, escaping in rich) at a fixed width, without colour."""
    from rich.console import Console

    import popef_dump.cli

    monkeypatch.setattr(
        popef_dump.cli,
        "_console",
        lambda: Console(
            file=sys.stdout, width=100, color_system=None, force_terminal=False, highlight=False
        ),
    )
    runs = [
        ["executable.popef"],
        ["--all", "--stats", "--verify", "executable.popef"],
        ["--all", "hostile_names.popef"],
        ["--stats", "--feeds", "--tensors", "full.popef"],
        ["--diff", "executable.popef", "executable_v2.popef"],
    ]
    text = "".join(transcript(["--color", *args]) for args in runs)
    # rich pads table lines to their width: trailing blanks are not part of the contract
    golden("rich.txt", "\n".join(line.rstrip() for line in text.split("\n")))
