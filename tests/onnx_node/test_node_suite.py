"""ONNX's node test suite, every case against the committed expectations.

A case that passed and is now refused, a refused case that now passes (update the file with
``python -m tests.onnx_node.update``), a wrong answer or an exception that is not a PopefError
fails. Skipped without onnx.
"""

from __future__ import annotations

import functools

import pytest

from .expectations import UPDATE_COMMAND, load_expected

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnx.backend.test.loader")

from .harness import load_cases, run_case  # noqa: E402

EXPECTED = load_expected()


@functools.lru_cache(maxsize=1)
def _cases() -> dict:
    return {c.name: c for c in load_cases()}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_case_keeps_its_status(name: str) -> None:
    case = _cases().get(name)
    if case is None:
        pytest.skip(f"the installed onnx {onnx.__version__} has no case {name!r}")
    outcome = run_case(case)
    assert outcome.acceptable, f"{name}: {outcome.status}: {outcome.detail}"
    want = EXPECTED[name]
    if outcome.status != want:
        if want.startswith("refused") and not outcome.status.startswith("refused"):
            pytest.fail(
                f"{name} now gives '{outcome.status}' (expected '{want}'): update the "
                f"expectations with `{UPDATE_COMMAND}`"
            )
        pytest.fail(f"{name}: '{outcome.status}', expected '{want}': {outcome.detail}")


def test_every_case_has_an_expectation() -> None:
    missing = sorted(set(_cases()) - set(EXPECTED))
    assert not missing, (
        f"{len(missing)} cases of onnx {onnx.__version__} have no expectation "
        f"(first: {missing[:5]}): run `{UPDATE_COMMAND}`"
    )


def test_the_harness_refuses_only_with_popef_errors() -> None:
    from popef.errors import PopefError

    from .harness import reason_of

    assert (
        reason_of(
            PopefError(
                "the model uses 2 op types the runtime does not have: "
                "LSTM \u00d71 ('a'), GRU \u00d72 ('b', 'c')"
            )
        )
        == "unsupported op GRU, LSTM"
    )
