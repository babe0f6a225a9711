"""The serving plan: a completed config checked against the model's signature.

:func:`build_plan` checks a config against a :class:`~popef.servable.signature.Signature`
and gives the :class:`ServingPlan` that requests are validated (:mod:`popef.servable.validation`)
and batched (:mod:`popef.servable.batches`) with.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..escaping import shorten
from . import datatypes
from .autocomplete import check_backend, model_dims, triton_type
from .config_files import model_config_pb2
from .datatypes import TritonType
from .errors import ConfigError
from .folder_files import inside, read_model_file
from .parameters import MAX_DELAY_NS, ModelParameters
from .signature import ModelTensor, Signature

__all__ = [
    "MAX_INSTANCES",
    "MAX_LABEL_FILE_BYTES",
    "ServingPlan",
    "TensorPlan",
    "build_plan",
]

#: the largest label_filename read
MAX_LABEL_FILE_BYTES = 1 << 20
#: the most model instances (runner threads) that the instance groups of one model may ask for
MAX_INSTANCES = 64


@dataclass(frozen=True)
class TensorPlan:
    """One served tensor: the model's :class:`~popef.servable.signature.ModelTensor` as the
    config serves it (Triton's datatype, dims, reshape, batching), and how a request's array
    becomes the runtime's and back.

    Built on ``tensor`` rather than re-listing it: ``name`` (the served name),
    ``runtime_name``, ``key`` and ``per_replica`` are the model tensor's.
    """

    tensor: ModelTensor
    ttype: TritonType
    dims: tuple[int, ...]  # as the config states them (may hold -1), without the batch dimension
    shape: tuple[int, ...]  # the concrete served shape without the batch dimension
    model_shape: tuple[int, ...]  # the anchor's shape without batch (and replica) dimension
    labels: tuple[str, ...] = ()  # label_filename's lines (outputs)

    @property
    def name(self) -> str:
        """The served name (the config's, after name_map.json)."""
        return self.tensor.served_name

    @property
    def runtime_name(self) -> str:
        return self.tensor.runtime_name

    @property
    def key(self) -> str:
        return self.tensor.key

    @property
    def per_replica(self) -> bool:
        return self.tensor.per_replica

    @property
    def metadata_shape(self) -> list[int]:
        return list(self.dims)


@dataclass(frozen=True)
class ServingPlan:
    """A checked config: what requests may carry and how they run."""

    config: Any  # the completed ModelConfig
    inputs: tuple[TensorPlan, ...]
    outputs: tuple[TensorPlan, ...]
    max_batch_size: int
    step_rows: int  # rows one runtime step takes (batches are padded to a multiple)
    micro_batch: int
    replication_factor: int
    parameters: ModelParameters

    @property
    def batching(self) -> bool:
        return self.max_batch_size > 0

    def input(self, name: str) -> TensorPlan | None:
        return self._inputs.get(name)

    def output(self, name: str) -> TensorPlan | None:
        return self._outputs.get(name)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_inputs", {t.name: t for t in self.inputs})
        object.__setattr__(self, "_outputs", {t.name: t for t in self.outputs})


def build_plan(config, signature: Signature, model_dir: Path | None = None) -> ServingPlan:
    """Check ``config`` against ``signature``; :class:`ConfigError` says what does not match."""
    mc = model_config_pb2()
    check_backend(config)
    parameters = ModelParameters.of(config)
    mbs = config.max_batch_size
    if mbs < 0:
        raise ConfigError(f"max_batch_size must be >= 0, got {mbs}")
    if mbs > 0 and signature.micro_batch is None:
        raise ConfigError(
            f"max_batch_size {mbs} needs a batch dimension, but "
            f"{signature.batch_blocker}; use max_batch_size: 0"
        )
    scheduling = config.WhichOneof("scheduling_choice")
    if scheduling in ("sequence_batching", "ensemble_scheduling"):
        raise ConfigError(f"{scheduling} is not supported; use dynamic_batching or none")
    if scheduling == "dynamic_batching":
        if mbs == 0:
            raise ConfigError("dynamic_batching needs max_batch_size > 0")
        for size in config.dynamic_batching.preferred_batch_size:
            if not 0 < size <= mbs:
                raise ConfigError(
                    f"preferred_batch_size {size} must be in [1, max_batch_size {mbs}]"
                )
        if config.dynamic_batching.priority_levels > 1:
            raise ConfigError("dynamic_batching priority levels are not supported")
        queue_delay_us = config.dynamic_batching.max_queue_delay_microseconds
        if queue_delay_us * 1000 > MAX_DELAY_NS:
            raise ConfigError(
                f"dynamic_batching max_queue_delay_microseconds must be at most "
                f"{MAX_DELAY_NS // 1000} (one day), got {queue_delay_us}"
            )
    if config.HasField("model_transaction_policy") and config.model_transaction_policy.decoupled:
        raise ConfigError("decoupled models are not supported")
    for group in config.instance_group:
        if group.kind == mc.ModelInstanceGroup.KIND_GPU:
            raise ConfigError(
                f"instance group '{shorten(group.name)}' is KIND_GPU, but this "
                "server has no GPUs; use KIND_CPU"
            )
        if group.count < 0:
            raise ConfigError(f"instance group '{shorten(group.name)}' has count {group.count}")
    instances = sum(max(1, g.count) for g in config.instance_group)
    if instances > MAX_INSTANCES:
        raise ConfigError(
            f"instance_group asks for {instances} instances, over the limit of "
            f"{MAX_INSTANCES} per model"
        )
    if config.batch_input or config.batch_output:
        raise ConfigError("batch_input and batch_output are not supported")

    batching = mbs > 0
    inputs = _plan_tensors("input", config.input, signature.inputs, signature, batching, model_dir)
    outputs = _plan_tensors(
        "output", config.output, signature.outputs, signature, batching, model_dir
    )
    listed = {t.name for t in inputs}
    missing = [t for t in signature.inputs if t.served_name not in listed]
    if missing:
        raise ConfigError(f"the model's input {missing[0].describe()} is missing from the config")
    if not outputs:
        raise ConfigError("the config lists no output")
    step_rows = signature.step_rows if batching else 1
    return ServingPlan(
        config,
        tuple(inputs),
        tuple(outputs),
        mbs,
        step_rows,
        signature.micro_batch or 1,
        signature.replication_factor,
        parameters,
    )


def _plan_tensors(
    kind: str,
    entries,
    tensors: Sequence[ModelTensor],
    signature: Signature,
    batching: bool,
    model_dir: Path | None,
) -> list[TensorPlan]:
    mc = model_config_pb2()
    by_name = {t.served_name: t for t in tensors}
    plans = []
    seen = set()
    for entry in entries:
        if entry.name in seen:
            raise ConfigError(f"{kind} '{shorten(entry.name)}' is listed twice")
        seen.add(entry.name)
        tensor = by_name.get(entry.name)
        if tensor is None:
            other = f"; its {kind}s are {_described(tensors)}" if tensors else ""
            raise ConfigError(
                f"{kind} '{shorten(entry.name)}' is not an {kind} of the model{other}"
            )
        ttype = triton_type(tensor)
        stated = datatypes.by_config_enum(entry.data_type)
        if stated is not ttype and entry.data_type == mc.TYPE_STRING:
            raise ConfigError(
                f"{kind} '{entry.name}' has data_type TYPE_STRING (BYTES), but PopEF has no "
                f"string type: the model's anchor '{tensor.key}' is {tensor.dtype.name} "
                f"({ttype.config_name})"
            )
        if stated is not ttype:
            raise ConfigError(
                f"{kind} '{entry.name}' has data_type "
                f"{datatypes.config_type_name(entry.data_type)} but the model's anchor "
                f"'{tensor.key}' is {tensor.dtype.name} ({ttype.config_name})"
            )
        model_shape = model_dims(signature, tensor, batching)
        dims = tuple(int(d) for d in entry.dims)
        shape = _check_dims(kind, entry, dims, tensor, model_shape, batching)
        labels: tuple[str, ...] = ()
        if kind == "output" and entry.label_filename and model_dir is not None:
            labels = _read_labels(model_dir, entry.label_filename)
        plans.append(TensorPlan(tensor, ttype, dims, shape, model_shape, labels))
    return plans


def _check_dims(
    kind: str,
    entry,
    dims: tuple[int, ...],
    tensor: ModelTensor,
    model_shape: tuple[int, ...],
    batching: bool,
) -> tuple[int, ...]:
    why = (
        " (with max_batch_size > 0 the dims leave out the batch dimension)"
        if batching
        else " (with max_batch_size 0 the dims are the anchor's whole shape)"
    )
    if not dims:
        raise ConfigError(
            f"{kind} '{entry.name}' has empty dims; use dims: [ 1 ] with "
            "reshape: { shape: [ ] } for a scalar"
        )
    if any(d < -1 or d == 0 for d in dims):
        raise ConfigError(
            f"{kind} '{entry.name}' has dims {list(dims)}: each must be positive or -1"
        )
    if entry.HasField("reshape"):
        target = tuple(int(d) for d in entry.reshape.shape)
        if target != model_shape:
            raise ConfigError(
                f"{kind} '{entry.name}' reshapes to {list(target)} but the model's "
                f"anchor '{tensor.key}' is {tensor.anchor_text()}: expected "
                f"reshape {list(model_shape)}{why}"
            )
        if -1 in dims or math.prod(dims) != math.prod(target):
            raise ConfigError(
                f"{kind} '{entry.name}' has dims {list(dims)}, which cannot be "
                f"reshaped to {list(target)}"
            )
        return dims
    if len(dims) != len(model_shape) or any(d != -1 and d != m for d, m in zip(dims, model_shape)):
        raise ConfigError(
            f"{kind} '{entry.name}' has dims {list(dims)} but the model's anchor "
            f"'{tensor.key}' is {tensor.anchor_text()}: expected dims "
            f"{list(model_shape)}{why}"
        )
    return model_shape


def _read_labels(model_dir: Path, label: str) -> tuple[str, ...]:
    what = f"label_filename '{shorten(label)}'"
    path = inside(model_dir, label, what)
    text = read_model_file(path, what, MAX_LABEL_FILE_BYTES)
    if text is None:
        raise ConfigError(f"{what} does not exist in the model folder '{model_dir.name}'")
    return tuple(line.rstrip("\r\n") for line in text.splitlines())


def _described(tensors: Iterable[ModelTensor]) -> str:
    return ", ".join(t.describe() for t in tensors)
