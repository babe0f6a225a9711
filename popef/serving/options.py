"""The settings of a ``popef serve`` server, with every default stated once.

:class:`ServerOptions` is what a :class:`~popef.serving.server.Server` starts with; its field
defaults (and those of :class:`ConnectionLimits` and :class:`GrpcLimits`, which it holds) are
the server's defaults. ``popef serve``'s flags and the Ray application's options
(:class:`~popef.serving.ray.options.AppOptions`) take their defaults from here, and so do the
transports (``create_app``, ``create_grpc_server``) through the ``DEFAULT_*`` constants.

Nothing here imports uvicorn, starlette or grpc, so ``popef serve --help`` stays quick.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..servable.parameters import DEFAULT_EXECUTOR

if TYPE_CHECKING:  # settings.py is imported where a server starts, not for --help
    from .settings import LogSettings

__all__ = [
    "DEFAULT_BODY_STALL_TIMEOUT",
    "DEFAULT_BODY_TIMEOUT",
    "DEFAULT_HEADER_TIMEOUT",
    "DEFAULT_KEEPALIVE_TIMEOUT",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_MAX_HEADER_BYTES",
    "DEFAULT_MAX_INPUT_SIZE",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "DEFAULT_MAX_QUEUE_SIZE",
    "INFLIGHT_PER_INPUT_SIZE",
    "SERVER_NAME",
    "ConnectionLimits",
    "GrpcLimits",
    "ServerOptions",
    "server_defaults",
]

#: the server metadata name: tritonserver's default ``--id``, which clients check
SERVER_NAME = "triton"
#: requests one model version may hold queued before refusing more (HTTP 503)
DEFAULT_MAX_QUEUE_SIZE = 1024
#: the largest request body taken, in bytes (tritonserver's --http-max-input-size default)
DEFAULT_MAX_INPUT_SIZE = 64 * 1024 * 1024
#: the largest gRPC request message taken, in bytes (the HTTP side's default limit too)
DEFAULT_MAX_MESSAGE_SIZE = DEFAULT_MAX_INPUT_SIZE
#: seconds a request body may take to arrive, from the end of its headers
DEFAULT_BODY_TIMEOUT = 60.0
#: seconds a request body may go without a byte arriving (while the server reads it)
DEFAULT_BODY_STALL_TIMEOUT = 10.0
#: the default budget of request bytes in flight, in request bodies of the largest size
INFLIGHT_PER_INPUT_SIZE = 4
#: seconds a connection has to send a request's headers
DEFAULT_HEADER_TIMEOUT = 10.0
#: seconds an idle connection stays open after a response (uvicorn's default)
DEFAULT_KEEPALIVE_TIMEOUT = 5.0
#: open connections per HTTP service
DEFAULT_MAX_CONNECTIONS = 1000
#: bytes of a request's line and headers together (nginx takes 32 KiB, Node 16 KiB)
DEFAULT_MAX_HEADER_BYTES = 64 * 1024


@dataclass(frozen=True)
class ConnectionLimits:
    """Limits of an HTTP service's connections, in seconds: a connection must send a request's
    headers within ``header_timeout`` and is closed ``keepalive_timeout`` after a response when
    idle; a service keeps at most ``max_connections`` open (None: no limit for either). A
    request's line and headers take at most ``max_header_bytes`` (give or take one read)."""

    header_timeout: float | None = DEFAULT_HEADER_TIMEOUT  # None: no limit
    keepalive_timeout: float = DEFAULT_KEEPALIVE_TIMEOUT
    max_connections: int | None = DEFAULT_MAX_CONNECTIONS  # None: no limit
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES

    def __post_init__(self) -> None:
        if self.header_timeout is not None and self.header_timeout <= 0:
            raise ValueError(f"header_timeout must be > 0 seconds, got {self.header_timeout}")
        if self.keepalive_timeout < 0:
            raise ValueError(
                f"keepalive_timeout must be >= 0 seconds, got {self.keepalive_timeout}"
            )
        if self.max_connections is not None and self.max_connections < 1:
            raise ValueError(f"max_connections must be >= 1, got {self.max_connections}")
        if self.max_header_bytes < 1:
            raise ValueError(f"max_header_bytes must be >= 1, got {self.max_header_bytes}")


@dataclass(frozen=True)
class GrpcLimits:
    """Connection settings of the gRPC server, in milliseconds like tritonserver's flags.

    The keepalive and ping fields take tritonserver's flags and defaults
    (``--grpc-keepalive-time``, …); ``0`` for ``max_connection_age`` means none. The rest are
    ours: a connection must finish its HTTP/2 handshake within ``handshake_timeout`` and is
    closed after ``max_connection_idle`` without a call (clients reconnect on their next call);
    one connection may run ``max_concurrent_streams`` calls at once (0: grpcio's default, no
    limit). ``0`` for ``max_connection_idle`` means no limit too.
    """

    keepalive_time: int = 7_200_000
    keepalive_timeout: int = 20_000
    keepalive_permit_without_calls: bool = False
    http2_max_pings_without_data: int = 2
    http2_min_recv_ping_interval_without_data: int = 300_000
    http2_max_ping_strikes: int = 2
    max_connection_age: int = 0
    max_connection_age_grace: int = 0
    max_connection_idle: int = 300_000
    handshake_timeout: int = 10_000
    max_concurrent_streams: int = 0

    def options(self) -> list[tuple[str, int]]:
        """The ``grpc.server`` channel arguments."""
        arguments = [
            ("grpc.keepalive_time_ms", self.keepalive_time),
            ("grpc.keepalive_timeout_ms", self.keepalive_timeout),
            ("grpc.keepalive_permit_without_calls", int(self.keepalive_permit_without_calls)),
            ("grpc.http2.max_pings_without_data", self.http2_max_pings_without_data),
            (
                "grpc.http2.min_ping_interval_without_data_ms",
                self.http2_min_recv_ping_interval_without_data,
            ),
            ("grpc.http2.max_ping_strikes", self.http2_max_ping_strikes),
            ("grpc.server_handshake_timeout_ms", self.handshake_timeout),
        ]
        if self.max_concurrent_streams:
            arguments.append(("grpc.max_concurrent_streams", self.max_concurrent_streams))
        if self.max_connection_age:
            arguments += [
                ("grpc.max_connection_age_ms", self.max_connection_age),
                ("grpc.max_connection_age_grace_ms", self.max_connection_age_grace),
            ]
        if self.max_connection_idle:
            arguments.append(("grpc.max_connection_idle_ms", self.max_connection_idle))
        return arguments


@dataclass
class ServerOptions:
    """Everything a server starts with; each field has ``popef serve``'s default.

    Addresses left None listen on ``host``; port 0 picks a free one. ``exit_timeout``: seconds
    shutdown waits for requests in flight. ``http_max_inflight_bytes``: bytes of HTTP request
    bodies held at once (None: :data:`INFLIGHT_PER_INPUT_SIZE` x ``http_max_input_size``).
    ``log_settings``: the logging extension's settings (None: defaults, not applied to the
    logger).
    """

    model_repositories: Sequence[str | Path]
    host: str = "0.0.0.0"
    http_address: str | None = None  # None: host
    grpc_address: str | None = None
    metrics_address: str | None = None
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    allow_http: bool = True
    allow_grpc: bool = True
    allow_metrics: bool = True
    model_control_mode: str = "none"
    load_models: Sequence[str] = ()
    strict_readiness: bool = True
    exit_on_error: bool = False
    exit_timeout: float = 30.0
    executor: str = DEFAULT_EXECUTOR
    executor_options: dict = field(default_factory=dict)
    auto_complete: bool = True
    default_max_batch_size: int | None = None
    max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE
    model_config_name: str | None = None
    http_max_input_size: int = DEFAULT_MAX_INPUT_SIZE
    grpc_max_input_size: int = DEFAULT_MAX_MESSAGE_SIZE
    grpc_workers: int = 64
    # slow and idle clients (docs/serving.md, "Limits and timeouts")
    http_limits: ConnectionLimits = field(default_factory=ConnectionLimits)
    http_body_timeout: float | None = DEFAULT_BODY_TIMEOUT
    http_body_stall_timeout: float | None = DEFAULT_BODY_STALL_TIMEOUT
    http_max_inflight_bytes: int | None = None
    grpc_limits: GrpcLimits = field(default_factory=GrpcLimits)
    # the server metadata name (tritonserver's --id) and the logging extension's settings
    server_id: str = SERVER_NAME
    log_settings: LogSettings | None = None


def server_defaults() -> ServerOptions:
    """A :class:`ServerOptions` of defaults only (no repository): what flags and other
    front ends read their defaults from."""
    return ServerOptions(model_repositories=())
