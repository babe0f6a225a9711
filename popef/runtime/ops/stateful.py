"""Ops that carry a state from one decoding step to the next (opsets 24 and 27): LinearAttention,
CausalConvWithState and TensorScatter (a key/value cache update).

Each takes the previous state as an input and gives the next one as an output, so a model runs
a sequence in one call (prefill) or one token at a time (decode), the caller feeding
``present_*`` back as ``past_*``. The numbers follow onnx's reference implementation: the
LinearAttention recurrence and the SiLU of CausalConvWithState are computed in float32 (float64
for float64 inputs) and cast back to the inputs' dtype.

Batch rules: the leading axis is the batch of every input but the weights: rows are independent
unless CausalConvWithState's weight or bias is computed from the inputs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._static import norm_axis, optional_input
from .base import ALL_DTYPES, FLOAT_DTYPES, Attr, Op, TensorSpec, fmt_shape, register

__all__ = ["CausalConvWithState", "LinearAttention", "TensorScatter"]

_I64 = frozenset({np.dtype(np.int64)})
_UPDATE_RULES = ("linear", "gated", "delta", "gated_delta")
_ACTIVATIONS = ("none", "silu", "swish")


def _compute_dtype(dtype: np.dtype) -> np.dtype:
    """float32, or float64 for float64 data: the precision the recurrences run in."""
    return np.dtype(np.float64) if dtype == np.float64 else np.dtype(np.float32)


@register
class LinearAttention(Op):
    """LinearAttention(query, key, value[, past_state, decay, beta]) -> (output,
    present_state).

    A recurrent attention whose state is one ``d_k x d_v`` matrix per key/value head: at each
    step the state decays by ``exp(decay)`` (``gated`` rules), is corrected towards the value
    (``delta`` rules: ``v <- beta * (v - Sᵀk)``) and adds ``k ⊗ v``; the output reads it with
    the query, times ``scale`` (``1/√d_k`` when 0). Q, K, V are ``(batch, time, heads *
    head_size)``; query heads share key/value heads in groups (GQA/MQA)."""

    op_type = "LinearAttention"
    attributes = {
        "q_num_heads": Attr("int"),
        "kv_num_heads": Attr("int"),
        "update_rule": Attr("string", "gated_delta"),
        "scale": Attr("float", 0.0),
        "chunk_size": Attr("int", 64),  # a tuning hint: no effect on the result
    }
    num_inputs = (3, 6)
    num_outputs = (1, 2)

    def _setup(self) -> None:
        a = self.attrs
        if a["update_rule"] not in _UPDATE_RULES:
            raise self.error(
                f"attribute 'update_rule' must be one of {', '.join(_UPDATE_RULES)}"
                f", got {a['update_rule']!r}"
            )
        q_heads, kv_heads = a["q_num_heads"], a["kv_num_heads"]
        if q_heads < 1 or kv_heads < 1 or q_heads % kv_heads:
            raise self.error(
                f"q_num_heads ({q_heads}) must be a positive multiple of kv_num_heads ({kv_heads})"
            )
        if a["chunk_size"] < 1:
            raise self.error(f"attribute 'chunk_size' must be positive, got {a['chunk_size']}")
        self.gated = a["update_rule"] in ("gated", "gated_delta")
        self.delta = a["update_rule"] in ("delta", "gated_delta")

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        q, k, v = inputs[0], inputs[1], inputs[2]
        past, decay, beta = (optional_input(inputs, i) for i in (3, 4, 5))
        assert q is not None and k is not None and v is not None
        self._check_dtype(q, FLOAT_DTYPES, "input 0 (query)")
        self._check_same_dtype([q, k, v, None, decay, beta])
        q_heads, kv_heads = self.attrs["q_num_heads"], self.attrs["kv_num_heads"]
        if q.rank != 3:
            raise self.error(
                f"query must be [batch, time, {q_heads} * head_size], got {fmt_shape(q.shape)}"
            )
        batch, time = q.shape[:2]
        for i, (spec, heads) in enumerate(((q, q_heads), (k, kv_heads), (v, kv_heads))):
            if spec.rank != 3 or spec.shape[:2] != (batch, time) or spec.shape[2] % heads:
                raise self.error(
                    f"input {i} ({('query', 'key', 'value')[i]}) must be "
                    f"[{batch}, {time}, {heads} * head_size], got "
                    f"{fmt_shape(spec.shape)}"
                )
        d_k, d_v = q.shape[2] // q_heads, v.shape[2] // kv_heads
        if k.shape[2] != kv_heads * d_k:
            raise self.error(
                f"key {fmt_shape(k.shape)} must have {kv_heads} heads of the "
                f"query's head size {d_k}"
            )
        for name, spec, wanted, lasts in (
            ("decay", decay, self.gated, (kv_heads, kv_heads * d_k)),
            ("beta", beta, self.delta, (kv_heads, 1)),
        ):
            rule = self.attrs["update_rule"]
            if wanted and spec is None:
                raise self.error(f"update_rule '{rule}' needs the input '{name}'")
            if not wanted and spec is not None:
                raise self.error(f"update_rule '{rule}' takes no input '{name}'")
            if spec is not None and (
                spec.rank != 3 or spec.shape[:2] != (batch, time) or spec.shape[2] not in lasts
            ):
                raise self.error(
                    f"{name} must be [{batch}, {time}, {lasts[0]} or {lasts[1]}], "
                    f"got {fmt_shape(spec.shape)}"
                )
        state = TensorSpec((batch, kv_heads, d_k, d_v), q.dtype)
        if past is not None:
            self._check_dtype(past, FLOAT_DTYPES, "input 3 (past_state)")
            if past.shape != state.shape:
                raise self.error(
                    f"past_state must be {fmt_shape(state.shape)}, got {fmt_shape(past.shape)}"
                )
            state = past
        outputs = [TensorSpec((batch, time, q_heads * d_v), q.dtype), state]
        return outputs[: self.output_count]

    def keeps_rows(self, batched: Sequence[bool], specs: Sequence[TensorSpec | None]) -> bool:
        return True  # every input is per sample

    @staticmethod
    def _heads(x: np.ndarray, heads: int, dtype: np.dtype) -> np.ndarray:
        """(B, T, H*D) -> (B, H, T, D) in ``dtype``."""
        b, t, hd = x.shape
        return x.reshape(b, t, heads, hd // heads).transpose(0, 2, 1, 3).astype(dtype)

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        query, key, value = inputs[0], inputs[1], inputs[2]
        past, decay, beta = (optional_input(inputs, i) for i in (3, 4, 5))
        q_heads, kv_heads = self.attrs["q_num_heads"], self.attrs["kv_num_heads"]
        dtype = _compute_dtype(query.dtype)
        batch, time = query.shape[:2]
        q = self._heads(query, q_heads, dtype)
        k = self._heads(key, kv_heads, dtype)
        v = self._heads(value, kv_heads, dtype)
        d_k, d_v = q.shape[3], v.shape[3]
        if decay is not None:  # (B, H_kv, T, 1 or d_k)
            per_head = decay.shape[2] == kv_heads
            g = decay.reshape(batch, time, kv_heads, 1 if per_head else d_k)
            g = np.exp(g.transpose(0, 2, 1, 3).astype(dtype))
        if beta is not None:  # (B, H_kv or 1, T, 1)
            b4 = beta.reshape(batch, time, beta.shape[2], 1).transpose(0, 2, 1, 3).astype(dtype)
        if past is None:
            state = np.zeros((batch, kv_heads, d_k, d_v), dtype)
        else:
            state = past.astype(dtype)
        scale = self.attrs["scale"] or 1 / np.sqrt(d_k)
        group = q_heads // kv_heads
        out = np.empty((batch, q_heads, time, d_v), dtype)
        for i in range(time):
            k_t, v_t = k[:, :, i, :], v[:, :, i, :]
            if decay is not None:
                state = state * g[:, :, i, :, None]
            if beta is not None:
                retrieved = np.einsum("bhdm,bhd->bhm", state, k_t)
                v_t = b4[:, :, i, :] * (v_t - retrieved)
            state = state + k_t[..., :, None] * v_t[..., None, :]
            read = state if group == 1 else np.repeat(state, group, axis=1)
            out[:, :, i, :] = dtype.type(scale) * np.einsum("bhd,bhdm->bhm", q[:, :, i, :], read)
        output = out.transpose(0, 2, 1, 3).reshape(batch, time, q_heads * d_v)
        state_dtype = query.dtype if past is None else past.dtype
        return [output.astype(query.dtype), state.astype(state_dtype)][: self.output_count]


@register
class CausalConvWithState(Op):
    """CausalConvWithState(input, weight[, bias, past_state]) -> (output, present_state).

    A depthwise 1-D convolution over ``(batch, channels, length)`` that sees only the past: the
    input is prefixed with ``past_state`` (the last ``k - 1`` samples of the previous call,
    zeros when omitted), convolved with ``weight`` ``(channels, 1, k)`` without padding, and
    optionally followed by SiLU (``activation`` ``silu`` or its alias ``swish``);
    ``present_state`` is the last ``k - 1`` samples of the prefixed input."""

    op_type = "CausalConvWithState"
    attributes = {"activation": Attr("string", "none")}
    num_inputs = (2, 4)
    num_outputs = (1, 2)

    def _setup(self) -> None:
        if self.attrs["activation"] not in _ACTIVATIONS:
            raise self.error(
                f"attribute 'activation' must be one of {', '.join(_ACTIVATIONS)}"
                f", got {self.attrs['activation']!r}"
            )

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        x, weight = inputs[0], inputs[1]
        bias, past = optional_input(inputs, 2), optional_input(inputs, 3)
        assert x is not None and weight is not None
        self._check_dtype(x, FLOAT_DTYPES)
        self._check_same_dtype([x, weight, bias, past])
        if x.rank != 3:
            raise self.error(f"input must be [batch, channels, length], got {fmt_shape(x.shape)}")
        batch, channels, _ = x.shape
        if weight.rank != 3 or weight.shape[:2] != (channels, 1) or weight.shape[2] < 1:
            raise self.error(
                f"weight must be [{channels}, 1, k] with k >= 1, got {fmt_shape(weight.shape)}"
            )
        state = TensorSpec((batch, channels, weight.shape[2] - 1), x.dtype)
        if bias is not None and bias.shape != (channels,):
            raise self.error(f"bias must be [{channels}], got {fmt_shape(bias.shape)}")
        if past is not None and past.shape != state.shape:
            raise self.error(
                f"past_state must be {fmt_shape(state.shape)}, got {fmt_shape(past.shape)}"
            )
        return [x, state][: self.output_count]

    def keeps_rows(self, batched: Sequence[bool], specs: Sequence[TensorSpec | None]) -> bool:
        return not any(batched[1:3])  # weight and bias are per channel, not per sample

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x, weight = inputs[0], inputs[1]
        bias, past = optional_input(inputs, 2), optional_input(inputs, 3)
        batch, channels, length = x.shape
        k = weight.shape[2]
        if past is None:
            past = np.zeros((batch, channels, k - 1), x.dtype)
        padded = np.concatenate((past, x), axis=2)
        dtype = _compute_dtype(x.dtype)
        windows = np.lib.stride_tricks.sliding_window_view(padded, k, axis=2)  # (B, C, L, k)
        y = np.einsum("bclk,ck->bcl", windows.astype(dtype), weight[:, 0, :].astype(dtype))
        if bias is not None:
            y = y + bias.astype(dtype)[:, None]
        y = y.astype(x.dtype)
        if self.attrs["activation"] != "none":
            z = y.astype(dtype)
            y = (z / (1 + np.exp(-z))).astype(x.dtype)
        present = padded[:, :, length:].copy()
        return [y, present][: self.output_count]


@register
class TensorScatter(Op):
    """TensorScatter(past_cache, update[, write_indices]) -> present_cache: ``update`` written
    into a copy of the cache along ``axis``, sample ``b`` from position ``write_indices[b]``
    (0 when omitted); ``circular`` mode wraps around the cache's length, ``linear`` refuses to
    write past it."""

    op_type = "TensorScatter"
    attributes = {"mode": Attr("string", "linear"), "axis": Attr("int", -2)}
    num_inputs = (2, 3)

    def _setup(self) -> None:
        if self.attrs["mode"] not in ("linear", "circular"):
            raise self.error(
                f"attribute 'mode' must be linear or circular, got {self.attrs['mode']!r}"
            )

    def _axis(self, rank: int) -> int:
        axis = norm_axis(self, self.attrs["axis"], rank)
        if axis == 0:
            raise self.error("axis 0 is the batch axis; the sequence axis must come after it")
        return axis

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        cache, update = inputs[0], inputs[1]
        indices = optional_input(inputs, 2)
        assert cache is not None and update is not None
        self._check_dtype(cache, ALL_DTYPES, "input 0 (past_cache)")
        self._check_same_dtype([cache, update])
        axis = self._axis(cache.rank)
        if (
            update.rank != cache.rank
            or any(u != c for i, (u, c) in enumerate(zip(update.shape, cache.shape)) if i != axis)
            or update.shape[axis] > cache.shape[axis]
        ):
            raise self.error(
                f"update {fmt_shape(update.shape)} must match past_cache "
                f"{fmt_shape(cache.shape)} except on axis {axis}, where it may be "
                "shorter"
            )
        if indices is not None:
            self._check_dtype(indices, _I64, "input 2 (write_indices)")
            if indices.shape != (cache.shape[0],):
                raise self.error(
                    f"write_indices must be [{cache.shape[0]}], got {fmt_shape(indices.shape)}"
                )
        return [cache]

    def keeps_rows(self, batched: Sequence[bool], specs: Sequence[TensorSpec | None]) -> bool:
        return True  # sample b's rows are written from write_indices[b] only

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        cache, update = inputs[0], inputs[1]
        indices = optional_input(inputs, 2)
        axis = self._axis(cache.ndim)
        length, count = cache.shape[axis], update.shape[axis]
        if indices is None:
            indices = np.zeros(cache.shape[0], np.int64)
        circular = self.attrs["mode"] == "circular"
        bad = (indices < 0) if circular else ((indices < 0) | (indices + count > length))
        if bad.any():
            b = int(np.argmax(bad))
            raise self.error(
                f"write_indices[{b}] = {int(indices[b])} does not fit {count} "
                f"updates in a cache of {length} on axis {axis} (mode "
                f"{self.attrs['mode']})"
            )
        out = cache.copy()
        lead = (slice(None),) * (axis - 1)
        for b in range(cache.shape[0]):
            positions = int(indices[b]) + np.arange(count)
            if circular:
                positions %= length
            out[b][(*lead, positions)] = update[b]
        return [out]
