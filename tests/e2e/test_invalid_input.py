"""Bad input gets a clear error and loses nothing.

Mistakes the CRD schema can express are refused by the API server with a message naming the field;
the rest surface as ``Ready=False`` with a reason and an Event, while whatever was already published
stays published, and the operator keeps running (no crash loop).
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest
from support import FAST_ROTATION, Kube, issuer, policy, wait_for

from jwt_trust.keys import generate_private_key, public_jwk
from jwt_trust.projection import JWKS_FILE
from jwt_trust_testing.https import Route, serve_https
from jwt_trust_testing.operator import OperatorProcess

pytestmark = pytest.mark.e2e

SELECTOR = {"matchLabels": {"x": "y"}}
ISSUER_REF = [{"namespace": "default", "name": "a"}]


def _issuer_spec(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "jwt-trust.dev/v1alpha1",
        "kind": "Issuer",
        "metadata": {"name": "bad", "namespace": "default"},
        "spec": spec,
    }


def _policy_spec(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "jwt-trust.dev/v1alpha1",
        "kind": "TrustPolicy",
        "metadata": {"name": "bad"},
        "spec": spec,
    }


REFUSED_BY_SCHEMA = {
    "unsupported algorithm": (
        _issuer_spec(issuer="https://x", algorithm="HS256"),
        'Unsupported value: "HS256"',
    ),
    "none algorithm": (_issuer_spec(issuer="https://x", algorithm="none"), 'Unsupported value: "none"'),
    "rotation shorter than propagation + margin": (
        _issuer_spec(issuer="https://x", rotation={"every": "1m", "propagation": "5m"}),
        "rotation.every must be at least propagation + margin",
    ),
    "zero token lifetime": (
        _issuer_spec(issuer="https://x", rotation={"maxTokenLifetime": "0s"}),
        "maxTokenLifetime must be between",
    ),
    "duration that is not a duration": (
        _issuer_spec(issuer="https://x", rotation={"every": "daily"}),
        "spec.rotation.every",
    ),
    "issuer that is not a URL or URN": (_issuer_spec(issuer="my issuer"), "issuer must be a URL"),
    "missing issuer": (_issuer_spec(algorithm="ES256"), "spec.issuer: Required value"),
    "JWKS over plain http": (
        _issuer_spec(issuer="https://x", external={"jwksURL": "http://idp/jwks"}),
        "must use https",
    ),
    "both a JWKS URL and an inline JWKS": (
        _issuer_spec(issuer="https://x", external={"jwksURL": "https://idp/jwks", "jwks": {"keys": []}}),
        "exactly one of external.jwksURL and external.jwks",
    ),
    "RSA key size on an EC issuer": (
        _issuer_spec(issuer="https://x", rsaKeySize=2048),
        "rsaKeySize applies only",
    ),
    "RSA key too small": (
        _issuer_spec(issuer="https://x", algorithm="RS256", rsaKeySize=1024),
        "Unsupported value: 1024",
    ),
    "malformed kid to revoke": (
        _issuer_spec(issuer="https://x", revokedKeys=["not a kid!"]),
        "spec.revokedKeys[0]",
    ),
    "revoked token without expiry": (
        _issuer_spec(issuer="https://x", revokedTokens=[{"jti": "a"}]),
        "expiresAt: Required value",
    ),
    "policy selecting every namespace": (
        _policy_spec(issuers=ISSUER_REF, namespaceSelector={}),
        "an empty selector would select every namespace",
    ),
    "policy without a selector": (_policy_spec(issuers=ISSUER_REF), "spec.namespaceSelector: Required value"),
    "policy without issuers": (
        _policy_spec(issuers=[], namespaceSelector=SELECTOR),
        "should have at least 1 items",
    ),
    "In without values": (
        _policy_spec(
            issuers=ISSUER_REF, namespaceSelector={"matchExpressions": [{"key": "a", "operator": "In"}]}
        ),
        "In and NotIn need values",
    ),
    "policy allowing none": (
        _policy_spec(issuers=ISSUER_REF, namespaceSelector=SELECTOR, verification={"algorithms": ["none"]}),
        'Unsupported value: "none"',
    ),
    "excessive verifier leeway": (
        _policy_spec(issuers=ISSUER_REF, namespaceSelector=SELECTOR, verification={"leeway": "1h"}),
        "leeway must be at most 10m",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED_BY_SCHEMA))
def test_the_schema_refuses_with_a_clear_message(case: str, operator: OperatorProcess, kube: Kube) -> None:
    obj, message = REFUSED_BY_SCHEMA[case]
    code, stderr = kube.try_apply(obj)
    assert code != 0
    assert message in stderr, stderr


def _not_ready(kube: Kube, reason: str, *args: str) -> dict[str, Any]:
    return wait_for(
        lambda: (c := kube.condition(*args)) and c["status"] == "False" and c["reason"] == reason and c,
        timeout=30,
        what=f"Ready=False reason {reason}",
    )


def _event(kube: Kube, namespace: str, name: str, reason: str) -> None:
    wait_for(
        lambda: any(e["reason"] == reason for e in kube.events(namespace, name)), what=f"a {reason} Event"
    )


def test_unknown_issuer_reference_is_reported_and_the_other_issuers_stay_published(
    operator: OperatorProcess, kube: Kube
) -> None:
    labels = {"e2e.jwt-trust.dev/group": uuid.uuid4().hex[:12]}
    home, target = kube.namespace(), kube.namespace(labels)
    kube.apply(issuer(home, "idp", rotation=FAST_ROTATION))
    name = f"p-{uuid.uuid4().hex[:8]}"
    kube.apply(policy(name, [(home, "idp")], labels))
    before = wait_for(
        lambda: (files := kube.configmap(target, name)) and json.loads(files[JWKS_FILE])["keys"] and files
    )

    kube.apply(policy(name, [(home, "idp"), (home, "typo")], labels))
    condition = _not_ready(kube, "IssuerNotFound", "trustpolicy", name)
    assert f"{home}/typo" in condition["message"]
    _event(kube, "default", name, "IssuerNotFound")
    after = json.loads((kube.configmap(target, name) or {})[JWKS_FILE])["keys"]
    assert {k["kid"] for k in json.loads(before[JWKS_FILE])["keys"]} & {k["kid"] for k in after}


def test_a_secret_we_did_not_create_is_not_touched(operator: OperatorProcess, kube: Kube) -> None:
    ns = kube.namespace()
    foreign = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "mine-signing-keys", "namespace": ns},
        "stringData": {"x": "y"},
    }
    kube.apply(foreign)
    kube.apply(issuer(ns, "mine", rotation=FAST_ROTATION))
    _not_ready(kube, "SecretNotOwned", "issuer", "mine", "-n", ns)
    _event(kube, ns, "mine", "SecretNotOwned")
    assert kube.secret(ns, "mine-signing-keys") == {"x": b"y"}


def test_a_corrupt_signing_secret_is_reported_and_not_overwritten(
    operator: OperatorProcess, kube: Kube
) -> None:
    ns = kube.namespace()
    kube.apply(issuer(ns, "fragile", rotation=FAST_ROTATION))
    wait_for(lambda: kube.secret(ns, "fragile-signing-keys"))
    garbage = base64.b64encode(b"{not json").decode()
    kube.plane.kubectl(
        "patch",
        "secret",
        "fragile-signing-keys",
        "-n",
        ns,
        "--type=merge",
        "-p",
        json.dumps({"data": {"keys.json": garbage}}),
    )
    _not_ready(kube, "CorruptSecret", "issuer", "fragile", "-n", ns)
    assert (kube.secret(ns, "fragile-signing-keys") or {})["keys.json"] == b"{not json"
    # Status keeps publishing the keys it had.
    assert (kube.get("issuer", "fragile", "-n", ns) or {})["status"]["keys"]


def test_a_bad_edit_of_an_external_jwks_keeps_the_published_keys(
    operator: OperatorProcess, kube: Kube
) -> None:
    labels = {"e2e.jwt-trust.dev/group": uuid.uuid4().hex[:12]}
    home, target = kube.namespace(), kube.namespace(labels)
    good = {"keys": [public_jwk(generate_private_key("ES256").public_key(), "ES256")]}
    kube.apply(issuer(home, "idp", external={"jwks": good}))
    name = f"p-{uuid.uuid4().hex[:8]}"
    kube.apply(policy(name, [(home, "idp")], labels))
    kid = good["keys"][0]["kid"]
    wait_for(
        lambda: kid in (kube.configmap(target, name) or {}).get(JWKS_FILE, b"").decode(),
        what="the external key published",
    )

    leaked = {"keys": [{**good["keys"][0], "d": "c2VjcmV0"}]}
    kube.apply(issuer(home, "idp", external={"jwks": leaked}))
    condition = _not_ready(kube, "InvalidJWKS", "issuer", "idp", "-n", home)
    assert "private" in condition["message"]
    assert "c2VjcmV0" not in condition["message"]
    _event(kube, home, "idp", "InvalidJWKS")
    published = (kube.configmap(target, name) or {})[JWKS_FILE].decode()
    assert kid in published
    assert '"d"' not in published


def test_an_unreachable_jwks_url_is_reported_and_the_last_good_keys_stay(
    operator: OperatorProcess, kube: Kube
) -> None:
    labels = {"e2e.jwt-trust.dev/group": uuid.uuid4().hex[:12]}
    home, target = kube.namespace(), kube.namespace(labels)
    jwks = {"keys": [public_jwk(generate_private_key("EdDSA").public_key(), "EdDSA")]}
    kid = jwks["keys"][0]["kid"]
    with serve_https({"/jwks": Route(body=json.dumps(jwks).encode())}) as server:
        external = {
            "jwksURL": f"{server.base_url}/jwks",
            "caBundle": server.ca_pem,
            "refreshInterval": "10s",
            "timeout": "2s",
        }
        kube.apply(issuer(home, "remote", external=external))
        name = f"p-{uuid.uuid4().hex[:8]}"
        kube.apply(policy(name, [(home, "remote")], labels))
        kube.plane.kubectl("wait", "--for=condition=Ready", "issuer/remote", "-n", home, "--timeout=30s")
        wait_for(
            lambda: kid in (kube.configmap(target, name) or {}).get(JWKS_FILE, b"").decode(),
            what="mirrored key",
        )
        server.routes["/jwks"] = Route(status=503)
        condition = _not_ready(kube, "JWKSFetchFailed", "issuer", "remote", "-n", home)
    assert "last good" in condition["message"]
    _event(kube, home, "remote", "JWKSFetchFailed")
    assert kid in (kube.configmap(target, name) or {})[JWKS_FILE].decode()

    # A URL that was never reachable: Ready=False from the start, nothing to publish, no crash.
    kube.apply(issuer(home, "nowhere", external={"jwksURL": "https://127.0.0.1:1/jwks", "timeout": "1s"}))
    _not_ready(kube, "JWKSFetchFailed", "issuer", "nowhere", "-n", home)


def test_the_operator_kept_running_through_every_mistake(operator: OperatorProcess) -> None:
    # Runs after the tests above in this module: not one of them restarted or crashed the operator.
    assert operator.process is not None
    assert operator.process.poll() is None
    assert operator.healthy()
    assert "Traceback" not in operator.logs()
