"""The popef_dump command: Graphcore's exact layout, exit codes, stderr, escaping, laziness."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import pytest

import popef
from popef import format as fmt
from popef.format import codec

from ..helpers import TUTORIAL_USER_ANCHORS
from .conftest import FIXTURES, invoke

# Graphcore's own `popef_dump --user-anchors` output for the tutorial MNIST model.
MNIST_USER_ANCHORS = "PopEF file: executable.popef\n" + TUTORIAL_USER_ANCHORS

BROKEN = {
    "bad_magic.popef": ("not a PopEF blob", "blob #1", "field 'magic'", "offset 0x2c0"),
    "truncated.popef": ("partial blob at the end", "blob #5", "offset 0xb00"),
    "bad_version.popef": ("unsupported blob version 2.0", "blob #0", "offset 0x8"),
    "bad_metadata.popef": ("bad metadata", "field 'anchors'", "offset 0x436"),
}

ANSI_SGR = re.compile(r"\x1b\[[0-9;]*m")


def test_user_anchors_is_graphcores_layout(in_fixtures):
    result = invoke(["--user-anchors", "executable.popef"])
    assert result.exit_code == 0
    assert result.stderr == ""
    assert result.stdout == MNIST_USER_ANCHORS


def test_user_anchors_of_a_model_split_over_two_files(in_fixtures):
    result = invoke(["--user-anchors", "split_executable.popef", "split_variables.popef"])
    lines = MNIST_USER_ANCHORS.splitlines(keepends=True)
    expected = "PopEF file: split_executable.popef\nPopEF file: split_variables.popef\n"
    assert result.stdout == expected + "".join(lines[1:])


def test_popef_dump_subcommand_is_the_same_command(in_fixtures):
    from popef.cli import main

    result = invoke(["dump", "--user-anchors", "executable.popef"], command=main)
    assert (result.exit_code, result.stdout) == (0, MNIST_USER_ANCHORS)


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_malformed_file_is_one_error_line(name, in_fixtures):
    # --verify lists a blob whose info does not decode among its problems (see below)
    verify = [] if name == "bad_metadata.popef" else [["--verify"]]
    for options in ([], ["--all"], ["--json", "--blobs"], *verify):
        result = invoke([*options, name])
        assert result.exit_code == 1
        assert result.stdout == ""
        assert len(result.stderr.splitlines()) == 1
        line = result.stderr.rstrip("\n")
        assert line.startswith("error: ")
        for part in BROKEN[name] + (f"in {name}",):
            assert part in line
        assert "Traceback" not in result.stderr


def test_verify_lists_a_blob_that_does_not_decode(in_fixtures):
    result = invoke(["--verify", "bad_metadata.popef"])
    assert result.exit_code == 1
    assert result.stderr == ""
    assert "    format: bad metadata: count 100000" in result.stdout
    assert "Linking rules: not checked" in result.stdout


def test_traceback_on_request(in_fixtures):
    result = invoke(["--traceback", "bad_magic.popef"])
    assert result.exit_code == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert "BadMagicError" in result.stderr
    assert result.stderr.splitlines()[-1].startswith("error: not a PopEF blob")


def test_missing_file_is_an_error_not_a_usage_error(in_fixtures):
    result = invoke(["no_such.popef"])
    assert result.exit_code == 1
    assert result.stderr == "error: cannot read 'no_such.popef': No such file or directory\n"


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--json"],
        ["--bogus", "executable.popef"],
        ["--diff", "executable.popef"],
        ["--diff", "executable.popef", "executable_v2.popef", "multi.popef"],
        ["--diff", "executable.popef", "executable_v2.popef", "--blobs"],
        ["--diff", "executable.popef", "executable_v2.popef", "--verify"],
        ["."],
    ],
)
def test_usage_errors_exit_2(args, in_fixtures):
    result = invoke(args)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "Error:" in result.stderr


def test_bad_checksum_is_found_by_verify_only(in_fixtures):
    plain = invoke(["--blobs", "bad_checksum.popef"])
    assert plain.exit_code == 0
    assert "MISMATCH" not in plain.stdout
    checked = invoke(["--blobs", "--verify", "bad_checksum.popef"])
    assert checked.exit_code == 1
    rows = [line for line in checked.stdout.splitlines() if "MISMATCH" in line]
    assert len(rows) == 1 and '"conv1.weight"' in rows[0]
    assert "checksum: checksum mismatch" in checked.stdout


def test_broken_links_warn_on_a_dump_and_fail_verify(in_fixtures):
    dump = invoke(["dangling.popef"])
    assert dump.exit_code == 0
    warnings = dump.stderr.splitlines()
    assert len(warnings) == 6 and all(w.startswith("warning: ") for w in warnings)
    verify = invoke(["--json", "--verify", "dangling.popef"])
    assert verify.exit_code == 1
    assert verify.stderr == ""
    report = json.loads(verify.stdout)["verify"]
    assert [p["kind"] for p in report["problems"]] == ["link"] * 6
    assert [p["message"] for p in report["problems"]] == [w[len("warning: ") :] for w in warnings]


def test_check_command(in_fixtures):
    from popef.cli import main

    assert invoke(["check", "executable.popef"], command=main).exit_code == 0
    assert invoke(["check", "dangling.popef"], command=main).exit_code == 1
    assert invoke(["check"], command=main).exit_code == 2


# -- untrusted names -----------------------------------------------------------------


def _assert_inert(text: str) -> None:
    """No control character but newlines, no bidi override, no forged line."""
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]", text), text
    assert not any(line.startswith("break") for line in text.splitlines())


@pytest.mark.parametrize("options", [[], ["--all", "--verify"], ["--stats"]])
def test_hostile_names_are_escaped_in_text(options, in_fixtures):
    result = invoke([*options, "hostile_names.popef"])
    assert result.exit_code == 0
    _assert_inert(result.stdout + result.stderr)
    if "--all" in options:
        for literal in (
            '"[bold red]x[/]"',
            r'"\x1b[31mred\x1b[0m"',
            r'"line\nbreak"',
            r'"abc\u202edcba"',
            r'"say \"hi\" \\o/"',
        ):
            assert literal in result.stdout


def test_hostile_names_are_escaped_on_a_terminal(in_fixtures):
    result = invoke(["--color", "--all", "hostile_names.popef"])
    assert result.exit_code == 0
    assert "\x1b[" in result.stdout  # it is coloured...
    plain = ANSI_SGR.sub("", result.stdout)
    _assert_inert(plain)  # ...but only by its own SGR sequences
    assert "[bold red]x[/]" in plain  # markup is shown, not interpreted
    assert "[link=https://example.invalid]exe[/link]" in plain
    assert r"\x1b]8;;x\x07" in plain  # no hyperlink escape reaches the terminal


def test_hostile_names_in_json_round_trip(in_fixtures):
    from tests.data.make_fixtures import HOSTILE

    result = invoke(["--json", "--all", "hostile_names.popef"])
    assert result.stdout.isascii()
    document = json.loads(result.stdout)
    names = {a["name"] for a in document["models"][0]["anchors"]}
    assert set(HOSTILE.values()) <= names


def test_hostile_names_in_warnings_and_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with popef.Writer("links.popef") as writer:
        writer.write_metadata(popef.Metadata(executable="\x1b[2J\x1b]0;pwned\x07"))
    result = invoke(["links.popef"])
    assert result.exit_code == 0
    assert result.stderr.startswith(
        r"warning: metadata must name an existing executable: "
        r"'\x1b[2J\x1b]0;pwned\x07'"
    )
    _assert_inert(result.stdout + result.stderr)
    result = invoke(["no\x1b[2Jfile.popef"])
    assert (
        result.stderr
        == r"error: cannot read 'no\x1b[2Jfile.popef': No such file or directory" + "\n"
    )


# -- colour --------------------------------------------------------------------------


def test_plain_when_piped_colour_on_request(in_fixtures):
    assert "\x1b" not in invoke(["--all", "full.popef"]).stdout
    assert "\x1b" not in invoke(["--no-color", "--all", "full.popef"]).stdout
    coloured = invoke(["--color", "--blobs", "full.popef"]).stdout
    assert "\x1b[" in coloured and "─" in coloured


# -- laziness ------------------------------------------------------------------------


def test_no_tensor_bytes_read_without_stats_verify_or_diff(in_fixtures, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("tensor data was read")

    for owner, name in (
        (popef.TensorReader, "data"),
        (popef.Blob, "payload_view"),
        (popef.Blob, "read_payload"),
        (popef.Blob, "iter_raw"),
        (popef.Blob, "verify"),
    ):
        monkeypatch.setattr(owner, name, refuse)
    for options in ([], ["--all"], ["--json", "--all"]):
        result = invoke([*options, "full.popef", "split_executable.popef", "split_variables.popef"])
        assert result.exit_code == 0, result.stderr
    with pytest.raises(AssertionError, match="tensor data was read"):
        invoke(["--stats", "full.popef"])


def test_huge_file_dumps_fast(tmp_path, monkeypatch):
    """A file with a 1 GiB tensor (sparse on disk): listing it reads only headers and infos."""
    size = 1 << 30
    info = codec.encode_tensor_data_info(
        popef.TensorDataInfo("big", popef.TensorInfo(popef.DataType.F32, (size // 4,)))
    )
    total = fmt.total_size(len(info), size)
    header = fmt.HEADER.build(
        {
            "magic": fmt.MAGIC,
            "version": fmt.VERSION_STRING,
            "total_size": total,
            "blob_type": int(popef.BlobType.DATA_TENSOR),
            "flags": 0,
            "info_size": len(info),
            "payload_size": size,
            "checksum": 0,
            "reserved": 0,
        }
    )
    path = tmp_path / "big.popef"
    with open(path, "wb") as f:
        f.write(header + info)
        f.truncate(total)
    monkeypatch.chdir(tmp_path)
    start = time.thread_time()  # CPU time: the work, however loaded the machine
    result = invoke(["--all", "big.popef"])
    elapsed = time.thread_time() - start
    assert result.exit_code == 0, result.stderr
    assert re.search(r'"big" +F32 +\[268435456\] +1073741824 ', result.stdout)
    assert elapsed < 2.0


# -- the installed entry points -------------------------------------------------------


def _script(name: str) -> str:
    path = Path(sys.executable).parent / name
    if not path.exists():
        pytest.skip(f"no {name} console script beside {sys.executable}")
    return str(path)


def test_console_script():
    result = subprocess.run(
        [_script("popef_dump"), "--user-anchors", "executable.popef"],
        cwd=FIXTURES,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, MNIST_USER_ANCHORS, "")


def test_python_m_and_version():
    result = subprocess.run(
        [sys.executable, "-m", "popef_dump", "--version"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0
    assert result.stdout == f"popef_dump {version('popef')}\n"


def test_help_imports_neither_the_library_nor_numpy_nor_rich():
    code = (
        "import sys\nfrom popef_dump.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('LOADED', sorted(m for m in ('numpy', 'rich', 'popef') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert "Usage:" in result.stdout
    assert "LOADED []" in result.stdout
