"""Repair: drop the partial blob that an interrupted write leaves at the end of a file.

A writer that is killed while it appends leaves the blobs it finished intact and, after them,
the blob it was writing: a provisional header (or, from older writers, a header never
written), or a blob shorter than its header says. The reader refuses such a file with
:class:`PartialTailError`; :func:`plan_repair` says what truncating that tail keeps and drops,
and :func:`apply_repair` does it. Any other defect is not
a partial tail and is refused: truncating would lose blobs that may be whole. A damaged header
followed by more bytes than the reader looks through (:class:`UncheckedTailError`) is dropped
only when asked to with ``force=True``: the bytes never read may hold whole blobs.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from .errors import FormatError, PartialTailError, PopefError, UncheckedTailError
from .locking import lock_exclusively
from .reader import Reader

__all__ = ["RepairPlan", "plan_repair", "apply_repair"]


@dataclass(frozen=True)
class RepairPlan:
    """What repairing ``path`` keeps (the first ``kept_blobs`` blobs, ``kept_bytes`` bytes)."""

    path: str
    size: int  # the file's size when it was planned
    kept_blobs: int
    kept_bytes: int  # also the offset of the partial blob, when there is one
    unread_bytes: int = 0  # bytes dropped without being looked at (only with force=True)

    @property
    def dropped_bytes(self) -> int:
        return self.size - self.kept_bytes

    @property
    def needed(self) -> bool:
        return self.kept_bytes < self.size


def plan_repair(path: str | os.PathLike, force: bool = False) -> RepairPlan:
    """Read the blob headers of ``path``: a plan that keeps every complete blob.

    Raises :class:`FormatError` when the file has a defect other than a partial tail, and,
    unless ``force`` is true (the plan then drops them too), when the reader could not look at
    every byte after a damaged header (:class:`UncheckedTailError`) or when a blob header
    follows the unfinished blob (it may be a whole blob written before a system crash).
    """
    name = os.fspath(path)
    size = _size(name)
    reader = Reader()
    try:
        reader.parse_file(name)
        return RepairPlan(name, size, len(reader.blobs()), size)
    except PartialTailError as exc:
        assert exc.offset is not None
        if exc.follower is not None and not force:
            raise FormatError(
                f"cannot repair without --force: {exc.reason}",
                offset=exc.offset,
                blob_index=exc.blob_index,
                field=exc.field,
                source=exc.source,
            ) from exc
        return RepairPlan(name, size, exc.complete_blobs, exc.offset)
    except UncheckedTailError as exc:
        assert exc.offset is not None
        if force:
            return RepairPlan(name, size, exc.complete_blobs, exc.offset, exc.unread_bytes)
        raise UncheckedTailError(
            f"cannot repair: {exc.reason}",
            complete_blobs=exc.complete_blobs,
            unread_bytes=exc.unread_bytes,
            offset=exc.offset,
            blob_index=exc.blob_index,
            field=exc.field,
            source=exc.source,
        ) from exc
    except FormatError as exc:
        raise type(exc)(
            f"cannot repair: {exc.reason}; only a partial blob at the end of a file can be dropped",
            offset=exc.offset,
            blob_index=exc.blob_index,
            field=exc.field,
            source=exc.source,
        ) from exc
    finally:
        reader.close()


def apply_repair(plan: RepairPlan) -> None:
    """Truncate the file to the bytes the plan keeps, and sync it, holding the file's append
    lock; the file must not have changed size since it was planned, nor be being appended to."""
    if not plan.needed:
        return
    try:
        # O_NONBLOCK: a FIFO put in the file's place since it was planned must not block.
        fd = os.open(plan.path, os.O_RDWR | getattr(os, "O_NONBLOCK", 0))
        with open(fd, "r+b", buffering=0) as file:
            status = os.fstat(fd)
            if not stat.S_ISREG(status.st_mode):
                raise PopefError(f"cannot repair '{plan.path}': not a regular file")
            # Held until the file is closed: no writer of this library appends meanwhile.
            if not lock_exclusively(fd):
                raise PopefError(f"cannot repair '{plan.path}': a writer is appending to it")
            size = status.st_size
            if size != plan.size:
                raise PopefError(
                    f"cannot repair '{plan.path}': it changed while it was read "
                    f"(expected {plan.size} bytes, found {size})"
                )
            file.truncate(plan.kept_bytes)
            os.fsync(file.fileno())
    except OSError as exc:
        raise PopefError(f"cannot repair '{plan.path}': {exc.strerror or exc}") from exc


def _size(path: str) -> int:
    """The size of ``path``, a regular file (a device, FIFO or folder is refused)."""
    try:
        status = os.stat(path)
    except OSError as exc:
        raise PopefError(f"cannot read '{path}': {exc.strerror or exc}") from exc
    if not stat.S_ISREG(status.st_mode):
        raise PopefError(f"cannot repair '{path}': not a regular file")
    return status.st_size
