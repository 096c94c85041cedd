"""Fetching an external issuer's JWK Set: https only, verified TLS, bounded in time and size.

Redirects are followed only to https on the same host (a JWKS endpoint that redirects elsewhere could
hand us someone else's keys). The caller keeps the last good copy when this raises.
"""

from __future__ import annotations

import ssl
from urllib.parse import urlsplit

import aiohttp
import yarl

from .errors import FetchError


async def fetch_jwks(
    url: str,
    *,
    ca_bundle: str | None,
    timeout: float,
    max_bytes: int,
    max_redirects: int = 3,
    server_hostname: str | None = None,
) -> bytes:
    """GET an https JWKS with certificate verification, a time and size limit, same-host redirects only.

    ``server_hostname``: the name the certificate must carry when ``url`` names the server by address
    (a replica of a Service, reached at its endpoint). Every way it can fail (refused URL, network,
    TLS, timeout, status, size) raises FetchError.
    """
    try:
        return await _fetch(
            url,
            ca_bundle=ca_bundle,
            timeout=timeout,
            max_bytes=max_bytes,
            max_redirects=max_redirects,
            server_hostname=server_hostname,
        )
    except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as error:
        raise FetchError(f"{type(error).__name__}: {error}") from error


async def _fetch(
    url: str,
    *,
    ca_bundle: str | None,
    timeout: float,
    max_bytes: int,
    max_redirects: int,
    server_hostname: str | None,
) -> bytes:
    context = ssl.create_default_context(cadata=ca_bundle) if ca_bundle else ssl.create_default_context()
    origin = urlsplit(url)
    connector = aiohttp.TCPConnector(ssl=context, force_close=True)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)
    ) as session:
        for _ in range(max_redirects + 1):
            parts = urlsplit(url)
            if parts.scheme != "https":
                raise FetchError(f"refusing non-https URL {url}")
            if parts.hostname != origin.hostname:
                raise FetchError(f"refusing redirect to another host ({parts.hostname})")
            async with session.get(
                url, ssl=context, allow_redirects=False, server_hostname=server_hostname
            ) as response:
                if response.status in (301, 302, 303, 307, 308):
                    location = response.headers.get("Location", "")
                    url = str(response.url.join(yarl.URL(location)))
                    continue
                if response.status != 200:
                    raise FetchError(f"HTTP {response.status} from {parts.hostname}")
                if (response.content_length or 0) > max_bytes:
                    raise FetchError(
                        f"response of {response.content_length} bytes exceeds the limit of {max_bytes}"
                    )
                body = await response.content.read(max_bytes + 1)
                if len(body) > max_bytes:
                    raise FetchError(f"response exceeds the limit of {max_bytes} bytes")
                return body
        raise FetchError(f"more than {max_redirects} redirects")
