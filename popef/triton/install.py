"""``popef triton install-backend``: the ``poplar`` backend's ``model.py`` in a backend directory.

Triton finds a Python-based backend named ``poplar`` at ``<backend-directory>/poplar/model.py``
and runs it with the Python backend of the same directory (``<backend-directory>/python/``:
``libtriton_python.so``, ``triton_python_backend_stub``, ``triton_python_backend_utils.py``).
The ``model.py`` written here is a few lines that import :class:`TritonPythonModel` from this
package. When the Python that Triton runs cannot import ``popef`` (it was installed into
another environment), the file falls back to the folders this ``popef`` was installed in —
appended to ``sys.path``, so the packages of Triton's own environment (numpy above all) keep
precedence.
"""

from __future__ import annotations

import os
import shutil
import site
import sysconfig
from collections.abc import Sequence
from pathlib import Path

from .._version import __version__
from ..atomic import write_atomically

__all__ = [
    "BACKEND_NAME",
    "MODEL_PY",
    "OWNER_MARKER",
    "PYTHON_BACKEND_FILES",
    "install_backend",
    "install_paths",
    "install_python_backend",
    "render_model_py",
]

BACKEND_NAME = "poplar"
MODEL_PY = "model.py"
#: the files of Triton's Python backend, as a backend directory's ``python/`` holds them
PYTHON_BACKEND_FILES = (
    "libtriton_python.so",
    "triton_python_backend_utils.py",
    "triton_python_backend_stub",
)
#: written into a ``python/`` folder that popef filled, so that it may refresh it later
OWNER_MARKER = ".popef-triton"

_TEMPLATE = '''\
"""Triton's Python-based backend "{backend}": PopEF models on popef's runtime.

Written by `popef triton install-backend` (popef {version}); see docs/deploy-triton.md.
A model selects it with `backend: "{backend}"` in its config.pbtxt.
"""

import sys

# Where the popef that wrote this file was installed: used only when the Python that
# Triton runs cannot import popef by itself; appended, so that Triton's own packages win.
POPEF_PATHS = {paths!r}

try:
    from popef.triton.backend import TritonPythonModel  # noqa: F401
except ImportError:
    sys.path.extend(p for p in POPEF_PATHS if p not in sys.path)
    from popef.triton.backend import TritonPythonModel  # noqa: F401
'''


def install_paths() -> list[str]:
    """The folders that make this ``popef`` importable: the one holding the package, then
    this environment's site-packages (for its dependencies)."""
    here = Path(__file__).resolve().parent.parent.parent  # the folder holding popef/
    paths = [str(here)]
    for key in ("purelib", "platlib"):
        paths.append(sysconfig.get_paths()[key])
    try:
        paths.extend(site.getsitepackages())
    except AttributeError:  # some embedded or virtualenv-16 interpreters
        pass
    unique: list[str] = []
    for p in paths:
        if p and p not in unique:
            unique.append(p)
    return unique


def render_model_py(paths: Sequence[str] | None = None, backend: str = BACKEND_NAME) -> str:
    """The text of ``<backend-directory>/poplar/model.py``."""
    return _TEMPLATE.format(
        backend=backend,
        version=__version__,
        paths=list(install_paths() if paths is None else paths),
    )


def install_backend(
    directory: str | os.PathLike,
    *,
    paths: Sequence[str] | None = None,
    python_backend: str | os.PathLike | None = None,
) -> Path:
    """Write ``<directory>/poplar/model.py``; returns its path.

    ``python_backend`` is a folder holding Triton's Python backend (e.g.
    ``/opt/tritonserver/backends/python``) to copy into ``<directory>/python/`` — needed when
    ``--backend-directory`` is not Triton's own backend folder. ``paths`` replaces the
    fallback ``sys.path`` entries (default: where this ``popef`` is installed).
    """
    directory = Path(directory)
    target = directory / BACKEND_NAME
    target.mkdir(parents=True, exist_ok=True)
    path = target / MODEL_PY
    data = render_model_py(paths).encode("utf-8")
    write_atomically(path, lambda file: file.write(data))
    if python_backend is not None:
        install_python_backend(directory, Path(python_backend))
    return path


def install_python_backend(
    directory: str | os.PathLike, source: Path, stub: Path | None = None, *, label: str = ""
) -> Path:
    """Copy Triton's Python backend from ``source`` into ``<directory>/python/``.

    ``stub`` is the ``triton_python_backend_stub`` to use when ``source`` has none (a
    distribution that keeps one stub per Python version elsewhere). A ``python/`` folder that
    popef did not fill is never overwritten. Returns ``<directory>/python``.
    """
    from ..errors import PopefError

    directory = Path(directory)
    dest = directory / "python"
    if dest.resolve() == Path(source).resolve():
        return dest
    files = {name: Path(source) / name for name in PYTHON_BACKEND_FILES}
    if stub is not None:
        files["triton_python_backend_stub"] = Path(stub)
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise PopefError(f"'{source}' is not Triton's Python backend: no {missing[0]}")
    marker = dest / OWNER_MARKER
    if dest.exists() and not marker.is_file():
        if all((dest / name).is_file() for name in PYTHON_BACKEND_FILES):
            raise PopefError(
                f"'{dest}' already holds a Python backend that popef did not put "
                "there; remove it, or give another backend directory"
            )
        if any(dest.iterdir()):
            raise PopefError(f"'{dest}' exists and is not a Python backend popef put there")
    dest.mkdir(parents=True, exist_ok=True)
    for name, src in files.items():
        out = dest / name
        if out.is_file() and _same_file(src, out):
            continue
        _copy_atomically(src, out)
    (dest / "triton_python_backend_stub").chmod(0o755)
    note = f"{label or source}\n".encode()
    write_atomically(marker, lambda file: file.write(note))
    return dest


def _copy_atomically(source: Path, target: Path) -> None:
    """Copy ``source`` to ``target`` with its permission bits; a running Triton reading
    ``target`` sees the old file or the whole new one."""
    mode = source.stat().st_mode & 0o7777

    def write(file) -> None:
        with open(source, "rb") as data:
            shutil.copyfileobj(data, file, 1 << 20)
        os.fchmod(file.fileno(), mode)

    write_atomically(target, write)


def _same_file(a: Path, b: Path) -> bool:
    try:
        sa, sb = a.stat(), b.stat()
    except OSError:
        return False
    if sa.st_size != sb.st_size:
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            ca, cb = fa.read(1 << 20), fb.read(1 << 20)
            if ca != cb:
                return False
            if not ca:
                return True
