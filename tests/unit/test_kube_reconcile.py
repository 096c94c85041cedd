"""Tests of what one reconciliation decides (``jwt_trust.kube.reconcile``), with a fake clock.

The handlers only read, call these functions and apply the outcome, so these tests pin down what a
user and a signer see: when a key counts as published (property-tested: only when every trusting
policy holds it), what the status says at each point of a rotation, how failed writes hold rotation
back (and targets owned by someone else do not), when an external JWKS is fetched again, how long a
policy waits for an Issuer that is about to change, and how failures are classified for retry.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jwt_trust.keys import generate_private_key, public_jwk
from jwt_trust.kube.errors import (
    APIError,
    Conflict,
    NotReady,
    SpecError,
    Transient,
    TransportError,
    api_error,
    retry_after,
)
from jwt_trust.kube.issuers import (
    ExternalJWKS,
    iso,
    parse_issuer_spec,
    records_from_status,
    status_keys,
    step,
    stored_public_keys,
)
from jwt_trust.kube.policies import Projection, Target, parse_policy_spec
from jwt_trust.kube.reconcile import (
    DISCOVERY_POLL_SECONDS,
    DISCOVERY_UNCONFIGURED,
    ISSUER_SETTLE_SECONDS,
    Publication,
    configmap_manifest,
    discovery_urls,
    external_outcome,
    generated_outcome,
    is_ours,
    key_counts,
    not_ready_status,
    policy_outcome,
    policy_writes,
    publication,
    published_keys,
    readable_secret,
    ready_condition,
    refresh_due,
    replica_urls,
    secret_manifest,
    secret_needs_write,
    served_by_every_replica,
    settling,
)
from jwt_trust.projection import IssuerTrust, PolicyTrust, content_hash
from jwt_trust.signer import SigningKeys

T0 = 1_700_000_000
ISSUER = "https://issuer.example"
ROTATION = {"every": "24h", "maxTokenLifetime": "10m", "propagation": "1m", "leeway": "10s", "margin": "1m"}
P_PLUS_M = 120


def issuer_body(status: Mapping[str, Any] | None = None, generation: int = 1, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "jwt-trust.dev/v1alpha1",
        "kind": "Issuer",
        "metadata": {"name": "auth", "namespace": "idp", "uid": "u-1", "generation": generation},
        "spec": {"issuer": ISSUER, "algorithm": "ES256", "rotation": ROTATION, **spec},
        "status": dict(status or {}),
    }


def policy_body(name: str, kids: Mapping[str, list[str]] | None = None, **meta: Any) -> dict[str, Any]:
    return {
        "kind": "TrustPolicy",
        "metadata": {"name": name, "uid": f"uid-{name}", "generation": 1, **meta},
        "spec": {
            "issuers": [{"namespace": "idp", "name": "auth"}],
            "namespaceSelector": {"matchLabels": {"team": "a"}},
        },
        "status": {"publishedKeys": [{"issuer": ref, "kids": ks} for ref, ks in (kids or {}).items()]},
    }


# --- shared ---------------------------------------------------------------------------------------


def test_ready_condition_moves_its_transition_time_only_when_its_status_changes() -> None:
    first = ready_condition(False, "AwaitingPublication", "waits", generation=1, previous={}, now=T0)
    assert first["lastTransitionTime"] == iso(T0)
    same = ready_condition(
        False, "Other", "still not", generation=2, previous={"conditions": [first]}, now=T0 + 50
    )
    assert same["lastTransitionTime"] == iso(T0)
    assert (same["reason"], same["observedGeneration"]) == ("Other", 2)
    flipped = ready_condition(
        True, "KeyActive", "ok", generation=2, previous={"conditions": [same]}, now=T0 + 90
    )
    assert flipped["lastTransitionTime"] == iso(T0 + 90)


def test_a_not_ready_status_keeps_every_published_key() -> None:
    keys = [{"kid": "a", "state": "active"}]
    body = issuer_body({"keys": keys, "activeKeyID": "a", "kopf": {"progress": {}}}, generation=4)
    status = not_ready_status(body, SpecError("InvalidDuration", "bad"), T0)
    assert status["keys"] == keys
    assert status["activeKeyID"] == "a"
    assert status["observedGeneration"] == 4
    assert status["conditions"][0]["reason"] == "InvalidDuration"
    assert "kopf" not in status


def test_long_condition_messages_are_cut_to_the_api_limit() -> None:
    assert len(ready_condition(False, "R", "x" * 5000, generation=1, previous={}, now=T0)["message"]) == 1024


# --- the Secret -----------------------------------------------------------------------------------


def test_a_secret_we_did_not_create_is_not_ready_and_untouched() -> None:
    foreign = {"metadata": {"name": "auth-signing-keys"}, "data": {"keys.json": "e30="}}
    with pytest.raises(NotReady) as raised:
        readable_secret("auth", foreign)
    assert raised.value.reason == "SecretNotOwned"
    assert readable_secret("auth", None) is None
    ours = {
        "metadata": {"managedFields": [{"manager": "jwt-trust", "operation": "Apply"}]},
        "data": {"k": "YQ=="},
    }
    assert is_ours(ours)
    assert readable_secret("auth", ours) == {"k": b"a"}
    assert not is_ours({"metadata": {"managedFields": [{"manager": "jwt-trust", "operation": "Update"}]}})


@pytest.mark.parametrize("retain", [False, True])
def test_the_secret_is_owned_by_its_issuer_unless_retained(retain: bool) -> None:
    spec = parse_issuer_spec({"issuer": ISSUER, "deletionPolicy": "Retain" if retain else "Delete"})
    manifest = secret_manifest(issuer_body(), {"keys.json": b"{}"}, spec)
    assert manifest["data"] == {"keys.json": base64.b64encode(b"{}").decode()}
    assert ("ownerReferences" in manifest["metadata"]) is not retain
    written = {"metadata": {"ownerReferences": manifest["metadata"].get("ownerReferences")}}
    assert not secret_needs_write(written, {"keys.json": b"{}"}, {"keys.json": b"{}"}, spec)
    assert secret_needs_write(written, {"keys.json": b"{}"}, {"keys.json": b"[]"}, spec)
    other = parse_issuer_spec({"issuer": ISSUER, "deletionPolicy": "Delete" if retain else "Retain"})
    assert secret_needs_write(written, {"keys.json": b"{}"}, {"keys.json": b"{}"}, other)
    assert secret_needs_write(None, None, {"keys.json": b"{}"}, spec)


# --- publication: a key counts only when every trusting policy holds it ----------------------------

KIDS = st.sampled_from(["k1", "k2", "k3", "k4"])


@settings(max_examples=300, deadline=None)
@given(
    held=st.lists(st.tuples(st.frozensets(KIDS), st.booleans(), st.booleans()), max_size=5),
)
def test_a_key_is_published_exactly_when_every_trusting_policy_holds_it(
    held: list[tuple[frozenset[str], bool, bool]],
) -> None:
    policies = []
    for i, (kids, trusts, deleting) in enumerate(held):
        body = policy_body(f"p{i}", {"idp/auth": sorted(kids), "idp/other": ["k1", "k2", "k3", "k4"]})
        if not trusts:
            body["spec"]["issuers"] = [{"namespace": "idp", "name": "other"}]
        if deleting:
            body["metadata"]["deletionTimestamp"] = "2023-11-14T22:13:20Z"
        policies.append(body)
    result = publication("idp/auth", policies)
    counted = [kids for kids, trusts, deleting in held if trusts and not deleting]
    for kid in ("k1", "k2", "k3", "k4"):
        assert (kid in result.kids) == (bool(counted) and all(kid in kids for kids in counted))
    assert len(result.held) == len(counted)
    for kid in ("k1", "k2"):
        assert result.waiting_for([kid]) == sorted(
            f"TrustPolicy p{i}"
            for i, (kids, trusts, deleting) in enumerate(held)
            if trusts and not deleting and kid not in kids
        )


def test_no_trusting_policy_publishes_nothing() -> None:
    assert publication("idp/auth", []).kids == frozenset()
    assert Publication({}).waiting_for(["k"]) == []


# --- an Issuer's status through a rotation --------------------------------------------------------


def run_issuer(body: dict[str, Any], stored: Any, trust: Publication, now: int) -> tuple[Any, Any]:
    spec = parse_issuer_spec(body["spec"])
    status = body["status"]
    result = step(
        now, spec, stored, trust.kids, recorded=records_from_status(status), has_targets=bool(trust.held)
    )
    return result, generated_outcome(body, spec, result, trust, now)


def test_the_status_follows_a_key_from_creation_to_signing_and_always_names_the_next_rotation() -> None:
    body = issuer_body()
    spec = parse_issuer_spec(body["spec"])
    nobody = publication("idp/auth", [policy_body("web")])
    result, outcome = run_issuer(body, None, nobody, T0)
    kid = result.generated[0]
    assert outcome.status["conditions"][0]["reason"] == "AwaitingPublication"
    assert "web" in outcome.status["conditions"][0]["message"]
    assert "activeKeyID" not in outcome.status
    # No activation time exists before publication: the earliest one is shown.
    assert outcome.status["nextRotation"] == iso(T0 + P_PLUS_M)
    assert outcome.events == (("Normal", "KeyGenerated", f"generated ES256 key {kid}"),)
    assert outcome.generated == 1

    stored = SigningKeys.from_secret_data(result.secret_data(spec))
    body = issuer_body(outcome.status)
    published = publication("idp/auth", [policy_body("web", {"idp/auth": [kid]})])
    result, outcome = run_issuer(body, stored, published, T0 + 10)
    assert outcome.status["conditions"][0]["reason"] == "AwaitingActivation"
    assert outcome.status["nextRotation"] == iso(T0 + 10 + P_PLUS_M)
    assert outcome.wake_at == T0 + 10 + P_PLUS_M

    stored = SigningKeys.from_secret_data(result.secret_data(spec))
    body = issuer_body(outcome.status)
    result, outcome = run_issuer(body, stored, published, T0 + 10 + P_PLUS_M)
    assert outcome.status["activeKeyID"] == kid
    assert outcome.status["conditions"][0]["reason"] == "KeyActive"
    successor = result.generated[0]
    # Right after Ready the successor waits for publication; the column still says when the
    # rotation can happen at the earliest: one rotation period after the active key started.
    assert outcome.status["nextRotation"] == iso(T0 + 10 + P_PLUS_M + 24 * 3600)
    assert key_counts(outcome.status) == {"pending": 1, "next": 0, "active": 1, "retired": 0}
    assert successor != kid


def test_a_revocation_is_counted_for_the_metric() -> None:
    body = issuer_body()
    spec = parse_issuer_spec(body["spec"])
    result = step(T0, spec, None, (), has_targets=False)
    kid = result.generated[0]
    revoked_spec = parse_issuer_spec({**body["spec"], "revokedKeys": [kid]})
    stored = SigningKeys.from_secret_data(result.secret_data(spec))
    again = step(T0 + 1, revoked_spec, stored, (), has_targets=False)
    outcome = generated_outcome(body, revoked_spec, again, Publication({}), T0 + 1)
    assert outcome.revoked == 1
    assert ("Warning", "KeyRevoked", f"key {kid} withdrawn") in outcome.events


# --- external JWKS --------------------------------------------------------------------------------


def test_an_external_jwks_is_fetched_again_only_when_due_or_when_its_spec_changed() -> None:
    assert refresh_due(None, "f", 300, T0, has_keys=True) is None
    assert refresh_due((T0, "f"), "f", 300, T0 + 10, has_keys=True) == T0 + 300
    assert refresh_due((T0, "f"), "f", 300, T0 + 300, has_keys=True) is None
    assert refresh_due((T0, "f"), "g", 300, T0 + 10, has_keys=True) is None
    assert refresh_due((T0, "f"), "f", 300, T0 + 10, has_keys=False) is None


def external_jwk() -> dict[str, str]:
    return public_jwk(generate_private_key("ES256").public_key(), "ES256")


def test_a_steady_provider_changes_nothing_in_the_status() -> None:
    jwk = external_jwk()
    first = external_outcome(
        issuer_body(), ExternalJWKS((jwk,)), "https://idp/jwks", None, now=T0, next_fetch=T0 + 300
    )
    assert first.status["jwksUpdatedAt"] == iso(T0)
    assert ("Normal", "JWKSUpdated", "1 keys from https://idp/jwks") in first.events
    assert first.wake_at == T0 + 300
    assert set(first.cleared) == {"JWKSFetchFailed", "JWKSKeysSkipped"}
    again = external_outcome(
        issuer_body(first.status),
        ExternalJWKS((jwk,)),
        "https://idp/jwks",
        None,
        now=T0 + 300,
        next_fetch=T0 + 600,
    )
    assert again.status == first.status
    assert again.events == ()


def test_skipped_external_keys_are_reported_and_the_rest_mirrored() -> None:
    jwk = external_jwk()
    outcome = external_outcome(
        issuer_body(),
        ExternalJWKS((jwk,), ("key #1 skipped: RSA-1024",)),
        "inline JWKS",
        None,
        now=T0,
        next_fetch=None,
    )
    assert [k["kid"] for k in outcome.status["keys"]] == [jwk["kid"]]
    assert ("Warning", "JWKSKeysSkipped", "key #1 skipped: RSA-1024") in outcome.events
    assert "JWKSKeysSkipped" not in outcome.cleared
    assert "skipped: key #1" in outcome.status["conditions"][0]["message"]


def test_keys_generated_before_a_switch_to_an_external_jwks_stay_listed_with_their_removal() -> None:
    body = issuer_body()
    spec = parse_issuer_spec(body["spec"])
    generated = step(T0, spec, None, (), has_targets=False)
    status = {"keys": status_keys(generated.records, generated.public_keys, T0)}
    wound = step(
        T0 + 5,
        spec,
        None,
        (),
        status_keys=stored_public_keys(status),
        recorded=records_from_status(status),
        generate_keys=False,
    )
    jwk = external_jwk()
    outcome = external_outcome(
        issuer_body(status), ExternalJWKS((jwk,)), "inline JWKS", wound, now=T0 + 5, next_fetch=None
    )
    states = [k["state"] for k in outcome.status["keys"]]
    assert states == ["external", "retired"]  # no private key any more: it signs no longer
    assert "generated keys stay published until" in outcome.status["conditions"][0]["message"]
    assert outcome.wake_at == wound.plan.wake_at


# --- TrustPolicy ----------------------------------------------------------------------------------


def test_a_policy_waits_for_a_changed_issuer_but_never_longer_than_the_settle_time() -> None:
    changed = {"idp/auth": issuer_body({"observedGeneration": 1}, generation=2)}
    since: dict[str, float] = {}
    assert settling(["idp/auth"], changed, since, T0) == pytest.approx(T0 + 0.2)
    assert settling(["idp/auth"], changed, since, T0 + ISSUER_SETTLE_SECONDS - 0.1) is not None
    assert settling(["idp/auth"], changed, since, T0 + ISSUER_SETTLE_SECONDS) is None
    settled = {"idp/auth": issuer_body({"observedGeneration": 2}, generation=2)}
    assert settling(["idp/auth"], settled, since, T0 + 10) is None
    assert since == {}
    assert settling(["idp/missing"], settled, since, T0) is None


def policy_setup(issuer_status: Mapping[str, Any]) -> tuple[dict[str, Any], Any, dict[str, Any]]:
    body = policy_body("web")
    spec = parse_policy_spec("web", body["spec"])
    issuers = {"idp/auth": issuer_body(issuer_status)}
    return body, spec, issuers


def status_with_key() -> dict[str, Any]:
    jwk = external_jwk()
    return {"keys": [{"kid": jwk["kid"], "state": "active", "publicKey": jwk}]}


def test_policy_writes_go_to_selected_namespaces_only_and_nothing_when_correct() -> None:
    body, spec, issuers = policy_setup(status_with_key())
    namespaces = {"a1": {"team": "a"}, "b1": {"team": "b"}}
    writes = policy_writes(body, spec, issuers, namespaces=namespaces, targets=[], written=None, now=T0)
    assert writes.matched == ["a1"]
    assert writes.actions == {("ConfigMap", "a1", "web"): "apply"}
    assert writes.revision[0] == 1
    manifest = configmap_manifest(body, "a1", "web", writes.data)
    held = Target("a1", "web", "web", content_hash(manifest["data"]))
    again = policy_writes(
        body, spec, issuers, namespaces=namespaces, targets=[held], written=writes.revision, now=T0
    )
    assert again.actions == {}
    assert again.revision == writes.revision


def test_a_projection_over_the_size_limit_is_not_ready_and_writes_nothing() -> None:
    big = [external_jwk() | {"x5c": "A" * 4000, "kid": f"k{i}"} for i in range(300)]
    status = {"keys": [{"kid": j["kid"], "state": "external", "publicKey": j} for j in big]}
    body, spec, issuers = policy_setup(status)
    with pytest.raises(NotReady) as raised:
        policy_writes(body, spec, issuers, namespaces={"a1": {"team": "a"}}, targets=[], written=None, now=T0)
    assert raised.value.reason == "ProjectionTooLarge"


def outcome_for(failed: Mapping[tuple[str, str, str], tuple[str, str]], previous: list[str]) -> Any:
    body, spec, issuers = policy_setup(status_with_key())
    body["status"] = {"publishedKeys": [{"issuer": "idp/auth", "kids": previous}]}
    namespaces = {"a1": {"team": "a"}, "a2": {"team": "a"}}
    writes = policy_writes(body, spec, issuers, namespaces=namespaces, targets=[], written=None, now=T0)
    return writes, policy_outcome(body, spec, writes, failed, T0)


def test_a_failed_write_holds_new_keys_back_and_is_retried() -> None:
    _writes, outcome = outcome_for(
        {("ConfigMap", "a2", "web"): ("WriteFailed", "ConfigMap a2/web: 403")}, previous=[]
    )
    assert outcome.retry
    assert outcome.status["publishedKeys"] == [{"issuer": "idp/auth", "kids": []}]
    assert outcome.status["conditions"][0]["reason"] == "WriteFailed"
    assert outcome.status["syncedNamespaces"] == 1
    assert ("Warning", "WriteFailed", "ConfigMap a2/web: 403") in outcome.events


def test_a_target_owned_by_someone_else_is_reported_but_does_not_hold_rotation_back() -> None:
    writes, outcome = outcome_for(
        {("ConfigMap", "a2", "web"): ("TargetNotOwned", "ConfigMap a2/web exists")}, previous=[]
    )
    assert not outcome.retry
    kids = outcome.status["publishedKeys"][0]["kids"]
    assert kids
    assert kids == [k["kid"] for k in writes.projection.trust.issuers[0].keys]
    assert outcome.status["conditions"][0]["status"] == "False"


def test_all_written_is_synced_and_ready() -> None:
    _writes, outcome = outcome_for({}, previous=[])
    assert not outcome.retry
    assert outcome.status["conditions"][0]["reason"] == "Synced"
    assert outcome.status["failedNamespaces"] == []
    assert outcome.events == ()


def test_a_missing_issuer_is_reported() -> None:
    body, spec, _issuers = policy_setup({})
    writes = policy_writes(body, spec, {}, namespaces={}, targets=[], written=None, now=T0)
    outcome = policy_outcome(body, spec, writes, {}, T0)
    assert outcome.status["conditions"][0]["reason"] == "IssuerNotFound"


@settings(max_examples=300, deadline=None)
@given(
    current=st.dictionaries(st.sampled_from(["i/a", "i/b", "i/c"]), st.frozensets(KIDS), max_size=3),
    previous=st.dictionaries(st.sampled_from(["i/a", "i/b", "i/d"]), st.frozensets(KIDS), max_size=3),
    failed=st.booleans(),
)
def test_published_keys_never_claim_a_key_a_failed_target_may_lack(
    current: dict[str, frozenset[str]], previous: dict[str, frozenset[str]], failed: bool
) -> None:
    """With every write done a key is published when projected; after a failure only when it was
    both projected now and published before (the failed target holds the older content)."""
    trust = PolicyTrust(
        policy="p",
        issuers=tuple(
            IssuerTrust(
                ref=ref,
                issuer=ref,
                keys=tuple({"kid": k} for k in sorted(kids)),
                revoked_kids=(),
                revoked_jtis=(),
            )
            for ref, kids in sorted(current.items())
        ),
        audiences=(),
        algorithms=("ES256",),
        typ=None,
        required_claims=(),
        leeway_seconds=0,
    )
    before = [{"issuer": ref, "kids": sorted(kids)} for ref, kids in previous.items()]
    result = {e["issuer"]: set(e["kids"]) for e in published_keys(Projection(trust, (), ""), before, failed)}
    assert set(result) == set(current)
    for ref, kids in result.items():
        expected = current[ref] & previous.get(ref, frozenset()) if failed else current[ref]
        assert kids == set(expected)


# --- failures -------------------------------------------------------------------------------------


def test_a_lost_race_is_retried_at_once_and_anything_else_after_the_backoff() -> None:
    conflict = api_error(409, "Conflict", "the object has been modified")
    assert isinstance(conflict, Conflict)
    assert retry_after(conflict) == "now"
    for error in (
        api_error(500, "InternalError", "x"),
        api_error(429, "TooManyRequests", "x"),
        TransportError("reset"),
    ):
        assert isinstance(error, Transient)
        assert retry_after(error) == "backoff"
    assert type(api_error(404, "NotFound", "x")) is APIError
    assert not isinstance(SpecError("R", "m"), Transient)
    assert isinstance(SpecError("R", "m"), NotReady)


# --- the discovery service as a publication target ------------------------------------------------


def test_a_key_counts_as_served_only_when_every_ready_replica_serves_it() -> None:
    assert served_by_every_replica({}) == frozenset()
    assert served_by_every_replica({"a": frozenset({"k1", "k2"}), "b": frozenset({"k2"})}) == {"k2"}
    assert served_by_every_replica({"a": frozenset({"k1"}), "b": None}) == frozenset()


def test_replicas_are_the_ready_endpoints_of_the_services_slices() -> None:
    slices = [
        {
            "ports": [{"name": "https", "port": 8443}],
            "endpoints": [
                {"addresses": ["10.0.0.1"], "conditions": {"ready": True}},
                {"addresses": ["10.0.0.2"], "conditions": {"ready": False}},
                {"addresses": ["10.0.0.3"]},
            ],
        },
        {"ports": [{"port": 9443}], "endpoints": [{"addresses": ["fd00::1"], "conditions": {"ready": True}}]},
        {"ports": [], "endpoints": [{"addresses": ["10.0.0.9"]}]},
    ]
    assert replica_urls(slices, "/issuers/idp/auth/jwks") == {
        "10.0.0.1:8443": "https://10.0.0.1:8443/issuers/idp/auth/jwks",
        "10.0.0.3:8443": "https://10.0.0.3:8443/issuers/idp/auth/jwks",
        "[fd00::1]:9443": "https://[fd00::1]:9443/issuers/idp/auth/jwks",
    }


def test_an_issuer_served_by_the_discovery_service_waits_for_it_and_polls_it() -> None:
    body = issuer_body()
    spec = parse_issuer_spec(body["spec"])
    result = step(T0, spec, None, (), has_targets=True)
    kid = result.generated[0]
    urls = discovery_urls("https://discovery.example:8443/", "idp", "auth")
    assert urls == {
        "discoveryURL": "https://discovery.example:8443/issuers/idp/auth/.well-known/openid-configuration",
        "jwksURL": "https://discovery.example:8443/issuers/idp/auth/jwks",
    }
    policies = [policy_body("web", {"idp/auth": [kid]})]
    waiting = publication("idp/auth", policies, discovery=frozenset())
    assert waiting.kids == frozenset()
    outcome = generated_outcome(body, spec, result, waiting, T0, discovery=urls)
    assert "the discovery service" in outcome.status["conditions"][0]["message"]
    assert outcome.wake_at == T0 + DISCOVERY_POLL_SECONDS
    assert outcome.status["discovery"] == urls
    served = publication("idp/auth", policies, discovery=frozenset({kid}))
    assert served.kids == {kid}
    unreachable = publication("idp/auth", [], discovery=frozenset(), discovery_label=DISCOVERY_UNCONFIGURED)
    outcome = generated_outcome(body, spec, result, unreachable, T0)
    assert "Helm value discovery.enabled" in outcome.status["conditions"][0]["message"]
    assert outcome.wake_at != T0 + DISCOVERY_POLL_SECONDS  # nothing to poll
    # Served by the discovery service alone (no policy): the service is the one target.
    assert publication("idp/auth", [], discovery=frozenset({kid})).kids == {kid}
