"""Batches: requests' rows to what :class:`~popef.runtime.ModelRunner` takes, and back.

Both ``popef serve`` (:class:`popef.serving.served.ServedModel` and its scheduler) and the
``poplar`` backend for Triton (:mod:`popef.triton.backend`) run requests this way
(docs/serving.md, "Batching"):

- :func:`merge_rows` stacks the inputs of the requests of one execution;
- :func:`prepare_feed` pads a batch of ``B`` rows with zero rows to a multiple of the model's
  step rows (micro batch × replicas) and reshapes it to the anchors' shapes — ``n`` steps
  stacked on the leading axis (:func:`feed_steps`), which the runtime runs as ``n`` device
  iterations; the requests are checked already, so the front ends hand it to
  :meth:`ModelRunner.execute_checked`;
- :func:`collect_outputs` reshapes the runtime's outputs back and cuts them to ``B`` rows;
- :func:`split_rows` hands each request its rows.

A model without batching (``max_batch_size: 0``) takes one request per execution, with its
anchors' shapes as they are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .plan import ServingPlan

__all__ = ["collect_outputs", "feed_steps", "merge_rows", "prepare_feed", "split_rows"]


def merge_rows(inputs: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The inputs of several requests as one batch: each tensor's rows concatenated, in the
    order of the requests (which all carry the same tensors)."""
    if len(inputs) == 1:
        return dict(inputs[0])
    return {name: np.concatenate([request[name] for request in inputs]) for name in inputs[0]}


def split_rows(
    outputs: Mapping[str, np.ndarray], rows: Sequence[int]
) -> list[dict[str, np.ndarray]]:
    """The outputs of one batch cut back into the requests it merged, ``rows[i]`` rows for
    request ``i`` (the inverse of :func:`merge_rows`)."""
    if len(rows) == 1:
        return [dict(outputs)]
    results: list[dict[str, np.ndarray]] = [{} for _ in rows]
    for name, array in outputs.items():
        offset = 0
        for result, count in zip(results, rows):
            result[name] = array[offset : offset + count]
            offset += count
    return results


def prepare_feed(
    plan: ServingPlan, inputs: Mapping[str, np.ndarray], rows: int
) -> dict[str, np.ndarray]:
    """Served inputs (``rows`` rows each) as :meth:`ModelRunner.execute` takes them.

    Rows are padded with zeros to a whole number of the model's steps (micro batch ×
    replicas) and reshaped to the anchors' shapes, the steps stacked on the leading axis
    (device iterations). A model without batching takes its anchors' shapes as they are.
    """
    feed = {}
    padded = -(-rows // plan.step_rows) * plan.step_rows if plan.batching else rows
    for tp in plan.inputs:
        array = inputs[tp.name]
        if not plan.batching:
            feed[tp.runtime_name] = array.reshape(tp.model_shape)
            continue
        if padded != rows:
            pad = np.zeros((padded - rows, *array.shape[1:]), dtype=array.dtype)
            array = np.concatenate([array, pad])
        array = array.reshape(padded, *tp.model_shape)
        if tp.per_replica:
            array = array.reshape(padded // plan.micro_batch, plan.micro_batch, *tp.model_shape)
        feed[tp.runtime_name] = array
    return feed


def feed_steps(plan: ServingPlan, rows: int) -> int:
    """The runtime steps of :func:`prepare_feed`'s feed for ``rows`` rows: the padded rows
    over the step rows; one for a model without batching."""
    return -(-rows // plan.step_rows) if plan.batching else 1


def collect_outputs(
    plan: ServingPlan, outputs: Mapping[str, np.ndarray], rows: int
) -> dict[str, np.ndarray]:
    """The runtime's outputs as served tensors: ``rows`` rows each (padding cut off)."""
    result = {}
    for tp in plan.outputs:
        array = np.asarray(outputs[tp.runtime_name])
        if plan.batching:
            array = array.reshape(-1, *tp.shape)[:rows]
        else:
            array = array.reshape(tp.shape)
        result[tp.name] = array
    return result
