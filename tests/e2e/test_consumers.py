"""Consumers of a TrustPolicy on the real control plane, judged by upstream code.

The operator writes an Istio RequestAuthentication and one ConfigMap per issuer (the layout Envoy
Gateway's SecurityPolicy localJWKS reads) into every selected namespace. A Go checker built from
istio.io/client-go, istio.io/api, k8s.io/api and go-jose reads every object back strictly and verifies
tokens minted from the Issuer's Secret against it. The Istio CRD is a test copy with the upstream
group, version, kind and schema (tests/e2e/crds/); the first test runs before it is installed.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from support import ROTATION, Kube, P, issuer, policy, wait_for

from consumers import (
    ISTIO_CRD,
    Checker,
    ConsumerMonitor,
    build_checker,
    install_istio_crd,
    mint,
    token_kid,
)
from jwt_trust.signer import Signer
from jwt_trust_testing.operator import OperatorProcess, metric_total

pytestmark = pytest.mark.e2e

AUDIENCE = "api://consumers"
# A key activates P + M after every target holds it: seconds here; no rotation during a test.
QUICK = {**ROTATION, "every": "1h"}
CONSUMERS = {
    "requestAuthentication": {
        "name": "jwt",
        "selector": {"matchLabels": {"app": "api"}},
        "forwardOriginalToken": True,
        "outputPayloadToHeader": "x-jwt-payload",
    },
    "jwksConfigMaps": {"namePrefix": "gw"},
}


@pytest.fixture(scope="module")
def checker() -> Iterator[Checker]:
    process = Checker(build_checker())
    try:
        yield process
    finally:
        process.close()


def setup(
    kube: Kube, prefix: str, *, rotation: dict[str, str] = QUICK, namespaces: int = 1
) -> tuple[str, list[str], dict[str, str], str]:
    """An Issuer in the first of ``namespaces`` fresh namespaces and a policy with both consumers
    selecting them; returns (policy name, namespaces, selector labels, iss)."""
    labels = {"e2e.jwt-trust.dev/group": uuid.uuid4().hex[:12]}
    spaces = [kube.namespace(labels) for _ in range(namespaces)]
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    kube.apply(
        policy(
            name, [(spaces[0], "idp")], labels, verification={"audiences": [AUDIENCE]}, consumers=CONSUMERS
        )
    )
    # The Issuer after the policy: its first key then waits for every target of the policy.
    kube.apply(issuer(spaces[0], "idp", rotation=rotation))
    return name, spaces, labels, f"https://idp.{spaces[0]}.example"


def reason(kube: Kube, *args: str) -> str:
    return str((kube.condition(*args) or {}).get("reason", ""))


def signer(kube: Kube, namespace: str) -> Signer:
    return Signer.from_secret_data(wait_for(lambda: kube.secret(namespace, "idp-signing-keys")))


def check_all(kube: Kube, checker: Checker, namespace: str, iss: str, token: str, *, home: str = "") -> None:
    """Every consumer object in ``namespace`` decodes strictly and verifies ``token`` (``home``: the
    Issuer's namespace, when it is another one)."""
    ra = kube.get("requestauthentication", "jwt", "-n", namespace)
    assert ra is not None
    answer = checker.check(ra, token)
    assert answer["verified"], answer
    assert answer["kids"][iss]
    assert token_kid(token) in answer["kids"][iss]
    configmap = kube.get("configmap", f"gw.{home or namespace}.idp", "-n", namespace)
    assert configmap is not None
    answer = checker.check(configmap, token, issuer=iss, audience=AUDIENCE)
    assert answer["verified"], answer


def test_without_the_istio_crd_the_policy_says_so_holds_activation_and_recovers_once_installed(
    operator: OperatorProcess, kube: Kube, checker: Checker
) -> None:
    assert kube.get("crd", ISTIO_CRD) is None, "this test runs before the Istio CRD is installed"
    name, (ns,), _labels, iss = setup(kube, "nocrd")
    wait_for(lambda: reason(kube, "trustpolicy", name) == "ConsumerCRDMissing", what="ConsumerCRDMissing")
    condition = kube.condition("trustpolicy", name) or {}
    assert "requestauthentications.security.istio.io/v1" in condition["message"]
    assert "CRD" in condition["message"]
    assert any(e["reason"] == "ConsumerCRDMissing" for e in kube.events("default", name))
    # The other targets work; the key waits for the consumer that cannot hold it.
    wait_for(lambda: kube.configmap(ns, f"gw.{ns}.idp"), what="the gateway ConfigMap")
    assert kube.configmap(ns, name) is not None
    wait_for(
        lambda: reason(kube, "issuer", "idp", "-n", ns) == "AwaitingPublication",
        what="the first key waiting for publication",
    )
    time.sleep(3)
    assert reason(kube, "issuer", "idp", "-n", ns) == "AwaitingPublication"
    assert f"TrustPolicy {name}" in (kube.condition("issuer", "idp", "-n", ns) or {})["message"]
    status = (kube.get("trustpolicy", name) or {})["status"]
    assert status["publishedKeys"] == [{"issuer": f"{ns}/idp", "kids": []}]
    assert status["failedNamespaces"][0]["kind"] == "RequestAuthentication"
    # A resource that is not served is not a broken cache: liveness stays green.
    assert operator.healthy()
    metrics = operator.metrics()
    assert metric_total(metrics, "jwt_trust_targets_failed", policy=name, kind="RequestAuthentication") == 1
    assert metric_total(metrics, "jwt_trust_watch_restarts_total", resource="requestauthentications") == 0

    install_istio_crd(kube)
    wait_for(
        lambda: kube.get("requestauthentication", "jwt", "-n", ns),
        timeout=60,
        what="the RequestAuthentication",
    )
    wait_for(lambda: reason(kube, "trustpolicy", name) == "Synced", timeout=30, what="Synced")
    wait_for(
        lambda: reason(kube, "issuer", "idp", "-n", ns) == "KeyActive", timeout=30, what="the key active"
    )
    check_all(kube, checker, ns, iss, mint(kube.secret(ns, "idp-signing-keys") or {}, AUDIENCE))
    assert (
        metric_total(
            operator.metrics(), "jwt_trust_targets_failed", policy=name, kind="RequestAuthentication"
        )
        == 0
    )
    kube.plane.kubectl("delete", "trustpolicy", name, "--wait=true", "--timeout=60s")


@pytest.fixture
def istio_crd(kube: Kube) -> None:
    install_istio_crd(kube)


def test_consumer_objects_follow_rotation_and_never_fail_a_valid_token(
    operator: OperatorProcess, kube: Kube, checker: Checker, istio_crd: None
) -> None:
    name, (ns,), _labels, iss = setup(kube, "rot", rotation=ROTATION)
    kube.plane.kubectl("wait", "--for=condition=Ready", "issuer/idp", "-n", ns, "--timeout=60s")
    wait_for(lambda: kube.get("requestauthentication", "jwt", "-n", ns), what="the RequestAuthentication")
    # Counter first, revision last (and the other way round at the end): a change in between can
    # only add a write, never hide one.
    before = operator.writes("requestauthentications")
    revision = (kube.get("trustpolicy", name) or {})["status"]["revision"]
    consumers = ["requestauthentication/jwt", f"configmap/gw.{ns}.idp"]
    with ConsumerMonitor(
        kube,
        checker,
        ns,
        "idp-signing-keys",
        consumers,
        issuer=iss,
        audience=AUDIENCE,
        propagation=P,
        lifetime=4,
    ) as watch:
        time.sleep(40)  # R = 6 s: at least 5 rotations
    time.sleep(1)
    changes = (kube.get("trustpolicy", name) or {})["status"]["revision"] - revision
    writes = operator.writes("requestauthentications") - before
    print(
        f"consumer rotation: {len(watch.kids)} keys signed, {watch.minted} tokens, {watch.verified} "
        f"verifications, {len(watch.failures)} failures, {watch.paused} pauses, {writes:.0f} "
        f"RequestAuthentication writes for {changes} changes of the content"
    )
    assert watch.failures == [], watch.failures[:5]
    assert watch.paused == 0
    assert len(watch.kids) >= 5, f"tokens of only {len(watch.kids)} keys were verified"
    assert watch.verified > 200
    # Only the keys change here, so every revision of the content is one change of the object: one
    # write each, none in between.
    assert changes >= 5
    assert changes <= writes <= changes + 2
    kube.plane.kubectl("delete", "trustpolicy", name, "--wait=true", "--timeout=60s")


def verified(answer: dict[str, Any]) -> bool:
    """Whether the checker verified the token; its error is printed when not."""
    if not answer.get("verified"):
        print("checker:", answer.get("error"))
    return bool(answer.get("verified"))


def settled(kube: Kube, name: str, namespace: str) -> bool:
    """The Issuer's active key and its successor (generated as soon as a key activates) are both
    published by the policy: nothing changes for an hour with QUICK."""
    keys = ((kube.get("issuer", "idp", "-n", namespace) or {}).get("status") or {}).get("keys") or []
    status = (kube.get("trustpolicy", name) or {}).get("status") or {}
    published = {kid for entry in status.get("publishedKeys") or () for kid in entry.get("kids") or ()}
    return (
        len(keys) == 2
        and {k["kid"] for k in keys} <= published
        and reason(kube, "trustpolicy", name) == "Synced"
    )


class PolicyObjectWrites:
    """Counts the writes that change this policy's objects (RequestAuthentications and ConfigMaps
    carrying its label), from a watch: each is one new resourceVersion. Other tests' policies share
    the operator and keep rotating, so the operator's own write counter cannot be used here."""

    def __init__(self, kube: Kube, policy_name: str) -> None:
        self.versions: dict[tuple[str, str], set[str]] = {}
        # kubectl watches one resource type at a time.
        self._processes = [
            subprocess.Popen(
                [
                    str(kube.plane.bin_dir / "kubectl"),
                    "get",
                    resource,
                    "-A",
                    "-l",
                    f"jwt-trust.dev/policy={policy_name}",
                    "--watch",
                    "--output-watch-events",
                    "-o",
                    "json",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=kube.plane.env(),
                text=True,
            )
            for resource in ("requestauthentications", "configmaps")
        ]
        self._readers = [threading.Thread(target=self._read, args=(p,), daemon=True) for p in self._processes]
        for reader in self._readers:
            reader.start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        decoder, buffer = json.JSONDecoder(), ""
        for line in process.stdout:
            buffer += line
            while buffer.strip():
                try:
                    event, end = decoder.raw_decode(buffer.lstrip())
                except ValueError:
                    break
                buffer = buffer.lstrip()[end:]
                obj = event.get("object") or {}
                meta = obj.get("metadata") or {}
                key = (str(obj.get("kind")), f"{meta.get('namespace')}/{meta.get('name')}")
                self.versions.setdefault(key, set()).add(str(meta.get("resourceVersion")))

    def counts(self) -> tuple[int, int]:
        """(RequestAuthentication, ConfigMap) versions seen so far."""
        versions = dict(self.versions)
        return tuple(  # type: ignore[return-value]
            sum(len(v) for (kind, _), v in versions.items() if kind == wanted)
            for wanted in ("RequestAuthentication", "ConfigMap")
        )

    def close(self) -> None:
        for process in self._processes:
            process.terminate()
            process.wait(timeout=10)
        for reader in self._readers:
            reader.join(timeout=10)
        for process in self._processes:
            if process.stdout is not None:
                process.stdout.close()


def test_one_write_per_object_per_change_drift_repaired_foreign_left_alone_and_cleanup(
    operator: OperatorProcess, kube: Kube, checker: Checker, istio_crd: None
) -> None:
    name, (ns1, ns2), labels, iss = setup(kube, "life", namespaces=2)
    wait_for(lambda: reason(kube, "trustpolicy", name) == "Synced", what="Synced")
    wait_for(lambda: reason(kube, "issuer", "idp", "-n", ns1) == "KeyActive", what="the key active")
    token = mint(kube.secret(ns1, "idp-signing-keys") or {}, AUDIENCE)
    for ns in (ns1, ns2):
        check_all(kube, checker, ns, iss, token, home=ns1)
    ra = kube.get("requestauthentication", "jwt", "-n", ns1, "--show-managed-fields") or {}
    assert ra["metadata"]["ownerReferences"][0]["kind"] == "TrustPolicy"
    assert ra["spec"]["selector"] == {"matchLabels": {"app": "api"}}
    assert {(r["forwardOriginalToken"], r["outputPayloadToHeader"]) for r in ra["spec"]["jwtRules"]} == {
        (True, "x-jwt-payload")
    }
    assert [e["manager"] for e in ra["metadata"]["managedFields"] if e["operation"] == "Apply"] == [
        "jwt-trust"
    ]

    # Idle: nothing written.
    wait_for(lambda: settled(kube, name, ns1), what="the next key published")
    writes = PolicyObjectWrites(kube, name)
    try:
        time.sleep(2)  # the watch lists the current versions first
        idle = writes.counts()
        assert idle[0] > 0, "the watch saw nothing"
        time.sleep(5)
        assert writes.counts() == idle

        # One change (a second audience): each RequestAuthentication and each projected ConfigMap once;
        # the gateway ConfigMaps hold only keys, which did not change.
        kube.plane.kubectl(
            "patch", "trustpolicy", name, "--type=merge",
            "-p", json.dumps({"spec": {"verification": {"audiences": [AUDIENCE, "api://more"]}}}),
        )  # fmt: skip
        wait_for(
            lambda: all(
                (kube.get("requestauthentication", "jwt", "-n", ns) or {})["spec"]["jwtRules"][0]["audiences"]
                == [AUDIENCE, "api://more"]
                for ns in (ns1, ns2)
            ),
            what="the audiences in every RequestAuthentication",
        )
        time.sleep(2)
        after = writes.counts()
    finally:
        writes.close()
    print(
        f"one change: {after[0] - idle[0]} RequestAuthentication writes, "
        f"{after[1] - idle[1]} ConfigMap writes"
    )
    assert (after[0] - idle[0], after[1] - idle[1]) == (2, 2)

    # Drift: an edited key set is put back.
    kube.plane.kubectl(
        "patch", "requestauthentication", "jwt", "-n", ns1, "--type=json",
        "-p", json.dumps([{"op": "replace", "path": "/spec/jwtRules/0/jwks", "value": '{"keys":[]}'}]),
    )  # fmt: skip
    kube.plane.kubectl(
        "patch", "configmap", f"gw.{ns1}.idp", "-n", ns1, "--type=merge", "-p", '{"data":{"jwks":"{}"}}'
    )
    token = mint(kube.secret(ns1, "idp-signing-keys") or {}, AUDIENCE)  # tokens live 4 s here
    wait_for(
        lambda: verified(checker.check(kube.get("requestauthentication", "jwt", "-n", ns1) or {}, token)),
        what="the RequestAuthentication repaired",
    )
    wait_for(
        lambda: verified(
            checker.check(
                kube.get("configmap", f"gw.{ns1}.idp", "-n", ns1) or {}, token, issuer=iss, audience=AUDIENCE
            )
        ),
        what="the gateway ConfigMap repaired",
    )

    # A foreign RequestAuthentication of the same name in a newly selected namespace is left alone.
    ns3 = kube.namespace()
    foreign: dict[str, Any] = {
        "apiVersion": "security.istio.io/v1",
        "kind": "RequestAuthentication",
        "metadata": {"name": "jwt", "namespace": ns3},
        "spec": {"jwtRules": [{"issuer": "https://someone.else", "jwksUri": "https://someone.else/jwks"}]},
    }
    kube.apply(foreign)
    kube.plane.kubectl("label", "namespace", ns3, *(f"{k}={v}" for k, v in labels.items()))
    wait_for(lambda: reason(kube, "trustpolicy", name) == "TargetNotOwned", what="TargetNotOwned")
    untouched = kube.get("requestauthentication", "jwt", "-n", ns3) or {}
    assert untouched["spec"] == foreign["spec"]
    assert "labels" not in untouched["metadata"]
    # It never held our keys: it does not hold rotation back.
    assert kube.configmap(ns3, f"gw.{ns1}.idp") is not None

    # A namespace relabelled away loses the policy's objects, and only them.
    kube.plane.kubectl("label", "namespace", ns2, *(f"{k}-" for k in labels))
    wait_for(
        lambda: (
            kube.get("requestauthentication", "jwt", "-n", ns2) is None
            and kube.configmap(ns2, f"gw.{ns1}.idp") is None
        ),
        what="the objects in the relabelled namespace removed",
    )

    # Deleting the policy removes every object of it; the foreign one stays.
    kube.plane.kubectl("delete", "trustpolicy", name, "--wait=true", "--timeout=60s")
    assert kube.get("requestauthentication", "jwt", "-n", ns1) is None
    assert kube.configmap(ns1, f"gw.{ns1}.idp") is None
    assert kube.configmap(ns1, name) is None
    assert kube.get("requestauthentication", "jwt", "-n", ns3) is not None


def test_a_forbidden_consumer_write_holds_activation_back_and_is_reported(
    operator: OperatorProcess, kube: Kube, checker: Checker, istio_crd: None
) -> None:
    role = kube.get("clusterrole", "jwt-trust") or {}
    rules = role["rules"]
    (index,) = [i for i, r in enumerate(rules) if "requestauthentications" in r.get("resources", [])]
    read_only = [*rules[:index], {**rules[index], "verbs": ["get", "list", "watch"]}, *rules[index + 1 :]]
    kube.plane.kubectl(
        "patch", "clusterrole", "jwt-trust", "--type=merge", "-p", json.dumps({"rules": read_only})
    )
    try:
        name, (ns,), _labels, iss = setup(kube, "denied")
        wait_for(lambda: reason(kube, "trustpolicy", name) == "WriteFailed", what="WriteFailed")
        message = (kube.condition("trustpolicy", name) or {})["message"]
        assert "RequestAuthentication" in message
        assert "403" in message
        wait_for(
            lambda: reason(kube, "issuer", "idp", "-n", ns) == "AwaitingPublication",
            what="AwaitingPublication",
        )
        wait_for(lambda: kube.configmap(ns, f"gw.{ns}.idp"), what="the other targets written")
    finally:
        kube.plane.kubectl(
            "patch", "clusterrole", "jwt-trust", "--type=merge", "-p", json.dumps({"rules": rules})
        )
    wait_for(
        lambda: reason(kube, "issuer", "idp", "-n", ns) == "KeyActive", timeout=60, what="the key active"
    )
    check_all(kube, checker, ns, iss, mint(kube.secret(ns, "idp-signing-keys") or {}, AUDIENCE))
    kube.plane.kubectl("delete", "trustpolicy", name, "--wait=true", "--timeout=60s")
