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
"""

from __future__ import annotations

import logging
import os

from ray import serve

from ...servable import ConfigError, read_config
from ...servable.errors import unavailable, unsupported
from ..core import EXTENSIONS, InferenceCore
from ..grpc_servicer import InferenceServicer
from ..http_app import create_app
from ..repository import ModelRepository, RepositoryOptions
from ..shared_memory import SystemSharedMemory
from .grpc_proxy import UNARY_RPCS
from .options import DEPLOYMENT_NAME, AppOptions

__all__ = ["REPLICA_HEADER", "PopefServer", "ReplicaCore", "ReplicaRepository"]

log = logging.getLogger("popef.serving")

#: the HTTP response header naming the replica that answered (``<replica id> <node ip> <pid>``)
REPLICA_HEADER = "popef-replica"
#: extensions a replica cannot offer (see the module docstring)
_NOT_ON_RAY = ("system_shared_memory", "cuda_shared_memory")
_STATE_OF_ONE_REPLICA = ("on Ray Serve each replica is a process of its own, possibly on "
                         "another machine")


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
        return super().load(name, config, states_max_batch_size=states_max_batch_size,
                            raise_on_error=raise_on_error)


class ReplicaSharedMemory(SystemSharedMemory):
    def register(self, name: str, key: str, offset: int, byte_size: int) -> None:
        raise unsupported(f"system shared memory is not available: {_STATE_OF_ONE_REPLICA}; "
                          "send tensors in the request")


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
        raise unavailable(f"explicit model load / unload is not allowed: "
                          f"{_STATE_OF_ONE_REPLICA} and loads the model repository at start; "
                          "redeploy the application to change models")

    unload_model = load_model


def build_core(options: AppOptions) -> ReplicaCore:
    """A started core serving ``options``' repositories."""
    repository_options = RepositoryOptions(
        executor_options=dict(options.executor_options), auto_complete=options.auto_complete,
        default_max_batch_size=options.default_max_batch_size,
        config_name=options.model_config_name)
    if options.executor:
        repository_options.executor = options.executor
    if options.max_queue_size is not None:
        repository_options.max_queue_size = options.max_queue_size
    repository = ReplicaRepository(list(options.model_repositories), repository_options)
    core = ReplicaCore(repository, strict_readiness=options.strict_readiness,
                       server_name=options.server_id)
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
    """The grpc ``ServicerContext`` the servicer expects, over Ray's request context:
    ``abort`` sets the status (which Ray's proxy sends back) and ends the call."""

    def __init__(self, ray_context) -> None:
        self._ray_context = ray_context

    def abort(self, code, details: str):
        if self._ray_context is not None:
            self._ray_context.set_code(code)
            self._ray_context.set_details(details)
        raise _Aborted(details)


class _Aborted(Exception):
    pass


class PopefServer:
    """One replica: the repository's protocol core behind Ray's HTTP and gRPC proxies."""

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

    def __serve_build_asgi_app__(self):
        app = create_app(self.core, max_input_size=self.options.http_max_input_size,
                         metrics=True)
        return _tagged(app, self.replica.encode())

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


def _forwarding(rpc: str):
    def method(self, request, grpc_context=None):
        return getattr(self.servicer, rpc)(request, _Context(grpc_context))

    method.__name__ = method.__qualname__ = rpc
    method.__doc__ = f"``inference.GRPCInferenceService/{rpc}`` through Ray's gRPC proxy."
    return method


for _rpc in UNARY_RPCS:
    setattr(PopefServer, _rpc, _forwarding(_rpc))

#: the deployment (options as ``popef serve`` or the builder set them come with ``.options``)
deployment = serve.deployment(name=DEPLOYMENT_NAME)(serve.ingress()(PopefServer))
