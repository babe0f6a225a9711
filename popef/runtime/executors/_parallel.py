"""Parallelism of the ``cpu`` executor: its default thread count, the BLAS thread limit, and
the row splitting of a folded request over a small persistent thread pool.

numpy's kernels and BLAS release the GIL, so the chunks of a request's rows run at the same
time on several cores. A plan that keeps the rows of every instance (step × replica)
independent (``popef.runtime.batching``) gives, on a split at instance boundaries, exactly the
rows it gives unsplit: the chunks' outputs are concatenated in order.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait

import numpy as np

from ...errors import ExecutionError

__all__ = ["MIN_CHUNK_ROWS", "RowSplitter", "available_cores", "limit_blas_threads"]

#: a request is split only into chunks of at least this many rows of its first fed input
#: (below, the handoff to a pool thread costs more than the second core saves: measured on
#: the MNIST network, docs/runtime.md §8)
MIN_CHUNK_ROWS = 8

_BLAS_LOCK = threading.Lock()
_blas_limit: object | None = None  # the threadpoolctl limiter in force, kept alive


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the platform says it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def limit_blas_threads(threads: int) -> None:
    """Limit every BLAS library loaded in the process (numpy's OpenBLAS, MKL...) to
    ``threads`` threads, once, for the rest of the process: a process-wide setting, as
    ``OPENBLAS_NUM_THREADS`` is, not a per-call context."""
    global _blas_limit
    try:
        from threadpoolctl import threadpool_limits
    except ImportError as exc:
        raise ExecutionError(
            "executor 'cpu': option 'blas_threads' needs the package threadpoolctl "
            "(pip install threadpoolctl), which is not installed; set blas_threads=0 to leave "
            "BLAS as it is"
        ) from exc
    with _BLAS_LOCK:
        _blas_limit = threadpool_limits(limits=threads, user_api="blas")


class RowSplitter:
    """Runs a plan on chunks of a request's instances at once: ``threads - 1`` pool threads
    (started at the first split) and the calling thread."""

    def __init__(self, threads: int, min_chunk_rows: int = MIN_CHUNK_ROWS) -> None:
        self.threads = threads
        self.min_chunk_rows = min_chunk_rows
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def chunks(self, instances: int, rows: int) -> int:
        """Into how many chunks to split ``instances`` instances of ``rows`` rows in all: one
        a thread. Fewer, bigger chunks make fewer, longer numpy calls, which is what lets two
        threads run at once (a thread waits for the GIL at the end of each call), and keep
        the GEMMs big: four chunks of 16 rows of the MNIST network took 70 us a sample on two
        cores where two of 32 took 43 (docs/runtime.md §8). A chunk no pool thread has begun
        is taken by the calling thread when it is done with its own."""
        if self.threads <= 1 or instances <= 1:
            return 1
        return max(1, min(self.threads, instances, rows // self.min_chunk_rows))

    def run(
        self,
        forward: Callable[[Mapping[str, np.ndarray]], tuple],
        env: Mapping[str, np.ndarray],
        feeds: Sequence[tuple[str, np.ndarray]],
        instances: int,
    ) -> tuple:
        """``forward`` on ``env`` with ``feeds`` (tensor, rows of ``instances`` instances)
        added, the instances split into chunks run in parallel where worth it, its results
        concatenated along the leading axis."""
        rows = feeds[0][1].shape[0] if feeds and instances > 1 else 0
        count = self.chunks(instances, rows)
        if count == 1:
            scope = dict(env)
            scope.update(feeds)
            return forward(scope)
        bounds = [instances * i // count for i in range(count + 1)]
        scopes = []
        for begin, end in zip(bounds, bounds[1:]):
            scope = dict(env)
            for tensor, x in feeds:
                per = x.shape[0] // instances  # rows of one instance
                scope[tensor] = x[begin * per : end * per]
            scopes.append(scope)
        parts: list[tuple | None] = [None] * count
        taken = itertools.count()  # the next chunk to take; next() is atomic under the GIL

        def take_chunks() -> None:
            for i in taken:
                if i >= count:
                    return
                parts[i] = forward(scopes[i])

        pool = self._pool or self._start()
        helpers = min(self.threads, count) - 1
        futures: list[Future] = [pool.submit(take_chunks) for _ in range(helpers)]
        try:
            take_chunks()
        finally:  # no chunk outlives its request, even a failed one
            wait(futures)
        for future in futures:
            future.result()  # a helper's error
        return tuple(np.concatenate(values) for values in zip(*parts))  # type: ignore[misc]

    def _start(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.threads - 1, thread_name_prefix="popef-cpu")
            return self._pool

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
