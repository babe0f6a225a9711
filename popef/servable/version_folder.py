"""The files of a model version folder: which PopEF files it serves, and opening them.

Both ``popef serve`` (:mod:`popef.serving.repository`) and the ``poplar`` backend for Triton
(:mod:`popef.triton.backend`) load a version folder with these functions::

    <model>/<version>/executable.popef   or the file default_model_filename names,
                                         or every *.popef file of the folder
    <model>/<version>/name_map.json      optional: PopEF anchor name -> served name
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..escaping import shorten
from .errors import ConfigError
from .folder_files import inside, regular_file
from .name_map import check_name_map_file
from .signature import Signature, signature_of

__all__ = ["DEFAULT_MODEL_FILENAME", "model_files", "open_model", "open_runner"]

DEFAULT_MODEL_FILENAME = "executable.popef"


def model_files(version_dir: Path, filename: str = "") -> list[Path]:
    """The PopEF files of a version folder: ``filename`` (the config's
    ``default_model_filename``) when given, else ``executable.popef``, else every ``*.popef``
    file of the folder, sorted (one model spread over several files).

    :class:`ConfigError` when ``filename`` is not a plain file name, resolves outside the model
    folder (a symlink) or is missing, when the folder has no PopEF file, or when a file it would
    serve is not a regular file (a FIFO, a device, a folder, a broken symlink: never skipped).
    """
    if filename:
        shown = shorten(filename)
        if "/" in filename or "\\" in filename or filename in (".", ".."):
            raise ConfigError(
                f"default_model_filename '{shown}' must be a file name in the version folder"
            )
        what = f"default_model_filename '{shown}'"
        path = inside(version_dir.parent, f"{version_dir.name}/{filename}", what)
        if regular_file(path, what) is None:
            raise ConfigError(
                f"version folder '{version_dir.name}' has no '{shown}' (the "
                "config's default_model_filename)"
            )
        return [path]
    default = version_dir / DEFAULT_MODEL_FILENAME
    if regular_file(default, f"'{version_dir.name}/{DEFAULT_MODEL_FILENAME}'") is not None:
        return [default]
    found = sorted(version_dir.glob("*.popef"))
    for path in found:
        regular_file(path, f"'{version_dir.name}/{path.name}'")
    if not found:
        raise ConfigError(
            f"version folder '{version_dir.name}' has no {DEFAULT_MODEL_FILENAME} "
            "(nor any .popef file)"
        )
    return found


def open_runner(
    files: Sequence[Path], executor: str, executor_options: Mapping[str, Any] | None = None
) -> Any:
    """A :class:`~popef.runtime.ModelRunner` on ``files`` whose executor is made from its name
    and options alone, so that an option named like one of ``ModelRunner``'s own arguments
    (``executable``, ``limits``...) is refused as the executor's unknown option."""
    from ..runtime import ModelRunner, get_executor

    engine = get_executor(executor, **dict(executor_options or {}))
    try:
        return ModelRunner([str(f) for f in files], engine)
    except BaseException:
        engine.close()
        raise


def open_model(
    version_dir: Path,
    files: Sequence[Path],
    executor: str,
    executor_options: Mapping[str, Any] | None = None,
) -> tuple[Any, Signature]:
    """A :class:`~popef.runtime.ModelRunner` on a version's ``files`` and the model's
    :class:`Signature`, renamed by the folder's ``name_map.json`` when it has one.

    ``name_map.json`` is read first, so a broken one fails before the model is opened; the
    runner (:func:`open_runner`) is closed again when the signature cannot be made.
    """
    name_map = check_name_map_file(version_dir)
    runner = open_runner(files, executor, executor_options)
    try:
        signature = signature_of(runner, name_map)
    except BaseException:
        runner.close()
        raise
    return runner, signature
