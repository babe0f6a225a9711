"""Triton's logging and trace extensions: the settings behind ``v2/logging`` and
``v2/trace/setting`` (and the gRPC ``LogSettings`` and ``TraceSetting`` RPCs).

:class:`LogSettings` really changes what the server logs: ``log_info``, ``log_warning``,
``log_error`` and ``log_verbose_level`` set the level of the ``popef.serving`` logger, as
tritonserver's flags of the same names do. :class:`TraceSettings` keeps Triton's trace
settings, globally and per model, with Triton's fields, defaults and checks; ``popef serve``
produces no traces (docs/serving.md says so).

Updates take Triton's JSON forms (HTTP) and, through :func:`grpc_log_update` and
:func:`grpc_trace_update` in the servicer, the gRPC ones; bad values raise INVALID_ARG with
Triton's wording.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import asdict, dataclass, replace
from typing import Any

from ..escaping import shorten
from ..servable.errors import ServingError, Status, invalid, unsupported

__all__ = ["LOG_FIELDS", "TRACE_FIELDS", "LogSettings", "TraceSettings"]

#: the fields of Triton's log settings, in its order
LOG_FIELDS = ("log_file", "log_info", "log_warning", "log_error", "log_verbose_level", "log_format")
#: the fields of Triton's trace settings (mode "triton"), in its order
TRACE_FIELDS = (
    "trace_level",
    "trace_rate",
    "trace_count",
    "log_frequency",
    "trace_file",
    "trace_mode",
)
_LOG_FORMATS = ("default", "ISO8601")
_TRACE_LEVELS = ("OFF", "TIMESTAMPS", "TENSORS")
_UINT32_MAX = 2**32 - 1
_INT32_MAX = 2**31 - 1


def _shown(value: Any) -> str:
    return shorten(repr(value), 80)


class LogSettings:
    """The server's log settings, applied to the ``popef.serving`` logger on every update.

    ``logger`` is the logger whose level follows the settings (``popef.serving``); with
    ``apply=False`` the settings are only kept (a core hosted by another engine, whose logging
    is that engine's).
    """

    def __init__(
        self,
        *,
        verbose: int = 0,
        info: bool = True,
        warning: bool = True,
        error: bool = True,
        log_file: str = "",
        log_format: str = "default",
        logger: str = "popef.serving",
        apply: bool = False,
    ) -> None:
        self._values = {
            "log_file": log_file,
            "log_info": info,
            "log_warning": warning,
            "log_error": error,
            "log_verbose_level": verbose,
            "log_format": log_format,
        }
        self._logger = logging.getLogger(logger)
        self._apply = apply
        self._lock = threading.Lock()

    def get(self) -> dict:
        """Triton's log settings object: every field."""
        with self._lock:
            return dict(self._values)

    def update(self, changes: dict) -> dict:
        """Apply ``changes`` (Triton's fields; ``null`` leaves a field as it is) and return
        the settings. Nothing changes unless every field is valid."""
        if not isinstance(changes, dict):
            raise invalid("the log settings must be a JSON object")
        new = {}
        for key, value in changes.items():
            if value is None:
                continue
            if key == "log_file":
                raise unsupported("log file location can not be updated through network protocol")
            if key in ("log_info", "log_warning", "log_error"):
                if not isinstance(value, bool):
                    raise invalid(f"log setting '{key}' must be a boolean, got {_shown(value)}")
            elif key == "log_verbose_level":
                if (
                    isinstance(value, bool)
                    or not isinstance(value, int)
                    or not (0 <= value <= _UINT32_MAX)
                ):
                    raise invalid(
                        f"log setting 'log_verbose_level' must be a whole number in "
                        f"[0, {_UINT32_MAX}], got {_shown(value)}"
                    )
            elif key == "log_format":
                if value not in _LOG_FORMATS:
                    # Triton's text and code for this case
                    raise ServingError(
                        f"invalid argument for --log_format, got: {shorten(str(value), 80)}",
                        Status.UNAVAILABLE,
                    )
            else:
                raise invalid(
                    f"unknown log setting '{shorten(str(key), 80)}'; the settings "
                    f"are {', '.join(repr(f) for f in LOG_FIELDS)}"
                )
            new[key] = value
        with self._lock:
            self._values.update(new)
            values = dict(self._values)
        if self._apply:
            self._logger.setLevel(self.level(values))
        return values

    @staticmethod
    def level(values: dict) -> int:
        """The ``logging`` level these settings mean (as ``configure_logging``)."""
        if values["log_verbose_level"] > 0:
            return logging.DEBUG
        if values["log_info"]:
            return logging.INFO
        if values["log_warning"]:
            return logging.WARNING
        if values["log_error"]:
            return logging.ERROR
        return logging.CRITICAL + 1


@dataclass(frozen=True)
class _Trace:
    """One set of trace settings (Triton's, mode "triton"); numbers kept as Triton's JSON
    strings."""

    trace_level: tuple[str, ...] = ("OFF",)
    trace_rate: str = "1000"
    trace_count: str = "-1"
    log_frequency: str = "0"
    trace_file: str = ""
    trace_mode: str = "triton"

    def as_json(self) -> dict:
        values = asdict(self)
        values["trace_level"] = list(self.trace_level)
        return values


class TraceSettings:
    """Triton's trace settings: global ones, and per model those a client set (a model
    without its own follows the global ones, field by field, as in Triton)."""

    def __init__(self) -> None:
        self._global = _Trace()
        self._models: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def get(self, model: str = "") -> dict:
        with self._lock:
            return self._effective(model).as_json()

    def _effective(self, model: str) -> _Trace:
        own = self._models.get(model, {}) if model else {}
        return replace(self._global, **own)

    def update(self, changes: dict, model: str = "") -> dict:
        """Apply ``changes`` (Triton's JSON fields; ``null`` clears a model's own value, or
        restores the default globally) and return the effective settings."""
        if not isinstance(changes, dict):
            raise invalid("the trace settings must be a JSON object")
        parsed: dict[str, Any] = {}
        cleared: list[str] = []
        for key, value in changes.items():
            if key == "trace_file":
                raise unsupported("trace file location can not be updated through network protocol")
            if key not in TRACE_FIELDS or key == "trace_mode":
                raise invalid(
                    f"unknown trace setting '{shorten(str(key), 80)}'; the settings "
                    "are 'trace_level', 'trace_rate', 'trace_count', "
                    "'log_frequency'"
                )
            if value is None:
                cleared.append(key)
            elif key == "trace_level":
                parsed[key] = _trace_level(value)
            else:
                parsed[key] = _trace_number(key, value)
        with self._lock:
            if model:
                own = self._models.setdefault(model, {})
                for key in cleared:
                    own.pop(key, None)
                own.update(parsed)
            else:
                defaults = _Trace()
                reset = {k: getattr(defaults, k) for k in cleared}
                self._global = replace(self._global, **reset, **parsed)
            return self._effective(model).as_json()


def _trace_level(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise invalid(
            f"trace setting 'trace_level' must be a list of levels ('OFF', "
            f"'TIMESTAMPS', 'TENSORS'), got {_shown(value)}"
        )
    if not value:
        raise invalid(
            "trace setting 'trace_level' names no level; the levels are 'OFF', "
            "'TIMESTAMPS', 'TENSORS'"
        )
    if "OFF" in value:
        if len(value) != 1:
            raise invalid("Expect only one trace level 'OFF' is specified")
        return ("OFF",)
    unknown = [v for v in value if v not in _TRACE_LEVELS]
    if unknown:
        raise invalid(
            f"trace setting 'trace_level': unknown level {_shown(unknown[0])}"
            "; the levels are 'OFF', 'TIMESTAMPS', 'TENSORS'"
        )
    return tuple(level for level in ("TIMESTAMPS", "TENSORS") if level in value)


def _trace_number(key: str, value: Any) -> str:
    """A trace number as Triton takes it: a string (or a number) holding an integer in the
    field's range."""
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    low, high = (-1, _INT32_MAX) if key == "trace_count" else (0, _UINT32_MAX)
    number = None
    if isinstance(text, str):
        try:
            number = int(text.strip())
        except ValueError:
            pass
    if number is None:
        raise invalid(f"Unable to parse '{key}', got: {shorten(str(value), 80)}")
    if key == "trace_count" and number < low:
        raise invalid(
            f"Unable to parse 'trace_count'. Expecting value >= {low}, got:"
            f"{shorten(str(number), 40)}"
        )
    if not low <= number <= high:
        raise invalid(
            f"Unable to parse '{key}', value is out of range [ {low}, {high} ], "
            f"got: {shorten(str(number), 40)}"
        )
    return str(number)
