"""Which Events the operator posts: each distinct (object, reason, message) once per TTL, repeats counted.

Pure: no I/O, no clock (the caller passes ``now``). A reconciliation that keeps failing the same way
(a target whose writes are refused, a JWKS URL that is down) reaches the same (reason, message) on
every retry; posting each one would flood the namespace's Events. So the first occurrence is posted at
once, repeats are only counted, and the first repeat after ``ttl`` posts again with the number of
occurrences it stands for. The bound: at most one Event per distinct (object, reason, message) per
``ttl``, and at most ``max_entries`` remembered at a time (the oldest are forgotten first).
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_TTL = 3600.0
DEFAULT_MAX_ENTRIES = 10_000

_Key = tuple[str, str, str]


@dataclass
class _Seen:
    posted_at: float
    unposted: int  # occurrences since the last post


class EventRecorder:
    """Decides whether an occurrence becomes an Event; see the module docstring."""

    def __init__(self, *, ttl: float = DEFAULT_TTL, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._seen: dict[_Key, _Seen] = {}

    def record(self, uid: str, reason: str, message: str, now: float) -> int | None:
        """The ``count`` of the Event to post for this occurrence, or None to stay silent."""
        key = (uid, reason, message)
        seen = self._seen.get(key)
        if seen is None:
            self._remember(key, _Seen(posted_at=now, unposted=0))
            return 1
        if now - seen.posted_at < self.ttl:
            seen.unposted += 1
            return None
        count = seen.unposted + 1
        self._remember(key, _Seen(posted_at=now, unposted=0))
        return count

    def forget(self, uid: str, reason: str | None = None) -> None:
        """An episode ended (the failure cleared) or the object is gone: its next occurrence posts."""
        for key in [k for k in self._seen if k[0] == uid and reason in (None, k[1])]:
            del self._seen[key]

    def __len__(self) -> int:
        return len(self._seen)

    def _remember(self, key: _Key, seen: _Seen) -> None:
        self._seen.pop(key, None)
        self._seen[key] = seen  # dicts keep insertion order: the first entries are the oldest
        while len(self._seen) > self.max_entries:
            del self._seen[next(iter(self._seen))]
