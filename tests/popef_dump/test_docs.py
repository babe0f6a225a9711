"""docs/cli.md shows real output: every ```console block is run and compared.

A block starts with ``$ popef_dump ARGS`` or ``$ popef SUBCOMMAND ARGS``; the rest of the block
is what the command prints (stderr first: its warnings come before the output), run from
tests/data/fixtures. With ``--update-goldens`` the blocks are rewritten from the real output.
"""

from __future__ import annotations

import os
import re
import shlex

from .conftest import DATA, invoke

DOC = DATA.parent.parent / "docs" / "cli.md"
BLOCK = re.compile(r"^```console\n(\$ [^\n]*)\n(.*?)^```$", re.M | re.S)


def _run(command_line: str) -> str:
    from popef.cli import main as popef_main

    words = shlex.split(command_line[2:])
    program, args = words[0], words[1:]
    assert program in ("popef_dump", "popef"), command_line
    result = invoke(args, command=popef_main if program == "popef" else None)
    return result.stderr + result.stdout


def test_cli_md_examples_are_real_output(in_fixtures, request):
    text = DOC.read_text(encoding="utf-8")
    blocks = list(BLOCK.finditer(text))
    assert len(blocks) >= 15
    update = (
        request.config.getoption("--update-goldens", default=False)
        or os.environ.get("POPEF_UPDATE_GOLDENS") == "1"
    )
    if update:
        DOC.write_text(
            BLOCK.sub(lambda m: f"```console\n{m[1]}\n{_run(m[1])}```", text),
            encoding="utf-8",
            newline="\n",
        )
        return
    for match in blocks:
        assert match[2] == _run(match[1]), f"docs/cli.md: the output of {match[1]!r} changed"


def test_cli_md_documents_every_option():
    from popef_dump.cli import dump_command

    text = DOC.read_text(encoding="utf-8")
    for param in dump_command.params:
        for opt in param.opts:
            if opt.startswith("-"):
                assert f"`{opt}" in text, f"docs/cli.md does not document {opt}"
