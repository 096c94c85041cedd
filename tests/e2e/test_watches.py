"""The operator's caches never go blind: large objects, broken watch connections, an unreachable server.

Each test drives the real API server. The large-projection test makes every watch event of the target
ConfigMap close to 1 MiB (longer than a line reader's default buffer), then deletes and edits the target
and expects it back within seconds. The broken-connection tests route a dedicated operator through a
TCP relay that the test controls, cut every connection mid-stream, and expect the watches to resume,
the restarts to be counted, and liveness to turn red only while the API server stays unreachable.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from support import FAST_ROTATION, Kube, TCPRelay, issuer, policy, wait_for

from jwt_trust.keys import thumbprint
from jwt_trust.projection import JWKS_FILE
from jwt_trust_testing.operator import OperatorProcess, metric_total

pytestmark = pytest.mark.e2e

ISSUERS, KEYS_PER_ISSUER = 13, 64  # the CRD allows up to 64 inline keys per external Issuer
MIB = 1024 * 1024


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _rsa_jwks(count: int) -> dict[str, Any]:
    """``count`` public RSA-2048 JWKs. The moduli are random odd numbers, not products of primes: the
    operator only publishes them, and generating 800 real keys would cost the test a minute."""
    keys = []
    for _ in range(count):
        modulus = secrets.randbits(2048) | (1 << 2047) | 1
        n = _b64(modulus.to_bytes(256, "big"))
        jwk = {"kty": "RSA", "n": n, "e": "AQAB", "alg": "RS256", "use": "sig"}
        jwk["kid"] = thumbprint(jwk)
        keys.append(jwk)
    return {"keys": keys}


def _label() -> dict[str, str]:
    return {"e2e.jwt-trust.dev/group": uuid.uuid4().hex[:12]}


def _ready(kube: Kube, *args: str) -> bool:
    condition = kube.condition(*args)
    return condition is not None and condition["status"] == "True"


def _keys(kube: Kube, namespace: str, name: str) -> int:
    files = kube.configmap(namespace, name) or {}
    return len(json.loads(files.get(JWKS_FILE, b'{"keys":[]}'))["keys"])


def test_a_projection_near_the_size_limit_is_restored_and_repaired_within_seconds(
    operator: OperatorProcess, kube: Kube
) -> None:
    labels = _label()
    home, target = kube.namespace(), kube.namespace(labels)
    names = [f"big-{i}" for i in range(ISSUERS)]
    kube.apply(*(issuer(home, n, external={"jwks": _rsa_jwks(KEYS_PER_ISSUER)}) for n in names))
    name = f"p-{uuid.uuid4().hex[:8]}"
    kube.apply(policy(name, [(home, n) for n in names], labels))
    wanted = ISSUERS * KEYS_PER_ISSUER
    wait_for(lambda: _keys(kube, target, name) == wanted, timeout=60, what="the full projection")
    wait_for(lambda: _ready(kube, "trustpolicy", name), what="the policy to be Ready")
    stored = kube.get("configmap", name, "-n", target) or {}
    size = len(json.dumps(stored["data"]))
    assert 0.7 * MIB < size < MIB, size

    # Several rounds: the first watch event of this size is the one that used to blind the cache.
    for _ in range(3):
        started = time.monotonic()
        kube.plane.kubectl("delete", "configmap", name, "-n", target)
        wait_for(lambda: _keys(kube, target, name) == wanted, timeout=10, what="the deleted target back")
        restored_in = time.monotonic() - started

        kube.plane.kubectl(
            "patch",
            "configmap",
            name,
            "-n",
            target,
            "--type=merge",
            "-p",
            json.dumps({"data": {JWKS_FILE: '{"keys":[]}'}}),
        )
        wait_for(lambda: _keys(kube, target, name) == wanted, timeout=10, what="the edited target repaired")
        assert restored_in < 10
    assert operator.healthy()


def _restarts(process: OperatorProcess, resource: str | None = None) -> float:
    """The operator's ``jwt_trust_watch_restarts_total``, all resources or one."""
    labels = {} if resource is None else {"resource": resource}
    return metric_total(process.metrics(), "jwt_trust_watch_restarts_total", **labels)


def _through(relay: TCPRelay, kubeconfig: Path, path: Path) -> Path:
    """A copy of ``kubeconfig`` whose server is the relay (the certificate still names 127.0.0.1)."""
    config = json.loads(kubeconfig.read_text())
    for cluster in config["clusters"]:
        cluster["cluster"]["server"] = f"https://127.0.0.1:{relay.port}"
    path.write_text(json.dumps(config))
    path.chmod(0o600)
    return path


def test_watches_cut_mid_stream_resume_are_counted_and_liveness_follows_an_unreachable_server(
    operator: OperatorProcess, kube: Kube
) -> None:
    host, port = kube.plane.server.removeprefix("https://").rsplit(":", 1)
    relay = TCPRelay(host, int(port))
    workdir = operator.workdir / "relayed"
    workdir.mkdir(parents=True, exist_ok=True)
    relayed = OperatorProcess(
        kube.plane,
        workdir,
        _through(relay, operator.kubeconfig, workdir / "relayed.kubeconfig"),
        extra_env={"JWT_TRUST_WATCH_UNHEALTHY_SECONDS": "3"},
    )
    operator.stop()
    try:
        relayed.start()
        labels = _label()
        home, target = kube.namespace(), kube.namespace(labels)
        kube.apply(issuer(home, "idp", rotation=FAST_ROTATION))
        name = f"p-{uuid.uuid4().hex[:8]}"
        kube.apply(policy(name, [(home, "idp")], labels))
        wait_for(lambda: _keys(kube, target, name), what="the projected ConfigMap")
        assert _restarts(relayed) == 0

        # Every connection reset mid-stream: each of our watches (namespaces, configmaps, secrets,
        # issuers, trustpolicies) fails, is counted, lists again and resumes.
        assert relay.sever() >= 5
        for resource in ("namespaces", "configmaps", "secrets", "issuers", "trustpolicies"):
            wait_for(lambda r=resource: _restarts(relayed, r) >= 1, timeout=10, what=f"{resource} restarted")
        kube.plane.kubectl("delete", "configmap", name, "-n", target)
        wait_for(lambda: _keys(kube, target, name), timeout=10, what="the deleted target back")
        assert relayed.healthy()

        # The API server unreachable for longer than the threshold: liveness turns red (a blind
        # operator must not look healthy), and green again once the caches have listed afresh.
        relay.refusing = True
        relay.sever()
        wait_for(lambda: not relayed.healthy(), timeout=30, what="liveness to report the failing caches")
        assert relayed.process is not None
        assert relayed.process.poll() is None, "the operator must not exit when the API is unreachable"
        relay.refusing = False
        wait_for(relayed.healthy, timeout=60, what="liveness to recover")
        kube.plane.kubectl("delete", "configmap", name, "-n", target)
        wait_for(lambda: _keys(kube, target, name), timeout=10, what="the deleted target back again")
        assert "watch of configmaps failed" in relayed.logs()
    finally:
        relayed.stop()
        relay.close()
        operator.start()
