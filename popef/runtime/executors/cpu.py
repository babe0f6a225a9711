"""The ``cpu`` executor: the graph program on numpy, vectorised over the whole request.

At load it runs the load programs (weights stay zero-copy views of the file), evaluates once
the main-program nodes that depend only on persistent tensors (constant folding), and compiles
what is left of the main programs into a flat list of ``(kernel, inputs, outputs)``, then into
one Python function that calls the kernels in order with every tensor in a local variable (the
technique of ``torch.fx``: no per-node dictionary traffic). Compiling costs about 50 µs a
node, so a plan of more than ``GENERATED_PLAN_LIMIT`` nodes runs in a plain loop over the plan
instead (a microsecond or two more per node and request, nothing at load). A request runs the
plan once for all its steps and replicas when the graph is batch-polymorphic
(``popef.runtime.batching``), otherwise once per step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..batching import fold_blocker
from ..loaded import BoundNode, LoadedModel, TensorDesc
from ..ops import _kernels
from ..program import DeviceToHost, HostToDevice
from ._parallel import RowSplitter, available_cores, limit_blas_threads
from .base import (
    Executor,
    check_bool_option,
    check_int_option,
    replica_rows,
    run_save_programs,
)

__all__ = ["CpuExecutor", "GENERATED_PLAN_LIMIT"]

# Plans of more nodes than this run in a loop rather than as one generated function.
GENERATED_PLAN_LIMIT = 2048

# (kernel, input names, output names, names dead after this node)
_Plan = list[tuple[Callable[[list], list], tuple[str, ...], tuple[str, ...], tuple[str, ...]]]


class CpuExecutor(Executor):
    name = "cpu"
    description = "numpy kernels on the host, vectorised over the whole request (BLAS)"
    options = {
        "fold": "stack the steps of a request into one batch when the graph allows it "
        "(default true)",
        "fuse": "run Conv -> MaxPool (-> Relu), and Flatten -> Gemm (-> Relu) after it, "
        "as single kernels that never write the intermediate tensors to memory "
        "(default true)",
        "threads": "split a folded request's rows over this many threads "
        "(default: the cores this process may use; 1 runs inline)",
        "blas_threads": "limit numpy's BLAS to this many threads for the whole process, "
        "once (default 1 when threads > 1; 0 leaves BLAS as it is)",
    }

    def __init__(
        self,
        *,
        fold: Any = True,
        fuse: Any = True,
        threads: Any = None,
        blas_threads: Any = None,
    ) -> None:
        super().__init__()
        self.fold = check_bool_option(self.name, "fold", fold)
        self.fuse = check_bool_option(self.name, "fuse", fuse)
        self.threads = check_int_option(self.name, "threads", threads) or available_cores()
        blas = check_int_option(self.name, "blas_threads", blas_threads, minimum=0)
        self.blas_threads = (1 if self.threads > 1 else 0) if blas is None else blas
        if self.blas_threads:  # process-wide, once: BLAS threads inside ours would thrash
            limit_blas_threads(self.blas_threads)
        self._splitter = RowSplitter(self.threads)
        self.fold_blocker: str | None = None
        self._envs: list[dict[str, np.ndarray]] = []
        self._forward: Callable[[Mapping[str, np.ndarray]], tuple] = _no_plan
        self._feeds: list[tuple[str, str]] = []  # (handle, tensor) read from the caller
        self._results: list[tuple[str, str]] = []  # (tensor, handle) given back

    # ---- load
    def load(self, model: LoadedModel) -> None:
        self.model = model
        self.fold_blocker = fold_blocker(model) if self.fold else "folding is disabled"
        self._envs = self.run_load_programs(model)
        self._compile_main(model)

    def _compile_main(self, model: LoadedModel) -> None:
        """Fold constants into the persistent tensors and flatten the rest into a plan."""
        known = set(self._envs[0])
        plan: _Plan = []
        nodes: list[BoundNode] = []  # the node of each plan entry
        feeds, results = [], []
        for program in model.main:
            for step in program.steps:
                if isinstance(step, HostToDevice):
                    stream = model.streams[step.handle]
                    if stream.stored:  # a frozen input: the same data at every step
                        for replica, env in enumerate(self._envs):
                            env[step.tensor] = model.stored_for_replica(stream, replica)
                        known.add(step.tensor)
                    else:
                        feeds.append((step.handle, step.tensor))
                elif isinstance(step, DeviceToHost):
                    results.append((step.tensor, step.handle))
                elif all(not name or name in known for name in step.inputs):
                    for env in self._envs:
                        _run_node(step, env)
                    known.update(name for name in step.outputs if name)
                else:
                    plan.append((step.op.run, step.inputs, step.outputs, ()))
                    nodes.append(step)
        kept = {tensor for tensor, _ in results}
        if self.fuse:
            plan, fused_nodes, channels_last = _fuse_conv_max_pool(plan, nodes, kept)
            plan = _fuse_flatten_gemm(plan, fused_nodes, kept, known, self._envs, channels_last)
        plan = _free_dead_tensors(plan, known, kept)
        forward = _generate_forward if len(plan) <= GENERATED_PLAN_LIMIT else _loop_forward
        self._forward = forward(plan, [tensor for tensor, _ in results])
        self._feeds, self._results = feeds, results
        rf = model.replication_factor
        self._distinct = rf > 1 and (
            len(self._envs) > 1 or any(s.per_replica for s in model.inputs)
        )
        self._main = [p.index for p in model.main]
        # the common case: one batch, replica 0 only, outputs as they come
        self._direct = (
            self.fold_blocker is None
            and not self._distinct
            and not any(s.per_replica for s in model.outputs)
        )
        names = {s.handle: s.name for s in (*model.inputs, *model.outputs)}
        self._feeds_by_name = [(names[h], t) for h, t in feeds]
        self._results_by_name = [(i, names[h]) for i, (_, h) in enumerate(results) if h in names]

    # ---- execute
    def execute(self, inputs: Mapping[str, np.ndarray], steps: int) -> dict[str, np.ndarray]:
        model = self._require_model()
        if self._direct:
            outputs = self._run_direct(inputs, steps)
        elif self.fold_blocker is None:
            outputs = self._folded(model, inputs, steps, self._distinct)
        else:
            outputs = self._stepwise(model, inputs, steps, self._distinct)
        for index in self._main:
            self.program_runs[index] += steps
        return _owned(outputs, inputs)

    def _run_direct(self, inputs: Mapping[str, np.ndarray], steps: int) -> dict[str, np.ndarray]:
        """The plan once, on the inputs as given (by input name), outputs by output name."""
        feeds = [(tensor, inputs[name]) for name, tensor in self._feeds_by_name]
        values = self._splitter.run(self._forward, self._envs[0], feeds, steps)
        return {name: values[i] for i, name in self._results_by_name}

    def _run(
        self, env: dict[str, np.ndarray], values: Mapping[str, np.ndarray], instances: int = 1
    ) -> dict[str, np.ndarray]:
        """One run of the plan on the rows of ``instances`` instances (split over threads
        where worth it): ``values`` by handle in, outputs by handle out."""
        feeds = [(tensor, values[handle]) for handle, tensor in self._feeds]
        results = self._splitter.run(self._forward, env, feeds, instances)
        return dict(zip((handle for _, handle in self._results), results))

    def _folded(
        self, model: LoadedModel, inputs: Mapping[str, np.ndarray], n: int, distinct: bool
    ) -> dict[str, np.ndarray]:
        rf = model.replication_factor
        by_handle = {s.handle: s for s in model.inputs}
        if not distinct:  # every replica computes the same: run replica 0 only
            values = {h: inputs[s.name] for h, s in by_handle.items()}
            y = self._run(self._envs[0], values, n)
            return {
                s.name: _spread(y[s.handle], s, n, rf) if s.per_replica else y[s.handle]
                for s in model.outputs
            }
        if len(self._envs) == 1:  # instances in (step, replica) order, one run
            values = {h: _instances(inputs[s.name], s, n, rf) for h, s in by_handle.items()}
            y = self._run(self._envs[0], values, n * rf)
            return {s.name: _gather(y[s.handle], s, n, rf) for s in model.outputs}
        runs = []  # per-replica weights: one run per replica, its steps folded
        for replica, env in enumerate(self._envs):
            values = {
                h: replica_rows(inputs[s.name], s, n, rf, replica) for h, s in by_handle.items()
            }
            runs.append(self._run(env, values, n))
        outputs = {}
        for s in model.outputs:
            if s.per_replica:
                q = s.spec.shape
                stacked = np.stack([r[s.handle].reshape(n, *q) for r in runs], axis=1)
                outputs[s.name] = stacked.reshape(n * rf, *q)
            else:
                outputs[s.name] = runs[0][s.handle]
        return outputs

    def _stepwise(
        self, model: LoadedModel, inputs: Mapping[str, np.ndarray], n: int, distinct: bool
    ) -> dict[str, np.ndarray]:
        rf = model.replication_factor
        replicas = range(rf) if distinct else range(1)
        results = []
        for step in range(n):
            per_replica = []
            for replica in replicas:
                values = {
                    s.handle: model.step_input(s, inputs[s.name], n, step, replica)
                    for s in model.inputs
                }
                env = self._envs[replica if len(self._envs) > 1 else 0]
                per_replica.append(self._run(env, values))
            results.append(per_replica if distinct else per_replica * rf)
        return model.assemble_outputs(results, n)

    # ---- save
    def save(self) -> dict[str, np.ndarray]:
        model = self._require_model()
        result = run_save_programs(model, self._envs)
        for program in model.save:
            self.program_runs[program.index] += 1
        return result

    def close(self) -> None:
        self._splitter.close()
        self._envs = []
        self._forward = _no_plan
        super().close()


def _fuse_conv_max_pool(
    plan: _Plan, nodes: list[BoundNode], kept: set[str]
) -> tuple[_Plan, list[BoundNode | None], set[str]]:
    """Replace each Conv whose output only a fusable MaxPool reads (and that MaxPool's, if
    only a Relu reads it) by one kernel (``Conv.with_max_pool``); the intermediate tensors
    then never exist. Returns the plan, the node of each entry (None for a fused one) and
    the tensors that fused kernels give in the channels-last layout."""
    readers = _readers(plan)

    def only_reader(tensor: str, op_type: str) -> int | None:
        found = readers.get(tensor, [])
        if tensor in kept or len(found) != 1 or nodes[found[0]].node.op_type != op_type:
            return None
        return found[0]

    fused: dict[int, tuple] = {}
    removed: set[int] = set()
    channels_last: set[str] = set()
    for i, node in enumerate(nodes):
        if node.node.op_type != "Conv" or len(node.outputs) != 1:
            continue
        j = only_reader(node.outputs[0], "MaxPool")
        if j is None or j in removed:
            continue
        window = nodes[j].op.fusable_window()  # type: ignore[attr-defined]
        if window is None or [o for o in nodes[j].outputs if o] != [nodes[j].outputs[0]]:
            continue
        k = only_reader(nodes[j].outputs[0], "Relu")
        kernel = node.op.with_max_pool(window, relu=k is not None)  # type: ignore[attr-defined]
        if kernel is None:
            continue
        last = nodes[k] if k is not None else nodes[j]
        fused[i] = (kernel, node.inputs, (last.outputs[0],), ())
        removed.update({j} if k is None else {j, k})
        if getattr(kernel, "channels_last", False):
            channels_last.add(last.outputs[0])
    kept_entries = [i for i in range(len(plan)) if i not in removed]
    return (
        [fused.get(i, plan[i]) for i in kept_entries],
        [None if i in fused else nodes[i] for i in kept_entries],
        channels_last,
    )


def _fuse_flatten_gemm(
    plan: _Plan,
    nodes: list[BoundNode | None],
    kept: set[str],
    known: set[str],
    envs: list[dict[str, np.ndarray]],
    channels_last: set[str],
) -> _Plan:
    """Replace Flatten(axis=1) -> Gemm (-> Relu) on a channels-last (N, C, H, W) tensor by
    one kernel (:func:`_kernels.dense_channels_last`) multiplying the tensor as (N, H*W*C)
    -- a cheap copy instead of a transposition -- by the Gemm's weights permuted to match,
    once, into each group of persistent tensors. Only the plain Gemm is fused: constant B
    and bias, no transA, alpha 1, beta 1, float32 or float64."""
    readers = _readers(plan)

    def only_reader(tensor: str, op_type: str) -> int | None:
        found = readers.get(tensor, [])
        node = nodes[found[0]] if len(found) == 1 else None
        return found[0] if tensor not in kept and node and node.node.op_type == op_type else None

    taken = known | {name for _, names, outputs, _ in plan for name in (*names, *outputs)}
    fused: dict[int, tuple] = {}
    removed: set[int] = set()
    for i, node in enumerate(nodes):
        if (
            node is None
            or node.node.op_type != "Flatten"
            or node.inputs[0] not in channels_last
            or node.op.axis != 1
        ):  # type: ignore[attr-defined]
            continue
        spec = node.input_specs[0]
        j = only_reader(node.outputs[0], "Gemm")
        if spec is None or len(spec.shape) != 4 or j is None:
            continue
        gemm = nodes[j]
        assert gemm is not None
        if gemm.inputs[0] != node.outputs[0]:  # the flattened tensor is B, not A
            continue
        weights = _permuted_gemm_weights(gemm, spec.shape, known, taken, envs)
        if weights is None:
            continue
        k = only_reader(gemm.outputs[0], "Relu")
        kernel = _kernels.dense_channels_last_kernel(relu=k is not None)
        last = nodes[k] if k is not None else gemm
        assert last is not None
        fused[i] = (kernel, (node.inputs[0], *weights), (last.outputs[0],), ())
        removed.update({j} if k is None else {j, k})
    return [fused.get(i, entry) for i, entry in enumerate(plan) if i not in removed]


def _permuted_gemm_weights(
    gemm: BoundNode,
    shape: tuple[int, ...],
    known: set[str],
    taken: set[str],
    envs: list[dict[str, np.ndarray]],
) -> tuple[str, str] | None:
    """The names of a plain Gemm's weights permuted for a channels-last (N, C, H, W) input
    (see :func:`_fuse_flatten_gemm`), added to ``envs`` and ``known`` under names not in
    ``taken`` (then taken too); None when the Gemm is not plain."""
    op: Any = gemm.op
    names = list(gemm.inputs) + [""] * (3 - len(gemm.inputs))
    b_name, c_name = names[1], names[2]
    _, c, h, w = shape
    out = gemm.output_specs[0].shape[1]
    dtype = gemm.output_specs[0].dtype
    plain = (
        not op.trans_a
        and op.alpha == 1.0
        and (not c_name or op.beta == 1.0)
        and dtype in (np.dtype(np.float32), np.dtype(np.float64))
        and b_name in known
        and (not c_name or c_name in known)
    )
    if not plain:
        return None
    if c_name and envs[0][c_name].shape not in ((out,), (1, out)):
        return None  # a bias per row: the batch's, not a constant's
    w_name = _fresh_name(b_name, taken)
    taken.add(w_name)
    bias_name = _fresh_name(c_name or b_name, taken)
    taken.add(bias_name)
    for env in envs:
        b = env[b_name].T if op.trans_b else env[b_name]  # (C*H*W, out)
        env[w_name] = np.ascontiguousarray(
            b.reshape(c, h, w, out).transpose(1, 2, 0, 3), dtype=dtype
        ).reshape(h * w * c, out)
        if c_name:
            env[bias_name] = np.asarray(env[c_name], dtype=dtype).reshape(out)
    known.update((w_name, bias_name) if c_name else (w_name,))
    return w_name, bias_name if c_name else ""


def _fresh_name(base: str, taken: set[str]) -> str:
    """A tensor name derived from ``base`` that no tensor has."""
    i = 0
    while f"{base}/channels-last{i}" in taken:
        i += 1
    return f"{base}/channels-last{i}"


def _readers(plan: _Plan) -> dict[str, list[int]]:
    """The plan entries that read each tensor."""
    readers: dict[str, list[int]] = {}
    for i, (_, names, _, _) in enumerate(plan):
        for name in set(names):
            if name:
                readers.setdefault(name, []).append(i)
    return readers


def _free_dead_tensors(plan: _Plan, persistent: set[str], kept: set[str]) -> _Plan:
    """Mark, on each node, the step tensors whose last reader it is (neither persistent nor
    given back to the host)."""
    last: dict[str, int] = {}
    for i, (_, names, outputs, _) in enumerate(plan):
        for name in (*names, *outputs):
            if name and name not in persistent and name not in kept:
                last[name] = i
    dead: list[list[str]] = [[] for _ in plan]
    for name, i in last.items():
        dead[i].append(name)
    return [
        (run, names, outputs, tuple(sorted(set(d))))
        for (run, names, outputs, _), d in zip(plan, dead)
    ]


def _generate_forward(
    plan: _Plan, results: list[str]
) -> Callable[[Mapping[str, np.ndarray]], tuple]:
    """Compile ``plan`` into ``forward(scope) -> (result tensors...)``.

    The generated function reads the tensors that no node produces (persistent tensors, feeds)
    from ``scope`` once, keeps every tensor in a local variable, calls each kernel with a list
    of its inputs, deletes intermediates after their last reader (``dead``) and returns the
    ``results`` in order. Tensor names only ever appear as string literals (``repr``); the
    variables are numbered.
    """
    slots: dict[str, str] = {}
    body: list[str] = []
    reads: list[str] = []

    def slot(name: str) -> str:
        if name not in slots:
            slots[name] = f"t{len(slots)}"
            reads.append(f"    {slots[name]} = scope[{name!r}]")
        return slots[name]

    kernels = {}
    for i, (run, names, outputs, dead) in enumerate(plan):
        kernels[f"k{i}"] = run
        args = ", ".join(slot(name) if name else "None" for name in names)
        body.append(f"    r = k{i}([{args}])")
        for j, name in enumerate(outputs):
            if name:
                slots[name] = slots.get(name) or f"t{len(slots)}"
                body.append(f"    {slots[name]} = r[{j}]")
        if dead:
            body.append(f"    del {', '.join(slots[name] for name in dead)}")
    returned = [slot(name) for name in results]
    source = "\n".join(
        [
            "def forward(scope):",
            *reads,
            *body,
            f"    return ({''.join(v + ', ' for v in returned)})",
        ]
    )
    namespace: dict[str, Any] = dict(kernels)
    exec(compile(source, "<popef cpu plan>", "exec"), namespace)  # noqa: S102 - generated above
    return namespace["forward"]


def _loop_forward(plan: _Plan, results: list[str]) -> Callable[[Mapping[str, np.ndarray]], tuple]:
    """``forward(scope)`` as :func:`_generate_forward` makes it, as a loop over ``plan``."""

    def forward(scope: Mapping[str, np.ndarray]) -> tuple:
        env = dict(scope)
        for run, names, outputs, dead in plan:
            values = run([env[name] if name else None for name in names])
            for name, value in zip(outputs, values):
                if name:
                    env[name] = value
            for name in dead:
                del env[name]
        return tuple(env[name] for name in results)

    return forward


def _no_plan(scope: Mapping[str, np.ndarray]) -> tuple:
    raise RuntimeError("the executor has no model loaded")


def _run_node(step: BoundNode, env: dict[str, np.ndarray]) -> None:
    results = step.op.run([env[name] if name else None for name in step.inputs])
    for name, value in zip(step.outputs, results):
        if name:
            env[name] = value


def _spread(y: np.ndarray, s: TensorDesc, n: int, rf: int) -> np.ndarray:
    """Replica 0's rows of ``n`` steps -> the per-replica layout, every replica the same."""
    q = s.spec.shape
    return np.broadcast_to(y.reshape(n, 1, *q), (n, rf, *q)).reshape(n * rf, *q)


def _instances(x: np.ndarray, s: TensorDesc, n: int, rf: int) -> np.ndarray:
    """A request input -> rows of every (step, replica) instance, stacked."""
    p = s.spec.shape
    if s.per_replica:
        return x.reshape(n * rf * p[0], *p[1:])
    return np.broadcast_to(x.reshape(n, 1, *p), (n, rf, *p)).reshape(n * rf * p[0], *p[1:])


def _gather(y: np.ndarray, s: TensorDesc, n: int, rf: int) -> np.ndarray:
    """Rows of every (step, replica) instance -> an output's layout."""
    q = s.spec.shape
    if s.per_replica:
        return y.reshape(n * rf, *q)
    return y.reshape(n, rf, *q)[:, 0].reshape(n * q[0], *q[1:])


def _owned(
    outputs: dict[str, np.ndarray], inputs: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Copy the outputs that alias an input or stored data (views from Identity, Reshape...)."""
    for name, y in outputs.items():
        if not y.flags.writeable or any(np.may_share_memory(y, x) for x in inputs.values()):
            outputs[name] = y.copy()
    return outputs
