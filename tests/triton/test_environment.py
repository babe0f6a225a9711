"""popef triton install-backend / setup / run, without a Triton: fake server trees."""

from __future__ import annotations

import configparser
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from popef.cli import main
from popef.triton import environment, install
from popef.triton.environment import TritonEnv, TritonEnvError

ROOT = Path(__file__).resolve().parents[2]


def fake_env(path: Path) -> TritonEnv:
    """The layout setup() leaves, with empty files in place of the binaries."""
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    site = path / "lib" / f"python{version}" / "site-packages"
    env = TritonEnv(path, site, version)
    for file in (
        env.python,
        env.tritonserver,
        env.stub,
        env.python_backend_dir / "libtriton_python.so",
        env.python_backend_dir / "triton_python_backend_utils.py",
    ):
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(b"fake " + file.name.encode())
    env.libs_dir.mkdir(parents=True)
    (env.triton_dir / "caches").mkdir()
    (path / "pyvenv.cfg").write_text("home = /usr/bin\n")
    env.marker.write_text(
        json.dumps(
            {
                "python": version,
                "site_packages": str(site),
                "requirements": environment.requirements(),
                "triton": environment.TRITON_VERSION,
            }
        )
    )
    return env


def isolated_python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    """``code`` run by this Python with no site-packages (-S) and no PYTHONPATH (-E), from
    ``cwd``."""
    return subprocess.run(
        [sys.executable, "-S", "-E", "-c", code],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_triton_extra_matches_the_setup_requirements():
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    extra = [
        line.strip()
        for line in parser["options.extras_require"]["triton"].splitlines()
        if line.strip()
    ]
    assert extra == list(environment.TRITON_REQUIREMENTS)


def test_requirements_are_popefs_own_with_numpy_below_2():
    wanted = environment.requirements()
    assert wanted[:2] == ["nvidia-pytriton==0.7.0", "numpy>=1.23,<2"]
    names = [environment._project(r) for r in wanted]
    assert names.count("numpy") == 1
    assert {"construct", "click", "rich"} <= set(names)
    assert not any("extra" in r for r in wanted)


def test_default_env_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("POPEF_TRITON_ENV", str(tmp_path / "chosen"))
    assert environment.default_env_dir() == tmp_path / "chosen"
    monkeypatch.delenv("POPEF_TRITON_ENV")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert environment.default_env_dir() == tmp_path / "cache" / "popef" / "triton" / f"py{version}"


def test_load_says_how_to_make_a_missing_env(tmp_path):
    with pytest.raises(TritonEnvError, match="popef triton setup --env"):
        TritonEnv.load(tmp_path / "nothing")
    env = fake_env(tmp_path / "env")
    assert TritonEnv.load(env.path).tritonserver == env.tritonserver
    env.stub.unlink()
    with pytest.raises(TritonEnvError, match="incomplete .no the stub for Python"):
        TritonEnv.load(env.path)


def test_libpython_dir_holds_the_shared_library():
    try:
        folder = environment.libpython_dir()
    except TritonEnvError as exc:
        assert "--enable-shared" in str(exc)
        return
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert (folder / f"libpython{version}.so.1.0").is_file()


def test_link_popef(tmp_path):
    env = fake_env(tmp_path / "env")
    link = environment.link_popef(env)
    import popef

    assert link.is_symlink() and link.resolve() == Path(popef.__file__).resolve().parent
    assert environment.link_popef(env) == link  # idempotent
    other = tmp_path / "other" / "popef"
    other.mkdir(parents=True)
    assert environment.link_popef(env, other).resolve() == other.resolve()
    link.unlink()
    (env.site_packages / "popef-0.1.0.dist-info").mkdir()
    assert environment.link_popef(env) is None  # popef installed there: left alone


def test_server_invocation_lays_out_the_backend_folder(tmp_path):
    env = fake_env(tmp_path / "env")
    repo = tmp_path / "models"
    repo.mkdir()
    invocation = environment.server_invocation(
        env,
        [repo],
        backend_dir=tmp_path / "backends",
        host="127.0.0.1",
        http_port=1,
        grpc_port=2,
        metrics_port=3,
        extra_args=["--log-verbose=1"],
        base_env={"PATH": "/usr/bin", "LD_LIBRARY_PATH": "/opt/x", "PYTHONPATH": "/nope"},
    )
    backends = (tmp_path / "backends").resolve()
    assert invocation.backend_dir == backends
    assert invocation.command == [
        str(env.tritonserver),
        f"--model-repository={repo.resolve()}",
        f"--backend-directory={backends}",
        f"--cache-directory={env.triton_dir / 'caches'}",
        "--http-address=127.0.0.1",
        "--http-port=1",
        "--grpc-address=127.0.0.1",
        "--grpc-port=2",
        "--metrics-address=127.0.0.1",
        "--metrics-port=3",
        "--allow-gpu-metrics=false",
        "--log-verbose=1",
    ]
    libs = invocation.env["LD_LIBRARY_PATH"].split(":")
    assert libs[0] == str(env.libs_dir) and libs[-1] == "/opt/x"
    assert invocation.env["PATH"] == f"{env.bin_dir}:/usr/bin"
    assert "PYTHONPATH" not in invocation.env
    python = backends / "python"
    for name in install.PYTHON_BACKEND_FILES:
        assert (python / name).is_file()
    assert (python / "triton_python_backend_stub").read_bytes() == env.stub.read_bytes()
    assert os.access(python / "triton_python_backend_stub", os.X_OK)
    model_py = (backends / "poplar" / "model.py").read_text()
    assert "from popef.triton.backend import TritonPythonModel" in model_py
    assert "LD_LIBRARY_PATH=" in invocation.shell() and "tritonserver" in invocation.shell()
    # again: refreshed in place
    environment.server_invocation(env, [repo], backend_dir=tmp_path / "backends", metrics_port=0)


def test_metrics_port_0_turns_metrics_off(tmp_path):
    env = fake_env(tmp_path / "env")
    invocation = environment.server_invocation(env, [tmp_path], metrics_port=0)
    assert "--allow-metrics=false" in invocation.command
    assert not any(a.startswith("--metrics-port") for a in invocation.command)
    assert invocation.backend_dir == env.default_backend_dir.resolve()


def test_a_foreign_python_backend_is_never_overwritten(tmp_path):
    env = fake_env(tmp_path / "env")
    theirs = tmp_path / "backends" / "python"
    theirs.mkdir(parents=True)
    for name in install.PYTHON_BACKEND_FILES:
        (theirs / name).write_text("theirs")
    with pytest.raises(Exception, match="already holds a Python backend that popef did not"):
        environment.server_invocation(env, [tmp_path], backend_dir=tmp_path / "backends")
    assert (theirs / "libtriton_python.so").read_text() == "theirs"


def test_model_py_falls_back_to_where_popef_is_installed(tmp_path):
    """The generated model.py imports the backend even where popef is not on sys.path."""
    path = install.install_backend(tmp_path / "backends")
    assert path == tmp_path / "backends" / "poplar" / "model.py"
    probe = (
        "import runpy, sys; sys.modules['triton_python_backend_utils'] = object(); "
        f"ns = runpy.run_path({str(path)!r}); "
        "print(ns['TritonPythonModel'].__module__)"
    )
    result = isolated_python(probe, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "popef.triton.backend"


def test_cli_install_backend(tmp_path):
    source = tmp_path / "triton_python"
    source.mkdir()
    for name in install.PYTHON_BACKEND_FILES:
        (source / name).write_text(name)
    result = CliRunner().invoke(main, ["triton", "install-backend", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "b" / "poplar" / "model.py").is_file()
    assert "note: Triton runs Python-based backends" in result.output
    result = CliRunner().invoke(
        main, ["triton", "install-backend", str(tmp_path / "b"), "--python-backend", str(source)]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "b" / "python" / "libtriton_python.so").read_text() == "libtriton_python.so"
    assert "note:" not in result.output


def test_cli_run_dry_run(tmp_path):
    env = fake_env(tmp_path / "env")
    repo = tmp_path / "models"
    repo.mkdir()
    result = CliRunner().invoke(
        main,
        [
            "triton",
            "run",
            "--model-repository",
            str(repo),
            "--env",
            str(env.path),
            "--host",
            "127.0.0.1",
            "--http-port",
            "9000",
            "--dry-run",
            "--no-setup",
            "--",
            "--log-verbose=1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "--http-port=9000" in result.output and "--log-verbose=1" in result.output
    assert str(env.tritonserver) in result.output


def test_cli_run_without_an_env(tmp_path):
    result = CliRunner().invoke(
        main,
        [
            "triton",
            "run",
            "--model-repository",
            str(tmp_path),
            "--env",
            str(tmp_path / "none"),
            "--no-setup",
        ],
    )
    assert result.exit_code == 1
    assert "popef triton setup --env" in result.output


def test_cli_help_lists_the_commands():
    result = CliRunner().invoke(main, ["triton", "--help"])
    assert result.exit_code == 0
    for name in ("install-backend", "setup", "run"):
        assert name in result.output


def test_requirements_hold_the_executors_packages_unless_left_out():
    wanted = environment.requirements()
    names = [environment._project(r) for r in wanted]
    assert {"onnxruntime", "onnx"} <= set(names)
    # numpy stays the one pin below 2: no executor package brings its own
    assert names.count("numpy") == 1
    ort = next(r for r in wanted if environment._project(r) == "onnxruntime")
    assert "<=" in ort or "==" in ort, "onnxruntime is capped at a release tested with numpy<2"
    without = environment.requirements(without=["onnxruntime"])
    assert not {"onnxruntime", "onnx"} & {environment._project(r) for r in without}
    assert without == wanted[: len(without)]
    with pytest.raises(
        TritonEnvError,
        match="unknown executor 'tensorflow' to leave out: expected one of 'onnxruntime'",
    ):
        environment.requirements(without=["tensorflow"])


def test_the_cli_offers_to_leave_out_every_executor():
    from popef.triton.cli import setup_command

    [option] = [p for p in setup_command.params if p.name == "without"]
    assert list(option.type.choices) == list(environment.EXECUTOR_REQUIREMENTS)


def test_missing_executors_are_judged_by_the_package_folder(tmp_path):
    env = fake_env(tmp_path / "env")
    assert env.missing_executors() == ["onnxruntime"]
    package = env.site_packages / "onnxruntime"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    assert env.has_package("onnxruntime") and env.missing_executors() == []


def test_run_notes_an_env_without_onnxruntime(tmp_path):
    env = fake_env(tmp_path / "env")
    repo = tmp_path / "models"
    repo.mkdir()
    args = [
        "triton",
        "run",
        "--model-repository",
        str(repo),
        "--env",
        str(env.path),
        "--no-setup",
        "--metrics-port",
        "0",
    ]
    # the server itself cannot start (fake binaries): only the lines before matter
    result = CliRunner().invoke(main, args)
    assert (
        "note: the Triton environment has no onnxruntime: models with executor "
        "'onnxruntime' will not load" in result.output
    )
    assert f"popef triton setup --env {env.path}" in result.output


def test_a_cached_env_made_without_onnxruntime_is_brought_up_to_date(tmp_path, monkeypatch):
    """An environment whose marker lists other requirements (one made before the executors'
    packages were installed) goes through pip again, in place; a current one does not."""
    env = fake_env(tmp_path / "env")
    info = json.loads(env.marker.read_text())
    info["requirements"] = environment.requirements(without=["onnxruntime"])
    env.marker.write_text(json.dumps(info))
    monkeypatch.setattr(environment, "libpython_dir", lambda: tmp_path)
    commands = []

    def fake_run(command, what, log, on_line=None):
        commands.append(list(command))

    def fake_output(command, cwd=None):
        if "-c" in command and "purelib" in command[-1]:
            return str(env.site_packages)
        return json.dumps({"numpy": "1.26.4", "popef_path": "x", "onnxruntime": "1.32.0"})

    monkeypatch.setattr(environment, "_run", fake_run)
    monkeypatch.setattr(environment, "_output", fake_output)
    made = environment.setup(env.path, log=lambda message: None)
    [pip] = commands
    assert pip[:3] == [str(env.python), "-m", "pip"]
    assert pip[-len(environment.requirements()) :] == environment.requirements()
    info = made.info()
    assert info["requirements"] == environment.requirements()
    assert info["executors"] == ["onnxruntime"] and info["onnxruntime"] == "1.32.0"
    commands.clear()
    environment.setup(env.path, log=lambda message: None)
    assert commands == []  # cached
    # leaving it out again is another set of requirements: pip runs, the marker says so
    environment.setup(env.path, log=lambda message: None, without=["onnxruntime"])
    assert len(commands) == 1 and made.info()["executors"] == []


def test_a_linked_popef_declares_its_executor_entry_points(tmp_path):
    """The link has no metadata of its own: a dist-info beside it declares popef's executor
    entry points, so that the environment's Python finds the onnxruntime executor."""
    env = fake_env(tmp_path / "env")
    stale = env.site_packages / "popef_triton_link-0.0.1.dist-info"
    stale.mkdir(parents=True)
    environment.link_popef(env)
    [folder] = env.site_packages.glob("popef_triton_link-*.dist-info")
    assert folder != stale
    text = (folder / "entry_points.txt").read_text()
    assert text.startswith("[popef.executors]\n")
    assert "onnxruntime = popef.runtime.executors.onnxruntime:OnnxRuntimeExecutor\n" in text
    from popef.runtime.executors import ENTRY_POINT_GROUP

    assert environment.EXECUTOR_ENTRY_POINT_GROUP == ENTRY_POINT_GROUP
    # what importlib.metadata makes of it, in a Python that sees only that folder
    probe = (
        "import importlib.metadata as m, json; print(json.dumps(sorted("
        "(p.name, p.value) for p in m.entry_points(group='popef.executors'))))"
    )
    script = (
        f"import sys; sys.path[:] = [{str(env.site_packages)!r}] + "
        f"[p for p in sys.path if 'site-packages' not in p]; {probe}"
    )
    result = isolated_python(script, tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [
        ["onnxruntime", "popef.runtime.executors.onnxruntime:OnnxRuntimeExecutor"]
    ]
    # a popef installed into the environment brings its own metadata: no link, no dist-info
    other = fake_env(tmp_path / "installed")
    (other.site_packages / "popef-0.1.0.dist-info").mkdir(parents=True)
    assert environment.link_popef(other) is None
    assert not list(other.site_packages.glob("popef_triton_link-*"))
