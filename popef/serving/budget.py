"""A server-wide budget of request bytes in flight over HTTP, so that concurrent large requests
cannot exhaust memory together.

Each request takes bytes from a :class:`ByteBudget` as its body arrives (and, when compressed,
before each piece is inflated) and gives them back when its answer is sent: bytes a request
declares but has not sent hold nothing. A request that finds the budget spent waits up to
``wait`` seconds, then is answered UNAVAILABLE (503). Waiting requests are served oldest
request first, so a request that already holds part of its body goes on before newer ones.
When the waiting requests hold every byte in use between them — none can go on until another
gives up — the newest of them that holds any is answered 503 at once, so the others go on. One
request never needs more than the whole budget, so a request alone always fits.

Everything here runs on the HTTP service's event loop: no locks.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
from dataclasses import dataclass, field

from ..servable.errors import unavailable

__all__ = ["DEFAULT_BUDGET_WAIT", "ByteBudget", "Reservation"]

#: seconds a request waits for room in the budget before it is answered 503
DEFAULT_BUDGET_WAIT = 30.0


@dataclass(eq=False)  # compared by identity
class _Waiter:
    reservation: Reservation
    size: int
    granted: asyncio.Future

    @property
    def order(self) -> int:
        return self.reservation.order


class ByteBudget:
    """At most ``limit`` bytes held by all :class:`Reservation` s together."""

    def __init__(self, limit: int, wait: float | None = DEFAULT_BUDGET_WAIT) -> None:
        if limit < 1:
            raise ValueError(f"the byte budget must be >= 1 byte, got {limit}")
        self.limit = limit
        self.wait = wait
        self.in_use = 0
        self._waiters: list[_Waiter] = []  # oldest reservation first
        self._orders = itertools.count()

    def reservation(self) -> Reservation:
        return Reservation(self, next(self._orders))

    async def _take(self, reservation: Reservation, size: int) -> None:
        if not self._waiters and self.in_use + size <= self.limit:
            self.in_use += size
            return
        loop = asyncio.get_running_loop()
        waiter = _Waiter(reservation, size, loop.create_future())
        bisect.insort(self._waiters, waiter, key=lambda w: w.order)
        timer = loop.call_later(self.wait, self._expire, waiter) if self.wait is not None else None
        self._grant()
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

    def _busy(self) -> Exception:
        return unavailable(
            f"the server is busy: {self.in_use} bytes of requests are in flight, the limit is "
            f"{self.limit} (--http-max-inflight-bytes); try again later"
        )

    def _expire(self, waiter: _Waiter) -> None:
        if waiter.granted.done():
            return
        self._forget(waiter)
        waiter.granted.set_exception(self._busy())

    def _forget(self, waiter: _Waiter) -> None:
        if waiter in self._waiters:
            self._waiters.remove(waiter)
            self._grant()  # the requests behind it may fit now

    def _give(self, size: int) -> None:
        self.in_use -= size
        self._grant()

    def _grant(self) -> None:
        while self._waiters and self.in_use + self._waiters[0].size <= self.limit:
            waiter = self._waiters.pop(0)
            if not waiter.granted.done():
                self.in_use += waiter.size
                waiter.granted.set_result(None)
        waiting_hold = sum(w.reservation.held for w in self._waiters)
        if self._waiters and waiting_hold == self.in_use:
            # nobody else will give bytes back: the newest waiter that holds some gives up
            holders = [w for w in self._waiters if w.reservation.held]
            if holders:
                self._expire(holders[-1])


@dataclass
class Reservation:
    """The bytes one request holds; :meth:`release` gives them all back."""

    budget: ByteBudget
    order: int = 0  # older requests (lower) are served first
    held: int = field(default=0)

    async def grow(self, size: int) -> int:
        """Take ``size`` more bytes, waiting for room; never more than the whole budget.
        Returns the bytes taken."""
        size = min(size, self.budget.limit - self.held)
        if size <= 0:
            return 0
        await self.budget._take(self, size)
        self.held += size
        return size

    def give_back(self, size: int) -> None:
        """Give back ``size`` of the bytes held (at most all of them)."""
        size = min(size, self.held)
        if size > 0:
            self.held -= size
            self.budget._give(size)

    def release(self) -> None:
        held, self.held = self.held, 0
        if held:
            self.budget._give(held)
