"""``popef_dump --json`` against its documented schema (docs/cli.md), for every fixture with
every selection, the diffs and the verifier; the golden files pin the exact bytes, this pins
the format."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from .conftest import invoke
from .json_schema import all_keys, document_problems
from .test_golden import DIFFS, FIXTURE_SETS, OPTIONS

DOCS = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def _document(args: list[str]) -> dict | None:
    """The JSON document of a run, or None when the run wrote nothing (a file it refused)."""
    result = invoke(["--json", *args])
    if not result.stdout:
        assert result.exit_code == 1 and result.stderr.startswith("error: ")
        return None
    return json.loads(result.stdout)


@pytest.mark.parametrize("fixture", sorted(FIXTURE_SETS))
def test_every_selection_of_every_fixture_fits_the_schema(fixture, in_fixtures):
    for options in [*OPTIONS, ["--verify", "--stats", "--all"]]:
        document = _document([*options, *FIXTURE_SETS[fixture]])
        if document is not None:
            assert document_problems(document) == [], options


@pytest.mark.parametrize("old, new", DIFFS)
def test_every_diff_fits_the_schema(old, new, in_fixtures):
    document = _document(["--diff", old, new])
    if document is not None:
        assert document_problems(document) == []
        assert "diff" in document


def test_the_fixtures_exercise_the_optional_parts_of_the_schema(in_fixtures):
    """Guards the tests above: the fixtures must reach feeds, stats, link problems."""
    full = _document(["--all", "--stats", "full.popef"])
    assert full["feeds"] and "num_items" in full["feeds"][0] and "stats" in full["feeds"][0]
    dangling = _document(["--verify", "dangling.popef"])
    assert any(p["kind"] == "link" and p["source"] is None for p in dangling["verify"]["problems"])


def _schema_section() -> str:
    text = DOCS.read_text(encoding="utf-8")
    start = text.index("### Schema (`schema_version` 1)")
    return text[start : text.index("\n## ", start)]


def test_every_key_of_the_schema_is_documented():
    section = _schema_section()
    undocumented = sorted(k for k in all_keys() if not re.search(rf"\b{re.escape(k)}\b", section))
    assert undocumented == []


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.update(schema_version=2), "$.schema_version: expected one of [1], found 2"),
        (lambda d: d["files"][0].update(size="12"), "$.files[0].size: expected int, found '12'"),
        (lambda d: d["files"][0].update(size=True), "$.files[0].size: expected int, found True"),
        (
            lambda d: d["models"][0].pop("executable_found"),
            "$.models[0]: missing key 'executable_found'",
        ),
        (lambda d: d["models"][0].update(extra=1), "$.models[0]: undocumented key 'extra'"),
        (
            lambda d: d["models"][0]["user_anchors"]["inputs"][0].update(type="IN"),
            (
                "$.models[0].user_anchors.inputs[0].type: "
                "expected one of ['INPUT', 'OUTPUT', 'UNKNOWN'], found 'IN'"
            ),
        ),
        (lambda d: d.update(diff={}), "$: expected 'files' or 'diff', exactly one of them"),
    ],
)
def test_the_checker_names_what_is_wrong_and_where(mutate, message, in_fixtures):
    document = _document(["full.popef"])
    assert document_problems(document) == []
    mutate(document)
    assert message in document_problems(document)


def test_non_finite_statistics_are_strings_never_bare_floats():
    from .json_schema import STATS

    good = {"min": "-inf", "max": "nan", "mean": None, "nan_count": 1}
    assert list(STATS.problems(good, "$")) == []
    assert list(STATS.problems({**good, "min": float("inf")}, "$")) != []
