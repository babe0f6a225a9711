"""Server defaults are stated once, in :mod:`popef.serving.options`: ``popef serve``'s flags,
the Ray application's options and its launch settings take theirs from
:class:`ServerOptions`, so they cannot drift apart."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from popef.serving.options import (
    ConnectionLimits,
    GrpcLimits,
    ServerOptions,
    server_defaults,
)
from popef.serving.settings import LogSettings


class _Stop(Exception):
    pass


def _options_of_serve(monkeypatch, arguments: list[str]) -> ServerOptions:
    """The :class:`ServerOptions` that ``popef serve ARGUMENTS`` starts its server with."""
    from popef.cli import main
    from popef.serving import cli, server

    captured: list[ServerOptions] = []

    class CapturingServer:
        def __init__(self, options: ServerOptions) -> None:
            captured.append(options)

        def start(self):
            raise _Stop

    monkeypatch.setattr(server, "Server", CapturingServer)
    monkeypatch.setattr(server, "configure_logging", lambda *args, **kwargs: None)
    # the machine's open-file limit may lower --http-max-connections: not a default
    monkeypatch.setattr(cli, "_fit_open_file_limit", lambda log, connections: connections)
    result = CliRunner().invoke(main, ["serve", *arguments])
    assert isinstance(result.exception, _Stop), result.output
    assert len(captured) == 1
    return captured[0]


def test_serve_without_flags_starts_with_the_server_defaults(monkeypatch, tmp_path):
    options = _options_of_serve(monkeypatch, ["--model-repository", str(tmp_path)])
    expected = dataclasses.replace(
        server_defaults(), model_repositories=[tmp_path], log_settings=options.log_settings
    )
    assert options == expected
    assert options.log_settings.get() == LogSettings().get()


def test_every_serve_flag_default_is_a_server_default():
    """Each flag named after a field (``--http-port`` and ``http_port``, ``--grpc-keepalive-
    time`` and ``grpc_limits.keepalive_time``, ...) shows that field's default in ``--help``."""
    from popef.serving.cli import serve_command

    defaults = server_defaults()
    fields = {name: getattr(defaults, name) for name in vars(defaults)}
    fields.update(
        {f"grpc_{name}": value for name, value in dataclasses.asdict(defaults.grpc_limits).items()}
    )
    fields.update(
        {
            "server_id": defaults.server_id,
            "exit_timeout_secs": defaults.exit_timeout,
            "http_header_timeout_secs": defaults.http_limits.header_timeout,
            "http_keepalive_timeout_secs": defaults.http_limits.keepalive_timeout,
            "http_max_connections": defaults.http_limits.max_connections,
            "http_body_timeout_secs": defaults.http_body_timeout,
            "http_body_stall_timeout_secs": defaults.http_body_stall_timeout,
        }
    )
    log = LogSettings().get()
    fields.update(
        {
            "log_verbose": log["log_verbose_level"],
            "log_info": log["log_info"],
            "log_warning": log["log_warning"],
            "log_error": log["log_error"],
        }
    )
    compared = 0
    for parameter in serve_command.params:
        if parameter.name not in fields or parameter.multiple:
            continue
        expected = fields[parameter.name]
        if parameter.name == "executor":  # --executor unset: a --backend-config may name one
            assert parameter.default is None
            continue
        # flags spell "no limit" 0 where the options say None
        assert parameter.default == (
            0
            if expected is None and parameter.type.name in ("integer range", "float range")
            else expected
        ), parameter.name
        compared += 1
    assert compared >= 39  # every flag with a counterpart, not a lucky few


def test_serve_help_states_the_defaults():
    from popef.cli import main

    defaults = server_defaults()
    text = " ".join(
        CliRunner().invoke(main, ["serve", "--help"], terminal_width=200).output.split()
    )
    assert f"[default: {defaults.http_port};" in text
    assert f"(default {defaults.executor})" in text
    assert f"[default: {defaults.grpc_limits.keepalive_time};" in text


def test_the_ray_application_shares_the_server_defaults(tmp_path):
    from popef.serving.ray.launcher import RayLaunch, app_options
    from popef.serving.ray.options import AppOptions

    defaults = dataclasses.replace(server_defaults(), model_repositories=[tmp_path])
    assert app_options(defaults) == AppOptions((str(tmp_path),))
    launch = RayLaunch()
    assert (
        launch.host,
        launch.http_port,
        launch.grpc_port,
        launch.allow_http,
        launch.allow_grpc,
    ) == (
        defaults.host,
        defaults.http_port,
        defaults.grpc_port,
        defaults.allow_http,
        defaults.allow_grpc,
    )


def test_builder_arguments_default_to_the_server_defaults(tmp_path):
    from popef.serving.ray.options import AppOptions

    options = AppOptions.from_args({"model_repository": str(tmp_path)})
    defaults = server_defaults()
    for name in (
        "executor",
        "auto_complete",
        "default_max_batch_size",
        "max_queue_size",
        "model_config_name",
        "http_max_input_size",
        "strict_readiness",
        "server_id",
    ):
        assert getattr(options, name) == getattr(defaults, name), name


def test_the_options_module_imports_no_server_library():
    """``popef serve --help`` reads its defaults without importing uvicorn, starlette or grpc."""
    code = (
        "import sys, popef.serving.options, popef.serving.cli\n"
        "heavy = {'grpc', 'starlette', 'uvicorn', 'ray', 'tritonclient'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parent,
    ).stdout
    assert out.strip() == "[]"


def test_limits_are_checked_where_they_are_defined():
    with pytest.raises(ValueError, match="header_timeout"):
        ConnectionLimits(header_timeout=0)
    assert ("grpc.keepalive_time_ms", GrpcLimits().keepalive_time) in GrpcLimits().options()
    # the transports' modules still offer the names they always did
    from popef.serving.connections import ConnectionLimits as FromConnections
    from popef.serving.grpc_servicer import GrpcLimits as FromServicer
    from popef.serving.server import ServerOptions as FromServer

    assert (FromConnections, FromServicer, FromServer) == (
        ConnectionLimits,
        GrpcLimits,
        ServerOptions,
    )
