"""``popef serve --ray``: run the application on a local Ray instance or an existing cluster.

:class:`RayService` starts (or joins) Ray, starts Serve's HTTP and gRPC proxies on the given
addresses, deploys the application, and prints ``popef serve``'s start-up lines. ``stop()``
deletes the application; Ray itself is stopped only when this process started it.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass

from ...servable.errors import ServingError, Status
from ..options import ServerOptions, server_defaults
from .options import APP_NAME, DEPLOYMENT_NAME, AppOptions, Scaling

__all__ = ["RAY_ENVIRONMENT", "RayLaunch", "RayService", "app_options", "serve_on_ray"]

log = logging.getLogger("popef.serving")

_SERVER = server_defaults()

#: environment set for a Ray instance this process starts (its proxies and replicas inherit
#: it), unless already set: no usage reports, and proxies that spread requests over the
#: replicas of every node (Ray's default sends them to the proxy's own node first)
RAY_ENVIRONMENT = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_SERVE_PROXY_PREFER_LOCAL_NODE_ROUTING": "0",
}


@dataclass(frozen=True)
class RayLaunch:
    """Where the application runs: ``address`` of a cluster (None: start a local Ray with
    ``num_cpus`` CPUs, default all) and the proxies' listening addresses (port 0: a free one)."""

    address: str | None = None
    host: str = _SERVER.host
    http_port: int = _SERVER.http_port
    grpc_port: int = _SERVER.grpc_port
    allow_http: bool = _SERVER.allow_http
    allow_grpc: bool = _SERVER.allow_grpc
    num_cpus: int | None = None


class RayService:
    """The application on Ray; ``start()``, then ``stop()`` (or use it as a context manager)."""

    def __init__(self, options: AppOptions, launch: RayLaunch) -> None:
        self.options = options
        self.launch = launch
        self.scaling: Scaling | None = None
        self.ports: dict[str, int] = {}
        self._started_ray = False
        self._deployed = False

    def start(self) -> RayService:
        try:
            import ray
            from ray import serve
            from ray.serve.config import gRPCOptions
        except ImportError:
            raise ServingError(
                "serving on Ray needs the package 'ray[serve]': pip install 'popef[ray]'",
                Status.UNAVAILABLE,
            ) from None
        from . import GRPC_SERVICER_FUNCTION, build_app

        launch = self.launch
        self.scaling = scaling = self.options.scaling()  # config errors before Ray starts
        try:
            if launch.address is None:
                for key, value in RAY_ENVIRONMENT.items():
                    os.environ.setdefault(key, value)
                ray.init(
                    num_cpus=launch.num_cpus,
                    include_dashboard=False,
                    logging_level=logging.WARNING,
                    configure_logging=False,
                )
                self._started_ray = True
            else:
                ray.init(
                    address=launch.address, logging_level=logging.WARNING, configure_logging=False
                )
        except Exception as exc:  # noqa: BLE001 - Ray's errors have no common base
            where = f"the Ray cluster at '{launch.address}'" if launch.address else "Ray"
            raise ServingError(
                f"cannot start {where}: {_first_line(exc)}", Status.UNAVAILABLE
            ) from None
        try:
            self.ports = {
                "http": _port(launch.host, launch.http_port),
                "grpc": _port(launch.host, launch.grpc_port),
            }
            grpc = (
                gRPCOptions(
                    port=self.ports["grpc"], grpc_servicer_functions=[GRPC_SERVICER_FUNCTION]
                )
                if launch.allow_grpc
                else None
            )
            serve.start(
                http_options={"host": launch.host, "port": self.ports["http"]},
                **({"grpc_options": grpc} if grpc else {}),
            )
            serve.run(build_app(self.options, scaling), name=APP_NAME, route_prefix="/")
            self._deployed = True
        except BaseException as exc:
            self.stop()
            if isinstance(exc, ServingError):
                raise
            raise ServingError(
                f"cannot deploy the application on Ray: {_first_line(exc)}", Status.UNAVAILABLE
            ) from None
        if launch.allow_grpc:
            log.info("Started GRPCInferenceService at %s", _join(launch.host, self.ports["grpc"]))
        if launch.allow_http:
            log.info("Started HTTPService at %s", _join(launch.host, self.ports["http"]))
        log.info(
            "Ray Serve application '%s': deployment '%s' with %s",
            APP_NAME,
            DEPLOYMENT_NAME,
            _describe(scaling),
        )
        return self

    def stop(self) -> None:
        """Delete the application; shut Ray down when this process started it."""
        try:
            import ray
            from ray import serve
        except ImportError:  # pragma: no cover - start() failed the same way
            return
        if self._started_ray:
            try:
                serve.shutdown()
            finally:
                ray.shutdown()
                self._started_ray = False
        elif ray.is_initialized():
            try:
                if self._deployed:
                    serve.delete(APP_NAME)
            finally:
                ray.shutdown()
        self._deployed = False

    def url(self, kind: str = "http") -> str:
        host = self.launch.host
        host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        return _join(host, self.ports[kind])

    def __enter__(self) -> RayService:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _describe(scaling: Scaling) -> str:
    if scaling.autoscaling:
        target = (
            f", target {scaling.target_ongoing_requests:g} ongoing requests"
            if scaling.target_ongoing_requests is not None
            else ""
        )
        return (
            f"autoscaling from {scaling.min_replicas or 1} to {scaling.max_replicas} "
            f"replicas{target}"
        )
    return f"{scaling.num_replicas} replica{'s' if scaling.num_replicas != 1 else ''}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def _port(host: str, port: int) -> int:
    """``port``, or a free one for 0 (Ray's proxies need a number)."""
    if port:
        return port
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host or "0.0.0.0", 0))
        return sock.getsockname()[1]


def app_options(server: ServerOptions, **scaling) -> AppOptions:
    """The Ray application's options from ``popef serve``'s (``scaling``: the ``--ray-*``
    flags, None where not given)."""
    if server.model_control_mode != "none" or server.load_models:
        raise ServingError(
            "--ray serves every model of the repository: "
            "--model-control-mode=explicit and --load-model do not apply"
        )
    return AppOptions(
        tuple(str(p) for p in server.model_repositories),
        executor=server.executor,
        executor_options=dict(server.executor_options),
        auto_complete=server.auto_complete,
        default_max_batch_size=server.default_max_batch_size,
        max_queue_size=server.max_queue_size,
        model_config_name=server.model_config_name,
        http_max_input_size=server.http_max_input_size,
        strict_readiness=server.strict_readiness,
        server_id=server.server_id,
        **scaling,
    )


def serve_on_ray(server: ServerOptions, address: str | None, **scaling) -> None:
    """``popef serve --ray``: deploy, print the start-up lines, serve until SIGINT or SIGTERM,
    then delete the application (and stop the Ray instance this process started)."""
    import signal
    import threading

    options = app_options(server, **scaling)
    host = server.host
    launch = RayLaunch(
        address=address,
        host=server.http_address or host,
        http_port=server.http_port,
        grpc_port=server.grpc_port,
        allow_http=server.allow_http,
        allow_grpc=server.allow_grpc,
    )
    if server.grpc_address and server.grpc_address != launch.host:
        raise ServingError(
            "--ray runs Ray's HTTP and gRPC proxies on one address: give "
            "--host (or --http-address) only"
        )
    stop = threading.Event()

    def on_signal(signum, frame):
        if stop.is_set():
            log.warning("Signal (%d) received again, exiting now", signum)
            os._exit(1)
        log.info("Signal (%d) received, stopping...", signum)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    service = RayService(options, launch)
    try:
        service.start()
        for sig in previous:  # ray.init installs handlers of its own: ours come back
            signal.signal(sig, on_signal)
        while not stop.wait(0.5):
            pass
        service.stop()
        log.info("server stopped")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
