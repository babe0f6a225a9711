"""A server-wide budget of request bytes in flight over HTTP, so that concurrent large requests
cannot exhaust memory together.

Each request takes bytes from a :class:`ByteBudget` as its body arrives (and, when compressed,
as it is inflated) and gives them back when its answer is sent. A request that finds the budget
spent waits, in arrival order, up to ``wait`` seconds, then is answered UNAVAILABLE (503). One
request never needs more than the whole budget, so a request alone always fits.

Everything here runs on the HTTP service's event loop: no locks.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

from .errors import unavailable

__all__ = ["DEFAULT_BUDGET_WAIT", "ByteBudget", "Reservation"]

#: seconds a request waits for room in the budget before it is answered 503
DEFAULT_BUDGET_WAIT = 30.0


@dataclass
class _Waiter:
    size: int
    granted: asyncio.Future


class ByteBudget:
    """At most ``limit`` bytes held by all :class:`Reservation` s together."""

    def __init__(self, limit: int, wait: float | None = DEFAULT_BUDGET_WAIT) -> None:
        if limit < 1:
            raise ValueError(f"the byte budget must be >= 1 byte, got {limit}")
        self.limit = limit
        self.wait = wait
        self.in_use = 0
        self._waiters: deque[_Waiter] = deque()

    def reservation(self) -> Reservation:
        return Reservation(self)

    async def _take(self, size: int) -> None:
        if not self._waiters and self.in_use + size <= self.limit:
            self.in_use += size
            return
        loop = asyncio.get_running_loop()
        waiter = _Waiter(size, loop.create_future())
        self._waiters.append(waiter)
        timer = (loop.call_later(self.wait, self._expire, waiter)
                 if self.wait is not None else None)
        try:
            await waiter.granted
        except asyncio.CancelledError:
            if waiter.granted.done() and not waiter.granted.cancelled():
                self._give(size)  # granted, but the request went away before it woke
            else:
                self._forget(waiter)
            raise
        finally:
            if timer is not None:
                timer.cancel()

    def _expire(self, waiter: _Waiter) -> None:
        if waiter.granted.done():
            return
        self._forget(waiter)
        waiter.granted.set_exception(unavailable(
            f"the server is busy: {self.in_use} bytes of requests are in flight, the limit is "
            f"{self.limit} (--http-max-inflight-bytes); try again later"))

    def _forget(self, waiter: _Waiter) -> None:
        if waiter in self._waiters:
            self._waiters.remove(waiter)
            self._grant()  # the requests behind it may fit now

    def _give(self, size: int) -> None:
        self.in_use -= size
        self._grant()

    def _grant(self) -> None:
        while self._waiters and self.in_use + self._waiters[0].size <= self.limit:
            waiter = self._waiters.popleft()
            if not waiter.granted.done():
                self.in_use += waiter.size
                waiter.granted.set_result(None)


@dataclass
class Reservation:
    """The bytes one request holds; :meth:`release` gives them all back."""

    budget: ByteBudget
    held: int = field(default=0)

    async def grow(self, size: int) -> None:
        """Take ``size`` more bytes, waiting for room; never more than the whole budget."""
        size = min(size, self.budget.limit - self.held)
        if size <= 0:
            return
        await self.budget._take(size)
        self.held += size

    def release(self) -> None:
        held, self.held = self.held, 0
        if held:
            self.budget._give(held)
