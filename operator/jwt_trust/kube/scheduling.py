"""How many writes run at once, and whose turn it is.

Every write of a target (a ConfigMap, a consumer object) takes a slot from the one
:class:`WriteScheduler` of the process. Two rules:

* **Fair turns.** Each waiting policy is a queue; a freed slot goes to the next policy in turn (round
  robin), not to the oldest waiter. A policy that selects 10,000 namespaces then cannot hold back one
  that selects three: the small one waits for at most one write per other busy policy.
* **A limit that follows the API server** (:func:`adapt`, pure). The limit starts at the cap
  (``JWT_TRUST_WRITE_CONCURRENCY``) and moves once per round of as many writes as the limit: halved
  after a round in which the API server answered 429 (it asks us to slow down), cut by a quarter after
  a round whose median latency is both above :data:`SLOW_SECONDS` and four times the fastest round
  seen (the API server is queueing), raised by one otherwise, never above the cap nor below one.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Hashable
from dataclasses import dataclass, field

SLOW_SECONDS = 0.5


@dataclass(frozen=True)
class Round:
    """What a round of writes saw: their latencies, and whether any was answered 429."""

    latencies: tuple[float, ...]
    throttled: bool


def adapt(limit: int, cap: int, round_: Round, fastest: float | None) -> int:
    """The limit after ``round_``; ``fastest``: the lowest median latency of a round so far."""
    if round_.throttled:
        return max(1, limit // 2)
    median = statistics.median(round_.latencies) if round_.latencies else 0.0
    if fastest is not None and median > SLOW_SECONDS and median > 4 * fastest:
        return max(1, limit - max(1, limit // 4))
    return min(cap, limit + 1)


@dataclass
class WriteScheduler:
    """Slots for writes, given in turns per key (a policy) under an adaptive limit (see the module)."""

    cap: int
    clock: Callable[[], float] = time.monotonic
    limit: int = 0
    _active: int = 0
    _queues: dict[Hashable, deque[asyncio.Future[None]]] = field(default_factory=dict)
    _latencies: list[float] = field(default_factory=list)
    _throttled: bool = False
    _fastest: float | None = None

    def __post_init__(self) -> None:
        self.cap = max(1, self.cap)
        self.limit = self.limit or self.cap

    @contextlib.asynccontextmanager
    async def slot(self, key: Hashable) -> AsyncIterator[None]:
        await self._acquire(key)
        started = self.clock()
        try:
            yield
        finally:
            self._latencies.append(self.clock() - started)
            self._release()

    def throttled(self) -> None:
        """The API server answered 429 to a write of the current round."""
        self._throttled = True

    @property
    def waiting(self) -> int:
        return sum(len(queue) for queue in self._queues.values())

    async def _acquire(self, key: Hashable) -> None:
        if self._active < self.limit and not self.waiting:
            self._active += 1
            return
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queues.setdefault(key, deque()).append(granted)
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self._release()  # granted just before the cancellation: give the slot on
            else:
                self._forget(key, granted)
            raise

    def _release(self) -> None:
        self._active -= 1
        if len(self._latencies) >= self.limit:
            self._end_round()
        while self._active < self.limit and self._queues:
            key, queue = next(iter(self._queues.items()))
            granted = queue.popleft()
            # This key's turn is over: it goes to the back of the line (dicts keep insertion order).
            del self._queues[key]
            if queue:
                self._queues[key] = queue
            if not granted.done():
                self._active += 1
                granted.set_result(None)

    def _end_round(self) -> None:
        round_ = Round(tuple(self._latencies), self._throttled)
        self.limit = adapt(self.limit, self.cap, round_, self._fastest)
        if round_.latencies:
            median = statistics.median(round_.latencies)
            self._fastest = median if self._fastest is None else min(self._fastest, median)
        self._latencies, self._throttled = [], False

    def _forget(self, key: Hashable, granted: asyncio.Future[None]) -> None:
        queue = self._queues.get(key)
        if queue is not None and granted in queue:
            queue.remove(granted)
            if not queue:
                del self._queues[key]
