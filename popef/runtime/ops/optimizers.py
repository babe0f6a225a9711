"""The optimizer steps of ONNX's ``ai.onnx.preview.training`` domain: Adagrad, Adam, Momentum.

They are registered as ``ai.onnx.preview.training.<Op>`` (the importer names an op of another
domain ``<domain>.<op type>``). Though written for training, each is a pure function of its
inputs: one update of ``n`` tensors from a learning rate ``R`` (scalar), an iteration count
``T`` (int64 scalar), the tensors ``X_1..X_n``, their gradients ``G_1..G_n`` and their
accumulators (Adagrad: ``H``; Momentum: ``V``; Adam: ``V`` then ``H``). The outputs are the
updated tensors then the updated accumulators, in the order of the inputs. The arithmetic runs
in float64 and each output is cast to the dtype of the tensor it updates.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .base import VARIADIC, Attr, Op, TensorSpec, fmt_shape, register

__all__ = ["Adagrad", "Adam", "Momentum"]

_DOMAIN = "ai.onnx.preview.training"
_F32_F64 = frozenset(np.dtype(t) for t in (np.float32, np.float64))
_I64 = frozenset({np.dtype(np.int64)})
_F64 = np.dtype(np.float64)


class _OptimizerStep(Op):
    """Shared arity, dtype and shape checks: ``R, T`` then ``groups`` runs of ``n`` tensors
    (``X``, ``G``, then the accumulators); ``groups - 1`` runs of ``n`` outputs."""

    #: names of the per-tensor input groups, X and G first
    groups: tuple[str, ...] = ()

    def _count(self, num_inputs: int) -> int:
        per = len(self.groups)
        n, rest = divmod(num_inputs - 2, per)
        if rest or n < 1:
            raise self.error(
                f"takes R, T then {per} inputs per optimized tensor "
                f"({', '.join(self.groups)}), got {num_inputs} inputs"
            )
        if self.output_count != (per - 1) * n:
            raise self.error(
                f"updates {n} tensor(s), so it has {(per - 1) * n} outputs, got {self.output_count}"
            )
        return n

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        n = self._count(len(inputs))
        if any(x is None for x in inputs):
            raise self.error("no input may be omitted")
        rate, step = inputs[0], inputs[1]
        self._check_dtype(rate, _F32_F64, "input 0 (R)")
        self._check_dtype(step, _I64, "input 1 (T)")
        for k, (spec, name) in enumerate(((rate, "R"), (step, "T"))):
            if spec.size != 1 or spec.rank > 1:
                raise self.error(
                    f"input {k} ({name}) must be a scalar, got {fmt_shape(spec.shape)}"
                )
        for i in range(n):
            x = inputs[2 + i]
            for g, group in enumerate(self.groups):
                spec = inputs[2 + g * n + i]
                self._check_dtype(spec, _F32_F64, f"input {2 + g * n + i} ({group}_{i + 1})")
                if spec.shape != x.shape:
                    raise self.error(
                        f"input {2 + g * n + i} ({group}_{i + 1}) "
                        f"{fmt_shape(spec.shape)} must have the shape of X_{i + 1} "
                        f"{fmt_shape(x.shape)}"
                    )
        return [
            TensorSpec(inputs[2 + g * n + i].shape, inputs[2 + g * n + i].dtype)
            for g in (0, *range(2, len(self.groups)))
            for i in range(n)
        ]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        n = self._count(len(inputs))
        rate = float(np.asarray(inputs[0]).reshape(()))
        step = int(np.asarray(inputs[1]).reshape(()))
        per_tensor = [
            self._update(
                rate,
                step,
                *(np.asarray(inputs[2 + g * n + i], _F64) for g in range(len(self.groups))),
            )
            for i in range(n)
        ]
        outs = []
        for g in (0, *range(2, len(self.groups))):
            for i in range(n):
                k = 0 if g == 0 else g - 1
                outs.append(per_tensor[i][k].astype(inputs[2 + g * n + i].dtype))
        return outs

    def _update(
        self, rate: float, step: int, x: np.ndarray, g: np.ndarray, *state: np.ndarray
    ) -> tuple[np.ndarray, ...]:
        """``(x_new, *state_new)`` for one tensor, in float64."""
        raise NotImplementedError


@register
class Adagrad(_OptimizerStep):
    """Adagrad(R, T, X..., G..., H...) -> X_new..., H_new...: ``r = R / (1 + T *
    decay_factor)``, ``g = norm_coefficient * X + G``, ``H_new = H + g²``,
    ``X_new = X - r * g / (sqrt(H_new) + epsilon)``."""

    op_type = f"{_DOMAIN}.Adagrad"
    attributes = {
        "decay_factor": Attr("float", 0.0),
        "epsilon": Attr("float", 0.0),
        "norm_coefficient": Attr("float", 0.0),
    }
    num_inputs = (5, VARIADIC)
    num_outputs = (2, VARIADIC)
    groups = ("X", "G", "H")

    def _update(self, rate, step, x, g, *state):
        (h,) = state
        a = self.attrs
        r = rate / (1.0 + step * a["decay_factor"])
        g = a["norm_coefficient"] * x + g
        h_new = h + g * g
        return x - r * g / (np.sqrt(h_new) + a["epsilon"]), h_new


@register
class Adam(_OptimizerStep):
    """Adam(R, T, X..., G..., V..., H...) -> X_new..., V_new..., H_new...: ``g =
    norm_coefficient * X + G``, ``V_new = alpha V + (1 - alpha) g``, ``H_new = beta H +
    (1 - beta) g²``, ``r = R sqrt(1 - beta^T) / (1 - alpha^T)`` when ``T > 0`` (else ``R``),
    ``X_new = (1 - norm_coefficient_post) (X - r V_new / (sqrt(H_new) + epsilon))``."""

    op_type = f"{_DOMAIN}.Adam"
    attributes = {
        "alpha": Attr("float", 0.9),
        "beta": Attr("float", 0.999),
        "epsilon": Attr("float", 0.0),
        "norm_coefficient": Attr("float", 0.0),
        "norm_coefficient_post": Attr("float", 0.0),
    }
    num_inputs = (6, VARIADIC)
    num_outputs = (3, VARIADIC)
    groups = ("X", "G", "V", "H")

    def _update(self, rate, step, x, g, *state):
        v, h = state
        a = self.attrs
        alpha, beta = a["alpha"], a["beta"]
        g = a["norm_coefficient"] * x + g
        v_new = alpha * v + (1.0 - alpha) * g
        h_new = beta * h + (1.0 - beta) * g * g
        r = rate * np.sqrt(1.0 - beta**step) / (1.0 - alpha**step) if step > 0 else rate
        x_new = x - r * (v_new / (np.sqrt(h_new) + a["epsilon"]))
        return (1.0 - a["norm_coefficient_post"]) * x_new, v_new, h_new


@register
class Momentum(_OptimizerStep):
    """Momentum(R, T, X..., G..., V...) -> X_new..., V_new...: ``g = norm_coefficient * X +
    G``, ``V_new = alpha V + b g`` with ``b = beta`` when ``T > 0`` (else 1); ``mode``
    ``"standard"``: ``X_new = X - R V_new``; ``"nesterov"``: ``X_new = X - R (g + alpha
    V_new)``."""

    op_type = f"{_DOMAIN}.Momentum"
    attributes = {
        "alpha": Attr("float"),
        "beta": Attr("float"),
        "mode": Attr("string"),
        "norm_coefficient": Attr("float"),
    }
    num_inputs = (5, VARIADIC)
    num_outputs = (2, VARIADIC)
    groups = ("X", "G", "V")

    def _setup(self) -> None:
        if self.attrs["mode"] not in ("standard", "nesterov"):
            raise self.error(
                f"attribute 'mode' must be 'standard' or 'nesterov', got {self.attrs['mode']!r}"
            )

    def _update(self, rate, step, x, g, *state):
        (v,) = state
        a = self.attrs
        g = a["norm_coefficient"] * x + g
        v_new = a["alpha"] * v + (a["beta"] if step > 0 else 1.0) * g
        if a["mode"] == "standard":
            return x - rate * v_new, v_new
        return x - rate * (g + a["alpha"] * v_new), v_new
