"""Ordering by events, never by the clock: a gate in front of a served model's runners.

``with gated(served) as gate`` makes every execution of ``served`` wait at the gate until the
test opens it; ``gate.wait_entered(n)`` returns once ``n`` executions are waiting, so a test
knows that a request is executing (and, with two, that two instances run at once) without
sleeping. Leaving the block opens the gate and puts the runners back. ``wait_until`` polls a
state that has no event (a queue length). Every wait gives up after ``DEADLINE`` seconds, far
beyond what a loaded machine needs: a wait that ends there is a failure, never a timing.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

#: seconds after which a wait of the serving tests is a failure
DEADLINE = 60.0


class ExecutionGate:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._open = False
        self.entered = 0

    def pass_through(self) -> None:
        """Called by an execution: count it, then wait until the gate opens."""
        with self._cond:
            self.entered += 1
            self._cond.notify_all()
            if not self._cond.wait_for(lambda: self._open, DEADLINE):
                raise RuntimeError(f"the test never opened the gate within {DEADLINE:g} s")

    def wait_entered(self, count: int) -> None:
        """Return once ``count`` executions have reached the gate; fail after DEADLINE."""
        with self._cond:
            if not self._cond.wait_for(lambda: self.entered >= count, DEADLINE):
                raise AssertionError(
                    f"expected {count} executions at the gate within "
                    f"{DEADLINE:g} s, found {self.entered}"
                )

    def open(self) -> None:
        with self._cond:
            self._open = True
            self._cond.notify_all()


class _GatedRunner:
    """A runner whose synchronous executions (``execute``, and ``execute_checked``, which a
    served model calls) wait at the gate first; everything else is the runner's."""

    def __init__(self, runner, gate: ExecutionGate) -> None:
        self._runner = runner
        self._gate = gate

    def execute(self, *args, **kwargs):
        self._gate.pass_through()
        return self._runner.execute(*args, **kwargs)

    def execute_checked(self, *args, **kwargs):
        self._gate.pass_through()
        return self._runner.execute_checked(*args, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self._runner, name)


@contextmanager
def gated(served) -> Iterator[ExecutionGate]:
    """Gate every synchronous execution of ``served`` (a ServedModel) for the block."""
    gate = ExecutionGate()
    runners = list(served.runners)
    served.runners[:] = [_GatedRunner(r, gate) for r in runners]
    try:
        yield gate
    finally:
        gate.open()
        served.runners[:] = runners


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` until it holds (for states without an event); fail after DEADLINE."""
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"expected {what} within {DEADLINE:g} s")
        time.sleep(0.005)


def answer(future: concurrent.futures.Future, what: str):
    """``future``'s result; a failure naming ``what`` when it has none after DEADLINE."""
    try:
        return future.result(DEADLINE)
    except concurrent.futures.TimeoutError:
        raise AssertionError(f"expected {what} within {DEADLINE:g} s") from None
