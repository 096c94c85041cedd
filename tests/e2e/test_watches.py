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
from typing import Any

import pytest
from support import Kube, issuer, policy, wait_for

from jwt_trust.keys import thumbprint
from jwt_trust.projection import JWKS_FILE
from jwt_trust.testing.operator import OperatorProcess

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
