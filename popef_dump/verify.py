"""``--verify``: every checksum, every blob decoded, every linking rule; each problem listed.

Unlike :meth:`popef.Reader.verify`, which stops at the first problem, this collects them all.
"""

from __future__ import annotations

from dataclasses import dataclass

import popef
from popef.model import check_links


@dataclass(frozen=True)
class Problem:
    kind: str  # "checksum", "format" (a blob does not decode) or "link" (a linking rule)
    message: str
    source: str | None = None
    blob_index: int | None = None
    offset: int | None = None

    @classmethod
    def of(cls, kind: str, error: popef.FormatError) -> Problem:
        return cls(kind, str(error), error.source, error.blob_index, error.offset)


@dataclass(frozen=True)
class Verification:
    checksums: dict[popef.Blob, bool]  # every blob: does its content match its checksum
    decoded: int  # blobs whose info (and compressed executable) decodes
    links_checked: bool  # False when a blob does not decode: the rules need every info
    num_models: int
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def checksums_ok(self) -> int:
        return sum(self.checksums.values())

    @property
    def link_problems(self) -> int:
        return sum(p.kind == "link" for p in self.problems)


def verify(reader: popef.Reader) -> Verification:
    """Check a reader's blobs; reads every byte of every blob."""
    problems: list[Problem] = []
    checksums: dict[popef.Blob, bool] = {}
    decoded = 0
    for blob in reader.blobs():
        try:
            blob.verify()
            checksums[blob] = True
        except popef.ChecksumError as exc:
            checksums[blob] = False
            problems.append(Problem.of("checksum", exc))
        try:
            typed = reader.decoded(blob)
            if isinstance(typed, popef.ExecutableReader) and typed.compressed:
                typed.payload()  # the compressed stream must decode to the stated size
            decoded += 1
        except popef.FormatError as exc:
            problems.append(Problem.of("format", exc))
    links_checked = decoded == len(checksums)
    num_models = 0
    if links_checked:
        problems.extend(Problem("link", message) for message in check_links(reader))
        num_models = len(reader.metadata())
    return Verification(checksums, decoded, links_checked, num_models, tuple(problems))
