"""Rotation without a single verification failure, across an operator crash, and revocation within P.

The product's invariant (docs/architecture.md, rotation timing), checked on the real thing with
:class:`InvariantMonitor`: signers sign with copies of the Secret and verifiers verify with copies of
the ConfigMap up to P old, while the operator rotates every 6 seconds and is killed (SIGKILL) and
restarted mid-rotation.
"""

from __future__ import annotations

import json
import time

import pytest
from support import AUDIENCE, Kube, P, monitor, rotating_setup, wait_for

from jwt_trust.errors import RevokedKey, UnknownKey
from jwt_trust.projection import parse_trust_files
from jwt_trust.signer import Signer
from jwt_trust.verifier import TrustStore
from jwt_trust_testing.operator import OperatorProcess

pytestmark = pytest.mark.e2e


def test_rotation_never_fails_a_valid_token_across_an_operator_crash(
    operator: OperatorProcess, kube: Kube
) -> None:
    ns, name = rotating_setup(kube, "rot")
    with monitor(kube, ns, name) as watch:
        time.sleep(17)
        operator.kill()  # mid-rotation crash: SIGKILL, no clean-up
        operator.start()
        time.sleep(23)  # 40 s at R = 6 s: at least 5 rotations
    assert watch.failures == [], watch.failures[:5]
    assert watch.paused == 0, "a signer found no active key during rotation"
    assert len(watch.kids) >= 5, f"tokens of only {len(watch.kids)} keys were verified"
    assert watch.verified > 100
    assert len((kube.get("issuer", "rotating", "-n", ns) or {})["status"]["keys"]) <= 5


def test_a_revoked_key_fails_once_p_has_passed_and_signing_resumes_after_p_plus_m(
    operator: OperatorProcess, kube: Kube
) -> None:
    ns, name = rotating_setup(kube, "rev")
    signer = Signer.from_secret_data(wait_for(lambda: kube.secret(ns, "rotating-signing-keys")))
    compromised = signer.active_key().kid
    token = signer.mint(subject="svc", audience=AUDIENCE)
    revoked_at = time.time()
    kube.plane.kubectl(
        "patch",
        "issuer",
        "rotating",
        "-n",
        ns,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"revokedKeys": [compromised]}}),
    )
    wait_for(
        lambda: compromised not in (kube.configmap(ns, name) or {}).get("jwks.json", b"").decode(),
        timeout=P + 3,
        what="the revoked key withdrawn",
    )
    time.sleep(max(0.0, revoked_at + P - time.time()))
    store = TrustStore.from_trust(parse_trust_files(kube.configmap(ns, name) or {})[0])
    with pytest.raises((RevokedKey, UnknownKey)):
        store.verify(token)
    assert compromised not in (kube.secret(ns, "rotating-signing-keys") or {}).get("keys.json", b"").decode()
    # Pause mode: the fresh key signs only after P + M, then the issuer is Ready again.
    wait_for(
        lambda: (kube.condition("issuer", "rotating", "-n", ns) or {}).get("status") == "True",
        timeout=20,
        what="Ready after revocation",
    )
    assert (
        Signer.from_secret_data(kube.secret(ns, "rotating-signing-keys") or {}).active_key().kid
        != compromised
    )
    assert {"KeyGenerated", "KeyRevoked"} <= {e["reason"] for e in kube.events(ns, "rotating")}
