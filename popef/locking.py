"""Advisory locks that keep two writers of this library from changing one file at once.

An appending :class:`~popef.writer.Writer` and ``popef repair`` hold an exclusive ``flock`` on
the file for as long as they have it open. The lock belongs to the open file description, so
two opens in one process exclude each other too, and it is released when the file is closed
(or its process dies). Readers take no lock. Where ``fcntl`` is missing (Windows), nothing is
locked.
"""

from __future__ import annotations

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["lock_exclusively"]


def lock_exclusively(fd: int) -> bool:
    """Take the exclusive lock of the open file ``fd`` without waiting: False when another open
    of the file holds it. Other failures (a file system without locks) raise OSError."""
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
