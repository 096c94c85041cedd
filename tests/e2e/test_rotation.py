"""Rotation without a single verification failure, across operator restarts, and revocation.

The product's invariant (DESIGN.md §3), checked on the real thing: a recorder polls the Secret and the
projected ConfigMap from the API; signers sign with copies of the Secret and verifiers verify with
copies of the ConfigMap that are up to P old (the newest and the oldest allowed copy, both), while the
operator rotates every few seconds and is killed and restarted in the middle of a rotation.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from dataclasses import dataclass, field

import pytest
from support import Kube, issuer, policy, wait_for

from jwt_trust.errors import InvalidToken, NoActiveKey, RevokedKey, UnknownKey
from jwt_trust.projection import parse_trust_files
from jwt_trust.signer import Signer
from jwt_trust.testing.operator import OperatorProcess
from jwt_trust.verifier import TrustStore

pytestmark = pytest.mark.e2e

P = 2  # propagation, seconds
ROTATION = {"every": "6s", "maxTokenLifetime": "4s", "propagation": f"{P}s", "leeway": "1s", "margin": "2s"}
AUDIENCE = "api://e2e"


@dataclass
class Recorder:
    """Polls one namespace's Secret and ConfigMap; keeps every (time, secret, configmap) snapshot."""

    kube: Kube
    namespace: str
    secret: str
    configmap: str
    snapshots: list[tuple[float, dict[str, bytes], dict[str, bytes]]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    errors: list[str] = field(default_factory=list)

    def run(self) -> None:
        while not self.stop.is_set():
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
                secret = {k: base64.b64decode(v) for k, v in (items["Secret"].get("data") or {}).items()}
                configmap = {k: v.encode() for k, v in (items["ConfigMap"].get("data") or {}).items()}
                self.snapshots.append((time.time(), secret, configmap))
            time.sleep(0.1)

    def copies(self, now: float, age: float) -> tuple[dict[str, bytes], dict[str, bytes]] | None:
        """The newest snapshot taken at least ``age`` seconds before ``now``."""
        older = [s for s in self.snapshots if s[0] <= now - age]
        return (older[-1][1], older[-1][2]) if older else None


def _store(files: dict[str, bytes]) -> TrustStore:
    return TrustStore.from_trust(parse_trust_files(files)[0])


def test_rotation_never_fails_a_valid_token_across_restarts_and_revocation_takes_effect_within_p(
    operator: OperatorProcess, kube: Kube
) -> None:
    labels = {"e2e.jwt-trust.dev/group": uuid.uuid4().hex[:12]}
    ns = kube.namespace(labels)
    name = f"rot-{uuid.uuid4().hex[:8]}"
    kube.apply(issuer(ns, "rotating", rotation=ROTATION))
    kube.apply(policy(name, [(ns, "rotating")], labels, verification={"audiences": [AUDIENCE]}))
    kube.plane.kubectl("wait", "--for=condition=Ready", "issuer/rotating", "-n", ns, "--timeout=60s")
    wait_for(lambda: kube.configmap(ns, name), what="the projected ConfigMap")

    recorder = Recorder(kube, ns, "rotating-signing-keys", name)
    thread = threading.Thread(target=recorder.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: recorder.copies(time.time(), P + 0.5), timeout=10, what="a copy P old")
        tokens: list[tuple[str, int]] = []
        failures: list[str] = []
        kids: set[str] = set()
        paused = 0
        restarted = False
        start = time.time()
        while time.time() - start < 40:  # 40 s at R = 6 s: at least 5 rotations
            now = time.time()
            if not restarted and now - start > 17:
                # Mid-rotation crash: SIGKILL, no clean-up, then a fresh start.
                operator.kill()
                operator.start()
                restarted = True
            for age in (0.0, P):
                copies = recorder.copies(now, age)
                assert copies is not None
                try:
                    token = Signer.from_secret_data(copies[0]).mint(subject="svc", audience=AUDIENCE)
                except NoActiveKey:
                    paused += 1
                    continue
                tokens.append((token, int(now) + 4))
            for age in (0.0, P):
                copies = recorder.copies(now, age)
                assert copies is not None
                store = _store(copies[1])
                for token, exp in tokens:
                    if exp + 1 <= time.time():
                        continue  # expired beyond the leeway: rejection is correct
                    try:
                        store.verify(token)
                        kids.add(json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))["kid"])
                    except InvalidToken as error:
                        failures.append(f"{type(error).__name__}: {error} (copy {age}s old)")
            tokens = [(t, exp) for t, exp in tokens if exp + 1 > time.time()]
            time.sleep(0.3)

        assert failures == [], failures[:5]
        assert paused == 0, "a signer found no active key during rotation"
        assert len(kids) >= 5, f"tokens of only {len(kids)} keys were verified"
        records = json.loads(recorder.snapshots[-1][1]["keys.json"])["keys"]
        activations = {r["activatesAt"] for r in records if r["activatesAt"] is not None}
        status = (kube.get("issuer", "rotating", "-n", ns) or {})["status"]
        generated = {s[1]["keys.json"] for s in recorder.snapshots}
        assert len({k["kid"] for snap in generated for k in json.loads(snap)["keys"]}) >= 6, (
            "fewer than 5 rotations"
        )
        assert len(status["keys"]) <= 5
        assert activations

        # Emergency revocation of the active key: its tokens fail once P has passed.
        secret = kube.secret(ns, "rotating-signing-keys") or {}
        signer = Signer.from_secret_data(secret)
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
        time.sleep(max(0.0, revoked_at + P + 1 - time.time()))
        copies = recorder.copies(time.time(), 0.0)
        assert copies is not None
        with pytest.raises((RevokedKey, UnknownKey)):
            _store(copies[1]).verify(token)
        assert (
            compromised not in (kube.secret(ns, "rotating-signing-keys") or {}).get("keys.json", b"").decode()
        )
        # Pause mode: a fresh key signs after P + M, and the issuer is Ready again.
        wait_for(
            lambda: (kube.condition("issuer", "rotating", "-n", ns) or {}).get("status") == "True",
            timeout=20,
            what="Ready after revocation",
        )
        events = {e["reason"] for e in kube.events(ns, "rotating")}
        assert {"KeyGenerated", "KeyRevoked"} <= events
    finally:
        recorder.stop.set()
        thread.join(timeout=5)
