"""The ``onnxruntime`` executor: the main programs as onnxruntime sessions.

At load the load programs run once with the reference interpreter (weights stay the
read-only arrays read at load); the main programs become one ONNX graph
(``popef.runtime.to_onnx``) whose initializers are the persistent tensors and frozen inputs,
handed to onnxruntime from memory (``SessionOptions.add_external_initializers``), never
serialised into the model's bytes; onnxruntime keeps one copy of its own.
Replicas that hold different persistent tensors (per-replica weights or frozen inputs) get a
session each. A request runs as one batch when the graph is batch-polymorphic
(``popef.runtime.batching``; the graph then has a symbolic leading dimension), otherwise one
session run per step. Save programs run with the reference interpreter, like ``cpu``'s.

Everything the runtime checks (graph, shapes, inputs, limits) is checked before onnxruntime
sees anything, so errors are the same as with the other executors.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ...errors import ExecutionError
from ..batching import fold_blocker
from ..loaded import LoadedModel
from ..messages import quote
from ..to_onnx import BATCH_DIM, graph_to_onnx
from .base import (
    Executor,
    check_bool_option,
    check_int_option,
    persistent_states,
    replica_rows,
    run_save_programs,
)

__all__ = ["OPTIMIZATION_LEVELS", "OnnxRuntimeExecutor", "resolve_providers"]

# Constants smaller than this go into the model's bytes (shape inference reads them: Reshape's
# shape, Slice's starts...); larger ones (weights) are handed over from memory.
EMBED_BELOW = 4096

# The most threads one operator may take: onnxruntime starts them all with the session.
MAX_THREADS = 1024

# graph_optimization_level values, by the names this executor takes
OPTIMIZATION_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError as exc:
        raise ExecutionError(
            "executor 'onnxruntime' needs the onnxruntime package: pip install 'popef[onnxruntime]'"
        ) from exc
    return onnxruntime


def resolve_providers(value: object, available: Sequence[str]) -> list[str]:
    """Execution providers from an option value: a list, or one comma-separated string.

    Names are onnxruntime's (``CUDAExecutionProvider``) or short, case-insensitive (``cuda``,
    ``tensorrt``); each must be available in the installed onnxruntime.
    """
    if value is None:
        return ["CPUExecutionProvider"]
    if isinstance(value, str):
        names = [part.strip() for part in value.split(",") if part.strip()]
    elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        names = [v.strip() for v in value]
    else:
        raise ExecutionError(
            "executor 'onnxruntime': option 'providers' must be a list of "
            f"provider names or a comma-separated string, got {value!r}"
        )
    if not names:
        raise ExecutionError("executor 'onnxruntime': option 'providers' names no provider")
    by_key = {}
    for provider in available:
        by_key[provider.lower()] = provider
        by_key[provider.lower().removesuffix("executionprovider")] = provider
    providers = []
    for name in names:
        provider = by_key.get(name.lower())
        if provider is None:
            raise ExecutionError(
                f"executor 'onnxruntime': provider {name!r} is not available; "
                "this onnxruntime has " + ", ".join(available)
            )
        if provider not in providers:
            providers.append(provider)
    return providers


def _optimization_level(ort, value: object):
    if value is None:
        value = "all"
    if isinstance(value, str) and value.strip().lower() in OPTIMIZATION_LEVELS:
        return getattr(ort.GraphOptimizationLevel, OPTIMIZATION_LEVELS[value.strip().lower()])
    if isinstance(value, str) and value.strip().upper() in OPTIMIZATION_LEVELS.values():
        return getattr(ort.GraphOptimizationLevel, value.strip().upper())
    raise ExecutionError(
        "executor 'onnxruntime': option 'graph_optimization_level' must be "
        f"one of {', '.join(OPTIMIZATION_LEVELS)}, got {value!r}"
    )


class OnnxRuntimeExecutor(Executor):
    name = "onnxruntime"
    description = (
        "the main programs as onnxruntime sessions (CPU, CUDA, TensorRT, OpenVINO... "
        "providers; pip install 'popef[onnxruntime]')"
    )
    options = {
        "providers": "execution providers, in order of preference, comma-separated "
        "(default CPUExecutionProvider; short names such as cuda work)",
        "intra_op_num_threads": "threads of one operator (default: onnxruntime's, the cores)",
        "graph_optimization_level": "disable, basic, extended or all (default all)",
        "fold": "run the steps of a request as one batch when the graph allows it (default true)",
    }

    def __init__(
        self,
        *,
        providers: Any = None,
        intra_op_num_threads: Any = None,
        graph_optimization_level: Any = None,
        fold: Any = True,
    ) -> None:
        super().__init__()
        ort = self._ort = _onnxruntime()
        self.providers = resolve_providers(providers, ort.get_available_providers())
        self.intra_op_num_threads = check_int_option(
            self.name, "intra_op_num_threads", intra_op_num_threads
        )
        if self.intra_op_num_threads is not None and self.intra_op_num_threads > MAX_THREADS:
            raise ExecutionError(
                f"executor 'onnxruntime': option 'intra_op_num_threads' must be "
                f"at most {MAX_THREADS}, got {self.intra_op_num_threads}"
            )
        self.graph_optimization_level = _optimization_level(ort, graph_optimization_level)
        self.fold = check_bool_option(self.name, "fold", fold)
        self.fold_blocker: str | None = None
        self._sessions: list[Any] = []
        self._feeds: list[str] = []
        self._fetches: list[str] = []
        self._direct = False

    # ---- load
    def load(self, model: LoadedModel) -> None:
        self.model = model
        rf = model.replication_factor
        self.fold_blocker = fold_blocker(model) if self.fold else "folding is disabled"
        distinct_state = rf > 1 and (
            model.has_per_replica_state
            or any(
                model.streams[s.handle].per_replica and model.streams[s.handle].stored
                for p in model.main
                for s in p.steps
                if hasattr(s, "handle")
            )
        )
        self._sessions = []
        states = self.run_load_programs(model)
        for replica in range(rf if distinct_state else 1):
            persistent = states[replica if len(states) > 1 else 0]
            graph = graph_to_onnx(
                model,
                model.main,
                constants=persistent,
                replica=replica,
                batch_dim=BATCH_DIM if self.fold_blocker is None else None,
                embed=False,
                embed_below=EMBED_BELOW,
            )
            self._sessions.append(self._session(model, graph))
            self._feeds, self._fetches = graph.inputs, graph.outputs
        self._per_replica_inputs = any(s.per_replica for s in model.inputs)
        self._per_replica_outputs = any(s.per_replica for s in model.outputs)
        self._envs = None  # the save programs' persistent tensors, computed when asked for
        # the common case: one batch, one session, the request's arrays as the session's feeds
        self._direct = (
            self.fold_blocker is None
            and len(self._sessions) == 1
            and not self._per_replica_inputs
            and not self._per_replica_outputs
            and set(self._feeds) == {s.name for s in model.inputs}
        )

    def _session(self, model: LoadedModel, graph) -> Any:
        ort = self._ort
        options = ort.SessionOptions()
        # fatal only: every error becomes an ExecutionError, and the log would go to the
        # caller's stderr besides
        options.log_severity_level = 4
        options.graph_optimization_level = self.graph_optimization_level
        if self.intra_op_num_threads is not None:
            options.intra_op_num_threads = self.intra_op_num_threads
        # from memory, never through the serialised model: onnxruntime copies each array once
        # into its own buffers (its Python API offers no way to share them for initializers)
        names = list(graph.constants)
        values = [
            ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(graph.constants[n]))
            for n in names
        ]
        if names:
            options.add_external_initializers(names, values)
        try:
            session = ort.InferenceSession(
                graph.model.SerializeToString(), options, providers=self.providers
            )
        except Exception as exc:
            raise ExecutionError(
                f"executor 'onnxruntime' cannot run model {quote(model.name)}: {_ort_message(exc)}"
            ) from exc
        return session

    @property
    def session_providers(self) -> list[str]:
        """The providers onnxruntime assigned to the session (after fallbacks)."""
        return list(self._sessions[0].get_providers()) if self._sessions else list(self.providers)

    def describe(self) -> str:
        return f"onnxruntime {self._ort.__version__}, providers " + ", ".join(
            self.session_providers
        )

    # ---- execute
    def execute(self, inputs: Mapping[str, np.ndarray], steps: int) -> dict[str, np.ndarray]:
        model = self._require_model()
        if self._direct:
            outputs = self._session_run(self._sessions[0], inputs)
        elif self.fold_blocker is None:
            outputs = self._folded(model, inputs, steps)
        else:
            outputs = self._stepwise(model, inputs, steps)
        for program in model.main:
            self.program_runs[program.index] += steps
        return outputs

    def _run(self, replica: int, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        session = self._sessions[replica if len(self._sessions) > 1 else 0]
        return self._session_run(session, {name: feeds[name] for name in self._feeds})

    def _session_run(self, session: Any, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One session run, its errors as ExecutionError naming the model."""
        try:
            values = session.run(self._fetches, feeds)
        except Exception as exc:
            raise ExecutionError(
                f"executor 'onnxruntime' failed on model "
                f"'{self._require_model().name}': {_ort_message(exc)}"
            ) from exc
        return dict(zip(self._fetches, values))

    def _replicas(self, model: LoadedModel) -> range:
        """The replicas to run: all when they differ and some output shows every replica."""
        distinct = len(self._sessions) > 1 or self._per_replica_inputs
        return range(model.replication_factor if distinct and self._per_replica_outputs else 1)

    def _folded(
        self, model: LoadedModel, inputs: Mapping[str, np.ndarray], n: int
    ) -> dict[str, np.ndarray]:
        rf = model.replication_factor
        runs = [
            self._run(r, {s.name: replica_rows(inputs[s.name], s, n, rf, r) for s in model.inputs})
            for r in self._replicas(model)
        ]
        outputs = {}
        for s in model.outputs:
            if not s.per_replica:
                outputs[s.name] = runs[0][s.name]
                continue
            q = s.spec.shape
            parts = [run[s.name].reshape(n, *q) for run in runs]
            if len(parts) == 1:
                stacked = np.broadcast_to(parts[0][:, None], (n, rf, *q))
            else:
                stacked = np.stack(parts, axis=1)
            outputs[s.name] = np.ascontiguousarray(stacked).reshape(n * rf, *q)
        return outputs

    def _stepwise(
        self, model: LoadedModel, inputs: Mapping[str, np.ndarray], n: int
    ) -> dict[str, np.ndarray]:
        rf = model.replication_factor
        replicas = self._replicas(model)
        results = []
        for step in range(n):
            per_replica = []
            for replica in replicas:
                feeds = {
                    s.name: model.step_input(s, inputs[s.name], n, step, replica)
                    for s in model.inputs
                }
                out = self._run(replica, feeds)
                per_replica.append({s.handle: out[s.name] for s in model.outputs})
            results.append(per_replica if len(per_replica) == rf else per_replica * rf)
        return model.assemble_outputs(results, n)

    # ---- save
    def save(self) -> dict[str, np.ndarray]:
        model = self._require_model()
        if self._envs is None:
            self._envs = persistent_states(model)
        result = run_save_programs(model, self._envs)
        for program in model.save:
            self.program_runs[program.index] += 1
        return result

    def close(self) -> None:
        self._sessions = []
        self._envs = None
        self._direct = False
        super().close()


# onnxruntime's source location in an enforce message: "/path/file.h:256 function(...) cond
# was false. " (the part after it is the reason)
_SOURCE_LOCATION = re.compile(r"\S+\.(?:h|cc|cpp):\d+ .*? was false\. ")
# onnxruntime's message when no kernel of the session's providers takes a node's dtypes
_NO_KERNEL = "Could not find an implementation for"


def _ort_message(exc: Exception) -> str:
    """onnxruntime's message, first line, without its ``[ONNXRuntimeError] : 1 : FAIL :``
    prefix and source locations, with a hint where no kernel takes an op's dtypes."""
    text = str(exc).strip()
    if text.startswith("[ONNXRuntimeError]"):
        text = text.split(" : ", 3)[-1]
    text = text.splitlines()[0] if text else type(exc).__name__
    text = _SOURCE_LOCATION.sub("", text)
    if text.startswith(_NO_KERNEL):
        text += " (onnxruntime has no kernel for this op with these dtypes; executor 'cpu' runs it)"
    return text
