"""The server's log: untrusted names escaped in every line, repeated lines rate-limited (with a
fake clock), uvicorn's and asyncio's loggers routed through the same handler."""

from __future__ import annotations

import io
import logging
import re

import pytest

import popef
from popef.escaping import escape_text, shorten
from popef.runtime import GraphBuilder
from popef.serving import ModelRepository
from popef.serving.logs import (
    LOGGER_NAMES,
    MAX_LINE_CHARS,
    STATE_CHANGE,
    TRUSTED_LINES,
    GlogFormatter,
    RepeatFilter,
    configure_logging,
    model_table,
)

from .conftest import build_tiny, config, local_server

#: what a hostile name carries: a colour, a terminal title, a forged log line, a bidi override
EVIL = "x\x1b[31mred\x1b]0;pwned\x07\r\nE0101 00:00:00.000000 1 forged.py:1] hi\u202etxt\x9b"
LINE = re.compile(r"^[IWE]\d{4} \d\d:\d\d:\d\d\.\d{6} \d+ [\w.]+:\d+\] ")


def control_free(text: str) -> bool:
    return not any(not c.isprintable() and c != "\n" for c in text)


@pytest.fixture()
def server_log():
    """``configure_logging`` into a string, restoring the loggers it touches afterwards."""
    saved = {
        n: (lg.handlers[:], lg.propagate, lg.level)
        for n in LOGGER_NAMES
        for lg in [logging.getLogger(n)]
    }
    stream = io.StringIO()
    stream.handler = configure_logging(stream=stream)
    yield stream
    for name, (handlers, propagate, level) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:], logger.propagate = handlers, propagate
        logger.setLevel(level)


def record(msg: str, *args, **extra) -> logging.LogRecord:
    rec = logging.LogRecord("popef.serving", logging.ERROR, "repository.py", 42, msg, args, None)
    rec.__dict__.update(extra)
    return rec


# -- escaping -----------------------------------------------------------------------------------


def test_the_formatter_escapes_control_characters_in_every_message():
    formatter = GlogFormatter()
    for rec in (
        record("failed to load '%s': %s", EVIL, "reason"),
        record(f"an f-string with {EVIL}"),
    ):
        text = formatter.format(rec)
        assert "\n" not in text and control_free(text)
        assert LINE.match(text)
        assert "x\\x1b[31mred\\x1b]0;pwned\\x07\\r\\nE0101" in text
        assert "\\u202etxt\\x9b" in text
    # printable text, non-ASCII letters and backslashes are kept as written
    assert formatter.format(record("modèle 'ü' C:\\path")).endswith("] modèle 'ü' C:\\path")


def test_trusted_lines_keep_their_breaks_and_tracebacks_are_escaped():
    formatter = GlogFormatter()
    text = formatter.format(
        record("%s", "\nrow one\nrow " + EVIL.replace("\n", ""), **TRUSTED_LINES)
    )
    assert text.count("\n") == 2 and control_free(text)
    try:
        raise ValueError(EVIL)
    except ValueError:
        import sys

        rec = record("boom")
        rec.exc_info = sys.exc_info()
    text = formatter.format(rec)
    assert control_free(text) and "ValueError: x\\x1b[31m" in text


def test_hostile_folder_and_anchor_names_reach_the_log_escaped(tmp_path, server_log):
    evil_folder = tmp_path / f"m{EVIL}"
    evil_folder.mkdir()  # no version folder: fails, with its name in the reason
    anchors = tmp_path / "anchors"
    version = anchors / "1"
    version.mkdir(parents=True)
    g = GraphBuilder()
    x = g.add_input(f"in{EVIL}", popef.DataType.F32, (1, 4))
    g.add_output(g.add_node("Relu", [x]), f"out{EVIL}")
    g.save(version / "executable.popef", executable_name="evil")
    (anchors / "config.pbtxt").write_text(config("anchors"))  # names no anchor of the file
    repository = ModelRepository(tmp_path)
    try:
        repository.load_all()
        logging.getLogger("popef.serving").info("%s", model_table(repository), extra=TRUSTED_LINES)
    finally:
        repository.close()
    text = server_log.getvalue()
    assert control_free(text), repr(text)
    lines = text.splitlines()
    assert all(LINE.match(line) or line.startswith(("+", "|")) for line in lines), lines
    assert any("failed to load 'anchors'" in line and "inx\\x1b[31mred" in line for line in lines)
    assert any("failed to load 'mx\\x1b[31mred" in line for line in lines)
    table = [line for line in lines if line.startswith("|")]
    assert len(table) == 3  # the header and one row per model, each on its own line
    assert any(row.startswith("| mx\\x1b[31mred\\x1b]0;pwned\\x07\\r\\nE0101") for row in table)


# -- bounded lines ------------------------------------------------------------------------------


@pytest.mark.parametrize("char", ["x", "\x1b", "\U0010ffff"])
def test_a_huge_message_is_cut_to_a_bounded_line_saying_what_was_left_out(char):
    formatter = GlogFormatter()
    text = formatter.format(record("failed to load '%s': %s", char * 20_000_000, "reason"))
    assert "\n" not in text and control_free(text) and LINE.match(text)
    assert len(text) <= MAX_LINE_CHARS + 100
    message = text.split("] ", 1)[1]
    kept, left_out = re.fullmatch(
        r"failed to load '(.*)\u2026\((\d+) more characters\)", message
    ).groups()
    escaped = escape_text(char, backslashes=False)
    assert kept == escaped * (len(kept) // len(escaped))
    assert len(kept) // len(escaped) + int(left_out) == 20_000_000 + len("': reason")


def test_shorten_keeps_short_text_and_says_how_much_it_left_out():
    assert shorten("labels.txt") == "labels.txt"
    assert shorten("x" * 200) == "x" * 200
    assert shorten("x" * 201) == "x" * 200 + "\u2026(1 more character)"
    assert shorten("ab" * 150, 10) == "ababababab\u2026(290 more characters)"


def test_each_trusted_line_is_bounded_too():
    formatter = GlogFormatter()
    text = formatter.format(
        record("%s", "\nrow one\n" + "y" * 100_000 + "\nrow three", **TRUSTED_LINES)
    )
    lines = text.split("\n")
    assert len(lines) == 4 and lines[3] == "row three"
    assert len(lines[2]) <= MAX_LINE_CHARS + 40 and lines[2].endswith(" more characters)")


def test_a_short_message_is_written_whole():
    formatter = GlogFormatter()
    message = "m" * (MAX_LINE_CHARS - 1)
    assert formatter.format(record("%s", message)).endswith("] " + message)


# -- rate limiting ------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def passed(filt: RepeatFilter, msg: str, *args, name: str = "asyncio") -> str | None:
    rec = logging.LogRecord(name, logging.ERROR, "x.py", 1, msg, args, None)
    return rec.getMessage() if filt.filter(rec) else None


def test_repeated_lines_pass_a_burst_then_one_per_interval_with_the_count():
    clock = FakeClock()
    filt = RepeatFilter(burst=3, interval=10, clock=clock)
    out = [
        passed(filt, "accept failed: [Errno 24] too many open files (fd %d)", i)
        for i in range(1000)
    ]
    assert [m for m in out if m] == [
        f"accept failed: [Errno 24] too many open files (fd {i})" for i in range(3)
    ]
    clock.now += 9.5
    assert passed(filt, "accept failed: [Errno 24] too many open files (fd %d)", 5) is None
    clock.now += 0.5
    assert passed(filt, "accept failed: [Errno 24] too many open files (fd %d)", 6) == (
        "accept failed: [Errno 24] too many open files (fd 6) (998 similar messages suppressed)"
    )
    assert passed(filt, "accept failed: [Errno 24] too many open files (fd %d)", 7) is None
    # other kinds of line are counted on their own
    assert passed(filt, "another message") == "another message"
    assert (
        passed(
            filt, "accept failed: [Errno 24] too many open files (fd %d)", 8, name="popef.serving"
        )
        is not None
    )
    # a kind of line quiet for an interval starts over, telling what was left out
    clock.now += 10
    assert passed(filt, "accept failed: [Errno 24] too many open files (fd %d)", 9) == (
        "accept failed: [Errno 24] too many open files (fd 9) (1 similar message suppressed)"
    )
    assert passed(filt, "accept failed: [Errno 24] too many open files (fd %d)", 10) is not None


def test_lines_that_differ_by_more_than_numbers_all_pass():
    filt = RepeatFilter(burst=3, interval=10, clock=FakeClock())
    names = [f"model_{chr(0x61 + i)}" for i in range(20)]
    assert all(
        passed(filt, "successfully loaded '%s' version %d", name, 1, name="popef.serving")
        for name in names
    )


def test_a_literal_percent_survives_the_suppressed_count():
    clock = FakeClock()
    filt = RepeatFilter(burst=1, interval=1, clock=clock)
    assert passed(filt, "100%% busy: %s", "x") == "100% busy: x"
    assert passed(filt, "100%% busy: %s", "x") is None
    clock.now += 1
    assert passed(filt, "100%% busy: %s", "x") == "100% busy: x (1 similar message suppressed)"


def test_the_kinds_of_line_remembered_are_bounded():
    filt = RepeatFilter(burst=1, interval=10, clock=FakeClock(), max_keys=8)
    for i in range(100):
        assert passed(filt, f"unique line {chr(0x41 + i % 26)}{chr(0x61 + i // 26)}")
    assert len(filt._repeats) == 8


def test_state_changes_always_pass_and_are_not_counted():
    filt = RepeatFilter(burst=1, interval=10, clock=FakeClock())
    for _ in range(100):
        rec = logging.LogRecord(
            "popef.serving", logging.INFO, "x.py", 1, "loading: %s", ("m",), None
        )
        rec.__dict__.update(STATE_CHANGE)
        assert filt.filter(rec) and rec.getMessage() == "loading: m"
    assert not filt._repeats


def test_a_flood_of_loads_and_unloads_cannot_hide_a_models_state_changes(tmp_path, server_log):
    """A client in explicit mode loading and unloading a model over and over: every state
    change of that model stays in the log."""
    build_tiny(tmp_path / "m" / "1" / "executable.popef")
    (tmp_path / "m" / "config.pbtxt").write_text(config("m"))
    repository = ModelRepository(tmp_path)
    try:
        for _ in range(20):
            repository.load("m")
            repository.unload("m")
        repository.load("m")
    finally:
        repository.close()
    text = server_log.getvalue()
    assert text.count("] loading: m\n") == 21
    assert text.count("] successfully loaded 'm' version 1\n") == 21
    assert text.count("] unloading: m\n") == 20
    assert text.count("] successfully unloaded 'm' version 1\n") == 21  # the last at close
    assert "suppressed" not in text


def test_uvicorn_and_asyncio_lines_go_through_the_same_handler(server_log):
    for name in ("asyncio", "uvicorn.error"):
        for i in range(200):
            logging.getLogger(name).error(
                "socket.accept() out of system resource\nfd %d: %s", i, EVIL
            )
    lines = server_log.getvalue().splitlines()
    assert len(lines) == 10  # the first five of each logger; the rest are suppressed
    assert all(LINE.match(line) for line in lines) and control_free(server_log.getvalue())


def test_a_started_server_keeps_the_handler_on_uvicorns_logger(tmp_path, server_log):
    (tmp_path / "models").mkdir()
    srv = local_server(
        [tmp_path / "models"], allow_grpc=False, allow_metrics=False, exit_timeout=5
    ).start()
    try:
        # (pytest adds handlers of its own to loggers that do not propagate)
        assert all(server_log.handler in logging.getLogger(n).handlers for n in LOGGER_NAMES)
        assert not logging.getLogger("uvicorn.error").propagate
    finally:
        srv.stop()
