"""The executor registry: executors by name, built-in or plugged in.

Built-ins: ``cpu`` and ``ipu-model``. A package adds an executor with an entry point in the
group ``popef.executors`` whose object is an :class:`Executor` subclass (or any callable taking
the options as keywords and returning an Executor)::

    [options.entry_points]
    popef.executors =
        my-accelerator = my_package.executor:MyExecutor

Code may also call :func:`register_executor` directly. Names are looked up in this order:
registered (built-ins first), then entry points; a name already taken is not replaced by an
entry point.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import threading
from collections.abc import Callable
from typing import Any

from ...errors import ExecutionError, PopefError
from .base import Executor

__all__ = [
    "Executor",
    "ENTRY_POINT_GROUP",
    "register_executor",
    "get_executor",
    "get_executor_factory",
    "list_executors",
    "executor_descriptions",
]

ENTRY_POINT_GROUP = "popef.executors"

Factory = Callable[..., Executor]

# name -> factory, or "module:attribute" imported on first use (keeps imports lazy)
_REGISTRY: dict[str, Factory | str] = {
    "cpu": "popef.runtime.executors.cpu:CpuExecutor",
    "ipu-model": "popef.runtime.executors.ipu_model:IpuModelExecutor",
}
_LOCK = threading.Lock()


def register_executor(name: str, factory: Factory | str, *, replace: bool = False) -> None:
    """Register an executor class (or factory, or ``"module:attribute"``) under ``name``."""
    if not isinstance(name, str) or not name:
        raise ExecutionError("an executor needs a non-empty name")
    if not (callable(factory) or isinstance(factory, str)):
        raise ExecutionError(f"executor '{name}' must be a class, a factory or 'module:attribute'")
    with _LOCK:
        if name in _REGISTRY and not replace:
            raise ExecutionError(f"executor '{name}' is already registered")
        _REGISTRY[name] = factory


def _entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    try:
        found = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    except Exception:
        return {}
    points: dict[str, importlib.metadata.EntryPoint] = {}
    for point in found:
        points.setdefault(point.name, point)
    return points


def list_executors() -> list[str]:
    """Names of every executor: registered ones, then those of installed plug-ins."""
    with _LOCK:
        names = list(_REGISTRY)
    names += sorted(n for n in _entry_points() if n not in names)
    return names


def _resolve(name: str, target: Factory | str | importlib.metadata.EntryPoint) -> Factory:
    try:
        if isinstance(target, importlib.metadata.EntryPoint):
            where = f"entry point {target.value!r}"
            factory = target.load()
        elif isinstance(target, str):
            where = repr(target)
            module, _, attribute = target.partition(":")
            factory = getattr(importlib.import_module(module), attribute)
        else:
            return target
    except PopefError:
        raise
    except Exception as exc:
        raise ExecutionError(
            f"executor '{name}' ({where}) cannot be loaded: {type(exc).__name__}: {exc}"
        ) from exc
    if not callable(factory):
        raise ExecutionError(f"executor '{name}' ({where}) is not a class or a factory")
    return factory


def get_executor_factory(name: str) -> Factory:
    """The class (or factory) of executor ``name``; ExecutionError listing the names if none."""
    if not isinstance(name, str):
        raise ExecutionError(f"an executor name must be a str, got {type(name).__name__}")
    with _LOCK:
        target = _REGISTRY.get(name)
    if target is None:
        target = _entry_points().get(name)
    if target is None:
        raise ExecutionError(
            f"unknown executor '{name}'; installed executors: " + ", ".join(list_executors())
        )
    factory = _resolve(name, target)
    if isinstance(target, str):
        with _LOCK:
            if _REGISTRY.get(name) == target:
                _REGISTRY[name] = factory
    return factory


def get_executor(name: str, **options: Any) -> Executor:
    """A new executor ``name`` configured with ``options`` (unknown options are refused)."""
    factory = get_executor_factory(name)
    declared = getattr(factory, "options", None)
    if isinstance(factory, type) and issubclass(factory, Executor) and declared is not None:
        for key in options:
            if key not in declared:
                accepted = ", ".join(sorted(declared)) or "none"
                raise ExecutionError(
                    f"executor '{name}' has no option '{key}' (options: {accepted})"
                )
    try:
        executor = factory(**options)
    except PopefError:
        raise
    except TypeError as exc:
        raise ExecutionError(f"executor '{name}' refused its options: {exc}") from exc
    except Exception as exc:
        raise ExecutionError(
            f"executor '{name}' failed to start: {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(executor, Executor):
        raise ExecutionError(
            f"executor '{name}' gave a {type(executor).__name__}, not a popef.runtime.Executor"
        )
    return executor


def executor_descriptions() -> list[tuple[str, str]]:
    """``(name, one-line description or the loading problem)`` of every executor."""
    rows = []
    for name in list_executors():
        try:
            factory = get_executor_factory(name)
            text = (
                getattr(factory, "description", "")
                or (factory.__doc__ or "").strip().split("\n", 1)[0]
            )
        except PopefError as exc:
            text = f"(unavailable: {exc})"
        rows.append((name, text))
    return rows
