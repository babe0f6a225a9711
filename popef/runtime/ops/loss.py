"""Loss functions: NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss.

Both take scores of shape ``(N, C, d1, ..., dk)`` and integer targets of shape
``(N, d1, ..., dk)`` naming a class in ``[0, C)`` for every position, an optional weight per class
and an ``ignore_index`` whose positions count for nothing. ``reduction`` is ``none`` (one loss per
position, shape of the target), ``sum`` or ``mean`` (a scalar; the mean divides by the sum of the
weights of the positions not ignored, as ONNX defines it).

A target outside ``[0, C)`` that is not ``ignore_index`` is an error at run time, naming the first
such value and where it is.

Batch rules: with ``reduction='none'`` and an unbatched weight each row of the leading axis is
independent; a reduction mixes them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import _kernels
from ._static import INDEX_DTYPES, optional_input
from .base import FLOAT_DTYPES, Attr, Op, TensorSpec, fmt_shape, register

__all__ = ["NegativeLogLikelihoodLoss", "SoftmaxCrossEntropyLoss"]

_REDUCTIONS = ("none", "sum", "mean")


class _ClassLoss(Op):
    """What both losses share: attributes, shape checks, gathering by target, reduction."""

    attributes = {"reduction": Attr("string", "mean"), "ignore_index": Attr("int", None)}
    num_inputs = (2, 3)

    def _setup(self) -> None:
        if self.attrs["reduction"] not in _REDUCTIONS:
            raise self.error(
                f"attribute 'reduction' must be one of {', '.join(_REDUCTIONS)}, "
                f"got {self.attrs['reduction']!r}"
            )

    def _check_inputs(self, inputs: list[TensorSpec | None]) -> TensorSpec:
        """Checks scores, target and weight; returns the loss's spec."""
        x, target = inputs[0], inputs[1]
        weight = optional_input(inputs, 2)
        assert x is not None and target is not None
        self._check_dtype(x, FLOAT_DTYPES)
        self._check_dtype(target, INDEX_DTYPES, "input 1 (target)")
        if x.rank < 2:
            raise self.error(f"input 0 must be (N, C, ...) with rank 2 or more, got {x}")
        if target.shape != (x.shape[0], *x.shape[2:]):
            raise self.error(
                f"target {fmt_shape(target.shape)} does not fit input "
                f"{fmt_shape(x.shape)}: expected "
                f"{fmt_shape((x.shape[0], *x.shape[2:]))}"
            )
        if weight is not None:
            self._check_same_dtype([x, None, weight])
            if weight.shape != (x.shape[1],):
                raise self.error(
                    f"weight must be [{x.shape[1]}] (one per class), got {fmt_shape(weight.shape)}"
                )
        shape = target.shape if self.attrs["reduction"] == "none" else ()
        return TensorSpec(shape, x.dtype)

    def _loss(
        self, log_prob: np.ndarray, target: np.ndarray, weight: np.ndarray | None
    ) -> np.ndarray:
        """The reduced loss from log-probabilities (in the compute dtype) and targets."""
        classes = log_prob.shape[1]
        ignore = self.attrs["ignore_index"]
        kept = np.ones(target.shape, bool) if ignore is None else target != ignore
        bad = kept & ((target < 0) | (target >= classes))
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            raise self.error(
                f"target {int(target[where])} at {list(where)} is not a class: "
                f"expected 0 to {classes - 1}"
                + (f" or ignore_index {ignore}" if ignore is not None else "")
            )
        safe = np.where(kept, target, 0).astype(np.intp)
        picked = np.take_along_axis(log_prob, safe[:, None], axis=1)[:, 0]
        w = kept.astype(log_prob.dtype)
        if weight is not None:
            w = w * weight.astype(log_prob.dtype)[safe]
        loss = -picked * w
        reduction = self.attrs["reduction"]
        if reduction == "sum":
            return np.asarray(loss.sum())
        if reduction == "mean":
            with np.errstate(divide="ignore", invalid="ignore"):
                return np.asarray(loss.sum() / w.sum())
        return loss

    def keeps_rows(self, batched: Sequence[bool], specs: Sequence[TensorSpec | None]) -> bool:
        return self.attrs["reduction"] == "none" and not any(batched[2:])


@register
class NegativeLogLikelihoodLoss(_ClassLoss):
    """NegativeLogLikelihoodLoss(input, target[, weight]): ``-input[n, target[n, d], d]``
    weighted by class, then reduced."""

    op_type = "NegativeLogLikelihoodLoss"

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        return [self._check_inputs(inputs)]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x = inputs[0]
        compute = _kernels.compute_dtype(x.dtype)
        loss = self._loss(x.astype(compute, copy=False), inputs[1], optional_input(inputs, 2))
        return [loss.astype(x.dtype)]


@register
class SoftmaxCrossEntropyLoss(_ClassLoss):
    """SoftmaxCrossEntropyLoss(scores, labels[, weights]) -> (output[, log_prob]): the negative
    log-likelihood of ``log_softmax(scores)`` over the class axis 1; the optional second output
    is that log-softmax."""

    op_type = "SoftmaxCrossEntropyLoss"
    num_outputs = (1, 2)

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        loss = self._check_inputs(inputs)
        x = inputs[0]
        assert x is not None
        return [loss, x][: self.output_count]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x = inputs[0]
        xc = x.astype(_kernels.compute_dtype(x.dtype), copy=False)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            shifted = xc - xc.max(axis=1, keepdims=True)
            log_prob = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        loss = self._loss(log_prob, inputs[1], optional_input(inputs, 2))
        return [loss.astype(x.dtype), log_prob.astype(x.dtype)][: self.output_count]
