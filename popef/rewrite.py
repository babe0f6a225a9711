"""Rewrite: copy every blob of a PopEF file into a new file, optionally compressing executables.

Every blob of the source is checked first (its checksum, and its info decoded): a damaged file
is refused and nothing is written. Then each blob is copied byte for byte, except, with
``compress=True``, the uncompressed executables, which are written again as zlib streams of the
same bytes (lossless: the reader inflates them to exactly what was there). The destination
changes only when the whole copy succeeded, atomically, as :class:`popef.Writer` commits; it may
be the source itself.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .errors import PopefError
from .escaping import escape_text
from .reader import ExecutableReader, Reader
from .writer import Writer

__all__ = ["RewriteSummary", "rewrite"]


@dataclass(frozen=True)
class RewriteSummary:
    """What :func:`rewrite` did."""

    blobs: int  # blobs written, as many as the source holds
    compressed: int  # executables compressed by this rewrite
    bytes_in: int  # size of the source
    bytes_out: int  # size of the destination


def rewrite(
    source: str | os.PathLike, destination: str | os.PathLike, compress: bool = False
) -> RewriteSummary:
    """Copy every blob of ``source`` to ``destination``; with ``compress``, executables stored
    uncompressed are compressed (other blobs, and executables already compressed, are copied
    byte for byte). Raises :class:`PopefError` (a :class:`FormatError` for a damaged source)
    and leaves ``destination`` untouched on any failure."""
    source, destination = os.fspath(source), os.fspath(destination)
    compressed = 0
    with Reader() as reader:
        reader.parse_file(source)
        reader.verify()  # every checksum and every info, before anything is written
        blobs = reader.blobs()
        with Writer(destination) as writer:
            for blob in blobs:
                typed = reader.decoded(blob)
                if compress and isinstance(typed, ExecutableReader) and not typed.compressed:
                    with writer.create_executable(typed.name, compress=True) as out:
                        for chunk in typed.iter_payload():
                            out.write(chunk)
                    compressed += 1
                else:
                    writer.copy_blob(blob)
    try:
        bytes_out = os.path.getsize(destination)
    except OSError as exc:
        shown = escape_text(os.fspath(destination))
        raise PopefError(f"cannot read '{shown}' after writing it: {exc.strerror}") from exc
    return RewriteSummary(len(blobs), compressed, sum(b.size for b in blobs), bytes_out)
