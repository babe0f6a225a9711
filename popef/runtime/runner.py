"""ModelRunner: load a PopEF model once, then run it — Model Runtime's high-level API.

::

    with ModelRunner("mnist.popef") as runner:              # load programs run here, once
        [x] = runner.get_execute_inputs()                   # name, shape, dtype, size_in_bytes
        out = runner.execute({x.name: image})               # {output name: array}
        futures = runner.execute_async({x.name: image})     # futures[name].result(), .wait()
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import ExecutionError, PopefError
from ..model import Model
from ..reader import Reader
from .executors import Executor, get_executor
from .limits import RuntimeLimits
from .loaded import LoadedModel, TensorDesc
from .loader import load_model
from .requests import RequestChecks

__all__ = ["ModelRunner", "TensorDesc", "OutputFutures"]


class OutputFutures(Mapping[str, "concurrent.futures.Future[np.ndarray]"]):
    """The outputs of an asynchronous execution: ``futures[name]`` is a future of one output;
    :meth:`wait` gives all of them, raising the execution's error if it failed."""

    def __init__(
        self, future: concurrent.futures.Future[dict[str, np.ndarray]], names: Sequence[str]
    ):
        self._future = future
        self._outputs: dict[str, concurrent.futures.Future] = {
            name: concurrent.futures.Future() for name in names
        }
        future.add_done_callback(self._settle)

    def _settle(self, future: concurrent.futures.Future) -> None:
        error = future.exception()
        for name, output in self._outputs.items():
            if error is not None:
                output.set_exception(error)
            else:
                output.set_result(future.result()[name])

    def __getitem__(self, name: str) -> concurrent.futures.Future[np.ndarray]:
        return self._outputs[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._outputs)

    def __len__(self) -> int:
        return len(self._outputs)

    def done(self) -> bool:
        return self._future.done()

    def wait(self, timeout: float | None = None) -> dict[str, np.ndarray]:
        """All outputs by name (blocks; ``TimeoutError`` after ``timeout`` seconds)."""
        return self._future.result(timeout)


class ModelRunner:
    """Runs one model of one or more PopEF files on an executor.

    ``source`` is a path, a list of paths (one model spread over several files, e.g. the
    executable and ``variables.popef``), or a :class:`popef.Model`. When the files hold several
    models, ``executable`` names the one to run. ``executor`` is a registered executor name
    (``"cpu"``, ``"ipu-model"``, plug-ins) or an :class:`Executor` instance; ``options`` go to
    the executor. Loading checks the whole graph and runs the load programs once.

    Loading reads the model's tensor data into memory, so a file replaced or truncated on disk
    afterwards does not affect the runner. With ``verify`` (the default) every blob of the
    model is checked against its checksum first, and a corrupt one raises
    :class:`popef.ChecksumError`; ``verify=False`` skips that (it costs one pass over the
    files, see docs/runtime.md).

    ``limits`` (a :class:`RuntimeLimits`) bounds what the model may cost: the steps of its
    graph program and the size of every tensor, checked at load, and the estimated memory of
    one request, checked before it runs; the defaults are in docs/runtime.md ("Limits").
    """

    def __init__(
        self,
        source: str | os.PathLike | Sequence[str | os.PathLike] | Model | Reader,
        executor: str | Executor = "cpu",
        *,
        executable: str | None = None,
        verify: bool = True,
        limits: RuntimeLimits | None = None,
        **options: Any,
    ) -> None:
        self._reader: Reader | None = None
        self._closed = False
        self._lock = threading.Lock()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self.executor: Executor | None = None
        try:
            self.model = self._open(source, executable)
            if isinstance(executor, Executor):
                if options:
                    raise ExecutionError(
                        "executor options go to get_executor(), not to a "
                        "ModelRunner given an Executor instance"
                    )
                self.executor = executor
            else:
                self.executor = get_executor(executor, **options)
            self.loaded: LoadedModel = load_model(self.model, verify=verify, limits=limits)
            self._guarded(self.executor.load, self.loaded)
            self._requests = RequestChecks(self.loaded)
            self._inputs = list(self.loaded.inputs)
            self._outputs = list(self.loaded.outputs)
        except BaseException:
            self.close()
            raise

    def _open(self, source, executable: str | None) -> Model:
        if isinstance(source, Model):
            if executable is not None and executable != source.name:
                raise ExecutionError(f"the model given is '{source.name}', not '{executable}'")
            return source
        if isinstance(source, Reader):
            reader = source
        else:
            paths = [source] if isinstance(source, (str, os.PathLike)) else list(source)
            if not paths:
                raise ExecutionError("ModelRunner needs at least one PopEF file")
            reader = self._reader = Reader()
            for path in paths:
                if not isinstance(path, (str, os.PathLike)):
                    raise ExecutionError(
                        f"ModelRunner takes paths, a popef.Model or a Reader; "
                        f"got a {type(path).__name__}"
                    )
                reader.parse_file(path)
        models = reader.models()
        if executable is not None:
            for model in models:
                if model.name == executable:
                    return model
            raise ExecutionError(
                f"no model named '{executable}'; the files hold {_model_names(models)}"
            )
        if len(models) != 1:
            raise ExecutionError(
                f"the files hold {_model_names(models)}: choose one with executable=NAME"
                if models
                else "the files hold no model"
            )
        return models[0]

    # ---- descriptions
    def get_execute_inputs(self) -> list[TensorDesc]:
        """The inputs every execution takes, in metadata order."""
        return list(self._inputs)

    def get_execute_outputs(self) -> list[TensorDesc]:
        """The outputs every execution gives, in metadata order."""
        return list(self._outputs)

    @property
    def program_runs(self) -> dict[int, int]:
        """How many times each program has run: load programs once, main programs per step."""
        return dict(self.executor.program_runs) if self.executor is not None else {}

    # ---- execution
    def execute(self, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Run the main programs on ``inputs`` (``{name: array}``); returns ``{name: array}``.

        Each input has its anchor's dtype, and its anchor's shape or ``n`` times its leading
        dimension for ``n`` steps (device iterations); outputs then carry ``n`` steps too.
        """
        self._check_open()
        arrays, steps = self._requests.check_inputs(inputs)
        return self._run(arrays, steps)

    def execute_checked(
        self, inputs: Mapping[str, np.ndarray], steps: int
    ) -> dict[str, np.ndarray]:
        """Like :meth:`execute`, for inputs their caller has already checked: every input by
        name, a numpy array of its anchor's dtype, ``steps`` × its anchor's leading dimension.

        For front ends that check each request against the model themselves before it gets
        here (``popef serve`` and the Triton backend, with ``popef.servable.validation``), so
        that a request is not checked twice: only what ``steps`` steps may cost is checked
        (``RuntimeLimits.max_request_bytes``, one step for a model with a scalar output).
        Inputs that break the contract give wrong results or an executor's error, not a
        message naming the input.
        """
        self._check_open()
        steps = _step_count(steps)
        self._requests.check_steps(steps)
        return self._run(inputs, steps)

    def execute_async(self, inputs: Mapping[str, Any]) -> OutputFutures:
        """Like :meth:`execute`, in the background: ``result[name]`` is a future of one output,
        ``result.wait()`` gives them all. Inputs are checked at once; keep the arrays unchanged
        until the execution is done."""
        self._check_open()
        arrays, steps = self._requests.check_inputs(inputs)
        return self._submit(arrays, steps)

    def execute_checked_async(self, inputs: Mapping[str, np.ndarray], steps: int) -> OutputFutures:
        """:meth:`execute_checked` in the background, as :meth:`execute_async` runs
        :meth:`execute`."""
        self._check_open()
        steps = _step_count(steps)
        self._requests.check_steps(steps)
        return self._submit(inputs, steps)

    def _submit(self, arrays: Mapping[str, np.ndarray], steps: int) -> OutputFutures:
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(
                1, thread_name_prefix=f"popef-runner-{self.model.name}"
            )
        future = self._pool.submit(self._run, arrays, steps)
        return OutputFutures(future, [d.name for d in self._outputs])

    def run_save_programs(self) -> dict[str, np.ndarray]:
        """Run the save programs (e.g. ``WeightsToHost``); returns the anchors they write."""
        self._check_open()
        with self._lock:
            return self._guarded(self.executor.save)

    def _run(self, arrays: Mapping[str, np.ndarray], steps: int) -> dict[str, np.ndarray]:
        with self._lock:
            self._check_open()  # again: close() may have run since the request was checked
            return self._guarded(self.executor.execute, arrays, steps)

    def _guarded(self, function, *args):
        try:
            return function(*args)
        except PopefError:
            raise
        except Exception as exc:
            name = getattr(self.executor, "name", "?")
            raise ExecutionError(f"executor '{name}' failed: {type(exc).__name__}: {exc}") from exc

    # ---- lifetime
    def _check_open(self) -> None:
        if self._closed:
            raise ExecutionError("the ModelRunner is closed")

    def close(self) -> None:
        """Wait for pending executions, then release the executor and the files."""
        if self._closed:
            return
        self._closed = True
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        if self.executor is not None:
            with self._lock:  # after the execution in progress in another thread, if any
                self.executor.close()
        if self._reader is not None:
            self._reader.close()

    def __enter__(self) -> ModelRunner:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        name = getattr(getattr(self, "model", None), "name", "?")
        executor = getattr(self.executor, "name", "?")
        return f"<ModelRunner {name!r} on {executor!r}>"


def _step_count(steps: object) -> int:
    """The ``steps`` of a pre-checked execution: a positive int (the one thing checked)."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ExecutionError(f"steps must be a positive int, got {steps!r}")
    return int(steps)


def _model_names(models: Sequence[Model]) -> str:
    if not models:
        return "no model"
    return f"{len(models)} models: " + ", ".join(f"'{m.name}'" for m in models)
