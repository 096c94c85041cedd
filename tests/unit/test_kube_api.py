"""The operator's API client on its own: watch streams, 410 Gone, 429 with Retry-After, 401 and re-login.

The HTTP cases run against a small aiohttp server on loopback that answers like the API server does
(status, headers, a Status document), since a real API server cannot be made to throttle or to reject
a token on demand, nor forget a version in a test's time; the real one is exercised in
tests/e2e/test_kube_client.py and tests/e2e/test_watches.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import kopf
import pytest
from aiohttp import web
from prometheus_client import REGISTRY

from jwt_trust.kube.api import KubeAPI, Ref, json_lines
from jwt_trust.kube.errors import APIError
from jwt_trust.kube.informers import Informer


class _Chunks:
    """What json_lines reads: a stream that hands out whatever arrived, in pieces."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = chunks

    async def _iterate(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk

    def iter_any(self) -> AsyncIterator[bytes]:
        return self._iterate()


async def _lines(stream: _Chunks, **kwargs: Any) -> list[bytes]:
    return [line async for line in json_lines(stream, **kwargs)]  # type: ignore[arg-type]


def test_events_split_across_chunks_and_longer_than_any_read_buffer_come_out_whole() -> None:
    big = json.dumps({"type": "ADDED", "object": {"data": {"k": "x" * 3_000_000}}}).encode()
    stream = b'{"type":"A"}\n\n' + big + b'\n{"type":"B"}\n'
    pieces = [stream[i : i + 65536] for i in range(0, len(stream), 65536)]
    assert asyncio.run(_lines(_Chunks(*pieces))) == [b'{"type":"A"}', big, b'{"type":"B"}']
    # Byte by byte across a boundary, too.
    assert asyncio.run(_lines(_Chunks(b'{"a"', b":1}", b"\n", b'{"b":2}\n'))) == [b'{"a":1}', b'{"b":2}']


def test_a_stream_ending_mid_event_or_beyond_the_bound_raises() -> None:
    with pytest.raises(aiohttp.ClientPayloadError):
        asyncio.run(_lines(_Chunks(b'{"type":"A"}\n{"type":')))
    with pytest.raises(aiohttp.ClientPayloadError):
        asyncio.run(_lines(_Chunks(b"x" * 100, b"x" * 100), limit=150))


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _serve(handler: Handler, check: Callable[[KubeAPI, list[str]], Awaitable[None]]) -> None:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    tokens = ["first", "second"]
    logins: list[str] = []

    async def login() -> kopf.ConnectionInfo:
        logins.append(tokens[min(len(logins), 1)])
        return kopf.ConnectionInfo(server=f"http://127.0.0.1:{port}", token=logins[-1])

    api = KubeAPI(login)
    try:
        await check(api, logins)
    finally:
        await api.close()
        await runner.cleanup()


def _status(code: int, reason: str) -> web.Response:
    body = {"kind": "Status", "code": code, "reason": reason, "message": reason}
    return web.json_response(body, status=code)


def test_429_waits_for_retry_after_and_then_succeeds() -> None:
    seen: list[float] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        seen.append(asyncio.get_running_loop().time())
        if len(seen) < 3:
            response = _status(429, "TooManyRequests")
            response.headers["Retry-After"] = "1"
            return response
        return web.json_response({"metadata": {"name": "x"}})

    async def check(api: KubeAPI, logins: list[str]) -> None:
        body = await api.get(Ref("v1", "configmaps", "ns", "x"))
        assert body == {"metadata": {"name": "x"}}
        assert len(seen) == 3
        assert seen[2] - seen[0] >= 1.9  # two waits of Retry-After: 1

    asyncio.run(_serve(handler, check))


def test_401_logs_in_again_once_and_retries_with_the_new_credentials() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != "Bearer second":
            return _status(401, "Unauthorized")
        return web.json_response({"ok": request.method})

    async def check(api: KubeAPI, logins: list[str]) -> None:
        assert await api.get(Ref("v1", "configmaps", "ns", "x")) == {"ok": "GET"}
        assert logins == ["first", "second"]
        # Later requests use the new credentials without another login.
        assert await api.get(Ref("v1", "configmaps", "ns", "y")) == {"ok": "GET"}
        assert len(logins) == 2

    asyncio.run(_serve(handler, check))


def test_credentials_rejected_twice_are_an_error_not_a_loop() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return _status(401, "Unauthorized")

    async def check(api: KubeAPI, logins: list[str]) -> None:
        with pytest.raises(APIError) as raised:
            await api.get(Ref("v1", "configmaps", "ns", "x"))
        assert raised.value.status == 401
        assert len(logins) == 2

    asyncio.run(_serve(handler, check))


def test_apply_is_server_side_apply_under_our_field_manager() -> None:
    requests: list[tuple[str, str, dict[str, str], Any]] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        requests.append((request.method, request.content_type, dict(request.query), await request.json()))
        return web.json_response({"metadata": {"name": "x"}})

    async def check(api: KubeAPI, logins: list[str]) -> None:
        body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x", "namespace": "ns"}}
        await api.apply(Ref("v1", "secrets", "ns", "x"), body, force=True, resource_version="42")
        await api.merge_patch(
            Ref("jwt-trust.dev/v1alpha1", "issuers", "ns", "x"), {"status": {}}, subresource="status"
        )
        await api.delete(Ref("v1", "configmaps", "ns", "x"), uid="u-1")

    asyncio.run(_serve(handler, check))
    (apply, patch, delete) = requests
    assert apply[:2] == ("PATCH", "application/apply-patch+yaml")
    assert apply[2]["fieldManager"] == "jwt-trust"
    assert apply[2]["force"].lower() == "true"
    assert apply[3]["metadata"]["resourceVersion"] == "42"
    assert patch[:2] == ("PATCH", "application/merge-patch+json")
    assert delete[0] == "DELETE"
    assert delete[3] == {"preconditions": {"uid": "u-1"}}


def test_a_watch_answered_410_lists_again_at_once_and_counts_no_failure() -> None:
    lists: list[str] = []
    watches: list[str] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.query.get("watch", "").lower() != "true":
            lists.append(request.query.get("labelSelector", ""))
            version = str(len(lists) * 10)
            items = [
                {"metadata": {"name": f"cm-{len(lists)}", "namespace": "ns", "resourceVersion": version}}
            ]
            return web.json_response({"metadata": {"resourceVersion": version}, "items": items})
        watches.append(request.query["resourceVersion"])
        response = web.StreamResponse()
        await response.prepare(request)
        if len(watches) == 1:
            gone = {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}}
            await response.write(json.dumps(gone).encode() + b"\n")
            return response
        await asyncio.sleep(1)  # a quiet watch (the test has what it needs by then)
        return response

    def restarts() -> float:
        return REGISTRY.get_sample_value("jwt_trust_watch_restarts_total", {"resource": "configmaps"}) or 0.0

    async def check(api: KubeAPI, logins: list[str]) -> None:
        informer: Informer[str] = Informer(
            api, Ref("v1", "configmaps"), lambda obj: obj["metadata"]["name"], label_selector="a=b"
        )
        await informer.list()
        before = restarts()
        task = asyncio.create_task(informer.run())
        try:
            for _ in range(100):
                if len(watches) == 2:
                    break
                await asyncio.sleep(0.05)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert watches == ["10", "20"], "resumed from the first list, then from the second"
        assert lists == ["a=b", "a=b"]
        assert set(informer.objects) == {("ns", "cm-2")}
        assert restarts() == before
        assert informer.failing_since is None

    asyncio.run(_serve(handler, check))


def test_the_client_looks_up_its_proxy_once_not_per_request(monkeypatch: pytest.MonkeyPatch) -> None:
    """kubernetes_asyncio's session consults the environment on every request (a thread round trip
    each): the operator's session does not, and the proxy the environment names is kept."""
    from jwt_trust.kube.api import connect

    async def build(**env: str) -> tuple[bool, str | None]:
        for name in ("HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        api_client = connect(kopf.ConnectionInfo(server="https://api.example:6443", insecure=True))
        try:
            return api_client.rest_client.pool_manager.trust_env, api_client.rest_client.proxy
        finally:
            await api_client.close()

    assert asyncio.run(build()) == (False, None)
    assert asyncio.run(build(HTTPS_PROXY="http://proxy.example:3128")) == (False, "http://proxy.example:3128")
    assert asyncio.run(build(HTTPS_PROXY="http://proxy.example:3128", NO_PROXY="api.example")) == (
        False,
        None,
    )
