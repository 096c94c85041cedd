"""The operator's one retry policy: per object, exponential, capped, with jitter. Pure (no clock).

API errors, refused writes and failed JWKS fetches all retry through it, so a target that keeps
refusing writes is retried after 1 s, 2 s, 4 s, ... up to ``cap``, not every few seconds forever, and
many objects failing at once (the API server restarting, say) do not retry in lockstep.
"""

from __future__ import annotations

import random
from collections.abc import Hashable
from dataclasses import dataclass, field

DEFAULT_BASE = 1.0
DEFAULT_CAP = 300.0


@dataclass
class Backoff:
    """The n-th consecutive failure of a key waits ``base * 2**(n - 1)`` seconds, at most ``cap``,
    shortened by up to ``jitter`` (a fraction) at random."""

    base: float = DEFAULT_BASE
    cap: float = DEFAULT_CAP
    jitter: float = 0.1
    rng: random.Random = field(default_factory=random.Random)
    _failures: dict[Hashable, int] = field(default_factory=dict)

    def failed(self, key: Hashable, now: float) -> float:
        """Count one more failure of ``key``; the time to try again."""
        n = self._failures[key] = self._failures.get(key, 0) + 1
        delay = min(self.base * 2.0 ** min(n - 1, 62), self.cap)
        return now + delay * (1.0 - self.jitter * self.rng.random())

    def succeeded(self, key: Hashable) -> None:
        self._failures.pop(key, None)

    def failures(self, key: Hashable) -> int:
        return self._failures.get(key, 0)
