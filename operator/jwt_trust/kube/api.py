"""The one Kubernetes API client of the operator: aiohttp, JSON, server-side apply, list and watch.

kopf keeps its own client for its handlers; everything the operator itself reads or writes goes through
:class:`KubeAPI`, so that every write is counted (``jwt_trust_api_writes_total``) and every write of a
target uses server-side apply under one field manager. Secrets' contents never reach a log or an error
message: errors carry the API's status and reason only.
"""

from __future__ import annotations

import contextlib
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp

from .metrics import WRITES

FIELD_MANAGER = "jwt-trust"


@dataclass(frozen=True)
class Credentials:
    """Where the API server is and how to authenticate (built from kopf's ConnectionInfo)."""

    server: str
    ssl_context: ssl.SSLContext
    headers: Mapping[str, str]


class APIError(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


def path(group_version: str, resource: str, namespace: str | None = None, name: str | None = None) -> str:
    """``/api/v1/namespaces/ns/configmaps/name`` and friends."""
    prefix = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
    parts = [prefix]
    if namespace is not None:
        parts.append(f"namespaces/{namespace}")
    parts.append(resource)
    if name is not None:
        parts.append(name)
    return "/".join(parts)


class KubeAPI:
    def __init__(self, credentials: Credentials, relogin: Callable[[], Awaitable[Credentials]] | None = None):
        self._credentials = credentials
        self._relogin = relogin
        self._session: aiohttp.ClientSession | None = None

    def _headers(self) -> dict[str, str]:
        return {"Accept": "application/json", **self._credentials.headers}

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=self._credentials.ssl_context, limit=32)
            self._session = aiohttp.ClientSession(base_url=self._credentials.server, connector=connector)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        resource: str = "",
    ) -> Any:
        for attempt in (1, 2):
            headers = self._headers()
            data = None
            if body is not None:
                headers["Content-Type"] = content_type
                data = json.dumps(body).encode()
            if method != "GET":
                WRITES.labels(
                    verb=method.lower() if "apply" not in content_type else "apply", resource=resource
                ).inc()
            async with self._open().request(
                method, url, params=params, data=data, headers=headers
            ) as response:
                if response.status == 401 and attempt == 1 and self._relogin is not None:
                    self._credentials = await self._relogin()
                    await self.close()
                    continue
                payload = await response.read()
                if response.status >= 400:
                    raise _error(response.status, payload)
                if response.content_type != "application/json":
                    return payload.decode()  # /metrics and other plain-text endpoints
                return json.loads(payload) if payload else None
        raise APIError(401, "Unauthorized", "credentials rejected twice")

    async def get(self, url: str, *, resource: str = "") -> Any:
        try:
            return await self.request("GET", url, resource=resource)
        except APIError as error:
            if error.status == 404:
                return None
            raise

    async def list(
        self, url: str, *, label_selector: str | None = None, field_selector: str | None = None
    ) -> tuple[list[dict[str, Any]], str]:
        items: list[dict[str, Any]] = []
        params: dict[str, str] = {"limit": "500"}
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        while True:
            page = await self.request("GET", url, params=params)
            items.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return items, str((page.get("metadata") or {}).get("resourceVersion", ""))
            params["continue"] = token

    async def watch(
        self, url: str, *, resource_version: str, label_selector: str | None = None, timeout: int = 300
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """Stream (type, object) events; raises APIError(410) when the version is too old to resume."""
        params = {
            "watch": "1",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout),
        }
        if label_selector:
            params["labelSelector"] = label_selector
        client_timeout = aiohttp.ClientTimeout(total=None, sock_read=timeout + 30)
        async with self._open().get(
            url, params=params, headers=self._headers(), timeout=client_timeout
        ) as response:
            if response.status >= 400:
                raise _error(response.status, await response.read())
            async for line in response.content:
                if not line.strip():
                    continue
                event = json.loads(line)
                if event.get("type") == "ERROR":
                    status = event.get("object") or {}
                    raise APIError(
                        int(status.get("code", 500)),
                        str(status.get("reason", "")),
                        str(status.get("message", "")),
                    )
                yield str(event.get("type")), event.get("object") or {}

    async def apply(self, url: str, body: Mapping[str, Any], *, force: bool, resource: str) -> Any:
        params = {"fieldManager": FIELD_MANAGER, "force": "true" if force else "false"}
        return await self.request(
            "PATCH",
            url,
            params=params,
            body=body,
            content_type="application/apply-patch+yaml",
            resource=resource,
        )

    async def merge_patch(self, url: str, body: Mapping[str, Any], *, resource: str) -> Any:
        return await self.request(
            "PATCH",
            url,
            params={"fieldManager": FIELD_MANAGER},
            body=body,
            content_type="application/merge-patch+json",
            resource=resource,
        )

    async def delete(self, url: str, *, resource: str, uid: str | None = None) -> bool:
        """Delete; with ``uid`` only that exact object (a precondition). False if it was already gone."""
        body = {"preconditions": {"uid": uid}} if uid else None
        try:
            await self.request("DELETE", url, body=body, resource=resource)
        except APIError as error:
            if error.status in (404, 409):
                return False
            raise
        return True

    async def event(
        self,
        involved: Mapping[str, Any],
        type_: str,
        reason: str,
        message: str,
        *,
        component: str = "jwt-trust",
    ) -> None:
        """Post a core/v1 Event about ``involved`` (an object with apiVersion, kind and metadata)."""
        meta = involved.get("metadata") or {}
        namespace = meta.get("namespace") or "default"
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "metadata": {"generateName": f"{meta.get('name', 'jwt-trust')}.", "namespace": namespace},
            "involvedObject": {
                "apiVersion": involved.get("apiVersion"),
                "kind": involved.get("kind"),
                "name": meta.get("name"),
                "namespace": meta.get("namespace"),
                "uid": meta.get("uid"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": component},
            "reportingComponent": component,
            "reportingInstance": component,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        # An Event is best effort; the condition in status carries the same information.
        with contextlib.suppress(TimeoutError, APIError, aiohttp.ClientError):
            await self.request("POST", path("v1", "events", namespace), body=body, resource="events")


def _error(status: int, payload: bytes) -> APIError:
    try:
        document = json.loads(payload)
        return APIError(status, str(document.get("reason", "")), str(document.get("message", ""))[:500])
    except ValueError:
        return APIError(status, "", payload[:200].decode(errors="replace"))
