"""Tests of the MNIST example.

The example's folder holds a ``triton/`` model repository, which would shadow the ``triton``
package (torch's exporter imports it) if the folder stayed on ``sys.path``: load the example's
modules with :func:`load_example`, which puts ``sys.path`` back as it was.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mnist"


def load_example(module_name: str, filename: str) -> ModuleType:
    """The example's ``filename`` as a module named ``module_name``; the modules it imports
    from its folder (``mnist``) stay importable, the folder does not stay on ``sys.path``."""
    saved = list(sys.path)
    sys.path.insert(0, str(EXAMPLE))
    try:
        spec = importlib.util.spec_from_file_location(module_name, EXAMPLE / filename)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # as an import would: its importers share it
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path[:] = saved
