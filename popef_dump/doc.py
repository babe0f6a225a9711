"""A small document model between the renderers and the terminal, and escaping.

Renderers build a :data:`Doc` — lines of styled spans and tables — from library objects.
:func:`to_plain` turns it into plain text (piped output, ``--no-color``, the golden files);
:func:`to_rich` into a rich renderable with colour and boxed tables (a terminal). Both show the
same text: styles only add colour.

Every string read from a file is untrusted. The renderers pass each one through :func:`clean`
or :func:`quote`, which escape control and other non-printable characters (ANSI escapes, line
breaks, bidi overrides) so that a name can neither forge lines nor drive the terminal. Rich
markup is never parsed: spans become ``rich.text.Text`` objects, so ``[bold]`` stays literal.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# the renderers' names for the library's escaping
from popef.escaping import escape_text as clean  # noqa: F401
from popef.escaping import quote_text as quote  # noqa: F401

# -- the document ----------------------------------------------------------------------

# Style names; to_rich maps them to rich styles, to_plain ignores them.
HEADING, NAME, TYPE, NUMBER, DIM, GOOD, BAD, ADDED, REMOVED, CHANGED = (
    "heading",
    "name",
    "type",
    "number",
    "dim",
    "good",
    "bad",
    "added",
    "removed",
    "changed",
)

RICH_STYLES = {
    HEADING: "bold",
    NAME: "cyan",
    TYPE: "magenta",
    NUMBER: "",
    DIM: "dim",
    GOOD: "green",
    BAD: "bold red",
    ADDED: "green",
    REMOVED: "red",
    CHANGED: "yellow",
}

Span = tuple[str, str | None]  # (text, style name)
Cell = str | Span


def spans(*parts: Cell) -> tuple[Span, ...]:
    """Spans from strings (unstyled) and ``(text, style)`` pairs."""
    return tuple((p, None) if isinstance(p, str) else p for p in parts)


@dataclass(frozen=True)
class Line:
    spans: tuple[Span, ...]
    indent: int = 0

    @property
    def text(self) -> str:
        return "".join(text for text, _ in self.spans)


@dataclass(frozen=True)
class Column:
    header: str
    right: bool = False  # right-justified (numbers)


@dataclass(frozen=True)
class Table:
    columns: tuple[Column, ...]
    rows: tuple[tuple[Cell, ...], ...]
    indent: int = 2


@dataclass
class Doc:
    """A list of blocks; sections are separated by a blank line when joined."""

    blocks: list[Line | Table] = field(default_factory=list)

    def line(self, indent: int, *parts: Cell) -> Doc:
        self.blocks.append(Line(spans(*parts), indent))
        return self

    def table(self, columns: list[Column], rows: list[tuple[Cell, ...]], indent: int = 2) -> Doc:
        self.blocks.append(Table(tuple(columns), tuple(tuple(r) for r in rows), indent))
        return self

    def extend(self, other: Doc) -> Doc:
        self.blocks.extend(other.blocks)
        return self


def join(docs: list[Doc], separate: bool = True) -> Doc:
    """One document: the blocks of each, with a blank line between non-empty ones."""
    out = Doc()
    for doc in docs:
        if not doc.blocks:
            continue
        if out.blocks and separate:
            out.line(0)
        out.extend(doc)
    return out


def _cell_text(cell: Cell) -> str:
    return cell if isinstance(cell, str) else cell[0]


# -- plain text ------------------------------------------------------------------------


def to_plain(doc: Doc) -> str:
    """The document as plain text, tables as aligned columns; ends with a newline."""
    lines: list[str] = []
    for block in doc.blocks:
        if isinstance(block, Line):
            text = block.text
            lines.append(" " * block.indent + text if text else "")
        else:
            lines.extend(_plain_table(block))
    return "".join(line + "\n" for line in lines)


def _plain_table(table: Table) -> list[str]:
    rows = [tuple(c.header for c in table.columns)]
    rows += [tuple(_cell_text(cell) for cell in row) for row in table.rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(table.columns))]
    out = []
    for row in rows:
        cells = [
            text.rjust(width) if column.right else text.ljust(width)
            for text, width, column in zip(row, widths, table.columns)
        ]
        out.append((" " * table.indent + "  ".join(cells)).rstrip())
    return out


# -- rich ------------------------------------------------------------------------------


def to_rich(doc: Doc):
    """The document as a rich renderable: styled lines and boxed tables."""
    from rich import box
    from rich.console import Group
    from rich.padding import Padding
    from rich.table import Table as RichTable
    from rich.text import Text

    def text(parts, indent: int = 0) -> Text:
        out = Text(" " * indent)
        for part, style in parts:
            out.append(part, RICH_STYLES.get(style, "") if style else "")
        return out

    items = []
    for block in doc.blocks:
        if isinstance(block, Line):
            items.append(text(block.spans, block.indent))
            continue
        if _has_long_cell(block):
            items.extend(_rich_aligned_lines(block))
            continue
        table = RichTable(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
        for column in block.columns:
            # fold, never truncate: an inspection tool must not hide part of a name
            table.add_column(
                Text(column.header), justify="right" if column.right else "left", overflow="fold"
            )
        for row in block.rows:
            table.add_row(*(text(spans(cell)) for cell in row))
        items.append(Padding(table, (0, 0, 0, block.indent), expand=False))
    return Group(*items)


# A boxed table folds each cell into its column: a cell of a million characters would become
# hundreds of thousands of table rows (seconds to render, megabytes of output). A table with a
# cell longer than this is laid out as plain text instead, in colour, one line per row.
LONG_CELL = 1000


def _has_long_cell(table: Table) -> bool:
    return any(len(_cell_text(cell)) > LONG_CELL for row in table.rows for cell in row)


def _rich_aligned_lines(table: Table) -> list:
    """The rows of :func:`_plain_table`, styled, as rich texts that are neither wrapped nor
    cropped (the console prints them with ``crop=False``)."""
    from rich.text import Text

    header = tuple((c.header, HEADING) for c in table.columns)
    rows = [header] + [
        tuple((cell, None) if isinstance(cell, str) else cell for cell in row) for row in table.rows
    ]
    widths = [max(len(row[i][0]) for row in rows) for i in range(len(table.columns))]
    out = []
    for row in rows:
        line = Text(" " * table.indent, no_wrap=True, overflow="ignore", end="\n")
        for i, ((cell, style), width, column) in enumerate(zip(row, widths, table.columns)):
            padding = " " * (width - len(cell))
            last = i == len(row) - 1
            if column.right:
                line.append(padding)
            line.append(cell, RICH_STYLES.get(style, "") if style else "")
            if not column.right and not last:
                line.append(padding)
            if not last:
                line.append("  ")
        line.rstrip()
        out.append(line)
    return out
