"""The ``poplar`` backend for Triton: ``TritonPythonModel`` serving a PopEF file.

Triton's Python backend runs this class in a stub process per model instance (and once more,
in a throw-away process, for :meth:`TritonPythonModel.auto_complete_config`). A model folder
is the one of Graphcore's Poplar backend::

    <repository>/<model>/config.pbtxt            backend: "poplar" (optional, see below)
    <repository>/<model>/<version>/executable.popef   or default_model_filename, or every *.popef
    <repository>/<model>/<version>/name_map.json  optional: PopEF anchor name -> served name

- **Checks.** The config is checked against the file by the package ``popef serve`` uses too,
  :mod:`popef.servable`: :func:`~popef.servable.signature.signature_of` reads the model's
  user anchors through :class:`~popef.runtime.ModelRunner` and renames them by
  ``name_map.json`` (Graphcore's ``/N`` suffixes for repeated names),
  :func:`~popef.servable.autocomplete.complete_config` fills what a config leaves out and
  :func:`~popef.servable.plan.build_plan` rejects what does not match, with the same messages.
  The version folder's files are found and opened by :mod:`popef.servable.version_folder`,
  requests are checked by :mod:`popef.servable.validation` and turned into executions by
  :mod:`popef.servable.batches`.
- **Auto-complete.** Inputs, outputs, ``max_batch_size`` (Graphcore's rule: micro batch ×
  device iterations × replicas) and ``dynamic_batching`` (when that is above 1) come from the
  file when the config leaves them out. Without a ``config.pbtxt``, Triton knows the backend
  from a model folder named ``<model>.poplar`` (Triton's rule for custom backends), or from a
  ``<version>/model.py`` that imports this class (``backend: "python"``).
- **Execution.** All requests of one ``execute`` call run as one batch: rows are stacked,
  padded with zero rows to whole steps of the model, run as device iterations, and split back
  per request. A request that does not fit the model gets its own error response; the others
  still run. If the batch fails, each request is retried alone so that only the one at fault
  gets an error. ``execute`` never raises.
- **Parameters** (``parameters`` of ``config.pbtxt``, read by the code of ``popef serve``):
  ``executor`` (default ``cpu``), ``executor.<option>`` for the executor, Graphcore's test
  knobs ``execute_delay_ms`` / ``instance_wise_delay_multiplier``; Graphcore's
  ``synchronous_execution``, ``timeout_ns`` and ``max_queue_size`` are checked but Triton's
  scheduler owns queueing and batching delays (``dynamic_batching`` settings).

``triton_python_backend_utils`` exists only inside Triton's stub, so it is imported only in
the methods that Triton calls.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import PopefError
from ..escaping import escape_text
from ..servable import (
    CONFIG_FILENAME,
    DEFAULT_EXECUTOR,
    MAX_CONFIG_BYTES,
    SUPPORTED_BACKENDS,
    ConfigError,
    ModelParameters,
    Signature,
    TensorPlan,
    build_plan,
    complete_config,
    read_model_file,
    states_max_batch_size,
)
from ..servable.batches import (
    collect_outputs,
    feed_steps,
    merge_rows,
    prepare_feed,
    split_rows,
)
from ..servable.datatypes import TRITON_TYPES
from ..servable.errors import ServingError, Status, error_message, internal
from ..servable.validation import (
    check_datatype,
    check_input_names,
    check_shape,
    request_rows,
    select_outputs,
)
from ..servable.version_folder import model_files as version_files
from ..servable.version_folder import open_model

__all__ = [
    "DEFAULT_EXECUTOR",
    "BackendError",
    "ConfigError",
    "LoadedModel",
    "ModelLocation",
    "TritonPythonModel",
    "apply_completion",
    "config_from_triton",
    "load_model",
    "locate_for_auto_complete",
    "locate_for_initialize",
    "model_files",
    "stub_model_path",
]

#: the stub binary that runs Python models (its first argument is the model's path)
STUB_NAME = "triton_python_backend_stub"
#: backends whose model.py may import this class (besides the poplar backend itself)
PYTHON_BACKEND = "python"


class BackendError(ServingError):
    """The backend cannot serve a model (where it is, or what Triton gave it)."""


# -- where the model is ------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelLocation:
    """A model version's folders, as Triton gives them (relative to Triton's working folder)."""

    model_dir: Path
    version: str

    @property
    def version_dir(self) -> Path:
        return self.model_dir / self.version


def stub_model_path(cmdline: str | os.PathLike = "/proc/self/cmdline") -> Path | None:
    """The model path Triton launched this stub process with, or None outside a stub.

    Triton starts ``triton_python_backend_stub <repository>/<model>/<version>/<file> …``; the
    config that :meth:`TritonPythonModel.auto_complete_config` receives says nothing about the
    model's folder, so this is where the folder is read from.
    """
    try:
        with open(cmdline, "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return None
    if len(argv) < 2 or not argv[0] or not argv[1]:
        return None
    if os.path.basename(os.fsdecode(argv[0])) != STUB_NAME:
        return None
    return Path(os.fsdecode(argv[1]))


def locate_for_auto_complete(model_path: Path | None = None) -> ModelLocation:
    """The model being auto-completed: from the stub's command line (see
    :func:`stub_model_path`)."""
    path = model_path if model_path is not None else stub_model_path()
    if path is None:
        raise BackendError(
            "cannot find the model's folder: auto_complete_config runs outside "
            f"Triton's {STUB_NAME} (no model path on its command line)"
        )
    return ModelLocation(path.parent.parent, path.parent.name)


def locate_for_initialize(args: Mapping[str, str]) -> ModelLocation:
    """The model instance being initialised: from Triton's ``initialize`` arguments."""
    try:
        location = ModelLocation(Path(args["model_repository"]), str(args["model_version"]))
    except KeyError as exc:
        raise BackendError(f"Triton's initialize arguments have no {exc}") from None
    version = location.version
    if not version or "/" in version or "\\" in version or version in (".", ".."):
        # an absolute or dotted version would take the folder out of the model's folder
        raise BackendError(
            f"Triton's model_version must be a folder name, got "
            f"'{escape_text(version, backslashes=False)}'"
        )
    return location


def model_files(version_dir: Path, config) -> list[Path]:
    """The PopEF files of a version folder, by the rule of ``popef serve``
    (:func:`popef.servable.version_folder.model_files`): the config's
    ``default_model_filename``, else ``executable.popef``, else every ``*.popef`` file.

    ``default_model_filename`` is Triton's own when it names the Python module (``model.py``
    of a ``backend: "python"`` model) or is the ``model.<backend>`` placeholder Triton gives a
    ``<model>.<backend>`` folder without config; both are passed over.
    """
    filename = config.default_model_filename
    if (
        filename.endswith(".py")
        or filename
        and filename == f"model.{config.backend}"
        and not (version_dir / filename).exists()
    ):
        filename = ""
    return version_files(version_dir, filename)


# -- configs -----------------------------------------------------------------------------------


def config_from_triton(config: Mapping[str, Any] | str):
    """Triton's model config (JSON text or its dict) as a ``ModelConfig`` message.

    Fields this ``tritonclient`` does not know (a newer server) are ignored.
    """
    from google.protobuf import json_format
    from tritonclient.grpc import model_config_pb2

    data = json.loads(config) if isinstance(config, (str, bytes)) else config
    message = model_config_pb2.ModelConfig()
    try:
        json_format.ParseDict(data, message, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise BackendError(f"Triton's model config is not a ModelConfig: {exc}") from None
    return message


def _as_served(config):
    """The config as ``popef serve`` checks it: a ``backend: "python"`` model whose
    ``model.py`` imports this class is a poplar model."""
    if config.backend == PYTHON_BACKEND:
        from tritonclient.grpc import model_config_pb2

        copy = model_config_pb2.ModelConfig()
        copy.CopyFrom(config)
        copy.backend = SUPPORTED_BACKENDS[0]
        return copy
    return config


def _config_states_max_batch_size(model_dir: Path) -> bool:
    """Whether the model's ``config.pbtxt`` states ``max_batch_size`` (Triton's JSON always
    has the field, so 0 and absent look alike there)."""
    # read as popef serve reads it: a FIFO or a huge file is refused, never waited on
    text = read_model_file(model_dir / CONFIG_FILENAME, CONFIG_FILENAME, MAX_CONFIG_BYTES)
    return text is not None and states_max_batch_size(text)


# -- loading -----------------------------------------------------------------------------------


@dataclass
class LoadedModel:
    runner: Any  # popef.runtime.ModelRunner
    signature: Signature
    files: list[Path]
    parameters: ModelParameters

    def close(self) -> None:
        self.runner.close()


def load_model(location: ModelLocation, config) -> LoadedModel:
    """Open a version's PopEF files with :class:`ModelRunner` on the config's executor
    (:func:`popef.servable.version_folder.open_model`)."""
    parameters = ModelParameters.of(config)
    files = model_files(location.version_dir, config)
    executor = parameters.executor or DEFAULT_EXECUTOR
    runner, signature = open_model(
        location.version_dir, files, executor, parameters.executor_options
    )
    return LoadedModel(runner, signature, files, parameters)


def apply_completion(auto_config, completed) -> None:
    """Write what :func:`complete_config` filled in into Triton's ``pb_utils.ModelConfig``.

    Uses the ``ModelConfig`` methods (``set_max_batch_size``, ``add_input``, ``add_output``,
    ``set_dynamic_batching``), which check against what the config states; a ``reshape``
    (the ``dims: [1]`` of a scalar anchor), which they cannot express, goes in directly.
    """
    from tritonclient.grpc import model_config_pb2 as mc

    current = auto_config.as_dict()
    if completed.max_batch_size != current.get("max_batch_size", 0):
        auto_config.set_max_batch_size(int(completed.max_batch_size))
    for kind, entries, add in (
        ("input", completed.input, auto_config.add_input),
        ("output", completed.output, auto_config.add_output),
    ):
        for entry in entries:
            add(
                {
                    "name": entry.name,
                    "data_type": mc.DataType.Name(entry.data_type),
                    "dims": [int(d) for d in entry.dims],
                }
            )
            if entry.HasField("reshape"):
                for item in auto_config.as_dict().get(kind, []):
                    if item.get("name") == entry.name and not item.get("reshape"):
                        item["reshape"] = {"shape": [int(d) for d in entry.reshape.shape]}
    if (
        completed.WhichOneof("scheduling_choice") == "dynamic_batching"
        and "dynamic_batching" not in current
    ):
        auto_config.set_dynamic_batching()


# -- batches -----------------------------------------------------------------------------------


@dataclass
class _Pending:
    index: int  # position in the execute call
    inputs: dict[str, np.ndarray]
    rows: int
    outputs: list[TensorPlan]  # requested, in the config's order


# -- the backend -------------------------------------------------------------------------------


def _pb_utils():
    import triton_python_backend_utils as pb_utils

    return pb_utils


def _log(level: str, message: str) -> None:
    """Log to Triton's log, control characters of model and anchor names escaped."""
    message = escape_text(message, backslashes=False)
    try:
        logger = _pb_utils().Logger
        getattr(logger, f"log_{level}")(message)
    except Exception:  # noqa: BLE001, S110 - logging must never fail the model
        pass


class TritonPythonModel:
    """The ``poplar`` backend (see the module docstring)."""

    # ---- load
    @staticmethod
    def auto_complete_config(auto_complete_model_config, model_path: Path | None = None):
        """Fill inputs, outputs, ``max_batch_size`` and dynamic batching from the PopEF file.

        Raises (the model then fails to load, with the message) when the file cannot be read
        or the config does not match it. ``model_path`` is for tests: Triton's model path.
        """
        current = auto_complete_model_config.as_dict()
        location = locate_for_auto_complete(model_path)
        name = current.get("name") or location.model_dir.name
        config = _as_served(config_from_triton(current))
        try:
            loaded = load_model(location, config)
        except (ServingError, PopefError) as exc:
            raise BackendError(f"model '{name}': {error_message(exc)}") from None
        try:
            completed = complete_config(
                config,
                name,
                loaded.signature,
                states_max_batch_size=_config_states_max_batch_size(location.model_dir),
                auto_complete=True,
            )
            build_plan(completed, loaded.signature, location.model_dir)
        except ServingError as exc:
            raise BackendError(f"model '{name}': {exc.message}") from None
        finally:
            loaded.close()
        apply_completion(auto_complete_model_config, completed)
        return auto_complete_model_config

    def initialize(self, args: Mapping[str, str]) -> None:
        """Load the version's PopEF file and check Triton's (completed) config against it."""
        self.runner = None
        self.model_config = json.loads(args["model_config"])
        self.name = args.get("model_name") or self.model_config.get("name", "")
        self.instance = args.get("model_instance_name", self.name)
        location = locate_for_initialize(args)
        config = _as_served(config_from_triton(self.model_config))
        try:
            loaded = load_model(location, config)
        except (ServingError, PopefError) as exc:
            raise BackendError(f"model '{self.name}': {error_message(exc)}") from None
        try:
            checked = complete_config(
                config, self.name, loaded.signature, states_max_batch_size=True, auto_complete=False
            )
            self.plan = build_plan(checked, loaded.signature, location.model_dir)
        except ServingError as exc:
            loaded.close()
            raise BackendError(f"model '{self.name}': {exc.message}") from None
        self.loaded = loaded
        self.runner = loaded.runner
        self.instance_index = _instance_index(self.instance)
        self.files = loaded.files
        if loaded.parameters.unknown:
            _log(
                "warn",
                f"model '{self.name}': parameters not used by the poplar backend: "
                + ", ".join(f"'{k}'" for k in loaded.parameters.unknown),
            )
        executor = loaded.parameters.executor or DEFAULT_EXECUTOR
        _log(
            "info",
            f"model '{self.name}' instance '{self.instance}': "
            f"{', '.join(f.name for f in self.files)} on executor '{executor}' "
            f"({self.runner.executor.describe()}), "
            f"max_batch_size {self.plan.max_batch_size}",
        )

    def finalize(self) -> None:
        if getattr(self, "runner", None) is not None:
            self.runner.close()
            self.runner = None

    # ---- execute
    def execute(self, requests: Sequence) -> list:
        """One response per request, in order; the requests that fit run as one batch."""
        pb_utils = _pb_utils()
        responses: list = [None] * len(requests)
        pending: list[_Pending] = []
        for index, request in enumerate(requests):
            try:
                inputs, rows = self._decode(pb_utils, request)
                outputs = self._requested(request)
                pending.append(_Pending(index, inputs, rows, outputs))
            except Exception as exc:  # noqa: BLE001 - one bad request never fails the others
                responses[index] = self._error(pb_utils, exc)
        for group in self._groups(pending):
            self._run_group(pb_utils, group, responses)
        return responses

    def _groups(self, pending: list[_Pending]) -> Iterable[list[_Pending]]:
        if not self.plan.batching:
            return [[p] for p in pending]
        groups: list[list[_Pending]] = []
        rows = 0
        for p in pending:
            if groups and rows + p.rows <= self.plan.max_batch_size:
                groups[-1].append(p)
                rows += p.rows
            else:
                groups.append([p])
                rows = p.rows
        return groups

    def _run_group(self, pb_utils, group: list[_Pending], responses: list) -> None:
        try:
            results = self._run(group)
        except Exception as exc:  # noqa: BLE001
            if len(group) > 1:  # find the request at fault: each alone
                for p in group:
                    self._run_group(pb_utils, [p], responses)
                return
            responses[group[0].index] = self._error(pb_utils, exc)
            return
        for p, result in zip(group, results):
            try:
                tensors = [
                    pb_utils.Tensor(
                        tp.name, np.ascontiguousarray(result[tp.name], dtype=tp.ttype.numpy)
                    )
                    for tp in p.outputs
                ]
                responses[p.index] = pb_utils.InferenceResponse(output_tensors=tensors)
            except Exception as exc:  # noqa: BLE001
                responses[p.index] = self._error(pb_utils, exc)

    def _run(self, group: list[_Pending]) -> list[dict[str, np.ndarray]]:
        plan = self.plan
        rows = sum(p.rows for p in group)
        feed = prepare_feed(plan, merge_rows([p.inputs for p in group]), rows)
        delay = getattr(self.loaded.parameters, "delay_seconds", None)
        if delay is not None and delay(self.instance_index) > 0:  # Graphcore's test knobs
            time.sleep(delay(self.instance_index))
        # checked by _decode (popef.servable.validation): the runner does not check them again
        outputs = self.runner.execute_checked(feed, feed_steps(plan, rows))
        return split_rows(collect_outputs(plan, outputs, rows), [p.rows for p in group])

    # ---- requests
    def _decode(self, pb_utils, request) -> tuple[dict[str, np.ndarray], int]:
        plan = self.plan
        name = self.name
        tensors = list(request.inputs())
        check_input_names(name, plan, [t.name() for t in tensors])
        given = {t.name(): t for t in tensors}
        arrays: dict[str, np.ndarray] = {}
        shapes: list[tuple[str, tuple[int, ...]]] = []
        for tp in plan.inputs:
            array = given[tp.name].as_numpy()
            check_datatype(name, tp, _dtype_name(array.dtype))
            shape = tuple(int(d) for d in array.shape)
            # Triton applies the config's reshape before the backend sees the tensor
            check_shape(name, plan, tp, shape, reshaped=True)
            arrays[tp.name] = array
            shapes.append((tp.name, shape))
        return arrays, request_rows(name, plan, shapes)

    def _requested(self, request) -> list[TensorPlan]:
        plan = self.plan
        try:
            names = list(request.requested_output_names())
        except AttributeError:
            names = []
        if not names:
            return list(plan.outputs)
        wanted = {tp.name for tp in select_outputs(self.name, plan, names)}
        return [tp for tp in plan.outputs if tp.name in wanted]

    def _error(self, pb_utils, exc: BaseException):
        if isinstance(exc, ServingError):
            message, status = exc.message, exc.status
        elif isinstance(exc, PopefError):
            message, status = str(exc), Status.INTERNAL
        else:
            message, status = internal(error_message(exc)).message, Status.INTERNAL
        return pb_utils.InferenceResponse(
            output_tensors=[], error=_triton_error(pb_utils, message, status)
        )


_ERROR_CODES = {
    Status.INVALID_ARG: "INVALID_ARG",
    Status.NOT_FOUND: "NOT_FOUND",
    Status.UNAVAILABLE: "UNAVAILABLE",
    Status.UNSUPPORTED: "UNSUPPORTED",
    Status.ALREADY_EXISTS: "ALREADY_EXISTS",
    Status.CANCELLED: "CANCELLED",
    Status.UNKNOWN: "UNKNOWN",
    Status.INTERNAL: "INTERNAL",
}


def _triton_error(pb_utils, message: str, status: Status):
    """``pb_utils.TritonError`` with Triton's code when the stub knows codes (23.xx and later)."""
    error_class = pb_utils.TritonError
    code = getattr(error_class, _ERROR_CODES.get(status, "INTERNAL"), None)
    if code is not None:
        try:
            return error_class(message, code)
        except TypeError:
            pass
    return error_class(message)


def _instance_index(instance_name: str) -> int:
    """The index of an instance in its group: Triton names them ``<group>_<index>``."""
    _, _, tail = instance_name.rpartition("_")
    return int(tail) if tail.isdigit() else 0


def _dtype_name(dtype: np.dtype) -> str:
    for t in TRITON_TYPES:
        if t.numpy is not None and t.numpy == dtype:
            return t.name
    return str(dtype)
