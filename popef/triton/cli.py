"""``popef triton``: the ``poplar`` backend for NVIDIA Triton, and a real Triton to run it on.

    popef triton install-backend DIR      write DIR/poplar/model.py (--backend-directory DIR)
    popef triton setup [--env DIR]        make Triton's own environment (cached)
    popef triton run --model-repository R start tritonserver (Triton 2.51) on R

Thin click commands over :mod:`popef.triton.install` and :mod:`popef.triton.environment`;
heavy imports happen inside the commands.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

__all__ = ["triton_group"]

_CONTEXT = {"help_option_names": ["-h", "--help"]}


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


@click.group("triton", context_settings=_CONTEXT)
def triton_group() -> None:
    """Serve PopEF models on NVIDIA Triton with a Python-based poplar backend.

    The blog's repository (config.pbtxt with backend: "poplar", 1/executable.popef,
    1/name_map.json) runs unchanged on tritonserver once the backend directory holds
    poplar/model.py. See docs/deploy-triton.md.
    """


@triton_group.command("install-backend", context_settings=_CONTEXT)
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--python-backend",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    metavar="DIR",
    help="Also copy Triton's Python backend from DIR into DIRECTORY/python (e.g. "
    "/opt/tritonserver/backends/python in NGC containers) — needed when "
    "DIRECTORY is not Triton's own backend folder.",
)
def install_backend_command(directory: Path, python_backend: Path | None) -> None:
    """Write DIRECTORY/poplar/model.py, the poplar backend, for --backend-directory DIRECTORY.

    The file imports popef from the Python that Triton runs; when that Python cannot, it
    falls back to where this popef is installed. Triton also needs its Python backend in
    DIRECTORY/python (see --python-backend).
    """
    from ..errors import PopefError
    from .install import install_backend

    try:
        path = install_backend(directory, python_backend=python_backend)
    except (PopefError, OSError) as exc:
        _fail(str(exc))
    click.echo(str(path))
    if not (directory / "python" / "libtriton_python.so").is_file():
        click.echo(
            f"note: Triton runs Python-based backends with the Python backend of the "
            f"same folder: put it in {directory / 'python'} (--python-backend "
            f"/opt/tritonserver/backends/python), or install into Triton's own backend "
            f"folder (popef triton install-backend /opt/tritonserver/backends)",
            err=True,
        )


@triton_group.command("setup", context_settings=_CONTEXT)
@click.option(
    "--env",
    "env_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    metavar="DIR",
    help="Where to make it (default: $POPEF_TRITON_ENV, else ~/.cache/popef/triton/py3.X).",
)
@click.option("--force", is_flag=True, help="Make it again from scratch.")
@click.option(
    "--without",
    "without",
    multiple=True,
    metavar="EXECUTOR",
    type=click.Choice(["onnxruntime"]),
    help="Leave out the packages of this executor (may repeat); its models then "
    "cannot load on this Triton.",
)
def setup_command(env_dir: Path | None, force: bool, without: tuple[str, ...]) -> None:
    """Make the environment Triton runs in: nvidia-pytriton 0.7.0 (Triton 2.51), numpy<2,
    popef's dependencies, the onnxruntime executor's packages (onnxruntime, onnx), and this
    popef. Cached: a complete one is only checked; one made with other packages is brought
    up to date in place.

    Prints the environment's folder on stdout.
    """
    from .environment import TritonEnvError, setup

    try:
        env = setup(env_dir, force=force, without=without)
    except TritonEnvError as exc:
        _fail(str(exc))
    click.echo(str(env.path))


@triton_group.command(
    "run", context_settings={**_CONTEXT, "show_default": True, "ignore_unknown_options": True}
)
@click.option(
    "--model-repository",
    "--model-store",
    "repositories",
    multiple=True,
    required=True,
    type=click.Path(exists=True, file_okay=False),
    metavar="DIR",
    help="Model repository (may repeat).",
)
@click.option(
    "--backend-directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    metavar="DIR",
    help="Backend folder to lay out (python/ and poplar/) and use [default: <env>/backends].",
)
@click.option("--host", default="0.0.0.0", help="Address every service listens on.")
@click.option("--http-address", default=None, help="Address of the HTTP service (default --host).")
@click.option("--grpc-address", default=None, help="Address of the gRPC service (default --host).")
@click.option(
    "--metrics-address", default=None, help="Address of the metrics service (default --host)."
)
@click.option("--http-port", default=8000, type=click.IntRange(1, 65535), help="HTTP port.")
@click.option("--grpc-port", default=8001, type=click.IntRange(1, 65535), help="gRPC port.")
@click.option(
    "--metrics-port",
    default=8002,
    type=click.IntRange(0, 65535),
    help="Metrics port (0: no metrics).",
)
@click.option(
    "--env",
    "env_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    metavar="DIR",
    help="Triton's environment (default: $POPEF_TRITON_ENV, else "
    "~/.cache/popef/triton/py3.X); made when missing.",
)
@click.option(
    "--no-setup", is_flag=True, help="Fail instead of making the environment when it is missing."
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Lay out the backend folder, print the command, do not start it.",
)
@click.argument("tritonserver_args", nargs=-1, type=click.UNPROCESSED)
def run_command(
    repositories,
    backend_directory,
    host,
    http_address,
    grpc_address,
    metrics_address,
    http_port,
    grpc_port,
    metrics_port,
    env_dir,
    no_setup,
    dry_run,
    tritonserver_args,
) -> None:
    """Start a real tritonserver (Triton 2.51, from the nvidia-pytriton wheel) on the model
    repositories, with the poplar backend. Arguments after -- go to tritonserver as they are
    (e.g. -- --log-verbose=1 --model-control-mode=explicit).

    The process becomes tritonserver: signals reach it directly, and its exit status is the
    command's.
    """
    from ..errors import PopefError
    from .environment import TritonEnv, TritonEnvError, server_invocation, setup

    try:
        if no_setup:
            env = TritonEnv.load(env_dir)
        else:
            try:
                env = TritonEnv.load(env_dir)
            except TritonEnvError:
                env = setup(env_dir)
        invocation = server_invocation(
            env,
            repositories,
            backend_dir=backend_directory,
            host=host,
            http_port=http_port,
            grpc_port=grpc_port,
            metrics_port=metrics_port,
            http_address=http_address,
            grpc_address=grpc_address,
            metrics_address=metrics_address,
            extra_args=tritonserver_args,
        )
    except (PopefError, OSError) as exc:
        _fail(str(exc))
    if dry_run:
        click.echo(invocation.shell())
        return
    click.echo(
        f"popef triton: tritonserver {env.info().get('triton', '')} with backends in "
        f"{invocation.backend_dir}",
        err=True,
    )
    for executor in env.missing_executors():
        click.echo(
            f"note: the Triton environment has no {executor}: models with executor "
            f"'{executor}' will not load (popef triton setup --env {env.path} adds it)",
            err=True,
        )
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(invocation.command[0], invocation.command, invocation.env)
    except OSError as exc:
        _fail(f"cannot start {invocation.command[0]}: {exc}")
