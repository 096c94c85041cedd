"""The discovery service: each opted-in Issuer's JWKS and OpenID metadata over HTTPS, for clients that
fetch keys by URL instead of mounting a projected ConfigMap.

Run as ``jwt-trust discovery --url https://... --tls-cert tls.crt --tls-key tls.key`` (or ``python -m
jwt_trust.kube.discovery``). Stateless: it lists and watches Issuers in every namespace (read-only:
``get``/``list``/``watch`` on ``issuers``), renders the documents of each Issuer whose
``spec.discovery.enabled`` is true once per change (:mod:`.discovery_documents`), and serves them from
memory. Any number of replicas can run side by side.

Paths (GET and HEAD; anything else 405, any other path 404):

* ``/issuers/{namespace}/{name}/jwks`` and ``/issuers/{namespace}/{name}/.well-known/openid-configuration``:
  strong ETag, ``If-None-Match`` answered 304, ``Cache-Control: public, max-age=N`` (N from the
  Issuer's propagation); 404 for an Issuer that does not exist or does not opt in; 503 before the
  first complete list, and when the cache has been failing for longer than the Issuer's
  ``stale_limit`` (a stale copy is refused rather than passed on for clients to cache).
* ``/healthz``: the process serves. ``/readyz``: the Issuer cache listed completely and is not failing.

Both on the one TLS port. The certificate and key are read from files (a mounted ``kubernetes.io/tls``
Secret, as cert-manager writes it) and re-read when they change (:class:`CertificateReloader`).

Exit codes: 0 after SIGTERM/SIGINT, 2 for bad flags, URL or TLS files, 1 when it cannot run at all (no
credentials, the port in use); each with one log line saying why. Nothing is served before the TLS
files load and the port is bound.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import functools
import logging
import os
import signal
import ssl
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import kopf
from aiohttp import web
from multidict import CIMultiDict

from .api import KubeAPI, Ref
from .discovery_documents import (
    CONFIGURATION_PATH,
    Document,
    IssuerDocuments,
    etag_matches,
    normalise_base_url,
    parse_path,
    render_documents,
)
from .informers import Informer

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_PORT = 8443
TLS_RELOAD_SECONDS = 5.0
# Bounds on what a client may send or hold: a GET carries no body, headers are small.
MAX_REQUEST_BYTES = 4096  # client_max_size: a body larger than this is refused (413)
MAX_HEADER_LINE = 4096
MAX_HEADERS = 64
KEEPALIVE_SECONDS = 15.0  # an idle connection (also one that never sends a whole request) is closed
TLS_HANDSHAKE_SECONDS = 10.0
SHUTDOWN_SECONDS = 5.0
MAX_CACHED_PATHS = 4096
ISSUERS = Ref("jwt-trust.dev/v1alpha1", "issuers")
ALLOW = "GET, HEAD"

log = logging.getLogger("jwt_trust.discovery")


class StartupError(Exception):
    """The service cannot start as configured; ``code`` is the exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


# --- what is served -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceState:
    listed: bool  # the cache has been listed completely at least once
    failing_for: float | None  # seconds the cache has been failing without a break, None when healthy
    detail: str = ""


class Source(Protocol):
    """Where the handler reads Issuers' documents: the informer in the service, a dict in tests."""

    def documents(self, namespace: str, name: str) -> IssuerDocuments | None: ...

    def state(self) -> SourceState: ...


class StaticSource:
    """A fixed set of documents (tests, benchmarks)."""

    def __init__(self, documents: Mapping[tuple[str, str], IssuerDocuments]) -> None:
        self.by_key = dict(documents)
        self.current = SourceState(listed=True, failing_for=None)

    def documents(self, namespace: str, name: str) -> IssuerDocuments | None:
        return self.by_key.get((namespace, name))

    def state(self) -> SourceState:
        return self.current


class InformerSource:
    """The Issuer informer's cache, each Issuer summarised into its rendered documents (or None)."""

    def __init__(self, informer: Informer[IssuerDocuments | None]) -> None:
        self.informer = informer
        self.listed_once = False

    def documents(self, namespace: str, name: str) -> IssuerDocuments | None:
        return self.informer.objects.get((namespace, name))

    def state(self) -> SourceState:
        if self.informer.synced.is_set():
            self.listed_once = True
        since = self.informer.failing_since
        failing_for = None if since is None else time.monotonic() - since
        return SourceState(self.listed_once, failing_for, self.informer.last_error if since else "")


def summarise(base_url: str) -> Callable[[dict[str, Any]], IssuerDocuments | None]:
    def render(obj: dict[str, Any]) -> IssuerDocuments | None:
        try:
            return render_documents(obj, base_url, int(time.time()))
        except Exception:  # one odd Issuer must not stop the cache of all the others
            meta = obj.get("metadata") or {}
            log.exception(
                "cannot render Issuer %s/%s; not serving it", meta.get("namespace"), meta.get("name")
            )
            return None

    return render


# --- HTTP -----------------------------------------------------------------------------------------

_NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def _plain(status: int, text: str, **headers: str) -> web.Response:
    return web.Response(
        status=status, text=text + "\n", content_type="text/plain", headers={**_NO_STORE, **headers}
    )


def make_handler(source: Source) -> Callable[[web.Request], Any]:
    # Per request the work is two dict lookups and a copy of prebuilt headers: a path's parse and a
    # document's headers are computed once (both caches bounded: paths come from clients).
    parse = functools.lru_cache(maxsize=MAX_CACHED_PATHS)(parse_path)
    prebuilt: dict[tuple[Document, int], tuple[CIMultiDict[str], CIMultiDict[str]]] = {}

    def headers_of(served: Document, max_age: int) -> tuple[CIMultiDict[str], CIMultiDict[str]]:
        found = prebuilt.get((served, max_age))
        if found is None:
            if len(prebuilt) > 4 * MAX_CACHED_PATHS:
                prebuilt.clear()
            common = CIMultiDict(
                {
                    "ETag": served.etag,
                    "Cache-Control": f"public, max-age={max_age}",
                    "X-Content-Type-Options": "nosniff",
                }
            )
            full = common.copy()
            full["Content-Type"] = served.content_type
            found = prebuilt[(served, max_age)] = (full, common)
        return found

    async def handle(request: web.Request) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD"):
            return _plain(405, "method not allowed", Allow=ALLOW)
        path = request.path
        parsed = parse(path)
        if parsed is None:
            if path == "/healthz":
                return _plain(200, "ok")
            if path == "/readyz":
                return _readiness(source.state())
            return _plain(404, "not found")
        namespace, name, kind = parsed
        state = source.state()
        if not state.listed:
            return _plain(503, "Issuers not listed yet", **{"Retry-After": "5"})
        documents = source.documents(namespace, name)
        if documents is None:
            return _plain(404, "not found")
        if state.failing_for is not None and state.failing_for > documents.stale_limit:
            return _plain(503, "the Issuer cache is stale", **{"Retry-After": "5"})
        served = documents.configuration if kind == CONFIGURATION_PATH else documents.jwks
        full, common = headers_of(served, documents.max_age)
        if_none_match = request.headers.get("If-None-Match")
        if if_none_match and etag_matches(if_none_match, served.etag):
            return web.Response(status=304, headers=common.copy())
        return web.Response(body=served.body, headers=full.copy())

    return handle


def _readiness(state: SourceState) -> web.Response:
    if not state.listed:
        return _plain(503, "not ready: Issuers not listed yet")
    if state.failing_for is not None:
        return _plain(503, f"not ready: the Issuer watch is failing ({state.detail})")
    return _plain(200, "ok")


def make_app(source: Source) -> web.Application:
    app = web.Application(client_max_size=MAX_REQUEST_BYTES)
    app.router.add_route("*", "/{path:.*}", make_handler(source))
    return app


HANDLER_LIMITS: dict[str, Any] = {
    "max_line_size": MAX_HEADER_LINE,
    "max_field_size": MAX_HEADER_LINE,
    "max_headers": MAX_HEADERS,
    "keepalive_timeout": KEEPALIVE_SECONDS,
    "access_log": None,
}


# --- TLS ------------------------------------------------------------------------------------------


def _tls_context() -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    return context


class CertificateReloader:
    """The server's TLS context, following a certificate/key file pair as it changes.

    The context the server listens with (:attr:`context`) hands every handshake to the context of
    the last pair that loaded (its SNI callback runs for every ClientHello, with or without SNI), so a
    reload is atomic: a new pair is loaded into a fresh context, and only when the whole pair loads
    does it become the one new handshakes use. A pair that does not load (a half-written file, a key
    that does not match) is logged once and the previous one stays. Files are compared by modification
    time, inode and size every few seconds, which sees the kubelet's atomic swap of a mounted Secret.
    """

    def __init__(self, cert_path: str, key_path: str) -> None:
        self.cert_path, self.key_path = cert_path, key_path
        self.current = self._load()  # raises StartupError
        self._seen = self._signature()
        self.context = _tls_context()
        self.context.load_cert_chain(cert_path, key_path)  # the same pair, for clients without a callback
        self.context.sni_callback = self._select
        self.reloads = 0

    def _select(self, connection: ssl.SSLObject, _name: str | None, _context: ssl.SSLContext) -> None:
        connection.context = self.current

    def _signature(self) -> tuple[tuple[int, int, int], ...] | None:
        try:
            return tuple(
                (s.st_mtime_ns, s.st_ino, s.st_size) for s in map(os.stat, (self.cert_path, self.key_path))
            )
        except OSError:
            return None

    def _load(self) -> ssl.SSLContext:
        context = _tls_context()
        try:
            context.load_cert_chain(self.cert_path, self.key_path)
        except FileNotFoundError as error:
            raise StartupError(f"TLS file not found: {error.filename}", EXIT_USAGE) from None
        except (ssl.SSLError, OSError) as error:
            raise StartupError(
                f"cannot load the TLS certificate {self.cert_path} and key {self.key_path}: {error}",
                EXIT_USAGE,
            ) from None
        return context

    def check(self) -> bool:
        """Reload when the files changed; True when a new pair is now served."""
        signature = self._signature()
        if signature is None or signature == self._seen:
            return False
        self._seen = signature
        try:
            self.current = self._load()
        except StartupError as error:
            log.error("TLS reload failed, still serving the previous certificate: %s", error)
            return False
        self.reloads += 1
        log.info("TLS certificate reloaded from %s", self.cert_path)
        return True

    async def run(self, interval: float = TLS_RELOAD_SECONDS) -> None:
        while True:
            await asyncio.sleep(interval)
            self.check()


# --- the server -----------------------------------------------------------------------------------


class Server:
    """The HTTPS listener over a :class:`Source`: :meth:`start` binds (or raises StartupError)."""

    def __init__(
        self,
        source: Source,
        tls: CertificateReloader,
        *,
        host: str | None = None,
        port: int = DEFAULT_PORT,
        handler_limits: Mapping[str, Any] | None = None,
    ) -> None:
        self.source, self.tls, self.host, self.port = source, tls, host, port
        self.runner = web.AppRunner(
            make_app(source), handle_signals=False, **(handler_limits or HANDLER_LIMITS)
        )
        self._server: asyncio.Server | None = None

    @property
    def bound_port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        await self.runner.setup()
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(
                self.runner.server,  # type: ignore[arg-type]
                host=self.host or None,
                port=self.port,
                ssl=self.tls.context,
                ssl_handshake_timeout=TLS_HANDSHAKE_SECONDS,
                backlog=1024,
                reuse_address=True,
            )
        except OSError as error:
            await self.runner.cleanup()
            where = f"{self.host or '*'}:{self.port}"
            if error.errno == errno.EADDRINUSE:
                raise StartupError(f"cannot listen on {where}: the port is in use", EXIT_FAILED) from None
            raise StartupError(f"cannot listen on {where}: {error.strerror or error}", EXIT_FAILED) from None

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        if self.runner.server is not None:
            await self.runner.server.shutdown(SHUTDOWN_SECONDS)
        await self.runner.cleanup()


# --- the process ----------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    env = os.environ.get
    result = argparse.ArgumentParser(
        prog="jwt-trust discovery",
        description="Serve opted-in Issuers' JWKS and OpenID metadata over HTTPS (reads Issuers, read-only).",
    )
    result.add_argument(
        "--url",
        default=env("JWT_TRUST_DISCOVERY_URL"),
        help="the external base URL clients use, https (env JWT_TRUST_DISCOVERY_URL); required",
    )
    result.add_argument(
        "--tls-cert", default=env("JWT_TRUST_DISCOVERY_TLS_CERT"), help="PEM certificate chain"
    )
    result.add_argument("--tls-key", default=env("JWT_TRUST_DISCOVERY_TLS_KEY"), help="PEM private key")
    result.add_argument("--port", type=int, default=int(env("JWT_TRUST_DISCOVERY_PORT", str(DEFAULT_PORT))))
    result.add_argument(
        "--host", default=env("JWT_TRUST_DISCOVERY_HOST", ""), help="default: every interface"
    )
    result.add_argument(
        "--tls-reload-interval", type=float, default=TLS_RELOAD_SECONDS, help="seconds between file checks"
    )
    result.add_argument("--kubeconfig", help="default: the in-cluster ServiceAccount, then $KUBECONFIG")
    result.add_argument(
        "--log-level",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        default=env("JWT_TRUST_LOG_LEVEL", "INFO").upper(),
    )
    return result


def _login(kubeconfig: str | None) -> Callable[[], Any]:
    settings = kopf.OperatorSettings()

    async def login() -> kopf.ConnectionInfo:
        # Read afresh on every call: a rotated ServiceAccount token is picked up after a 401.
        info = None
        if kubeconfig is None:
            info = kopf.login_with_service_account(settings=settings, logger=log)
        info = info or kopf.login_with_kubeconfig(settings=settings, logger=log)
        if info is None:
            raise kopf.LoginError("no in-cluster ServiceAccount and no kubeconfig found")
        return info

    return login


async def serve(args: argparse.Namespace, stop: asyncio.Event) -> None:
    """Run until ``stop`` is set; raises StartupError when it cannot start."""
    if not args.url:
        raise StartupError("--url (or JWT_TRUST_DISCOVERY_URL) is required", EXIT_USAGE)
    try:
        base_url = normalise_base_url(args.url)
    except ValueError as error:
        raise StartupError(str(error), EXIT_USAGE) from None
    if not args.tls_cert or not args.tls_key:
        raise StartupError("--tls-cert and --tls-key are required", EXIT_USAGE)
    tls = CertificateReloader(args.tls_cert, args.tls_key)
    if args.kubeconfig:
        os.environ["KUBECONFIG"] = args.kubeconfig
    api = KubeAPI(_login(args.kubeconfig))
    try:
        await api.open()
    except Exception as error:
        raise StartupError(f"cannot log in to the API server: {error}", EXIT_FAILED) from None
    informer: Informer[IssuerDocuments | None] = Informer(api, ISSUERS, summarise(base_url))
    server = Server(InformerSource(informer), tls, host=args.host, port=args.port)
    tasks: list[asyncio.Task[None]] = []
    try:
        await server.start()
        tasks = [asyncio.create_task(informer.run()), asyncio.create_task(tls.run(args.tls_reload_interval))]
        log.info("jwt-trust discovery serving %s on port %d", base_url, server.bound_port)
        await stop.wait()
        log.info("stopping")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.stop()
        await api.close()


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
    except SystemExit as exit_:
        return EXIT_USAGE if exit_.code else EXIT_OK
    if not logging.getLogger().handlers:
        logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await serve(args, stop)

    try:
        asyncio.run(run())
    except StartupError as error:
        log.error("jwt-trust discovery cannot start: %s", error)
        return error.code
    return EXIT_OK


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
