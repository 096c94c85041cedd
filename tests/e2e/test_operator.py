"""The operator end to end: Issuer → Secret, TrustPolicy → ConfigMaps, and everything around them.

Every test runs against the real control plane with the operator as a separate process under the
chart's RBAC. Times are seconds-scale (see ``FAST_ROTATION``) so that rotations happen during a test.
"""

from __future__ import annotations

import calendar
import json
import time
import uuid
from typing import Any

import pytest
from support import FAST_ROTATION, Kube, issuer, policy, wait_for

from jwt_trust.errors import InvalidAudience, RevokedToken
from jwt_trust.projection import JWKS_FILE, parse_trust_files
from jwt_trust.signer import KEYS_FILE, Signer
from jwt_trust.verifier import TrustStore
from jwt_trust_testing.operator import OperatorProcess, metric_total

pytestmark = pytest.mark.e2e


def _ready(kube: Kube, *args: str) -> bool:
    condition = kube.condition(*args)
    return condition is not None and condition["status"] == "True"


def _label() -> dict[str, str]:
    return {"e2e.jwt-trust.dev/group": uuid.uuid4().hex[:12]}


def test_issuer_gets_a_secret_with_active_and_next_keys_and_reports_ready(
    operator: OperatorProcess, kube: Kube
) -> None:
    ns = kube.namespace()
    kube.apply(issuer(ns, "signing", rotation=FAST_ROTATION))
    kube.plane.kubectl("wait", "--for=condition=Ready", "issuer/signing", "-n", ns, "--timeout=60s")

    status = (kube.get("issuer", "signing", "-n", ns) or {})["status"]
    data = wait_for(lambda: kube.secret(ns, "signing-signing-keys"), what="the signing-key Secret")
    signer = Signer.from_secret_data(data)
    assert status["activeKeyID"] == signer.active_key().kid
    states = wait_for(
        lambda: (
            {k["state"] for k in (kube.get("issuer", "signing", "-n", ns) or {})["status"]["keys"]}
            >= {"active", "next"}
            and {k["state"] for k in (kube.get("issuer", "signing", "-n", ns) or {})["status"]["keys"]}
        ),
        what="an active and a next key",
    )
    assert {"active", "next"} <= states
    secret = kube.get("secret", "signing-signing-keys", "-n", ns) or {}
    assert secret["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "jwt-trust"
    assert secret["metadata"]["ownerReferences"][0]["kind"] == "Issuer"
    assert KEYS_FILE in data
    # Our bookkeeping lives in status and one finalizer: no annotation is added to the user's object.
    meta = (kube.get("issuer", "signing", "-n", ns) or {})["metadata"]
    assert not [a for a in meta.get("annotations") or {} if "kopf" in a or "jwt-trust" in a]


def test_the_status_is_written_by_one_server_side_apply_that_removes_what_it_leaves_out(
    operator: OperatorProcess, kube: Kube
) -> None:
    ns = kube.namespace()
    kube.apply(issuer(ns, "applied", rotation=FAST_ROTATION))
    kube.plane.kubectl("wait", "--for=condition=Ready", "issuer/applied", "-n", ns, "--timeout=60s")
    body = kube.get("issuer", "applied", "-n", ns, "--show-managed-fields") or {}
    ours = [e for e in body["metadata"]["managedFields"] if e["manager"] == "jwt-trust"]
    assert [(e["operation"], e.get("subresource")) for e in ours] == [("Apply", "status")]
    # Right after Ready the successor waits for publication; the status still says when the next
    # rotation can happen (kubectl's NEXT ROTATION column).
    assert body["status"]["nextRotation"]
    columns = kube.plane.kubectl("get", "issuer", "applied", "-n", ns, "--no-headers").stdout.split()
    assert body["status"]["nextRotation"] in columns

    # A field written by a merge patch under our manager name (as an earlier version of the operator
    # did) is co-owned by that write: the operator's next status, which leaves it out, removes it.
    kube.plane.kubectl(
        "patch",
        "issuer",
        "applied",
        "-n",
        ns,
        "--subresource=status",
        "--type=merge",
        "--field-manager=jwt-trust",
        "-p",
        json.dumps({"status": {"jwksUpdatedAt": "2020-01-01T00:00:00Z"}}),
    )
    wait_for(
        lambda: "jwksUpdatedAt" not in ((kube.get("issuer", "applied", "-n", ns) or {}).get("status") or {}),
        what="the field left out of the operator's status to be removed",
    )
    assert _ready(kube, "issuer", "applied", "-n", ns)


def test_policy_projects_public_keys_only_into_matching_namespaces(
    operator: OperatorProcess, kube: Kube
) -> None:
    labels = _label()
    home = kube.namespace()
    selected = [kube.namespace(labels) for _ in range(3)]
    unselected = kube.namespace({"other": "label"})
    kube.apply(issuer(home, "idp", rotation=FAST_ROTATION))
    name = f"p-{uuid.uuid4().hex[:8]}"
    kube.apply(policy(name, [(home, "idp")], labels, verification={"audiences": ["api://orders"]}))
    wait_for(lambda: _ready(kube, "trustpolicy", name), what="the policy to be Ready")
    wait_for(lambda: _ready(kube, "issuer", "idp", "-n", home), what="the issuer to be Ready", timeout=60)

    for ns in selected:
        files = wait_for(lambda ns=ns: kube.configmap(ns, name), what=f"ConfigMap in {ns}")
        jwks = json.loads(files[JWKS_FILE])
        assert jwks["keys"], "the JWKS must not be empty"
        for jwk in jwks["keys"]:
            assert not {"d", "p", "q", "dp", "dq", "qi", "k"} & set(jwk), "private member in a projected JWK"
            assert (jwk["use"], jwk["alg"]) == ("sig", "ES256")
            assert jwk["kid"]
    assert kube.configmap(unselected, name) is None
    assert kube.configmap(home, name) is None

    # A token from the Secret verifies offline from the ConfigMap read back from the API.
    signer = Signer.from_secret_data(wait_for(lambda: kube.secret(home, "idp-signing-keys")))
    token = wait_for(lambda: _mint(signer, "api://orders"), what="an active key")
    trust, _revision = parse_trust_files(wait_for(lambda: kube.configmap(selected[0], name)))
    store = TrustStore.from_trust(trust)
    assert store.verify(token)["iss"] == f"https://idp.{home}.example"
    with pytest.raises(InvalidAudience):
        store.verify(_mint(signer, "api://billing") or "")

    status = (kube.get("trustpolicy", name) or {})["status"]
    assert (status["matchedNamespaces"], status["syncedNamespaces"]) == (3, 3)


def _mint(signer: Signer, audience: str) -> str | None:
    from jwt_trust.errors import NoActiveKey

    try:
        return signer.mint(subject="alice", audience=audience)
    except NoActiveKey:
        return None


def test_namespaces_coming_matching_and_unmatching_gain_and_lose_the_configmap(
    operator: OperatorProcess, kube: Kube
) -> None:
    labels = _label()
    home = kube.namespace()
    kube.apply(issuer(home, "idp", rotation=FAST_ROTATION))
    name = f"p-{uuid.uuid4().hex[:8]}"
    kube.apply(policy(name, [(home, "idp")], labels))
    wait_for(lambda: _ready(kube, "trustpolicy", name), what="the policy to be Ready")

    newcomer = kube.namespace(labels)
    wait_for(lambda: kube.configmap(newcomer, name), timeout=10, what="ConfigMap in a new namespace")

    late = kube.namespace()
    assert kube.configmap(late, name) is None
    kube.plane.kubectl("label", "namespace", late, *(f"{k}={v}" for k, v in labels.items()))
    wait_for(lambda: kube.configmap(late, name), timeout=10, what="ConfigMap after labelling")

    kube.plane.kubectl("label", "namespace", newcomer, *(f"{k}-" for k in labels))
    wait_for(
        lambda: kube.configmap(newcomer, name) is None, timeout=10, what="ConfigMap removed after unlabelling"
    )
    wait_for(
        lambda: (kube.get("trustpolicy", name) or {})["status"]["matchedNamespaces"] == 1,
        what="matched count 1",
    )


def test_edited_or_deleted_targets_are_restored(operator: OperatorProcess, kube: Kube) -> None:
    labels = _label()
    home, target = kube.namespace(), kube.namespace(labels)
    kube.apply(issuer(home, "idp", rotation=FAST_ROTATION))
    name = f"p-{uuid.uuid4().hex[:8]}"
    kube.apply(policy(name, [(home, "idp")], labels))
    original = wait_for(lambda: _ready(kube, "trustpolicy", name) and kube.configmap(target, name))
    revision = parse_trust_files(original)[1]

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
    wait_for(
        lambda: json.loads((kube.configmap(target, name) or {}).get(JWKS_FILE, b"{}")).get("keys"),
        timeout=10,
        what="edited JWKS restored",
    )

    kube.plane.kubectl("delete", "configmap", name, "-n", target)
    restored = wait_for(lambda: kube.configmap(target, name), timeout=10, what="deleted ConfigMap restored")
    assert parse_trust_files(restored)[1] >= revision


@pytest.mark.parametrize("selected", [1, 12], ids=["read-before-write", "one-list-for-many"])
def test_a_same_named_configmap_we_do_not_own_is_left_alone_and_reported(
    operator: OperatorProcess, kube: Kube, selected: int
) -> None:
    """One new target is read before its first write; many are checked with one list (both ways must
    leave someone else's ConfigMap alone)."""
    labels = _label()
    home, target = kube.namespace(), kube.namespace(labels)
    others = [kube.namespace(labels) for _ in range(selected - 1)]
    name = f"p-{uuid.uuid4().hex[:8]}"
    foreign = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": target},
        "data": {"mine": "yes"},
    }
    kube.apply(foreign)
    kube.apply(issuer(home, "idp", rotation=FAST_ROTATION))
    kube.apply(policy(name, [(home, "idp")], labels))

    condition = wait_for(
        lambda: (c := kube.condition("trustpolicy", name)) and c["reason"] == "TargetNotOwned" and c,
        what="TargetNotOwned",
    )
    assert condition["status"] == "False"
    assert kube.configmap(target, name) == {"mine": b"yes"}
    wait_for(
        lambda: any(e["reason"] == "TargetNotOwned" for e in kube.events("default", name)),
        what="a TargetNotOwned Event",
    )
    for ns in others:
        wait_for(lambda ns=ns: kube.configmap(ns, name), what=f"the ConfigMap in {ns}")
    assert kube.configmap(target, name) == {"mine": b"yes"}


def test_deleting_a_policy_removes_its_configmaps(operator: OperatorProcess, kube: Kube) -> None:
    labels = _label()
    home = kube.namespace()
    targets = [kube.namespace(labels) for _ in range(2)]
    kube.apply(issuer(home, "idp", rotation=FAST_ROTATION))
    name = f"p-{uuid.uuid4().hex[:8]}"
    kube.apply(policy(name, [(home, "idp")], labels))
    for ns in targets:
        wait_for(lambda ns=ns: kube.configmap(ns, name), what="ConfigMap")
    kube.plane.kubectl("delete", "trustpolicy", name, "--timeout=30s")
    for ns in targets:
        assert kube.configmap(ns, name) is None


def test_deleting_an_issuer_withdraws_its_keys_and_retain_keeps_the_secret(
    operator: OperatorProcess, kube: Kube
) -> None:
    labels = _label()
    home, target = kube.namespace(), kube.namespace(labels)
    kube.apply(
        issuer(home, "keep", rotation=FAST_ROTATION, deletionPolicy="Retain"),
        issuer(home, "drop", rotation=FAST_ROTATION),
    )
    name = f"p-{uuid.uuid4().hex[:8]}"
    kube.apply(policy(name, [(home, "keep"), (home, "drop")], labels))
    wait_for(lambda: _ready(kube, "trustpolicy", name))
    files = wait_for(lambda: kube.configmap(target, name))
    assert f"issuer.{home}.drop.jwks.json" in files

    kube.plane.kubectl("delete", "issuer", "drop", "-n", home, "--timeout=30s")
    wait_for(
        lambda: f"issuer.{home}.drop.jwks.json" not in (kube.configmap(target, name) or {}),
        what="keys withdrawn",
    )
    trust, _ = parse_trust_files(kube.configmap(target, name) or {})
    assert [i.ref for i in trust.issuers] == [f"{home}/keep"]

    kube.plane.kubectl("delete", "issuer", "keep", "-n", home, "--timeout=30s")
    wait_for(lambda: kube.get("issuer", "keep", "-n", home) is None)
    secret = kube.get("secret", "keep-signing-keys", "-n", home)
    assert secret is not None
    assert not secret["metadata"].get("ownerReferences")
    wait_for(
        lambda: kube.get("secret", "drop-signing-keys", "-n", home) is None,
        what="the garbage collector to delete the Secret",
    )

    # The same Issuer created again adopts the retained Secret: its signers' keys are published again.
    retained = kube.secret(home, "keep-signing-keys") or {}
    signer = Signer.from_secret_data(retained)
    kube.apply(issuer(home, "keep", rotation=FAST_ROTATION, deletionPolicy="Retain"))
    wait_for(lambda: _ready(kube, "issuer", "keep", "-n", home), what="the re-created Issuer Ready")
    token = signer.mint(subject="svc")

    def verifies() -> bool:
        files = kube.configmap(target, name) or {}
        if f"issuer.{home}.keep.jwks.json" not in files:
            return False
        TrustStore.from_trust(parse_trust_files(files)[0]).verify(token)
        return True

    wait_for(verifies, what="a token of the retained Secret to verify again")


def test_metrics_and_liveness_endpoints_answer(operator: OperatorProcess, kube: Kube) -> None:
    assert operator.healthy()
    text = operator.metrics()
    for metric in (
        "jwt_trust_api_writes_total",
        "jwt_trust_keys",
        "jwt_trust_namespaces_matched",
        "jwt_trust_seconds_to_next_rotation",
    ):
        assert metric in text, metric


def test_a_deleted_issuer_and_policy_leave_no_metric_series(operator: OperatorProcess, kube: Kube) -> None:
    labels = _label()
    home = kube.namespace()
    kube.namespace(labels)
    kube.apply(issuer(home, "gone", rotation=FAST_ROTATION))
    name = f"p-{uuid.uuid4().hex[:8]}"
    kube.apply(policy(name, [(home, "gone")], labels))
    series = (f'issuer="{home}/gone"', f'policy="{name}"')
    wait_for(lambda: all(s in operator.metrics() for s in series), what="the objects' metric series")

    kube.plane.kubectl("delete", "trustpolicy", name, "--timeout=30s")
    kube.plane.kubectl("delete", "issuer", "gone", "-n", home, "--timeout=30s")
    wait_for(
        lambda: not any(s in operator.metrics() for s in series), timeout=10, what="the series to be removed"
    )


def test_stopping_the_operator_wakes_sleeping_daemons_at_once(operator: OperatorProcess, kube: Kube) -> None:
    # Daemons sleep until their next event, minutes away here. kopf stops them by a flag and cancels
    # them only 5 s later (cancellation_backoff): a sleep that ignored the flag would make every stop,
    # and every peering hand-over, wait that long.
    home = kube.namespace()
    slow = {"every": "24h", "maxTokenLifetime": "1h", "propagation": "1m", "leeway": "1m"}
    kube.apply(issuer(home, "sleeper", rotation=slow))
    wait_for(lambda: kube.secret(home, "sleeper-signing-keys"), what="the first reconciliation")
    time.sleep(1)  # the daemon is asleep now, until its key activates minutes from now
    started = time.monotonic()
    operator.stop()
    stopped_in = time.monotonic() - started
    operator.start()
    assert stopped_in < 3, f"stopping took {stopped_in:.1f}s"


FREEZE_LABEL = "e2e.jwt-trust.dev/freeze-configmaps"


def _configmap_freeze() -> list[dict[str, Any]]:
    selector = {"matchLabels": {FREEZE_LABEL: "yes"}}
    rules = [
        {
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "operations": ["CREATE", "UPDATE"],
            "resources": ["configmaps"],
        }
    ]
    return [
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": "e2e-freeze-configmaps"},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {"resourceRules": rules},
                "validations": [
                    {"expression": "false", "message": "ConfigMaps are frozen in this namespace"}
                ],
            },
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": "e2e-freeze-configmaps"},
            "spec": {
                "policyName": "e2e-freeze-configmaps",
                "validationActions": ["Deny"],
                "matchResources": {"namespaceSelector": selector},
            },
        },
    ]


def _frozen_namespace(kube: Kube, labels: dict[str, str]) -> str:
    """A new namespace with ``labels`` in which an admission policy refuses every ConfigMap write
    while it carries the freeze label."""
    blocked = kube.namespace(labels)
    kube.apply(*_configmap_freeze())
    kube.plane.kubectl("label", "namespace", blocked, f"{FREEZE_LABEL}=yes")

    # The API server enforces a new admission policy only once its own informer has it: probe first,
    # or the operator's first write may slip through.
    def denied() -> bool:
        probe = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": f"probe-{uuid.uuid4().hex[:8]}", "namespace": blocked},
        }
        return kube.try_apply(probe)[0] != 0

    wait_for(denied, what="the admission policy to take effect")
    return blocked


def test_a_key_does_not_activate_until_every_target_has_been_written(
    operator: OperatorProcess, kube: Kube
) -> None:
    labels = _label()
    home, blocked = kube.namespace(), _frozen_namespace(kube, labels)
    name = f"p-{uuid.uuid4().hex[:8]}"
    kube.apply(policy(name, [(home, "idp")], labels))
    kube.apply(issuer(home, "idp", rotation=FAST_ROTATION))

    wait_for(
        lambda: (c := kube.condition("trustpolicy", name)) and c["reason"] == "WriteFailed",
        what="WriteFailed",
    )
    condition = wait_for(
        lambda: (
            (c := kube.condition("issuer", "idp", "-n", home)) and c["reason"] == "AwaitingPublication" and c
        ),
        what="AwaitingPublication",
    )
    assert name in condition["message"]
    time.sleep(6)  # well past P + M: still nothing may sign
    keys = (kube.get("issuer", "idp", "-n", home) or {})["status"]["keys"]
    assert [k["state"] for k in keys] == ["pending"]

    kube.plane.kubectl("label", "namespace", blocked, f"{FREEZE_LABEL}-")
    wait_for(lambda: kube.configmap(blocked, name), timeout=20, what="the write to succeed once allowed")
    kube.plane.kubectl("wait", "--for=condition=Ready", "issuer/idp", "-n", home, "--timeout=30s")
    keys = (kube.get("issuer", "idp", "-n", home) or {})["status"]["keys"]
    first = keys[0]
    assert first["activatesAt"] >= first["publishedAt"]


def _denied_writes(kube: Kube) -> int:
    """How many writes the freeze policy has refused, by the API server's own count."""
    text = kube.plane.kubectl("get", "--raw", "/metrics").stdout
    name = "apiserver_validating_admission_policy_check_total"
    assert f"{name}{{" in text, "the API server reports no admission policy checks"
    return int(metric_total(text, name, policy="e2e-freeze-configmaps", enforcement_action="deny"))


def test_a_target_that_keeps_refusing_writes_is_retried_with_backoff_and_reported_once(
    operator: OperatorProcess, kube: Kube
) -> None:
    labels = _label()
    home, blocked = kube.namespace(), _frozen_namespace(kube, labels)
    kube.apply(issuer(home, "idp", rotation=FAST_ROTATION))
    name = f"p-{uuid.uuid4().hex[:8]}"
    kube.apply(policy(name, [(home, "idp")], labels))
    wait_for(
        lambda: (c := kube.condition("trustpolicy", name)) and c["reason"] == "WriteFailed",
        what="WriteFailed",
    )
    before = _denied_writes(kube)
    time.sleep(45)
    retries = _denied_writes(kube) - before
    # Retries 1, 2, 4, 8, 16, 32 s apart (at most 10 % sooner): at most 5 fall in 45 s, plus one that a
    # change of the Issuer's status may prompt. A fixed 5 s retry would have made 9.
    assert 1 <= retries <= 6, retries
    # The summary and the per-namespace message each posted once: not once per retry.
    events = [e for e in kube.events("default", name) if e["reason"] == "WriteFailed"]
    assert 1 <= len(events) <= 2, [e["message"] for e in events]
    kube.plane.kubectl("label", "namespace", blocked, f"{FREEZE_LABEL}-")
    # Lifting the refusal changes the namespace, which prompts a write at once, whatever the backoff.
    wait_for(lambda: kube.configmap(blocked, name), timeout=10, what="the write once allowed")


def test_a_deleted_namespace_is_skipped_while_terminating_and_dropped_after(
    operator: OperatorProcess, kube: Kube
) -> None:
    labels = _label()
    home, staying, leaving = kube.namespace(), kube.namespace(labels), kube.namespace(labels)
    kube.apply(issuer(home, "idp", rotation=FAST_ROTATION))
    name = f"p-{uuid.uuid4().hex[:8]}"
    kube.apply(policy(name, [(home, "idp")], labels))
    wait_for(lambda: kube.configmap(leaving, name) and kube.configmap(staying, name))

    kube.plane.kubectl("delete", "namespace", leaving, "--wait=false")
    wait_for(
        lambda: kube.get("namespace", leaving) is None, timeout=60, what="the namespace controller to finish"
    )
    wait_for(
        lambda: (kube.get("trustpolicy", name) or {})["status"]["matchedNamespaces"] == 1, what="matched 1"
    )
    assert _ready(kube, "trustpolicy", name)
    assert not [e for e in kube.events("default", name) if leaving in e.get("message", "")]


def test_a_revoked_token_is_listed_in_trust_json_and_rejected_until_it_expires(
    operator: OperatorProcess, kube: Kube
) -> None:
    labels = _label()
    home, target = kube.namespace(), kube.namespace(labels)
    kube.apply(issuer(home, "idp", rotation=FAST_ROTATION))
    name = f"p-{uuid.uuid4().hex[:8]}"
    kube.apply(policy(name, [(home, "idp")], labels, verification={"audiences": ["api://orders"]}))
    kube.plane.kubectl("wait", "--for=condition=Ready", "issuer/idp", "-n", home, "--timeout=60s")
    signer = Signer.from_secret_data(wait_for(lambda: kube.secret(home, "idp-signing-keys")))
    token = signer.mint({"jti": "stolen-1"}, subject="alice", audience="api://orders", lifetime=3)
    expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    revoked = {"spec": {"revokedTokens": [{"jti": "stolen-1", "expiresAt": expires}]}}
    kube.plane.kubectl("patch", "issuer", "idp", "-n", home, "--type=merge", "-p", json.dumps(revoked))

    def listed() -> bool:
        trust, _ = parse_trust_files(kube.configmap(target, name) or {})
        return (
            "stolen-1",
            calendar.timegm(time.strptime(expires, "%Y-%m-%dT%H:%M:%SZ")),
        ) in trust.issuers[0].revoked_jtis

    wait_for(listed, timeout=15, what="the jti in trust.json")
    store = TrustStore.from_trust(parse_trust_files(kube.configmap(target, name) or {})[0])
    with pytest.raises(RevokedToken):
        store.verify(token)
    assert store.verify(signer.mint(subject="alice", audience="api://orders"))["sub"] == "alice"
