"""Escaping untrusted text (names read from files, folder names, client input) for terminals
and logs.

A string read from a PopEF file, a model folder's name or a request may carry control and
other non-printable characters: ANSI escapes that drive a terminal, CR and LF that forge
lines, C1 controls, bidi overrides that reorder what is shown. :func:`escape_text` writes each
of them as a visible escape (``\\x1b``, ``\\n``, ``\\u202e``) and keeps every printable
character, non-ASCII letters included.
"""

from __future__ import annotations

__all__ = ["escape_text", "quote_text"]

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


def escape_text(text: str, *, backslashes: bool = True) -> str:
    """``text`` with its non-printable characters escaped (``\\x1b``, ``\\n``, ``\\u202e``...).

    With ``backslashes`` (the default) a backslash is doubled too, so the escaped text reads
    back unambiguously; logs pass ``backslashes=False`` to keep paths and messages as written.
    """
    if text.isprintable() and (not backslashes or "\\" not in text):
        return text
    out = []
    for ch in text:
        if ch.isprintable():
            out.append("\\\\" if backslashes and ch == "\\" else ch)
        else:
            out.append(_escape_char(ch))
    return "".join(out)


def quote_text(text: str) -> str:
    """``text`` escaped by :func:`escape_text` and in double quotes, its own quotes escaped."""
    return '"' + escape_text(text).replace('"', '\\"') + '"'
