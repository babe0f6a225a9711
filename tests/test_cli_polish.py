"""First-run polish of the command lines: one form of --version, whole descriptions in
``popef --help``, a start-up error said once, no machine-specific defaults in --help."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
from click.testing import CliRunner

from popef import __version__
from popef.cli import main as popef_main

ROOT = Path(__file__).resolve().parent.parent


def test_both_commands_print_the_version_in_one_form():
    assert CliRunner().invoke(popef_main, ["--version"]).output == f"popef {__version__}\n"
    dump = subprocess.run(
        [sys.executable, "-m", "popef_dump", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert dump.stdout == f"popef_dump {__version__}\n"


def test_the_command_list_shows_whole_first_sentences():
    output = CliRunner().invoke(popef_main, ["--help"], terminal_width=80).output
    listed = " ".join(output.split("Commands:")[1].split())
    context = click.Context(popef_main, info_name="popef")
    for name in popef_main.list_commands(context):
        sentence = popef_main.get_command(context, name).get_short_help_str(limit=1000)
        assert f"{name} {sentence}" in listed


def test_serve_help_lists_only_the_model_control_modes_it_accepts():
    output = CliRunner().invoke(popef_main, ["serve", "--help"]).output
    assert "[none|explicit]" in output and "none|explicit|poll" not in output


def test_a_start_up_error_is_said_once(tmp_path):
    missing = tmp_path / "missing"
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from popef.cli import main; main()",
            "serve",
            "--model-repository",
            str(missing),
            "--http-port",
            "0",
            "--grpc-port",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if "is not a folder" in line]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr


def test_the_examples_help_names_no_folder_of_this_machine():
    for script in ("client.py", "evaluate.py", "train.py"):
        result = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "mnist" / script), "--help"],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        assert str(ROOT) not in result.stdout, script
