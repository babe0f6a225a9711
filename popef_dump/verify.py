"""``--verify``: every checksum, every blob decoded, every linking rule; each problem listed.

Unlike :meth:`popef.Reader.verify`, which stops at the first problem, this finds them all. It
keeps the first ``MAX_PROBLEMS_PER_KIND`` of each kind and counts the others, so that a file of
a million broken blobs gives a short report in bounded memory.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import popef
from popef.model import check_links

# Problems of one kind listed before the rest are only counted.
MAX_PROBLEMS_PER_KIND = 100


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
    problems: tuple[Problem, ...]  # at most MAX_PROBLEMS_PER_KIND of each kind
    omitted: dict[str, int] = field(default_factory=dict)  # kind -> problems found, not kept

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def num_problems(self) -> int:
        """Every problem found, those kept and those only counted."""
        return len(self.problems) + sum(self.omitted.values())

    @property
    def checksums_ok(self) -> int:
        return sum(self.checksums.values())

    @property
    def link_problems(self) -> int:
        return sum(p.kind == "link" for p in self.problems) + self.omitted.get("link", 0)


def verify(reader: popef.Reader) -> Verification:
    """Check a reader's blobs; reads every byte of every blob."""
    problems = _Problems()
    checksums: dict[popef.Blob, bool] = {}
    decoded = 0
    for blob in reader.blobs():
        try:
            blob.verify()
            checksums[blob] = True
        except popef.ChecksumError as exc:
            checksums[blob] = False
            problems.add(Problem.of("checksum", exc))
        try:
            typed = reader.decoded(blob)
            if isinstance(typed, popef.ExecutableReader) and typed.compressed:
                typed.check_payload()  # inflates to the stated size, in bounded memory
            decoded += 1
        except popef.FormatError as exc:
            problems.add(Problem.of("format", exc))
    links_checked = decoded == len(checksums)
    num_models = 0
    if links_checked:
        for message in check_links(reader):
            problems.add(Problem("link", message))
        num_models = len(reader.metadata())
    return Verification(
        checksums,
        decoded,
        links_checked,
        num_models,
        tuple(problems.kept),
        {kind: count for kind, count in problems.omitted.items() if count},
    )


class _Problems:
    """The problems found: the first of each kind kept, the others counted."""

    def __init__(self) -> None:
        self.kept: list[Problem] = []
        self.per_kind: Counter[str] = Counter()
        self.omitted: Counter[str] = Counter()

    def add(self, problem: Problem) -> None:
        self.per_kind[problem.kind] += 1
        if self.per_kind[problem.kind] <= MAX_PROBLEMS_PER_KIND:
            self.kept.append(problem)
        else:
            self.omitted[problem.kind] += 1
