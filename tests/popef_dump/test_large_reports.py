"""Files of many blobs: the JSON dump is written in one pass without a json.dumps call per
value and without holding its text, and `popef check` lists at most MAX_PROBLEMS_PER_KIND
problems of each kind, then counts the rest."""

from __future__ import annotations

import json
import struct
import tracemalloc
import zlib

import pytest
from click.testing import CliRunner

import popef
from popef.cli import main as popef_main
from popef_dump import jsonout
from popef_dump.verify import MAX_PROBLEMS_PER_KIND, verify

from ..helpers import read_bytes


def minimal_blobs(count: int, blob_type: int) -> bytes:
    """``count`` 64-byte blobs of ``blob_type`` with 16 zero bytes of info (an unknown type is
    kept as it is; an opaque blob with such an info does not decode)."""
    info = bytes(16)
    header = (
        b"\x89PopEF\r\n"
        + b"1.0".ljust(8, b"\0")
        + struct.pack("<QHHIQII", 64, blob_type, 0, 0, 0, zlib.crc32(info), 0)
    )
    return (header + info) * count


UNKNOWN_TYPE = 99


def test_json_blobs_make_no_json_dumps_call_per_value(monkeypatch):
    reader = read_bytes(minimal_blobs(1000, UNKNOWN_TYPE))
    calls = []
    real_dumps = json.dumps

    def counting_dumps(*args, **kwargs):
        calls.append(args)
        return real_dumps(*args, **kwargs)

    monkeypatch.setattr(json, "dumps", counting_dumps)
    text = jsonout.dumps(jsonout.document(blobs=jsonout.blobs(reader)))
    assert calls == []
    document = json.loads(text)
    assert len(document["blobs"]) == 1000
    assert document["blobs"][999]["type"] == "UNKNOWN(99)"
    assert document["blobs"][999]["offset"] == 999 * 64


def test_json_dump_is_written_in_pieces_without_holding_its_text():
    reader = read_bytes(minimal_blobs(20000, UNKNOWN_TYPE))
    sizes: list[int] = []
    tracemalloc.start()
    try:
        jsonout.dump(
            jsonout.document(blobs=jsonout.blobs(reader)), lambda text: sizes.append(len(text))
        )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    total = sum(sizes)
    assert len(sizes) > 10 and max(sizes) < total / 10
    assert peak < total / 4


def test_dump_and_dumps_agree_on_every_layout():
    document = {
        "a": 1,
        "b": [1, 2.5, "x\u00e9\x1b", None, True, False],
        "c": {},
        "d": [],
        "e": [{"x": []}, {"y": {"z": "q"}}],
        "f": (1, 2),
        "g": popef.BlobType.OPAQUE,
        "h": -0.0,
        "i": [[1], [2]],
        5: "k",
        "lazy": iter([{"n": 1}, {"n": 2}]),
        "empty": iter([]),
    }
    pieces: list[str] = []
    jsonout.dump(dict(document, lazy=iter([{"n": 1}, {"n": 2}]), empty=iter([])), pieces.append)
    text = jsonout.dumps(document)
    assert "".join(pieces) == text
    assert json.loads(text)["lazy"] == [{"n": 1}, {"n": 2}] and json.loads(text)["empty"] == []
    assert '"b": [1, 2.5, "x\\u00e9\\u001b", null, true, false]' in text
    assert '"g": 4' in text and '"f": [1, 2]' in text
    with pytest.raises(ValueError):
        jsonout.dumps({"x": float("nan")})


BAD_OPAQUE = 4  # OPAQUE, whose 16 zero bytes of info do not decode


def test_check_lists_the_first_problems_of_a_kind_and_counts_the_rest():
    count = MAX_PROBLEMS_PER_KIND + 150
    report = verify(read_bytes(minimal_blobs(count, BAD_OPAQUE)))
    assert not report.ok
    assert len(report.problems) == MAX_PROBLEMS_PER_KIND
    assert [p.blob_index for p in report.problems] == list(range(MAX_PROBLEMS_PER_KIND))
    assert report.omitted == {"format": 150}
    assert report.num_problems == count


def test_check_report_stays_short(tmp_path):
    path = tmp_path / "bad.popef"
    path.write_bytes(minimal_blobs(MAX_PROBLEMS_PER_KIND + 150, BAD_OPAQUE))
    runner = CliRunner()
    text = runner.invoke(popef_main, ["check", str(path)])
    assert text.exit_code == 1
    lines = text.output.splitlines()
    assert f"  Result: {MAX_PROBLEMS_PER_KIND + 150} problems" in lines
    assert sum(line.startswith("    format: bad opaque info") for line in lines) == 100
    assert lines[-1] == (
        "    format: ... and 150 more format problems like these (the first "
        f"{MAX_PROBLEMS_PER_KIND} of each kind are listed)"
    )
    as_json = runner.invoke(popef_main, ["check", "--json", str(path)])
    assert as_json.exit_code == 1
    verified = json.loads(as_json.output)["verify"]
    assert len(verified["problems"]) == MAX_PROBLEMS_PER_KIND
    assert verified["num_problems"] == MAX_PROBLEMS_PER_KIND + 150
    assert verified["problems_omitted"] == {"format": 150}
    assert verified["ok"] is False
