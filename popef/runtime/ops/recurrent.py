"""Recurrent layers: RNN, GRU and LSTM (opset 7 through 22).

One class per op over a shared scan. Each runs ``forward``, ``reverse`` or ``bidirectional``
(two directions with their own weights, stacked on the ``num_directions`` axis) over
``X`` of shape ``(seq, batch, input)`` — or ``(batch, seq, input)`` with ``layout=1`` — with
weights ``W (dirs, gates·hidden, input)``, ``R (dirs, gates·hidden, hidden)``, optional bias
``B (dirs, 2·gates·hidden)`` (input and recurrence halves), ``sequence_lens (batch,)``, initial
states and (LSTM) peepholes ``P (dirs, 3·hidden)``. Gate orders are ONNX's: GRU ``z, r, h``;
LSTM ``i, o, f, c``.

The gate functions default to ONNX's (RNN ``Tanh``; GRU ``Sigmoid, Tanh``; LSTM
``Sigmoid, Tanh, Tanh``); ``activations`` (a STRINGS attribute) names others, one list per
direction, from ONNX's set: Relu, Tanh, Sigmoid, Affine, LeakyRelu, ThresholdedRelu,
ScaledTanh, HardSigmoid, Elu, Softsign, Softplus. Those with parameters take them from
``activation_alpha`` and ``activation_beta`` in the order of the functions that use them (as
onnxruntime does), ONNX's defaults when the lists run out. ``clip`` bounds every gate's input.

``sequence_lens``: sample ``b`` runs for its first ``sequence_lens[b]`` steps only (a reverse
direction starts from its last valid step); ``Y`` is zero past its end and ``Y_h``/``Y_c`` hold
its last valid state. LSTM's ``input_forget=1`` is refused.

Batch rules: with ``layout=1`` the leading axis is the batch and each sample runs on its own, so
the rows stay independent as long as only ``X``, ``sequence_lens`` and the initial states are
batched; with ``layout=0`` the leading axis is time, which mixes them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from . import _kernels
from ._static import optional_input
from .base import FLOAT_DTYPES, Attr, Op, TensorSpec, fmt_shape, register

__all__ = ["GRU", "LSTM", "RNN"]

_I32 = np.dtype(np.int32)
_DIRECTIONS = {"forward": 1, "reverse": 1, "bidirectional": 2}

Activation = Callable[[np.ndarray], np.ndarray]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return 1 / (1 + np.exp(-x))


def _softplus(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return np.logaddexp(0, x).astype(x.dtype, copy=False)


#: ONNX's gate functions: name -> (defaults of alpha and beta it takes, function of x, a, b)
_FUNCTIONS: dict[str, tuple[tuple[float, ...], Callable[..., np.ndarray]]] = {
    "Relu": ((), lambda x: np.maximum(x, 0)),
    "Tanh": ((), np.tanh),
    "Sigmoid": ((), _sigmoid),
    "Softsign": ((), lambda x: x / (1 + np.abs(x))),
    "Softplus": ((), _softplus),
    "Affine": ((1.0, 0.0), lambda x, a, b: a * x + b),
    "LeakyRelu": ((0.01,), lambda x, a: np.where(x >= 0, x, a * x)),
    "ThresholdedRelu": ((1.0,), lambda x, a: np.where(x > a, x, 0)),
    "ScaledTanh": ((1.0, 1.0), lambda x, a, b: a * np.tanh(b * x)),
    "HardSigmoid": ((0.2, 0.5), lambda x, a, b: np.clip(a * x + b, 0, 1)),
    "Elu": ((1.0,), lambda x, a: np.where(x >= 0, x, a * np.expm1(np.minimum(x, 0)))),
}


def _gate_function(name: str, alpha: float | None, beta: float | None) -> Activation:
    defaults, function = _FUNCTIONS[name]
    if not defaults:
        return function
    a = defaults[0] if alpha is None else alpha
    if len(defaults) == 1:
        return lambda x: function(x, x.dtype.type(a)).astype(x.dtype, copy=False)
    b = defaults[1] if beta is None else beta
    return lambda x: function(x, x.dtype.type(a), x.dtype.type(b)).astype(x.dtype, copy=False)


class _Recurrent(Op):
    """The shared scan; subclasses give the gate count, defaults and one step's cell."""

    attributes = {
        "clip": Attr("float", None),
        "direction": Attr("string", "forward"),
        "hidden_size": Attr("int", None),
        "layout": Attr("int", 0),
        "activations": Attr("strings", None),
        "activation_alpha": Attr("floats", None),
        "activation_beta": Attr("floats", None),
    }
    num_inputs = (3, 6)
    num_outputs = (1, 2)
    gates: int = 1
    default_activations: tuple[str, ...] = ("Tanh",)
    #: input index of the initial cell state and of the peepholes (LSTM only)
    state_inputs: tuple[int, ...] = (5,)

    def _setup(self) -> None:
        a = self.attrs
        if a["direction"] not in _DIRECTIONS:
            raise self.error(
                f"attribute 'direction' must be forward, reverse or bidirectional, "
                f"got {a['direction']!r}"
            )
        if a["layout"] not in (0, 1):
            raise self.error(f"attribute 'layout' must be 0 or 1, got {a['layout']}")
        if a["hidden_size"] is not None and a["hidden_size"] < 1:
            raise self.error(f"attribute 'hidden_size' must be positive, got {a['hidden_size']}")
        if a["clip"] is not None and a["clip"] <= 0:
            raise self.error(f"attribute 'clip' must be positive, got {a['clip']}")
        self.directions = _DIRECTIONS[a["direction"]]
        self.functions = self._gate_functions()

    def _gate_functions(self) -> list[Activation]:
        """One function per gate function and direction, from ``activations``."""
        names = self.attrs["activations"]
        if names is None:
            names = list(self.default_activations) * self.directions
        wanted = len(self.default_activations) * self.directions
        if len(names) != wanted:
            raise self.error(
                f"attribute 'activations' must name {wanted} functions "
                f"({len(self.default_activations)} per direction), got "
                f"{len(names)}"
            )
        alphas = list(self.attrs["activation_alpha"] or ())
        betas = list(self.attrs["activation_beta"] or ())
        functions = []
        for name in names:
            if name not in _FUNCTIONS:
                raise self.error(
                    f"activation '{name}' is not supported (supported: {', '.join(_FUNCTIONS)})"
                )
            takes = len(_FUNCTIONS[name][0])
            alpha = alphas.pop(0) if takes >= 1 and alphas else None
            beta = betas.pop(0) if takes >= 2 and betas else None
            functions.append(_gate_function(name, alpha, beta))
        return functions

    # -- shape inference ----------------------------------------------------------------------

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        x, w, r = inputs[0], inputs[1], inputs[2]
        assert x is not None and w is not None and r is not None
        self._check_dtype(x, FLOAT_DTYPES, "input 0 (X)")
        self._check_same_dtype([x, w, r])
        dirs, g = self.directions, self.gates
        if x.rank != 3:
            raise self.error(f"X must be 3-D, got {fmt_shape(x.shape)}")
        seq, batch, size = (
            x.shape if self.attrs["layout"] == 0 else (x.shape[1], x.shape[0], x.shape[2])
        )
        hidden = self.attrs["hidden_size"]
        if hidden is None:
            if r.rank != 3:
                raise self.error(f"R must be 3-D, got {fmt_shape(r.shape)}")
            hidden = r.shape[2]
        expected = {
            1: ("W", (dirs, g * hidden, size)),
            2: ("R", (dirs, g * hidden, hidden)),
            3: ("B", (dirs, 2 * g * hidden)),
            4: ("sequence_lens", (batch,)),
        }
        state = (dirs, batch, hidden) if self.attrs["layout"] == 0 else (batch, dirs, hidden)
        for i in self.state_inputs:
            expected[i] = ("initial state", state)
        if len(self.state_inputs) > 1:
            expected[7] = ("P", (dirs, 3 * hidden))
        for i, (name, shape) in expected.items():
            spec = optional_input(inputs, i)
            if spec is None:
                continue
            if spec.shape != shape:
                raise self.error(
                    f"input {i} ({name}) must be {fmt_shape(shape)}, got {fmt_shape(spec.shape)}"
                )
            if i == 4:
                self._check_dtype(spec, frozenset({_I32}), "input 4 (sequence_lens)")
            elif spec.dtype != x.dtype:
                raise self.error(
                    f"input {i} ({name}) has dtype {spec.dtype.name} but X has "
                    f"{x.dtype.name}; they must match"
                )
        y = (seq, dirs, batch, hidden) if self.attrs["layout"] == 0 else (batch, seq, dirs, hidden)
        outputs = [TensorSpec(y, x.dtype)] + [TensorSpec(state, x.dtype)] * (
            type(self).num_outputs[1] - 1
        )
        return outputs[: self.output_count]

    def keeps_rows(self, batched: Sequence[bool], specs: Sequence[TensorSpec | None]) -> bool:
        weights = [1, 2, 3, 7]
        return self.attrs["layout"] == 1 and not any(
            batched[i] for i in weights if i < len(batched)
        )

    # -- the kernel ---------------------------------------------------------------------------

    def _cell(
        self,
        gates_x: np.ndarray,
        h: np.ndarray,
        c: np.ndarray | None,
        r: np.ndarray,
        rb: np.ndarray,
        p: np.ndarray | None,
        fns: Sequence[Activation],
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """One step for all samples: the new (hidden, cell) states from the input's gate terms
        (``X·Wᵀ + Wb``) and the previous states."""
        raise NotImplementedError

    def _clip(self, x: np.ndarray) -> np.ndarray:
        clip = self.attrs["clip"]
        return x if clip is None else np.clip(x, -clip, clip)

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x_in = inputs[0]
        dtype = _kernels.compute_dtype(x_in.dtype)
        layout = self.attrs["layout"]
        x = x_in.astype(dtype, copy=False)
        if layout == 1:
            x = x.transpose(1, 0, 2)
        seq, batch, _ = x.shape
        dirs, g = self.directions, self.gates
        hidden = inputs[2].shape[2]
        w = inputs[1].astype(dtype, copy=False)
        r = inputs[2].astype(dtype, copy=False)
        b = optional_input(inputs, 3)
        b = np.zeros((dirs, 2 * g * hidden), dtype) if b is None else b.astype(dtype, copy=False)
        lens = optional_input(inputs, 4)
        if lens is None:
            lens = np.full((batch,), seq, np.int64)
        elif lens.size and (lens.min() < 0 or lens.max() > seq):
            raise self.error(f"sequence_lens must be 0 to {seq}, got {lens.tolist()}")
        states = []
        for i in self.state_inputs:
            s = optional_input(inputs, i)
            s = np.zeros((dirs, batch, hidden), dtype) if s is None else s.astype(dtype)
            states.append(
                s.transpose(1, 0, 2)
                if layout == 1 and s.ndim == 3 and optional_input(inputs, i) is not None
                else s
            )
        peepholes = optional_input(inputs, 7) if len(self.state_inputs) > 1 else None
        per_direction = len(self.default_activations)
        y = np.zeros((seq, dirs, batch, hidden), dtype)
        last = [np.zeros((dirs, batch, hidden), dtype) for _ in self.state_inputs]
        for d in range(dirs):
            reverse = self.attrs["direction"] == "reverse" or d == 1
            fns = self.functions[d * per_direction : (d + 1) * per_direction]
            wb, rb = b[d, : g * hidden], b[d, g * hidden :]
            p = None if peepholes is None else peepholes[d].astype(dtype, copy=False)
            gates_x = x @ w[d].T + wb  # (seq, batch, g·hidden)
            h = states[0][d]
            c = states[1][d] if len(states) > 1 else None
            for t in range(seq):
                # sample k reads step lens[k]-1-t going backwards; past its end it stands still
                index = (lens - 1 - t) if reverse else np.full((batch,), t)
                live = t < lens
                gx = gates_x[np.clip(index, 0, seq - 1), np.arange(batch)]
                new_h, new_c = self._cell(gx, h, c, r[d], rb, p, fns)
                keep = live[:, None]
                h = np.where(keep, new_h, h)
                if c is not None and new_c is not None:
                    c = np.where(keep, new_c, c)
                rows = np.nonzero(live)[0]
                y[index[rows], d, rows] = h[rows]
            last[0][d] = h
            if c is not None:
                last[1][d] = c
        if layout == 1:
            y = y.transpose(2, 0, 1, 3)
            last = [s.transpose(1, 0, 2) for s in last]
        outputs = [y, *last]
        return [o.astype(x_in.dtype, copy=False) for o in outputs][: self.output_count]


@register
class RNN(_Recurrent):
    """RNN: ``H = f(X·Wᵀ + H·Rᵀ + Wb + Rb)``."""

    op_type = "RNN"

    def _cell(self, gx, h, c, r, rb, p, fns):
        return fns[0](self._clip(gx + h @ r.T + rb)), None


@register
class GRU(_Recurrent):
    """GRU: update ``z``, reset ``r`` and candidate ``h`` gates; ``linear_before_reset``
    applies the reset after the recurrence's matrix product."""

    op_type = "GRU"
    attributes = {**_Recurrent.attributes, "linear_before_reset": Attr("int", 0)}
    gates = 3
    default_activations = ("Sigmoid", "Tanh")

    def _cell(self, gx, h, c, r, rb, p, fns):
        n = r.shape[1]
        f, g = fns
        xz, xr, xh = gx[:, :n], gx[:, n : 2 * n], gx[:, 2 * n :]
        rz, rr, rh = r[:n], r[n : 2 * n], r[2 * n :]
        bz, br, bh = rb[:n], rb[n : 2 * n], rb[2 * n :]
        z = f(self._clip(xz + h @ rz.T + bz))
        reset = f(self._clip(xr + h @ rr.T + br))
        if self.attrs["linear_before_reset"]:
            cand = g(self._clip(xh + reset * (h @ rh.T + bh)))
        else:
            cand = g(self._clip(xh + (reset * h) @ rh.T + bh))
        return (1 - z) * cand + z * h, None


@register
class LSTM(_Recurrent):
    """LSTM: input ``i``, output ``o``, forget ``f`` and cell ``c`` gates, with optional
    peepholes ``P`` (``i, o, f``); also gives the last cell state ``Y_c``."""

    op_type = "LSTM"
    attributes = {**_Recurrent.attributes, "input_forget": Attr("int", 0)}
    num_inputs = (3, 8)
    num_outputs = (1, 3)
    gates = 4
    default_activations = ("Sigmoid", "Tanh", "Tanh")
    state_inputs = (5, 6)

    def _setup(self) -> None:
        super()._setup()
        if self.attrs["input_forget"]:
            raise self.error("input_forget=1 (coupled input and forget gates) is not supported")

    def _cell(self, gx, h, c, r, rb, p, fns):
        n = r.shape[1]
        f, g, act_h = fns
        pre = gx + h @ r.T + rb
        pi, po, pf = (p[:n], p[n : 2 * n], p[2 * n :]) if p is not None else (0, 0, 0)
        i = f(self._clip(pre[:, :n] + pi * c))
        forget = f(self._clip(pre[:, 2 * n : 3 * n] + pf * c))
        cand = g(self._clip(pre[:, 3 * n :]))
        new_c = forget * c + i * cand
        o = f(self._clip(pre[:, n : 2 * n] + po * new_c))
        return o * act_h(new_c), new_c
