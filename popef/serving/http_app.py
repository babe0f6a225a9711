"""The HTTP/REST transport: an ASGI app (Starlette) over :class:`InferenceCore`.

KServe v2 with Triton's extensions: JSON tensors and the binary tensor data extension
(``Inference-Header-Content-Length``), model configuration, model repository and statistics.
Errors are ``{"error": message}`` with Triton's HTTP status for the error code.

::

    app = create_app(core)                      # any ASGI server can host it:
    uvicorn.run(app, port=8000)                 # popef serve does this for you
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import zlib
from typing import Any

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from ..escaping import shorten
from ..options import parse_bool
from ..servable.errors import (
    MAX_ERROR_MESSAGE,
    ServingError,
    Status,
    internal,
    invalid,
    not_found,
    unsupported,
)
from . import shared_memory
from .budget import DEFAULT_BUDGET_WAIT, ByteBudget, Reservation
from .connections import SERVER_PAUSE, ServerPause
from .core import InferenceCore
from .options import (
    DEFAULT_BODY_STALL_TIMEOUT,
    DEFAULT_BODY_TIMEOUT,
    DEFAULT_MAX_INPUT_SIZE,
    INFLIGHT_PER_INPUT_SIZE,
)
from .protocol import InferRequest, InferResponse, InputTensor, RequestedOutput

__all__ = [
    "DEFAULT_BODY_STALL_TIMEOUT",
    "DEFAULT_BODY_TIMEOUT",
    "DEFAULT_MAX_INPUT_SIZE",
    "FREE_BODY_BYTES",
    "INFLIGHT_PER_INPUT_SIZE",
    "create_app",
    "create_metrics_app",
]

log = logging.getLogger("popef.serving")

#: bodies larger than this are decoded in a worker thread, not on the event loop
_OFFLOAD_BYTES = 256 * 1024
#: the first bytes of every request body, outside the in-flight budget: small requests never
#: wait behind large ones (uvicorn buffers this much per connection anyway)
FREE_BODY_BYTES = 64 * 1024
#: a compressed body is inflated in pieces of this many bytes, each reserved first
_INFLATE_PIECE = 1024 * 1024

_JSON = "application/json"


def _dumps(data: Any) -> bytes:
    """Standard JSON only: a NaN or infinity that reaches here is a bug (ValueError), never
    a bare ``NaN`` on the wire."""
    return json.dumps(data, separators=(",", ":"), allow_nan=False).encode()


def _json(data: Any, status: int = 200) -> Response:
    return Response(_dumps(data), status, media_type=_JSON)


def _error(exc: ServingError) -> Response:
    return _json({"error": shorten(exc.message, MAX_ERROR_MESSAGE)}, exc.status.http_status)


def _empty(status: int) -> Response:
    return Response(b"", status)


def create_app(
    core: InferenceCore,
    *,
    max_input_size: int = DEFAULT_MAX_INPUT_SIZE,
    body_timeout: float | None = DEFAULT_BODY_TIMEOUT,
    body_stall_timeout: float | None = DEFAULT_BODY_STALL_TIMEOUT,
    max_inflight_bytes: int | None = None,
    inflight_wait: float | None = DEFAULT_BUDGET_WAIT,
    free_body_bytes: int = FREE_BODY_BYTES,
    metrics: bool = False,
) -> Starlette:
    """The v2 HTTP API of ``core`` as an ASGI app.

    ``max_input_size`` bounds request bodies (after decompression); a body that has not
    arrived ``body_timeout`` seconds after the request's headers is answered 408 and its
    connection closed (None: no limit), and so is one that receives no byte of its body for
    ``body_stall_timeout`` seconds while the app reads it — time spent waiting for the budget
    is the server's, not counted (None: no limit). ``max_inflight_bytes`` (default
    ``INFLIGHT_PER_INPUT_SIZE * max_input_size``, at least ``max_input_size``) bounds the
    bytes of all requests in flight together, taken as they arrive (and before each piece of
    a compressed body is inflated) beyond the first ``free_body_bytes`` of each body: a request
    that finds it spent waits up to ``inflight_wait`` seconds, then is answered 503; large JSON
    requests are decoded one at a time, off the event loop. With ``metrics``, the app also
    answers ``GET /metrics`` (for engines that host one app on one port).
    """
    if max_inflight_bytes is None:
        max_inflight_bytes = INFLIGHT_PER_INPUT_SIZE * max_input_size
    if max_inflight_bytes < max_input_size:
        raise ValueError(
            f"the in-flight byte budget ({max_inflight_bytes}) must be at least "
            f"the largest request body ({max_input_size})"
        )
    budget = ByteBudget(max_inflight_bytes, inflight_wait)
    # a JSON document takes about 10 times its size in Python objects while it is decoded
    # (and the decode holds the GIL anyway): one large decode at a time
    json_decodes = asyncio.Semaphore(1)

    async def receive_body(request: Request, reservation: Reservation) -> bytes:
        # bytes are reserved as they arrive, so a declared but unsent body holds nothing.
        # Two large requests that each hold part of the budget and wait for more are
        # settled by the bounded wait: the first to give up (503) lets the other go on.
        # A stalled body gives its bytes back after ``body_stall_timeout``; the wait for the
        # budget is not a stall (the server stopped reading), and the connection limit is told.
        pause = request.scope.setdefault(SERVER_PAUSE, ServerPause())
        chunks, size = [], 0
        stream = request.stream()
        while True:
            try:
                chunk = await asyncio.wait_for(anext(stream), body_stall_timeout)
            except StopAsyncIteration:
                break
            except asyncio.TimeoutError:  # noqa: UP041 - not yet the built-in one in 3.10
                raise _BodyStalled(body_stall_timeout) from None
            size += len(chunk)
            if size > max_input_size:
                raise _too_large(size, max_input_size)
            unreserved = size - free_body_bytes - reservation.held
            if unreserved > 0:
                with pause.held():
                    await reservation.grow(unreserved)
            chunks.append(chunk)
        return b"".join(chunks)

    async def inflate(body: bytes, encoding: str, reservation: Reservation) -> bytearray:
        # piece by piece in a worker thread, each piece reserved before it is inflated, so
        # neither the event loop nor the budget is overrun by a small body that inflates big
        inflater = _Inflater(body, encoding)
        inflated = bytearray()
        while not inflater.done:
            room = min(_INFLATE_PIECE, max_input_size + 1 - len(inflated))
            taken = await reservation.grow(room)
            piece = await asyncio.to_thread(inflater.inflate, room)
            reservation.give_back(taken - len(piece))
            inflated += piece
            if len(inflated) > max_input_size:
                raise _too_large(len(inflated), max_input_size)
        return inflated

    async def read_body(request: Request) -> bytes:
        length = request.headers.get("content-length")
        declared = None
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                raise invalid(f"bad Content-Length header {length!r}") from None
            if declared > max_input_size:
                raise _too_large(declared, max_input_size)
        reservation = request.state.reservation
        encoding = request.headers.get("content-encoding", "").strip().lower()
        if encoding not in ("", "identity"):
            _check_encoding(encoding)
        try:
            body = await asyncio.wait_for(receive_body(request, reservation), body_timeout)
        except asyncio.TimeoutError:  # noqa: UP041 - not yet the built-in one in Python 3.10
            raise _BodyTimeout(body_timeout) from None
        if encoding not in ("", "identity"):
            return await inflate(body, encoding, reservation)
        return body

    async def read_json(request: Request) -> dict:
        body = await read_body(request)
        if len(body) <= _OFFLOAD_BYTES:
            return _json_object(body)
        async with json_decodes:
            return await asyncio.to_thread(_json_object, body)

    def handler(function):
        async def endpoint(request: Request) -> Response:
            request.state.reservation = budget.reservation()
            try:
                return await function(request, **request.path_params)
            except ServingError as exc:
                return _error(exc)
            except _BodyTimeout as exc:
                # the rest of the body may still come: the connection cannot be reused
                return Response(
                    _dumps({"error": str(exc)}),
                    408,
                    media_type=_JSON,
                    headers={"Connection": "close"},
                )
            except ClientDisconnect:
                # nobody to answer: not a server failure
                log.debug(
                    "HTTP %s %s: the client disconnected before its request was read",
                    request.method,
                    shorten(request.url.path, 200),
                )
                return _empty(400)
            except Exception as exc:
                log.exception("HTTP %s %s failed", request.method, request.url.path)
                return _error(internal(f"internal error: {type(exc).__name__}: {exc}"))
            finally:
                request.state.reservation.release()

        endpoint.__name__ = function.__name__
        return endpoint

    # ---- health and metadata
    async def live(request):
        return _empty(200 if core.live() else 400)

    async def ready(request):
        return _empty(200 if core.ready() else 400)

    async def model_ready(request, model: str, version: str = ""):
        return _empty(200 if core.model_ready(model, version) else 400)

    async def server_metadata(request):
        return _json(core.server_metadata())

    async def model_metadata(request, model: str, version: str = ""):
        return _json(core.model_metadata(model, version))

    async def model_config(request, model: str, version: str = ""):
        from ..servable import config_to_dict

        return _json(config_to_dict(core.model_config(model, version)))

    async def statistics(request, model: str = "", version: str = ""):
        return _json({"model_stats": core.statistics(model, version)})

    # ---- repository
    async def repository_index(request):
        body = await read_json(request)
        # a boolean, not any JSON value: "false" is a word, not a true string
        ready_only = _bool(body.get("ready", False), "'ready'")
        return _json(core.repository_index(ready_only))

    async def load(request, model: str):
        parameters = _repository_parameters(await read_json(request))
        await asyncio.get_running_loop().run_in_executor(None, core.load_model, model, parameters)
        return _empty(200)

    async def unload(request, model: str):
        parameters = _repository_parameters(await read_json(request))
        await asyncio.get_running_loop().run_in_executor(None, core.unload_model, model, parameters)
        return _empty(200)

    # ---- shared memory: system shared memory regions; no CUDA shared memory (no GPUs)
    async def shm_status(request, region: str = ""):
        return _json(core.shared_memory.status(region))

    async def shm_register(request, region: str):
        key, offset, byte_size = shared_memory.register_arguments(await read_json(request))
        core.shared_memory.register(region, key, offset, byte_size)
        return _empty(200)

    async def shm_unregister(request, region: str = ""):
        core.shared_memory.unregister(region)
        return _empty(200)

    async def cuda_status(request, region: str = ""):
        return _json(shared_memory.cuda_status(core.shared_memory, region))

    async def cuda_register(request, region: str):
        raise shared_memory.cuda_register_error(region)

    async def cuda_unregister(request, region: str = ""):
        return _empty(200)

    # ---- logging and trace extensions: GET reads, POST updates and reads
    async def logging_setting(request):
        changes = await read_json(request) if request.method == "POST" else None
        return _json(core.log_setting(changes))

    async def trace_setting(request, model: str = ""):
        changes = await read_json(request) if request.method == "POST" else None
        return _json(core.trace_setting(model, changes))

    # ---- inference
    async def infer(request, model: str, version: str = ""):
        body = await read_body(request)
        header = request.headers.get("inference-header-content-length")
        if len(body) > _OFFLOAD_BYTES:
            loop = asyncio.get_running_loop()
            json_size = _json_size(header, len(body))
            async with json_decodes if json_size > _OFFLOAD_BYTES else _no_wait:
                infer_request = await loop.run_in_executor(
                    None, _decode_request, body, header, model, version
                )
                future = await loop.run_in_executor(None, core.infer, infer_request)
                # the core holds the inputs as arrays now: free the decoded JSON values
                # before the next decode starts
                infer_request.inputs = ()
        else:
            infer_request = _decode_request(body, header, model, version)
            future = core.infer(infer_request)
        response = await asyncio.wrap_future(future)
        binary_default = _bool(
            infer_request.parameters.get("binary_data_output", False),
            "parameter 'binary_data_output'",
        )
        return _encode_response(response, binary_default)

    async def not_found_route(request):
        return _error(not_found(f"no such endpoint: {request.method} {request.url.path}"))

    async def metrics_route(request):
        from .metrics import render_metrics

        return Response(
            render_metrics(core).encode(),
            200,
            media_type="text/plain; version=0.0.4; charset=utf-8",
        )

    m = "/v2/models/{model:str}"
    mv = "/v2/models/{model:str}/versions/{version:str}"
    routes = [
        Route("/v2/health/live", handler(live), methods=["GET"]),
        Route("/v2/health/ready", handler(ready), methods=["GET"]),
        Route("/v2", handler(server_metadata), methods=["GET"]),
        Route("/v2/models/stats", handler(statistics), methods=["GET"]),
        Route(m + "/stats", handler(statistics), methods=["GET"]),
        Route(mv + "/stats", handler(statistics), methods=["GET"]),
        Route(m, handler(model_metadata), methods=["GET"]),
        Route(mv, handler(model_metadata), methods=["GET"]),
        Route(m + "/ready", handler(model_ready), methods=["GET"]),
        Route(mv + "/ready", handler(model_ready), methods=["GET"]),
        Route(m + "/config", handler(model_config), methods=["GET"]),
        Route(mv + "/config", handler(model_config), methods=["GET"]),
        Route(m + "/infer", handler(infer), methods=["POST"]),
        Route(mv + "/infer", handler(infer), methods=["POST"]),
        Route("/v2/repository/index", handler(repository_index), methods=["POST"]),
        Route("/v2/repository/models/{model:str}/load", handler(load), methods=["POST"]),
        Route("/v2/repository/models/{model:str}/unload", handler(unload), methods=["POST"]),
        Route("/v2/logging", handler(logging_setting), methods=["GET", "POST"]),
        Route("/v2/trace/setting", handler(trace_setting), methods=["GET", "POST"]),
        Route(m + "/trace/setting", handler(trace_setting), methods=["GET", "POST"]),
        Route("/v2/systemsharedmemory/status", handler(shm_status), methods=["GET"]),
        Route(
            "/v2/systemsharedmemory/region/{region:str}/status",
            handler(shm_status),
            methods=["GET"],
        ),
        Route(
            "/v2/systemsharedmemory/region/{region:str}/register",
            handler(shm_register),
            methods=["POST"],
        ),
        Route("/v2/systemsharedmemory/unregister", handler(shm_unregister), methods=["POST"]),
        Route(
            "/v2/systemsharedmemory/region/{region:str}/unregister",
            handler(shm_unregister),
            methods=["POST"],
        ),
        Route("/v2/cudasharedmemory/status", handler(cuda_status), methods=["GET"]),
        Route(
            "/v2/cudasharedmemory/region/{region:str}/status", handler(cuda_status), methods=["GET"]
        ),
        Route(
            "/v2/cudasharedmemory/region/{region:str}/register",
            handler(cuda_register),
            methods=["POST"],
        ),
        Route("/v2/cudasharedmemory/unregister", handler(cuda_unregister), methods=["POST"]),
        Route(
            "/v2/cudasharedmemory/region/{region:str}/unregister",
            handler(cuda_unregister),
            methods=["POST"],
        ),
    ]
    if metrics:
        routes.append(Route("/metrics", metrics_route, methods=["GET"]))
    routes.append(
        Route("/{path:path}", not_found_route, methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
    )
    return Starlette(routes=routes)


def create_metrics_app(core: InferenceCore) -> Starlette:
    """An ASGI app answering ``GET /metrics`` with the Prometheus text of ``core``."""
    from .metrics import render_metrics

    async def metrics(request):
        return Response(
            render_metrics(core).encode(),
            200,
            media_type="text/plain; version=0.0.4; charset=utf-8",
        )

    async def other(request):
        return Response(b"not found: the metrics are at /metrics\n", 404, media_type="text/plain")

    return Starlette(
        routes=[
            Route("/metrics", metrics, methods=["GET"]),
            Route("/{path:path}", other, methods=["GET", "POST"]),
        ]
    )


# -- request and response bodies ----------------------------------------------------------------


class _BodyTimeout(Exception):
    """A body that did not arrive in time: answered 408, its connection closed."""

    def __init__(self, timeout: float) -> None:
        super().__init__(
            f"the request body did not arrive within {timeout:g} s of its headers "
            "(--http-body-timeout-secs)"
        )


class _BodyStalled(_BodyTimeout):
    def __init__(self, timeout: float) -> None:
        Exception.__init__(
            self,
            f"no byte of the request body arrived for {timeout:g} s "
            "(--http-body-stall-timeout-secs)",
        )


class _NonFinite(str):
    """``NaN``, ``Infinity``, ``-Infinity`` (which Python's json reads but standard JSON does
    not have) or a number too large for a double (``1e999``) in a request, as written; kept
    as a marker so that the error names the field."""

    def __repr__(self) -> str:
        return str(self)


def _float(text: str) -> float | _NonFinite:
    value = float(text)
    return value if value - value == 0 else _NonFinite(text)


def _loads(data: bytes | memoryview, what: str) -> Any:
    try:
        return json.loads(bytes(data), parse_constant=_NonFinite, parse_float=_float)
    except RecursionError:
        raise invalid(f"{what} is not accepted: its JSON is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise invalid(f"{what} is not valid JSON: {exc}") from None


def _check_numbers(document: Any, what: str, *, skip: re.Pattern | None = None) -> None:
    """No NaN or infinity anywhere in ``document`` (but at the paths ``skip`` matches, such as
    ``.inputs[0].data``, which the caller checks itself, naming the field)."""
    stack = [(document, "")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, _NonFinite):
            raise invalid(
                f"{what}: '{path.lstrip('.')}' is {value}, which is not a finite "
                "number (send non-finite tensor values as binary data)"
            )
        if isinstance(value, dict):
            stack.extend(
                (v, f"{path}.{k}")
                for k, v in value.items()
                if skip is None or not skip.fullmatch(f"{path}.{k}")
            )
        elif isinstance(value, list):
            stack.extend((v, f"{path}[{i}]") for i, v in enumerate(value))


# an input's values: checked by core._decode, which names the input
_INPUT_DATA = re.compile(r"\.inputs\[\d+\]\.data")


def _too_large(size: int, limit: int) -> ServingError:
    return ServingError(
        f"the request body of {size} bytes is over the limit of {limit} bytes "
        "(--http-max-input-size)",
        Status.INVALID_ARG,
    )


def _json_object(body: bytes | bytearray) -> dict:
    """A request body that is a JSON object (or empty: ``{}``), with finite numbers only."""
    if not body.strip():
        return {}
    value = _loads(body, "the request body")
    if not isinstance(value, dict):
        raise invalid("the request body must be a JSON object")
    _check_numbers(value, "the request body")
    return value


_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def _check_encoding(encoding: str) -> None:
    if encoding not in _WBITS:
        raise unsupported(f"Content-Encoding '{encoding}' is not supported (use gzip or deflate)")


class _Inflater:
    """A gzip or deflate body inflated a bounded piece at a time. The compressed input is fed
    in small slices, so that what zlib leaves unconsumed (and copies) stays small."""

    _INPUT_SLICE = 64 * 1024

    def __init__(self, body: bytes, encoding: str) -> None:
        self._encoding = encoding
        self._decompressor = zlib.decompressobj(_WBITS[encoding])
        self._input = memoryview(body)
        self._fed = 0
        self._unconsumed = b""
        self.done = False

    def inflate(self, room: int) -> bytes:
        """Up to ``room`` more inflated bytes; sets ``done`` once the stream has no more."""
        pieces, size = [], 0
        while size < room and not self.done:
            data = self._unconsumed
            if not data:
                data = self._input[self._fed : self._fed + self._INPUT_SLICE]
                self._fed += len(data)
            try:
                piece = self._decompressor.decompress(data, room - size)
            except zlib.error as exc:
                raise invalid(
                    f"cannot decompress the {self._encoding} request body: {exc}"
                ) from None
            self._unconsumed = self._decompressor.unconsumed_tail
            pieces.append(piece)
            size += len(piece)
            # zlib may still hold output when it filled ``room`` exactly: ask again
            input_left = self._unconsumed or self._fed < len(self._input)
            self.done = self._decompressor.eof or (not input_left and size < room)
        return b"".join(pieces)


def _bool(value: Any, what: str) -> bool:
    """A boolean request parameter (:func:`popef.options.parse_bool`'s words); 400 otherwise."""
    return parse_bool(value, what, invalid)


def _repository_parameters(body: dict) -> dict:
    """The ``parameters`` of a load or unload request: a JSON object (or none)."""
    parameters = body.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise invalid("'parameters' must be a JSON object")
    return parameters


def _tensor_parameters(kind: str, name: str, item: dict) -> dict:
    """The ``parameters`` of an input or output (``kind``) of a request: a JSON object,
    where a shared memory region comes alone (Triton's checks and texts)."""
    parameters = item.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise invalid(f"{kind} '{name}': 'parameters' must be a JSON object")
    if "shared_memory_region" in parameters:
        if kind == "input" and ("data" in item or "binary_data_size" in parameters):
            given = [
                f
                for f, present in (
                    ("'data'", "data" in item),
                    ("'binary_data_size'", "binary_data_size" in parameters),
                    ("'shared_memory_region'", True),
                )
                if present
            ]
            raise invalid(
                "Input must set only one of the following fields: 'data', "
                "'binary_data_size' in 'parameters', 'shared_memory_region' in "
                "'parameters'. But set " + " ".join(given)
            )
        if kind == "output" and "classification" in parameters:
            raise invalid("Output can't set both 'shared_memory_region' and 'classification'")
        if kind == "output" and _bool(
            parameters.get("binary_data", False),
            f"output '{shorten(name)}': parameter 'binary_data'",
        ):
            raise invalid("Output can't set both 'shared_memory_region' and 'binary_data'")
    return parameters


_no_wait = contextlib.nullcontext()


def _json_size(header: str | None, body_size: int) -> int:
    """The size of the JSON part of a body, from its ``Inference-Header-Content-Length``
    (decimal digits only, as a Content-Length) or, without one, the whole body."""
    if header is None:
        return body_size
    if not (header.isascii() and header.isdigit()):
        raise invalid(
            f"Inference-Header-Content-Length must be a decimal number of bytes, "
            f"got {shorten(header, 40)!r}"
        )
    json_size = int(header)
    if json_size > body_size:
        raise invalid(
            f"Inference-Header-Content-Length is {json_size} but the body has {body_size} bytes"
        )
    return json_size


def _decode_request(body: bytes, header: str | None, model: str, version: str) -> InferRequest:
    json_size = _json_size(header, len(body))
    document = _loads(memoryview(body)[:json_size], "the inference request")
    if not isinstance(document, dict):
        raise invalid("the inference request must be a JSON object")
    # the inputs' data is checked by the core, which names the input
    _check_numbers(document, "the inference request", skip=_INPUT_DATA)
    binary = memoryview(body)[json_size:]
    offset = 0
    inputs = []
    raw_inputs = document.get("inputs")
    if not isinstance(raw_inputs, list):
        raise invalid("the inference request needs an 'inputs' list")
    for i, item in enumerate(raw_inputs):
        if not isinstance(item, dict):
            raise invalid(f"inputs[{i}] must be a JSON object")
        name = item.get("name")
        datatype = item.get("datatype")
        shape = item.get("shape")
        if (
            not isinstance(name, str)
            or not isinstance(datatype, str)
            or not isinstance(shape, list)
        ):
            raise invalid(f"inputs[{i}] needs 'name', 'datatype' and 'shape'")
        parameters = _tensor_parameters("input", name, item)
        size = parameters.get("binary_data_size")
        if size is not None and "data" in item:
            raise invalid(
                f"input '{name}' has both 'data' and binary_data_size: send its "
                "values in one of them"
            )
        if size is not None:
            if isinstance(size, bool) or not isinstance(size, int) or size < 0:
                raise invalid(
                    f"input '{name}': binary_data_size must be a whole number of "
                    f"bytes, got {size!r}"
                )
            if offset + size > len(binary):
                raise invalid(
                    f"input '{name}': binary_data_size {size} runs past the "
                    f"{len(binary)} bytes of binary data in the request"
                )
            inputs.append(
                InputTensor(
                    name,
                    datatype,
                    tuple(shape),
                    raw=binary[offset : offset + size],
                    parameters=parameters,
                )
            )
            offset += size
        elif "shared_memory_region" in parameters:  # the core reads the region
            inputs.append(InputTensor(name, datatype, tuple(shape), parameters=parameters))
        else:
            if "data" not in item:
                raise invalid(f"input '{name}' has neither 'data' nor binary_data_size")
            inputs.append(
                InputTensor(name, datatype, tuple(shape), data=item["data"], parameters=parameters)
            )
    if offset != len(binary):
        raise invalid(
            f"the request has {len(binary)} bytes of binary data but the inputs' "
            f"binary_data_size add up to {offset}"
        )
    outputs = None
    raw_outputs = document.get("outputs")
    if raw_outputs is not None:
        if not isinstance(raw_outputs, list):
            raise invalid("'outputs' must be a list")
        outputs = []
        for i, item in enumerate(raw_outputs):
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise invalid(f"outputs[{i}] must be a JSON object with a 'name'")
            parameters = _tensor_parameters("output", item["name"], item)
            binary_flag = parameters.get("binary_data")
            count = parameters.get("classification", 0)
            if isinstance(count, bool) or not isinstance(count, int):
                raise invalid(
                    f"output '{item['name']}': classification must be a whole number, got {count!r}"
                )
            binary = (
                None
                if binary_flag is None
                else _bool(
                    binary_flag, f"output '{shorten(item['name'])}': parameter 'binary_data'"
                )
            )
            outputs.append(RequestedOutput(item["name"], binary, count, parameters))
    parameters = document.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise invalid("'parameters' must be a JSON object")
    if "binary_data_output" in parameters:  # checked before the request runs
        _bool(parameters["binary_data_output"], "parameter 'binary_data_output'")
    request_id = document.get("id", "")
    if not isinstance(request_id, str):
        raise invalid(
            f"'id' must be a string, got {type(request_id).__name__} "
            f"{shorten(json.dumps(request_id), 40)}"
        )
    return InferRequest(model, version, request_id, parameters, inputs, outputs)


def _encode_response(response: InferResponse, binary_default: bool) -> Response:
    outputs = []
    chunks = []
    for out in response.outputs:
        entry: dict[str, Any] = {"name": out.name, "datatype": out.datatype, "shape": out.shape}
        binary = out.binary if out.binary is not None else binary_default
        if out.in_shared_memory:
            pass  # as Triton: the data is in the region, the entry says no more
        elif binary:
            raw = out.raw()
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = out.json_data()
        outputs.append(entry)
    document: dict[str, Any] = {
        "model_name": response.model_name,
        "model_version": response.model_version,
    }
    if response.id:
        document["id"] = response.id
    if response.parameters:
        document["parameters"] = response.parameters
    document["outputs"] = outputs
    header = _dumps(document)
    if not chunks:
        return Response(header, 200, media_type=_JSON)
    return Response(
        header + b"".join(chunks),
        200,
        media_type="application/octet-stream",
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
