"""Running one case of ONNX's node test suite through the importer and both executors.

A case is a one-node ONNX model with input and expected output arrays
(``onnx.backend.test.loader.load_node_model_tests()``, built in memory). Inputs that the op
needs as constants at load (ONNX attributes that became inputs: ReduceSum's axes, Reshape's
shape, ...) are fed in the suite as graph inputs; real exports hold them as initializers or
``Constant`` nodes, and so does the harness: such inputs become initializers holding the test's
values. Every other input stays a model input, fed at run time.

The outcome of a case is one of:

- ``pass``: imported, both ``cpu`` and ``ipu-model`` ran it and matched the expected outputs
  (onnx's tolerances: the case's rtol and atol, 1e-3 and 1e-7 by default; integers and bools
  exactly; dtypes and shapes exactly);
- ``folded``: the importer evaluated the whole graph at import (no node left to run), and the
  outputs matched;
- ``refused: <reason>``: a :class:`popef.PopefError` at import or at run, classified by
  :func:`reason_of`;
- ``wrong: ...`` (a mismatch) or ``crash: ...`` (an exception that is not a PopefError): never
  acceptable, whatever the expectations say.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

import popef
from popef.errors import PopefError
from popef.runtime import ModelRunner
from popef.runtime.ops import OPS, TensorSpec, create_op

EXECUTORS = ("cpu", "ipu-model")
_CONSTANT_INPUT = re.compile(r"input (\d+)[^:]*must be a constant")


@dataclass(frozen=True)
class Outcome:
    status: str  # "pass", "folded", "refused: ...", "wrong: ...", "crash: ..."
    detail: str = ""  # the full message, for humans
    op_type: str = ""

    @property
    def acceptable(self) -> bool:
        """Whether this outcome may ever be expected (wrong answers and crashes never are)."""
        return self.status in ("pass", "folded") or self.status.startswith("refused: ")


def load_cases() -> list:
    """Every node case of the installed onnx, in memory, sorted by name."""
    import warnings

    from onnx.backend.test.loader import load_node_model_tests

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the generators' own overflow warnings
        with np.errstate(all="ignore"):
            cases = load_node_model_tests()
    return sorted(cases, key=lambda c: c.name)


def op_type_of(case) -> str:
    nodes = case.model.graph.node
    return nodes[0].op_type if len(nodes) == 1 else "+".join(sorted({n.op_type for n in nodes}))


def reason_of(error: BaseException) -> str:
    """A stable class of refusal: what a lead needs to plan (not the full message)."""
    text = str(error)
    if "op type" in text and "runtime does not have" in text:
        names = re.findall(r"([A-Za-z0-9_.]+) \u00d7\d+", text)
        return f"unsupported op {', '.join(sorted(names)) or '?'}"
    if "unknown op" in text:
        m = re.search(r"unknown op '([^']+)'", text)
        return f"unsupported op {m.group(1) if m else '?'}"
    if "sequence, optional or string" in text:
        return "sequence, optional or string values"
    if "is not supported (control flow" in text:
        return "control flow"
    if (
        "dtype" in text
        or "data type" in text
        or "STRING" in text
        or "BFLOAT16" in text
        or "FLOAT8" in text
        or "INT4" in text
        or "COMPLEX" in text
    ):
        return "unsupported dtype"
    if "training" in text:
        return "training mode"
    if "must be a constant" in text:
        return "needs a constant input"
    if "attribute" in text:
        return "unsupported attribute"
    return type(error).__name__


def _static_slots(node, graph_inputs: dict[str, TensorSpec], opset: int) -> set[int]:
    """Input positions of ``node`` that its op needs as constants at load."""
    op_class = OPS.get(node.op_type)
    if op_class is None:
        return set()
    slots = set(op_class.static_inputs)
    names = list(node.input)
    if not all(name in graph_inputs for name in names if name):
        return slots  # inside a larger graph: only what the op declares
    for _ in range(len(names)):
        try:
            from popef.importers.onnx import convert  # noqa: F401 - the importer's presence

            op = create_op(
                node.op_type, node.name or "node", _attributes(node), max(len(node.output), 1)
            )
        except PopefError:
            return slots
        specs = []
        for k, name in enumerate(names):
            spec = graph_inputs.get(name) if name else None
            specs.append(spec)
            if k in slots and spec is not None:
                op.constant_inputs[k] = np.zeros(spec.shape, spec.dtype)  # only needed to ask
        try:
            op.infer(specs)
            return slots
        except PopefError as exc:
            m = _CONSTANT_INPUT.search(str(exc))
            if not m or int(m.group(1)) in slots:
                return slots
            slots.add(int(m.group(1)))
    return slots


def _attributes(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def freeze_static_inputs(model, inputs: Sequence[np.ndarray]):
    """A copy of ``model`` whose constant-only inputs are initializers holding the test values;
    returns (model, {input name: array} still to feed)."""
    from onnx import numpy_helper

    model = type(model).FromString(model.SerializeToString())
    graph = model.graph
    declared = [i.name for i in graph.input if i.name not in {t.name for t in graph.initializer}]
    values = dict(zip(declared, inputs))
    specs = {
        name: TensorSpec.of(np.asarray(a))
        for name, a in values.items()
        if np.asarray(a).dtype != object
    }
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=1)
    frozen: set[str] = set()
    for node in graph.node:
        for k in _static_slots(node, specs, opset):
            if k < len(node.input) and node.input[k] in values:
                frozen.add(node.input[k])
    for name in frozen:
        graph.initializer.append(numpy_helper.from_array(np.asarray(values[name]), name))
    keep = [i for i in graph.input if i.name not in frozen]
    del graph.input[:]
    graph.input.extend(keep)
    return model, {n: v for n, v in values.items() if n not in frozen}


def _compare(name: str, got: np.ndarray, want: np.ndarray, rtol: float, atol: float) -> str | None:
    want = np.asarray(want)
    if want.dtype == object:
        return f"'{name}': expected an object array (sequence or string output)"
    if got.dtype != want.dtype:
        return f"'{name}': dtype {got.dtype.name}, expected {want.dtype.name}"
    if got.shape != want.shape:
        return f"'{name}': shape {list(got.shape)}, expected {list(want.shape)}"
    if want.dtype.kind == "f":
        try:
            np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)
        except AssertionError as exc:
            lines = [
                ln.strip()
                for ln in str(exc).strip().splitlines()
                if "ismatch" in ln or "difference" in ln
            ]
            return f"'{name}': values differ: {'; '.join(lines)}"
    elif not np.array_equal(got, want):
        return f"'{name}': values differ"
    return None


def run_case(case) -> Outcome:
    """Import, run on every executor and compare each of the case's data sets."""
    op_type = op_type_of(case)
    status = "pass"
    for inputs, outputs in case.data_sets:
        try:
            outcome = _run_data_set(case, inputs, outputs)
        except PopefError as exc:
            return Outcome(f"refused: {reason_of(exc)}", str(exc), op_type)
        except Exception as exc:  # noqa: BLE001 - every other exception is a failure
            return Outcome(f"crash: {type(exc).__name__}", str(exc), op_type)
        if outcome is not None and outcome.status not in ("pass", "folded"):
            return Outcome(outcome.status, outcome.detail, op_type)
        if outcome is not None and outcome.status == "folded":
            status = "folded"
    return Outcome(status, "", op_type)


def _as_array(value):
    """A data set value as numpy: TensorProtos converted, numpy scalars as 0-d arrays; other
    values (sequences, optionals) are left as they are."""
    if isinstance(value, np.generic):
        return np.asarray(value)
    if type(value).__name__ == "TensorProto":
        from onnx import numpy_helper

        return numpy_helper.to_array(value)
    return value


def _run_data_set(case, inputs, outputs) -> Outcome | None:
    inputs = [_as_array(x) for x in inputs]
    outputs = [_as_array(y) for y in outputs]
    if any(not isinstance(x, np.ndarray) or x.dtype == object for x in inputs) or any(
        not isinstance(y, np.ndarray) or y.dtype == object for y in outputs
    ):
        raise popef.ExecutionError("sequence, optional or string values are not supported")
    model, feeds = freeze_static_inputs(case.model, inputs)
    stream = io.BytesIO()
    result = popef.import_onnx(model, stream, executable_name="case")
    reader = popef.Reader()
    reader.parse_bytes(stream.getvalue())
    [loaded] = reader.models()
    names = [o.name for o in case.model.graph.output]
    for executor in EXECUTORS:
        with ModelRunner(loaded, executor) as runner:
            wanted = {d.name for d in runner.get_execute_inputs()}
            got = runner.execute({n: np.asarray(v) for n, v in feeds.items() if n in wanted})
        for name, want in zip(names, outputs):
            if name not in got:
                return Outcome(f"wrong: no output '{name}'", f"{executor}: outputs {sorted(got)}")
            problem = _compare(name, np.asarray(got[name]), want, case.rtol, case.atol)
            if problem:
                return Outcome("wrong: mismatch", f"{executor}: {problem}")
    return Outcome("folded" if result.kept_nodes == 0 else "pass")


def iter_outcomes(cases) -> Iterator[tuple[str, Outcome]]:
    for case in cases:
        with np.errstate(all="ignore"):
            yield case.name, run_case(case)
