"""Checking an inference request against a model's :class:`ServingPlan`.

``popef serve`` (:class:`popef.serving.core.InferenceCore`) and the ``poplar`` backend for
Triton (:mod:`popef.triton.backend`) check requests with these functions, so a request that
does not fit a model gets the same message from both (Triton's wording). Each raises an
INVALID_ARG :class:`~popef.servable.errors.ServingError`; ``model`` is the model's name, for the
messages.

This module is the one place where a request is checked against a plan: a front end decodes
its transport's tensors and calls, in order, :func:`check_input_names`, :func:`request_rows`
(the batch size, in range), :func:`check_datatype` and :func:`check_shape` per input, and
:func:`select_outputs`; what it then hands the runtime needs no further check.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ..escaping import escape_text, shorten
from .errors import invalid
from .plan import ServingPlan, TensorPlan
from .signature import _quoted

__all__ = [
    "batch_size",
    "check_batch_size",
    "check_datatype",
    "check_input_names",
    "check_shape",
    "request_rows",
    "select_outputs",
]


def _sent(text: object) -> str:
    """A name or value the client sent, as a message shows it between single quotes: control
    characters escaped, backslashes and quotes too (so a name cannot forge the message's
    quoting), at most 200 characters."""
    return escape_text(str(text), limit=200).replace("'", "\\'")


def check_input_names(model: str, plan: ServingPlan, names: Sequence[str]) -> None:
    """The request's input names, in its order: each once, each an input of the model, and
    every input of the model given."""
    given: set[str] = set()
    for name in names:
        if name in given:
            raise invalid(f"input '{_sent(name)}' is given twice")
        if plan.input(name) is None:
            raise invalid(
                f"unexpected inference input '{_sent(name)}' for model '{model}'; its "
                f"inputs are {_quoted(t.name for t in plan.inputs)}"
            )
        given.add(name)
    missing = [tp.name for tp in plan.inputs if tp.name not in given]
    if missing:
        raise invalid(
            f"expected {len(plan.inputs)} inputs but got {len(given)} inputs for "
            f"model '{model}': missing input {_quoted(missing)}"
        )


def check_datatype(model: str, tp: TensorPlan, datatype: str) -> None:
    """An input's protocol datatype (``"FP32"``) is the model's."""
    if datatype != tp.ttype.name:
        raise invalid(
            f"inference input '{tp.name}' data-type is '{_sent(datatype)}', but model "
            f"'{model}' expects '{tp.ttype.name}'"
        )


def check_shape(
    model: str, plan: ServingPlan, tp: TensorPlan, shape: Sequence[int], *, reshaped: bool = False
) -> None:
    """An input's shape is the model's: with batching, any number of rows of the served
    shape; without, the served shape itself.

    With ``reshaped``, the shape is checked after the config's ``reshape`` (the shape Triton
    hands a backend: it applies ``reshape`` itself) rather than the ``dims`` a client sends.
    """
    shape = tuple(shape)
    served = tp.model_shape if reshaped else tp.shape
    if plan.batching:
        ok = len(shape) == len(served) + 1 and shape[1:] == served
        expected = [-1, *served]
    else:
        ok = shape == served
        expected = list(served)
    if not ok:
        raise invalid(
            f"unexpected shape for input '{tp.name}' for model '{model}': expected "
            f"{expected}, got {shorten(str(list(shape)), 200)}"
        )


def batch_size(model: str, shapes: Iterable[tuple[str, Sequence[int]]]) -> int:
    """The batch size of a request to a batching model: the first dimension, on which its
    inputs (``(name, shape)`` pairs, in the model's order) must agree. Inputs without
    dimensions are passed over; 1 when no input has any.

    ``shapes`` is read in order and only as far as needed, so it may be a generator that
    checks each input as it goes. :func:`check_batch_size` checks the range
    ``[1, max_batch_size]``.
    """
    rows = 1
    first = None
    for name, shape in shapes:
        if not shape:
            continue
        if first is None:
            first, rows = name, shape[0]
        elif shape[0] != rows:
            raise invalid(
                f"inputs disagree on the batch size: '{_sent(first)}' has {rows} and "
                f"'{_sent(name)}' has {shape[0]} for model '{model}'"
            )
    return rows


def check_batch_size(model: str, plan: ServingPlan, rows: int) -> None:
    """A batching model's request has 1 to ``max_batch_size`` rows (Triton's messages)."""
    if rows < 1:
        raise invalid(f"inference request batch-size must be >= 1 for '{model}', got {rows}")
    if rows > plan.max_batch_size:
        raise invalid(
            f"inference request batch-size must be <= {plan.max_batch_size} for "
            f"'{model}', got {rows}"
        )


def request_rows(model: str, plan: ServingPlan, shapes: Iterable[tuple[str, Sequence[int]]]) -> int:
    """The rows of a request: its :func:`batch_size`, checked by :func:`check_batch_size`, for
    a batching model; 1 for a model without batching (``shapes`` is then not read)."""
    if not plan.batching:
        return 1
    rows = batch_size(model, shapes)
    check_batch_size(model, plan, rows)
    return rows


def select_outputs(model: str, plan: ServingPlan, names: Sequence[str]) -> list[TensorPlan]:
    """The outputs a request names, in its order: each once, each an output of the model."""
    selected = []
    seen: set[str] = set()
    for name in names:
        tp = plan.output(name)
        if tp is None:
            raise invalid(
                f"unexpected inference output '{_sent(name)}' for model '{model}'; its "
                f"outputs are {_quoted(t.name for t in plan.outputs)}"
            )
        if name in seen:
            raise invalid(f"output '{_sent(name)}' is requested twice")
        seen.add(name)
        selected.append(tp)
    return selected
