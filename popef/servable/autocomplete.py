"""Triton's auto-complete for PopEF models: a config filled in from the model file.

:func:`complete_config` fills in what a config leaves out; :func:`generate_config` writes a
whole one (``popef triton-config``). Both take the model's side from its
:class:`~popef.servable.signature.Signature`.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..escaping import shorten
from . import datatypes
from .config_files import CONFIG_FILENAME, model_config_pb2
from .datatypes import TritonType
from .errors import ConfigError
from .signature import ModelTensor, Signature

__all__ = [
    "SUPPORTED_BACKENDS",
    "check_backend",
    "complete_config",
    "generate_config",
    "model_dims",
    "triton_type",
]

#: backend (or platform) names served; "poplar" is Graphcore's Triton backend
SUPPORTED_BACKENDS = ("poplar", "popef")


def complete_config(
    config,
    name: str,
    signature: Signature,
    *,
    states_max_batch_size: bool,
    auto_complete: bool = True,
    default_max_batch_size: int | None = None,
    model_filename: str | None = None,
):
    """The config with what it leaves out filled from the model file (Triton's auto-complete).

    ``config`` may be ``None`` (no config.pbtxt). Filled when absent: the name, the backend,
    ``max_batch_size`` (Graphcore's rule, or ``default_max_batch_size``; 0 when the model has no
    batch dimension), inputs and outputs, a tensor's ``data_type`` and ``dims``, and
    ``dynamic_batching`` when ``max_batch_size`` was filled in and is above 1. Instance groups,
    the version policy and the model file name are always defaulted. With ``auto_complete``
    false, a config that leaves out a tensor, a data type or dims is an error instead.
    """
    mc = model_config_pb2()
    if config is None:
        if not auto_complete:
            raise ConfigError(
                f"no {CONFIG_FILENAME} (auto-complete is disabled, so the model "
                "needs a complete config)"
            )
        config = mc.ModelConfig()
        states_max_batch_size = False
    else:
        copy = mc.ModelConfig()
        copy.CopyFrom(config)
        config = copy

    if not config.name:
        config.name = name
    elif config.name != name:
        raise ConfigError(
            f"{CONFIG_FILENAME} names the model '{shorten(config.name)}' but its "
            f"directory is '{name}'"
        )
    if not config.backend and not config.platform:
        config.backend = SUPPORTED_BACKENDS[0]
    check_backend(config)

    filled_batch = False
    if not states_max_batch_size and config.max_batch_size == 0:
        if auto_complete and not config.input and not config.output:
            if signature.micro_batch is not None:
                config.max_batch_size = (
                    default_max_batch_size
                    if default_max_batch_size is not None
                    else signature.default_max_batch_size
                )
                filled_batch = True

    batching = config.max_batch_size > 0
    for kind, tensors, entries in (
        ("input", signature.inputs, config.input),
        ("output", signature.outputs, config.output),
    ):
        listed = {e.name for e in entries}
        by_name = {t.served_name: t for t in tensors}
        for entry in entries:
            tensor = by_name.get(entry.name)
            if tensor is None:
                continue  # build_plan reports it
            if entry.data_type == mc.TYPE_INVALID:
                if not auto_complete:
                    raise ConfigError(
                        f"{kind} '{entry.name}' has no data_type (auto-complete is disabled)"
                    )
                ttype = triton_type(tensor)
                entry.data_type = datatypes.config_enum(ttype)
            if not entry.dims and not entry.HasField("reshape"):
                if not auto_complete:
                    raise ConfigError(
                        f"{kind} '{entry.name}' has no dims (auto-complete is disabled)"
                    )
                _set_dims(entry, model_dims(signature, tensor, batching))
        if kind == "output" and entries:
            continue  # a config may serve a subset of the outputs
        for tensor in tensors:
            if tensor.served_name in listed:
                continue
            if not auto_complete:
                raise ConfigError(
                    f"the model's {kind} {tensor.describe()} is missing from "
                    f"{CONFIG_FILENAME} (auto-complete is disabled)"
                )
            entry = entries.add()
            entry.name = tensor.served_name
            entry.data_type = datatypes.config_enum(triton_type(tensor))
            _set_dims(entry, model_dims(signature, tensor, batching))

    if (
        filled_batch
        and config.max_batch_size > 1
        and config.WhichOneof("scheduling_choice") is None
    ):
        config.dynamic_batching.SetInParent()

    if not config.instance_group:
        config.instance_group.add()
    for i, group in enumerate(config.instance_group):
        if not group.name:
            group.name = f"{config.name}_{i}"
        if group.kind == mc.ModelInstanceGroup.KIND_AUTO:
            group.kind = mc.ModelInstanceGroup.KIND_CPU
        if group.count == 0:
            group.count = 1
    if not config.HasField("version_policy"):
        config.version_policy.latest.num_versions = 1
    if not config.default_model_filename and model_filename:
        config.default_model_filename = model_filename
    return config


def triton_type(tensor: ModelTensor) -> TritonType:
    """The Triton data type of a model tensor; :class:`ConfigError` when PopEF's has none."""
    ttype = datatypes.from_popef(tensor.dtype)
    if ttype is None:
        raise ConfigError(
            f"anchor {tensor.describe()} is {tensor.dtype.name}, which has no Triton data type"
        )
    return ttype


def model_dims(signature: Signature, tensor: ModelTensor, batching: bool) -> tuple[int, ...]:
    """A tensor's dims in a config: without the batch dimension when the model batches."""
    return signature.batch_free_shape(tensor) if batching else tensor.shape


def _set_dims(entry, dims: Sequence[int]) -> None:
    del entry.dims[:]
    if dims:
        entry.dims.extend(dims)
    else:  # Triton forbids empty dims: [1] reshaped to a scalar
        entry.dims.append(1)
        entry.reshape.SetInParent()


def check_backend(config) -> None:
    """The config is one this server runs: no ensemble, backend (or platform) "poplar"."""
    if (
        config.platform == "ensemble"
        or config.WhichOneof("scheduling_choice") == "ensemble_scheduling"
    ):
        raise ConfigError(
            "ensembles are not supported: this server runs PopEF models one at "
            "a time; chain the models in the client"
        )
    for label, value in (("backend", config.backend), ("platform", config.platform)):
        if value and value not in SUPPORTED_BACKENDS:
            raise ConfigError(
                f"{label} '{shorten(value)}' is not served here: this server "
                'runs PopEF models, set backend: "poplar"'
            )


# -- generating a config ---------------------------------------------------------------------------


def generate_config(
    name: str,
    signature: Signature,
    max_batch_size: int | None = None,
    *,
    dynamic_batching: bool | None = None,
    extra_parameters: bool = True,
):
    """A complete config for a model file: what ``popef triton-config`` prints.

    ``max_batch_size`` defaults to Graphcore's rule (micro batch × device iterations ×
    replicas), or 0 when the model has no batch dimension.
    """
    mc = model_config_pb2()
    if max_batch_size is None:
        max_batch_size = signature.default_max_batch_size
    if max_batch_size < 0:
        raise ConfigError(f"max_batch_size must be >= 0, got {max_batch_size}")
    if max_batch_size > 0 and signature.micro_batch is None:
        raise ConfigError(
            f"max_batch_size {max_batch_size} needs a batch dimension, but "
            f"{signature.batch_blocker}"
        )
    config = mc.ModelConfig()
    config.name = name
    config.backend = SUPPORTED_BACKENDS[0]
    config.max_batch_size = max_batch_size
    batching = max_batch_size > 0
    for tensors, entries in ((signature.inputs, config.input), (signature.outputs, config.output)):
        for tensor in tensors:
            entry = entries.add()
            entry.name = tensor.served_name
            entry.data_type = datatypes.config_enum(triton_type(tensor))
            _set_dims(entry, model_dims(signature, tensor, batching))
    if dynamic_batching is None:
        dynamic_batching = max_batch_size > 1
    if dynamic_batching and batching:
        config.dynamic_batching.SetInParent()
    group = config.instance_group.add()
    group.kind = mc.ModelInstanceGroup.KIND_CPU
    group.count = 1
    if extra_parameters:
        config.parameters["synchronous_execution"].string_value = "1"
    return config
