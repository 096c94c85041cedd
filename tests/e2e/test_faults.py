"""Fault injection: crashes, an API server restart, a racing writer, a deleted Secret, a switch of key source.

After each fault: no key that a live token needs is lost (the invariant monitor sees zero failures for
valid tokens) and the state converges (Issuer and TrustPolicy Ready, the target holding the content
the policy's status describes).
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid

import pytest
from support import AUDIENCE, ROTATION, Kube, P, issuer, monitor, policy, rotating_setup, wait_for

from jwt_trust.keys import generate_private_key, public_jwk
from jwt_trust.projection import JWKS_FILE, content_hash, parse_trust_files
from jwt_trust.rotation import KeyRecord, parse_duration
from jwt_trust.signer import Signer, render_secret_data
from jwt_trust.verifier import TrustStore
from jwt_trust_testing.operator import OperatorProcess

pytestmark = pytest.mark.e2e

SEED = 20261129
KILLS = 20


def _converged(kube: Kube, ns: str, name: str) -> None:
    kube.plane.kubectl("wait", "--for=condition=Ready", "issuer/rotating", "-n", ns, "--timeout=60s")
    kube.plane.kubectl("wait", "--for=condition=Ready", f"trustpolicy/{name}", "--timeout=60s")
    keys = (kube.get("issuer", "rotating", "-n", ns) or {})["status"]["keys"]
    assert 1 <= len(keys) <= 5

    def target_matches_status() -> bool:
        files = kube.configmap(ns, name) or {}
        published = {k["kid"] for k in json.loads(files.get(JWKS_FILE, b'{"keys":[]}'))["keys"]}
        status = {k["kid"] for k in (kube.get("issuer", "rotating", "-n", ns) or {})["status"]["keys"]}
        return published == status

    wait_for(target_matches_status, timeout=30, what="the ConfigMap to hold exactly the issuer's keys")


def test_killing_the_operator_at_random_points_of_rotations_loses_no_needed_key(
    operator: OperatorProcess, kube: Kube
) -> None:
    ns, name = rotating_setup(kube, "kill")
    chance = random.Random(SEED)
    with monitor(kube, ns, name) as watch:
        for _ in range(KILLS):
            time.sleep(chance.uniform(0.2, 3.0))
            operator.kill()
            time.sleep(chance.uniform(0.0, 1.0))
            operator.start()
        time.sleep(8)
    assert watch.failures == [], watch.failures[:5]
    assert watch.verified > 100
    _converged(kube, ns, name)


def test_restarting_the_api_server_during_a_rotation_loses_no_needed_key(
    operator: OperatorProcess, kube: Kube
) -> None:
    ns, name = rotating_setup(kube, "apiserver")
    with monitor(kube, ns, name) as watch:
        time.sleep(4)
        kube.plane.restart("kube-apiserver")
        time.sleep(15)
    assert watch.failures == [], watch.failures[:5]
    assert operator.process is not None
    assert operator.process.poll() is None, "the operator died with the API server"
    _converged(kube, ns, name)


def test_a_writer_racing_the_operator_on_a_target_loses_and_the_target_converges(
    operator: OperatorProcess, kube: Kube
) -> None:
    ns, name = rotating_setup(kube, "race")
    stop = threading.Event()
    intrusions = 0

    def intrude() -> None:
        nonlocal intrusions
        while not stop.is_set():
            body = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": ns},
                "data": {JWKS_FILE: '{"keys":[]}'},
            }
            result = kube.plane.kubectl(
                "apply",
                "--server-side",
                "--field-manager=intruder",
                "--force-conflicts",
                "-f",
                "-",
                input=json.dumps(body),
                check=False,
            )
            intrusions += result.returncode == 0
            kube.plane.kubectl(
                "patch",
                "configmap",
                name,
                "-n",
                ns,
                "--type=merge",
                "-p",
                json.dumps({"data": {"intruder": str(time.time())}}),
                check=False,
            )

    thread = threading.Thread(target=intrude, daemon=True)
    thread.start()
    time.sleep(10)
    stop.set()
    thread.join(timeout=10)
    assert intrusions > 5
    _converged(kube, ns, name)
    files = kube.configmap(ns, name) or {}
    stored = (kube.get("configmap", name, "-n", ns) or {})["metadata"]["annotations"][
        "jwt-trust.dev/content-hash"
    ]
    # The intruder's extra key is not ours to remove, but everything we own is exactly what we wrote.
    ours = {k: v.decode() for k, v in files.items() if k != "intruder"}
    assert content_hash(ours) == stored
    assert operator.process is not None
    assert operator.process.poll() is None


def _wait_for_phase(kube: Kube, ns: str, before_next_activation: float) -> None:
    """Return ``before_next_activation`` seconds before the Secret's next key starts signing."""

    def next_activation() -> float | None:
        data = kube.secret(ns, "rotating-signing-keys") or {}
        records = json.loads(data.get("keys.json", b'{"keys":[]}'))["keys"]
        earliest = time.time() + before_next_activation
        upcoming = [r["activatesAt"] for r in records if (r["activatesAt"] or 0) > earliest]
        return min(upcoming, default=None)

    activation = wait_for(next_activation, timeout=30, what="a next key scheduled far enough ahead")
    time.sleep(max(activation - before_next_activation - time.time(), 0))


@pytest.mark.parametrize(
    "before_next_activation",
    [
        # Copies of the deleted Secret (the kubelet keeps the last one while it is gone, and a copy up
        # to P old after it is back) activate its next key 1 s later, on their own schedule.
        1.0,
        # The next key is R - 1 s away: no copy of the old Secret lives that long; only the active key
        # matters.
        float(parse_duration(ROTATION["every"]) - 1),
    ],
    ids=["just-before-the-next-key-activates", "just-after-a-key-activated"],
)
def test_deleting_the_signing_secret_by_hand_keeps_live_tokens_valid_and_recovers(
    operator: OperatorProcess, kube: Kube, before_next_activation: float
) -> None:
    ns, name = rotating_setup(kube, "lost")
    with monitor(kube, ns, name) as watch:
        _wait_for_phase(kube, ns, before_next_activation)
        kube.plane.kubectl("delete", "secret", "rotating-signing-keys", "-n", ns)
        time.sleep(15)
    assert watch.failures == [], watch.failures[:5]
    assert watch.verified > 20
    _converged(kube, ns, name)
    assert any(e["reason"] == "KeyLost" for e in kube.events(ns, "rotating"))


def _kids(kube: Kube, ns: str, name: str) -> set[str]:
    files = kube.configmap(ns, name) or {}
    return {k["kid"] for k in json.loads(files.get(JWKS_FILE, b'{"keys":[]}'))["keys"]}


def test_switching_a_generated_issuer_to_an_external_jwks_keeps_live_tokens_valid(
    operator: OperatorProcess, kube: Kube
) -> None:
    """Signers stop (their private keys leave the Secret), and what they signed still verifies."""
    ns, name = rotating_setup(kube, "toext")
    provider = public_jwk(generate_private_key("EdDSA").public_key(), "EdDSA")
    generated = {k["kid"] for k in (kube.get("issuer", "rotating", "-n", ns) or {})["status"]["keys"]}
    with monitor(kube, ns, name) as watch:
        time.sleep(3)
        kube.apply(issuer(ns, "rotating", rotation=ROTATION, external={"jwks": {"keys": [provider]}}))

        def stripped() -> bool:
            data = kube.secret(ns, "rotating-signing-keys")
            return data is not None and not any(k.endswith(".pem") for k in data)

        wait_for(stripped, timeout=10, what="the private keys to leave the Secret")
        minted_before = watch.minted
        # Stale copies sign for P more seconds; their last tokens live T + S after that.
        time.sleep(P + 4 + 1 + 2)
    assert watch.failures == [], watch.failures[:5]
    assert watch.paused > 0, "signers mounting the stripped Secret must stop signing"
    assert minted_before > 0
    assert provider["kid"] in _kids(kube, ns, name)
    # Once no token of theirs can be alive, the generated keys leave every ConfigMap.
    wait_for(lambda: _kids(kube, ns, name) == {provider["kid"]}, timeout=30, what="only the provider's key")
    assert generated
    assert any(e["reason"] == "KeyLost" for e in kube.events(ns, "rotating"))
    kube.plane.kubectl("wait", "--for=condition=Ready", "issuer/rotating", "-n", ns, "--timeout=30s")


def test_switching_an_external_issuer_to_generated_keys_keeps_the_providers_tokens_valid(
    operator: OperatorProcess, kube: Kube
) -> None:
    labels = {"e2e.jwt-trust.dev/group": uuid.uuid4().hex[:12]}
    ns = kube.namespace(labels)
    name = f"fromext-{uuid.uuid4().hex[:8]}"
    key = generate_private_key("EdDSA")
    provider = public_jwk(key.public_key(), "EdDSA")
    external = issuer(ns, "rotating", rotation=ROTATION, external={"jwks": {"keys": [provider]}})
    kube.apply(external)
    kube.apply(policy(name, [(ns, "rotating")], labels, verification={"audiences": [AUDIENCE]}))
    wait_for(lambda: provider["kid"] in _kids(kube, ns, name), what="the provider's key projected")
    lifetime = parse_duration(ROTATION["maxTokenLifetime"])
    idp = Signer.from_secret_data(
        render_secret_data(
            issuer=external["spec"]["issuer"],
            max_token_lifetime=lifetime,
            records=(KeyRecord(provider["kid"], "EdDSA", created_at=0, published_at=0, activates_at=0),),
            private_keys={provider["kid"]: key},
        )
    )
    # The provider's last token, minted just before the Issuer stops mirroring it.
    token = idp.mint(subject="svc", audience=AUDIENCE)
    expires = time.time() + lifetime
    kube.apply(issuer(ns, "rotating", rotation=ROTATION))
    checked = 0
    while time.time() < expires + 1:
        store = TrustStore.from_trust(parse_trust_files(kube.configmap(ns, name) or {})[0])
        store.verify(token)
        checked += 1
        time.sleep(0.2)
    assert checked > 5
    kube.plane.kubectl("wait", "--for=condition=Ready", "issuer/rotating", "-n", ns, "--timeout=30s")
    wait_for(lambda: provider["kid"] not in _kids(kube, ns, name), timeout=30, what="the provider's key gone")
