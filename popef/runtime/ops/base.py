"""The operator contract of the runtime: base class, attribute spec, tensor spec and registry.

Every operator is a subclass of :class:`Op` named after its ONNX op type, declaring the attributes
it accepts (:class:`Attr`) and how many inputs and outputs it takes. An instance is bound to one
graph node: ``__init__`` validates and resolves the attributes once (so ``run`` does no parsing),
``infer`` computes output shapes and dtypes from :class:`TensorSpec` values at load time, and
``run`` is the vectorised numpy kernel.

Errors: everything that goes wrong while building, inferring or running an op surfaces as
:class:`popef.errors.ExecutionError`, with a message that starts with the op type and the node
name (``"Conv node 'conv1': ..."``). Subclasses' ``run`` and ``infer`` are wrapped automatically
so that a stray numpy exception (``ValueError``, ``TypeError``, ...) is turned into an
``ExecutionError`` carrying the op, the node and the input shapes.

Aliasing: ``run`` never writes into its inputs, but an output may be a view of an input
(Identity, Dropout, Reshape, Flatten, Transpose return views or the input itself); callers that
hand outputs to users must copy them if they need them to be independent.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from popef.errors import ExecutionError
from popef.runtime.messages import quote

__all__ = [
    "ALL_DTYPES",
    "ATTR_KINDS",
    "FLOAT_DTYPES",
    "INT_DTYPES",
    "NUMERIC_DTYPES",
    "OPS",
    "REQUIRED",
    "SIGNED_INT_DTYPES",
    "UNSIGNED_INT_DTYPES",
    "VARIADIC",
    "Attr",
    "Op",
    "TensorSpec",
    "create_op",
    "fmt_shape",
    "get_op_class",
    "register",
]


class _Required:
    """Type of the :data:`REQUIRED` sentinel (a singleton)."""

    _instance: _Required | None = None

    def __new__(cls) -> _Required:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "REQUIRED"

    def __reduce__(self) -> tuple:
        return (_Required, ())


#: Default of an :class:`Attr` that must be given.
REQUIRED: Any = _Required()

#: Upper bound of ``num_inputs`` for variadic ops (Concat).
VARIADIC = 2**31 - 1

ATTR_KINDS = frozenset({"int", "float", "string", "ints", "floats", "strings"})

FLOAT_DTYPES = frozenset(np.dtype(t) for t in (np.float16, np.float32, np.float64))
SIGNED_INT_DTYPES = frozenset(np.dtype(t) for t in (np.int8, np.int16, np.int32, np.int64))
UNSIGNED_INT_DTYPES = frozenset(np.dtype(t) for t in (np.uint8, np.uint16, np.uint32, np.uint64))
INT_DTYPES = SIGNED_INT_DTYPES | UNSIGNED_INT_DTYPES
NUMERIC_DTYPES = FLOAT_DTYPES | INT_DTYPES
ALL_DTYPES = NUMERIC_DTYPES | {np.dtype(np.bool_)}


def fmt_shape(shape: Sequence[int]) -> str:
    """``(1, 1600)`` -> ``"[1, 1600]"``: how shapes are written in error messages."""
    return "[" + ", ".join(str(int(d)) for d in shape) + "]"


def _short_repr(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class Attr:
    """Declares one attribute: its ONNX kind and its default.

    ``kind`` is one of ``"int"``, ``"float"``, ``"string"``, ``"ints"``, ``"floats"``,
    ``"strings"``.
    ``default`` is :data:`REQUIRED` when the attribute must be given; ``None`` means the
    attribute is optional and its value is derived by the op (e.g. Conv ``strides``).
    """

    kind: str
    default: object = REQUIRED

    def __post_init__(self) -> None:
        if self.kind not in ATTR_KINDS:
            raise ExecutionError(
                f"attribute kind must be one of {', '.join(sorted(ATTR_KINDS))}, got {self.kind!r}"
            )

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


@dataclass(frozen=True)
class TensorSpec:
    """Static description of a tensor: shape (a tuple of non-negative ints) and numpy dtype.

    The op contract's value, not a descriptor of a model's input or output: every tensor of the
    graph program has one (intermediates too), for one replica, in numpy's terms, so that ops
    infer shapes without knowing the file. A model's inputs and outputs are described by
    :class:`popef.runtime.TensorDesc`, built on the format's :class:`popef.types.TensorInfo`;
    its ``spec`` is one of these.

    Both fields are normalised: ``TensorSpec([1, 2], "float32")`` equals
    ``TensorSpec((1, 2), np.dtype(np.float32))``.
    """

    shape: tuple[int, ...]
    dtype: np.dtype

    def __post_init__(self) -> None:
        try:
            shape = tuple(_as_dim(d) for d in self.shape)
        except (TypeError, ValueError):
            raise ExecutionError(
                "a tensor shape must be a sequence of non-negative ints, "
                f"got {_short_repr(self.shape)}"
            ) from None
        try:
            dtype = np.dtype(self.dtype)
        except TypeError:
            raise ExecutionError(f"not a numpy dtype: {_short_repr(self.dtype)}") from None
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "dtype", dtype)

    @classmethod
    def of(cls, array: np.ndarray) -> TensorSpec:
        """The spec of an existing array."""
        return cls(array.shape, array.dtype)

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def __str__(self) -> str:
        return f"{fmt_shape(self.shape)} {self.dtype.name}"


def _as_dim(d: object) -> int:
    if isinstance(d, (bool, np.bool_)) or not isinstance(d, (int, np.integer)):
        raise TypeError(d)
    d = int(d)
    if d < 0:
        raise ValueError(d)
    return d


# --------------------------------------------------------------------------------------------
# attribute conversion


class _KindMismatch(Exception):
    pass


def _to_int(v: object) -> int:
    if isinstance(v, (bool, np.bool_, int, np.integer)):
        return int(v)
    raise _KindMismatch


def _to_float(v: object) -> float:
    if isinstance(v, (bool, np.bool_)):
        raise _KindMismatch
    if isinstance(v, (int, float, np.integer, np.floating)):
        return float(v)
    raise _KindMismatch


def _to_string(v: object) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, (bytes, bytearray)):
        try:
            return bytes(v).decode("utf-8")
        except UnicodeDecodeError:
            raise _KindMismatch from None
    raise _KindMismatch


def _to_list(v: object, item: Callable[[object], Any]) -> tuple:
    if isinstance(v, np.ndarray):
        if v.ndim != 1:
            raise _KindMismatch
        v = v.tolist()
    if not isinstance(v, (list, tuple)):
        raise _KindMismatch
    return tuple(item(x) for x in v)


_CONVERTERS: dict[str, Callable[[object], Any]] = {
    "int": _to_int,
    "float": _to_float,
    "string": _to_string,
    "ints": lambda v: _to_list(v, _to_int),
    "floats": lambda v: _to_list(v, _to_float),
    "strings": lambda v: _to_list(v, _to_string),
}


# --------------------------------------------------------------------------------------------
# the base class

_CAUGHT = (
    ValueError,
    TypeError,
    IndexError,
    KeyError,
    AttributeError,
    ArithmeticError,
    MemoryError,
)


def _describe(inputs: object) -> str:
    try:
        parts = []
        for x in inputs:  # type: ignore[union-attr]
            if x is None:
                parts.append("None")
            elif isinstance(x, TensorSpec):
                parts.append(str(x))
            elif isinstance(x, np.ndarray):
                parts.append(f"{fmt_shape(x.shape)} {x.dtype.name}")
            else:
                parts.append(type(x).__name__)
        return ", ".join(parts)
    except Exception:  # noqa: BLE001 - best effort, for a message only
        return type(inputs).__name__


_UNRELATED: Any = object()  # inputs that are not the inferred ones, nor a folded batch of them


def _scaled_shape(inputs: Sequence[Any], inferred_inputs: tuple, shape: tuple[int, ...]) -> Any:
    """The shape ``shape`` takes for ``inputs``: itself when they are the inferred ones, its
    leading axis scaled when the inputs that differ do so only by one factor on their leading
    axis (a folded batch); :data:`_UNRELATED` otherwise."""
    num = den = 0
    for x, spec in zip(inputs, inferred_inputs):
        if x is None or spec is None or x.shape == spec.shape:
            continue
        if len(x.shape) != len(spec.shape) or not spec.shape or x.shape[1:] != spec.shape[1:]:
            return _UNRELATED
        if den and x.shape[0] * den != num * spec.shape[0]:
            return _UNRELATED
        num, den = x.shape[0], spec.shape[0]
    if not den:
        return shape
    if not shape or (shape[0] * num) % den:
        return None  # a folded batch whose output cannot have scaled: always a mismatch
    return (shape[0] * num // den, *shape[1:])


def _check_outputs(op: Op, inputs: Sequence[Any], outputs: list[np.ndarray]) -> None:
    """Every output has the dtype that ``infer`` promised and, for the inferred inputs or a
    folded batch of them, the shape."""
    inferred_inputs, specs = op._inferred
    for i, (out, spec) in enumerate(zip(outputs, specs)):
        if out.dtype == spec.dtype and out.shape == spec.shape:
            continue
        if out.dtype == spec.dtype:
            want = _scaled_shape(inputs, inferred_inputs, spec.shape)
            if want is _UNRELATED or out.shape == want:
                continue
        raise op.error(
            f"the kernel gave output {i} as {fmt_shape(out.shape)} {out.dtype.name}, "
            f"expected {spec} (as shape inference said)"
        )


def _guard(fn: Callable, what: str) -> Callable:
    """Wrap ``run``/``infer`` so that numpy errors leave as ExecutionError naming op and node.

    The first ``infer`` remembers the specs it was given and gave; ``run`` then checks that each
    output has the inferred dtype and, for the same inputs or a folded batch of them, shape."""

    @functools.wraps(fn)
    def guarded(self: Op, inputs: Sequence[Any]) -> list:
        try:
            result = fn(self, inputs)
        except _CAUGHT as exc:
            raise self.error(
                f"{what} failed on inputs ({_describe(inputs)}): {type(exc).__name__}: {exc}"
            ) from exc
        if type(result) is not list:
            result = list(result)
        if what == "run":
            # numpy ufuncs turn 0-d results into scalars: outputs are always ndarrays
            for i, out in enumerate(result):
                if type(out) is not np.ndarray:
                    result[i] = np.asarray(out)
            if self._inferred is not None:
                _check_outputs(self, inputs, result)
        elif self._inferred is None:
            # the first inference is the node's own (at load); later ones are probes
            # (batch folding infers K times the rows)
            self._inferred = (tuple(inputs), tuple(result))
        return result

    guarded._popef_guarded = True  # type: ignore[attr-defined]
    return guarded


class Op:
    """Base class of all operators; one instance per graph node.

    Subclasses set the class variables, override :meth:`_setup` to validate attribute values
    and precompute what ``run`` needs, and implement :meth:`_infer` (called by :meth:`infer`
    after arity checks) and :meth:`run`.

    Instance fields: ``node`` (node name), ``attrs`` (every declared attribute, defaults applied;
    ``None`` for optional attributes without a default), ``output_count`` (how many outputs the
    node uses), ``constant_inputs`` (index -> np.ndarray, set by the caller before ``infer`` for
    inputs that are constants, e.g. Reshape's shape).

    After ``infer``, ``run`` checks that every output has the dtype and shape inferred (with
    the leading axis scaled by the same factor as the inputs', when a batch is folded): a
    kernel that returns float64 under a float32 output is an ExecutionError, never accepted.
    """

    op_type: ClassVar[str] = ""
    attributes: ClassVar[Mapping[str, Attr]] = {}
    num_inputs: ClassVar[tuple[int, int]] = (1, 1)
    num_outputs: ClassVar[tuple[int, int]] = (1, 1)
    #: inputs whose values shape inference needs: they must be constants at load (ONNX
    #: attributes that became inputs, e.g. ReduceSum's ``axes``)
    static_inputs: ClassVar[frozenset[int]] = frozenset()
    #: (input specs, output specs) of the first successful ``infer``; ``run`` checks against it
    _inferred: tuple | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name, what in (("run", "run"), ("infer", "shape inference")):
            fn = cls.__dict__.get(name)
            if fn is not None and not getattr(fn, "_popef_guarded", False):
                setattr(cls, name, _guard(fn, what))

    def __init__(
        self, node: str, attrs: Mapping[str, object] | None = None, num_outputs: int = 1
    ) -> None:
        self.node = node
        self.constant_inputs: dict[int, np.ndarray] = {}
        lo, hi = type(self).num_outputs
        if (
            isinstance(num_outputs, (bool, np.bool_))
            or not isinstance(num_outputs, (int, np.integer))
            or not lo <= num_outputs <= hi
        ):
            want = str(lo) if lo == hi else f"{lo} to {hi}"
            raise self.error(f"takes {want} output(s), got {_short_repr(num_outputs)}")
        self.output_count = int(num_outputs)
        self.attrs: dict[str, Any] = self._resolve_attrs(attrs)
        self._setup()

    # -- helpers for subclasses ---------------------------------------------------------------

    def error(self, message: str) -> ExecutionError:
        """An ExecutionError whose message names this op type and node."""
        return ExecutionError(f"{self.op_type} node {quote(str(self.node))}: {message}")

    def _setup(self) -> None:
        """Validate attribute values and precompute; called at the end of ``__init__``."""

    def _resolve_attrs(self, attrs: Mapping[str, object] | None) -> dict[str, Any]:
        spec = type(self).attributes
        if attrs is None:
            attrs = {}
        elif not isinstance(attrs, Mapping):
            raise self.error(f"attributes must be a mapping, got {type(attrs).__name__}")
        for name in attrs:
            if name not in spec:
                accepted = ", ".join(sorted(spec)) if spec else "none"
                raise self.error(
                    f"unknown attribute {_short_repr(name)} (accepted attributes: {accepted})"
                )
        resolved: dict[str, Any] = {}
        for name, a in spec.items():
            value = attrs.get(name)
            if value is None:
                if a.default is REQUIRED:
                    raise self.error(f"attribute '{name}' is required")
                resolved[name] = a.default
                continue
            try:
                resolved[name] = _CONVERTERS[a.kind](value)
            except _KindMismatch:
                raise self.error(
                    f"attribute '{name}' must be {a.kind}, got {_short_repr(value)}"
                ) from None
        return resolved

    def _check_arity(self, inputs: Sequence[object], kind: type | tuple) -> list:
        if isinstance(inputs, (str, bytes)) or not isinstance(inputs, Sequence):
            raise self.error(f"inputs must be a sequence, got {type(inputs).__name__}")
        lo, hi = type(self).num_inputs
        n = len(inputs)
        if not lo <= n <= hi:
            want = (
                str(lo) if lo == hi else (f"at least {lo}" if hi == VARIADIC else f"{lo} to {hi}")
            )
            raise self.error(f"takes {want} input(s), got {n}")
        for i, x in enumerate(inputs):
            if x is None:
                if i < lo:
                    raise self.error(f"input {i} is required but was not given (None)")
            elif not isinstance(x, kind):
                raise self.error(f"input {i} must be a TensorSpec, got {type(x).__name__}")
        return list(inputs)

    def _check_dtype(self, spec: TensorSpec, allowed: frozenset, what: str = "input 0") -> None:
        if spec.dtype not in allowed:
            names = ", ".join(sorted(d.name for d in allowed))
            raise self.error(f"{what} has unsupported dtype {spec.dtype.name} (supported: {names})")

    def _check_same_dtype(self, specs: Sequence[TensorSpec | None], first: int = 0) -> None:
        ref = specs[first]
        assert ref is not None
        for i, s in enumerate(specs):
            if s is not None and s.dtype != ref.dtype:
                raise self.error(
                    f"input {i} has dtype {s.dtype.name} but input {first} has {ref.dtype.name}; "
                    "they must match"
                )

    # -- the contract -------------------------------------------------------------------------

    def infer(self, inputs: Sequence[TensorSpec | None]) -> list[TensorSpec]:
        """Output specs for the given input specs; raises ExecutionError on bad inputs."""
        return self._infer(self._check_arity(inputs, TensorSpec))

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        raise NotImplementedError

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        """Compute the outputs; never modifies its inputs."""
        raise NotImplementedError

    def __repr__(self) -> str:
        shown = {k: v for k, v in self.attrs.items() if v is not None}
        return f"<{type(self).__name__} node {self.node!r} attrs={shown}>"


# the base's own infer is guarded too (subclasses implement ``_infer``): it records its specs
Op.infer = _guard(Op.infer, "shape inference")  # type: ignore[method-assign]


# --------------------------------------------------------------------------------------------
# registry

#: op type -> op class, filled by :func:`register`.
OPS: dict[str, type[Op]] = {}


def register(cls: type[Op]) -> type[Op]:
    """Class decorator adding ``cls`` to :data:`OPS` under ``cls.op_type``."""
    if not (isinstance(cls, type) and issubclass(cls, Op)):
        raise ExecutionError(f"only Op subclasses can be registered, got {cls!r}")
    name = cls.__dict__.get("op_type")
    if not isinstance(name, str) or not name:
        raise ExecutionError(f"{cls.__qualname__} must define a non-empty op_type")
    if name in OPS:
        raise ExecutionError(
            f"op type {name!r} is already registered "
            f"(by {OPS[name].__module__}.{OPS[name].__qualname__})"
        )
    for field, value in (("num_inputs", cls.num_inputs), ("num_outputs", cls.num_outputs)):
        if (
            not isinstance(value, tuple)
            or len(value) != 2
            or not all(isinstance(v, int) for v in value)
            or not 0 <= value[0] <= value[1]
        ):
            raise ExecutionError(
                f"{name}: {field} must be a (min, max) pair of ints, got {value!r}"
            )
    for attr_name, attr in cls.attributes.items():
        if not isinstance(attr, Attr):
            raise ExecutionError(f"{name}: attribute {attr_name!r} must be declared with Attr")
    OPS[name] = cls
    return cls


def get_op_class(op_type: str, node: str | None = None) -> type[Op]:
    """The class implementing ``op_type``; ExecutionError listing the supported ops if none."""
    try:
        return OPS[op_type]
    except (KeyError, TypeError):
        where = f" (node {quote(str(node))})" if node is not None else ""
        raise ExecutionError(
            f"unknown op {_short_repr(op_type)}{where}; supported ops: {', '.join(sorted(OPS))}"
        ) from None


def create_op(
    op_type: str, node: str, attrs: Mapping[str, object] | None = None, num_outputs: int = 1
) -> Op:
    """Build the op for one node: ``get_op_class(op_type, node)(node, attrs, num_outputs)``."""
    return get_op_class(op_type, node)(node, attrs, num_outputs)
