"""The server's log: Triton's line format, untrusted text escaped, lines bounded, repeated
lines rate-limited.

Every line goes through :class:`GlogFormatter`, which escapes control characters (ESC, CR, LF,
C1 controls, bidi overrides...) in the whole message, so a model folder or anchor name cannot
forge log lines or drive a terminal whatever the call site, and cuts each line at
:data:`MAX_LINE_CHARS`, so a huge name cannot fill the disk either. A record logged with
``extra=TRUSTED_LINES`` keeps its line breaks (each line still escaped and bounded): the model
table. :class:`RepeatFilter` keeps a flood of one message (``too many open files`` from the
accept loop) from filling the disk: the first few pass, then one per interval saying how many
were left out. A model's state changes (loading, loaded, failed, unloading, unloaded) are
logged with ``extra=STATE_CHANGE`` and always pass, so a flood of load requests cannot hide
one. :func:`configure_logging` installs both on ``popef.serving`` and on the loggers of uvicorn
and asyncio.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from ..escaping import escape_text

if TYPE_CHECKING:
    from .repository import ModelRepository

__all__ = [
    "LOGGER_NAMES",
    "MAX_LINE_CHARS",
    "STATE_CHANGE",
    "TRUSTED_LINES",
    "GlogFormatter",
    "RepeatFilter",
    "configure_logging",
    "model_table",
]

#: the loggers the server's handler serves: its own, and those of the HTTP server and event loop
LOGGER_NAMES = ("popef.serving", "uvicorn.error", "asyncio")
#: ``extra`` for a record whose line breaks are the code's own (each line is still escaped)
TRUSTED_LINES = {"trusted_lines": True}
#: ``extra`` for a line that records a model's state change: never rate-limited
STATE_CHANGE = {"state_change": True}
#: the most characters of a message (or of one of its trusted lines) written, once escaped
MAX_LINE_CHARS = 16 * 1024


def _escape_line(text: str) -> str:
    return escape_text(text, backslashes=False, limit=MAX_LINE_CHARS)


def _escape_lines(text: str) -> str:
    return "\n".join(_escape_line(line) for line in text.split("\n"))


class GlogFormatter(logging.Formatter):
    """Triton's log format: ``I1125 20:15:00.123456 4242 server.py:123] message``, with the
    message's control characters escaped and each line cut at :data:`MAX_LINE_CHARS`
    (``…(N more characters)``)."""

    def format(self, record: logging.LogRecord) -> str:
        level = {"WARNING": "W", "ERROR": "E", "CRITICAL": "E"}.get(record.levelname, "I")
        t = datetime.fromtimestamp(record.created)
        prefix = (
            f"{level}{t:%m%d %H:%M:%S}.{t.microsecond:06d} {record.process} "
            f"{record.filename}:{record.lineno}]"
        )
        message = record.getMessage()
        if getattr(record, "trusted_lines", False):
            message = _escape_lines(message)
        else:
            message = _escape_line(message)
        text = f"{prefix} {message}"
        if record.exc_info:
            # a traceback's line breaks are Python's; other controls are escaped
            text += "\n" + _escape_lines(self.formatException(record.exc_info))
        return text


# -- rate limiting -----------------------------------------------------------------------------


@dataclass
class _Repeats:
    last_seen: float
    last_passed: float
    passed: int = 1  # lines passed since the key started over
    suppressed: int = 0  # lines left out since the last one passed


_NUMBERS = re.compile(r"\d+")


class RepeatFilter(logging.Filter):
    """Rate-limits repeated lines: per logger, level and message (numbers aside, so ``fd=12``
    and ``fd=13`` count as one, while ``loading: a`` and ``loading: b`` do not), the first
    ``burst`` lines pass, then at most one per ``interval`` seconds, which ends with
    ``(N similar messages suppressed)``.

    A kind of line quiet for ``interval`` seconds starts over; the count left out is told with
    the next line of that kind that passes. A record logged with ``extra=STATE_CHANGE``
    always passes (and is not counted). ``clock`` is for tests.
    """

    def __init__(
        self,
        burst: int = 5,
        interval: float = 10.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 1024,
    ) -> None:
        super().__init__()
        self.burst = burst
        self.interval = interval
        self.clock = clock
        self.max_keys = max_keys
        self._repeats: OrderedDict[tuple, _Repeats] = OrderedDict()
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "state_change", False):
            return True
        # (bounded: 1,000 kinds of a 20 MB line must not hold 20 GB)
        text = record.getMessage()[:MAX_LINE_CHARS]
        key = (record.name, record.levelno, _NUMBERS.sub("#", text))
        now = self.clock()
        with self._lock:
            repeats = self._repeats.get(key)
            if repeats is None:
                self._repeats[key] = _Repeats(now, now)
                if len(self._repeats) > self.max_keys:
                    self._repeats.popitem(last=False)
                return True
            self._repeats.move_to_end(key)
            quiet = now - repeats.last_seen >= self.interval
            repeats.last_seen = now
            if quiet:
                repeats.passed = 0
            elif repeats.passed >= self.burst and now - repeats.last_passed < self.interval:
                repeats.suppressed += 1
                return False
            suppressed, repeats.suppressed = repeats.suppressed, 0
            repeats.passed += 1
            repeats.last_passed = now
        if suppressed:
            _append(
                record, f" ({suppressed} similar message{'s' if suppressed > 1 else ''} suppressed)"
            )
        return True


def _append(record: logging.LogRecord, suffix: str) -> None:
    """Add ``suffix`` to the record's message (formatted once, so ``%`` in it stays literal)."""
    record.msg = record.getMessage() + suffix
    record.args = None


# -- setup ---------------------------------------------------------------------------------------


def configure_logging(
    verbose: int = 0,
    *,
    info: bool = True,
    warning: bool = True,
    error: bool = True,
    stream=None,
    repeat_filter: RepeatFilter | None = None,
) -> logging.Handler:
    """Log ``popef.serving``, ``uvicorn.error`` and ``asyncio`` in Triton's format, to stderr
    like tritonserver, through one handler that escapes and rate-limits (returned)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(GlogFormatter())
    handler.addFilter(repeat_filter or RepeatFilter())
    if verbose > 0:
        level = logging.DEBUG
    elif info:
        level = logging.INFO
    elif warning:
        level = logging.WARNING
    elif error:
        level = logging.ERROR
    else:
        level = logging.CRITICAL + 1
    for name in LOGGER_NAMES:
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.propagate = False
        if name == "popef.serving":
            logger.setLevel(level)
        else:  # the libraries' own info lines are not the server's; their warnings are
            logger.setLevel(max(level, logging.WARNING))
    return handler


def model_table(repository: ModelRepository) -> str:
    """Triton's model status table; names and reasons escaped, as in every log line. Log it
    with ``extra=TRUSTED_LINES`` to keep its rows on lines of their own."""
    from .repository import READY

    rows = []
    for entry in repository.index():
        status = entry["state"]
        if entry["reason"] and entry["state"] != READY:
            status += f": {entry['reason']}"
        rows.append(
            tuple(
                escape_text(cell, backslashes=False)
                for cell in (entry["name"], entry["version"] or "-", status)
            )
        )
    header = ("Model", "Version", "Status")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def line(r) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"

    return "\n".join(["", rule, line(header), rule, *(line(r) for r in rows), rule])
