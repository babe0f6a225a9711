"""Importers: models from other frameworks into PopEF files.

- :func:`popef.importers.onnx.import_onnx`: an ONNX model (a ``.onnx`` file or an
  ``onnx.ModelProto``) into a PopEF file that the runtime runs (docs/import.md).
- :mod:`popef.torch`: PyTorch modules, through ``torch.onnx.export`` and this importer.

``onnx`` is an optional dependency (``pip install 'popef[onnx]'``), imported only when an import
runs, so that ``import popef`` never needs it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["import_onnx"]


def import_onnx(*args: Any, **kwargs: Any):
    """See :func:`popef.importers.onnx.import_onnx` (imported lazily)."""
    from .onnx import import_onnx as _import_onnx

    return _import_onnx(*args, **kwargs)
