"""Graphcore's ``popef`` and ``model_runtime`` Python modules, as a thin layer over this library.

Scripts written for the Poplar SDK's modules run unchanged on this library's files::

    python -m popef.graphcore SCRIPT.py [ARGS...]

In Python, the two modules are :mod:`popef.graphcore.popef` and
:mod:`popef.graphcore.model_runtime`. The mapping from Graphcore's names to this library's is
in docs/graphcore-api.md.
"""

from . import model_runtime, popef
from .launcher import installed, run_script

__all__ = ["popef", "model_runtime", "installed", "run_script"]
