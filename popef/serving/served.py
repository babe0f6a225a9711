"""A loaded model version: its runners (one per instance), plan, scheduler and statistics.

:class:`ServedModel` runs the batches its scheduler gathers on its runners, turning served
tensors into what :class:`ModelRunner` takes and back with :mod:`popef.servable.batches`
(docs/serving.md, "Batching"). Closing it cuts short the test delay ``execute_delay_ms`` of
the executions running, so an unload never waits for that delay.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..servable import ServingPlan
from ..servable.batches import collect_outputs, feed_steps, prepare_feed
from .logs import STATE_CHANGE
from .options import DEFAULT_MAX_QUEUE_SIZE
from .scheduler import BatchPolicy, Execution, Scheduler, Work
from .stats import ModelStats, now_ns

__all__ = ["DEFAULT_MAX_QUEUE_SIZE", "ServedModel"]

log = logging.getLogger("popef.serving")


class ServedModel:
    def __init__(
        self,
        name: str,
        version: int,
        plan: ServingPlan,
        runners: Sequence,
        directory: Path,
        files: Sequence[Path],
        *,
        max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE,
    ) -> None:
        self.name = name
        self.version = version
        self.plan = plan
        self.config = plan.config
        self.runners = list(runners)
        self.directory = directory
        self.files = list(files)
        self.stats = ModelStats(name, version)
        self._closing = threading.Event()  # ends the test delays of running executions
        config = plan.config
        policy = None
        queue_size = max_queue_size
        if plan.parameters.max_queue_size:
            queue_size = plan.parameters.max_queue_size
        if config.WhichOneof("scheduling_choice") == "dynamic_batching":
            db = config.dynamic_batching
            delay_ns = db.max_queue_delay_microseconds * 1000
            if not delay_ns and plan.parameters.timeout_ns:
                delay_ns = plan.parameters.timeout_ns
            policy = BatchPolicy(delay_ns, tuple(sorted(set(db.preferred_batch_size))))
            if db.HasField("default_queue_policy") and db.default_queue_policy.max_queue_size:
                queue_size = db.default_queue_policy.max_queue_size
            self.default_timeout_us = (
                db.default_queue_policy.default_timeout_microseconds
                if db.HasField("default_queue_policy")
                else 0
            )
            self.allow_timeout_override = (
                db.default_queue_policy.allow_timeout_override
                if db.HasField("default_queue_policy")
                else True
            )
        else:
            self.default_timeout_us = 0
            self.allow_timeout_override = True
        self.scheduler = Scheduler(
            name,
            instances=len(self.runners),
            execute=self.execute,
            execute_async=None if plan.parameters.synchronous_execution else self.execute_async,
            max_batch_size=plan.max_batch_size,
            policy=policy,
            max_queue_size=queue_size,
            stats=self.stats,
        )

    # ---- requests
    def submit(
        self,
        inputs: Mapping[str, np.ndarray],
        rows: int,
        *,
        arrival_ns: int,
        timeout_us: int = 0,
        inline: bool = False,
    ) -> concurrent.futures.Future:
        """Queue a request (``inline``: run it in this thread when nothing would wait for it)."""
        timeout = (
            timeout_us if (timeout_us and self.allow_timeout_override) else self.default_timeout_us
        )
        deadline = arrival_ns + timeout * 1000 if timeout else None
        work = Work(inputs, rows, arrival_ns, deadline)
        if inline and self.scheduler.run_inline(work):
            return work.future
        return self.scheduler.submit(work)

    # ---- executions
    def _feed(
        self, instance: int, inputs: Mapping[str, np.ndarray], rows: int
    ) -> tuple[dict[str, np.ndarray], int, int]:
        """The runtime's feed for a batch, and the times before and after making it; then
        Graphcore's test delay (``execute_delay_ms``), which counts as inference time."""
        t0 = now_ns()
        feed = prepare_feed(self.plan, inputs, rows)
        t1 = now_ns()
        delay = self.plan.parameters.delay_seconds(instance)
        if delay:
            self._closing.wait(delay)  # an unload ends the delay; the request still runs
        return feed, t0, t1

    # The requests were checked on arrival (popef.servable.validation): the runner does not
    # check them again.
    def execute(self, instance: int, inputs: Mapping[str, np.ndarray], rows: int) -> Execution:
        feed, t0, t1 = self._feed(instance, inputs, rows)
        outputs = self.runners[instance].execute_checked(feed, feed_steps(self.plan, rows))
        t2 = now_ns()
        result = collect_outputs(self.plan, outputs, rows)
        return Execution(result, (t1 - t0) + (now_ns() - t2), t2 - t1)

    def execute_async(
        self, instance: int, inputs: Mapping[str, np.ndarray], rows: int
    ) -> concurrent.futures.Future:
        feed, t0, t1 = self._feed(instance, inputs, rows)
        futures = self.runners[instance].execute_checked_async(feed, feed_steps(self.plan, rows))
        result: concurrent.futures.Future = concurrent.futures.Future()
        names = list(futures)

        def done(_f) -> None:
            try:
                outputs = futures.wait()
                t2 = now_ns()
                collected = collect_outputs(self.plan, outputs, rows)
                result.set_result(Execution(collected, (t1 - t0) + (now_ns() - t2), t2 - t1))
            except BaseException as exc:  # noqa: BLE001 - handed to the requests
                result.set_exception(exc)

        futures[names[-1]].add_done_callback(done)
        return result

    # ---- lifetime
    def close(self, drain: bool = True, timeout: float | None = None) -> bool:
        """Stop serving: queued requests run (``drain``) or are refused, within ``timeout``
        seconds. True: stopped and the runners closed. False: an execution still runs; the
        runners close when it ends (logged then) and the call returns now."""
        self._closing.set()
        if self.scheduler.close(drain=drain, timeout=timeout):
            self._close_runners()
            return True
        threading.Thread(
            target=self._finish_closing,
            daemon=True,
            name=f"popef-unload-{self.name}-{self.version}",
        ).start()
        return False

    def _finish_closing(self) -> None:
        self.scheduler.wait_stopped()
        self._close_runners()
        log.info(
            "successfully unloaded '%s' version %d (its last execution ended)",
            self.name,
            self.version,
            extra=STATE_CHANGE,
        )

    def _close_runners(self) -> None:
        for runner in self.runners:
            try:
                runner.close()
            except Exception:  # noqa: BLE001 - closing must not fail the unload
                pass
