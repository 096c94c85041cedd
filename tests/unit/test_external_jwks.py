"""Fetching an external issuer's JWKS is safe: verified https, same-host redirects, size and time limits.

Each test runs a real local HTTPS server (its own CA) and calls the operator's fetcher directly.
"""

from __future__ import annotations

import asyncio
import gc
import json

import aiohttp
import pytest

from jwt_trust.keys import generate_private_key, public_jwk
from jwt_trust.kube.errors import FetchError, SpecError
from jwt_trust.kube.external import fetch_jwks
from jwt_trust.kube.issuers import parse_external_jwks
from jwt_trust_testing.https import Route, serve_https

JWKS = json.dumps({"keys": [public_jwk(generate_private_key("ES256").public_key(), "ES256")]}).encode()


def _fetch(url: str, ca: str | None, *, timeout: float = 5.0, max_bytes: int = 65536) -> bytes:
    async def fetch() -> bytes:
        try:
            return await fetch_jwks(url, ca_bundle=ca, timeout=timeout, max_bytes=max_bytes)
        finally:
            # An aborted TLS connection closes on the next loop iterations; let it, before the loop ends.
            await asyncio.sleep(0.1)

    return asyncio.run(fetch())


def test_fetches_a_jwks_over_https_verified_with_the_given_ca_bundle() -> None:
    with serve_https({"/jwks": Route(body=JWKS)}) as server:
        body = _fetch(f"{server.base_url}/jwks", server.ca_pem)
    assert parse_external_jwks(body).keys[0]["kid"]


def test_refuses_a_server_whose_certificate_the_bundle_does_not_trust() -> None:
    with (
        serve_https({"/jwks": Route(body=JWKS)}) as server,
        pytest.raises(FetchError, match="CERTIFICATE_VERIFY_FAILED") as raised,
    ):
        _fetch(f"{server.base_url}/jwks", None)
    assert isinstance(raised.value.__cause__, aiohttp.ClientConnectorCertificateError)


def test_refuses_plain_http() -> None:
    with pytest.raises(FetchError, match="non-https"):
        _fetch("http://127.0.0.1:1/jwks", None)


def test_follows_a_redirect_on_the_same_host() -> None:
    with serve_https(
        {"/old": Route(status=301, headers={"Location": "/jwks"}), "/jwks": Route(body=JWKS)}
    ) as server:
        assert _fetch(f"{server.base_url}/old", server.ca_pem) == JWKS


def test_refuses_a_redirect_to_another_host() -> None:
    with serve_https({}) as server:
        port = server.base_url.rsplit(":", 1)[1]
        server.routes["/jwks"] = Route(status=302, headers={"Location": f"https://localhost:{port}/jwks"})
        with pytest.raises(FetchError, match="another host"):
            _fetch(f"{server.base_url}/jwks", server.ca_pem)


def test_refuses_a_redirect_to_plain_http() -> None:
    routes = {"/jwks": Route(status=307, headers={"Location": "http://127.0.0.1/jwks"})}
    with serve_https(routes) as server, pytest.raises(FetchError, match="non-https"):
        _fetch(f"{server.base_url}/jwks", server.ca_pem)


def test_refuses_endless_redirects() -> None:
    with serve_https({"/loop": Route(status=302, headers={"Location": "/loop"})}) as server:
        with pytest.raises(FetchError, match="redirects"):
            _fetch(f"{server.base_url}/loop", server.ca_pem)
        assert server.hits["/loop"] == 4


def test_refuses_a_response_larger_than_the_limit() -> None:
    with serve_https({"/big": Route(body=b"x" * 5000)}) as server, pytest.raises(FetchError, match="limit"):
        _fetch(f"{server.base_url}/big", server.ca_pem, max_bytes=4096)


# On Python 3.11 asyncio leaves a TLS transport cancelled mid-read for the garbage collector, which
# warns about it; the fetch itself did time out, which is what this test checks.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_gives_up_on_a_server_slower_than_the_timeout() -> None:
    with serve_https({"/slow": Route(body=JWKS, delay=2.0)}) as server:
        with pytest.raises(FetchError, match="TimeoutError") as raised:
            _fetch(f"{server.base_url}/slow", server.ca_pem, timeout=0.5)
        assert isinstance(raised.value.__cause__, TimeoutError)
        gc.collect()  # let the warning about the abandoned transport fire here, where it is filtered


def test_reports_an_error_status() -> None:
    with serve_https({"/jwks": Route(status=503)}) as server, pytest.raises(FetchError, match="HTTP 503"):
        _fetch(f"{server.base_url}/jwks", server.ca_pem)


def test_a_fetched_set_with_a_private_key_is_refused_whole() -> None:
    private = {"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA", "d": "AA"}]}
    with pytest.raises(SpecError, match="private"):
        parse_external_jwks(json.dumps(private).encode())
