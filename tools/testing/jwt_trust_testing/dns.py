"""A cluster DNS for the local node: Service names answered from the API, on the pod bridge.

Why: every real cluster resolves ``<service>.<namespace>.svc.cluster.local`` in pods, and programs
depend on it (kopf's in-cluster login connects to ``https://kubernetes.default.svc``). The node's kubelet
names this responder as its ``clusterDNS``, so pods get it in their resolv.conf with the usual search
domains and ``ndots:5``.

What it answers (UDP, port 53 on the bridge's gateway address): ``A`` for the ClusterIP of a Service
named ``<service>.<namespace>.svc.<cluster domain>``; an empty answer for other record types of such a
name; NXDOMAIN for anything else (pods here have no route to the outside world, so there is nothing to
forward to). Services are listed from the API when an unknown name is asked, at most twice a second, and
kept for a second. Standard library only: a thread in the process that started the node.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
import time
import urllib.request

from .cluster import ControlPlane

__all__ = ["ClusterDNS"]

_TYPE_A = 1
_NXDOMAIN = 3
_FORMERR = 1


class ClusterDNS:
    """Serves until :meth:`stop`; :meth:`start` binds ``address:port`` (raises OSError if taken)."""

    def __init__(self, plane: ControlPlane, address: str, domain: str = "cluster.local", port: int = 53):
        self.plane = plane
        self.address = address
        self.port = port
        self.suffix = f".svc.{domain}."
        self.queries = 0
        self._services: dict[str, str] = {}
        self._listed_at = 0.0
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((self.address, self.port))
        sock.settimeout(0.2)
        self._socket = sock
        self._thread = threading.Thread(target=self._serve, name="cluster-dns", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        sock, self._socket = self._socket, None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if sock is not None:
            sock.close()

    def _serve(self) -> None:
        while (sock := self._socket) is not None:
            try:
                query, peer = sock.recvfrom(512)
            except (TimeoutError, OSError):
                continue
            self.queries += 1
            with contextlib.suppress(Exception):  # a malformed query gets no answer, as from any server
                sock.sendto(self.answer(query), peer)

    def _list(self) -> None:
        if time.monotonic() - self._listed_at < 0.5:
            return
        self._listed_at = time.monotonic()
        request = urllib.request.Request(f"{self.plane.server}/api/v1/services")  # noqa: S310
        with urllib.request.urlopen(request, context=self.plane.admin_ssl_context(), timeout=5) as response:  # noqa: S310
            items = json.loads(response.read())["items"]
        self._services = {
            f"{s['metadata']['name']}.{s['metadata']['namespace']}": s["spec"]["clusterIP"]
            for s in items
            if s["spec"].get("clusterIP") not in (None, "", "None")
        }

    def resolve(self, name: str) -> str | None:
        """The ClusterIP for a fully qualified Service name (trailing dot), else None."""
        if not name.endswith(self.suffix):
            return None
        key = name[: -len(self.suffix)]
        if key not in self._services or time.monotonic() - self._listed_at > 1.0:
            self._list()
        return self._services.get(key)

    def answer(self, query: bytes) -> bytes:
        (ident, flags, qdcount) = struct.unpack("!HHH", query[:6])
        if qdcount != 1:
            return struct.pack("!HHHHHH", ident, 0x8000 | _FORMERR, 0, 0, 0, 0)
        labels, offset = [], 12
        while query[offset]:
            length = query[offset]
            labels.append(query[offset + 1 : offset + 1 + length].decode("ascii").lower())
            offset += 1 + length
        qtype, _qclass = struct.unpack("!HH", query[offset + 1 : offset + 5])
        question = query[12 : offset + 5]
        name = ".".join(labels) + "."
        address = self.resolve(name)
        recursion = flags & 0x0100
        if address is None:
            return struct.pack("!HHHHHH", ident, 0x8400 | recursion | _NXDOMAIN, 1, 0, 0, 0) + question
        answers = b""
        if qtype == _TYPE_A:
            answers = struct.pack("!HHHIH", 0xC00C, _TYPE_A, 1, 5, 4) + socket.inet_aton(address)
        count = 1 if answers else 0
        return struct.pack("!HHHHHH", ident, 0x8400 | recursion, 1, count, 0, 0) + question + answers
