"""The operator library of the runtime: one numpy op class per ONNX op type.

Importing this package registers every op in :data:`OPS`::

    from popef.runtime.ops import create_op, TensorSpec
    conv = create_op("Conv", "conv1", {"pads": [1, 1, 1, 1]})
    conv.infer([TensorSpec((1, 3, 8, 8), "float32"), TensorSpec((4, 3, 3, 3), "float32")])
    (y,) = conv.run([x, w])

See :mod:`popef.runtime.ops.base` for the contract.
"""

# importing the family modules registers their ops
from . import (  # noqa: F401
    activation,
    attention,
    conv,
    detection,
    elementwise,
    indexing,
    linalg,
    loss,
    math,
    ml,
    normalization,
    optimizers,
    pool,
    quantize,
    quantize_int,
    recurrent,
    reduce,
    resize,
    sampling,
    shape,
    signal,
    spatial,
    stateful,
    tensor,
    text,
)
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
