"""The operator's Kubernetes API client: kubernetes_asyncio underneath, plain JSON documents on top.

kopf keeps its own client for its handlers; everything the operator itself reads or writes goes through
:class:`KubeAPI`, so that every write is counted (``jwt_trust_api_writes_total``) and every write of a
target uses server-side apply under one field manager (``jwt-trust``).

Why these choices over the maintained client:
- Requests go through kubernetes_asyncio's typed API classes (``CoreV1Api``, ``CustomObjectsApi``) with
  ``_preload_content=False``: the body comes back as the API server's JSON, decoded here into plain
  dicts. The operator's decisions are pure functions over API JSON (camelCase, as in every manifest),
  and converting a 1 MiB ConfigMap into generated model objects and back on every list would cost
  more than the decision itself.
- Watches are read in chunks and split into events here (:func:`json_lines`), not with
  ``Watch.stream``: that reads with ``StreamReader.readline()``, whose line limit is twice the
  session's read buffer, so one object larger than that stops the watch with ``LineTooLong`` (an
  aiohttp error that is neither a ``ValueError`` nor a ``ClientError``). An event is as long as its
  object, and a ConfigMap we write may approach 1 MiB.
- The client adds what a controller needs and the generated code does not do: a timeout on every
  request, ``429`` answered by waiting ``Retry-After``, one re-login (kopf's ``@kopf.on.login``) and
  retry on ``401``.

Secrets' contents never reach a log or an error message: errors carry the API's status, reason and
message only (the API server never echoes a Secret's data in them).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import tempfile
import time
import urllib.request
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import kopf

# This import costs about 36 MiB of resident memory (the operator's RSS is ~104 MiB instead of ~68 MiB
# with the former aiohttp-only client), nearly all of it the code of the generated package: importing any
# kubernetes_asyncio module runs its package __init__, which imports all 65 API classes and 767 models.
# Importing only CoreV1Api and CustomObjectsApi would save nothing: kopf itself imports
# kubernetes_asyncio.client whenever the package is installed (to recognise its model objects), so the
# cost comes with the dependency, not with this line. See docs/architecture.md, "The client".
from kubernetes_asyncio import client as k8s

from .errors import APIError, Transient, TransportError, api_error
from .metrics import WRITES

FIELD_MANAGER = "jwt-trust"
APPLY_PATCH = "application/apply-patch+yaml"
MERGE_PATCH = "application/merge-patch+json"
REQUEST_TIMEOUT = 60.0  # seconds for one request that is not a watch
WATCH_TIMEOUT = 300  # seconds the API server keeps a watch open before ending it cleanly
MAX_EVENT_BYTES = 64 * 1024 * 1024  # far above any object etcd stores (1.5 MiB), even JSON-escaped
THROTTLE_RETRIES = 5
MAX_RETRY_AFTER = 30.0
RETIRED_CLIENT_GRACE = WATCH_TIMEOUT + 60.0  # watches still running on a replaced client end by then

log = logging.getLogger("jwt_trust.api")

_CORE_KINDS = {"configmaps": "config_map", "secrets": "secret", "namespaces": "namespace", "events": "event"}


@dataclass(frozen=True)
class Ref:
    """An object (with ``name``) or a collection (without) of one resource; ``namespace`` None means
    cluster-scoped, or all namespaces for a collection of a namespaced resource."""

    group_version: str
    resource: str
    namespace: str | None = None
    name: str | None = None

    @property
    def core(self) -> bool:
        return self.group_version == "v1"


def _pem(data: str | bytes) -> bytes:
    """kubeconfig ``*-data`` fields are base64 of PEM; kopf may also hand over the PEM itself."""
    raw = data.encode() if isinstance(data, str) else data
    return raw if b"-----BEGIN" in raw else base64.b64decode(raw)


def connect(info: kopf.ConnectionInfo) -> k8s.ApiClient:
    """A kubernetes_asyncio client for the credentials kopf's login handler produced.

    The generated client reads CA and client certificates from files only, so inline data goes into
    temporary files that exist just while the client's TLS context is built (as kopf does itself).
    """
    config = k8s.Configuration(host=info.server)
    config.verify_ssl = not info.insecure
    headers = info.as_http_headers()
    if "Authorization" in headers:
        # kubernetes_asyncio sends api_key["BearerToken"] as the Authorization header; without a prefix
        # the value goes as is, which carries kopf's scheme (Bearer, Basic) unchanged.
        config.api_key = {"BearerToken": headers["Authorization"]}
    with contextlib.ExitStack() as files:

        def materialise(path: Any, data: str | bytes | None) -> str | None:
            if path:
                return str(path)
            if not data:
                return None
            handle = files.enter_context(tempfile.NamedTemporaryFile(buffering=0))  # mode 0600
            handle.write(_pem(data))
            return handle.name

        config.ssl_ca_cert = materialise(info.ca_path, info.ca_data)
        config.cert_file = materialise(info.certificate_path, info.certificate_data)
        config.key_file = materialise(info.private_key_path, info.private_key_data)
        api_client = k8s.ApiClient(config)
    api_client.user_agent = "jwt-trust"
    _look_up_the_proxy_once(api_client, info.server)
    return api_client


def _look_up_the_proxy_once(api_client: k8s.ApiClient, server: str) -> None:
    """Replace the client's HTTP session by one that does not consult the environment per request.

    kubernetes_asyncio builds its session with ``trust_env=True``: aiohttp then looks up the proxy
    settings and ``~/.netrc`` in a worker thread for every request, which measured 2.5 times the CPU
    per request of the same request without (and twice the operator's CPU over a 1,000-namespace
    fan-out). The API server's address never changes, so its proxy, if the environment names one for
    it, is looked up here once and given to the client (``Configuration.proxy`` does the same).
    """
    rest = api_client.rest_client
    host = urlsplit(server).hostname or ""
    proxy = urllib.request.getproxies().get(urlsplit(server).scheme or "https")
    if proxy and not rest.proxy and not urllib.request.proxy_bypass(host):
        rest.proxy = proxy
    original = rest.pool_manager
    # The library's read buffer (2 MiB) kept: large objects arrive in fewer reads.
    rest.pool_manager = aiohttp.ClientSession(
        connector=original.connector, trust_env=False, read_bufsize=2**21
    )
    original.detach()  # the connector now belongs to the new session


def _operation(
    api_client: k8s.ApiClient, target: Ref, verb: str, subresource: str | None
) -> tuple[Callable[..., Awaitable[Any]], tuple[Any, ...]]:
    """The typed kubernetes_asyncio method for ``verb`` on ``target``, and its positional arguments."""
    if target.core:
        kind = _CORE_KINDS[target.resource]
        core = k8s.CoreV1Api(api_client)
        if verb == "list":
            if target.namespace is not None:
                return getattr(core, f"list_namespaced_{kind}"), (target.namespace,)
            if target.resource == "namespaces":
                return core.list_namespace, ()
            return getattr(core, f"list_{kind}_for_all_namespaces"), ()
        if verb == "create":
            if target.namespace is None:
                return getattr(core, f"create_{kind}"), ()
            return getattr(core, f"create_namespaced_{kind}"), (target.namespace,)
        verbs = {"get": "read", "patch": "patch", "delete": "delete"}
        return getattr(core, f"{verbs[verb]}_namespaced_{kind}"), (target.name, target.namespace)
    group, _, version = target.group_version.partition("/")
    custom = k8s.CustomObjectsApi(api_client)
    scope = "cluster" if target.namespace is None else "namespaced"
    where = () if target.namespace is None else (target.namespace,)
    if verb in ("list", "create"):
        return getattr(custom, f"{verb}_{scope}_custom_object"), (group, version, *where, target.resource)
    verbs = {"get": "get", "patch": "patch", "delete": "delete"}
    suffix = f"_{subresource}" if subresource else ""
    method = getattr(custom, f"{verbs[verb]}_{scope}_custom_object{suffix}")
    return method, (group, version, *where, target.resource, target.name)


class KubeAPI:
    def __init__(self, login: Callable[[], Awaitable[kopf.ConnectionInfo]]) -> None:
        self._login = login
        # Told of every 429 (the write scheduler lowers its limit); the request itself is retried here.
        self.on_throttled: Callable[[], None] | None = None
        self._client: k8s.ApiClient | None = None
        self._retired: list[tuple[float, k8s.ApiClient]] = []
        self._login_lock = asyncio.Lock()

    async def open(self) -> None:
        if self._client is not None:
            return
        async with self._login_lock:  # concurrent first requests must not each build a client
            if self._client is None:
                self._client = connect(await self._login())

    async def close(self) -> None:
        clients = [c for _, c in self._retired] + ([self._client] if self._client else [])
        self._client, self._retired = None, []
        for api_client in clients:
            await api_client.close()

    async def _relogin(self, rejected: k8s.ApiClient) -> None:
        async with self._login_lock:
            if self._client is not rejected:
                return  # another request logged in again already
            log.info("the API server rejected our credentials (401); logging in again")
            fresh = connect(await self._login())
            # Requests and watches in flight keep the old client until they end; close it later.
            self._retired.append((time.monotonic(), rejected))
            self._client = fresh
            now = time.monotonic()
            for since, old in [r for r in self._retired if now - r[0] > RETIRED_CLIENT_GRACE]:
                self._retired.remove((since, old))
                await old.close()

    async def _call(
        self,
        target: Ref,
        verb: str,
        *body: Any,
        subresource: str | None = None,
        timeout: float | aiohttp.ClientTimeout = REQUEST_TIMEOUT,
        **params: Any,
    ) -> aiohttp.ClientResponse:
        """Send one request; the caller reads and releases the response (status < 400 only)."""
        await self.open()
        relogged = False
        throttled = 0
        while True:
            api_client = self._client
            assert api_client is not None
            method, args = _operation(api_client, target, verb, subresource)
            with _transport(target, verb):
                response: aiohttp.ClientResponse = await method(
                    *args, *body, _preload_content=False, _request_timeout=timeout, **params
                )
                if response.status < 400:
                    return response
                try:
                    payload = await response.read()
                finally:
                    response.release()
            if response.status == 401 and not relogged:
                relogged = True
                await self._relogin(api_client)
                continue
            if response.status == 429 and throttled < THROTTLE_RETRIES:
                throttled += 1
                if self.on_throttled is not None:
                    self.on_throttled()
                delay = _retry_after(response.headers.get("Retry-After"))
                log.info("the API server asks us to slow down (429); retrying in %.0fs", delay)
                await asyncio.sleep(delay)
                continue
            raise _error(response.status, payload)

    async def _json(self, target: Ref, verb: str, *body: Any, **params: Any) -> Any:
        response = await self._call(target, verb, *body, **params)
        try:
            with _transport(target, verb):
                payload = await response.read()
        finally:
            response.release()
        return json.loads(payload) if payload else None

    async def get(self, target: Ref) -> Any:
        try:
            return await self._json(target, "get")
        except APIError as error:
            if error.status == 404:
                return None
            raise

    async def list(
        self, target: Ref, *, label_selector: str | None = None, field_selector: str | None = None
    ) -> tuple[list[dict[str, Any]], str]:
        """Every object (paged), and the collection's resourceVersion to watch from."""
        items: list[dict[str, Any]] = []
        params: dict[str, Any] = {"limit": 500}
        if label_selector:
            params["label_selector"] = label_selector
        if field_selector:
            params["field_selector"] = field_selector
        # A page of large objects may take long to arrive: bound the silence, not the whole transfer.
        slow = aiohttp.ClientTimeout(total=None, sock_connect=REQUEST_TIMEOUT, sock_read=REQUEST_TIMEOUT)
        while True:
            page = await self._json(target, "list", timeout=slow, **params)
            items.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return items, str((page.get("metadata") or {}).get("resourceVersion", ""))
            params["_continue"] = token

    async def watch(
        self,
        target: Ref,
        *,
        resource_version: str,
        label_selector: str | None = None,
        timeout: int = WATCH_TIMEOUT,
    ) -> AsyncGenerator[tuple[str, dict[str, Any]], None]:
        """Stream (type, object) events from ``resource_version``, bookmarks included, until the API
        server ends the watch; raises APIError(410) when that version is too old to resume from."""
        params: dict[str, Any] = {
            "watch": True,
            "resource_version": resource_version,
            "allow_watch_bookmarks": True,
            "timeout_seconds": timeout,
        }
        if label_selector:
            params["label_selector"] = label_selector
        # No total limit (the server ends the watch after `timeout`), but a silent connection is dead.
        limits = aiohttp.ClientTimeout(total=None, sock_connect=REQUEST_TIMEOUT, sock_read=timeout + 30)
        response = await self._call(target, "list", timeout=limits, **params)
        try:
            async for line in json_lines(response.content):
                event = json.loads(line)
                if event.get("type") == "ERROR":
                    status = event.get("object") or {}
                    raise api_error(
                        int(status.get("code", 500)),
                        str(status.get("reason", "")),
                        str(status.get("message", "")),
                    )
                yield str(event.get("type")), event.get("object") or {}
        finally:
            response.release()

    async def text(self, path: str) -> str:
        """GET a plain-text endpoint of the API server (``/metrics``), for tools and benchmarks."""
        await self.open()
        assert self._client is not None
        response: aiohttp.ClientResponse = await self._client.call_api(
            path,
            "GET",
            auth_settings=["BearerToken"],
            _preload_content=False,
            _request_timeout=REQUEST_TIMEOUT,
        )
        try:
            payload = await response.read()
        finally:
            response.release()
        if response.status >= 400:
            raise _error(response.status, payload)
        return payload.decode()

    async def create(self, target: Ref, body: Mapping[str, Any]) -> Any:
        WRITES.labels(verb="post", resource=target.resource).inc()
        return await self._json(target, "create", body)

    async def apply(
        self,
        target: Ref,
        body: Mapping[str, Any],
        *,
        force: bool,
        resource_version: str | None = None,
        subresource: str | None = None,
        strict: bool = False,
    ) -> Any:
        """Server-side apply under our field manager. With ``resource_version`` the apply succeeds only
        if the object is still at that version (409 Conflict otherwise): a write decided from a read
        cannot overwrite a change made after that read. With ``strict`` a field the resource's schema
        does not know is refused (``fieldValidation=Strict``) instead of being dropped silently: for
        another project's kinds, whose schema may differ between their versions."""
        if resource_version is not None:
            body = {**body, "metadata": {**body["metadata"], "resourceVersion": resource_version}}
        resource = f"{target.resource}/{subresource}" if subresource else target.resource
        WRITES.labels(verb="apply", resource=resource).inc()
        params: dict[str, Any] = {"field_validation": "Strict"} if strict else {}
        return await self._json(
            target,
            "patch",
            body,
            subresource=subresource,
            field_manager=FIELD_MANAGER,
            force=force,
            _content_type=APPLY_PATCH,
            **params,
        )

    async def merge_patch(
        self, target: Ref, body: Mapping[str, Any], *, subresource: str | None = None
    ) -> Any:
        resource = f"{target.resource}/{subresource}" if subresource else target.resource
        WRITES.labels(verb="patch", resource=resource).inc()
        return await self._json(
            target,
            "patch",
            body,
            subresource=subresource,
            field_manager=FIELD_MANAGER,
            _content_type=MERGE_PATCH,
        )

    async def delete(self, target: Ref, *, uid: str | None = None) -> bool:
        """Delete; with ``uid`` only that exact object (a precondition: an object created again under the
        same name since we looked is left alone). False if it was already gone or is another object."""
        WRITES.labels(verb="delete", resource=target.resource).inc()
        body = {"preconditions": {"uid": uid}} if uid else None
        try:
            await self._json(target, "delete", body=body)
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
        count: int = 1,
        component: str = "jwt-trust",
    ) -> None:
        """Post a core/v1 Event about ``involved`` (an object with apiVersion, kind and metadata);
        ``count``: how many occurrences it stands for (the event recorder's repeats)."""
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
            "count": count,
        }
        # An Event is best effort; the condition in status carries the same information.
        with contextlib.suppress(Transient):
            await self.create(Ref("v1", "events", namespace), body)


async def json_lines(content: aiohttp.StreamReader, *, limit: int = MAX_EVENT_BYTES) -> AsyncIterator[bytes]:
    """Split a watch stream into its newline-delimited JSON events, whatever their length.

    Reads whatever arrives (``iter_any``) and splits it here, so no line length limit of the HTTP
    library applies; ``limit`` only bounds memory against a broken stream. A stream that ends in the
    middle of an event raises: the event was lost and the caller must not think it saw everything.
    """
    buffer = bytearray()
    async for chunk in content.iter_any():
        searched = len(buffer)  # a newline can only be in the new part
        buffer += chunk
        start = 0
        while (end := buffer.find(b"\n", max(start, searched))) != -1:
            line = bytes(buffer[start:end])
            start = end + 1
            if line.strip():
                yield line
        del buffer[:start]
        if len(buffer) > limit:
            raise aiohttp.ClientPayloadError(f"watch event longer than {limit} bytes")
    if buffer.strip():
        raise aiohttp.ClientPayloadError("watch stream ended in the middle of an event")


def _retry_after(value: str | None) -> float:
    try:
        return min(max(float(value or 1), 0.0), MAX_RETRY_AFTER)
    except ValueError:
        return 1.0


def _error(status: int, payload: bytes) -> APIError:
    try:
        document = json.loads(payload)
        return api_error(status, str(document.get("reason", "")), str(document.get("message", ""))[:500])
    except (ValueError, AttributeError):
        return api_error(status, "", payload[:200].decode(errors="replace"))


@contextlib.contextmanager
def _transport(target: Ref, verb: str) -> Iterator[None]:
    """The client's network failures as one typed error (TransportError), so callers need not know aiohttp."""
    try:
        yield
    except (aiohttp.ClientError, TimeoutError, OSError) as error:
        raise TransportError(f"{verb} {target.resource}: {type(error).__name__}: {error}") from error
