"""Escaping untrusted text (names read from files, folder names, client input) for terminals
and logs.

A string read from a PopEF file, a model folder's name or a request may carry control and
other non-printable characters: ANSI escapes that drive a terminal, CR and LF that forge
lines, C1 controls, bidi overrides that reorder what is shown. :func:`escape_text` writes each
of them as a visible escape (``\\x1b``, ``\\n``, ``\\u202e``) and keeps every printable
character, non-ASCII letters included. :func:`shorten` bounds an untrusted value before it is
put in a message, so a 20 MB name cannot become a 20 MB error response or log line.
"""

from __future__ import annotations

__all__ = ["escape_text", "quote_text", "shorten"]

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(ch: str) -> str:
    named = _NAMED.get(ch)
    if named is not None:
        return named
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _omitted(count: int) -> str:
    return f"\u2026({count} more character{'s' if count != 1 else ''})"


def shorten(text: str, limit: int = 200) -> str:
    """``text`` cut to its first ``limit`` characters followed by ``…(N more characters)``
    when longer; unchanged otherwise."""
    if len(text) <= limit:
        return text
    return text[:limit] + _omitted(len(text) - limit)


def escape_text(text: str, *, backslashes: bool = True, limit: int | None = None) -> str:
    """``text`` with its non-printable characters escaped (``\\x1b``, ``\\n``, ``\\u202e``...).

    With ``backslashes`` (the default) a backslash is doubled too, so the escaped text reads
    back unambiguously; logs pass ``backslashes=False`` to keep paths and messages as written.
    With ``limit``, the escaped text keeps at most ``limit`` characters (an escape is never
    cut), then says how many characters of ``text`` were left out: ``…(N more characters)``.
    """
    if limit is not None and len(text) > limit // 10:  # an escape is at most 10 characters
        return _escape_bounded(text, backslashes, limit)
    if text.isprintable() and (not backslashes or "\\" not in text):
        return text
    return "".join(_escape_one(ch, backslashes) for ch in text)


def _escape_one(ch: str, backslashes: bool) -> str:
    if ch.isprintable():
        return "\\\\" if backslashes and ch == "\\" else ch
    return _escape_char(ch)


def _escape_bounded(text: str, backslashes: bool, limit: int) -> str:
    out, size = [], 0
    # only the first `limit` characters can contribute: each gives at least one
    for count, ch in enumerate(text[:limit]):
        piece = _escape_one(ch, backslashes)
        if size + len(piece) > limit:
            return "".join(out) + _omitted(len(text) - count)
        out.append(piece)
        size += len(piece)
    escaped = "".join(out)
    return escaped if len(text) <= limit else escaped + _omitted(len(text) - limit)


def quote_text(text: str) -> str:
    """``text`` escaped by :func:`escape_text` and in double quotes, its own quotes escaped."""
    return '"' + escape_text(text).replace('"', '\\"') + '"'
