"""How the runtime's messages name what they are about (the house style: names quoted,
untrusted text escaped)."""

from __future__ import annotations

from ..escaping import escape_text

__all__ = ["quote"]


# The most characters of a name a message shows: a name read from a file can be megabytes.
NAME_LIMIT = 200


def quote(text: str) -> str:
    """``text`` escaped (``popef.escaping.escape_text``) in single quotes, its own escaped;
    at most ``NAME_LIMIT`` characters, then how many were left out."""
    escaped = escape_text(text, limit=NAME_LIMIT).replace("'", "\\'")
    return f"'{escaped}'"
