"""Request scheduling: a bounded queue, dynamic batching and instance workers.

Each served model version has one :class:`Scheduler`. Requests wait in a bounded FIFO queue
(a full queue refuses at once with UNAVAILABLE — HTTP 503 — instead of growing memory). One
worker thread per model instance (``instance_group { count }``) takes work from the queue:

- without dynamic batching, one request per execution;
- with dynamic batching (Triton's ``batcher.md``), the requests at the head of the queue, in
  arrival order, up to ``max_batch_size`` samples: a batch is sent when it is full, when it
  reaches a preferred batch size, or when the oldest request has waited
  ``max_queue_delay_microseconds``; the rows are concatenated, run as one execution and
  split back to the requests.

Only one worker gathers a batch at a time, so while one instance executes, another collects
the next batch. With ``synchronous_execution`` off, an instance also gathers its next batch
while its previous one runs (at most two in flight per instance).

A worker never dies behind a ready model: an error while gathering a batch fails the requests
of that batch and the worker goes on. Closing waits for the workers up to one deadline and says
whether they all stopped.
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..servable.batches import merge_rows, split_rows
from ..servable.errors import ServingError, internal, unavailable
from .stats import ModelStats, now_ns

__all__ = ["BatchPolicy", "Execution", "Scheduler", "Work"]

log = logging.getLogger("popef.serving")

Arrays = Mapping[str, np.ndarray]

#: the longest single wait of a worker, in seconds; longer delays are waited for in steps
#: (``Condition.wait`` refuses a timeout over ``threading.TIMEOUT_MAX``)
_MAX_WAIT_S = 3600.0


@dataclass(eq=False)
class Work:
    """One request's inputs, ready to run: served input name → array of ``rows`` rows."""

    inputs: Arrays
    rows: int
    arrival_ns: int = field(default_factory=now_ns)
    deadline_ns: int | None = None  # refused when still queued after this (perf_counter ns)
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)


@dataclass(frozen=True)
class BatchPolicy:
    max_queue_delay_ns: int = 0
    preferred_sizes: tuple[int, ...] = ()


@dataclass
class Execution:
    """What one execution returns: outputs by served name, and its timings."""

    outputs: Arrays
    input_ns: int
    infer_ns: int


#: runs one merged batch on an instance: (instance index, inputs, rows) -> Execution
ExecuteFn = Callable[[int, Arrays, int], Execution]
#: the same, in the background
ExecuteAsyncFn = Callable[[int, Arrays, int], "concurrent.futures.Future[Execution]"]


class Scheduler:
    def __init__(
        self,
        name: str,
        *,
        instances: int,
        execute: ExecuteFn,
        execute_async: ExecuteAsyncFn | None = None,
        max_batch_size: int,
        policy: BatchPolicy | None,
        max_queue_size: int,
        stats: ModelStats,
    ) -> None:
        if instances < 1:
            raise ValueError("a scheduler needs at least one instance")
        self.name = name
        self.max_batch_size = max_batch_size
        self.policy = policy if max_batch_size > 0 else None
        self.max_queue_size = max_queue_size
        self.stats = stats
        self._execute = execute
        self._execute_async = execute_async
        self._queue: collections.deque[Work] = collections.deque()
        self._cond = threading.Condition()
        self._gather_lock = threading.Lock()
        self._closing = False
        self._in_flight = [threading.Semaphore(2) for _ in range(instances)]
        self._slots_taken = [0] * instances  # in-flight slots that close() holds
        self._busy = [False] * instances  # an instance is executing (guarded by _cond)
        self._threads = [
            threading.Thread(
                target=self._worker, args=(i,), daemon=True, name=f"popef-serve-{name}-{i}"
            )
            for i in range(instances)
        ]
        for thread in self._threads:
            thread.start()

    # ---- submitting
    def submit(self, work: Work) -> concurrent.futures.Future:
        with self._cond:
            if self._closing:
                raise unavailable(f"model '{self.name}' is unloading; the request was not run")
            if len(self._queue) >= self.max_queue_size:
                raise unavailable(
                    f"the inference queue of model '{self.name}' is full "
                    f"({len(self._queue)} requests waiting; max_queue_size "
                    f"{self.max_queue_size}): try again later"
                )
            self._queue.append(work)
            if len(self._busy) > 1:
                self._cond.notify_all()  # a worker whose instance runs inline must not eat it
            else:
                self._cond.notify()
        return work.future

    def run_inline(self, work: Work) -> bool:
        """Run ``work`` in the calling thread when that cannot delay anything: no dynamic
        batching, synchronous execution, nothing queued and an instance idle. Saves the hand-off
        to a worker thread (the gRPC servicer's threads call this). False: not run."""
        if self.policy is not None or self._execute_async is not None:
            return False
        with self._cond:
            if self._closing or self._queue:
                return False
            for index, busy in enumerate(self._busy):
                if not busy:
                    self._busy[index] = True
                    break
            else:
                return False
        try:
            self._run(index, [work])
        finally:
            with self._cond:
                self._busy[index] = False
                if self._queue or self._closing:
                    self._cond.notify_all()
        return True

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def executing(self) -> int:
        """Instances taken by a batch: gathering it, in its execute delay or running it."""
        with self._cond:
            return sum(self._busy)

    # ---- workers
    def _worker(self, index: int) -> None:
        while True:
            if self._execute_async is not None:
                self._in_flight[index].acquire()
            batch = self._next_batch(index)
            if not batch:  # None: closed; []: nothing to run this time
                if self._execute_async is not None:
                    self._in_flight[index].release()
                if batch is None:
                    return
                with self._cond:
                    self._busy[index] = False
                continue
            try:
                self._run(index, batch)
            except BaseException as exc:
                log.exception("scheduler of model '%s' failed", self.name)
                self._fail(batch, internal(f"model '{self.name}' failed: {exc}"))
            finally:
                with self._cond:
                    self._busy[index] = False
                    if self._closing:
                        self._cond.notify_all()

    def _next_batch(self, index: int) -> list[Work] | None:
        with self._gather_lock, self._cond:
            while True:
                self._drop_expired()
                if self._queue and not self._busy[index]:  # busy: running an inline request
                    break
                if self._closing and not self._queue:
                    return None
                self._cond.wait()
            self._busy[index] = True
            if self.policy is None:
                return [self._queue.popleft()]
            try:
                return self._gather()
            except Exception as exc:  # noqa: BLE001 - the worker must outlive any batch
                log.exception("scheduler of model '%s' failed to gather a batch", self.name)
                batch = [self._queue.popleft() for _ in range(self._fit(())[0])]
                self._fail(
                    batch,
                    internal(
                        f"model '{self.name}' failed to gather a batch: {type(exc).__name__}: {exc}"
                    ),
                )
                return []

    def _gather(self) -> list[Work]:
        """The next dynamic batch; called holding the condition with a non-empty queue."""
        policy = self.policy
        preferred = policy.preferred_sizes
        while True:
            count, rows, preferred_count = self._fit(preferred)
            if preferred_count:
                count = preferred_count
                break
            if rows >= self.max_batch_size or count < len(self._queue) or self._closing:
                break
            remaining = self._queue[0].arrival_ns + policy.max_queue_delay_ns - now_ns()
            if remaining <= 0:
                break
            self._cond.wait(min(remaining / 1e9, _MAX_WAIT_S))
            self._drop_expired()
            if not self._queue:
                # everything expired while waiting: start over with the next arrival
                while not self._queue:
                    if self._closing:
                        return []
                    self._cond.wait()
                    self._drop_expired()
        return [self._queue.popleft() for _ in range(max(1, count))]

    def _fit(self, preferred: Sequence[int]) -> tuple[int, int, int]:
        """``(requests, rows)`` of the longest queue prefix within max_batch_size, and the length
        of the longest prefix whose rows are a preferred batch size (0 if none)."""
        rows = count = best = 0
        for work in self._queue:
            if rows + work.rows > self.max_batch_size and count:
                break
            rows += work.rows
            count += 1
            if rows in preferred:
                best = count
        return count, rows, best

    def _drop_expired(self) -> None:
        if not self._queue:
            return
        now = now_ns()
        kept: collections.deque[Work] | None = None
        for work in self._queue:
            if work.deadline_ns is not None and now > work.deadline_ns:
                if kept is None:
                    kept = collections.deque(w for w in self._queue if w is not work)
                else:
                    kept.remove(work)
                self._fail(
                    [work],
                    unavailable(
                        f"request timeout expired: the request waited over its timeout in the "
                        f"queue of model '{self.name}'"
                    ),
                )
        if kept is not None:
            self._queue = kept

    # ---- running
    def _run(self, index: int, batch: list[Work]) -> None:
        if not batch:
            return
        start = now_ns()
        for work in batch:
            self.stats.record_queue(start - work.arrival_ns)
        rows = sum(w.rows for w in batch)
        merged = merge_rows([w.inputs for w in batch])
        merge_ns = now_ns() - start
        if self._execute_async is None:
            try:
                execution = self._execute(index, merged, rows)
            except Exception as exc:  # noqa: BLE001 - reported to the requests
                self._fail(batch, _as_serving_error(exc, self.name))
                return
            self._finish(batch, rows, merge_ns, execution)
            return
        try:
            future = self._execute_async(index, merged, rows)
        except Exception as exc:  # noqa: BLE001
            self._in_flight[index].release()
            self._fail(batch, _as_serving_error(exc, self.name))
            return

        def done(f: concurrent.futures.Future) -> None:
            try:
                error = f.exception()
                if error is not None:
                    self._fail(batch, _as_serving_error(error, self.name))
                else:
                    self._finish(batch, rows, merge_ns, f.result())
            finally:
                self._in_flight[index].release()

        future.add_done_callback(done)

    def _finish(self, batch: list[Work], rows: int, merge_ns: int, execution: Execution) -> None:
        start = now_ns()
        results = split_rows(execution.outputs, [w.rows for w in batch])
        output_ns = now_ns() - start
        self.stats.record_execution(
            rows, merge_ns + execution.input_ns, execution.infer_ns, output_ns, len(batch)
        )
        for work, result in zip(batch, results):
            if not work.future.done():
                work.future.set_result(result)

    @staticmethod
    def _fail(batch: Sequence[Work], error: BaseException) -> None:
        for work in batch:
            if not work.future.done():
                work.future.set_exception(error)

    # ---- lifetime
    def close(self, drain: bool = True, timeout: float | None = None) -> bool:
        """Stop taking requests; run what is queued (``drain``) or refuse it; wait for the
        workers and executions, all within ``timeout`` seconds (None: no limit).

        True: everything stopped. False: an execution still runs after ``timeout`` (what was
        still queued is refused); :meth:`wait_stopped` waits for it.
        """
        deadline = None if timeout is None else time.monotonic() + timeout

        def left() -> float | None:
            return None if deadline is None else max(0.0, deadline - time.monotonic())

        with self._cond:
            self._closing = True
            if not drain:
                pending, self._queue = list(self._queue), collections.deque()
                self._fail(
                    pending, unavailable(f"model '{self.name}' was unloaded before the request ran")
                )
            self._cond.notify_all()
        stopped = self._wait_stopped(left)
        # anything left (a timeout): refuse it
        with self._cond:
            pending, self._queue = list(self._queue), collections.deque()
        self._fail(pending, unavailable(f"model '{self.name}' was unloaded before the request ran"))
        return stopped

    def wait_stopped(self) -> None:
        """After a :meth:`close` that returned False: wait, without a limit, until every
        worker and execution has ended."""
        self._wait_stopped(lambda: None)

    def _wait_stopped(self, left: Callable[[], float | None]) -> bool:
        for thread in self._threads:
            thread.join(left())
            if thread.is_alive():
                return False
        with self._cond:
            if not self._cond.wait_for(lambda: not any(self._busy), left()):
                return False
        if self._execute_async is not None:
            # an asynchronous execution holds a slot of its instance until it ends
            for index, slots in enumerate(self._in_flight):
                while self._slots_taken[index] < 2:
                    if not slots.acquire(timeout=left()):
                        return False
                    self._slots_taken[index] += 1
        return True


def _as_serving_error(exc: BaseException, model: str) -> ServingError:
    if isinstance(exc, ServingError):
        return exc
    from ..errors import PopefError

    if isinstance(exc, PopefError):
        return internal(f"model '{model}' failed to run the request: {exc}")
    return internal(f"model '{model}' failed: {type(exc).__name__}: {exc}")
