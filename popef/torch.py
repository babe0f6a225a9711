"""PyTorch models on the PopEF runtime, the PopTorch way (docs/import.md §4).

::

    import popef.torch
    inference_model = popef.torch.inferenceModel(model)   # a torch.nn.Module
    probabilities = inference_model(images)               # torch tensors in and out
    inference_model.save("executable.popef")

The first call traces the module with ``torch.onnx.export`` for the shapes and dtypes of its
arguments, imports the ONNX model (:func:`popef.import_onnx`) and runs it on a
:class:`popef.runtime.ModelRunner`; calls with other shapes export again. ``save`` writes the
PopEF file of the last shapes used (or of ``example_inputs`` given to :meth:`compile`).

Needs the extra ``torch`` (``pip install 'popef[torch]'``): torch and onnx. torch 2.x
defaults to the dynamo exporter, which needs the ``onnxscript`` package; this module uses the
legacy TorchScript exporter unless ``dynamo=True`` is asked for.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from typing import Any

from .errors import ExecutionError

__all__ = ["InferenceModel", "Options", "inferenceModel"]

DEFAULT_OPSET = 17  # the TorchScript exporter's
DYNAMO_DEFAULT_OPSET = 18  # the dynamo exporter's own; asking it for less runs a version converter


def _require_torch():
    try:
        import torch
    except ImportError:
        raise ExecutionError("popef.torch needs PyTorch: pip install 'popef[torch]'") from None
    return torch


class Options:
    """PopTorch-style options; what the runtime honours of them."""

    def __init__(self) -> None:
        self.executor = "cpu"
        self.opset_version: int | None = None  # None: the chosen exporter's default
        self.dynamo = False
        self.executable_name = "model"

    def useExecutor(self, name: str) -> Options:
        """The runtime executor (``cpu``, ``ipu-model`` or a plug-in)."""
        self.executor = name
        return self

    def useDynamo(self, dynamo: bool = True) -> Options:
        """Export with torch's dynamo exporter (needs ``onnxscript``) instead of TorchScript's."""
        self.dynamo = dynamo
        return self

    @property
    def export_opset(self) -> int:
        """The opset the model is exported with."""
        if self.opset_version is not None:
            return self.opset_version
        return DYNAMO_DEFAULT_OPSET if self.dynamo else DEFAULT_OPSET


class InferenceModel:
    """A ``torch.nn.Module`` compiled for the PopEF runtime; call it like the module."""

    def __init__(self, model: Any, options: Options | None = None) -> None:
        torch = _require_torch()
        if not isinstance(model, torch.nn.Module):
            raise ExecutionError(
                f"inferenceModel takes a torch.nn.Module, got {type(model).__name__}"
            )
        self.model = model
        self.options = options or Options()
        self._signature: tuple | None = None
        self._onnx: Any = None  # the exported onnx.ModelProto
        self._runner: Any = None
        self._input_names: list[str] = []
        self._output_names: list[str] = []

    # ---- PopTorch's API
    def __call__(self, *args: Any) -> Any:
        torch = _require_torch()
        self.compile(*args)
        inputs = {name: _to_numpy(torch, a) for name, a in zip(self._input_names, args)}
        outputs = self._runner.execute(inputs)
        results = [torch.from_numpy(outputs[name]) for name in self._output_names]
        return results[0] if len(results) == 1 else tuple(results)

    def compile(self, *args: Any) -> InferenceModel:
        """Export and import for the shapes and dtypes of ``args`` (done by the first call)."""
        torch = _require_torch()
        if not args or not all(isinstance(a, torch.Tensor) for a in args):
            raise ExecutionError("an inference model takes torch tensors as positional arguments")
        signature = tuple((tuple(a.shape), a.dtype) for a in args)
        if signature == self._signature:
            return self
        self._onnx = self._export(torch, args)
        from .importers.onnx import import_onnx
        from .reader import Reader
        from .runtime import ModelRunner

        stream = io.BytesIO()
        import_onnx(self._onnx, stream, executable_name=self.options.executable_name)
        stream.seek(0)
        reader = Reader()
        reader.parse_stream(stream, "<popef.torch>")
        if self._runner is not None:
            self._runner.close()
        self._runner = ModelRunner(reader, self.options.executor)
        self._signature = signature
        return self

    def save(self, path: str | os.PathLike) -> None:
        """Write the PopEF file (atomically) of the shapes the model was last run with."""
        if self._onnx is None:
            raise ExecutionError(
                "save needs the input shapes: call the model on a batch (or "
                "compile(example inputs)) first"
            )
        from .importers.onnx import import_onnx

        import_onnx(self._onnx, path, executable_name=self.options.executable_name)

    def destroy(self) -> None:
        """Release the runner (PopTorch's detach from the device)."""
        if self._runner is not None:
            self._runner.close()
            self._runner = None
            self._signature = None

    # ---- export
    def _export(self, torch: Any, args: Sequence[Any]) -> Any:
        from .importers.source import require_onnx

        onnx = require_onnx()
        self._input_names = [f"input_{i}" if len(args) > 1 else "input" for i in range(len(args))]
        was_training = self.model.training
        self.model.eval()
        buffer = io.BytesIO()
        try:
            output_names = _output_names(torch, self.model, args)
            if self.options.dynamo:
                program = torch.onnx.export(
                    self.model,
                    tuple(args),
                    dynamo=True,
                    input_names=self._input_names,
                    output_names=output_names,
                    opset_version=self.options.export_opset,
                )
                proto = program.model_proto
            else:
                # not under no_grad: there nn.MultiheadAttention takes its fused fast path,
                # which the TorchScript exporter cannot export
                torch.onnx.export(
                    self.model,
                    tuple(args),
                    buffer,
                    dynamo=False,
                    input_names=self._input_names,
                    output_names=output_names,
                    opset_version=self.options.export_opset,
                )
                proto = onnx.load_from_string(buffer.getvalue())
        except ExecutionError:
            raise
        except ImportError as exc:
            raise ExecutionError(
                f"torch.onnx.export needs a package that is not installed: "
                f"{exc} (the dynamo exporter needs onnxscript)"
            ) from None
        except Exception as exc:  # noqa: BLE001 - the exporter raises many kinds
            raise ExecutionError(
                f"torch.onnx.export failed: {type(exc).__name__}: {str(exc)[:500]}"
            ) from None
        finally:
            self.model.train(was_training)
        initializers = {t.name for t in proto.graph.initializer}
        self._input_names = [v.name for v in proto.graph.input if v.name not in initializers]
        self._output_names = [v.name for v in proto.graph.output]
        return proto


def inferenceModel(model: Any, options: Options | None = None) -> InferenceModel:
    """PopTorch's ``poptorch.inferenceModel``: ``model`` run on the PopEF runtime."""
    return InferenceModel(model, options)


def _output_names(torch: Any, model: Any, args: Sequence[Any]) -> list[str] | None:
    """``output`` (or ``output_0``, ``output_1`` ...) for a module returning a tensor or a flat
    tuple of them, so that anchors are not named by the exporter's numbering; None otherwise."""
    with torch.no_grad():
        result = model(*args)
    if isinstance(result, torch.Tensor):
        return ["output"]
    if isinstance(result, (tuple, list)) and all(isinstance(r, torch.Tensor) for r in result):
        return [f"output_{i}" for i in range(len(result))]
    return None


def _to_numpy(torch: Any, tensor: Any):
    return tensor.detach().cpu().contiguous().numpy()
