"""Run a script written for Graphcore's modules: ``import popef`` and ``import model_runtime``
give their Graphcore-flavoured surfaces, and nothing else changes.

``sys.modules["popef"]`` becomes a module whose attributes are Graphcore's names. It keeps
this package's ``__path__``, and its other attributes are this package's submodules and
public names, so this library goes on working inside the script: its modules import each
other relatively (``popef.reader``, ``popef.runtime`` ...), which resolves through that path
and ``sys.modules``, never through the names Graphcore's surface replaces.
"""

from __future__ import annotations

import os
import sys
import types
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from ..errors import PopefError
from ..escaping import escape_text

__all__ = ["GraphcorePopefModule", "graphcore_modules", "installed", "check_script", "run_script"]


class GraphcorePopefModule(types.ModuleType):
    """``popef`` as a script sees it: Graphcore's names first, then this library's
    submodules and public names (``popef.runtime``, ``popef.PopefError``)."""

    def __init__(self, library: types.ModuleType, surface: types.ModuleType):
        super().__init__(library.__name__, surface.__doc__)
        self.__dict__.update({name: getattr(surface, name) for name in surface.__all__})
        self.__path__ = list(library.__path__)
        self.__file__ = library.__file__
        self.__spec__ = library.__spec__
        self.__loader__ = library.__loader__
        self.__package__ = library.__name__
        self.__all__ = list(surface.__all__)
        self._library = library

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        module = sys.modules.get(f"{self.__name__}.{name}")
        if module is not None:
            return module
        try:
            return getattr(self._library, name)
        except AttributeError:
            raise AttributeError(f"module 'popef' has no attribute '{name}'") from None


def graphcore_modules() -> dict[str, types.ModuleType]:
    """The modules a Graphcore script imports, by the names it imports them by."""
    import popef as library

    from . import model_runtime
    from . import popef as surface

    if isinstance(library, GraphcorePopefModule):  # already installed
        library = library._library
    return {"popef": GraphcorePopefModule(library, surface), "model_runtime": model_runtime}


@contextmanager
def installed() -> Iterator[dict[str, types.ModuleType]]:
    """Within the block, ``import popef`` and ``import model_runtime`` give Graphcore's
    modules; the previous entries of ``sys.modules`` come back afterwards."""
    modules = graphcore_modules()
    saved = {name: sys.modules.get(name) for name in modules}
    sys.modules.update(modules)
    try:
        yield modules
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def check_script(path: str) -> None:
    """Raise :class:`PopefError` unless ``path`` is a file this process can read."""
    if not os.path.isfile(path):
        reason = "not a file" if os.path.exists(path) else "no such file"
        raise PopefError(f"cannot run script '{escape_text(path)}': {reason}")
    if not os.access(path, os.R_OK):
        raise PopefError(f"cannot run script '{escape_text(path)}': permission denied")


def run_script(path: str, args: Sequence[str] = ()) -> None:
    """Run ``path`` as ``python path args...`` would (``__name__ == "__main__"``, ``sys.argv``,
    the script's folder first on ``sys.path``), with Graphcore's modules installed."""
    check_script(path)
    saved_argv, saved_path = sys.argv, list(sys.path)
    sys.argv = [path, *args]
    sys.path[0:1] = [os.path.dirname(os.path.abspath(path))]
    try:
        with installed():
            _run_as_main(path)
    finally:
        sys.argv = saved_argv
        sys.path[:] = saved_path


def _run_as_main(path: str) -> None:
    """Compile and run ``path`` as Python runs a script: by its absolute path (``__file__``
    and tracebacks), in a new ``__main__`` module that stands in ``sys.modules`` meanwhile."""
    filename = os.path.abspath(path)
    with open(filename, "rb") as source:
        code = compile(source.read(), filename, "exec", dont_inherit=True)
    main = types.ModuleType("__main__")
    main.__file__ = filename
    main.__loader__ = main.__spec__ = None
    saved = sys.modules.get("__main__")
    sys.modules["__main__"] = main
    try:
        exec(code, main.__dict__)  # noqa: S102 - running the user's script is the point
    finally:
        if saved is None:
            sys.modules.pop("__main__", None)
        else:
            sys.modules["__main__"] = saved
