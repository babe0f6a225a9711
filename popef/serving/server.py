"""The server process: the protocol core behind gRPC, HTTP and metrics listeners.

:class:`Server` loads the repository, starts a ``grpc`` server with the
:class:`InferenceServicer`, and runs the ASGI apps (inference API and metrics) on ``uvicorn``
in a thread of their own; it prints Triton's start-up lines (``Started GRPCInferenceService
at 0.0.0.0:8001``, ``Started HTTPService at 0.0.0.0:8000``, ``Started Metrics Service at
0.0.0.0:8002``) and the model status table. :meth:`Server.stop` shuts down gracefully: no new
requests are taken, requests in flight and queued finish (up to ``exit_timeout``), then the
models unload.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time

from ..servable.errors import ServingError, Status
from .connections import guarded_protocol, serving_event_loop
from .core import InferenceCore
from .grpc_servicer import create_grpc_server
from .http_app import create_app, create_metrics_app
from .logs import TRUSTED_LINES, GlogFormatter, configure_logging, model_table
from .options import ServerOptions
from .repository import ModelRepository, RepositoryOptions

__all__ = ["GlogFormatter", "Server", "ServerOptions", "configure_logging", "model_table"]

log = logging.getLogger("popef.serving")


class Server:
    """A running server; ``start()``, then ``stop()`` (or use it as a context manager)."""

    def __init__(self, options: ServerOptions) -> None:
        self.options = options
        self.core: InferenceCore | None = None
        self.grpc_server = None
        self.ports: dict[str, int] = {}
        self.addresses: dict[str, str] = {}
        self._uvicorn_servers: list = []
        self._uvicorn_thread: threading.Thread | None = None
        self._uvicorn_error: BaseException | None = None
        self._stopped = threading.Event()
        self._stopping = False

    # ---- start
    def start(self) -> Server:
        o = self.options
        repository = ModelRepository(
            o.model_repositories,
            RepositoryOptions(
                executor=o.executor,
                executor_options=dict(o.executor_options),
                auto_complete=o.auto_complete,
                default_max_batch_size=o.default_max_batch_size,
                max_queue_size=o.max_queue_size,
                config_name=o.model_config_name,
            ),
        )
        self.core = core = InferenceCore(
            repository,
            model_control_mode=o.model_control_mode,
            strict_readiness=o.strict_readiness,
            server_name=o.server_id,
            log_settings=o.log_settings,
        )
        # shared memory inputs are copied in: bounded as the largest inline request
        core.shared_memory.max_request_bytes = max(o.http_max_input_size, o.grpc_max_input_size)
        core.start(o.load_models)
        log.info("%s", model_table(repository), extra=TRUSTED_LINES)
        if o.exit_on_error and not repository.all_ready():
            repository.close(o.exit_timeout)
            raise ServingError("failed to load all models (--exit-on-error is on)")
        try:
            if o.allow_grpc:
                host = o.grpc_address or o.host
                self.grpc_server, port = create_grpc_server(
                    core,
                    _join(host, o.grpc_port),
                    max_workers=o.grpc_workers,
                    max_message_size=o.grpc_max_input_size,
                    limits=o.grpc_limits,
                )
                self.grpc_server.start()
                self.ports["grpc"], self.addresses["grpc"] = port, host
                log.info("Started GRPCInferenceService at %s", _join(host, port))
            apps = []
            if o.allow_http:
                apps.append(
                    (
                        "http",
                        "HTTPService",
                        o.http_address or o.host,
                        o.http_port,
                        create_app(
                            core,
                            max_input_size=o.http_max_input_size,
                            body_timeout=o.http_body_timeout,
                            body_stall_timeout=o.http_body_stall_timeout,
                            max_inflight_bytes=o.http_max_inflight_bytes,
                        ),
                    )
                )
            if o.allow_metrics:
                apps.append(
                    (
                        "metrics",
                        "Metrics Service",
                        o.metrics_address or o.host,
                        o.metrics_port,
                        create_metrics_app(core),
                    )
                )
            if apps:
                self._start_uvicorn(apps)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_uvicorn(self, apps) -> None:
        import uvicorn

        try:
            from uvicorn.protocols.http.httptools_impl import (
                HttpToolsProtocol as HttpBase,
            )
        except ImportError:  # pragma: no cover - h11 is uvicorn's own dependency
            from uvicorn.protocols.http.h11_impl import H11Protocol as HttpBase
        limits = self.options.http_limits
        http_protocol = guarded_protocol(HttpBase, limits)
        sockets = []
        for key, label, host, port, app in apps:
            try:
                sock = _bind(host, port)
            except OSError as exc:
                for s in sockets:
                    s.close()
                raise ServingError(
                    f"cannot listen for {label} on {_join(host, port)}: {exc}", Status.UNAVAILABLE
                ) from None
            sockets.append(sock)
            config = uvicorn.Config(
                app,
                lifespan="off",
                access_log=False,
                log_level="warning",
                log_config=None,  # our handler (logs.py) stays
                http=http_protocol,
                timeout_keep_alive=limits.keepalive_timeout,
                timeout_graceful_shutdown=max(1, int(self.options.exit_timeout)),
                server_header=False,
            )
            server = uvicorn.Server(config)
            self._uvicorn_servers.append((key, label, host, sock, server))

        def on_loop_error(loop: asyncio.AbstractEventLoop, context: dict) -> None:
            # after an accept failed (too many open files) asyncio retries a second later,
            # which fails once more when stop() has closed the listening socket meanwhile
            if self._stopping and "_start_serving" in repr(context.get("handle")):
                return
            loop.default_exception_handler(context)

        def run() -> None:
            loop = serving_event_loop()
            loop.set_exception_handler(on_loop_error)
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(
                    asyncio.gather(
                        *(
                            server.serve(sockets=[sock])
                            for _, _, _, sock, server in self._uvicorn_servers
                        )
                    )
                )
            except BaseException as exc:  # noqa: BLE001 - reported by start()
                self._uvicorn_error = exc
            finally:
                loop.close()

        self._uvicorn_thread = threading.Thread(target=run, name="popef-http", daemon=True)
        self._uvicorn_thread.start()
        deadline = time.monotonic() + 30
        while not all(s.started for *_, s in self._uvicorn_servers):
            if self._uvicorn_error is not None or not self._uvicorn_thread.is_alive():
                raise ServingError(
                    f"the HTTP server failed to start: {self._uvicorn_error}", Status.UNAVAILABLE
                )
            if time.monotonic() > deadline:
                raise ServingError("the HTTP server did not start within 30 s", Status.UNAVAILABLE)
            time.sleep(0.005)
        for key, label, host, sock, _ in self._uvicorn_servers:
            port = sock.getsockname()[1]
            self.ports[key], self.addresses[key] = port, host
            log.info("Started %s at %s", label, _join(host, port))

    # ---- stop
    def stop(self, timeout: float | None = None) -> None:
        """Graceful shutdown: refuse new requests, let those in flight finish, unload."""
        if self._stopping:
            self._stopped.wait()
            return
        self._stopping = True
        timeout = self.options.exit_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        try:
            core = self.core
            if core is not None:
                core.begin_shutdown()
                active = core._active
                if active:
                    log.info(
                        "Waiting for in-flight requests to complete. Timeout %g seconds", timeout
                    )
                    log.info("Active request count: %d", active)
            grpc_done = None
            if self.grpc_server is not None:
                grpc_done = self.grpc_server.stop(grace=timeout)
            for *_, server in self._uvicorn_servers:
                server.should_exit = True
            if core is not None:
                core.wait_idle(max(0.0, deadline - time.monotonic()))
            if grpc_done is not None:
                grpc_done.wait(max(0.0, deadline - time.monotonic()))
            if self._uvicorn_thread is not None:
                self._uvicorn_thread.join(max(0.0, deadline - time.monotonic()) + 1)
            if core is not None:
                core.repository.close(max(1.0, deadline - time.monotonic()))
                core.shared_memory.close()
        finally:
            self._stopped.set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._stopped.wait(timeout)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- addresses for clients
    def url(self, kind: str = "http") -> str:
        host = self.addresses[kind]
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        return _join(host, self.ports[kind])


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def _bind(host: str, port: int) -> socket.socket:
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock
