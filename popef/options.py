"""Options given as text: one vocabulary for true and false.

Executor options (``popef run -o fold=off``, ``parameters { key: "executor.fold" }``), config
``parameters`` (``synchronous_execution``), request parameters (``binary_data``) and Ray
deployment options all read a boolean with :func:`parse_bool`, so a word means the same
everywhere:

- true: ``True``, ``1``, and the words ``1``, ``true``, ``yes``, ``on``;
- false: ``False``, ``0``, and the words ``0``, ``false``, ``no``, ``off``;

words in any case, with surrounding blanks ignored. Anything else is an error that names the
option.
"""

from __future__ import annotations

from collections.abc import Callable

from .errors import PopefError
from .escaping import shorten

__all__ = ["FALSE_WORDS", "TRUE_WORDS", "parse_bool"]

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def parse_bool(value: object, what: str, error: Callable[[str], Exception] = PopefError) -> bool:
    """``value`` as a boolean (see the module docstring for the vocabulary).

    ``what`` names the option in the message of the error raised otherwise: ``error(message)``,
    a :class:`~popef.errors.PopefError` subclass or a function that makes one.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    raise error(
        f"{what} must be true or false (or 1/0, yes/no, on/off), got {shorten(repr(value), 80)}"
    )
