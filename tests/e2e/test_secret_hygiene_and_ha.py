"""Private keys never leave their Secret, Secret access can be scoped, and replicas run one at a time.

The hygiene test runs late in the session (this module sorts after the other operator tests), so it
scans everything the operator wrote or logged during them: every ConfigMap, every Event, every Issuer
and TrustPolicy status, and the operator's logs, for any private key held in any signing Secret and
for private-key markers in general.
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid

import pytest
from support import FAST_ROTATION, Kube, issuer, policy, wait_for

from jwt_trust_testing.chart import RBAC_TEMPLATES, render
from jwt_trust_testing.operator import OperatorProcess

pytestmark = pytest.mark.e2e

PRIVATE_MARKERS = re.compile(r"PRIVATE KEY|\"d\"\s*:|\"p\"\s*:|\"q\"\s*:|\"dp\"\s*:|\"k\"\s*:")


def _private_fragments(kube: Kube) -> set[str]:
    """Distinctive pieces of every private key in every signing Secret (PEM body lines)."""
    listing = kube.get("secrets", "-A", "-l", "app.kubernetes.io/managed-by=jwt-trust") or {}
    fragments: set[str] = set()
    for item in listing.get("items") or []:
        # Straight from the .pem entries: some tests leave a Secret whose keys.json is deliberately broken.
        for name, value in (item.get("data") or {}).items():
            if name.endswith(".pem"):
                pem = base64.b64decode(value).decode()
                fragments.update(line for line in pem.splitlines() if len(line) >= 40 and "-----" not in line)
    return fragments


def test_no_private_key_material_in_configmaps_events_statuses_or_logs(
    operator: OperatorProcess, kube: Kube
) -> None:
    # At least one issuer of our own, so that the scan has keys to look for even when run alone.
    ns = kube.namespace()
    kube.apply(issuer(ns, "scanned", rotation=FAST_ROTATION))
    wait_for(lambda: kube.secret(ns, "scanned-signing-keys"), what="a signing Secret")
    fragments = _private_fragments(kube)
    assert fragments, "the session should have created signing keys to look for"
    haystacks = {
        "configmaps": json.dumps(kube.get("configmaps", "-A") or {}),
        "events": json.dumps(kube.get("events", "-A") or {}),
        # Of our own kinds only what the operator writes (status): a spec is the user's input, and one
        # test deliberately puts a private member into an external JWKS to see it refused.
        "issuer statuses": json.dumps(
            [i.get("status") for i in (kube.get("issuers", "-A") or {}).get("items", [])]
        ),
        "policy statuses": json.dumps(
            [i.get("status") for i in (kube.get("trustpolicies") or {}).get("items", [])]
        ),
        "operator logs": operator.logs(),
    }
    for where, text in haystacks.items():
        leaked = [f for f in fragments if f in text]
        assert not leaked, f"private key material found in {where}"
        if where != "operator logs":
            assert not PRIVATE_MARKERS.search(text.replace('"d":"c2VjcmV0"', "")), (
                f"private-key marker in {where}"
            )


def test_two_peered_replicas_have_exactly_one_active_and_the_standby_takes_over(
    operator: OperatorProcess, kube: Kube
) -> None:
    # Both replicas start with the same flags, as a Deployment's pods do (no --priority).
    kube.apply({"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": "jwt-trust"}})
    operator.stop()
    replicas = [
        OperatorProcess(
            kube.plane, operator.workdir / f"replica-{i}", operator.kubeconfig, peering="jwt-trust"
        )
        for i in (1, 2)
    ]
    try:
        for replica in replicas:
            replica.start()
        # kopf settles the peering within a few seconds of the second start; count writes after that.
        time.sleep(5)
        before = [r.writes("configmaps") for r in replicas]
        labels = {"e2e.jwt-trust.dev/group": uuid.uuid4().hex[:12]}
        home = kube.namespace()
        first = kube.namespace(labels)
        kube.apply(issuer(home, "idp", rotation=FAST_ROTATION))
        name = f"p-{uuid.uuid4().hex[:8]}"
        kube.apply(policy(name, [(home, "idp")], labels))
        wait_for(lambda: kube.configmap(first, name), timeout=60, what="one replica to project")
        time.sleep(2)
        writers = [r for r, start in zip(replicas, before, strict=True) if r.writes("configmaps") > start]
        assert len(writers) == 1, "exactly one replica must be active"
        (leader,) = writers
        standby = next(r for r in replicas if r is not leader)

        standby_writes = standby.writes("configmaps")
        leader.stop()  # a clean exit withdraws the leader from the peering
        second = kube.namespace(labels)
        wait_for(lambda: kube.configmap(second, name), timeout=60, what="the standby to take over")
        assert standby.writes("configmaps") > standby_writes
    finally:
        for replica in replicas:
            replica.stop()
        operator.start()


def test_scoped_to_issuer_namespaces_the_operator_cannot_read_other_secrets_and_still_works(
    operator: OperatorProcess, kube: Kube
) -> None:
    issuers_ns, elsewhere = kube.namespace(), kube.namespace()
    home = "jwt-trust-scoped"
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": home}})
    rbac = render(
        kube.plane.bin_dir / "helm",
        namespace=home,
        release="scoped",
        values={"secretNamespaces": [issuers_ns]},
        show_only=RBAC_TEMPLATES,
    )
    kube.plane.kubectl("apply", "-f", "-", input=rbac)
    account = f"system:serviceaccount:{home}:scoped-jwt-trust"
    for verb in ("get", "list", "watch"):
        assert (
            kube.plane.kubectl(
                "auth", "can-i", verb, "secrets", "-n", elsewhere, f"--as={account}", check=False
            ).stdout.strip()
            == "no"
        )
        assert (
            kube.plane.kubectl(
                "auth", "can-i", verb, "secrets", "-n", issuers_ns, f"--as={account}", check=False
            ).stdout.strip()
            == "yes"
        )
    assert (
        kube.plane.kubectl(
            "auth", "can-i", "list", "secrets", "--all-namespaces", f"--as={account}", check=False
        ).stdout.strip()
        == "no"
    )

    kubeconfig = kube.plane.service_account_kubeconfig(
        home, "scoped-jwt-trust", operator.workdir / "scoped.kubeconfig"
    )
    scoped = OperatorProcess(
        kube.plane,
        operator.workdir / "scoped",
        kubeconfig,
        extra_env={"JWT_TRUST_SECRET_NAMESPACES": issuers_ns},
    )
    operator.stop()
    try:
        scoped.start()
        kube.apply(issuer(issuers_ns, "idp", rotation=FAST_ROTATION))
        kube.plane.kubectl("wait", "--for=condition=Ready", "issuer/idp", "-n", issuers_ns, "--timeout=60s")
        assert "Forbidden" not in scoped.logs()
        # An Issuer outside the scope is reported, not retried in a loop.
        kube.apply(issuer(elsewhere, "idp", rotation=FAST_ROTATION))
        wait_for(
            lambda: (
                (kube.condition("issuer", "idp", "-n", elsewhere) or {}).get("reason") == "SecretAccessDenied"
            ),
            what="SecretAccessDenied",
        )
    finally:
        scoped.stop()
        operator.start()
