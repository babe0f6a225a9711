"""What a model may cost: the runtime's limits, refused at load or per request (docs/runtime.md,
"Limits")."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ExecutionError
from .program import MAX_GRAPH_STEPS

__all__ = [
    "MAIN_STEP_LIMIT",
    "MAX_GRAPH_STEPS",
    "MAX_REQUEST_BYTES",
    "MAX_TENSOR_BYTES",
    "RuntimeLimits",
]

# Refuse requests of more steps than this in one call: the sanity bound of a request.
MAIN_STEP_LIMIT = 1 << 31

GiB = 1 << 30
# The largest tensor a model may declare (anchors) or compute (every node output), per
# replica, checked by shape inference at load (docs/runtime.md, "Limits").
MAX_TENSOR_BYTES = 16 * GiB
# The most memory one request may need, by the estimate made at load: steps × replicas × the
# peak of one replica's live step tensors (docs/runtime.md, "Limits").
MAX_REQUEST_BYTES = 16 * GiB


@dataclass(frozen=True)
class RuntimeLimits:
    """What a model may cost: refused at load (steps, tensor sizes) or per request (memory).

    ``max_graph_steps`` bounds the steps (nodes and copies) of a graph program, checked before
    decoding them; ``max_tensor_bytes`` bounds every tensor shape inference finds;
    ``max_request_bytes`` bounds the estimated memory of one request (see
    :attr:`popef.runtime.loaded.LoadedModel.request_step_bytes`).
    """

    max_graph_steps: int = MAX_GRAPH_STEPS
    max_tensor_bytes: int = MAX_TENSOR_BYTES
    max_request_bytes: int = MAX_REQUEST_BYTES

    def __post_init__(self) -> None:
        for name in ("max_graph_steps", "max_tensor_bytes", "max_request_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ExecutionError(
                    f"runtime limit '{name}' must be a positive int, got {value!r}"
                )
