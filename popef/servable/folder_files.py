"""Files of a model folder that a config names: confined to the folder, regular, bounded.

Every file a model folder gives the server — ``config.pbtxt``, ``name_map.json``, label files,
the PopEF files — is found through :func:`inside` and read through :func:`read_model_file`, so
no name escapes the folder and nothing but a regular file is ever opened.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..blob import file_kind
from .errors import ConfigError

__all__ = ["inside", "read_model_file", "regular_file"]


def inside(model_dir: Path, relative: str, what: str) -> Path:
    """The file ``relative`` names in the model folder, with symlinks resolved.

    Every file name a config gives goes through here: it must be a relative path that, once
    symlinks are followed, stays inside the model folder (itself resolved, so a model folder
    that is a symlink is fine). :class:`ConfigError` otherwise, whose message starts with
    ``what`` (the setting and the name it gave, e.g. ``label_filename 'labels.txt'``).
    """
    if not relative or "\0" in relative:
        raise ConfigError(f"{what} is not a file name")
    if os.path.isabs(relative) or relative.startswith(("/", "\\")):
        raise ConfigError(
            f"{what} is an absolute path: expected a path relative to the model "
            f"folder '{model_dir.name}'"
        )
    try:
        root = model_dir.resolve()
        path = (model_dir / relative).resolve()
    except RuntimeError:
        raise ConfigError(f"cannot resolve {what}: a symlink loop") from None
    except OSError as exc:  # (its text would repeat the whole path)
        raise ConfigError(f"cannot resolve {what}: {exc.strerror}") from None
    if path == root or not path.is_relative_to(root):
        raise ConfigError(
            f"{what} is outside the model folder '{model_dir.name}' (symlinks "
            "followed): only files inside it are read"
        )
    return path


def _not_regular(mode: int) -> str | None:
    """What a file of ``mode`` is when it is not a regular file (None when it is)."""
    if stat.S_ISREG(mode):
        return None
    return file_kind(mode)


def regular_file(path: Path, what: str) -> os.stat_result | None:
    """``path``'s status (symlinks followed), or ``None`` when there is no such file.

    :class:`ConfigError` when it is there but not a regular file: a FIFO, a device, a folder,
    or a symlink to a missing file. ``what`` names the file in messages.
    """
    try:
        info = path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            raise ConfigError(f"{what} is a symlink to a missing file") from None
        return None
    except OSError as exc:  # (its text would repeat the whole path)
        raise ConfigError(f"cannot read {what}: {exc.strerror}") from None
    found = _not_regular(info.st_mode)
    if found is not None:
        raise ConfigError(f"{what} is not a regular file: found {found}")
    return info


def read_model_file(path: Path, what: str, limit: int) -> str | None:
    """The UTF-8 text of a file of a model folder, or ``None`` when there is no such file.

    The file must be a regular file (:func:`regular_file`) of at most ``limit`` bytes. Nothing
    else is ever opened: the file is checked before opening, opened without blocking (a FIFO
    swapped in meanwhile cannot hold the server) and checked again once open.
    """
    info = regular_file(path, what)
    if info is None:
        return None
    if info.st_size > limit:
        raise ConfigError(f"{what} is {info.st_size} bytes, over the limit of {limit}")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(fd, "rb") as f:
            found = _not_regular(os.fstat(f.fileno()).st_mode)
            if found is not None:  # replaced since the check
                raise ConfigError(f"{what} is not a regular file: found {found}")
            data = f.read(limit + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read {what}: {exc.strerror}") from None
    if len(data) > limit:
        raise ConfigError(f"{what} is over the limit of {limit} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{what} is not UTF-8 text: {exc.reason} at offset {exc.start:#x}"
        ) from None
