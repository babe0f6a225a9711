"""System shared memory: Triton's ``system_shared_memory`` extension (docs/serving.md,
"Shared memory").

A client creates a POSIX shared memory object (``shm_open``; tritonclient's
``tritonclient.utils.shared_memory``), registers a byte range of it under a region name, and
then names the region in the parameters of an input (``shared_memory_region``,
``shared_memory_byte_size``, ``shared_memory_offset``) for the server to read the tensor from,
or of a requested output for the server to write the result to.

:class:`SystemSharedMemory` is the registry, with Triton's semantics and error texts
(``src/shared_memory_manager.cc`` of triton-inference-server/server): a region stays in use
while a request that names it runs and cannot be unregistered then; registering checks the
range against the object's size.

The object's descriptor stays open while the region is registered and every access goes
through ``pread``/``pwrite`` on it after an ``fstat``: a client that shrinks the object after
registering gets an error, never a ``SIGBUS`` in the server, and the runtime only ever sees a
copy of the bytes. Beyond Triton, registrations (:data:`MAX_REGIONS`), region names
(:data:`MAX_REGION_NAME`) and the bytes one request reads (``max_request_bytes``) are bounded,
and a descriptor a running request uses is closed only when that request ends. CUDA shared
memory is not supported (a server without GPUs): its calls answer as Triton built without GPU
support does.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..escaping import shorten
from ..servable.errors import (
    ServingError,
    Status,
    internal,
    invalid,
    not_found,
    unavailable,
)
from .protocol import InferRequest, InferResponse, OutputTensor

__all__ = [
    "RegionStatus",
    "RequestRegions",
    "SharedMemorySlice",
    "SystemSharedMemory",
    "TensorReference",
    "cuda_register_error",
    "cuda_status",
    "register_arguments",
    "tensor_reference",
]

REGION = "shared_memory_region"
OFFSET = "shared_memory_offset"
BYTE_SIZE = "shared_memory_byte_size"

#: the most regions registered at once: each holds an open descriptor of the server's
MAX_REGIONS = 256
#: the most bytes one request's inputs read from shared memory (copied into the server's
#: memory, as an inline request's bytes: a client can register a sparse terabyte object)
MAX_REQUEST_BYTES = 64 * 1024 * 1024
#: the longest region name, in characters (a name is kept for as long as its region)
MAX_REGION_NAME = 1024


def _number(value: int) -> str:
    """A client's number for a message: a JSON integer may have thousands of digits."""
    return shorten(str(value), 40)


@dataclass(frozen=True)
class RegionStatus:
    """One registered region, as the status calls report it."""

    name: str
    key: str
    offset: int
    byte_size: int

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "key": self.key,
            "offset": self.offset,
            "byte_size": self.byte_size,
        }


@dataclass(frozen=True)
class TensorReference:
    """The shared memory parameters of one input or requested output."""

    region: str
    offset: int
    byte_size: int


class _Region:
    """A registered region: the open object and the requests using it."""

    def __init__(self, status: RegionStatus, fd: int) -> None:
        self.status = status
        self.fd = fd
        self.uses = 0
        #: the server stopped while a request still used the region: the last one closes it
        self.closing = False

    def close_when_unused(self) -> None:
        """Close the descriptor now, or when the last request using the region ends (a closed
        number may be reused by another file at once: a late write must never reach it)."""
        if self.uses:
            self.closing = True
        elif self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def check_object(self) -> None:
        """The object still holds the whole region (a client may have shrunk it)."""
        s = self.status
        if self.fd < 0:
            raise internal(f"shared memory region '{s.name}' was closed (the server is stopping)")
        try:
            size = os.fstat(self.fd).st_size
        except OSError as exc:
            raise internal(f"Invalid shared memory region: '{s.key}' ({exc.strerror})") from None
        end = s.offset + s.byte_size
        if size < end:
            raise invalid(
                f"shared memory region '{s.name}' is no longer valid: its object "
                f"'{s.key}' has {size} bytes but the region ends at byte {end}"
            )


@dataclass(frozen=True)
class SharedMemorySlice:
    """Bytes ``[offset, offset + byte_size)`` of a region, held by a running request."""

    region: _Region
    offset: int
    byte_size: int

    def read(self) -> bytes:
        """A copy of the slice's bytes."""
        self.region.check_object()
        position = self.region.status.offset + self.offset
        try:
            data = os.pread(self.region.fd, self.byte_size, position)
        except OSError as exc:
            raise self._failed("read", exc) from None
        if len(data) != self.byte_size:  # shrunk between fstat and pread
            self.region.check_object()
            raise invalid(
                f"shared memory region '{self.region.status.name}': read "
                f"{len(data)} of {self.byte_size} bytes"
            )
        return data

    def read_input(self, name: str, model: str, expected: int) -> bytes:
        """The bytes of input ``name``, which needs ``expected`` bytes (Triton's check)."""
        if self.byte_size != expected:
            raise invalid(
                f"input byte size mismatch for input '{name}' for model '{model}'. "
                f"Expected {expected}, got {self.byte_size}"
            )
        return self.read()

    def write(self, data: bytes | memoryview) -> None:
        self.region.check_object()
        view = memoryview(data).cast("B")
        position = self.region.status.offset + self.offset
        try:
            while view:
                written = os.pwrite(self.region.fd, view, position)
                view, position = view[written:], position + written
        except OSError as exc:
            raise self._failed("write", exc) from None

    def _failed(self, action: str, exc: OSError) -> ServingError:
        s = self.region.status
        return internal(
            f"cannot {action} shared memory region '{s.name}' (object '{s.key}'): {exc.strerror}"
        )


class SystemSharedMemory:
    """The registered system shared memory regions of a server (thread-safe)."""

    def __init__(
        self, max_regions: int = MAX_REGIONS, max_request_bytes: int = MAX_REQUEST_BYTES
    ) -> None:
        self._regions: dict[str, _Region] = {}
        self._lock = threading.Lock()
        self.max_regions = max_regions
        #: the most bytes the inputs of one request read from shared memory
        self.max_request_bytes = max_request_bytes

    # ---- the extension's calls
    def register(self, name: str, key: str, offset: int, byte_size: int) -> None:
        """Register bytes ``[offset, offset + byte_size)`` of the object ``key`` as ``name``."""
        if not name:
            raise invalid("'region name' is necessary to register system shared memory region")
        if len(name) > MAX_REGION_NAME:
            raise invalid(
                f"failed to register shared memory region '{shorten(name, 80)}': its "
                f"name has {len(name)} characters, the most is {MAX_REGION_NAME}"
            )
        for field, value in (("offset", offset), ("byte_size", byte_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise invalid(
                    f"failed to register shared memory region '{name}': '{field}' "
                    f"must be a whole number >= 0, got {shorten(repr(value), 40)}"
                )
        with self._lock:
            if name in self._regions:
                raise ServingError(
                    f"shared memory region '{name}' already in manager", Status.ALREADY_EXISTS
                )
            if len(self._regions) >= self.max_regions:
                raise unavailable(
                    f"failed to register shared memory region '{name}': the "
                    f"server holds {len(self._regions)} regions, its limit; "
                    "unregister one first"
                )
            fd = _open_object(key)
            try:
                info = os.fstat(fd)
                if not stat.S_ISREG(info.st_mode):
                    raise invalid(
                        f"failed to register shared memory region '{name}': "
                        f"'{key}' is not a shared memory object"
                    )
                size = info.st_size
                if offset + byte_size > size:
                    raise invalid(
                        f"failed to register shared memory region '{name}': invalid "
                        f"args: offset {_number(offset)} + byte_size "
                        f"{_number(byte_size)} is past the {size} bytes of '{key}'"
                    )
            except BaseException:
                os.close(fd)
                raise
            self._regions[name] = _Region(RegionStatus(name, key, offset, byte_size), fd)

    def unregister(self, name: str = "") -> None:
        """Unregister ``name`` (nothing if it is not registered), or every region with ``""``."""
        with self._lock:
            if name:
                region = self._regions.get(name)
                if region is not None:
                    self._remove(region)
                return
            busy = []
            for region in list(self._regions.values()):
                try:
                    self._remove(region)
                except ServingError:
                    busy.append(region.status.name)
            if busy:
                raise internal(
                    "Failed to unregister the following system shared memory "
                    "regions: " + "".join(f"{n} ," for n in busy)
                )

    def status(self, name: str = "") -> list[dict]:
        """Every region, or the one named (Triton's JSON objects)."""
        with self._lock:
            if not name:
                return [r.status.as_dict() for r in self._regions.values()]
            region = self._regions.get(name)
            if region is None:
                raise not_found(f"Unable to find system shared memory region: '{name}'")
            return [region.status.as_dict()]

    def close(self) -> None:
        """Close every region, in use or not (the server is stopping)."""
        with self._lock:
            regions, self._regions = list(self._regions.values()), {}
            for region in regions:
                region.close_when_unused()

    def __len__(self) -> int:
        return len(self._regions)

    # ---- requests
    def bind(self, request: InferRequest) -> RequestRegions:
        """The slices that ``request``'s inputs and outputs name, held until released.

        Each input that names a region gets its slice as ``shared_memory`` (read while the
        inputs are decoded); the outputs' slices are written by
        :meth:`RequestRegions.write_outputs`.
        """
        inputs = [(t, tensor_reference("input", t.name, t.parameters)) for t in request.inputs]
        outputs = [
            (o, tensor_reference("output", o.name, o.parameters)) for o in request.outputs or ()
        ]
        for output, reference in outputs:
            if reference is not None and output.classification:
                raise invalid("output can't set both 'shared_memory_region' and 'classification'")
        if not any(r for _, r in inputs + outputs):
            return NO_REGIONS
        read = sum(r.byte_size for _, r in inputs if r is not None)
        if read > self.max_request_bytes:
            raise invalid(
                f"the inputs of the request read {_number(read)} bytes from shared "
                f"memory, the most is {self.max_request_bytes} (the server's largest "
                "request)"
            )
        bound = RequestRegions(self)
        with self._lock:
            try:
                for tensor, reference in inputs:
                    if reference is not None:
                        tensor.shared_memory = bound.take(self._slice(reference))
                for output, reference in outputs:
                    if reference is not None:
                        bound.outputs[output.name] = bound.take(self._slice(reference))
            except BaseException:
                bound.release_locked()
                raise
        return bound

    def _slice(self, reference: TensorReference) -> SharedMemorySlice:
        """Triton's ``GetMemoryInfo`` checks."""
        name = reference.region
        region = self._regions.get(name)
        if region is None:
            raise not_found(f"Unable to find shared memory region: '{name}'")
        size = region.status.byte_size
        if reference.offset >= size:
            raise invalid(
                f"Invalid offset for shared memory region: '{name}' (offset "
                f"{_number(reference.offset)}, the region has {size} bytes)"
            )
        if reference.offset + reference.byte_size > size:
            raise invalid(
                f"Invalid offset + byte size for shared memory region: '{name}' "
                f"(offset {_number(reference.offset)} + byte size "
                f"{_number(reference.byte_size)} is past the region's {size} bytes)"
            )
        return SharedMemorySlice(region, reference.offset, reference.byte_size)

    def _remove(self, region: _Region) -> None:
        """Close and forget ``region``; the lock is held."""
        if region.uses:
            raise internal(
                f"Cannot unregister shared memory region "
                f"'{region.status.name}', it is currently in use."
            )
        del self._regions[region.status.name]
        region.close_when_unused()


class RequestRegions:
    """The region slices one request holds: its regions cannot be unregistered until
    :meth:`release`."""

    def __init__(self, manager: SystemSharedMemory | None) -> None:
        self._manager = manager
        self._taken: list[_Region] = []
        self.outputs: dict[str, SharedMemorySlice] = {}

    def take(self, piece: SharedMemorySlice) -> SharedMemorySlice:
        piece.region.uses += 1
        self._taken.append(piece.region)
        return piece

    def write_outputs(self, response: InferResponse) -> InferResponse:
        """Write the outputs that go to shared memory; they then carry no data."""
        for i, output in enumerate(response.outputs):
            piece = self.outputs.get(output.name)
            if piece is None:
                continue
            data = output.raw()
            if len(data) > piece.byte_size:
                raise internal(
                    f"shared memory size specified with the request for output "
                    f"'{output.name}' ({piece.byte_size} bytes) should be at least "
                    f"{len(data)} bytes to hold the results"
                )
            piece.write(data)
            response.outputs[i] = OutputTensor(
                output.name, output.datatype, output.shape, output.data[:0], in_shared_memory=True
            )
        return response

    def release(self) -> None:
        if self._manager is None or not self._taken:
            return
        with self._manager._lock:
            self.release_locked()

    def release_locked(self) -> None:
        for region in self._taken:
            region.uses -= 1
            if region.closing:
                region.close_when_unused()
        self._taken = []


#: a request that names no region
NO_REGIONS = RequestRegions(None)


def tensor_reference(kind: str, name: str, parameters: Mapping[str, Any]) -> TensorReference | None:
    """The shared memory parameters of input or output (``kind``) ``name``, or None.

    Triton's checks and texts (``ParseSharedMemoryParams``): the region is a string, the
    offset and byte size whole numbers, the byte size required with a region and neither
    allowed without one.
    """
    region = parameters.get(REGION)
    if REGION not in parameters:
        for key in (OFFSET, BYTE_SIZE):
            if key in parameters:
                raise invalid(
                    f"'{key}' can not be specified without 'shared_memory_region' "
                    f"parameter for tensor '{name}'"
                )
        return None
    if not isinstance(region, str):
        raise invalid(
            f"invalid value type for 'shared_memory_region' parameter for tensor "
            f"'{name}', expected string_param."
        )
    numbers = {}
    for key in (OFFSET, BYTE_SIZE):
        value = parameters.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int):
            raise invalid(
                f"invalid value type for '{key}' parameter for tensor '{name}', "
                "expected int64_param."
            )
        if value < 0:
            raise invalid(f"'{key}' of {kind} '{name}' must be >= 0, got {_number(value)}")
        numbers[key] = value
    if BYTE_SIZE not in parameters:
        raise invalid(
            f"'shared_memory_byte_size' must be specified along with "
            f"'shared_memory_region' parameter for tensor '{name}'"
        )
    return TensorReference(region, numbers[OFFSET], numbers[BYTE_SIZE])


def cuda_register_error(name: str) -> ServingError:
    """What registering CUDA shared memory answers on this server (no GPUs)."""
    return invalid(f"failed to register CUDA shared memory region: '{name}', GPUs not supported")


def cuda_status(system: SystemSharedMemory, name: str = "") -> list[dict]:
    """The CUDA shared memory status: never a region (Triton's texts for a name)."""
    if not name:
        return []
    if any(r["name"] == name for r in system.status("")):
        raise not_found(
            f"The region named '{name}' is registered as system shared memory, "
            "not CUDA shared memory"
        )
    raise not_found(f"Unable to find cuda shared memory region: '{name}'")


def _open_object(key: str) -> int:
    """The descriptor of the shared memory object ``key``, opened as Triton opens it."""
    try:
        import _posixshmem  # the stdlib's shm_open, as multiprocessing.shared_memory uses

        return _posixshmem.shm_open(key, os.O_RDWR, mode=0o600)
    except (OSError, ValueError, ImportError):
        raise internal(f"Unable to open shared memory region: '{key}'") from None


def register_arguments(document: Mapping[str, Any]) -> tuple[str, int, int]:
    """``key``, ``offset`` and ``byte_size`` of an HTTP register request (Triton's texts)."""
    if "key" not in document:
        raise invalid("Shared memory register request has no 'key' field")
    key = document["key"]
    if not isinstance(key, str):
        raise invalid(
            f"Shared memory register request: 'key' must be a string, got {type(key).__name__}"
        )
    if "byte_size" not in document:
        raise invalid("Shared memory register request has no 'byte_size' field")
    numbers = []
    for field in ("offset", "byte_size"):
        value = document.get(field, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise invalid(
                f"Shared memory register request: '{field}' must be a whole "
                f"number >= 0, got {value!r}"[:200]
            )
        numbers.append(value)
    return key, numbers[0], numbers[1]
