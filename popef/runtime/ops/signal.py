"""Signal processing: DFT (opsets 17 to 20), STFT, the Hann, Hamming and Blackman windows and
MelWeightMatrix (opset 17).

Complex tensors are held as real ones with a last axis of 2 (real, imaginary); a real signal
may also come with a last axis of 1. The transforms run with ``numpy.fft`` in single precision
(double for float64 inputs) and the result takes the input's dtype.

The window and mel ops build a constant from scalar inputs that fix the output's shape: those
inputs must be constants at load, so a model's windows are folded at import.

DFT's ``axis`` is an attribute before opset 20 (default 1) and an input since (default -2). A
node that gives neither is accepted when both defaults name the same axis (a rank-3 input) and
refused otherwise, since which one applies depends on the opset.

Batch rules: DFT keeps rows independent unless it transforms along the leading axis; STFT
always does (its first axis is the batch); the windows and MelWeightMatrix read no data.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._static import INDEX_DTYPES, norm_axis, optional_input, static_values
from .base import FLOAT_DTYPES, Attr, Op, TensorSpec, fmt_shape, register
from .elementwise import ONNX_DTYPES

__all__ = ["DFT", "STFT", "BlackmanWindow", "HammingWindow", "HannWindow", "MelWeightMatrix"]

_I64 = frozenset({np.dtype(np.int64)})


def _static(
    op: Op,
    inputs: Sequence[TensorSpec | None],
    index: int,
    name: str,
    dtypes: frozenset,
    arrays: Sequence[np.ndarray | None] | None,
) -> np.ndarray | None:
    """Input ``index``'s values: the array handed to ``run`` (``arrays``), else its load-time
    constant; None when omitted."""
    if arrays is not None:
        value = optional_input(arrays, index)
        return None if value is None else np.asarray(value)
    return static_values(op, inputs, index, name, dtypes, rank=None)


def _scalar(
    op: Op,
    inputs: Sequence[TensorSpec | None],
    index: int,
    name: str,
    dtypes: frozenset = INDEX_DTYPES,
    arrays: Sequence[np.ndarray | None] | None = None,
) -> int | None:
    """The value of a scalar (or one-element) integer input; None when omitted."""
    values = _static(op, inputs, index, name, dtypes, arrays)
    if values is None:
        return None
    if values.size != 1:
        raise op.error(
            f"input {index} ('{name}') must hold one value, got {fmt_shape(values.shape)}"
        )
    return int(values.reshape(()))


def _specs(arrays: Sequence[np.ndarray | None]) -> list[TensorSpec | None]:
    return [None if a is None else TensorSpec.of(a) for a in arrays]


def _complex(x: np.ndarray) -> np.ndarray:
    """A ``[..., 1]`` real or ``[..., 2]`` (real, imaginary) tensor as complex ``[...]``: in
    single precision unless ``x`` is float64 (as onnx's reference computes)."""
    real = np.float64 if x.dtype == np.float64 else np.float32
    if x.shape[-1] == 1:
        return x[..., 0].astype(real)
    return x[..., 0].astype(real) + 1j * x[..., 1].astype(real)


def _check_signal(op: Op, spec: TensorSpec, what: str) -> None:
    op._check_dtype(spec, FLOAT_DTYPES, what)
    if spec.rank < 2 or spec.shape[-1] not in (1, 2):
        raise op.error(
            f"{what} must end with an axis of 1 (real) or 2 (real, imaginary), got "
            f"{fmt_shape(spec.shape)}"
        )


@register
class DFT(Op):
    """DFT(input[, dft_length, axis]): the discrete Fourier transform along one axis, forward or
    inverse, full or one-sided (``onesided`` with ``inverse`` is the inverse of a real
    transform: its output is real, ``[..., dft_length, 1]``)."""

    op_type = "DFT"
    attributes = {"inverse": Attr("int", 0), "onesided": Attr("int", 0), "axis": Attr("int", None)}
    num_inputs = (1, 3)
    static_inputs = frozenset({1, 2})

    def _setup(self) -> None:
        for name in ("inverse", "onesided"):
            if self.attrs[name] not in (0, 1):
                raise self.error(f"attribute '{name}' must be 0 or 1, got {self.attrs[name]}")

    def _plan(
        self, inputs: Sequence[TensorSpec | None], arrays: Sequence[np.ndarray | None] | None = None
    ) -> tuple[int, int]:
        """(axis as a non-negative index, transform length)."""
        x = inputs[0]
        assert x is not None
        axis_input = _scalar(self, inputs, 2, "axis", _I64, arrays)
        if axis_input is not None and self.attrs["axis"] is not None:
            raise self.error("'axis' is given both as an attribute and as input 2")
        axis = axis_input if axis_input is not None else self.attrs["axis"]
        if axis is None:
            if x.rank != 3:
                raise self.error(
                    f"input {fmt_shape(x.shape)} needs an explicit 'axis': the "
                    "default is 1 before opset 20 and -2 since"
                )
            axis = 1
        # the last axis holds (real, imaginary): a negative axis counts from the one before it
        axis = norm_axis(self, axis, x.rank)
        if axis == x.rank - 1:
            raise self.error(
                f"axis {axis} is the (real, imaginary) axis; expected 0 to "
                f"{x.rank - 2} or -{x.rank} to -2"
            )
        length = _scalar(self, inputs, 1, "dft_length", arrays=arrays)
        if length is None:
            n = x.shape[axis]
            length = 2 * (n - 1) if self.attrs["inverse"] and self.attrs["onesided"] else n
        if length < 1:
            raise self.error(f"dft_length must be positive, got {length}")
        return axis, length

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        x = inputs[0]
        assert x is not None
        _check_signal(self, x, "input 0")
        axis, length = self._plan(inputs)
        shape = list(x.shape)
        if self.attrs["inverse"] and self.attrs["onesided"]:
            shape[axis], shape[-1] = length, 1
        else:
            shape[axis] = length // 2 + 1 if self.attrs["onesided"] else length
            shape[-1] = 2
        return [TensorSpec(tuple(shape), x.dtype)]

    def keeps_rows(self, batched: Sequence[bool], specs: Sequence[TensorSpec | None]) -> bool:
        return self._plan(specs)[0] != 0

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x = inputs[0]
        axis, length = self._plan(_specs(inputs), inputs)
        signal = _complex(x)
        if self.attrs["inverse"] and self.attrs["onesided"]:
            real = np.fft.irfft(signal, n=length, axis=axis)
            return [real[..., None].astype(x.dtype)]
        transform = np.fft.ifft if self.attrs["inverse"] else np.fft.fft
        y = transform(signal, n=length, axis=axis)
        if self.attrs["onesided"]:
            y = np.take(y, np.arange(length // 2 + 1), axis=axis)
        return [np.stack((y.real, y.imag), axis=-1).astype(x.dtype)]


@register
class STFT(Op):
    """STFT(signal, frame_step[, window, frame_length]): the Fourier transform of each frame of
    ``frame_length`` samples, ``frame_step`` apart, weighted by ``window``;
    ``[batch, frames, bins, 2]``."""

    op_type = "STFT"
    attributes = {"onesided": Attr("int", 1)}
    num_inputs = (2, 4)
    static_inputs = frozenset({1, 3})

    def _setup(self) -> None:
        if self.attrs["onesided"] not in (0, 1):
            raise self.error(f"attribute 'onesided' must be 0 or 1, got {self.attrs['onesided']}")

    def _plan(
        self, inputs: Sequence[TensorSpec | None], arrays: Sequence[np.ndarray | None] | None = None
    ) -> tuple[int, int, int]:
        """(frame step, frame length, number of frames)."""
        signal = inputs[0]
        window = optional_input(inputs, 2)
        assert signal is not None
        step = _scalar(self, inputs, 1, "frame_step", arrays=arrays)
        assert step is not None
        length = _scalar(self, inputs, 3, "frame_length", arrays=arrays)
        if window is not None:
            if window.rank != 1:
                raise self.error(f"window must be 1-D, got {fmt_shape(window.shape)}")
            if length is not None and length != window.shape[0]:
                raise self.error(
                    f"frame_length {length} differs from the window's length {window.shape[0]}"
                )
            length = window.shape[0]
        if length is None:
            raise self.error("needs a window or a frame_length")
        if step < 1 or not 1 <= length <= signal.shape[1]:
            raise self.error(
                f"frame_step must be positive and frame_length 1 to the signal "
                f"length {signal.shape[1]}, got {step} and {length}"
            )
        return step, length, 1 + (signal.shape[1] - length) // step

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        signal = inputs[0]
        window = optional_input(inputs, 2)
        assert signal is not None
        _check_signal(self, signal, "input 0 (signal)")
        if signal.rank != 3:
            raise self.error(
                f"signal must be [batch, length, 1 or 2], got {fmt_shape(signal.shape)}"
            )
        if window is not None:
            self._check_same_dtype([signal, None, window])
        if self.attrs["onesided"] and signal.shape[2] == 2:
            raise self.error("a one-sided transform needs a real signal ([batch, length, 1])")
        _, length, frames = self._plan(inputs)
        bins = length // 2 + 1 if self.attrs["onesided"] else length
        return [TensorSpec((signal.shape[0], frames, bins, 2), signal.dtype)]

    def keeps_rows(self, batched: Sequence[bool], specs: Sequence[TensorSpec | None]) -> bool:
        return not (len(batched) > 2 and batched[2])  # a batched window is not per sample

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x = inputs[0]
        window = optional_input(inputs, 2)
        step, length, frames = self._plan(_specs(inputs), inputs)
        signal = _complex(x)  # [batch, length]
        starts = np.arange(frames) * step
        framed = signal[:, starts[:, None] + np.arange(length)]  # [batch, frames, length]
        if window is not None:
            framed = framed * window.astype(framed.real.dtype)
        y = np.fft.fft(framed, axis=-1)
        if self.attrs["onesided"]:
            y = y[..., : length // 2 + 1]
        return [np.stack((y.real, y.imag), axis=-1).astype(x.dtype)]


def _output_dtype(op: Op) -> np.dtype:
    code = op.attrs["output_datatype"]
    dtype = ONNX_DTYPES.get(code)
    if dtype is None or dtype == np.dtype(np.bool_):
        raise op.error(
            f"attribute 'output_datatype' {code} is not a numeric ONNX data type PopEF holds"
        )
    return dtype


class _Window(Op):
    """What the windows share: ``size`` (a constant scalar) -> a 1-D window of that length,
    periodic (the default) or symmetric."""

    attributes = {"periodic": Attr("int", 1), "output_datatype": Attr("int", 1)}
    static_inputs = frozenset({0})
    #: the window's cosine terms: w[n] = sum_k coefficients[k] * cos(2πkn / N)
    coefficients: tuple[float, ...] = ()

    def _setup(self) -> None:
        if self.attrs["periodic"] not in (0, 1):
            raise self.error(f"attribute 'periodic' must be 0 or 1, got {self.attrs['periodic']}")
        self.dtype = _output_dtype(self)

    def _size(
        self, inputs: Sequence[TensorSpec | None], arrays: Sequence[np.ndarray | None] | None = None
    ) -> int:
        size = _scalar(self, inputs, 0, "size", arrays=arrays)
        assert size is not None
        if size < 0:
            raise self.error(f"size must not be negative, got {size}")
        return size

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        return [TensorSpec((self._size(inputs),), self.dtype)]

    def keeps_rows(self, batched: Sequence[bool], specs: Sequence[TensorSpec | None]) -> bool:
        return False  # the size is never a batch of rows

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        size = self._size(_specs(inputs), inputs)
        n = np.arange(size, dtype=np.float64)
        period = size if self.attrs["periodic"] else size - 1
        w = np.zeros(size)
        for k, c in enumerate(self.coefficients):
            # a symmetric window of one sample divides by zero: its single value is sum(c)
            w += c * (np.cos(2 * np.pi * k * n / period) if period else 1.0)
        return [w.astype(self.dtype)]


@register
class HannWindow(_Window):
    """HannWindow(size): ``0.5 - 0.5 cos(2πn/N)``."""

    op_type = "HannWindow"
    coefficients = (0.5, -0.5)


@register
class HammingWindow(_Window):
    """HammingWindow(size): ``25/46 - 21/46 cos(2πn/N)``."""

    op_type = "HammingWindow"
    coefficients = (25 / 46, -21 / 46)


@register
class BlackmanWindow(_Window):
    """BlackmanWindow(size): ``0.42 - 0.5 cos(2πn/N) + 0.08 cos(4πn/N)``."""

    op_type = "BlackmanWindow"
    coefficients = (0.42, -0.5, 0.08)


@register
class MelWeightMatrix(Op):
    """MelWeightMatrix(num_mel_bins, dft_length, sample_rate, lower_edge_hertz,
    upper_edge_hertz): ``[dft_length // 2 + 1, num_mel_bins]`` triangular filters evenly spaced
    on the mel scale, as onnx computes them (frequencies in the dtype of the edges)."""

    op_type = "MelWeightMatrix"
    attributes = {"output_datatype": Attr("int", 1)}
    num_inputs = (5, 5)
    static_inputs = frozenset({0, 1, 2, 3, 4})

    def _setup(self) -> None:
        self.dtype = _output_dtype(self)

    def _plan(
        self, inputs: Sequence[TensorSpec | None], arrays: Sequence[np.ndarray | None] | None = None
    ) -> tuple[int, int, int]:
        bins = _scalar(self, inputs, 0, "num_mel_bins", arrays=arrays)
        length = _scalar(self, inputs, 1, "dft_length", arrays=arrays)
        rate = _scalar(self, inputs, 2, "sample_rate", arrays=arrays)
        assert bins is not None and length is not None and rate is not None
        if bins < 1 or length < 1 or rate < 1:
            raise self.error(
                f"num_mel_bins, dft_length and sample_rate must be positive, got "
                f"{bins}, {length} and {rate}"
            )
        return bins, length, rate

    def _edges(
        self, inputs: Sequence[TensorSpec | None], arrays: Sequence[np.ndarray | None] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        low = _static(self, inputs, 3, "lower_edge_hertz", FLOAT_DTYPES, arrays)
        high = _static(self, inputs, 4, "upper_edge_hertz", FLOAT_DTYPES, arrays)
        assert low is not None and high is not None
        if low.size != 1 or high.size != 1:
            raise self.error("lower_edge_hertz and upper_edge_hertz must hold one value each")
        low, high = low.reshape(()), high.reshape(())
        if not 0 <= low < high:
            raise self.error(
                f"expected 0 <= lower_edge_hertz < upper_edge_hertz, got "
                f"{float(low)} and {float(high)}"
            )
        return low, high

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        bins, length, _ = self._plan(inputs)
        self._edges(inputs)
        return [TensorSpec((length // 2 + 1, bins), self.dtype)]

    def keeps_rows(self, batched: Sequence[bool], specs: Sequence[TensorSpec | None]) -> bool:
        return False

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        bins, length, rate = self._plan(_specs(inputs), inputs)
        low, high = self._edges(_specs(inputs), inputs)
        spectrogram_bins = length // 2 + 1
        points = np.arange(bins + 2)
        low_mel = 2595 * np.log1p(low / 700) / np.log(10)
        high_mel = 2595 * np.log1p(high / 700) / np.log(10)
        mel = points * ((high_mel - low_mel) / points.shape[0]) + low_mel
        hertz = 700 * np.expm1(mel / 2595 * np.log(10))
        edges = (((length + 1) * hertz) // rate).astype(np.int64)
        if edges.min() < 0 or edges.max() >= spectrogram_bins:
            raise self.error(
                f"the filters' edges fall outside the {spectrogram_bins} "
                "spectrogram bins (upper_edge_hertz above the Nyquist frequency?)"
            )
        out = np.zeros((spectrogram_bins, bins))
        j = np.arange(spectrogram_bins)
        for i in range(bins):
            left, center, right = (int(e) for e in edges[i : i + 3])
            if center == left:
                out[center, i] = 1
            else:
                rise = (j >= left) & (j <= center)
                out[rise, i] = (j[rise] - left) / (center - left)
            if right > center:
                fall = (j >= center) & (j < right)
                out[fall, i] = (right - j[fall]) / (right - center)
        return [out.astype(self.dtype)]
