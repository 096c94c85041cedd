"""Label-selected list+watch caches: what the decisions read, without a request per reconciliation.

Each :class:`Informer` lists once (complete before the operator acts on it, so a half-filled cache can
never make a target look unwanted) and then watches from that version, resuming from the last version
it saw (bookmarks keep that version fresh) and listing again on ``410 Gone``. It keeps only a compact
summary of each object (``summarise``), so memory follows the number of objects we own, not the number
of objects in the cluster: the ConfigMap and Secret watches carry our managed-by label selector,
evaluated by the API server.

A cache that stops silently is the worst failure an operator can have: every object looks settled
while nothing is repaired. So :meth:`Informer.run` is a supervisor: whatever ends a watch (a network
error, an oversized event, an API error, a bug in a callback) is logged, counted in
``jwt_trust_watch_restarts_total{resource}``, and followed by a fresh list and watch after an
exponential backoff (capped). While an informer keeps failing, :attr:`Informer.failing_since` says since
when; the liveness probe reports the operator unhealthy once that lasts too long (see ``handlers``),
so Kubernetes restarts a process that cannot recover by itself.

An ``optional`` informer watches a resource that may not be served at all (a consumer kind whose CRD is
not installed): a list answered with ``404`` is an empty cache, :attr:`Informer.absent` says so, and the
informer lists again after a backoff (capped) until the resource appears, then calls ``on_served``.
That is a state of the cluster, not a failure of the cache: it is neither counted nor reported to
liveness.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from . import metrics
from .api import KubeAPI, Ref
from .errors import APIError

Summary = TypeVar("Summary")
Key = tuple[str, str]  # (namespace or "", name)

BACKOFF_FIRST = 1.0
BACKOFF_CAP = 30.0

log = logging.getLogger("jwt_trust.informers")


def object_key(obj: dict[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))


class NotServed(Exception):
    """The API server does not serve an optional informer's resource (yet)."""


class Informer(Generic[Summary]):
    def __init__(
        self,
        api: KubeAPI,
        target: Ref,
        summarise: Callable[[dict[str, Any]], Summary],
        *,
        label_selector: str | None = None,
        on_change: Callable[[Key, Summary | None, Summary | None], None] = lambda key, old, new: None,
        optional: bool = False,
        on_served: Callable[[], None] = lambda: None,
    ) -> None:
        self.api = api
        self.target = target
        self.summarise = summarise
        self.label_selector = label_selector
        self.on_change = on_change
        self.optional = optional
        self.on_served = on_served
        self.absent = False  # an optional resource the API server does not serve
        self.objects: dict[Key, Summary] = {}
        self._version = ""
        self.synced = asyncio.Event()
        self.failing_since: float | None = None  # time.monotonic() of the first failure in a row
        self.last_error = ""

    @property
    def name(self) -> str:
        where = f" in {self.target.namespace}" if self.target.namespace else ""
        return f"{self.target.resource}{where}"

    async def list(self) -> None:
        was_absent = self.absent
        try:
            items, self._version = await self.api.list(self.target, label_selector=self.label_selector)
            self.absent = False
        except APIError as error:
            if not (self.optional and error.status == 404):
                raise
            if not was_absent:
                log.warning(
                    "%s.%s is not served by the API server (its CRD is not installed?); "
                    "treated as empty, looked for again with a backoff",
                    self.target.resource,
                    self.target.group_version,
                )
            items, self._version, self.absent = [], "", True
        fresh = {object_key(item): self.summarise(item) for item in items}
        old = self.objects
        self.objects = fresh
        for key in old.keys() | fresh.keys():
            if old.get(key) != fresh.get(key):
                self.on_change(key, old.get(key), fresh.get(key))
        self.synced.set()
        self.failing_since = None
        if was_absent and not self.absent:
            log.info("%s.%s is served now", self.target.resource, self.target.group_version)
            self.on_served()

    async def watch(self) -> None:
        """One watch session: list first if the cache is not in sync, then apply every event until the
        API server ends the watch (its timeout). Raises whatever interrupts it (NotServed when an
        optional resource is not served)."""
        if not self.synced.is_set() or self.absent:
            await self.list()
        if self.absent:
            raise NotServed(self.name)
        events = self.api.watch(
            self.target, resource_version=self._version, label_selector=self.label_selector
        )
        # aclosing: whatever ends this loop releases the connection now, not when the generator is
        # garbage-collected.
        async with contextlib.aclosing(events):
            async for kind, obj in events:
                self._apply(kind, obj)

    def _apply(self, kind: str, obj: dict[str, Any]) -> None:
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if version:
            self._version = str(version)  # where to resume; bookmarks carry only this
        self.failing_since = None
        if kind == "BOOKMARK":
            return
        key = object_key(obj)
        old = self.objects.get(key)
        new = None if kind == "DELETED" else self.summarise(obj)
        if new is None:
            self.objects.pop(key, None)
        else:
            self.objects[key] = new
        if old != new:
            self.on_change(key, old, new)

    async def run(self) -> None:
        """Watch forever (until cancelled), restarting after any failure; never returns otherwise."""
        failures = 0
        looked = 0  # lists of an optional resource that is not served, in a row
        while True:
            try:
                await self.watch()
                failures = looked = 0  # the server ended the watch: resume from the last version seen
                continue
            except asyncio.CancelledError:
                raise
            except NotServed:
                # Not a failure: the resource may be installed later. Look again, less and less often.
                looked += 1
                await asyncio.sleep(
                    min(BACKOFF_FIRST * 2.0 ** (looked - 1), BACKOFF_CAP) * random.uniform(0.8, 1.2)  # noqa: S311
                )
                continue
            except APIError as error:
                if error.status == 410:
                    # Our version is older than the server keeps: list again, at once. Routine.
                    log.info("watch of %s expired (410); listing again", self.name)
                    self.synced.clear()
                    continue
                problem = f"{error}"
            except Exception as error:  # whatever it is, the cache must not stop
                problem = f"{type(error).__name__}: {error}"
            failures += 1
            if self.failing_since is None:
                self.failing_since = time.monotonic()
            self.last_error = problem[:300]
            # Events may have been lost with the stream: list again, so every change is seen.
            self.synced.clear()
            delay = min(BACKOFF_FIRST * 2.0 ** (failures - 1), BACKOFF_CAP) * random.uniform(0.8, 1.2)  # noqa: S311
            metrics.WATCH_RESTARTS.labels(resource=self.target.resource).inc()
            log.warning(
                "watch of %s failed (%s); restart %d in %.1fs", self.name, self.last_error, failures, delay
            )
            await asyncio.sleep(delay)
