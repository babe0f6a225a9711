"""Atomic file replacement: a private file that takes the place of a path only when committed.

Readers of the destination see either the old file or the whole new one, never a part; a
process killed while writing leaves the destination as it was. On Linux the private file is
unnamed (``O_TMPFILE``): it vanishes with the process unless committed, so a kill leaves
nothing behind. Elsewhere it is a hidden named file beside the destination
(``.NAME.XXXX.tmp``), removed on abort or when the :class:`PrivateFile` is collected.
A device, FIFO or socket at the destination (or behind a link there) is refused, never
replaced by a file.

A commit makes the data durable before it is visible (``fsync`` of the file, then of the
folder's new entry), and the new file keeps the destination's permission bits (or gets those
the umask gives a new file). :class:`popef.Writer` creates files through this module, and so
does every command that writes a file whole.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
import tempfile
import weakref
from collections.abc import Callable
from typing import BinaryIO

__all__ = ["PrivateFile", "fsync_directory", "open_unnamed", "write_atomically"]

_PROC_FDS = "/proc/self/fd"
# O_TMPFILE refused by the kernel or the file system: use a named temporary file instead
_NO_UNNAMED_FILES = {errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT}


class PrivateFile:
    """A file nobody sees until :meth:`commit` puts it in place of ``path``.

    ``file`` is the open binary file to write (and seek and read). Use as a context manager
    to commit on success and abort on an exception, or call :meth:`commit` or :meth:`abort`.
    ``OSError`` escapes as it is: callers say what they were writing.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        _refuse_special_file(self.path)
        directory = os.path.dirname(os.path.abspath(self.path))
        self._temp_path: str | None = None  # the named temporary file, without O_TMPFILE
        self._cleanup: weakref.finalize | None = None
        fd = open_unnamed(directory)
        if fd is None:
            fd, self._temp_path = tempfile.mkstemp(
                prefix=f".{os.path.basename(self.path)}.", suffix=".tmp", dir=directory
            )
            self._cleanup = weakref.finalize(self, _remove_quietly, self._temp_path)
        self._unnamed = self._temp_path is None
        self._done = False
        try:
            _match_permissions(fd if self._unnamed else self._temp_path, self.path)
            self.file: BinaryIO = os.fdopen(fd, "w+b")
        except BaseException:
            os.close(fd)
            self._forget_temp()
            raise

    def commit(self) -> None:
        """Flush, make durable, and put the file in place of ``path`` (replacing any file
        there); the file is closed afterwards. On an error the private file is removed."""
        if self._done:
            return
        try:
            self.file.flush()
            os.fsync(self.file.fileno())  # the data is on disk before anyone sees it
            if self._unnamed:
                _link_into_place(self.file.fileno(), self.path)
            self.file.close()
            if self._temp_path is not None:
                os.replace(self._temp_path, self.path)
                self._temp_path = None
                if self._cleanup is not None:
                    self._cleanup.detach()
            fsync_directory(os.path.dirname(os.path.abspath(self.path)))
        except BaseException:
            self.abort()
            raise
        self._done = True

    def abort(self) -> None:
        """Give up: close and remove the private file; ``path`` is left as it was."""
        if self._done:
            return
        self._done = True
        try:
            self.file.close()
        except OSError:
            pass
        self._forget_temp()

    def _forget_temp(self) -> None:
        if self._temp_path is not None:
            _remove_quietly(self._temp_path)
            self._temp_path = None
        if self._cleanup is not None:
            self._cleanup.detach()

    def __enter__(self) -> PrivateFile:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def write_atomically(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> None:
    """Call ``write(file)`` on a :class:`PrivateFile` and commit it in place of ``path``;
    if ``write`` raises, ``path`` is left as it was."""
    with PrivateFile(path) as private:
        write(private.file)


def open_unnamed(directory: str) -> int | None:
    """An unnamed file in ``directory`` (Linux ``O_TMPFILE``): it vanishes with the process
    unless it is linked into place. None where the system or the file system lacks them."""
    flag = getattr(os, "O_TMPFILE", None)
    if flag is None or not os.path.isdir(_PROC_FDS):  # linking needs /proc/self/fd
        return None
    try:
        return os.open(directory, flag | os.O_RDWR, 0o600)
    except OSError as exc:
        if exc.errno in _NO_UNNAMED_FILES:
            return None
        raise


def fsync_directory(directory: str) -> None:
    """Make a new or renamed entry of ``directory`` durable (POSIX; a no-op elsewhere)."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _link_into_place(fd: int, path: str) -> None:
    """Give the unnamed file ``fd`` the name ``path``, replacing the file there if any."""
    proc = os.open(_PROC_FDS, os.O_RDONLY | os.O_DIRECTORY)
    try:

        def link(name: str) -> None:
            # linkat(AT_SYMLINK_FOLLOW) through /proc; a plain link() would not follow it
            os.link(str(fd), name, src_dir_fd=proc, follow_symlinks=True)

        try:
            link(path)
            return
        except FileExistsError:
            pass  # linkat cannot replace: link beside it, then rename over it
        directory, name = os.path.split(os.path.abspath(path))
        while True:
            temp = os.path.join(directory, f".{name}.{secrets.token_hex(6)}.tmp")
            try:
                link(temp)
                break
            except FileExistsError:
                continue
        try:
            os.replace(temp, path)
        except BaseException:
            _remove_quietly(temp)
            raise
    finally:
        os.close(proc)


def _refuse_special_file(path: str) -> None:
    """Refuse a device, FIFO or socket at ``path`` (or behind a link there): committing would
    rename a regular file over it, and as root that replaces even ``/dev/null``."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return  # nothing there (or a dangling link): a new file is made
    kinds = (
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
    )
    kind = next((kind for test, kind in kinds if test(mode)), None)
    if kind is not None:
        raise OSError(errno.EINVAL, f"not a regular file (found {kind}), and never replaced by one")


def _match_permissions(target: int | str, path: str) -> None:
    """Give the private file the mode the destination has (or would get from the umask)."""
    try:
        mode = os.stat(path).st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    os.chmod(target, mode)


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
