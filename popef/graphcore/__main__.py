"""``python -m popef.graphcore SCRIPT.py [ARGS...]``: run a script written for Graphcore's
``popef`` and ``model_runtime`` modules on this library."""

from __future__ import annotations

import os
import sys
from types import TracebackType

USAGE = """\
usage: python -m popef.graphcore SCRIPT.py [ARGS...]

Run SCRIPT.py as `python SCRIPT.py ARGS...` would, with `import popef` giving Graphcore's
popef module and `import model_runtime` Graphcore's model_runtime, both over this library
(see docs/graphcore-api.md). Models run on this library's executors: real Poplar
executables cannot run here.
"""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        (sys.stdout if argv else sys.stderr).write(USAGE)
        return 0 if argv else 1
    if argv[0].startswith("-"):
        from ..escaping import escape_text

        print(
            f"error: unknown option '{escape_text(argv[0])}' (expected a script path first; "
            "see --help)",
            file=sys.stderr,
        )
        return 1
    from ..errors import PopefError
    from .launcher import check_script, run_script

    try:
        check_script(argv[0])
    except PopefError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    # The script's own errors end as under `python SCRIPT.py`: its traceback and status 1.
    try:
        run_script(argv[0], argv[1:])
    except Exception as exc:  # noqa: BLE001 - reported as Python reports it
        tb = _script_frames(exc, os.path.abspath(argv[0]))
        sys.excepthook(type(exc), exc.with_traceback(tb), tb)
        return 1
    return 0


def _script_frames(exc: BaseException, script: str) -> TracebackType | None:
    """The traceback from the script's first frame on, without the launcher's frames above
    it, as `python SCRIPT.py` would print it (none for a script that failed to compile)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != script:
        tb = tb.tb_next
    if tb is None and not isinstance(exc, SyntaxError):
        return exc.__traceback__
    return tb


if __name__ == "__main__":
    sys.exit(main())
