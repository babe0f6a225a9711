"""Progress of ``popef triton setup`` while pip installs Triton's packages (about a minute).

pip's own output is long and, with ``--quiet``, absent. :class:`PipProgress` reads pip's lines
as they come and summarizes them on one status line of a terminal — a spinner, the phase
(collecting, downloading, installing) and a count of packages — rewritten in place and
cleared when pip ends. Where stderr is not a terminal (a log, CI), it writes nothing: the step
lines of the setup say what happens.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from typing import TextIO

__all__ = ["PipProgress", "summarize_pip_line"]

_SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
_COLLECTING = re.compile(r"^\s*Collecting (\S+)")
_DOWNLOADING = re.compile(r"^\s*Downloading (\S+)(?: \(([^)]*)\))?")
_INSTALLING = re.compile(r"^\s*Installing collected packages: (.*)")
_BUILDING = re.compile(r"^\s*Building wheels? for (\S+)")


def summarize_pip_line(line: str) -> tuple[str, str] | None:
    """A line of pip's output as ``(phase, detail)``, or None for lines that say nothing new:
    ``("collecting", "numpy<2")``, ``("downloading", "nvidia_pytriton-0.7.0-…whl (33.1 MB)")``,
    ``("building", "pkg")``, ``("installing", "12 packages")``."""
    if match := _COLLECTING.match(line):
        return "collecting", match.group(1)
    if match := _DOWNLOADING.match(line):
        name = match.group(1).rsplit("/", 1)[-1]
        return "downloading", f"{name} ({match.group(2)})" if match.group(2) else name
    if match := _BUILDING.match(line):
        return "building", match.group(1)
    if match := _INSTALLING.match(line):
        return "installing", f"{len(match.group(1).split(', '))} packages"
    return None


class PipProgress:
    """A one-line status of a pip run on ``stream``, animated while it lasts (terminals only).

    Feed it pip's lines with :meth:`line`; :meth:`close` clears the status. Thread-safe: a
    ticker thread turns the spinner while pip is silent (resolving, unpacking a large wheel).
    """

    def __init__(
        self, stream: TextIO | None = None, enabled: bool | None = None, interval: float = 0.1
    ):
        self._stream = stream if stream is not None else sys.stderr
        if enabled is None:
            try:
                enabled = self._stream.isatty()
            except (AttributeError, ValueError):
                enabled = False
        self.enabled = enabled
        self._lock = threading.Lock()
        self._phase, self._detail = "starting", "pip"
        self._collected = 0
        self._frame = 0
        self._start = time.monotonic()
        self._width = 0
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        if enabled:
            self._ticker = threading.Thread(
                target=self._tick, args=(interval,), daemon=True, name="popef-pip-progress"
            )
            self._ticker.start()

    def line(self, text: str) -> None:
        """One line of pip's output."""
        summary = summarize_pip_line(text)
        if summary is None:
            return
        with self._lock:
            self._phase, self._detail = summary
            if self._phase == "collecting":
                self._collected += 1
            self._draw()

    def status(self) -> str:
        """The status line as it is now (without the spinner)."""
        counted = f", {self._collected} collected" if self._collected else ""
        return (
            f"pip: {self._phase} {self._detail}{counted} [{time.monotonic() - self._start:.0f} s]"
        )

    def close(self) -> None:
        """Stop the spinner and clear the status line."""
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        with self._lock:
            if self.enabled and self._width:
                self._stream.write("\r" + " " * self._width + "\r")
                self._stream.flush()
                self._width = 0

    def __enter__(self) -> PipProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _tick(self, interval: float) -> None:
        while not self._stop.wait(interval):
            with self._lock:
                self._frame += 1
                self._draw()

    def _draw(self) -> None:
        if not self.enabled:
            return
        text = f"{_SPINNER[self._frame % len(_SPINNER)]} {self.status()}"
        limit = _terminal_width() - 1
        text = text if len(text) <= limit else text[: limit - 1] + "…"
        self._stream.write("\r" + text + " " * max(0, self._width - len(text)))
        self._stream.flush()
        self._width = len(text)


def _terminal_width() -> int:
    import shutil

    return max(20, shutil.get_terminal_size((80, 24)).columns)
