"""Serving errors and Triton's status mapping (docs/serving.md, "Errors").

Every error the protocol core of ``popef serve`` and the Triton backend raise is a
:class:`ServingError` carrying a :class:`Status`, Triton's error code; each transport turns it
into its own form: an HTTP status with ``{"error": message}``, or a gRPC status code with the
message as details.
"""

from __future__ import annotations

from enum import Enum

from ..errors import PopefError

__all__ = [
    "MAX_ERROR_MESSAGE",
    "ConfigError",
    "ServingError",
    "Status",
    "error_message",
    "internal",
    "invalid",
    "not_found",
    "unavailable",
    "unsupported",
]

#: the longest error text sent to a client (over HTTP and gRPC); longer ones are shortened
MAX_ERROR_MESSAGE = 4096


class Status(Enum):
    """Triton's error codes, with the HTTP status and gRPC code name each maps to.

    The HTTP side follows Triton's protocol documentation ("Mapping Triton Server Error Codes
    to HTTP Status Codes"); the gRPC side follows Triton's gRPC front end.
    """

    INVALID_ARG = (400, "INVALID_ARGUMENT")
    NOT_FOUND = (404, "NOT_FOUND")
    UNAVAILABLE = (503, "UNAVAILABLE")
    UNSUPPORTED = (501, "UNIMPLEMENTED")
    ALREADY_EXISTS = (400, "ALREADY_EXISTS")
    CANCELLED = (400, "CANCELLED")
    UNKNOWN = (400, "UNKNOWN")
    INTERNAL = (500, "INTERNAL")

    @property
    def http_status(self) -> int:
        return self.value[0]

    @property
    def grpc_code_name(self) -> str:
        """The name of the ``grpc.StatusCode`` member (grpc is imported only by its transport)."""
        return self.value[1]


class ServingError(PopefError):
    """A request or a model failed; ``status`` says how a transport reports it."""

    def __init__(self, message: str, status: Status = Status.INVALID_ARG) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class ConfigError(ServingError):
    """A model's configuration or files are wrong; the message says which and why."""


def invalid(message: str) -> ServingError:
    return ServingError(message, Status.INVALID_ARG)


def not_found(message: str) -> ServingError:
    return ServingError(message, Status.NOT_FOUND)


def unavailable(message: str) -> ServingError:
    return ServingError(message, Status.UNAVAILABLE)


def unsupported(message: str) -> ServingError:
    return ServingError(message, Status.UNSUPPORTED)


def internal(message: str) -> ServingError:
    return ServingError(message, Status.INTERNAL)


def error_message(exc: BaseException) -> str:
    """What a model that failed to load reports: a :class:`ServingError`'s message, a
    :class:`PopefError`'s text, or ``<ExceptionType>: <text>`` for anything else.

    The repository of ``popef serve`` records it as the reason of a version that failed to
    load; the Triton backend gives it to Triton.
    """
    if isinstance(exc, ServingError):
        return exc.message
    if isinstance(exc, PopefError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
