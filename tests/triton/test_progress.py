"""popef triton setup's progress: pip's lines summarized on one terminal line, quiet elsewhere."""

from __future__ import annotations

import io
import sys

import pytest

from popef.triton import environment
from popef.triton.environment import TritonEnvError
from popef.triton.progress import PipProgress, summarize_pip_line

PIP_OUTPUT = """\
Looking in indexes: https://pypi.org/simple
Collecting nvidia-pytriton==0.7.0
  Downloading nvidia_pytriton-0.7.0-py3-none-manylinux_2_35_x86_64.whl (33.1 MB)
Collecting numpy<2,>=1.23
  Using cached numpy-1.26.4-cp311-cp311-manylinux_2_17_x86_64.whl (18.3 MB)
Requirement already satisfied: click>=8.1 in ./lib/python3.11/site-packages
Installing collected packages: numpy, typing-extensions, nvidia-pytriton
Successfully installed numpy-1.26.4 nvidia-pytriton-0.7.0 typing-extensions-4.12.2
"""


@pytest.mark.parametrize(
    "line, expected",
    [
        ("Collecting nvidia-pytriton==0.7.0", ("collecting", "nvidia-pytriton==0.7.0")),
        (
            "  Downloading https://files.example/p/nvidia_pytriton-0.7.0.whl (33.1 MB)",
            ("downloading", "nvidia_pytriton-0.7.0.whl (33.1 MB)"),
        ),
        ("Installing collected packages: a, b, c", ("installing", "3 packages")),
        ("  Building wheel for pkg (pyproject.toml): started", ("building", "pkg")),
        ("Requirement already satisfied: click>=8.1", None),
        ("", None),
    ],
)
def test_pip_lines_are_summarized(line, expected):
    assert summarize_pip_line(line) == expected


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_one_status_line_rewritten_in_place_then_cleared():
    terminal = FakeTerminal()
    with PipProgress(terminal, interval=3600) as progress:
        for line in PIP_OUTPUT.splitlines():
            progress.line(line)
        assert "installing 3 packages, 2 collected" in progress.status()
    written = terminal.getvalue()
    assert "\n" not in written  # one line, redrawn with carriage returns
    assert "pip: collecting nvidia-pytriton==0.7.0" in written
    assert "pip: downloading nvidia_pytriton-0.7.0" in written
    assert written.endswith("\r") and written.rsplit("\r", 2)[-2].strip() == ""  # cleared


def test_nothing_is_written_where_stderr_is_not_a_terminal():
    log = io.StringIO()
    with PipProgress(log) as progress:
        assert not progress.enabled
        for line in PIP_OUTPUT.splitlines():
            progress.line(line)
    assert log.getvalue() == ""


def test_the_command_runner_streams_lines_and_logs_the_tail_of_a_failure():
    seen, logged = [], []
    script = "import sys; print('Collecting a'); print('Collecting b'); sys.exit(3)"
    with pytest.raises(TritonEnvError, match="exited with 3"):
        environment._run([sys.executable, "-c", script], "install", logged.append, seen.append)
    assert [line.strip() for line in seen] == ["Collecting a", "Collecting b"]
    assert logged == ["Collecting a\nCollecting b"]
    environment._run([sys.executable, "-c", "print('ok')"], "check", logged.append)
