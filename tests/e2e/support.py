"""Helpers of the operator's end-to-end tests: kubectl in JSON, polling, and object builders."""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from jwt_trust.errors import InvalidToken, NoActiveKey
from jwt_trust.projection import parse_trust_files
from jwt_trust.signer import Signer
from jwt_trust.verifier import TrustStore
from jwt_trust_testing.cluster import ControlPlane
from jwt_trust_testing.operator import chart_rbac

T = TypeVar("T")


# The session's operator manages Istio RequestAuthentications, as the chart's consumers.istio.enabled
# sets it up: the chart's RBAC for them, and the environment variable the chart gives the operator.
OPERATOR_VALUES: dict[str, Any] = {"consumers": {"istio": {"enabled": True}}}
OPERATOR_ENV = {"JWT_TRUST_CONSUMERS": "istio"}


def operator_rbac(plane: ControlPlane) -> str:
    """The ServiceAccount and RBAC objects exactly as the Helm chart renders them."""
    return chart_rbac(plane, values=OPERATOR_VALUES)


def wait_for(
    check: Callable[[], T | None], *, timeout: float = 30.0, interval: float = 0.2, what: str = ""
) -> T:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what or check!r} (last: {last!r})")


class Kube:
    """Small conveniences over the control plane's kubectl, all JSON."""

    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane

    def apply(self, *objects: dict[str, Any]) -> None:
        self.plane.kubectl(
            "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)})
        )

    def try_apply(self, obj: dict[str, Any]) -> tuple[int, str]:
        result = self.plane.kubectl("apply", "-f", "-", input=json.dumps(obj), check=False)
        return result.returncode, result.stderr

    def get(self, *args: str) -> dict[str, Any] | None:
        result = self.plane.kubectl("get", *args, "-o", "json", check=False)
        if result.returncode != 0:
            if "NotFound" in result.stderr or "not found" in result.stderr:
                return None
            raise AssertionError(result.stderr)
        document: dict[str, Any] = json.loads(result.stdout)
        return document

    def configmap(self, namespace: str, name: str) -> dict[str, bytes] | None:
        obj = self.get("configmap", name, "-n", namespace)
        return None if obj is None else {k: v.encode() for k, v in (obj.get("data") or {}).items()}

    def secret(self, namespace: str, name: str) -> dict[str, bytes] | None:
        obj = self.get("secret", name, "-n", namespace)
        return None if obj is None else {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}

    def condition(self, *args: str) -> dict[str, Any] | None:
        obj = self.get(*args)
        conditions = ((obj or {}).get("status") or {}).get("conditions") or []
        return next((c for c in conditions if c.get("type") == "Ready"), None)

    def events(self, namespace: str, name: str) -> list[dict[str, Any]]:
        listing = self.get("events", "-n", namespace, "--field-selector", f"involvedObject.name={name}") or {}
        return list(listing.get("items") or [])

    def namespace(self, labels: dict[str, str] | None = None) -> str:
        name = f"e2e-{uuid.uuid4().hex[:10]}"
        self.apply(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels or {}}}
        )
        return name


def issuer(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"issuer": f"https://{name}.{namespace}.example"}
    body.update(spec)
    return {
        "apiVersion": "jwt-trust.dev/v1alpha1",
        "kind": "Issuer",
        "metadata": {"name": name, "namespace": namespace},
        "spec": body,
    }


def policy(name: str, issuers: list[tuple[str, str]], labels: dict[str, str], **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "issuers": [{"namespace": ns, "name": n} for ns, n in issuers],
        "namespaceSelector": {"matchLabels": labels},
    }
    body.update(spec)
    return {
        "apiVersion": "jwt-trust.dev/v1alpha1",
        "kind": "TrustPolicy",
        "metadata": {"name": name},
        "spec": body,
    }


class TCPRelay:
    """A TCP relay in front of the API server that a test can cut or close, as a failing network does.

    TLS passes through untouched (the client still verifies the API server's certificate, which names
    127.0.0.1). :meth:`sever` resets every open connection mid-stream; while :attr:`refusing` is set,
    new connections are reset as soon as they are accepted.
    """

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.refusing = False
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            if self.refusing:
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _reset(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    def sever(self) -> int:
        """Reset every open connection (both directions); returns how many there were."""
        with self._lock:
            sockets, self._open = self._open, []
        for end in sockets:
            _reset(end)
        return len(sockets) // 2

    def close(self) -> None:
        self._listener.close()
        self.sever()


def _reset(end: socket.socket) -> None:
    # SO_LINGER 0: the close sends a TCP reset. shutdown() first: close() alone neither wakes the
    # relay thread blocked in recv() on this socket nor, while that call holds it, closes it at all.
    with contextlib.suppress(OSError):
        end.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        end.shutdown(socket.SHUT_RDWR)
    end.close()


FAST_ROTATION = {"every": "6s", "maxTokenLifetime": "4s", "propagation": "2s", "leeway": "1s", "margin": "2s"}


class InvariantMonitor:
    """Checks the product's invariant continuously while a test injects faults.

    A recorder thread polls the issuer's Secret and a projected ConfigMap (both in ``namespace``); a
    checker thread signs with copies of the Secret and verifies every unexpired token with copies of
    the ConfigMap, each both fresh and ``propagation`` seconds old (the oldest copy a workload may
    hold). Every rejection of a valid token is a failure; "no active key" is counted as a pause.
    """

    def __init__(
        self,
        kube: Kube,
        namespace: str,
        secret: str,
        configmap: str,
        *,
        audience: str,
        propagation: float,
        lifetime: int,
    ) -> None:
        self.kube, self.namespace, self.secret, self.configmap = kube, namespace, secret, configmap
        self.audience, self.propagation, self.lifetime = audience, propagation, lifetime
        self.snapshots: list[tuple[float, dict[str, bytes], dict[str, bytes]]] = []
        self.failures: list[str] = []
        self.kids: set[str] = set()
        self.minted = 0
        self.verified = 0
        self.paused = 0
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._record, daemon=True),
            threading.Thread(target=self._check, daemon=True),
        ]

    def __enter__(self) -> InvariantMonitor:
        self._threads[0].start()
        wait_for(lambda: self.copies(time.time(), self.propagation + 0.5), timeout=30, what="a copy P old")
        self._threads[1].start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)

    def copies(self, now: float, age: float) -> tuple[dict[str, bytes], dict[str, bytes]] | None:
        """The newest snapshot taken at least ``age`` seconds before ``now``."""
        older = [s for s in self.snapshots if s[0] <= now - age]
        return (older[-1][1], older[-1][2]) if older else None

    def _record(self) -> None:
        while not self._stop.is_set():
            result = self.kube.plane.kubectl(
                "get",
                f"secret/{self.secret}",
                f"configmap/{self.configmap}",
                "-n",
                self.namespace,
                "-o",
                "json",
                check=False,
            )
            if result.returncode == 0:
                items = {item["kind"]: item for item in json.loads(result.stdout)["items"]}
                if {"Secret", "ConfigMap"} <= items.keys():
                    secret = {k: base64.b64decode(v) for k, v in (items["Secret"].get("data") or {}).items()}
                    configmap = {k: v.encode() for k, v in (items["ConfigMap"].get("data") or {}).items()}
                    self.snapshots.append((time.time(), secret, configmap))
            time.sleep(0.1)

    def _check(self) -> None:
        tokens: list[tuple[str, int]] = []
        while not self._stop.is_set():
            now = time.time()
            for age in (0.0, self.propagation):
                copies = self.copies(now, age)
                if copies is None:
                    continue
                try:
                    tokens.append(
                        (
                            Signer.from_secret_data(copies[0]).mint(subject="svc", audience=self.audience),
                            int(now) + self.lifetime,
                        )
                    )
                    self.minted += 1
                except NoActiveKey:
                    self.paused += 1
            for age in (0.0, self.propagation):
                copies = self.copies(now, age)
                if copies is None:
                    continue
                store = TrustStore.from_trust(parse_trust_files(copies[1])[0])
                for token, exp in tokens:
                    if exp + 1 <= time.time():
                        continue  # expired beyond the leeway: rejection is correct
                    try:
                        store.verify(token)
                        self.verified += 1
                        self.kids.add(json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))["kid"])
                    except InvalidToken as error:
                        self.failures.append(f"{type(error).__name__}: {error} (copy {age}s old)")
            tokens = [(t, exp) for t, exp in tokens if exp + 1 > time.time()]
            time.sleep(0.3)


P = 2  # propagation, seconds
ROTATION = {"every": "6s", "maxTokenLifetime": "4s", "propagation": f"{P}s", "leeway": "1s", "margin": "2s"}
AUDIENCE = "api://e2e"


def rotating_setup(kube: Kube, prefix: str) -> tuple[str, str]:
    """A namespace holding a fast-rotating Issuer and the ConfigMap of a policy that trusts it."""
    labels = {"e2e.jwt-trust.dev/group": uuid.uuid4().hex[:12]}
    ns = kube.namespace(labels)
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    kube.apply(issuer(ns, "rotating", rotation=ROTATION))
    kube.apply(policy(name, [(ns, "rotating")], labels, verification={"audiences": [AUDIENCE]}))
    kube.plane.kubectl("wait", "--for=condition=Ready", "issuer/rotating", "-n", ns, "--timeout=60s")
    wait_for(lambda: kube.configmap(ns, name), what="the projected ConfigMap")
    return ns, name


def monitor(kube: Kube, ns: str, name: str) -> InvariantMonitor:
    """The invariant monitor for a namespace made by :func:`rotating_setup`."""
    return InvariantMonitor(
        kube, ns, "rotating-signing-keys", name, audience=AUDIENCE, propagation=P, lifetime=4
    )
