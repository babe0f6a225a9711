"""A PopEF model served as a Triton model: what ``popef serve`` and the Triton backend share.

Both front ends — ``popef serve`` (:mod:`popef.serving`) and the ``poplar`` backend for real
Triton (:mod:`popef.triton.backend`) — load, check and run a model with this package, so a
model and a request get the same treatment and the same messages from both. One concept per
module:

- :mod:`~popef.servable.errors`: :class:`ServingError` with Triton's :class:`Status`,
  :class:`ConfigError`;
- :mod:`~popef.servable.datatypes`: Triton's data types and PopEF's;
- :mod:`~popef.servable.folder_files`: files of a model folder, confined and bounded;
- :mod:`~popef.servable.config_files`: ``config.pbtxt`` and its JSON form, read and written
  through protobuf;
- :mod:`~popef.servable.name_map`: ``name_map.json`` and Graphcore's anchor keys;
- :mod:`~popef.servable.signature`: the model's side of the contract (:class:`Signature`);
- :mod:`~popef.servable.parameters`: the config ``parameters`` read (:class:`ModelParameters`);
- :mod:`~popef.servable.autocomplete`: Triton's auto-complete (:func:`complete_config`,
  :func:`generate_config`);
- :mod:`~popef.servable.plan`: a config checked against the signature (:class:`ServingPlan`);
- :mod:`~popef.servable.version_folder`: a version folder's PopEF files, opened;
- :mod:`~popef.servable.validation`: a request checked against the plan;
- :mod:`~popef.servable.batches`: requests' rows to runtime steps and back.

``tritonclient`` (for ``ModelConfig``) and protobuf are imported only when a config is read or
made.
"""

from __future__ import annotations

from .autocomplete import (
    SUPPORTED_BACKENDS,
    check_backend,
    complete_config,
    generate_config,
)
from .config_files import (
    CONFIG_FILENAME,
    MAX_CONFIG_BYTES,
    MAX_SPECIFIC_VERSIONS,
    config_from_json,
    config_to_dict,
    config_to_text,
    json_states_max_batch_size,
    parse_config,
    read_config,
    specific_versions,
    states_max_batch_size,
)
from .errors import ConfigError, ServingError, Status, error_message
from .folder_files import inside, read_model_file, regular_file
from .name_map import (
    MAX_NAME_MAP_BYTES,
    NAME_MAP_FILENAME,
    anchor_keys,
    check_name_map_file,
    read_name_map,
)
from .parameters import DEFAULT_EXECUTOR, MAX_DELAY_NS, ModelParameters
from .plan import (
    MAX_INSTANCES,
    MAX_LABEL_FILE_BYTES,
    ServingPlan,
    TensorPlan,
    build_plan,
)
from .signature import ModelTensor, Signature, signature_of
from .version_folder import DEFAULT_MODEL_FILENAME, model_files, open_model

__all__ = [
    "CONFIG_FILENAME",
    "DEFAULT_EXECUTOR",
    "DEFAULT_MODEL_FILENAME",
    "MAX_CONFIG_BYTES",
    "MAX_DELAY_NS",
    "MAX_INSTANCES",
    "MAX_LABEL_FILE_BYTES",
    "MAX_NAME_MAP_BYTES",
    "MAX_SPECIFIC_VERSIONS",
    "NAME_MAP_FILENAME",
    "SUPPORTED_BACKENDS",
    "ConfigError",
    "ModelParameters",
    "ModelTensor",
    "ServingError",
    "ServingPlan",
    "Signature",
    "Status",
    "TensorPlan",
    "anchor_keys",
    "build_plan",
    "check_backend",
    "check_name_map_file",
    "complete_config",
    "config_from_json",
    "config_to_dict",
    "config_to_text",
    "error_message",
    "generate_config",
    "inside",
    "json_states_max_batch_size",
    "model_files",
    "open_model",
    "parse_config",
    "read_config",
    "read_model_file",
    "read_name_map",
    "regular_file",
    "signature_of",
    "specific_versions",
    "states_max_batch_size",
]
