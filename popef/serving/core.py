"""The protocol core: everything a KServe v2 / Triton server does, without a transport.

:class:`InferenceCore` owns the model repository and answers health, metadata, config,
repository, statistics and inference calls with plain Python values (dicts, protobuf
``ModelConfig`` messages, :class:`InferResponse` futures) and :class:`ServingError`s. The ASGI
app (:func:`popef.serving.http_app.create_app`) and the gRPC servicer
(:class:`popef.serving.grpc_servicer.InferenceServicer`) are thin translations of it, so any
engine that hosts an ASGI app or a gRPC servicer can host this server.
"""

from __future__ import annotations

import concurrent.futures
import logging
import math
import threading
from collections.abc import Iterable

import numpy as np

from .._version import __version__
from ..escaping import shorten
from ..servable import (
    ConfigError,
    ServingPlan,
    TensorPlan,
    config_from_json,
    json_states_max_batch_size,
)
from ..servable.datatypes import by_protocol_name
from ..servable.errors import ServingError, Status, internal, invalid, unavailable
from ..servable.validation import (
    check_datatype,
    check_input_names,
    check_shape,
    request_rows,
    select_outputs,
)
from .options import SERVER_NAME
from .protocol import (
    InferRequest,
    InferResponse,
    InputTensor,
    OutputTensor,
    RequestedOutput,
)
from .repository import ModelRepository, check_model_name
from .served import ServedModel
from .settings import LogSettings, TraceSettings
from .shared_memory import NO_REGIONS, SystemSharedMemory
from .stats import now_ns

__all__ = ["EXTENSIONS", "SERVER_NAME", "InferenceCore"]

log = logging.getLogger("popef.serving")

EXTENSIONS = (
    "classification",
    "model_repository",
    "model_repository(unload_dependents)",
    "schedule_policy",
    "model_configuration",
    "system_shared_memory",
    "cuda_shared_memory",
    "binary_tensor_data",
    "parameters",
    "statistics",
    "trace",
    "logging",
)
CONTROL_MODES = ("none", "explicit")


class InferenceCore:
    """The server's state and every protocol operation (see the module docstring).

    ``model_control_mode`` is tritonserver's: ``"none"`` loads every model at start and refuses
    the load and unload API; ``"explicit"`` loads the ``startup_models`` (all with ``"*"``)
    and lets clients load and unload.
    """

    def __init__(
        self,
        repository: ModelRepository,
        *,
        model_control_mode: str = "none",
        strict_readiness: bool = True,
        server_name: str = SERVER_NAME,
        log_settings: LogSettings | None = None,
    ) -> None:
        if model_control_mode not in CONTROL_MODES:
            raise invalid(
                f"model control mode '{model_control_mode}' is not supported "
                f"(choose {' or '.join(CONTROL_MODES)})"
            )
        self.repository = repository
        self.model_control_mode = model_control_mode
        self.strict_readiness = strict_readiness
        self.server_name = server_name
        #: the system shared memory extension's regions
        self.shared_memory = SystemSharedMemory()
        #: the logging and trace extensions (``v2/logging``, ``v2/trace/setting``)
        self.log_settings = log_settings or LogSettings()
        self.trace_settings = TraceSettings()
        self._started = False
        self._stopping = False
        self._active = 0
        self._active_cond = threading.Condition()

    # ---- lifetime
    def start(self, startup_models: Iterable[str] | None = None) -> None:
        """Load the models: all of them, or in explicit mode only ``startup_models``."""
        if self.model_control_mode == "none":
            self.repository.load_all()
        else:
            self.repository.load_all(list(startup_models or ()))
        self._started = True

    def begin_shutdown(self) -> None:
        """Stop taking inference requests (they get UNAVAILABLE); the server and its models
        turn not ready (still live)."""
        self._stopping = True

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no inference request is in flight; False on timeout."""
        with self._active_cond:
            return self._active_cond.wait_for(lambda: self._active == 0, timeout)

    def close(self, timeout: float | None = 30) -> None:
        self.begin_shutdown()
        self.wait_idle(timeout)
        self.repository.close(timeout)
        self.shared_memory.close()

    # ---- health and metadata
    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        if not self._started or self._stopping:
            return False
        return self.repository.all_ready() if self.strict_readiness else True

    def model_ready(self, name: str, version: str = "") -> bool:
        return not self._stopping and self.repository.is_ready(name, version)

    def server_metadata(self) -> dict:
        return {"name": self.server_name, "version": __version__, "extensions": list(EXTENSIONS)}

    def model_metadata(self, name: str, version: str = "") -> dict:
        served = self.repository.get(name, version)
        record = self.repository.record(name)
        plan = served.plan
        batch = [-1] if plan.batching else []
        config = served.config
        return {
            "name": name,
            "versions": [
                str(v.version) for v in sorted(record.ready_versions(), key=lambda v: v.version)
            ],
            "platform": config.platform or config.backend,
            "inputs": [
                {"name": t.name, "datatype": t.ttype.name, "shape": batch + list(t.dims)}
                for t in plan.inputs
            ],
            "outputs": [
                {"name": t.name, "datatype": t.ttype.name, "shape": batch + list(t.dims)}
                for t in plan.outputs
            ],
        }

    def model_config(self, name: str, version: str = ""):
        """The completed ``ModelConfig`` message the model runs with."""
        return self.repository.get(name, version).config

    # ---- repository
    def repository_index(self, ready_only: bool = False) -> list[dict]:
        return self.repository.index(ready_only)

    def load_model(self, name: str, parameters: dict | None = None) -> None:
        self._check_control("load")
        check_model_name(name)
        parameters = dict(parameters or {})
        config = None
        states_mbs = False
        text = parameters.pop("config", None)
        if text:
            if not isinstance(text, (str, bytes)):
                raise invalid(
                    "the load parameter 'config' must be a string holding the model config as JSON"
                )
            try:
                config = config_from_json(text)
            except ConfigError as exc:
                # Triton's answer to an override it cannot use
                raise ServingError(
                    f"failed to load '{name}', failed to poll from model "
                    f"repository: Invalid config override: {exc.message}",
                    Status.INTERNAL,
                ) from None
            states_mbs = json_states_max_batch_size(text)
        files = [k for k in parameters if k.startswith("file:")]
        if files:
            # Triton's answer to a file override it cannot use, then why
            raise ServingError(
                f"failed to load '{name}', failed to poll from model "
                f"repository: loading model files through the API "
                f"('{shorten(files[0], 200)}') is not supported: put them in the "
                "model repository",
                Status.INTERNAL,
            )
        self.repository.load(name, config, states_max_batch_size=states_mbs)

    def unload_model(self, name: str, parameters: dict | None = None) -> None:
        self._check_control("unload")
        check_model_name(name)
        self.repository.unload(name)

    def _check_control(self, what: str) -> None:
        if self.model_control_mode != "explicit":
            raise unavailable(
                f"explicit model load / unload is not allowed: the server runs "
                f"with --model-control-mode={self.model_control_mode}; start it "
                f"with --model-control-mode=explicit to {what} models"
            )

    # ---- statistics
    def statistics(self, name: str = "", version: str = "") -> list[dict]:
        """Triton's ``ModelStatistics`` as dicts: every ready model version, one model's ready
        versions, or one version."""
        if not name:
            models = self.repository.served_models()
        elif version:
            models = [self.repository.get(name, version)]
        else:
            record = self.repository.record(name)
            ready = sorted(record.ready_versions(), key=lambda v: v.version)
            if not ready:
                self.repository.get(name)  # raises the reason
            models = [v.served for v in ready]
        return [model.stats.snapshot() for model in models]

    # ---- logging and trace extensions
    def log_setting(self, changes: dict | None = None) -> dict:
        """Triton's log settings, after applying ``changes`` when given."""
        return self.log_settings.get() if changes is None else self.log_settings.update(changes)

    def trace_setting(self, model: str = "", changes: dict | None = None) -> dict:
        """Triton's trace settings (global, or of a ready model), after applying ``changes``
        when given. They are kept; no trace is produced."""
        if model and not self.repository.is_ready(model):
            # Triton's text and code for a model that is not ready
            raise invalid(f"Request for unknown model : {shorten(model, 200)}")
        if changes is None:
            return self.trace_settings.get(model)
        return self.trace_settings.update(changes, model)

    # ---- inference
    def infer(
        self, request: InferRequest, *, inline: bool = False
    ) -> concurrent.futures.Future[InferResponse]:
        """Validate ``request`` and queue it; the future gives the response.

        Errors in the request raise :class:`ServingError` at once; errors while running are
        set on the future. With ``inline`` (for callers on a thread of their own, never on an
        event loop) a request that would not wait or share a batch runs in the calling thread.
        """
        start = now_ns()
        if self._stopping:
            raise unavailable("the server is shutting down")
        served = self.repository.get(request.model_name, request.model_version)
        regions = NO_REGIONS  # the shared memory the request reads and writes, held till done
        try:
            regions = self.shared_memory.bind(request)
            arrays, rows = self._decode_inputs(served, request)
            selected = self._select_outputs(served, request)
            timeout_us = _request_timeout(request.parameters)
            with self._active_cond:
                self._active += 1
            try:
                future = served.submit(
                    arrays, rows, arrival_ns=start, timeout_us=timeout_us, inline=inline
                )
            except BaseException:
                self._finished()
                raise
        except ServingError:
            regions.release()
            served.stats.record_failure(now_ns() - start)
            raise
        except BaseException:
            regions.release()
            raise
        result: concurrent.futures.Future = concurrent.futures.Future()

        def done(f: concurrent.futures.Future) -> None:
            try:
                error = f.exception()
                if error is None:
                    try:
                        response = regions.write_outputs(
                            self._response(served, request, selected, f.result(), rows)
                        )
                    except ServingError as exc:
                        error = exc
                    except Exception as exc:  # noqa: BLE001
                        error = internal(f"cannot build the response: {exc}")
                if error is not None:
                    served.stats.record_failure(now_ns() - start)
                    result.set_exception(error)
                else:
                    served.stats.record_success(rows, now_ns() - start)
                    result.set_result(response)
            finally:
                regions.release()
                self._finished()

        future.add_done_callback(done)
        return result

    def _finished(self) -> None:
        with self._active_cond:
            self._active -= 1
            if not self._active:
                self._active_cond.notify_all()

    def infer_sync(self, request: InferRequest, timeout: float | None = None) -> InferResponse:
        """Run a request and wait for its response (in the calling thread when possible)."""
        return self.infer(request, inline=True).result(timeout)

    # ---- request checks
    def _decode_inputs(self, served: ServedModel, request: InferRequest):
        plan = served.plan
        name = served.name
        check_input_names(name, plan, [tensor.name for tensor in request.inputs])
        given: dict[str, InputTensor] = {tensor.name: tensor for tensor in request.inputs}
        _check_parameters(served, request.parameters)
        rows = request_rows(name, plan, ((tp.name, _shape(given[tp.name])) for tp in plan.inputs))
        arrays = {tp.name: _decode(name, plan, tp, given[tp.name]) for tp in plan.inputs}
        return arrays, rows

    def _select_outputs(
        self, served: ServedModel, request: InferRequest
    ) -> list[tuple[TensorPlan, RequestedOutput]]:
        plan = served.plan
        if request.outputs is None:
            return [(tp, RequestedOutput(tp.name)) for tp in plan.outputs]
        tensors = select_outputs(served.name, plan, [ro.name for ro in request.outputs])
        for ro in request.outputs:
            if ro.classification < 0:
                raise invalid(
                    f"output '{ro.name}': classification count must be >= 0, got "
                    f"{ro.classification}"
                )
        return list(zip(tensors, request.outputs))

    def _response(
        self, served: ServedModel, request: InferRequest, selected, results: dict, rows: int
    ) -> InferResponse:
        outputs = []
        for tp, ro in selected:
            array = results[tp.name]
            if ro.classification:
                data = _classify(array, ro.classification, tp.labels, served.plan.batching)
                outputs.append(OutputTensor(tp.name, "BYTES", list(data.shape), data, ro.binary))
            else:
                outputs.append(
                    OutputTensor(tp.name, tp.ttype.name, list(array.shape), array, ro.binary)
                )
        return InferResponse(served.name, str(served.version), request.id, outputs)


# -- helpers ---------------------------------------------------------------------------------------


def _shape(tensor: InputTensor) -> tuple[int, ...]:
    shape = tensor.shape
    # whole numbers only: 1.5, "1" or true are not read as 1
    if not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) for d in shape):
        raise invalid(
            f"input '{tensor.name}': 'shape' must be a list of whole numbers, got "
            f"{_shape_text(shape)}"
        )
    shape = tuple(int(d) for d in shape)
    if any(d < 0 for d in shape):
        raise invalid(
            f"input '{tensor.name}' has shape {_shape_text(shape)} with a negative dimension"
        )
    if any(d > _MAX_DIM for d in shape):
        raise invalid(
            f"input '{tensor.name}' has shape {_shape_text(shape)} with a dimension "
            f"over {_MAX_DIM} (int64)"
        )
    return shape


_MAX_DIM = 2**63 - 1


def _shape_text(shape) -> str:
    """A request's shape for a message: a client may send 100,000 dimensions."""
    return shorten(repr(list(shape)), 200)


def _decode(model: str, plan: ServingPlan, tp: TensorPlan, tensor: InputTensor) -> np.ndarray:
    ttype = by_protocol_name(tensor.datatype)
    if ttype is None:
        raise invalid(f"input '{tensor.name}' has an unknown datatype '{tensor.datatype}'")
    check_datatype(model, tp, tensor.datatype)
    shape = _shape(tensor)
    check_shape(model, plan, tp, shape)
    count = math.prod(shape)
    dtype = ttype.numpy
    if tensor.shared_memory is not None:
        tensor.raw = tensor.shared_memory.read_input(tensor.name, model, count * dtype.itemsize)
    if tensor.raw is not None:
        nbytes = count * dtype.itemsize
        if len(tensor.raw) != nbytes:
            raise invalid(
                f"input byte size mismatch for input '{tensor.name}' for model "
                f"'{model}': expected {nbytes} bytes ({tensor.datatype}{_shape_text(shape)}), "
                f"got {len(tensor.raw)}"
            )
        return np.frombuffer(tensor.raw, dtype=dtype).reshape(shape)
    if tensor.data is None:
        raise invalid(f"input '{tensor.name}' has no data")
    array = _values(tensor, dtype)
    if array.size != count:
        raise invalid(
            f"input '{tensor.name}' has {array.size} values but shape "
            f"{_shape_text(shape)} needs {count}"
        )
    return array.reshape(shape)


#: the kinds of numpy array (from JSON numbers or gRPC contents) each kind of tensor takes
_VALUE_KINDS = {"b": "b", "i": "iu", "u": "iu", "f": "iuf"}


def _values(tensor: InputTensor, dtype: np.dtype) -> np.ndarray:
    """The ``data`` of an input (JSON values or gRPC typed contents) as ``dtype``: numbers of
    the tensor's kind only (no null, string or bool for a number), each in its range."""
    try:
        values = np.asarray(tensor.data)
    except (TypeError, ValueError, OverflowError, RecursionError):
        values = None
    if values is not None and values.size == 0 and values.dtype.kind == "f":
        return values.astype(dtype)  # [] (numpy's float64): no value to check
    expected = _VALUE_KINDS.get(dtype.kind, "")
    if values is None or values.dtype.kind not in expected:
        kind = {"b": "true or false", "f": "numbers"}.get(dtype.kind, "whole numbers")
        raise invalid(
            f"input '{tensor.name}': 'data' must be a list of {tensor.datatype} "
            f"values ({kind}), got {_sample(tensor.data)}"
        )
    if dtype.kind in "iu" and values.size:
        info = np.iinfo(dtype)
        low, high = values.min(), values.max()
        if low < info.min or high > info.max:
            bad = low if low < info.min else high
            raise invalid(
                f"input '{tensor.name}': value {int(bad)} is out of the range of "
                f"{tensor.datatype} [{info.min}, {info.max}]"
            )
    with np.errstate(over="ignore", invalid="ignore"):
        array = values.astype(dtype)
    if dtype.kind == "f" and values.dtype.kind == "f":
        overflow = np.isinf(array) & np.isfinite(values)
        if overflow.any():
            raise invalid(
                f"input '{tensor.name}': value {values[overflow].flat[0]!r} is out "
                f"of the range of {tensor.datatype}"
            )
    return array


def _sample(data) -> str:
    """A short description of a request's bad ``data`` for a message."""
    text = (
        repr(data)
        if not isinstance(data, (list, tuple))
        else repr(list(data[:4]))[:-1] + (", ...]" if len(data) > 4 else "]")
    )
    return text if len(text) <= 120 else text[:117] + "..."


def _check_parameters(served: ServedModel, parameters: dict) -> None:
    """The request's parameters, where the server reads them. ``sequence_id``,
    ``sequence_start`` and ``sequence_end`` are accepted and ignored: no model here has
    sequence batching, and Triton ignores them for such a model."""


#: the largest request timeout, in microseconds (Triton's is a uint64)
MAX_TIMEOUT_US = 2**64 - 1


def _request_timeout(parameters: dict) -> int:
    """The request's ``timeout`` parameter, in microseconds: a whole number in
    ``[0, 2**64 - 1]`` (a finite float with no fraction and a decimal string are taken)."""
    value = parameters.get("timeout", 0)
    whole_float = isinstance(value, float) and math.isfinite(value) and value.is_integer()
    digits = isinstance(value, str) and len(value) <= 20 and value.isascii() and value.isdigit()
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif whole_float or digits:
        number = int(value)
    if number is None or not 0 <= number <= MAX_TIMEOUT_US:
        raise invalid(
            f"request parameter 'timeout' must be a whole number of microseconds in "
            f"[0, {MAX_TIMEOUT_US}], got {_sample(value)}"
        )
    return number


def _classify(array: np.ndarray, k: int, labels: tuple[str, ...], batching: bool) -> np.ndarray:
    """The classification extension: top ``k`` of each batch row as ``b"score:index[:label]"``."""
    rows = array.reshape(array.shape[0], -1) if batching else array.reshape(1, -1)
    k = min(k, rows.shape[1])
    out = np.empty((rows.shape[0], k), dtype=object)
    for r, row in enumerate(rows):
        order = np.argsort(-row.astype(np.float64), kind="stable")[:k]
        for j, index in enumerate(order):
            text = f"{float(row[index]):f}:{int(index)}"
            if int(index) < len(labels):
                text += f":{labels[int(index)]}"
            out[r, j] = text.encode("utf-8")
    return out if batching else out.reshape(k)
