"""The runtime: interprets a PopEF model's graph program with numpy kernels.

- :class:`GraphBuilder` authors a model and saves it as a PopEF file;
- :class:`ModelRunner` loads a model once and runs it (Model Runtime's high-level API);
- executors run the graph program: :func:`list_executors`, :func:`get_executor`, plug-ins
  through the entry-point group ``popef.executors`` (see docs/runtime.md).
"""

from .builder import GraphBuilder
from .executors import Executor, get_executor, list_executors, register_executor
from .limits import RuntimeLimits
from .runner import ModelRunner, OutputFutures, TensorDesc

__all__ = [
    "GraphBuilder",
    "ModelRunner",
    "RuntimeLimits",
    "TensorDesc",
    "OutputFutures",
    "Executor",
    "get_executor",
    "list_executors",
    "register_executor",
]
