"""Attention (opsets 23 to 25) and RotaryEmbedding (opset 23).

Attention is scaled dot-product attention over ``Q``, ``K``, ``V`` given either as 4-D
``(batch, heads, sequence, head_size)`` tensors or as 3-D ``(batch, sequence, hidden)`` tensors
split into ``q_num_heads``/``kv_num_heads`` heads. It covers multi-head, grouped-query and
multi-query attention (``q_num_heads`` a multiple of ``kv_num_heads``), a boolean or additive
``attn_mask`` (its last axis padded to the total sequence with "not attended"), bottom-right
aligned causal masking, sliding windows, a key/value cache inside the op (``past_key``,
``past_value`` -> ``present_key``, ``present_value``) or outside it (``nonpad_kv_seqlen``),
soft-capping, and the optional ``qk_matmul_output``. A query row with no key left to attend
gives zeros, never NaN. The numbers follow onnx's reference implementation step by step
(``Q·√scale`` times ``Kᵀ·√scale``, softmax in the input's precision unless
``softmax_precision`` says otherwise).

Batch rules: rows of the leading axis are independent when every batched input is a per-sample
tensor (Q, K, V, the caches, ``nonpad_kv_seqlen``, a 4-D mask); a mask of lower rank broadcasts
over the batch and must then not be batched itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._static import optional_input
from .base import (
    ALL_DTYPES,
    FLOAT_DTYPES,
    Attr,
    Op,
    TensorSpec,
    fmt_shape,
    register,
)

__all__ = ["Attention", "RotaryEmbedding"]

_BOOL = np.dtype(np.bool_)
_I64 = np.dtype(np.int64)
#: ``softmax_precision`` values (ONNX TensorProto data types) that numpy can compute in
_SOFTMAX_PRECISIONS = {1: np.dtype(np.float32), 10: np.dtype(np.float16), 11: np.dtype(np.float64)}
_OUTPUT_MODES = (0, 1, 2, 3)


@register
class Attention(Op):
    """Attention(Q, K, V[, attn_mask, past_key, past_value, nonpad_kv_seqlen]) ->
    (Y[, present_key, present_value, qk_matmul_output])."""

    op_type = "Attention"
    attributes = {
        "is_causal": Attr("int", 0),
        "kv_num_heads": Attr("int", None),
        "q_num_heads": Attr("int", None),
        "qk_matmul_output_mode": Attr("int", 0),
        "scale": Attr("float", None),
        "softcap": Attr("float", 0.0),
        "softmax_precision": Attr("int", None),
        "left_window_size": Attr("int", -1),
        "right_window_size": Attr("int", -1),
    }
    num_inputs = (3, 7)
    num_outputs = (1, 4)

    def _setup(self) -> None:
        a = self.attrs
        if a["qk_matmul_output_mode"] not in _OUTPUT_MODES:
            raise self.error(
                f"attribute 'qk_matmul_output_mode' must be 0 to 3, got "
                f"{a['qk_matmul_output_mode']}"
            )
        precision = a["softmax_precision"]
        if precision is not None and precision not in _SOFTMAX_PRECISIONS:
            raise self.error(
                f"attribute 'softmax_precision' {precision} is not supported "
                "(supported: 1 FLOAT, 10 FLOAT16, 11 DOUBLE)"
            )
        for name in ("left_window_size", "right_window_size"):
            if a[name] < -1:
                raise self.error(f"attribute '{name}' must be -1 or non-negative, got {a[name]}")
        for name in ("q_num_heads", "kv_num_heads"):
            if a[name] is not None and a[name] < 1:
                raise self.error(f"attribute '{name}' must be positive, got {a[name]}")

    # -- shape inference ----------------------------------------------------------------------

    def _heads(self, spec: TensorSpec, heads: int | None, what: str) -> tuple[int, int, int, int]:
        """(batch, heads, sequence, head_size) of a 3-D or 4-D Q, K or V."""
        if spec.rank == 4:
            return spec.shape  # type: ignore[return-value]
        if heads is None:
            name = "q_num_heads" if what == "Q" else "kv_num_heads"
            raise self.error(f"3-D {what} {fmt_shape(spec.shape)} needs the attribute '{name}'")
        batch, seq, hidden = spec.shape
        if hidden % heads:
            raise self.error(f"{what} hidden size {hidden} is not a multiple of {heads} heads")
        return batch, heads, seq, hidden // heads

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        q, k, v = inputs[0], inputs[1], inputs[2]
        mask = optional_input(inputs, 3)
        past_key, past_value = optional_input(inputs, 4), optional_input(inputs, 5)
        nonpad = optional_input(inputs, 6)
        assert q is not None and k is not None and v is not None
        for i, s in enumerate((q, k, v)):
            self._check_dtype(s, FLOAT_DTYPES, f"input {i} ({'QKV'[i]})")
        self._check_same_dtype([q, k])
        if not q.rank == k.rank == v.rank or q.rank not in (3, 4):
            raise self.error(
                f"Q, K and V must all be 3-D or all 4-D, got {fmt_shape(q.shape)}, "
                f"{fmt_shape(k.shape)} and {fmt_shape(v.shape)}"
            )
        batch, q_heads, q_seq, head = self._heads(q, self.attrs["q_num_heads"], "Q")
        kb, kv_heads, kv_seq, k_head = self._heads(k, self.attrs["kv_num_heads"], "K")
        vb, v_heads, v_seq, v_head = self._heads(v, self.attrs["kv_num_heads"], "V")
        if (kb, vb) != (batch, batch) or k_head != head or (v_heads, v_seq) != (kv_heads, kv_seq):
            raise self.error(
                f"Q {fmt_shape(q.shape)}, K {fmt_shape(k.shape)} and V "
                f"{fmt_shape(v.shape)} do not agree on batch, heads, sequence "
                "and head size"
            )
        if q_heads % kv_heads:
            raise self.error(f"q_num_heads {q_heads} is not a multiple of kv_num_heads {kv_heads}")
        if (past_key is None) != (past_value is None):
            raise self.error("past_key and past_value must be given together")
        past = 0
        if past_key is not None and past_value is not None:
            if nonpad is not None:
                raise self.error("nonpad_kv_seqlen cannot be combined with past_key/past_value")
            self._check_same_dtype([q, None, None, None, past_key])
            self._check_same_dtype([v, None, None, None, None, past_value])
            past = past_key.shape[2] if past_key.rank == 4 else -1
            if past_key.shape != (batch, kv_heads, past, head) or past_value.shape != (
                batch,
                kv_heads,
                past,
                v_head,
            ):
                raise self.error(
                    f"past_key {fmt_shape(past_key.shape)} and past_value "
                    f"{fmt_shape(past_value.shape)} must be "
                    f"[{batch}, {kv_heads}, P, {head}] and "
                    f"[{batch}, {kv_heads}, P, {v_head}]"
                )
        total = past + kv_seq
        if mask is not None:
            self._check_dtype(mask, ALL_DTYPES, "input 3 (attn_mask)")
            if mask.dtype != _BOOL and mask.dtype != q.dtype:
                raise self.error(
                    f"attn_mask must be bool or {q.dtype.name} like Q, got {mask.dtype.name}"
                )
            if mask.rank < 1 or mask.rank > 4 or mask.shape[-1] > total:
                raise self.error(
                    f"attn_mask {fmt_shape(mask.shape)} must have rank 1 to 4 and "
                    f"at most {total} keys on its last axis"
                )
            try:
                np.broadcast_shapes(mask.shape[:-1], (batch, q_heads, q_seq))
            except ValueError:
                raise self.error(
                    f"attn_mask {fmt_shape(mask.shape)} does not broadcast to "
                    f"{fmt_shape((batch, q_heads, q_seq, total))}"
                ) from None
        if nonpad is not None:
            self._check_dtype(nonpad, frozenset({_I64}), "input 6 (nonpad_kv_seqlen)")
            if nonpad.shape != (batch,):
                raise self.error(
                    f"nonpad_kv_seqlen must be [{batch}], got {fmt_shape(nonpad.shape)}"
                )
        y_shape = (
            (batch, q_seq, q_heads * v_head) if q.rank == 3 else (batch, q_heads, q_seq, v_head)
        )
        outputs = [
            TensorSpec(y_shape, q.dtype),
            TensorSpec((batch, kv_heads, total, head), q.dtype),
            TensorSpec((batch, kv_heads, total, v_head), v.dtype),
            TensorSpec((batch, q_heads, q_seq, total), q.dtype),
        ]
        return outputs[: self.output_count]

    def keeps_rows(self, batched: Sequence[bool], specs: Sequence[TensorSpec | None]) -> bool:
        mask = optional_input(specs, 3)
        return not (len(batched) > 3 and batched[3] and mask is not None and mask.rank != 4)

    # -- the kernel ---------------------------------------------------------------------------

    @staticmethod
    def _to_heads(x: np.ndarray, heads: int) -> np.ndarray:
        if x.ndim == 4:
            return x
        batch, seq, hidden = x.shape
        return x.reshape(batch, seq, heads, hidden // heads).transpose(0, 2, 1, 3)

    def _bias(
        self,
        dtype: np.dtype,
        q_seq: int,
        total: int,
        mask: np.ndarray | None,
        past: int,
        nonpad: np.ndarray | None,
    ) -> np.ndarray:
        """The additive bias of the scores: 0 where attended, -inf where not (or the float
        mask's values)."""
        a = self.attrs
        neg_inf = dtype.type(-np.inf)
        zero = dtype.type(0)
        if mask is not None and mask.shape[-1] < total:
            widths = [(0, 0)] * (mask.ndim - 1) + [(0, total - mask.shape[-1])]
            mask = np.pad(mask, widths, constant_values=False if mask.dtype == _BOOL else -np.inf)
        if mask is None:
            bias = np.zeros((q_seq, total), dtype)
        elif mask.dtype == _BOOL:
            bias = np.where(mask, zero, neg_inf)
        else:
            bias = mask.astype(dtype, copy=False)
        # the offset of the first query among the keys: per sample with an external cache
        if past == 0 and nonpad is not None:
            offset: np.ndarray | int = nonpad.reshape(-1, 1, 1, 1) - q_seq
        else:
            offset = past
        i = np.arange(q_seq).reshape(q_seq, 1)
        j = np.arange(total).reshape(1, total)
        diff = i + offset - j  # query position minus key position
        allowed = np.ones(np.shape(diff), bool)
        if a["is_causal"]:
            allowed &= diff >= 0
        if a["left_window_size"] >= 0:
            allowed &= diff <= a["left_window_size"]
        if a["right_window_size"] >= 0:
            allowed &= -diff <= a["right_window_size"]
        if not allowed.all():
            bias = bias + np.where(allowed, zero, neg_inf)
        if nonpad is not None:
            padding = np.arange(total) < nonpad.reshape(-1, 1)
            bias = bias + np.where(padding, zero, neg_inf).reshape(-1, 1, 1, total)
        return bias

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        a = self.attrs
        q_in = inputs[0]
        mask = optional_input(inputs, 3)
        past_key, past_value = optional_input(inputs, 4), optional_input(inputs, 5)
        nonpad = optional_input(inputs, 6)
        q = self._to_heads(q_in, a["q_num_heads"] or 0)
        k = self._to_heads(inputs[1], a["kv_num_heads"] or 0)
        v = self._to_heads(inputs[2], a["kv_num_heads"] or 0)
        past = 0
        if past_key is not None and past_value is not None:
            past = past_key.shape[2]
            k = np.concatenate((past_key, k), axis=2)
            v = np.concatenate((past_value, v), axis=2)
        present_key, present_value = k, v
        dtype = q.dtype
        q_seq, total = q.shape[2], k.shape[2]
        if nonpad is not None and (np.any(nonpad < 0) or np.any(nonpad > total)):
            raise self.error(f"nonpad_kv_seqlen values must be 0 to {total}, got {nonpad.tolist()}")
        scale = a["scale"] if a["scale"] is not None else 1 / np.sqrt(q.shape[3])
        root = dtype.type(np.sqrt(scale))
        if k.shape[1] != q.shape[1]:
            reps = q.shape[1] // k.shape[1]
            k = np.repeat(k, reps, axis=1)
            v = np.repeat(v, reps, axis=1)
        with np.errstate(over="ignore", invalid="ignore"):
            scores = np.matmul(q * root, np.swapaxes(k, 2, 3) * root)
            if a["softcap"] > 0:
                softcap = dtype.type(a["softcap"])
                scores = np.tanh(scores / softcap) * softcap
            bias = self._bias(dtype, q_seq, total, mask, past, nonpad)
            with_bias = scores + bias
            qk_output = with_bias if a["qk_matmul_output_mode"] == 2 else scores
            precision = a["softmax_precision"]
            logits = (
                with_bias if precision is None else with_bias.astype(_SOFTMAX_PRECISIONS[precision])
            )
            top = logits.max(axis=-1, keepdims=True)
            masked_row = np.isneginf(top)
            e = np.exp(logits - np.where(masked_row, logits.dtype.type(0), top))
            s = e.sum(axis=-1, keepdims=True)
            probs = e / np.where(s == 0, s.dtype.type(1), s)
            fully_masked = np.isneginf(bias.max(axis=-1, keepdims=True))
            probs = np.where(fully_masked, probs.dtype.type(0), probs).astype(dtype, copy=False)
            if a["qk_matmul_output_mode"] == 3:
                qk_output = probs
            y = np.matmul(probs, v)
        if q_in.ndim == 3:
            y = y.transpose(0, 2, 1, 3).reshape(y.shape[0], q_seq, -1)
        batch, heads = q.shape[:2]
        qk_output = np.broadcast_to(qk_output, (batch, heads, q_seq, total)).astype(dtype)
        return [y, present_key, present_value, qk_output][: self.output_count]


@register
class RotaryEmbedding(Op):
    """RotaryEmbedding(X, cos_cache, sin_cache[, position_ids]): rotates pairs of features of
    each head by the cached angles, over the first ``rotary_embedding_dim`` features (all by
    default), pairing halves or, with ``interleaved``, neighbours."""

    op_type = "RotaryEmbedding"
    attributes = {
        "interleaved": Attr("int", 0),
        "num_heads": Attr("int", 0),
        "rotary_embedding_dim": Attr("int", 0),
    }
    num_inputs = (3, 4)

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        x, cos, sin = inputs[0], inputs[1], inputs[2]
        positions = optional_input(inputs, 3)
        assert x is not None and cos is not None and sin is not None
        self._check_dtype(x, FLOAT_DTYPES, "input 0 (X)")
        self._check_same_dtype([x, cos, sin])
        heads = self.attrs["num_heads"]
        if x.rank == 4:
            batch, _, seq, head = x.shape
        elif x.rank == 3:
            if heads < 1 or x.shape[2] % heads:
                raise self.error(
                    f"3-D X {fmt_shape(x.shape)} needs 'num_heads' dividing its "
                    f"hidden size, got {heads}"
                )
            batch, seq, head = x.shape[0], x.shape[1], x.shape[2] // heads
        else:
            raise self.error(f"X must be 3-D or 4-D, got {fmt_shape(x.shape)}")
        dim = self.attrs["rotary_embedding_dim"] or head
        if dim % 2 or dim > head:
            raise self.error(
                f"rotary_embedding_dim {dim} must be even and at most the head size {head}"
            )
        if cos.shape != sin.shape:
            raise self.error(
                f"cos_cache {fmt_shape(cos.shape)} and sin_cache {fmt_shape(sin.shape)} differ"
            )
        if positions is not None:
            self._check_dtype(positions, frozenset({_I64}), "input 3 (position_ids)")
            if positions.shape != (batch, seq) or cos.rank != 2 or cos.shape[1] != dim // 2:
                raise self.error(
                    f"with position_ids {fmt_shape(positions.shape)} the caches "
                    f"must be [P, {dim // 2}] and the ids [{batch}, {seq}], got "
                    f"{fmt_shape(cos.shape)}"
                )
        elif cos.shape != (batch, seq, dim // 2):
            raise self.error(
                f"without position_ids the caches must be "
                f"{fmt_shape((batch, seq, dim // 2))}, got {fmt_shape(cos.shape)}"
            )
        return [x]

    def keeps_rows(self, batched: Sequence[bool], specs: Sequence[TensorSpec | None]) -> bool:
        # with position_ids the caches are tables indexed by position, not per sample
        return not (len(specs) > 3 and specs[3] is not None and any(batched[1:3]))

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x, cos, sin = inputs[0], inputs[1], inputs[2]
        positions = optional_input(inputs, 3)
        if positions is not None:
            if positions.size and (positions.min() < 0 or positions.max() >= cos.shape[0]):
                raise self.error(
                    f"position_ids must be 0 to {cos.shape[0] - 1}, got values "
                    f"{int(positions.min())} to {int(positions.max())}"
                )
            cos, sin = cos[positions], sin[positions]
        # (batch, sequence, heads, head_size)
        h = (
            x.transpose(0, 2, 1, 3)
            if x.ndim == 4
            else x.reshape(x.shape[0], x.shape[1], self.attrs["num_heads"], -1)
        )
        dim = self.attrs["rotary_embedding_dim"] or h.shape[3]
        rotate, keep = h[..., :dim], h[..., dim:]
        cos, sin = cos[:, :, None, :], sin[:, :, None, :]
        if self.attrs["interleaved"]:
            x1, x2 = rotate[..., 0::2], rotate[..., 1::2]
        else:
            x1, x2 = rotate[..., : dim // 2], rotate[..., dim // 2 :]
        real = cos * x1 - sin * x2
        imag = sin * x1 + cos * x2
        if self.attrs["interleaved"]:
            rotated = np.stack((real, imag), axis=-1).reshape(rotate.shape)
        else:
            rotated = np.concatenate((real, imag), axis=-1)
        out = np.concatenate((rotated, keep), axis=-1).astype(x.dtype, copy=False)
        return [out.transpose(0, 2, 1, 3) if x.ndim == 4 else out.reshape(x.shape)]
