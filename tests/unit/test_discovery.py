"""The discovery service without a cluster: the documents (pure), the HTTP rules over real TLS with an
in-memory Issuer source, certificate reloading, and how the process starts or refuses to.

The service against the real API server (list+watch, a key change followed) is in
tests/e2e/test_discovery_service.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509

from jwt_trust import cli
from jwt_trust.keys import generate_private_key, public_jwk
from jwt_trust.kube import discovery
from jwt_trust.kube.discovery import CertificateReloader, Server, SourceState, StaticSource
from jwt_trust.kube.discovery_documents import (
    MAX_AGE_CAP,
    PRIVATE_MEMBERS,
    IssuerDocuments,
    etag_matches,
    freshness,
    normalise_base_url,
    parse_path,
    render_documents,
    served_kids,
)
from jwt_trust.kube.informers import Informer
from jwt_trust.kube.policies import issuer_trust
from jwt_trust.projection import PolicyTrust, render_configmap_data
from jwt_trust_testing.https import certificates

BASE = "https://discovery.example:8443"
NOW = 1_767_225_600


def _jwk(alg: str) -> dict[str, str]:
    return public_jwk(generate_private_key(alg, rsa_bits=2048), alg)


def issuer(
    name: str = "orders",
    namespace: str = "team-a",
    *,
    keys: list[dict[str, str]] | None = None,
    enabled: Any = True,
    **spec: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {"issuer": f"https://{name}.{namespace}.example/", **spec}
    if enabled is not None:
        body["discovery"] = {"enabled": enabled}
    keys = [_jwk("ES256")] if keys is None else keys
    return {
        "apiVersion": "jwt-trust.dev/v1alpha1",
        "kind": "Issuer",
        "metadata": {"name": name, "namespace": namespace},
        "spec": body,
        "status": {
            "keys": [
                {"kid": jwk["kid"], "alg": jwk["alg"], "state": "active", "publicKey": jwk} for jwk in keys
            ]
        },
    }


def rendered(body: dict[str, Any]) -> IssuerDocuments:
    documents = render_documents(body, BASE, NOW)
    assert documents is not None
    return documents


# --- the documents (pure) -------------------------------------------------------------------------


def test_the_jwks_is_exactly_what_a_policy_publishes_byte_for_byte() -> None:
    keys = [_jwk("ES256"), _jwk("EdDSA"), _jwk("RS256")]
    body = issuer(keys=keys, revokedKeys=[keys[1]["kid"]])
    documents = rendered(body)
    trust = issuer_trust("team-a/orders", body, NOW)
    assert trust is not None
    served = json.loads(documents.jwks.body)
    assert served == {"keys": sorted(trust.keys, key=lambda k: k["kid"])}
    assert keys[1]["kid"] not in {k["kid"] for k in served["keys"]}  # revoked: never served
    # The same bytes as the projected ConfigMap's per-issuer file.
    data = render_configmap_data(PolicyTrust(policy="p", issuers=(trust,)), revision=1)
    assert documents.jwks.body == data["issuer.team-a.orders.jwks.json"].encode()
    assert documents.kids == served_kids(documents.jwks.body) == tuple(sorted(k["kid"] for k in trust.keys))


def test_no_private_or_symmetric_member_is_ever_served() -> None:
    good = _jwk("ES256")
    leaked = {**_jwk("ES256"), "d": "c2VjcmV0"}
    symmetric = {"kty": "oct", "kid": "sym", "alg": "HS256", "k": "c2VjcmV0"}
    documents = rendered(issuer(keys=[good, leaked, symmetric]))
    served = json.loads(documents.jwks.body)["keys"]
    assert [k["kid"] for k in served] == [good["kid"]]
    for body in (issuer(keys=[_jwk(alg)]) for alg in ("ES256", "ES384", "EdDSA", "RS256", "PS256")):
        for jwk in json.loads(rendered(body).jwks.body)["keys"]:
            assert not PRIVATE_MEMBERS & jwk.keys()
    assert b'"d"' not in documents.jwks.body
    assert b'"k"' not in documents.jwks.body


def test_the_openid_configuration_names_the_issuer_exactly_and_the_jwks() -> None:
    keys = [_jwk("ES256"), _jwk("EdDSA")]
    body = issuer(keys=keys)
    body["spec"]["issuer"] = "https://Orders.example/tenant-1/"  # case and trailing slash kept
    configuration = json.loads(rendered(body).configuration.body)
    assert configuration == {
        "issuer": "https://Orders.example/tenant-1/",
        "jwks_uri": f"{BASE}/issuers/team-a/orders/jwks",
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256", "EdDSA"],
    }


@pytest.mark.parametrize("enabled", [None, False, "true", 1, {}])
def test_an_issuer_that_does_not_opt_in_is_not_served(enabled: Any) -> None:
    assert render_documents(issuer(enabled=enabled), BASE, NOW) is None
    assert render_documents({"metadata": {"name": "x", "namespace": "y"}, "spec": {}}, BASE, NOW) is None


@pytest.mark.parametrize(
    ("propagation", "seconds"), [("0s", 0), ("1s", 1), ("3s", 3), ("60s", 60), ("5m", 300), ("48h", 172800)]
)
def test_clients_cache_within_the_propagation_time(propagation: str, seconds: int) -> None:
    documents = rendered(issuer(rotation={"propagation": propagation, "every": "72h"}))
    assert documents.max_age <= seconds
    assert documents.max_age <= MAX_AGE_CAP
    # A client's copy: the replica's lag (up to stale_limit) plus the cache lifetime, within P.
    assert documents.max_age + documents.stale_limit <= seconds or documents.max_age == MAX_AGE_CAP
    assert freshness(seconds) == (documents.max_age, documents.stale_limit)


def test_the_default_and_an_unparseable_spec_have_a_bounded_max_age() -> None:
    assert rendered(issuer()).max_age == 150  # the default propagation, 5m
    broken = rendered(issuer(rotation={"propagation": "soon"}))
    assert broken.max_age == 60
    assert json.loads(broken.jwks.body)["keys"]  # the keys a policy publishes are still served


def test_etags_are_strong_hashes_of_the_bytes() -> None:
    body = issuer()
    first, again = rendered(body), rendered(body)
    assert first.jwks.etag == again.jwks.etag
    assert first.jwks.etag.startswith('"')
    assert first.jwks.etag != first.configuration.etag
    assert rendered(issuer()).jwks.etag != first.jwks.etag  # another key, another tag


def test_if_none_match() -> None:
    tag = '"abc"'
    assert etag_matches('"abc"', tag)
    assert etag_matches('W/"abc"', tag)  # weak comparison, as RFC 9110 asks of If-None-Match
    assert etag_matches('"x", "abc"', tag)
    assert etag_matches("*", tag)
    assert not etag_matches('"abcd"', tag)
    assert not etag_matches(None, tag)
    assert not etag_matches("", tag)


def test_paths() -> None:
    assert parse_path("/issuers/team-a/orders/jwks") == ("team-a", "orders", "jwks")
    assert parse_path("/issuers/team-a/orders.v2/.well-known/openid-configuration") == (
        "team-a",
        "orders.v2",
        ".well-known/openid-configuration",
    )
    for path in (
        "/",
        "/issuers",
        "/issuers/",
        "/issuers/team-a/",
        "/issuers/team-a/orders",
        "/issuers/team-a/orders/",
        "/issuers/team-a/orders/jwks/",
        "/issuers//orders/jwks",
        "/issuers/team-a/../jwks",
        "/issuers/Team-A/orders/jwks",
        "/issuers/team-a/orders/.well-known/",
        "/issuers/team-a/orders/.well-known/jwks",
        "//issuers/team-a/orders/jwks",
        "/x/team-a/orders/jwks",
    ):
        assert parse_path(path) is None, path


def test_base_url() -> None:
    assert normalise_base_url("https://d.example:8443/") == "https://d.example:8443"
    assert normalise_base_url("https://d.example/prefix") == "https://d.example/prefix"
    for bad in (
        "http://d.example",
        "https://",
        "d.example",
        "https://d.example/?x=1",
        "https://u:p@d.example",
    ):
        with pytest.raises(ValueError, match="discovery URL"):
            normalise_base_url(bad)


def test_served_kids_refuses_what_is_not_a_jwk_set() -> None:
    assert served_kids(b'{"keys":[{"kid":"b"},{"kid":"a"}]}') == ("a", "b")
    assert served_kids({"keys": []}) == ()
    for bad in (b"[]", b'{"keys":{}}', b'{"keys":[{"kty":"EC"}]}', b"{"):
        with pytest.raises(ValueError):  # noqa: PT011 - json's own errors are ValueErrors, too
            served_kids(bad)


def test_the_informer_source_reports_listing_failures_and_what_it_holds() -> None:
    render = discovery.summarise(BASE)
    served, hidden = issuer("orders"), issuer("billing", enabled=False)
    assert render(hidden) is None
    assert render({"metadata": {"name": "odd", "namespace": "x"}, "spec": ["not", "a", "map"]}) is None

    async def check() -> None:
        informer: Informer[IssuerDocuments | None] = Informer(None, discovery.ISSUERS, render)  # type: ignore[arg-type]
        source = discovery.InformerSource(informer)
        assert source.state() == SourceState(listed=False, failing_for=None)
        informer.objects = {("team-a", "orders"): render(served), ("team-a", "billing"): render(hidden)}
        informer.synced.set()
        assert source.state() == SourceState(listed=True, failing_for=None)
        assert source.documents("team-a", "orders") == rendered(served)
        assert source.documents("team-a", "billing") is None
        assert source.documents("team-a", "missing") is None
        # A failure: the cache is relisted (synced cleared) but what it listed once still counts.
        informer.synced.clear()
        informer.failing_since, informer.last_error = time.monotonic() - 3, "APIError 403: forbidden"
        state = source.state()
        assert state.listed
        assert state.failing_for is not None
        assert state.failing_for >= 3
        assert state.detail == "APIError 403: forbidden"

    asyncio.run(check())


# --- the server over TLS --------------------------------------------------------------------------


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path, Path]:
    ca, cert, key = certificates("first")
    paths = (tmp_path / "ca.crt", tmp_path / "tls.crt", tmp_path / "tls.key")
    for path, data in zip(paths, (ca, cert, key), strict=True):
        path.write_bytes(data)
    return paths


def _client_context(ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))


@contextlib.asynccontextmanager
async def running(
    source: StaticSource, tls_files: tuple[Path, Path, Path], **limits: Any
) -> AsyncIterator[tuple[str, aiohttp.ClientSession, CertificateReloader]]:
    ca, cert, key = tls_files
    reloader = CertificateReloader(str(cert), str(key))
    server = Server(
        source,
        reloader,
        host="127.0.0.1",
        port=0,
        handler_limits={**discovery.HANDLER_LIMITS, **limits} if limits else None,
    )
    await server.start()
    try:
        connector = aiohttp.TCPConnector(ssl=_client_context(ca))
        async with aiohttp.ClientSession(connector=connector) as session:
            yield f"https://127.0.0.1:{server.bound_port}", session, reloader
    finally:
        await server.stop()


def _source(*bodies: dict[str, Any]) -> StaticSource:
    documents = {}
    for body in bodies:
        rendered_ = render_documents(body, BASE, NOW)
        if rendered_ is not None:
            namespace, name = rendered_.ref.split("/")
            documents[(namespace, name)] = rendered_
    return StaticSource(documents)


def test_jwks_and_configuration_with_caching_headers(tls_files: tuple[Path, Path, Path]) -> None:
    body = issuer(rotation={"propagation": "40s", "every": "1h"})
    documents = rendered(body)

    async def check() -> None:
        async with running(_source(body), tls_files) as (url, session, _):
            async with session.get(f"{url}/issuers/team-a/orders/jwks") as response:
                assert response.status == 200
                assert response.headers["Content-Type"] == "application/jwk-set+json"
                assert response.headers["Cache-Control"] == "public, max-age=20"
                assert response.headers["ETag"] == documents.jwks.etag
                assert await response.read() == documents.jwks.body
            async with session.get(
                f"{url}/issuers/team-a/orders/.well-known/openid-configuration"
            ) as response:
                assert response.status == 200
                assert response.headers["Content-Type"] == "application/json"
                assert response.headers["ETag"] == documents.configuration.etag
                configuration = await response.json()
                assert configuration["issuer"] == body["spec"]["issuer"]
                assert configuration["jwks_uri"] == f"{BASE}/issuers/team-a/orders/jwks"

    asyncio.run(check())


def test_conditional_requests_and_head(tls_files: tuple[Path, Path, Path]) -> None:
    body = issuer()
    documents = rendered(body)
    jwks = "/issuers/team-a/orders/jwks"

    async def check() -> None:
        async with running(_source(body), tls_files) as (url, session, _):
            for if_none_match in (
                documents.jwks.etag,
                f"W/{documents.jwks.etag}",
                f'"x", {documents.jwks.etag}',
            ):
                async with session.get(url + jwks, headers={"If-None-Match": if_none_match}) as response:
                    assert response.status == 304
                    assert response.headers["ETag"] == documents.jwks.etag
                    assert response.headers["Cache-Control"] == "public, max-age=150"
                    assert await response.read() == b""
            async with session.get(url + jwks, headers={"If-None-Match": '"stale"'}) as response:
                assert response.status == 200
                assert await response.read() == documents.jwks.body
            async with session.head(url + jwks) as response:
                assert response.status == 200
                assert response.headers["ETag"] == documents.jwks.etag
                assert int(response.headers["Content-Length"]) == len(documents.jwks.body)
                assert await response.read() == b""
            async with session.head(url + "/nowhere") as response:
                assert response.status == 404

    asyncio.run(check())


def test_unknown_paths_and_issuers_not_opted_in_are_404(tls_files: tuple[Path, Path, Path]) -> None:
    served, hidden = issuer("orders"), issuer("billing", enabled=False)

    async def check() -> None:
        async with running(_source(served, hidden), tls_files) as (url, session, _):
            for path in (
                "/",
                "/issuers",
                "/issuers/",
                "/issuers/team-a/",
                "/issuers/team-a/orders",
                "/issuers/team-a/orders/",
                "/issuers/team-a/orders/.well-known/",
                "/issuers/team-a/billing/jwks",
                "/issuers/team-a/billing/.well-known/openid-configuration",
                "/issuers/team-b/orders/jwks",
                "/issuers/team-a/missing/jwks",
                "/.well-known/openid-configuration",
                "/issuers/team-a/orders/jwks/../../billing/jwks",
                "/metrics",
            ):
                async with session.get(url + path) as response:
                    assert response.status == 404, path
                    assert response.headers["Cache-Control"] == "no-store"

    asyncio.run(check())


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"])
def test_other_methods_are_405_with_allow(tls_files: tuple[Path, Path, Path], method: str) -> None:
    async def check() -> None:
        async with running(_source(issuer()), tls_files) as (url, session, _):
            for path in ("/issuers/team-a/orders/jwks", "/nowhere"):
                async with session.request(method, url + path) as response:
                    assert response.status == 405
                    assert response.headers["Allow"] == "GET, HEAD"

    asyncio.run(check())


def test_health_readiness_and_a_stale_cache(tls_files: tuple[Path, Path, Path]) -> None:
    source = _source(issuer(rotation={"propagation": "60s", "every": "1h"}))  # max-age 30, stale limit 30
    jwks = "/issuers/team-a/orders/jwks"

    async def status(session: aiohttp.ClientSession, url: str) -> tuple[int, int, int]:
        codes = []
        for path in ("/healthz", "/readyz", jwks):
            async with session.get(url + path) as response:
                codes.append(response.status)
        return codes[0], codes[1], codes[2]

    async def check() -> None:
        async with running(source, tls_files) as (url, session, _):
            assert await status(session, url) == (200, 200, 200)
            source.current = SourceState(listed=False, failing_for=None)
            assert await status(session, url) == (200, 503, 503)  # never a 404 before the first list
            source.current = SourceState(listed=True, failing_for=10.0, detail="boom")
            assert await status(session, url) == (200, 503, 200)  # a short failure: still served
            source.current = SourceState(listed=True, failing_for=31.0, detail="boom")
            assert await status(session, url) == (200, 503, 503)  # too stale to hand out
            async with session.get(url + "/readyz") as response:
                assert "boom" in await response.text()

    asyncio.run(check())


def test_request_limits(tls_files: tuple[Path, Path, Path]) -> None:
    async def check() -> None:
        async with running(_source(issuer()), tls_files, keepalive_timeout=0.5) as (url, session, _):
            async with session.get(url + "/healthz", headers={"X-Big": "x" * 5000}) as response:
                assert response.status in (400, 431)
            many = {f"X-H{i}": "v" for i in range(100)}
            async with session.get(url + "/healthz", headers=many) as response:
                assert response.status in (400, 431)
            # A connection that never completes its request is closed (here after 0.5 s).
            port = int(url.rsplit(":", 1)[1])
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=_client_context(tls_files[0]), server_hostname="127.0.0.1"
            )
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            await writer.drain()
            started = time.monotonic()
            assert await asyncio.wait_for(reader.read(), timeout=10) == b""
            assert time.monotonic() - started < 5
            writer.close()

    asyncio.run(check())


# --- TLS reload -----------------------------------------------------------------------------------


async def _peer_common_name(port: int) -> str:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    names = x509.load_der_x509_certificate(der).subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(names[0].value)


def _replace(path: Path, data: bytes) -> None:
    # As the kubelet does: a new file renamed into place (a new inode), never a partial write seen.
    fresh = path.with_suffix(".new")
    fresh.write_bytes(data)
    os.replace(fresh, path)


def test_a_new_certificate_is_served_to_new_handshakes(
    tls_files: tuple[Path, Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    _, cert, key = tls_files

    async def check() -> None:
        async with running(_source(issuer()), tls_files) as (url, session, reloader):
            port = int(url.rsplit(":", 1)[1])
            assert await _peer_common_name(port) == "first"
            async with session.get(url + "/healthz") as response:  # a connection, kept alive
                assert response.status == 200
            assert not reloader.check()  # unchanged files: nothing to do
            _, new_cert, new_key = certificates("second")
            _replace(key, new_key)
            _replace(cert, new_cert)
            assert reloader.check()
            assert await _peer_common_name(port) == "second"
            # The connection opened before the reload keeps working (its handshake is done).
            async with session.get(url + "/healthz") as response:
                assert response.status == 200

            # A malformed certificate, then a key that does not match: the previous pair stays.
            with caplog.at_level(logging.ERROR, logger="jwt_trust.discovery"):
                _replace(cert, b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
                assert not reloader.check()
                assert await _peer_common_name(port) == "second"
                _, third_cert, _ = certificates("third")
                _replace(cert, third_cert)  # its key never arrives
                assert not reloader.check()
                assert await _peer_common_name(port) == "second"
            assert sum("TLS reload failed" in r.getMessage() for r in caplog.records) == 2
            assert reloader.reloads == 1

    asyncio.run(check())


def test_the_reload_loop_polls_the_files(tls_files: tuple[Path, Path, Path]) -> None:
    _, cert, key = tls_files

    async def check() -> None:
        async with running(_source(issuer()), tls_files) as (url, _, reloader):
            port = int(url.rsplit(":", 1)[1])
            poller = asyncio.create_task(reloader.run(interval=0.1))
            try:
                _, new_cert, new_key = certificates("polled")
                _replace(key, new_key)
                _replace(cert, new_cert)
                deadline = time.monotonic() + 10
                while await _peer_common_name(port) != "polled":
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.1)
            finally:
                poller.cancel()

    asyncio.run(check())


# --- starting the process -------------------------------------------------------------------------


@pytest.fixture
def kubeconfig(tmp_path: Path) -> Path:
    # Never contacted: these processes stop before they talk to an API server.
    path = tmp_path / "kubeconfig"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:9"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    return path


def _run(*args: str, kubeconfig: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JWT_TRUST_DISCOVERY")}
    env["KUBECONFIG"] = str(kubeconfig)
    return subprocess.run(
        [sys.executable, "-m", "jwt_trust.kube.discovery", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def _error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]


@pytest.fixture
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_bad_tls_files_exit_2_with_one_line(
    tls_files: tuple[Path, Path, Path], kubeconfig: Path, tmp_path: Path, free_port: int
) -> None:
    _, cert, key = tls_files
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n")
    _, _, other_key = certificates("other")
    mismatched = tmp_path / "other.key"
    mismatched.write_bytes(other_key)
    common = ["--url", BASE, "--port", str(free_port), "--host", "127.0.0.1"]
    for files, expected in (
        ((tmp_path / "missing.crt", key), "TLS file not found"),
        ((garbage, key), "cannot load the TLS certificate"),
        ((cert, mismatched), "cannot load the TLS certificate"),
        ((cert, garbage), "cannot load the TLS certificate"),
    ):
        result = _run(*common, "--tls-cert", str(files[0]), "--tls-key", str(files[1]), kubeconfig=kubeconfig)
        assert result.returncode == 2, result.stderr
        lines = _error_lines(result)
        assert len(lines) == 1, lines
        assert expected in lines[0]
        assert "Traceback" not in result.stderr


def test_bad_flags_exit_2(tls_files: tuple[Path, Path, Path], kubeconfig: Path) -> None:
    _, cert, key = tls_files
    result = _run("--tls-cert", str(cert), "--tls-key", str(key), kubeconfig=kubeconfig)
    assert result.returncode == 2
    assert "--url (or JWT_TRUST_DISCOVERY_URL) is required" in result.stderr
    result = _run(
        "--url", "http://plain.example", "--tls-cert", str(cert), "--tls-key", str(key), kubeconfig=kubeconfig
    )
    assert result.returncode == 2
    assert "discovery URL" in result.stderr
    result = _run("--url", BASE, kubeconfig=kubeconfig)
    assert result.returncode == 2
    assert "--tls-cert and --tls-key are required" in result.stderr
    assert _run("--port", "many", kubeconfig=kubeconfig).returncode == 2
    assert _run("--log-level", "loud", kubeconfig=kubeconfig).returncode == 2


def test_a_port_in_use_exits_1_with_one_line(tls_files: tuple[Path, Path, Path], kubeconfig: Path) -> None:
    _, cert, key = tls_files
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _run(
            "--url", BASE, "--tls-cert", str(cert), "--tls-key", str(key),
            "--host", "127.0.0.1", "--port", str(port),
            kubeconfig=kubeconfig,
        )  # fmt: skip
    assert result.returncode == 1, result.stderr
    lines = _error_lines(result)
    assert len(lines) == 1, lines
    assert "the port is in use" in lines[0]


def test_the_command_line_runs_it_and_says_what_it_needs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["discovery", "--help"]) == 0
    assert "--tls-cert" in capsys.readouterr().out
    assert cli.main(["--help"]) == 0
    assert "discovery" in capsys.readouterr().out

    def missing(name: str) -> Any:
        raise ImportError(f"No module named {name!r}")

    monkeypatch.setattr(cli.importlib, "import_module", missing)
    assert cli.main(["discovery", "--url", BASE]) == 2
    assert "needs the operator extra: pip install jwt-trust[operator]" in capsys.readouterr().err
