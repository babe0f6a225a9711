"""The pure parts of popef_dump: escaping, the plain renderer, statistics, JSON, diff, fixtures."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest

import popef
from popef_dump import views
from popef_dump.diff import diff
from popef_dump.doc import Column, Doc, clean, quote, to_plain
from popef_dump.jsonout import dumps

from .conftest import FIXTURES


@pytest.mark.parametrize(
    "raw, escaped",
    [
        ("plain/name:0", "plain/name:0"),
        ("[bold red]x[/]", "[bold red]x[/]"),  # markup is not ours to escape in plain text
        ("a\nb\tc\rd", r"a\nb\tc\rd"),
        ("\x1b[31m", r"\x1b[31m"),
        ("\x00\x7f\x85", r"\x00\x7f\x85"),
        ("back\\slash", r"back\\slash"),
        ("rtl\u202eoverride", r"rtl\u202eoverride"),
        ("nbsp\u00a0", r"nbsp\xa0"),
        ("caf\u00e9 \u4e2d", "caf\u00e9 \u4e2d"),  # printable non-ASCII stays readable
        ("\U000e0001", r"\U000e0001"),
    ],
)
def test_clean(raw, escaped):
    assert clean(raw) == escaped


def test_quote_escapes_quotes():
    assert quote('say "hi"') == r'"say \"hi\""'
    assert quote("") == '""'


def test_plain_table_aligns_without_trailing_blanks():
    doc = (
        Doc()
        .line(0, "T:")
        .table(
            [Column("Name"), Column("Size", right=True), Column("X")],
            [("a", "1", ""), ("long-name", "12345", "")],
        )
    )
    assert to_plain(doc) == ("T:\n  Name        Size  X\n  a              1\n  long-name  12345\n")


def _tensor(array, dtype=None) -> popef.TensorReader:
    stream = io.BytesIO()
    with popef.Writer(stream) as writer:
        if dtype is None:
            writer.write_tensor("t", array)
        else:
            info = popef.TensorDataInfo("t", popef.TensorInfo(dtype, array.shape))
            with writer.create_tensor_data(info) as blob:
                blob.write(array)
    reader = popef.Reader()
    reader.parse_bytes(stream.getvalue())
    return reader.tensors()[0]


@pytest.mark.parametrize("chunk", [views.STATS_CHUNK, 3])
def test_stats(chunk, monkeypatch):
    monkeypatch.setattr(views, "STATS_CHUNK", chunk)
    values = np.array([1.5, np.nan, -4.0, 2.5, np.nan, 8.0, 0.0], np.float32)
    stats = views.tensor_stats(_tensor(values))
    finite = values[~np.isnan(values)]
    assert (stats.min, stats.max, stats.nan_count) == (-4.0, 8.0, 2)
    assert stats.mean == pytest.approx(float(finite.mean()))

    ints = np.arange(-5, 9, dtype=np.int64).reshape(2, 7)
    stats = views.tensor_stats(_tensor(ints))
    assert (stats.min, stats.max, stats.mean, stats.nan_count) == (-5, 8, 1.5, 0)
    assert isinstance(stats.min, int)


def test_stats_edge_cases():
    assert views.tensor_stats(_tensor(np.array([np.nan, np.nan], np.float16))) == views.Stats(
        None, None, None, 2
    )
    assert views.tensor_stats(_tensor(np.zeros((0, 2), np.float32))) == views.Stats(
        None, None, None, 0
    )
    assert views.tensor_stats(_tensor(np.array([True, False, True, True]))) == views.Stats(
        0, 1, 0.75, 0
    )
    assert views.tensor_stats(_tensor(np.array(7, np.int32))) == views.Stats(7, 7, 7.0, 0)
    raw = np.arange(4, dtype=np.uint8)
    assert views.tensor_stats(_tensor(raw, popef.DataType.F8152)) is None
    stats = views.tensor_stats(_tensor(np.array([np.inf, 1.0], np.float64)))
    assert stats.max == math.inf and stats.mean == math.inf


def test_json_is_strict_and_compact():
    text = dumps({"a": [1, 2], "b": {"c": [{"d": "x\x1b"}], "e": {}}, "f": []})
    assert json.loads(text) == {"a": [1, 2], "b": {"c": [{"d": "x\x1b"}], "e": {}}, "f": []}
    assert '"a": [1, 2]' in text and "\\u001b" in text
    with pytest.raises(ValueError):
        dumps({"x": math.nan})


def _read(*names: str) -> popef.Reader:
    reader = popef.Reader()
    for name in names:
        reader.parse_file(FIXTURES / name)
    return reader


def test_views_match_the_library_model_when_links_hold():
    reader = _read("full.popef")
    (model,) = reader.models()
    (view,) = views.model_views(reader)
    assert view.name == model.name
    assert view.user_input_anchors() == model.user_input_anchors()
    assert view.user_output_anchors() == model.user_output_anchors()
    assert view.stored_names == model.stored_names
    assert [o.name for o in view.opaque_blobs] == [o.name for o in model.opaque_blobs]


def test_diff_pairs_a_renamed_model_and_compares_content_only_when_layout_agrees():
    report = diff(_read("executable.popef"), _read("executable_v2.popef"), "old", "new")
    assert not report.identical
    (model,) = report.models
    assert [c.field for c in model.metadata] == ["device_iterations", "engine_options"]
    tensors = dict(report.tensors.changed_items)
    assert [c.field for c in tensors["fc.weight"]] == ["sha256"]
    assert [c.field for c in tensors["fc.bias"]] == ["shape"]  # no hash: the shape changed
    assert diff(_read("multi.popef"), _read("multi.popef"), "a", "b").identical


def test_committed_fixtures_are_up_to_date(tmp_path):
    """make_fixtures.py is deterministic and the committed files are its output."""
    from tests.data.make_fixtures import build

    names = build(str(tmp_path))
    assert names == sorted(p.name for p in FIXTURES.glob("*.popef"))
    stale = [n for n in names if (tmp_path / n).read_bytes() != (FIXTURES / n).read_bytes()]
    assert not stale, (
        f"fixtures differ from make_fixtures.py output: {stale}; run "
        "python tests/data/make_fixtures.py, then pytest --update-goldens"
    )
