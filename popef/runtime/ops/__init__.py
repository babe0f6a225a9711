"""The operator library of the runtime: one numpy op class per ONNX op type.

Importing this package registers every op in :data:`OPS`::

    from popef.runtime.ops import create_op, TensorSpec
    conv = create_op("Conv", "conv1", {"pads": [1, 1, 1, 1]})
    conv.infer([TensorSpec((1, 3, 8, 8), "float32"), TensorSpec((4, 3, 3, 3), "float32")])
    (y,) = conv.run([x, w])

See :mod:`popef.runtime.ops.base` for the contract.
"""

# importing the family modules registers their ops
from . import conv, elementwise, linalg, normalization, pool, reduce, shape  # noqa: F401
from . import activation, math  # noqa: F401
from . import indexing, quantize, resize, tensor  # noqa: F401
from . import quantize_int, text  # noqa: F401
from . import attention, loss, recurrent, sampling  # noqa: F401
from . import signal, spatial, stateful  # noqa: F401
from . import ml, optimizers  # noqa: F401
from . import detection  # noqa: F401
from .base import (
    OPS,
    REQUIRED,
    Attr,
    Op,
    TensorSpec,
    create_op,
    get_op_class,
    register,
)

__all__ = ["OPS", "REQUIRED", "Attr", "Op", "TensorSpec", "create_op", "get_op_class", "register"]
