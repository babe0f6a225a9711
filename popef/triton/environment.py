"""A real ``tritonserver`` for development and tests: ``popef triton setup`` and ``run``.

NVIDIA ships Triton in containers; the one pip-installable distribution of the server is the
``nvidia-pytriton`` wheel, whose 0.7.0 release carries Triton 2.51.0 with its Python backend
(``pytriton/tritonserver/``: ``bin/tritonserver``, ``backends/python/``, one
``python_backend_stubs/3.X/triton_python_backend_stub`` per Python, shared libraries in
``nvidia_pytriton.libs/``). Its stub needs numpy < 2, so Triton runs in an environment of its
own — a virtual environment with ``nvidia-pytriton==0.7.0``, ``numpy<2``, this project's
runtime dependencies and the packages of the optional executors (:data:`EXECUTOR_REQUIREMENTS`:
onnxruntime, unless left out), with this ``popef`` linked in — which :func:`setup` prepares
once and caches (default ``~/.cache/popef/triton/py3.X``; ``POPEF_TRITON_ENV`` or ``--env``
choose another).

:func:`server_invocation` then lays out a backend directory (``python/``: the Python backend
with the stub for this Python; ``poplar/model.py``: the backend of this package) and gives
the command and environment that start ``tritonserver``: ``LD_LIBRARY_PATH`` to the bundled
libraries and libpython's folder, and ``PATH`` starting with the environment's ``bin/`` — the
stub's embedded Python ignores ``PYTHONPATH`` and takes its ``sys.prefix`` from the
``python3`` it finds on ``PATH``, which is how it gets the environment's site-packages (and
numpy 1.26) rather than the base interpreter's.
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .._version import __version__
from ..atomic import write_atomically
from ..errors import PopefError
from .install import install_backend, install_python_backend
from .progress import PipProgress

__all__ = [
    "ENV_VARIABLE",
    "EXECUTOR_REQUIREMENTS",
    "PYTRITON_VERSION",
    "SUPPORTED_PYTHONS",
    "TRITON_REQUIREMENTS",
    "TRITON_VERSION",
    "ServerInvocation",
    "TritonEnv",
    "TritonEnvError",
    "default_env_dir",
    "libpython_dir",
    "link_entry_points",
    "link_popef",
    "popef_executor_entry_points",
    "requirements",
    "runtime_requirements",
    "server_invocation",
    "setup",
]

PYTRITON_VERSION = "0.7.0"
TRITON_VERSION = "2.51.0"
#: what Triton's environment needs besides popef's own dependencies (setup.cfg's ``triton``
#: extra says the same; a test keeps them equal)
TRITON_REQUIREMENTS = (f"nvidia-pytriton=={PYTRITON_VERSION}", "numpy>=1.23,<2")
#: popef's runtime dependencies when its metadata cannot be read (a source tree on sys.path)
FALLBACK_RUNTIME_REQUIREMENTS = ("construct>=2.10.68,<2.11", "isal>=1.6", "click>=8.1", "rich>=13")
#: what each optional executor needs in Triton's environment, installed by default (``setup``'s
#: ``without`` leaves one out). onnxruntime 1.19 and later are built against numpy 2 and also run
#: with numpy 1.x; 1.32.0 (Python 3.11+) is the newest tested with numpy 1.26, hence the cap.
#: The setup's check runs a session with the environment's numpy.
EXECUTOR_REQUIREMENTS: dict[str, tuple[str, ...]] = {
    "onnxruntime": ("onnxruntime>=1.19,<=1.32.0", "onnx>=1.15,<1.24"),
}
ENV_VARIABLE = "POPEF_TRITON_ENV"
#: the entry point group of executors (popef.runtime.executors reads it; kept literal here so
#: that this module imports no runtime)
EXECUTOR_ENTRY_POINT_GROUP = "popef.executors"
#: popef's own executor entry points when its metadata cannot be read (setup.cfg says the same)
FALLBACK_EXECUTOR_ENTRY_POINTS = {
    "onnxruntime": "popef.runtime.executors.onnxruntime:OnnxRuntimeExecutor"
}
#: the distribution name under which a linked popef's entry points are declared
LINK_DISTRIBUTION = "popef_triton_link"
MARKER = "popef-triton.json"
#: Pythons the wheel has a stub for
SUPPORTED_PYTHONS = ((3, 8), (3, 9), (3, 10), (3, 11), (3, 12), (3, 13))
STUB_NAME = "triton_python_backend_stub"


class TritonEnvError(PopefError):
    """Triton's environment is missing, broken, or cannot be made on this machine."""


def default_env_dir() -> Path:
    """``$POPEF_TRITON_ENV``, else ``$XDG_CACHE_HOME/popef/triton/py3.X`` (``~/.cache/…``)."""
    chosen = os.environ.get(ENV_VARIABLE)
    if chosen:
        return Path(chosen).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "popef" / "triton" / f"py{sys.version_info[0]}.{sys.version_info[1]}"


def runtime_requirements() -> list[str]:
    """popef's own runtime dependencies, numpy left to :data:`TRITON_REQUIREMENTS`."""
    try:
        from importlib.metadata import PackageNotFoundError, requires

        try:
            declared = requires("popef") or []
        except PackageNotFoundError:
            declared = []
    except ImportError:  # pragma: no cover - Python < 3.8
        declared = []
    found = []
    for requirement in declared:
        spec, _, marker = requirement.partition(";")
        if "extra" in marker:
            continue
        spec = spec.strip()
        if _project(spec) == "numpy":
            continue
        found.append(spec if not marker.strip() else f"{spec}; {marker.strip()}")
    return found or list(FALLBACK_RUNTIME_REQUIREMENTS)


def requirements(without: Sequence[str] = ()) -> list[str]:
    """Everything :func:`setup` installs into Triton's environment: Triton, popef's runtime
    dependencies, and what the executors of :data:`EXECUTOR_REQUIREMENTS` need, except those
    named in ``without``."""
    unknown = sorted(set(without) - set(EXECUTOR_REQUIREMENTS))
    if unknown:
        raise TritonEnvError(
            f"unknown executor '{unknown[0]}' to leave out: expected one of "
            + ", ".join(f"'{name}'" for name in EXECUTOR_REQUIREMENTS)
        )
    executors = [
        spec
        for name, specs in EXECUTOR_REQUIREMENTS.items()
        if name not in without
        for spec in specs
    ]
    return [*TRITON_REQUIREMENTS, *runtime_requirements(), *executors]


def _project(spec: str) -> str:
    name = spec
    for sep in "<>=!~[ ;(":
        name = name.split(sep, 1)[0]
    return name.strip().lower().replace("_", "-")


def libpython_dir() -> Path:
    """The folder of this Python's shared ``libpython3.X.so.1.0``, which the stub links to."""
    libdir = sysconfig.get_config_var("LIBDIR")
    soname = sysconfig.get_config_var("INSTSONAME") or sysconfig.get_config_var("LDLIBRARY")
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    candidates = []
    if libdir and soname:
        candidates.append(Path(libdir) / soname)
    if libdir:
        candidates.append(Path(libdir) / f"libpython{version}.so.1.0")
    multiarch = sysconfig.get_config_var("MULTIARCH")
    if multiarch:
        candidates.append(Path("/usr/lib") / multiarch / f"libpython{version}.so.1.0")
    for candidate in candidates:
        if candidate.is_file() and candidate.name.endswith(".so.1.0"):
            return candidate.parent
    raise TritonEnvError(
        f"this Python ({sys.executable}) has no shared libpython{version}.so.1.0, which "
        f"Triton's Python backend stub links to: use a Python built with --enable-shared "
        f"(pyenv: PYTHON_CONFIGURE_OPTS=--enable-shared pyenv install {version}; Debian and "
        f"Ubuntu: apt-get install libpython{version})"
    )


@dataclass
class TritonEnv:
    """Triton's environment: a virtual environment holding ``nvidia-pytriton`` and numpy < 2."""

    path: Path
    site_packages: Path
    python_version: str  # "3.11"

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    @property
    def bin_dir(self) -> Path:
        return self.path / "bin"

    @property
    def triton_dir(self) -> Path:
        """The wheel's server tree (``bin/tritonserver``, ``backends/``, ``caches/``)."""
        return self.site_packages / "pytriton" / "tritonserver"

    @property
    def tritonserver(self) -> Path:
        return self.triton_dir / "bin" / "tritonserver"

    @property
    def libs_dir(self) -> Path:
        return self.site_packages / "nvidia_pytriton.libs"

    @property
    def stub(self) -> Path:
        return self.triton_dir / "python_backend_stubs" / self.python_version / STUB_NAME

    @property
    def python_backend_dir(self) -> Path:
        return self.triton_dir / "backends" / "python"

    @property
    def default_backend_dir(self) -> Path:
        return self.path / "backends"

    @property
    def marker(self) -> Path:
        return self.path / MARKER

    @classmethod
    def load(cls, path: str | os.PathLike | None = None) -> TritonEnv:
        """The environment :func:`setup` made at ``path``; :class:`TritonEnvError` (saying how
        to make it) when there is none or it is incomplete."""
        path = Path(path) if path is not None else default_env_dir()
        try:
            info = json.loads((path / MARKER).read_text(encoding="utf-8"))
            env = cls(path, Path(info["site_packages"]), str(info["python"]))
        except (OSError, ValueError, KeyError, TypeError):
            raise TritonEnvError(
                f"no Triton environment at '{path}': prepare it with "
                f"`popef triton setup --env {path}`"
            ) from None
        problems = env.problems()
        if problems:
            raise TritonEnvError(
                f"the Triton environment at '{path}' is incomplete "
                f"({problems[0]}): run `popef triton setup --env {path}` "
                "again"
            )
        return env

    def problems(self) -> list[str]:
        """What is missing for :func:`server_invocation` (empty when nothing is)."""
        found = []
        version = f"{sys.version_info[0]}.{sys.version_info[1]}"
        if self.python_version != version:
            found.append(f"it is for Python {self.python_version}, this is Python {version}")
        for label, p in (
            ("python", self.python),
            ("tritonserver", self.tritonserver),
            ("the bundled libraries", self.libs_dir),
            ("the Python backend", self.python_backend_dir / "libtriton_python.so"),
            (f"the stub for Python {self.python_version}", self.stub),
        ):
            if not p.exists():
                found.append(f"no {label} at {p}")
        return found

    def info(self) -> dict:
        try:
            return json.loads(self.marker.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def has_package(self, name: str) -> bool:
        """Whether the environment holds the import package ``name`` (e.g. ``onnxruntime``),
        judged by its folder in site-packages: no child process."""
        return (self.site_packages / name / "__init__.py").is_file()

    def missing_executors(self) -> list[str]:
        """The executors of :data:`EXECUTOR_REQUIREMENTS` whose package the environment
        lacks (an environment made with ``--without``, or by an older popef)."""
        return [name for name in EXECUTOR_REQUIREMENTS if not self.has_package(name)]


# -- setup ---------------------------------------------------------------------------------------

Log = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def setup(
    path: str | os.PathLike | None = None,
    *,
    force: bool = False,
    log: Log = _stderr,
    pip_args: Sequence[str] = (),
    retries: int = 1,
    without: Sequence[str] = (),
) -> TritonEnv:
    """Make (or check) Triton's environment at ``path``; cached when it is already complete.

    A virtual environment of this Python with :func:`requirements` installed by pip in one
    resolver run, this ``popef`` linked into it (:func:`link_popef`), and an import check of
    the backend with numpy < 2 (and of each executor's package: a session of onnxruntime).
    ``without`` names executors whose packages to leave out (``("onnxruntime",)``); an
    environment made with other requirements is brought up to date in place. ``force``
    rebuilds it from scratch.
    """
    path = Path(path) if path is not None else default_env_dir()
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if sys.version_info[:2] not in SUPPORTED_PYTHONS:
        raise TritonEnvError(
            f"nvidia-pytriton {PYTRITON_VERSION} has Triton stubs for Python "
            "3.8 to 3.13, not for Python " + version
        )
    if not sys.platform.startswith("linux"):
        raise TritonEnvError(f"tritonserver runs on Linux only, not on {sys.platform}")
    libpython_dir()  # fails early, with advice, on a Python without a shared libpython
    wanted = requirements(without)
    executors = [name for name in EXECUTOR_REQUIREMENTS if name not in without]
    if not force:
        try:
            env = TritonEnv.load(path)
        except TritonEnvError:
            env = None
        if env is not None and env.info().get("requirements") == wanted:
            link_popef(env)
            log(f"popef triton: the Triton environment at {path} is ready (cached)")
            return env
    start = time.monotonic()
    if path.exists() and any(path.iterdir()):
        if not (path / "pyvenv.cfg").is_file():
            raise TritonEnvError(
                f"'{path}' exists and is not a virtual environment; give an empty or new folder"
            )
        if force:
            shutil.rmtree(path)
    if (path / "pyvenv.cfg").is_file():
        log(f"popef triton: bringing the Triton environment at {path} up to date")
    else:
        log(f"popef triton: making the Triton environment at {path} (Python {version})")
    if not (path / "pyvenv.cfg").is_file():
        _run([sys.executable, "-m", "venv", str(path)], "create the virtual environment", log)
    python = path / "bin" / "python"
    log("popef triton: installing " + " ".join(wanted))
    # not --quiet: pip's lines are summarized on one status line of a terminal (PipProgress)
    command = [
        str(python),
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-input",
        "--progress-bar",
        "off",
        *pip_args,
        *wanted,
    ]
    for attempt in range(retries + 1):
        try:
            with PipProgress() as progress:
                _run(command, "install Triton's packages", log, progress.line)
            break
        except TritonEnvError:
            if attempt == retries:
                raise
            log("popef triton: pip failed; trying once more in 5 s")
            time.sleep(5)
    site = Path(
        _output(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]
        ).strip()
    )
    env = TritonEnv(path, site, version)
    problems = env.problems()
    if problems:
        raise TritonEnvError(
            f"nvidia-pytriton {PYTRITON_VERSION} did not install what was expected: {problems[0]}"
        )
    link_popef(env)
    # from the environment's folder: a source tree in the working folder would be on the
    # check's sys.path, with metadata the server does not have
    check = _output([str(python), "-c", _CHECK, *executors], cwd=path)
    info = {
        "python": version,
        "site_packages": str(site),
        "requirements": wanted,
        "pytriton": PYTRITON_VERSION,
        "triton": TRITON_VERSION,
        "made_by": f"popef {__version__}",
        "executors": executors,
        **json.loads(check),
    }
    text = json.dumps(info, indent=2) + "\n"
    write_atomically(env.marker, lambda file: file.write(text.encode("utf-8")))
    versions = "".join(f", {name} {info[name]}" for name in executors if name in info)
    log(
        f"popef triton: ready in {time.monotonic() - start:.0f} s (Triton {TRITON_VERSION}, "
        f"numpy {info['numpy']}{versions})"
    )
    return env


# Run in Triton's environment; its arguments name the executors whose packages to check.
_CHECK = """\
import json, sys, numpy
assert int(numpy.__version__.split(".")[0]) < 2, "numpy " + numpy.__version__
import tritonclient.grpc.model_config_pb2
import popef.triton.backend
found = {"numpy": numpy.__version__, "popef_path": popef.__path__[0]}
if "onnxruntime" in sys.argv[1:]:
    # a session through popef's executor: onnxruntime's numpy interface with numpy < 2
    import os, tempfile, onnxruntime
    from popef import DataType
    from popef.runtime import GraphBuilder, ModelRunner
    g = GraphBuilder()
    g.add_output(g.add_node("Relu", [g.add_input("x", DataType.F32, (2,))]), "y")
    with tempfile.TemporaryDirectory() as folder:
        g.save(os.path.join(folder, "check.popef"))
        with ModelRunner(os.path.join(folder, "check.popef"), executor="onnxruntime") as runner:
            y = runner.execute({"x": numpy.array([-1.0, 2.0], numpy.float32)})["y"]
    assert y.tolist() == [0.0, 2.0], y
    found["onnxruntime"] = onnxruntime.__version__
print(json.dumps(found))
"""


def link_popef(env: TritonEnv, package_dir: Path | None = None) -> Path | None:
    """Make this ``popef`` importable in ``env``: a symlink ``site-packages/popef`` to its
    package folder (editable or installed alike), and its executor entry points beside it
    (:func:`link_entry_points`). An environment into which popef was pip-installed keeps that
    install; returns the link, or None then."""
    package_dir = package_dir or Path(__file__).resolve().parent.parent
    link = env.site_packages / "popef"
    if link.is_symlink():
        if Path(os.readlink(link)) == package_dir:
            link_entry_points(env)
            return link
        link.unlink()
    elif link.exists():
        return None  # a real install of popef in the environment
    if any(env.site_packages.glob("popef-*.dist-info")):
        return None  # e.g. `pip install -e .[triton]` into the environment
    tmp = link.with_name(f".popef.{os.getpid()}.tmp")
    if tmp.is_symlink():
        tmp.unlink()
    tmp.symlink_to(package_dir, target_is_directory=True)
    os.replace(tmp, link)
    link_entry_points(env)
    return link


def popef_executor_entry_points() -> dict[str, str]:
    """The ``popef.executors`` entry points this ``popef`` declares (name → object), from its
    installed metadata; :data:`FALLBACK_EXECUTOR_ENTRY_POINTS` for a source tree on sys.path."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        points = distribution("popef").entry_points
    except PackageNotFoundError:
        return dict(FALLBACK_EXECUTOR_ENTRY_POINTS)
    found = {p.name: p.value for p in points if p.group == EXECUTOR_ENTRY_POINT_GROUP}
    return found or dict(FALLBACK_EXECUTOR_ENTRY_POINTS)


def link_entry_points(env: TritonEnv, points: Mapping[str, str] | None = None) -> Path:
    """Declare popef's executor entry points in ``env``: a linked popef has no metadata of its
    own, so without this a plug-in executor of popef (``onnxruntime``) would be unknown to the
    backend. Writes ``site-packages/popef_triton_link-<version>.dist-info`` (``METADATA``,
    ``entry_points.txt``), replacing one of another version; returns its folder."""
    points = popef_executor_entry_points() if points is None else points
    folder = env.site_packages / f"{LINK_DISTRIBUTION}-{__version__}.dist-info"
    for stale in env.site_packages.glob(f"{LINK_DISTRIBUTION}-*.dist-info"):
        if stale != folder:
            shutil.rmtree(stale, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "METADATA": (
            f"Metadata-Version: 2.1\nName: {LINK_DISTRIBUTION}\n"
            f"Version: {__version__}\nSummary: entry points of the popef linked "
            "here by popef triton setup\n"
        ),
        "entry_points.txt": f"[{EXECUTOR_ENTRY_POINT_GROUP}]\n"
        + "".join(f"{name} = {value}\n" for name, value in sorted(points.items())),
    }
    for name, text in files.items():
        data = text.encode("utf-8")
        if (folder / name).is_file() and (folder / name).read_bytes() == data:
            continue
        write_atomically(folder / name, lambda file, data=data: file.write(data))
    return folder


def _run(
    command: Sequence[str], what: str, log: Log, on_line: Callable[[str], None] | None = None
) -> None:
    """Run ``command``, giving each line of its output to ``on_line`` as it comes; on failure,
    log the last 25 lines and raise :class:`TritonEnvError`."""
    tail: collections.deque[str] = collections.deque(maxlen=25)
    try:
        with subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            stdin=subprocess.DEVNULL,
        ) as child:
            assert child.stdout is not None
            for line in child.stdout:
                tail.append(line.rstrip("\n"))
                if on_line is not None:
                    on_line(line)
        returncode = child.returncode
    except OSError as exc:
        raise TritonEnvError(f"cannot {what}: {exc}") from None
    if returncode != 0:
        log("\n".join(tail))
        raise TritonEnvError(f"cannot {what}: `{' '.join(command[:4])} …` exited with {returncode}")


def _output(command: Sequence[str], cwd: Path | None = None) -> str:
    result = subprocess.run(
        command, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False, cwd=cwd
    )
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-15:])
        raise TritonEnvError(f"the Triton environment fails a check:\n{tail}")
    return result.stdout


# -- the server ----------------------------------------------------------------------------------


@dataclass
class ServerInvocation:
    """How to start ``tritonserver``: the command, its environment and its backend folder."""

    command: list[str]
    env: dict[str, str]
    backend_dir: Path
    changed_env: dict[str, str] = field(default_factory=dict)  # what differs from os.environ

    def shell(self) -> str:
        """The invocation as one shell command line (for docs and ``--dry-run``)."""
        import shlex

        assignments = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.changed_env.items())
        return f"{assignments} {shlex.join(self.command)}".strip()


def server_invocation(
    env: TritonEnv,
    repositories: Sequence[str | os.PathLike],
    *,
    backend_dir: str | os.PathLike | None = None,
    host: str = "0.0.0.0",
    http_port: int = 8000,
    grpc_port: int = 8001,
    metrics_port: int = 8002,
    http_address: str | None = None,
    grpc_address: str | None = None,
    metrics_address: str | None = None,
    extra_args: Sequence[str] = (),
    base_env: Mapping[str, str] | None = None,
) -> ServerInvocation:
    """Lay out the backend directory and give the ``tritonserver`` command for ``env``.

    ``backend_dir`` (``--backend-directory``) gets ``python/`` (Triton's Python backend with
    the stub for this Python) unless it holds one, and ``poplar/model.py``; by default it is
    ``<env>/backends``. ``metrics_port`` 0 turns metrics off.
    """
    if not repositories:
        raise TritonEnvError("give at least one --model-repository")
    backend_dir = Path(backend_dir) if backend_dir is not None else env.default_backend_dir
    backend_dir = backend_dir.resolve()
    link_popef(env)
    install_python_backend(
        backend_dir,
        env.python_backend_dir,
        env.stub,
        label=f"Triton {TRITON_VERSION} from nvidia-pytriton "
        f"{PYTRITON_VERSION}, stub for Python {env.python_version}",
    )
    install_backend(backend_dir, paths=[str(env.site_packages)])
    command = [str(env.tritonserver)]
    for repository in repositories:
        command.append(f"--model-repository={Path(repository).resolve()}")
    command += [
        f"--backend-directory={backend_dir}",
        f"--cache-directory={env.triton_dir / 'caches'}",
        f"--http-address={http_address or host}",
        f"--http-port={http_port}",
        f"--grpc-address={grpc_address or host}",
        f"--grpc-port={grpc_port}",
    ]
    if metrics_port:
        command += [
            f"--metrics-address={metrics_address or host}",
            f"--metrics-port={metrics_port}",
            "--allow-gpu-metrics=false",
        ]  # CPU models; spares a DCGM warning
    else:
        command.append("--allow-metrics=false")
    command += list(extra_args)
    base = dict(os.environ if base_env is None else base_env)
    changed = {
        "LD_LIBRARY_PATH": _join(
            str(env.libs_dir), str(libpython_dir()), base.get("LD_LIBRARY_PATH", "")
        ),
        "PATH": _join(str(env.bin_dir), base.get("PATH", os.defpath)),
    }
    merged = {**base, **changed}
    for name in ("PYTHONHOME", "PYTHONPATH", "VIRTUAL_ENV"):
        merged.pop(name, None)  # the stub's Python comes from PATH alone
    return ServerInvocation(command, merged, backend_dir, changed)


def _join(*parts: str) -> str:
    seen: list[str] = []
    for part in parts:
        for item in part.split(os.pathsep):
            if item and item not in seen:
                seen.append(item)
    return os.pathsep.join(seen)
