"""Label-selected list+watch caches: what the decisions read, without a request per reconciliation.

Each :class:`Informer` lists once (complete before the operator acts on it, so a half-filled cache can
never make a target look unwanted) and then watches from that version, relisting on ``410 Gone``. It
keeps only a compact summary of each object (``summarise``), so memory follows the number of objects
we own, not the number of objects in the cluster: the ConfigMap and Secret watches carry our
managed-by label selector, evaluated by the API server.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import aiohttp

from .api import APIError, KubeAPI

Summary = TypeVar("Summary")
Key = tuple[str, str]  # (namespace or "", name)

log = logging.getLogger("jwt_trust.informers")


def object_key(obj: dict[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))


class Informer(Generic[Summary]):
    def __init__(
        self,
        api: KubeAPI,
        url: str,
        summarise: Callable[[dict[str, Any]], Summary],
        *,
        label_selector: str | None = None,
        on_change: Callable[[Key, Summary | None, Summary | None], None] = lambda key, old, new: None,
    ) -> None:
        self.api = api
        self.url = url
        self.summarise = summarise
        self.label_selector = label_selector
        self.on_change = on_change
        self.objects: dict[Key, Summary] = {}
        self._version = ""
        self.synced = asyncio.Event()

    async def list(self) -> None:
        items, self._version = await self.api.list(self.url, label_selector=self.label_selector)
        fresh = {object_key(item): self.summarise(item) for item in items}
        old = self.objects
        self.objects = fresh
        for key in old.keys() | fresh.keys():
            if old.get(key) != fresh.get(key):
                self.on_change(key, old.get(key), fresh.get(key))
        self.synced.set()

    async def run(self) -> None:
        """Watch forever (until cancelled), relisting when the watch cannot resume."""
        delay = 1.0
        while True:
            try:
                if not self.synced.is_set():
                    await self.list()
                async for kind, obj in self.api.watch(
                    self.url, resource_version=self._version, label_selector=self.label_selector
                ):
                    version = (obj.get("metadata") or {}).get("resourceVersion")
                    if version:
                        self._version = str(version)
                    if kind == "BOOKMARK":
                        continue
                    key = object_key(obj)
                    old = self.objects.get(key)
                    new = None if kind == "DELETED" else self.summarise(obj)
                    if new is None:
                        self.objects.pop(key, None)
                    else:
                        self.objects[key] = new
                    if old != new:
                        self.on_change(key, old, new)
                delay = 1.0
            except asyncio.CancelledError:
                raise
            except APIError as error:
                if error.status == 410:
                    self.synced.clear()
                    continue
                log.warning("watch of %s failed: %s; retrying in %.0fs", self.url, error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                self.synced.clear()
            except (TimeoutError, aiohttp.ClientError, ValueError) as error:
                log.warning("watch of %s interrupted: %r; retrying in %.0fs", self.url, error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                self.synced.clear()
