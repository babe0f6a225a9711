"""How the runtime's messages name what they are about (the house style: names quoted,
untrusted text escaped)."""

from __future__ import annotations

from ..escaping import escape_text

__all__ = ["quote"]


def quote(text: str) -> str:
    """``text`` escaped (``popef.escaping.escape_text``) in single quotes, its own escaped."""
    escaped = escape_text(text).replace("'", "\\'")
    return f"'{escaped}'"
