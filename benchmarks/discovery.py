"""How fast the discovery service serves JWKS, next to a minimal aiohttp server returning the same bytes.

100 opted-in Issuers (two ES256 keys each) are rendered once; then each contender runs as its own
process on loopback with TLS (the same certificate, TLS 1.3) and the same client load hits it:

* ``ours``: the discovery service's own server and handler (``jwt_trust.kube.discovery.Server`` over
  a :class:`StaticSource`, the in-memory stand-in for the Issuer cache): path parsing, the Issuer
  lookup, the staleness check, ETag and Cache-Control headers;
* ``minimal``: an aiohttp application with one catch-all route returning the bytes of the path from a
  dict: the floor any aiohttp server pays (TLS, HTTP parsing, the response);
* ``nginx`` (context only, when installed): the same documents as static files over TLS, one worker.

The load generator is one asyncio process with N keep-alive connections (default 16), each sending
GET requests for the 100 JWKS paths in turn over raw streams (HTTP/1.1, no client library in the
way), for a fixed time per round; rounds alternate between contenders (ours, minimal, nginx, ours, ...)
so that a noisy neighbour hurts all of them alike. Reported: requests/s and p99 latency (the median of
the rounds), and ours / minimal.

Run: ``python benchmarks/discovery.py`` (about a minute); ``--seconds``, ``--rounds``,
``--connections`` to change the load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ISSUERS = 100
BASE = "https://discovery.bench:8443"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_fixture(workdir: Path) -> list[str]:
    """Render the Issuers' documents into ``workdir`` (JSON for the servers, files for nginx) and
    write the TLS pair; return the JWKS paths."""
    from jwt_trust.keys import generate_private_key, public_jwk
    from jwt_trust.kube.discovery_documents import render_documents
    from jwt_trust_testing.https import certificates

    _, cert, key = certificates("bench")
    (workdir / "tls.crt").write_bytes(cert)
    (workdir / "tls.key").write_bytes(key)
    issuers = []
    paths = []
    for index in range(ISSUERS):
        namespace, name = f"team-{index % 10}", f"issuer-{index}"
        keys = [public_jwk(generate_private_key("ES256"), "ES256") for _ in range(2)]
        body = {
            "metadata": {"namespace": namespace, "name": name},
            "spec": {"issuer": f"https://{name}.example", "discovery": {"enabled": True}},
            "status": {"keys": [{"kid": k["kid"], "state": "active", "publicKey": k} for k in keys]},
        }
        documents = render_documents(body, BASE, int(time.time()))
        assert documents is not None
        issuers.append(body)
        path = f"/issuers/{namespace}/{name}/jwks"
        paths.append(path)
        target = workdir / "www" / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(documents.jwks.body)
    (workdir / "issuers.json").write_text(json.dumps(issuers))
    return paths


# --- the servers (each in its own process) ---------------------------------------------------------


def _tls(workdir: Path) -> ssl.SSLContext:
    from jwt_trust.kube.discovery import CertificateReloader

    return CertificateReloader(str(workdir / "tls.crt"), str(workdir / "tls.key")).context


async def _serve_ours(workdir: Path, port: int) -> None:
    from jwt_trust.kube.discovery import CertificateReloader, Server, StaticSource
    from jwt_trust.kube.discovery_documents import render_documents

    documents = {}
    for body in json.loads((workdir / "issuers.json").read_text()):
        rendered = render_documents(body, BASE, int(time.time()))
        assert rendered is not None
        documents[tuple(rendered.ref.split("/"))] = rendered
    tls = CertificateReloader(str(workdir / "tls.crt"), str(workdir / "tls.key"))
    server = Server(StaticSource(documents), tls, host="127.0.0.1", port=port)  # type: ignore[arg-type]
    await server.start()
    print("ready", flush=True)
    await asyncio.Event().wait()


async def _serve_minimal(workdir: Path, port: int) -> None:
    from aiohttp import web

    files = {
        "/" + str(path.relative_to(workdir / "www")): path.read_bytes()
        for path in (workdir / "www").rglob("jwks")
    }

    async def handle(request: web.Request) -> web.Response:
        return web.Response(body=files[request.path], content_type="application/jwk-set+json")

    app = web.Application()
    app.router.add_route("GET", "/{path:.*}", handle)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=_tls(workdir)).start()
    print("ready", flush=True)
    await asyncio.Event().wait()


def _nginx_conf(workdir: Path, port: int) -> Path:
    conf = workdir / "nginx.conf"
    conf.write_text(
        f"""
worker_processes 1;
user root;
pid {workdir}/nginx.pid;
error_log {workdir}/nginx-error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  default_type application/jwk-set+json;
  keepalive_requests 100000000;
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {workdir}/tls.crt;
    ssl_certificate_key {workdir}/tls.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / {{ root {workdir}/www; }}
  }}
}}
"""
    )
    return conf


class Contender:
    def __init__(self, name: str, argv: list[str], port: int) -> None:
        self.name, self.argv, self.port = name, argv, port
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.argv, stdout=subprocess.PIPE, text=True, start_new_session=True, env=os.environ.copy()
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}")
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)


# --- the load --------------------------------------------------------------------------------------


async def _connection(
    port: int, paths: list[str], offset: int, until: float, latencies: list[float], *, context: ssl.SSLContext
) -> int:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname="127.0.0.1"
    )
    requests = [f"GET {p} HTTP/1.1\r\nHost: discovery.bench\r\n\r\n".encode() for p in paths]
    done = 0
    index = offset
    clock = time.perf_counter
    while clock() < until:
        started = clock()
        writer.write(requests[index % len(requests)])
        index += 1
        head = await reader.readuntil(b"\r\n\r\n")
        status = head[9:12]
        at = head.lower().find(b"\r\ncontent-length:") + 17
        length = int(head[at : head.index(b"\r\n", at)])
        body = await reader.readexactly(length)
        if status != b"200" or not body:
            raise RuntimeError(f"unexpected answer {head[:40]!r}")
        latencies.append(clock() - started)
        done += 1
    writer.close()
    return done


async def _load(port: int, paths: list[str], connections: int, seconds: float) -> tuple[float, float]:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    latencies: list[float] = []
    # Warm up (connections, handshakes, caches), then measure.
    await asyncio.gather(
        *(
            _connection(port, paths, i * 7, time.perf_counter() + 0.5, [], context=context)
            for i in range(connections)
        )
    )
    started = time.perf_counter()
    until = started + seconds
    counts = await asyncio.gather(
        *(_connection(port, paths, i * 7, until, latencies, context=context) for i in range(connections))
    )
    elapsed = time.perf_counter() - started
    latencies.sort()
    return sum(counts) / elapsed, latencies[int(len(latencies) * 0.99)] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=4.0, help="per round and contender")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--serve", choices=["ours", "minimal"], help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve = _serve_ours if args.serve == "ours" else _serve_minimal
        asyncio.run(serve(args.workdir, args.port))
        return

    with tempfile.TemporaryDirectory(prefix="jwt-trust-discovery-bench-") as tmp:
        workdir = Path(tmp)
        workdir.chmod(0o755)
        paths = write_fixture(workdir)
        contenders = []
        for name in ("ours", "minimal"):
            port = _free_port()
            argv = [sys.executable, __file__, "--serve", name, "--workdir", str(workdir), "--port", str(port)]
            contenders.append(Contender(name, argv, port))
        nginx = shutil.which("nginx")
        if nginx:
            port = _free_port()
            conf = _nginx_conf(workdir, port)
            contenders.append(Contender("nginx", [nginx, "-c", str(conf), "-g", "daemon off;"], port))
        results: dict[str, list[tuple[float, float]]] = {c.name: [] for c in contenders}
        try:
            for contender in contenders:
                contender.start()
            for round_ in range(args.rounds):
                for contender in contenders if round_ % 2 == 0 else reversed(contenders):
                    results[contender.name].append(
                        asyncio.run(_load(contender.port, paths, args.connections, args.seconds))
                    )
        finally:
            for contender in contenders:
                contender.stop()

    print(
        f"JWKS of {ISSUERS} issuers over TLS, {args.connections} keep-alive connections, "
        f"{args.rounds} rounds of {args.seconds:.0f}s (median of rounds)"
    )
    median = {
        name: (statistics.median(r[0] for r in rounds), statistics.median(r[1] for r in rounds))
        for name, rounds in results.items()
    }
    for name, (rate, p99) in median.items():
        print(f"  {name:8s} {rate:9.0f} requests/s   p99 {p99:6.2f} ms")
    ratios = [ours[0] / minimal[0] for ours, minimal in zip(results["ours"], results["minimal"], strict=True)]
    print(f"  ours / minimal: {statistics.median(ratios):.2f}x requests/s (median of per-round ratios)")
    if not nginx:
        print("  (nginx not installed: apt-get install nginx for its figure)")


if __name__ == "__main__":
    main()
