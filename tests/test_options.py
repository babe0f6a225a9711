"""One vocabulary for true and false (popef.options.parse_bool)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from popef.errors import ExecutionError, PopefError
from popef.options import FALSE_WORDS, TRUE_WORDS, parse_bool


@pytest.mark.parametrize(
    "value, expected",
    [
        (True, True),
        (False, False),
        (1, True),
        (0, False),
        ("on", True),
        ("Yes", True),
        (" TRUE ", True),
        ("1", True),
        ("off", False),
        ("No", False),
        ("false\n", False),
        ("0", False),
    ],
)
def test_words(value, expected):
    assert parse_bool(value, "option 'x'") is expected


@pytest.mark.parametrize("value", ["maybe", "", "2", 2, -1, None, 1.0, "y", "enable"])
def test_anything_else_is_refused_naming_the_option(value):
    with pytest.raises(
        ExecutionError,
        match=r"^option 'x' must be true or false \(or 1/0, "
        r"yes/no, on/off\), got ",
    ):
        parse_bool(value, "option 'x'", ExecutionError)


def test_the_default_error_is_a_popef_error():
    with pytest.raises(PopefError):
        parse_bool("maybe", "option 'x'")


@given(st.sampled_from(TRUE_WORDS + FALSE_WORDS), st.booleans(), st.text(" \t", max_size=3))
def test_any_case_and_blanks(word, upper, blanks):
    text = blanks + (word.upper() if upper else word) + blanks
    assert parse_bool(text, "x") is (word in TRUE_WORDS)


def test_every_reader_of_a_boolean_agrees():
    """Executor options, config parameters, request parameters and Ray options: "on" is true."""
    from popef.servable import ModelParameters, parse_config
    from popef.serving.ray.options import _convert

    config = parse_config(
        'parameters { key: "synchronous_execution" value: { string_value: "off" } }'
    )
    assert ModelParameters.of(config).synchronous_execution is False
    assert _convert("strict_readiness", "on") is True
    pytest.importorskip("starlette")
    from popef.serving.http_app import _bool

    assert _bool("on", "x") is True
