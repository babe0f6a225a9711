"""The blob checksum: CRC-32 (ISO-HDLC, as zlib computes it) of a blob's content.

docs/format.md §2.1. ISA-L's implementation (the ``isal`` package, a dependency) computes the
same CRC about three times faster than zlib's, which a writer feels on multi-gigabyte files;
zlib's is the fallback where ``isal`` is not installed.
"""

from __future__ import annotations

try:
    from isal.isal_zlib import crc32
except ImportError:  # pragma: no cover - isal is a dependency; zlib gives the same values
    from zlib import crc32

__all__ = ["crc32"]
