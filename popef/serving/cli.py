"""``popef serve`` and ``popef triton-config``: thin click commands over the serving package.

``popef serve`` takes tritonserver's flags, so the commands of Graphcore's blog and test
harness work as they are (``--backend-directory`` is accepted and not needed: the Poplar
backend is built in). Heavy imports happen inside the commands so ``popef --help`` stays
instant.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

import click

from .options import INFLIGHT_PER_INPUT_SIZE, server_defaults
from .ray.options import MAX_REPLICAS, Scaling
from .settings import LogSettings

__all__ = ["serve_command", "triton_config_command"]

_BOOL = click.BOOL
#: every flag's default is the server's own (options.py states each one once)
_DEFAULTS = server_defaults()
_GRPC = _DEFAULTS.grpc_limits
_HTTP = _DEFAULTS.http_limits
_LOG = {name: p.default for name, p in inspect.signature(LogSettings).parameters.items()}
#: the most characters of an error line, once escaped (a message may quote a huge name)
MAX_ERROR_CHARS = 2000


def _fail(message: str) -> None:
    """One line ``error: …`` on stderr, exit 1. ``message`` may quote names from files, folders
    or flags: its control characters (ESC, CR, LF, bidi overrides...) are escaped and it is
    cut at :data:`MAX_ERROR_CHARS`."""
    from ..escaping import escape_text

    click.echo(f"error: {escape_text(message, backslashes=False, limit=MAX_ERROR_CHARS)}", err=True)
    sys.exit(1)


#: the longest ``--id``: the name is sent in every server metadata response
MAX_SERVER_ID = 256


def _check_server_id(server_id: str) -> None:
    """``--id`` is a non-empty, printable name of at most :data:`MAX_SERVER_ID` characters
    (the metadata name goes to clients' terminals and, over gRPC, must be valid UTF-8)."""
    if not server_id:
        _fail("--id must not be empty (tritonserver's default is 'triton')")
    if len(server_id) > MAX_SERVER_ID:
        _fail(f"--id has {len(server_id)} characters, the most is {MAX_SERVER_ID}")
    if not server_id.isprintable():
        _fail(f"--id must be printable text, got '{server_id}'")


def _need_serve_extra() -> None:
    """Fail with one line when the serve extra's packages are missing."""
    import importlib.util

    for module, package in (
        ("grpc", "grpcio"),
        ("google.protobuf", "protobuf"),
        ("tritonclient.grpc", "tritonclient[grpc]"),
        ("uvicorn", "uvicorn"),
        ("starlette", "starlette"),
    ):
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            _fail(f"serving needs the package '{package}': pip install 'popef[serve]'")


def _backend_config(entries: tuple[str, ...]) -> dict[str, str]:
    """``--backend-config=[<backend>,]<key>=<value>``: settings for this server's backend."""
    from ..servable import SUPPORTED_BACKENDS

    settings: dict[str, str] = {}
    for entry in entries:
        backend, _, setting = entry.rpartition(",")
        if backend and backend not in SUPPORTED_BACKENDS:
            continue  # another backend's setting: nothing here uses it
        key, sep, value = setting.partition("=")
        if not sep or not key:
            _fail(f"--backend-config expects [<backend>,]<setting>=<value>, got '{entry}'")
        settings[key.strip()] = value.strip()
    return settings


@click.command(
    "serve", context_settings={"help_option_names": ["-h", "--help"], "show_default": True}
)
@click.option(
    "--model-repository",
    "--model-store",
    "repositories",
    multiple=True,
    required=True,
    type=click.Path(file_okay=False),
    metavar="DIR",
    help="Model repository folder (may repeat).",
)
@click.option(
    "--backend-directory",
    metavar="DIR",
    help="Accepted for tritonserver compatibility; the poplar backend is built in.",
)
@click.option(
    "--backend-config",
    "backend_config",
    multiple=True,
    metavar="[BACKEND,]K=V",
    help="Backend settings: executor=NAME, executor.<option>=VALUE, default-max-batch-size=N.",
)
@click.option("--host", default=_DEFAULTS.host, help="Address every service listens on.")
@click.option(
    "--http-address",
    default=_DEFAULTS.http_address,
    help="Address of the HTTP service (default --host).",
)
@click.option(
    "--grpc-address",
    default=_DEFAULTS.grpc_address,
    help="Address of the gRPC service (default --host).",
)
@click.option(
    "--metrics-address",
    default=_DEFAULTS.metrics_address,
    help="Address of the metrics service (default --host).",
)
@click.option(
    "--http-port",
    default=_DEFAULTS.http_port,
    type=click.IntRange(0, 65535),
    help="HTTP port (0 picks a free one).",
)
@click.option(
    "--grpc-port",
    default=_DEFAULTS.grpc_port,
    type=click.IntRange(0, 65535),
    help="gRPC port (0 picks a free one).",
)
@click.option(
    "--metrics-port",
    default=_DEFAULTS.metrics_port,
    type=click.IntRange(0, 65535),
    help="Metrics port (0 picks a free one).",
)
@click.option("--allow-http", default=_DEFAULTS.allow_http, type=_BOOL, help="Serve the HTTP API.")
@click.option("--allow-grpc", default=_DEFAULTS.allow_grpc, type=_BOOL, help="Serve the gRPC API.")
@click.option(
    "--allow-metrics", default=_DEFAULTS.allow_metrics, type=_BOOL, help="Serve /metrics."
)
@click.option(
    "--id",
    "server_id",
    default=_DEFAULTS.server_id,
    show_default=True,
    help="Server name in the server metadata (tritonserver's --id; clients such "
    "as Triton's examples check it).",
)
@click.option(
    "--log-verbose",
    default=_LOG["verbose"],
    type=click.IntRange(0, 2**32 - 1),
    help="Verbose logging level (>0: debug).",
)
@click.option("--log-info", default=_LOG["info"], type=_BOOL, help="Log information messages.")
@click.option("--log-warning", default=_LOG["warning"], type=_BOOL, help="Log warnings.")
@click.option("--log-error", default=_LOG["error"], type=_BOOL, help="Log errors.")
@click.option(
    "--model-control-mode",
    default=_DEFAULTS.model_control_mode,
    type=click.Choice(["none", "explicit", "poll"]),
    metavar="[none|explicit]",
    help="none: load every model, no load/unload API; explicit: load --load-model "
    "models, clients load and unload. (tritonserver's poll is not supported.)",
)
@click.option(
    "--load-model",
    "load_models",
    multiple=True,
    metavar="NAME",
    help="With --model-control-mode=explicit: a model to load at start ('*': all).",
)
@click.option(
    "--strict-readiness",
    default=_DEFAULTS.strict_readiness,
    type=_BOOL,
    help="Ready only when every model is ready.",
)
@click.option(
    "--exit-on-error",
    default=_DEFAULTS.exit_on_error,
    type=_BOOL,
    help="Exit when a model fails to load (tritonserver's default is true; here a "
    "broken model is reported and the others are served).",
)
@click.option(
    "--exit-timeout-secs",
    default=round(_DEFAULTS.exit_timeout),
    type=click.IntRange(0, None),
    help="How long shutdown waits for requests in flight.",
)
@click.option(
    "--disable-auto-complete-config",
    is_flag=True,
    help="Require complete configs instead of completing them from the model file.",
)
@click.option(
    "--strict-model-config",
    default=None,
    type=_BOOL,
    help="Older tritonserver name: true is --disable-auto-complete-config.",
)
@click.option(
    "--model-config-name",
    default=_DEFAULTS.model_config_name,
    help="Read <model>/configs/<NAME>.pbtxt when it exists.",
)
@click.option(
    "--http-max-input-size",
    default=_DEFAULTS.http_max_input_size,
    type=click.IntRange(1, None),
    help="Largest HTTP request body, in bytes.",
)
@click.option(
    "--http-max-inflight-bytes",
    default=_DEFAULTS.http_max_inflight_bytes or 0,
    type=click.IntRange(0, None),
    help="Bytes of HTTP request bodies held at once by all requests together, at "
    "least --http-max-input-size; a request over it waits, then gets 503 "
    f"(0: {INFLIGHT_PER_INPUT_SIZE} x --http-max-input-size).",
)
@click.option(
    "--grpc-max-input-size",
    default=_DEFAULTS.grpc_max_input_size,
    type=click.IntRange(1, None),
    help="Largest gRPC request message, in bytes.",
)
@click.option(
    "--max-queue-size",
    default=_DEFAULTS.max_queue_size,
    type=click.IntRange(1, None),
    help="Requests a model may hold queued before answering UNAVAILABLE (HTTP 503); "
    "a config's default_queue_policy overrides it.",
)
@click.option(
    "--executor",
    default=None,
    help=f"Executor of models whose config names none (default {_DEFAULTS.executor}).",
)
@click.option(
    "--http-header-timeout-secs",
    default=_HTTP.header_timeout or 0,
    type=click.FloatRange(0, None),
    help="Close an HTTP connection that has not sent a request's headers this long "
    "after opening or after the request's first byte (0: no limit).",
)
@click.option(
    "--http-body-timeout-secs",
    default=_DEFAULTS.http_body_timeout or 0,
    type=click.FloatRange(0, None),
    help="Answer 408 to a request whose body has not arrived this long after its "
    "headers (0: no limit).",
)
@click.option(
    "--http-body-stall-timeout-secs",
    default=_DEFAULTS.http_body_stall_timeout or 0,
    type=click.FloatRange(0, None),
    help="Answer 408 to a request that receives no byte of its body this long, "
    "waiting for the budget aside (0: no limit).",
)
@click.option(
    "--http-keepalive-timeout-secs",
    default=_HTTP.keepalive_timeout,
    type=click.FloatRange(0, None),
    help="Close an HTTP connection idle this long after a response.",
)
@click.option(
    "--http-max-connections",
    default=_HTTP.max_connections or 0,
    type=click.IntRange(0, None),
    help="Open connections per HTTP service; at the limit a new one closes the "
    "slowest idle or stalled one (0: as many as the open-file limit allows).",
)
@click.option(
    "--grpc-keepalive-time",
    default=_GRPC.keepalive_time,
    type=click.IntRange(0, None),
    help="Milliseconds between keepalive pings the gRPC server sends.",
)
@click.option(
    "--grpc-keepalive-timeout",
    default=_GRPC.keepalive_timeout,
    type=click.IntRange(0, None),
    help="Milliseconds the gRPC server waits for a ping's answer.",
)
@click.option(
    "--grpc-keepalive-permit-without-calls",
    default=_GRPC.keepalive_permit_without_calls,
    type=_BOOL,
    help="Allow keepalive pings on gRPC connections without calls.",
)
@click.option(
    "--grpc-http2-max-pings-without-data",
    default=_GRPC.http2_max_pings_without_data,
    type=click.IntRange(0, None),
    help="Pings the gRPC server sends without data before it stops.",
)
@click.option(
    "--grpc-http2-min-recv-ping-interval-without-data",
    default=_GRPC.http2_min_recv_ping_interval_without_data,
    type=click.IntRange(0, None),
    help="Milliseconds a client's pings without data must be apart.",
)
@click.option(
    "--grpc-http2-max-ping-strikes",
    default=_GRPC.http2_max_ping_strikes,
    type=click.IntRange(0, None),
    help="Pings too close together before the gRPC server closes the connection.",
)
@click.option(
    "--grpc-max-connection-age",
    default=_GRPC.max_connection_age,
    type=click.IntRange(0, None),
    help="Milliseconds a gRPC connection may live (0: no limit).",
)
@click.option(
    "--grpc-max-connection-age-grace",
    default=_GRPC.max_connection_age_grace,
    type=click.IntRange(0, None),
    help="Milliseconds calls may finish after --grpc-max-connection-age.",
)
@click.option(
    "--grpc-max-connection-idle",
    default=_GRPC.max_connection_idle,
    type=click.IntRange(0, None),
    help="Close a gRPC connection without a call for this many milliseconds (0: no limit).",
)
@click.option(
    "--grpc-handshake-timeout",
    default=_GRPC.handshake_timeout,
    type=click.IntRange(1, None),
    help="Milliseconds a new gRPC connection has to complete its HTTP/2 handshake.",
)
@click.option(
    "--ray",
    "ray",
    is_flag=True,
    help="Serve on Ray Serve: replicas across a Ray cluster (docs/scale-out.md).",
)
@click.option(
    "--ray-address",
    default=None,
    metavar="ADDR",
    help="With --ray: the cluster to join (default: start a local Ray instance).",
)
@click.option(
    "--ray-num-replicas",
    default=None,
    type=click.IntRange(1, MAX_REPLICAS),
    help="With --ray: replicas (default: the largest instance_group count).",
)
@click.option(
    "--ray-min-replicas",
    default=None,
    type=click.IntRange(0, MAX_REPLICAS),
    help="With --ray: autoscaling's fewest replicas.",
)
@click.option(
    "--ray-max-replicas",
    default=None,
    type=click.IntRange(1, MAX_REPLICAS),
    help="With --ray: autoscaling's most replicas (turns autoscaling on).",
)
@click.option(
    "--ray-target-ongoing-requests",
    default=None,
    type=click.FloatRange(0, None, min_open=True),
    help="With --ray: requests per replica autoscaling aims at.",
)
@click.option(
    "--ray-num-cpus",
    default=None,
    type=click.FloatRange(0, None),
    help=f"With --ray: CPUs each replica reserves (default {Scaling.num_cpus:g}).",
)
@click.option(
    "--ray-retry-lost-requests",
    default=True,
    type=_BOOL,
    help="With --ray: send a request again when its replica dies before answering (one "
    "more hop per request); false: lower latency, such requests fail.",
)
def serve_command(
    repositories,
    backend_directory,
    backend_config,
    host,
    http_address,
    grpc_address,
    metrics_address,
    http_port,
    grpc_port,
    metrics_port,
    allow_http,
    allow_grpc,
    allow_metrics,
    log_verbose,
    log_info,
    log_warning,
    log_error,
    model_control_mode,
    load_models,
    strict_readiness,
    exit_on_error,
    exit_timeout_secs,
    disable_auto_complete_config,
    strict_model_config,
    model_config_name,
    http_max_input_size,
    grpc_max_input_size,
    max_queue_size,
    executor,
    http_header_timeout_secs,
    http_body_timeout_secs,
    http_body_stall_timeout_secs,
    http_keepalive_timeout_secs,
    http_max_connections,
    http_max_inflight_bytes,
    server_id,
    ray,
    ray_address,
    ray_num_replicas,
    ray_min_replicas,
    ray_max_replicas,
    ray_target_ongoing_requests,
    ray_num_cpus,
    ray_retry_lost_requests,
    **grpc_flags,
):
    """Serve the models of a Triton model repository over HTTP and gRPC (KServe v2).

    Works with stock tritonclient clients. Stop with Ctrl-C or SIGTERM: requests in flight
    finish first.
    """
    import logging
    import os
    import signal
    import threading

    _need_serve_extra()
    from ..servable.errors import ServingError
    from .options import ConnectionLimits, GrpcLimits, ServerOptions
    from .server import Server, configure_logging

    configure_logging(log_verbose, info=log_info, warning=log_warning, error=log_error)
    log = logging.getLogger("popef.serving")
    if model_control_mode == "poll":
        _fail("--model-control-mode=poll is not supported; use none or explicit")
    _check_server_id(server_id)
    if load_models and model_control_mode != "explicit":
        _fail("--load-model needs --model-control-mode=explicit")
    settings = _backend_config(backend_config)
    executor_name = executor or settings.pop("executor", None) or _DEFAULTS.executor
    executor_options = {
        k[len("executor.") :]: v for k, v in settings.items() if k.startswith("executor.")
    }
    default_mbs = settings.pop("default-max-batch-size", None)
    try:
        default_mbs = int(default_mbs) if default_mbs is not None else None
    except ValueError:
        _fail(f"default-max-batch-size must be a whole number, got '{default_mbs}'")
    for key in settings:
        if not key.startswith("executor."):
            log.warning("unknown backend setting '%s' ignored", key)
    if backend_directory:
        log.info(
            "the poplar backend is built in; --backend-directory '%s' is not used",
            backend_directory,
        )
    auto_complete = not disable_auto_complete_config and not strict_model_config
    if http_max_inflight_bytes and http_max_inflight_bytes < http_max_input_size:
        _fail(
            f"--http-max-inflight-bytes ({http_max_inflight_bytes}) must be at least "
            f"--http-max-input-size ({http_max_input_size})"
        )
    http_max_connections = _fit_open_file_limit(log, http_max_connections)
    options = ServerOptions(
        model_repositories=[Path(r) for r in repositories],
        host=host,
        http_address=http_address,
        grpc_address=grpc_address,
        metrics_address=metrics_address,
        http_port=http_port,
        grpc_port=grpc_port,
        metrics_port=metrics_port,
        allow_http=allow_http,
        allow_grpc=allow_grpc,
        allow_metrics=allow_metrics,
        model_control_mode=model_control_mode,
        load_models=load_models,
        strict_readiness=strict_readiness,
        exit_on_error=exit_on_error,
        exit_timeout=float(exit_timeout_secs),
        executor=executor_name,
        executor_options=executor_options,
        auto_complete=auto_complete,
        default_max_batch_size=default_mbs,
        max_queue_size=max_queue_size,
        model_config_name=model_config_name,
        http_max_input_size=http_max_input_size,
        grpc_max_input_size=grpc_max_input_size,
        http_limits=ConnectionLimits(
            header_timeout=http_header_timeout_secs or None,
            keepalive_timeout=http_keepalive_timeout_secs,
            max_connections=http_max_connections or None,
        ),
        http_body_timeout=http_body_timeout_secs or None,
        http_body_stall_timeout=http_body_stall_timeout_secs or None,
        http_max_inflight_bytes=http_max_inflight_bytes or None,
        server_id=server_id,
        log_settings=LogSettings(
            verbose=log_verbose, info=log_info, warning=log_warning, error=log_error, apply=True
        ),
        grpc_limits=GrpcLimits(
            **{name[len("grpc_") :]: value for name, value in grpc_flags.items()}
        ),
    )

    if ray or ray_address:
        from .ray.launcher import serve_on_ray

        try:
            serve_on_ray(
                options,
                ray_address,
                num_replicas=ray_num_replicas,
                min_replicas=ray_min_replicas,
                max_replicas=ray_max_replicas,
                target_ongoing_requests=ray_target_ongoing_requests,
                num_cpus=ray_num_cpus,
                retry_lost_requests=ray_retry_lost_requests,
            )
        except ServingError as exc:
            _fail(exc.message)
        return
    stop = threading.Event()
    received = []

    def on_signal(signum, frame):
        if received:
            log.warning("Signal (%d) received again, exiting now", signum)
            os._exit(1)
        received.append(signum)
        log.info("Signal (%d) received, stopping...", signum)
        stop.set()

    server = Server(options)
    # installed before start: a signal that arrives while models load still stops cleanly
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            server.start()
        except ServingError as exc:
            _fail(exc.message)  # the one line: no log record of it as well
        while not stop.wait(0.5):
            pass
        server.stop()
        log.info("server stopped")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


#: open files kept for gRPC connections, model files and the process itself
_RESERVED_FILES = 256


def _fit_open_file_limit(log, http_max_connections: int) -> int:
    """Raise the soft limit on open files to the hard limit (as Go programs do); when even
    that cannot hold ``--http-max-connections`` for both HTTP services, lower the connection
    limit to fit (so that it, not a failing accept, turns clients away) and say so."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Windows
        return http_max_connections
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        return http_max_connections
    fits = max(1, (soft - _RESERVED_FILES) // 2)  # the HTTP and the metrics services
    if http_max_connections == 0 or http_max_connections > fits:
        log.warning(
            "the open file limit is %d: --http-max-connections lowered from %s to %d "
            "(raise the limit with ulimit -n)",
            soft,
            http_max_connections or "none",
            fits,
        )
        return fits
    return http_max_connections


@click.command("triton-config", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--name-map",
    "name_map",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    metavar="JSON",
    help="name_map.json renaming anchors (default: the one beside FILE, if any).",
)
@click.option(
    "--max-batch-size",
    type=click.IntRange(0, None),
    default=None,
    help="max_batch_size (default: micro batch x device iterations x replicas).",
)
@click.option(
    "--name", default=None, help="Model name (default: the model folder, <name>/<version>/FILE)."
)
@click.option(
    "--executable", default=None, help="The executable to describe when FILE holds several."
)
def triton_config_command(file, name_map, max_batch_size, name, executable):
    """Print a Triton config.pbtxt (backend "poplar") for a PopEF FILE."""
    _need_serve_extra()
    from ..errors import PopefError
    from ..escaping import escape_text
    from ..runtime import ModelRunner
    from ..servable import (
        NAME_MAP_FILENAME,
        config_to_text,
        generate_config,
        read_name_map,
        signature_of,
    )
    from ..servable.errors import ServingError

    path = Path(file)
    try:
        if name_map is None and (path.parent / NAME_MAP_FILENAME).is_file():
            name_map = path.parent / NAME_MAP_FILENAME
        mapping = read_name_map(Path(name_map)) if name_map else None
        with ModelRunner(str(path), executable=executable) as runner:
            signature = signature_of(runner, mapping)
            model_name = runner.model.name
        if name is None:
            parent = path.resolve().parent
            name = parent.parent.name if parent.name.isdigit() else model_name
        config = generate_config(name, signature, max_batch_size)
    except ServingError as exc:
        _fail(exc.message)
    except PopefError as exc:
        _fail(str(exc))
    # names in the config are protobuf text escapes (config_to_text); the comment is escaped
    source = path.name + (f" and {Path(name_map).name}" if name_map else "")
    click.echo(
        f"# config.pbtxt for {escape_text(source, limit=MAX_ERROR_CHARS)}, written by "
        "popef triton-config"
    )
    click.echo(config_to_text(config), nl=False)
