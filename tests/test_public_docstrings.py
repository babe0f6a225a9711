"""Every public method of the writing API says what it does."""

from __future__ import annotations

import inspect

import pytest

import popef
from popef.writer import BlobWriter


@pytest.mark.parametrize("cls", [popef.Writer, BlobWriter, popef.Reader])
def test_public_methods_have_docstrings(cls):
    missing = [
        name
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_") and not (member.__doc__ or "").strip()
    ]
    assert not missing, f"{cls.__name__} methods without a docstring: {missing}"
