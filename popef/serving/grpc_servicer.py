"""The gRPC transport: a servicer on the service stubs that ``tritonclient`` ships.

:class:`InferenceServicer` subclasses ``tritonclient.grpc.service_pb2_grpc.
GRPCInferenceServiceServicer`` (``inference.GRPCInferenceService``, Triton's
``grpc_service.proto``), so every stock Triton gRPC client talks to it. Outputs always go back
as ``raw_output_contents``, which is what ``tritonclient``'s ``as_numpy`` reads. Errors abort
the call with the gRPC status code of Triton's error code and the message as details.

::

    server = grpc.server(ThreadPoolExecutor(32))
    InferenceServicer(core).add_to_server(server)       # any grpc server can host it
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
from collections.abc import Iterator
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc

from ..escaping import shorten
from ..servable.errors import (
    MAX_ERROR_MESSAGE,
    ServingError,
    internal,
    invalid,
)
from . import shared_memory
from .core import InferenceCore
from .options import DEFAULT_MAX_MESSAGE_SIZE, GrpcLimits
from .protocol import InferRequest, InferResponse, InputTensor, RequestedOutput

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "MAX_STREAM_IN_FLIGHT",
    "GrpcLimits",
    "InferenceServicer",
    "create_grpc_server",
]

log = logging.getLogger("popef.serving")

#: the most requests of one ``ModelStreamInfer`` stream read but not yet answered: the stream
#: stops reading requests until grpc has taken a response
MAX_STREAM_IN_FLIGHT = 64


# typed InferTensorContents field per datatype (when raw_input_contents is not used)
_CONTENTS = {
    "BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents",
    "INT32": "int_contents", "INT64": "int64_contents", "UINT8": "uint_contents",
    "UINT16": "uint_contents", "UINT32": "uint_contents", "UINT64": "uint64_contents",
    "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents",
}  # fmt: skip


_SERVICE = "inference.GRPCInferenceService"


class _Undecodable:
    """A request message that did not parse, in place of the message."""

    def __init__(self, error: Exception) -> None:
        self.error = invalid(f"the request is not a valid protobuf message: {error}")


def _lenient(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """``handler`` with a deserializer that gives :class:`_Undecodable` for bytes that do not
    parse; unary calls then abort with INVALID_ARGUMENT, streams answer in-band."""
    parse = handler.request_deserializer

    def deserialize(data: bytes):
        try:
            return parse(data)
        except DecodeError as exc:
            return _Undecodable(exc)

    handler = handler._replace(request_deserializer=deserialize)
    if handler.unary_unary is not None:
        behaviour = handler.unary_unary

        def unary(request, context):
            if isinstance(request, _Undecodable):
                _abort(context, request.error)
            return behaviour(request, context)

        handler = handler._replace(unary_unary=unary)
    return handler


def _abort(context: grpc.ServicerContext, error: ServingError):
    context.abort(
        getattr(grpc.StatusCode, error.status.grpc_code_name),
        shorten(error.message, MAX_ERROR_MESSAGE),
    )


def _parameter(value) -> Any:
    kind = value.WhichOneof("parameter_choice")
    return getattr(value, kind) if kind else None


class InferenceServicer(service_pb2_grpc.GRPCInferenceServiceServicer):
    """``inference.GRPCInferenceService`` over an :class:`InferenceCore`."""

    def __init__(
        self, core: InferenceCore, *, stream_in_flight: int = MAX_STREAM_IN_FLIGHT
    ) -> None:
        if stream_in_flight < 1:
            raise ValueError(f"stream_in_flight must be at least 1, got {stream_in_flight}")
        self.core = core
        self.stream_in_flight = stream_in_flight

    def add_to_server(self, server: grpc.Server) -> None:
        """Register the service on ``server``, as the generated function does, but with request
        messages that do not parse answered INVALID_ARGUMENT (grpcio's own answer is INTERNAL
        and a logged traceback)."""
        handlers: dict[str, grpc.RpcMethodHandler] = {}

        class Capture:  # receives the generated handlers instead of a server
            def add_generic_rpc_handlers(self, generic) -> None:
                pass

            def add_registered_method_handlers(self, service, methods) -> None:
                handlers.update(methods)

        service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(self, Capture())
        handlers = {name: _lenient(handler) for name, handler in handlers.items()}
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(_SERVICE, handlers),))
        if hasattr(server, "add_registered_method_handlers"):
            server.add_registered_method_handlers(_SERVICE, handlers)

    def _call(self, context, function, *args):
        try:
            return function(*args)
        except ServingError as exc:
            _abort(context, exc)
        except Exception as exc:
            log.exception("gRPC call failed")
            _abort(context, internal(f"internal error: {type(exc).__name__}: {exc}"))

    # ---- health and metadata
    def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=self.core.live())

    def ServerReady(self, request, context):
        return pb.ServerReadyResponse(ready=self.core.ready())

    def ModelReady(self, request, context):
        return pb.ModelReadyResponse(ready=self.core.model_ready(request.name, request.version))

    def ServerMetadata(self, request, context):
        md = self.core.server_metadata()
        return pb.ServerMetadataResponse(
            name=md["name"], version=md["version"], extensions=md["extensions"]
        )

    def ModelMetadata(self, request, context):
        md = self._call(context, self.core.model_metadata, request.name, request.version)

        def tensors(items):
            return [
                pb.ModelMetadataResponse.TensorMetadata(
                    name=t["name"], datatype=t["datatype"], shape=t["shape"]
                )
                for t in items
            ]

        return pb.ModelMetadataResponse(
            name=md["name"],
            versions=md["versions"],
            platform=md["platform"],
            inputs=tensors(md["inputs"]),
            outputs=tensors(md["outputs"]),
        )

    def ModelConfig(self, request, context):
        config = self._call(context, self.core.model_config, request.name, request.version)
        return pb.ModelConfigResponse(config=config)

    def ModelStatistics(self, request, context):
        from google.protobuf import json_format

        stats = self._call(context, self.core.statistics, request.name, request.version)
        response = pb.ModelStatisticsResponse()
        for snapshot in stats:
            json_format.ParseDict(snapshot, response.model_stats.add(), ignore_unknown_fields=True)
        return response

    # ---- repository
    def RepositoryIndex(self, request, context):
        entries = self._call(context, self.core.repository_index, request.ready)
        return pb.RepositoryIndexResponse(
            models=[
                pb.RepositoryIndexResponse.ModelIndex(
                    name=e["name"], version=e["version"], state=e["state"], reason=e["reason"]
                )
                for e in entries
            ]
        )

    def RepositoryModelLoad(self, request, context):
        parameters = {k: _parameter(v) for k, v in request.parameters.items()}
        self._call(context, self.core.load_model, request.model_name, parameters)
        return pb.RepositoryModelLoadResponse()

    def RepositoryModelUnload(self, request, context):
        parameters = {k: _parameter(v) for k, v in request.parameters.items()}
        self._call(context, self.core.unload_model, request.model_name, parameters)
        return pb.RepositoryModelUnloadResponse()

    # ---- shared memory: system shared memory regions; no CUDA shared memory (no GPUs)
    def SystemSharedMemoryStatus(self, request, context):
        regions = self._call(context, self.core.shared_memory.status, request.name)
        response = pb.SystemSharedMemoryStatusResponse()
        for region in regions:
            response.regions[region["name"]].CopyFrom(
                pb.SystemSharedMemoryStatusResponse.RegionStatus(**region)
            )
        return response

    def SystemSharedMemoryRegister(self, request, context):
        self._call(
            context,
            self.core.shared_memory.register,
            request.name,
            request.key,
            request.offset,
            request.byte_size,
        )
        return pb.SystemSharedMemoryRegisterResponse()

    def SystemSharedMemoryUnregister(self, request, context):
        self._call(context, self.core.shared_memory.unregister, request.name)
        return pb.SystemSharedMemoryUnregisterResponse()

    def CudaSharedMemoryStatus(self, request, context):
        self._call(context, shared_memory.cuda_status, self.core.shared_memory, request.name)
        return pb.CudaSharedMemoryStatusResponse()

    def CudaSharedMemoryRegister(self, request, context):
        _abort(context, shared_memory.cuda_register_error(request.name))

    def CudaSharedMemoryUnregister(self, request, context):
        return pb.CudaSharedMemoryUnregisterResponse()

    # ---- logging and trace extensions
    def LogSettings(self, request, context):
        changes = {key: _log_value(value) for key, value in request.settings.items()}
        settings = self._call(context, self.core.log_setting, changes)
        response = pb.LogSettingsResponse()
        for key, value in settings.items():
            kind = (
                "bool_param"
                if isinstance(value, bool)
                else "uint32_param"
                if isinstance(value, int)
                else "string_param"
            )
            setattr(response.settings[key], kind, value)
        return response

    def TraceSetting(self, request, context):
        # an empty value list clears the setting (tritonclient sends None so)
        changes = {
            key: (
                None
                if not value.value
                else list(value.value)
                if key == "trace_level"
                else value.value[0]
            )
            for key, value in request.settings.items()
        }
        settings = self._call(context, self.core.trace_setting, request.model_name, changes or None)
        response = pb.TraceSettingResponse()
        for key, value in settings.items():
            response.settings[key].value.extend(value if isinstance(value, list) else [value])
        return response

    # ---- inference
    def ModelInfer(self, request, context):
        try:
            response = self.core.infer(decode_request(request), inline=True).result()
        except ServingError as exc:
            _abort(context, exc)
        except Exception as exc:
            log.exception("gRPC inference failed")
            _abort(context, internal(f"internal error: {type(exc).__name__}: {exc}"))
        return encode_response(response)

    def ModelStreamInfer(self, request_iterator, context) -> Iterator:
        """Requests of one stream run concurrently (so they can share dynamic batches);
        responses come back as they finish, errors in-band as ``error_message``.

        At most ``stream_in_flight`` requests of a stream are between being read and their
        response being handed to grpc: a client that does not read its responses stops being
        read from, and HTTP/2 flow control pushes back on it."""
        results: queue.Queue = queue.Queue()
        end, cancelled = object(), object()
        in_flight = threading.Semaphore(self.stream_in_flight)
        stopped = threading.Event()

        def stop() -> None:  # the call ended (finished, cancelled or timed out)
            stopped.set()
            in_flight.release()  # wakes a reader waiting for room
            results.put(cancelled)  # wakes the responder

        if not context.add_callback(stop):
            return

        def reader() -> None:
            submitted = 0
            try:
                for request in request_iterator:
                    in_flight.acquire()
                    if stopped.is_set():
                        return
                    try:
                        future = self.core.infer(decode_request(request))
                    except ServingError as exc:
                        results.put(
                            pb.ModelStreamInferResponse(
                                error_message=shorten(exc.message, MAX_ERROR_MESSAGE)
                            )
                        )
                        continue
                    except Exception as exc:  # noqa: BLE001
                        results.put(
                            pb.ModelStreamInferResponse(
                                error_message=f"internal error: {type(exc).__name__}: {exc}"
                            )
                        )
                        continue
                    submitted += 1
                    future.add_done_callback(results.put)
            except Exception:  # noqa: BLE001 - the client went away
                pass
            finally:
                results.put((end, submitted))

        threading.Thread(target=reader, daemon=True, name="popef-grpc-stream").start()
        finished = 0
        expected = None
        while expected is None or finished < expected:
            item = results.get()
            if item is cancelled:
                return
            if isinstance(item, tuple) and item and item[0] is end:
                expected = item[1]
                continue
            if isinstance(item, concurrent.futures.Future):
                finished += 1
                error = item.exception()
                if error is None:
                    yield pb.ModelStreamInferResponse(infer_response=encode_response(item.result()))
                else:
                    message = error.message if isinstance(error, ServingError) else str(error)
                    yield pb.ModelStreamInferResponse(
                        error_message=shorten(message, MAX_ERROR_MESSAGE)
                    )
            else:
                yield item
            in_flight.release()  # grpc took the response: room for one more request


def _log_value(value) -> Any:
    """A ``LogSettingsRequest`` value: its bool, number or string; None when unset."""
    kind = value.WhichOneof("parameter_choice")
    return getattr(value, kind) if kind else None


def decode_request(request) -> InferRequest:
    """A ``ModelInferRequest`` message as an :class:`InferRequest`."""
    if isinstance(request, _Undecodable):
        raise request.error
    raw = request.raw_input_contents
    # raw contents are for the inputs that are not in shared memory, in order (as Triton)
    in_memory = sum("shared_memory_region" not in t.parameters for t in request.inputs)
    if raw and len(raw) != in_memory:
        raise invalid(
            f"the request has {in_memory} inputs outside shared memory but "
            f"{len(raw)} raw_input_contents"
        )
    inputs = []
    raw_index = 0
    for tensor in request.inputs:
        parameters = {k: _parameter(v) for k, v in tensor.parameters.items()}
        if "shared_memory_region" in parameters:
            if tensor.HasField("contents"):
                raise invalid(
                    f"unexpected 'content' provided when using shared memory for "
                    f"input tensor '{tensor.name}' for model "
                    f"'{request.model_name}'"
                )
            inputs.append(
                InputTensor(
                    tensor.name, tensor.datatype, tuple(tensor.shape), parameters=parameters
                )
            )  # the core reads the region
            continue
        if raw:
            if tensor.HasField("contents"):
                raise invalid(
                    f"contents field must not be specified when using "
                    f"raw_input_contents for '{tensor.name}' for model "
                    f"'{request.model_name}'"
                )
            inputs.append(
                InputTensor(
                    tensor.name,
                    tensor.datatype,
                    tuple(tensor.shape),
                    raw=raw[raw_index],
                    parameters=parameters,
                )
            )
            raw_index += 1
            continue
        field = _CONTENTS.get(tensor.datatype)
        if field is None:
            raise invalid(
                f"input '{tensor.name}' of datatype '{tensor.datatype}' must be sent "
                "in raw_input_contents"
            )
        if not tensor.HasField("contents"):
            raise invalid(f"input '{tensor.name}' has no contents")
        used = [f.name for f, _ in tensor.contents.ListFields()]
        if used and used != [field]:
            raise invalid(
                f"input '{tensor.name}' of datatype '{tensor.datatype}' must send its "
                f"values in contents.{field}, got {', '.join(used)}"
            )
        inputs.append(
            InputTensor(
                tensor.name,
                tensor.datatype,
                tuple(tensor.shape),
                data=list(getattr(tensor.contents, field)),
                parameters=parameters,
            )
        )
    outputs = None
    if request.outputs:
        outputs = []
        for out in request.outputs:
            parameters = {k: _parameter(v) for k, v in out.parameters.items()}
            count = parameters.get("classification", 0) or 0
            if isinstance(count, bool) or not isinstance(count, int):
                raise invalid(f"output '{out.name}': classification must be a whole number")
            outputs.append(RequestedOutput(out.name, None, count, parameters))
    parameters = {k: _parameter(v) for k, v in request.parameters.items()}
    return InferRequest(
        request.model_name, request.model_version, request.id, parameters, inputs, outputs
    )


def encode_response(response: InferResponse):
    """An :class:`InferResponse` as a ``ModelInferResponse`` with ``raw_output_contents``."""
    Output = pb.ModelInferResponse.InferOutputTensor
    return pb.ModelInferResponse(
        model_name=response.model_name,
        model_version=response.model_version,
        id=response.id,
        outputs=[Output(name=o.name, datatype=o.datatype, shape=o.shape) for o in response.outputs],
        raw_output_contents=[b"" if o.in_shared_memory else o.raw() for o in response.outputs],
    )


def create_grpc_server(
    core: InferenceCore,
    address: str,
    *,
    max_workers: int = 64,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    limits: GrpcLimits | None = None,
):
    """A started-ready ``grpc.Server`` hosting the servicer at ``address``; ``(server, port)``.

    Port 0 picks a free port. ``max_message_size`` bounds requests (tritonclient's own limit is
    2 GiB); responses are not bounded. ``limits``: :class:`GrpcLimits` (its defaults when None).
    """
    limits = limits or GrpcLimits()
    server = grpc.server(
        concurrent.futures.ThreadPoolExecutor(max_workers, thread_name_prefix="popef-grpc"),
        options=[
            ("grpc.max_receive_message_length", max_message_size),
            ("grpc.max_send_message_length", -1),
            ("grpc.so_reuseport", 0),
            *limits.options(),
        ],
    )
    InferenceServicer(core).add_to_server(server)
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot listen for gRPC on {address}")
    return server, port
