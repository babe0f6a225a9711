"""The Ray Serve deployment: one replica = one protocol core over the whole repository.

Each replica builds the same :class:`~popef.serving.core.InferenceCore` that ``popef serve``
runs and hosts its transports unchanged: the ASGI app of :mod:`popef.serving.http_app` behind
Ray's HTTP proxy (``serve.ingress``), and the :class:`~popef.serving.grpc_servicer.
InferenceServicer` behind Ray's gRPC proxy (one deployment method per RPC, forwarded). Dynamic
batching, validation, statistics and error texts are therefore those of ``popef serve``.

What differs, because a replica is one of several processes, possibly on several machines:

- each model runs one instance per replica (``instance_group`` counts become replicas);
- the model load / unload API is refused: every replica loads the repository at start;
- system shared memory is refused: a region registered with one replica is unknown to the
  others (and to other machines).

Ray's proxies do not send requests to the replicas directly but to a thin ingress,
:class:`PopefIngress`, which runs on the head node and forwards each request through a
deployment handle; a request whose replica dies before answering (its node lost, say) is
forwarded again to another replica (:mod:`popef.serving.ray.forwarding` says which failures
and why that is safe). With ``retry_lost_requests=False`` the proxies call the replicas
themselves (:class:`PopefDirectServer`): one Ray hop less per request, no retry.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from typing import Any

from ray import serve

from ...servable import ConfigError, read_config
from ...servable.errors import unavailable, unsupported
from ..core import EXTENSIONS, InferenceCore
from ..grpc_servicer import InferenceServicer
from ..http_app import create_app
from ..repository import ModelRepository, RepositoryOptions
from ..shared_memory import SystemSharedMemory
from .forwarding import HttpRequest, HttpResponse, call_asgi, with_retries
from .grpc_proxy import UNARY_RPCS
from .options import DEPLOYMENT_NAME, INGRESS_NAME, AppOptions

__all__ = [
    "REPLICA_HEADER",
    "GrpcAnswer",
    "PopefDirectServer",
    "PopefIngress",
    "PopefServer",
    "ReplicaCore",
    "ReplicaRepository",
]

log = logging.getLogger("popef.serving")
_SERVE_LOG = logging.getLogger("ray.serve")

#: the HTTP response header naming the replica that answered (``<replica id> <node ip> <pid>``)
REPLICA_HEADER = "popef-replica"
#: extensions a replica cannot offer (see the module docstring)
_NOT_ON_RAY = ("system_shared_memory", "cuda_shared_memory")
_STATE_OF_ONE_REPLICA = (
    "on Ray Serve each replica is a process of its own, possibly on another machine"
)


class ReplicaRepository(ModelRepository):
    """A model repository whose models run one instance each: Ray runs the replicas."""

    def load(self, name, config=None, *, states_max_batch_size=False, raise_on_error=True):
        if config is None:
            directory = self.scan().get(name)
            try:
                found = read_config(directory, self.options.config_name) if directory else None
            except ConfigError:
                found = None  # the plain load reports the error in the model's record
            if found is not None and found[0] is not None:
                config, states_max_batch_size = found
                kind = config.instance_group[0].kind if config.instance_group else None
                del config.instance_group[:]
                group = config.instance_group.add(count=1)
                if kind is not None:
                    group.kind = kind
        return super().load(
            name, config, states_max_batch_size=states_max_batch_size, raise_on_error=raise_on_error
        )


class ReplicaSharedMemory(SystemSharedMemory):
    def register(self, name: str, key: str, offset: int, byte_size: int) -> None:
        raise unsupported(
            f"system shared memory is not available: {_STATE_OF_ONE_REPLICA}; "
            "send tensors in the request"
        )


class ReplicaCore(InferenceCore):
    """The protocol core of one replica (see the module docstring)."""

    def __init__(self, repository: ModelRepository, **kwargs) -> None:
        super().__init__(repository, model_control_mode="none", **kwargs)
        self.shared_memory = ReplicaSharedMemory()

    def server_metadata(self) -> dict:
        metadata = super().server_metadata()
        metadata["extensions"] = [e for e in EXTENSIONS if e not in _NOT_ON_RAY]
        return metadata

    def load_model(self, name: str, parameters: dict | None = None) -> None:
        raise unavailable(
            f"explicit model load / unload is not allowed: "
            f"{_STATE_OF_ONE_REPLICA} and loads the model repository at start; "
            "redeploy the application to change models"
        )

    unload_model = load_model


def build_core(options: AppOptions) -> ReplicaCore:
    """A started core serving ``options``' repositories."""
    repository_options = RepositoryOptions(
        executor_options=dict(options.executor_options),
        auto_complete=options.auto_complete,
        default_max_batch_size=options.default_max_batch_size,
        config_name=options.model_config_name,
    )
    if options.executor:
        repository_options.executor = options.executor
    if options.max_queue_size is not None:
        repository_options.max_queue_size = options.max_queue_size
    repository = ReplicaRepository(list(options.model_repositories), repository_options)
    core = ReplicaCore(
        repository, strict_readiness=options.strict_readiness, server_name=options.server_id
    )
    core.start()
    return core


def _tagged(app, tag: bytes):
    """``app`` with the :data:`REPLICA_HEADER` on every HTTP response."""

    async def tagged(scope, receive, send):
        if scope["type"] != "http":
            return await app(scope, receive, send)

        async def send_tagged(message):
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", ()), (REPLICA_HEADER.encode(), tag)]
                message = {**message, "headers": headers}
            await send(message)

        return await app(scope, receive, send_tagged)

    return tagged


class _Context:
    """The grpc ``ServicerContext`` the servicer expects: ``abort`` records the status (which
    the ingress gives Ray's proxy) and ends the call."""

    def __init__(self) -> None:
        self.code = None
        self.details = ""

    def abort(self, code, details: str):
        self.code, self.details = code, details
        raise _Aborted(details)


class _Aborted(Exception):
    pass


@dataclass(frozen=True)
class GrpcAnswer:
    """A replica's answer to one gRPC call: the response, or the status it aborted with."""

    response: Any = None
    code: Any = None  # a grpc.StatusCode when the call was aborted
    details: str = ""


class PopefServer:
    """One replica: the repository's protocol core, called by :class:`PopefIngress`."""

    def __init__(self, options: AppOptions) -> None:
        self.options = options
        self.core = build_core(options)
        self.servicer = InferenceServicer(self.core)
        try:
            import ray

            replica = serve.get_replica_context().replica_id.unique_id
            node = ray.util.get_node_ip_address()
        except Exception:  # noqa: BLE001 - outside Ray (tests of the class itself)
            replica, node = "local", "127.0.0.1"
        self.replica = f"{replica} {node} {os.getpid()}"
        self.http_app = _tagged(
            create_app(self.core, max_input_size=options.http_max_input_size, metrics=True),
            self.replica.encode(),
        )

    async def http(self, request: HttpRequest) -> HttpResponse:
        """``request`` answered by ``popef serve``'s HTTP app."""
        return await call_asgi(self.http_app, request)

    def check_health(self) -> None:
        """Ray's health check: a replica that cannot serve is replaced."""
        if self.core._stopping:
            raise RuntimeError("the replica is shutting down")

    def replica_id(self) -> str:
        """``<replica id> <node ip> <pid>`` of this replica (as in the :data:`REPLICA_HEADER`)."""
        return self.replica

    def __del__(self) -> None:
        core = getattr(self, "core", None)
        if core is not None:
            core.close(timeout=10)


def _answering(rpc: str):
    def method(self, request) -> GrpcAnswer:
        context = _Context()
        try:
            return GrpcAnswer(getattr(self.servicer, rpc)(request, context))
        except _Aborted:
            return GrpcAnswer(code=context.code, details=context.details)

    method.__name__ = method.__qualname__ = rpc
    method.__doc__ = f"``inference.GRPCInferenceService/{rpc}``, answered by this replica."
    return method


for _rpc in UNARY_RPCS:
    setattr(PopefServer, _rpc, _answering(_rpc))


class PopefIngress:
    """What Ray's proxies call: forwards each request to a :class:`PopefServer` replica, and
    again to another one when that replica is lost before it answers."""

    def __init__(self, server, max_input_size: int) -> None:
        self.server = server  # a DeploymentHandle of PopefServer
        self.max_input_size = max_input_size
        self.retried = 0

    def retries(self) -> int:
        """How many times a request was sent again because its replica was lost."""
        return self.retried

    async def _forward(self, call, what: str):
        def counted() -> None:
            self.retried += 1

        # Serve's logger: its lines land in this replica's log file
        return await with_retries(call, what, logger=_SERVE_LOG, on_retry=counted)

    def __serve_build_asgi_app__(self):
        async def forward_http(scope, receive, send):  # a function: uvicorn reads it as ASGI 3
            await self._forward_http(scope, receive, send)

        return forward_http

    async def _forward_http(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            raise RuntimeError(f"unsupported ASGI scope type '{scope['type']}'")
        body = await _read_body(receive, self.max_input_size)
        client = scope.get("client")
        request = HttpRequest(
            method=scope["method"],
            path=scope["path"],
            query_string=scope.get("query_string", b""),
            headers=tuple((bytes(k), bytes(v)) for k, v in scope.get("headers", ())),
            body=body,
            http_version=scope.get("http_version", "1.1"),
            scheme=scope.get("scheme", "http"),
            client=tuple(client) if client else None,
        )
        try:
            response = await self._forward(
                lambda: self.server.http.remote(request), f"{request.method} {request.path}"
            )
        except Exception as exc:  # noqa: BLE001 - answered in Triton's words
            response = _unavailable_http(exc)
        await send(
            {"type": "http.response.start", "status": response.status, "headers": response.headers}
        )
        await send({"type": "http.response.body", "body": response.body})


def _forwarding(rpc: str):
    async def method(self, request, grpc_context=None):
        try:
            answer = await self._forward(lambda: getattr(self.server, rpc).remote(request), rpc)
        except Exception as exc:  # noqa: BLE001 - answered in Triton's words
            import grpc

            answer = GrpcAnswer(code=grpc.StatusCode.UNAVAILABLE, details=_lost(exc))
        return _reply(answer, grpc_context)

    method.__name__ = method.__qualname__ = rpc
    method.__doc__ = f"``inference.GRPCInferenceService/{rpc}`` through Ray's gRPC proxy."
    return method


for _rpc in UNARY_RPCS:
    setattr(PopefIngress, _rpc, _forwarding(_rpc))


def _reply(answer: GrpcAnswer, grpc_context):
    """``answer`` as Ray's gRPC proxy takes it: the response, or its status on the context."""
    if answer.code is None:
        return answer.response
    if grpc_context is not None:  # Ray's proxy sends this status back
        grpc_context.set_code(answer.code)
        grpc_context.set_details(answer.details)
    raise _Aborted(answer.details)


class PopefDirectServer(PopefServer):
    """A replica that Ray's proxies call themselves, without :class:`PopefIngress` (the
    application's ``retry_lost_requests=False``): one process hop less per request, but a
    request whose replica dies before answering fails (Ray answers it with an error)."""

    def __serve_build_asgi_app__(self):
        return self.http_app


def _answering_directly(rpc: str):
    answering = getattr(PopefServer, rpc)

    def method(self, request, grpc_context=None):
        return _reply(answering(self, request), grpc_context)

    method.__name__ = method.__qualname__ = rpc
    method.__doc__ = f"``inference.GRPCInferenceService/{rpc}`` through Ray's gRPC proxy."
    return method


for _rpc in UNARY_RPCS:
    setattr(PopefDirectServer, _rpc, _answering_directly(_rpc))


async def _read_body(receive, limit: int) -> bytes:
    """The request's body, up to ``limit + 1`` bytes (the replica refuses more in words)."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        if size <= limit:
            chunks.append(chunk[: limit + 1 - size])
        size += len(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _lifespan(receive, send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def _lost(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return (
        f"no replica of '{DEPLOYMENT_NAME}' could answer: "
        f"{lines[0] if lines else type(exc).__name__}"
    )


def _unavailable_http(exc: BaseException) -> HttpResponse:
    return HttpResponse(
        503, [(b"content-type", b"application/json")], json.dumps({"error": _lost(exc)}).encode()
    )


#: the deployments (options as ``popef serve`` or the builder set them come with ``.options``)
deployment = serve.deployment(name=DEPLOYMENT_NAME)(PopefServer)
ingress = serve.deployment(name=INGRESS_NAME)(serve.ingress()(PopefIngress))
#: the replicas when Ray's proxies call them without the ingress (``retry_lost_requests=False``)
direct_deployment = serve.deployment(name=DEPLOYMENT_NAME)(serve.ingress()(PopefDirectServer))
