"""A model's side of the serving contract: its :class:`Signature`.

The user anchors of the PopEF file as :class:`~popef.runtime.ModelRunner` describes them
(:class:`~popef.runtime.TensorDesc`), renamed by ``name_map.json``, and how the model batches
(micro batch, replicas, device iterations).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..escaping import shorten
from ..types import DataType
from .errors import ConfigError
from .name_map import NAME_MAP_FILENAME, anchor_keys

if TYPE_CHECKING:  # the runtime (and its ops) load only when a model does
    from ..runtime.loaded import TensorDesc

__all__ = ["ModelTensor", "Signature", "signature_of"]


@dataclass(frozen=True)
class ModelTensor:
    """One user anchor of the model, as served: the runtime's descriptor and its served names.

    Built from :class:`popef.runtime.TensorDesc` (``desc``), never re-listing it: ``dtype``,
    ``shape`` (one step's, as ModelRunner describes it) and ``per_replica`` are the runtime's.
    A config's view of the tensor (Triton's name, datatype, dims, reshape, batching) is the
    :class:`~popef.servable.plan.TensorPlan` that the serving plan builds on this one.
    """

    key: str  # the anchor's name, with a /N suffix when the name repeats
    served_name: str  # after name_map.json
    desc: TensorDesc  # the runtime's descriptor (ModelRunner.get_execute_inputs/outputs)

    @property
    def runtime_name(self) -> str:
        """The name ModelRunner takes or gives."""
        return self.desc.name

    @property
    def dtype(self) -> DataType:
        return self.desc.dtype

    @property
    def shape(self) -> tuple[int, ...]:
        return self.desc.shape

    @property
    def per_replica(self) -> bool:
        """Whether the anchor is per replica (its shape leads with the replica dimension)."""
        return self.desc.is_per_replica

    def describe(self) -> str:
        label = f"'{self.served_name}'"
        if self.served_name != self.key:
            label += f" (anchor '{self.key}')"
        return label

    def anchor_text(self) -> str:
        return f"{self.dtype.name}{list(self.shape)}"


@dataclass(frozen=True)
class Signature:
    """The served side of a model file: its inputs and outputs and how it batches."""

    inputs: tuple[ModelTensor, ...]
    outputs: tuple[ModelTensor, ...]
    replication_factor: int = 1
    device_iterations: int = 1
    micro_batch: int | None = None  # rows of one replica's step; None when it cannot batch
    per_replica: bool = False
    batch_blocker: str | None = None  # why the model has no batch dimension

    @property
    def step_rows(self) -> int:
        """Rows one step of the runtime takes: the micro batch, times the replicas."""
        assert self.micro_batch is not None
        return self.micro_batch * (self.replication_factor if self.per_replica else 1)

    @property
    def default_max_batch_size(self) -> int:
        """Graphcore's rule: micro batch × device iterations × replicas (0 if it cannot batch)."""
        if self.micro_batch is None:
            return 0
        return self.step_rows * self.device_iterations

    def batch_free_shape(self, tensor: ModelTensor) -> tuple[int, ...]:
        """The anchor's shape without its batch dimension (and replica dimension)."""
        return tensor.shape[2:] if tensor.per_replica else tensor.shape[1:]


def signature_of(runner, name_map: dict[str, str] | None = None) -> Signature:
    """The :class:`Signature` of a :class:`popef.runtime.ModelRunner`, renamed by ``name_map``."""
    descs_in = list(runner.get_execute_inputs())
    descs_out = list(runner.get_execute_outputs())
    keys = anchor_keys(d.name for d in (*descs_in, *descs_out))
    name_map = dict(name_map or {})
    unknown = [k for k in name_map if k not in keys]
    if unknown:
        raise ConfigError(
            f"{NAME_MAP_FILENAME} renames '{shorten(unknown[0])}', which is not an input or "
            f"output of the model (its anchors: {_quoted(keys)})"
        )
    tensors = []
    for key, desc in zip(keys, (*descs_in, *descs_out)):
        tensors.append(ModelTensor(key, name_map.get(key, key), desc))
    served = Counter(t.served_name for t in tensors)
    repeated = [n for n, c in served.items() if c > 1]
    if repeated:
        users = [t.key for t in tensors if t.served_name == repeated[0]]
        raise ConfigError(
            f"two anchors would both be served as '{repeated[0]}' "
            f"({_quoted(users)}); give them different names in {NAME_MAP_FILENAME}"
        )
    inputs, outputs = tuple(tensors[: len(descs_in)]), tuple(tensors[len(descs_in) :])
    metadata = runner.model.metadata
    rf = max(1, int(metadata.replication_factor))
    di = max(1, int(metadata.device_iterations))
    micro, per_replica, blocker = _micro_batch((*inputs, *outputs), rf)
    return Signature(inputs, outputs, rf, di, micro, per_replica, blocker)


def _micro_batch(tensors: Sequence[ModelTensor], rf: int) -> tuple[int | None, bool, str | None]:
    if not tensors:
        return None, False, "the model has no inputs or outputs"
    flags = {t.per_replica for t in tensors}
    if len(flags) > 1:
        mixed = next(t for t in tensors if t.per_replica != tensors[0].per_replica)
        return (
            None,
            False,
            (
                f"anchor {mixed.describe()} is {'' if mixed.per_replica else 'not '}"
                f"per replica and {tensors[0].describe()} is "
                f"{'' if tensors[0].per_replica else 'not '}per replica"
            ),
        )
    per_replica = flags.pop()
    lead = 1 if per_replica else 0
    sizes: dict[int, ModelTensor] = {}
    for t in tensors:
        if len(t.shape) <= lead:
            return (
                None,
                per_replica,
                f"anchor {t.describe()} is {t.anchor_text()}, with no batch dimension",
            )
        sizes.setdefault(t.shape[lead], t)
    if len(sizes) > 1:
        (_, ta), (_, tb) = list(sizes.items())[:2]
        return (
            None,
            per_replica,
            (
                f"anchors disagree on the batch dimension: {ta.describe()} is "
                f"{ta.anchor_text()} and {tb.describe()} is {tb.anchor_text()}"
            ),
        )
    (micro,) = sizes
    if micro < 1:
        return None, per_replica, "the batch dimension of the anchors is 0"
    return micro, per_replica, None


def _quoted(names: Iterable[str]) -> str:
    return ", ".join(f"'{n}'" for n in names)
