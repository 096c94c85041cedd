"""Tests of the operator's TrustPolicy decisions (``jwt_trust.kube.policies``), without a cluster.

What they pin down: which namespaces a selector picks (checked against a plain reference
implementation of Kubernetes label-selector semantics), what a policy projects for its Issuers, that
``status.contentHash`` moves exactly when the projected content does, and that the per-target plan
touches only what is wrong, never another policy's ConfigMap, and reaches a state where planning again
asks for nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jwt_trust.keys import generate_private_key, public_jwk
from jwt_trust.kube.errors import SpecError
from jwt_trust.kube.policies import (
    Action,
    PolicySpec,
    Selector,
    Target,
    data_size,
    issuer_trust,
    next_revision,
    parse_policy_spec,
    parse_selector,
    plan_targets,
    project,
    published_kids,
    too_large,
)
from jwt_trust.projection import DEFAULT_ALGORITHMS, MAX_CONFIGMAP_BYTES, IssuerTrust, parse_trust_files

T0 = 1_700_000_000
FUTURE = "2023-11-15T22:13:20Z"  # T0 + 1 day
PAST = "2023-11-13T22:13:20Z"  # T0 - 1 day
SELECTOR = {"matchLabels": {"team": "a"}}
ISSUERS = [{"namespace": "auth", "name": "main"}]


def policy(name: str = "web", **fields: Any) -> PolicySpec:
    return parse_policy_spec(name, {"issuers": ISSUERS, "namespaceSelector": SELECTOR, **fields})


def policy_error(spec: Mapping[str, Any]) -> SpecError:
    with pytest.raises(SpecError) as caught:
        parse_policy_spec("web", spec)
    return caught.value


def jwk(alg: str = "ES256") -> dict[str, str]:
    return public_jwk(generate_private_key(alg).public_key(), alg)


KEY_A, KEY_B, KEY_C = jwk(), jwk("EdDSA"), jwk()


def issuer_body(
    keys: list[dict[str, str]],
    *,
    iss: str | None = "https://issuer.example",
    revoked_keys: list[str] | None = None,
    revoked_tokens: list[Any] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {} if iss is None else {"issuer": iss}
    if revoked_keys is not None:
        spec["revokedKeys"] = revoked_keys
    if revoked_tokens is not None:
        spec["revokedTokens"] = revoked_tokens
    return {
        "spec": spec,
        "status": {"keys": [{"kid": k["kid"], "state": "active", "publicKey": k} for k in keys]},
    }


# --- parse_policy_spec ---------------------------------------------------------------------------


def test_policy_defaults_target_its_own_name_and_allow_every_algorithm() -> None:
    spec = policy()
    assert spec == PolicySpec(
        name="web",
        issuer_refs=("auth/main",),
        selector=Selector({"team": "a"}, ()),
        target_name="web",
        audiences=(),
        algorithms=DEFAULT_ALGORITHMS,
        typ=None,
        required_claims=(),
        leeway_seconds=60,
    )


def test_policy_fields_are_read_from_the_spec() -> None:
    spec = policy(
        target={"configMap": {"name": "jwt-trust"}},
        verification={
            "audiences": ["api"],
            "algorithms": ["ES256", "RS256", "ES256"],
            "typ": "at+jwt",
            "requiredClaims": ["sub"],
            "leeway": "2m",
        },
    )
    assert spec.target_name == "jwt-trust"
    assert spec.audiences == ("api",)
    assert spec.algorithms == ("ES256", "RS256")
    assert spec.typ == "at+jwt"
    assert spec.required_claims == ("sub",)
    assert spec.leeway_seconds == 120


def test_issuer_refs_are_sorted_and_deduplicated() -> None:
    spec = parse_policy_spec(
        "web",
        {
            "issuers": [
                {"namespace": "z", "name": "b"},
                {"namespace": "a", "name": "c"},
                {"namespace": "z", "name": "b"},
            ],
            "namespaceSelector": SELECTOR,
        },
    )
    assert spec.issuer_refs == ("a/c", "z/b")


def test_empty_target_name_falls_back_to_the_policy_name() -> None:
    assert policy(target={"configMap": {"name": ""}}).target_name == "web"
    assert policy(target={}).target_name == "web"


def test_empty_typ_means_no_typ_check() -> None:
    assert policy(verification={"typ": ""}).typ is None


def test_allowed_ed25519_stays_allowed_under_its_own_name() -> None:
    # Token headers carry whatever name the issuer chose (docs/architecture.md, "Keys"), and the
    # verifier compares the header's alg with this list: "Ed25519" tokens must still be accepted.
    assert "Ed25519" in policy(verification={"algorithms": ["Ed25519"]}).algorithms


@pytest.mark.parametrize(
    "issuers",
    [None, [], [{"namespace": "auth"}], [{"name": "main"}], [{"namespace": "", "name": "main"}]],
)
def test_policy_must_name_issuers_by_namespace_and_name(issuers: Any) -> None:
    assert policy_error({"issuers": issuers, "namespaceSelector": SELECTOR}).reason == "InvalidIssuerRef"


@pytest.mark.parametrize(
    "verification",
    [{"algorithms": ["HS256"]}, {"algorithms": ["none"]}, {"leeway": "1 minute"}, {"leeway": "-1s"}],
)
def test_invalid_verification_settings_are_refused(verification: dict[str, Any]) -> None:
    error = policy_error({"issuers": ISSUERS, "namespaceSelector": SELECTOR, "verification": verification})
    assert error.reason == "InvalidVerification"


@pytest.mark.parametrize(
    ("selector", "fragment"),
    [
        (None, "required"),
        ("team=a", "required"),
        ({}, "empty"),
        ({"matchLabels": {}, "matchExpressions": []}, "empty"),
        ({"matchExpressions": [{"key": "team", "operator": "Like", "values": ["a"]}]}, "operator"),
        ({"matchExpressions": [{"key": "team", "operator": "In", "values": []}]}, "invalid"),
        ({"matchExpressions": [{"key": "team", "operator": "NotIn"}]}, "invalid"),
        ({"matchExpressions": [{"key": "team", "operator": "Exists", "values": ["a"]}]}, "invalid"),
        ({"matchExpressions": [{"key": "team", "operator": "DoesNotExist", "values": ["a"]}]}, "invalid"),
    ],
)
def test_selector_that_is_missing_empty_or_invalid_is_refused(selector: Any, fragment: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_selector(selector)
    assert caught.value.reason == "InvalidSelector"
    assert fragment in caught.value.message


def test_policy_without_selector_is_refused() -> None:
    assert policy_error({"issuers": ISSUERS}).reason == "InvalidSelector"


# --- Selector ------------------------------------------------------------------------------------


def expression(key: str, operator: str, *values: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"key": key, "operator": operator}
    if values:
        entry["values"] = list(values)
    return entry


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ({"matchLabels": {"team": "a"}}, {"team": "a", "x": "y"}, True),
        ({"matchLabels": {"team": "a"}}, {"team": "b"}, False),
        ({"matchLabels": {"team": "a"}}, {}, False),
        ({"matchLabels": {"team": "a", "env": "prod"}}, {"team": "a"}, False),
        ({"matchExpressions": [expression("team", "In", "a", "b")]}, {"team": "b"}, True),
        ({"matchExpressions": [expression("team", "In", "a", "b")]}, {"team": "c"}, False),
        ({"matchExpressions": [expression("team", "In", "a")]}, {}, False),
        ({"matchExpressions": [expression("team", "NotIn", "a")]}, {"team": "b"}, True),
        ({"matchExpressions": [expression("team", "NotIn", "a")]}, {"team": "a"}, False),
        ({"matchExpressions": [expression("team", "NotIn", "a")]}, {}, True),
        ({"matchExpressions": [expression("team", "Exists")]}, {"team": ""}, True),
        ({"matchExpressions": [expression("team", "Exists")]}, {"other": "team"}, False),
        ({"matchExpressions": [expression("team", "DoesNotExist")]}, {}, True),
        ({"matchExpressions": [expression("team", "DoesNotExist")]}, {"team": "a"}, False),
        (
            {"matchLabels": {"env": "prod"}, "matchExpressions": [expression("team", "DoesNotExist")]},
            {"env": "prod"},
            True,
        ),
        (
            {"matchLabels": {"env": "prod"}, "matchExpressions": [expression("team", "DoesNotExist")]},
            {"env": "prod", "team": "a"},
            False,
        ),
    ],
)
def test_selector_operators_follow_kubernetes_semantics(
    selector: dict[str, Any], labels: dict[str, str], expected: bool
) -> None:
    assert parse_selector(selector).matches(labels) is expected


def reference_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Kubernetes label-selector semantics, written as plainly as possible (the ANDed requirements)."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for entry in selector.get("matchExpressions") or []:
        key, operator, values = entry["key"], entry["operator"], entry.get("values") or []
        if operator == "In" and (key not in labels or labels[key] not in values):
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


KEYS = st.sampled_from(["team", "env", "tier"])
VALUES = st.sampled_from(["a", "b", "c"])


@st.composite
def selectors(draw: st.DrawFn) -> dict[str, Any]:
    labels = draw(st.dictionaries(KEYS, VALUES, max_size=2))
    expressions = []
    for _ in range(draw(st.integers(0, 3))):
        operator = draw(st.sampled_from(["In", "NotIn", "Exists", "DoesNotExist"]))
        values = draw(st.lists(VALUES, min_size=1, max_size=3)) if operator in ("In", "NotIn") else []
        expressions.append(expression(draw(KEYS), operator, *values))
    if not labels and not expressions:
        labels = {"team": draw(VALUES)}
    return {"matchLabels": labels, "matchExpressions": expressions}


@settings(max_examples=300, deadline=None)
@given(selector=selectors(), labels=st.dictionaries(KEYS, VALUES, max_size=3))
def test_selector_agrees_with_a_reference_implementation(
    selector: dict[str, Any], labels: dict[str, str]
) -> None:
    assert parse_selector(selector).matches(labels) is reference_matches(selector, labels)


# --- issuer_trust and project --------------------------------------------------------------------


def test_issuer_trust_publishes_status_keys_sorted_by_kid() -> None:
    trust = issuer_trust("auth/main", issuer_body([KEY_A, KEY_B, KEY_C]), T0)
    assert trust is not None
    assert trust.ref == "auth/main"
    assert trust.issuer == "https://issuer.example"
    assert [k["kid"] for k in trust.keys] == sorted(k["kid"] for k in (KEY_A, KEY_B, KEY_C))
    assert (trust.revoked_kids, trust.revoked_jtis) == ((), ())


def test_revoked_kids_are_withdrawn_from_the_keys_and_listed() -> None:
    body = issuer_body([KEY_A, KEY_B], revoked_keys=[KEY_A["kid"], "already-gone"])
    trust = issuer_trust("auth/main", body, T0)
    assert trust is not None
    assert [k["kid"] for k in trust.keys] == [KEY_B["kid"]]
    assert trust.revoked_kids == tuple(sorted([KEY_A["kid"], "already-gone"]))


def test_only_unexpired_revoked_tokens_are_published() -> None:
    body = issuer_body(
        [KEY_A],
        revoked_tokens=[
            {"jti": "live", "expiresAt": FUTURE},
            {"jti": "dead", "expiresAt": PAST},
            {"jti": "now", "expiresAt": "2023-11-14T22:13:20Z"},
            {"jti": "bad", "expiresAt": "soon"},
            {"jti": "none"},
            "not an object",
        ],
    )
    trust = issuer_trust("auth/main", body, T0)
    assert trust is not None
    assert trust.revoked_jtis == (("live", T0 + 86400),)


def test_revoked_token_without_jti_is_skipped_like_other_malformed_entries() -> None:
    # parse_issuer_spec refuses such an Issuer, but a policy still projects its status; a malformed
    # entry must not stop the whole policy.
    body = issuer_body([KEY_A], revoked_tokens=[{"expiresAt": FUTURE}, {"jti": "ok", "expiresAt": FUTURE}])
    trust = issuer_trust("auth/main", body, T0)
    assert trust is not None
    assert trust.revoked_jtis == (("ok", T0 + 86400),)


@pytest.mark.parametrize("iss", [None, ""])
def test_issuer_without_an_issuer_value_is_not_trusted(iss: str | None) -> None:
    assert issuer_trust("auth/main", issuer_body([KEY_A], iss=iss), T0) is None


def test_issuer_without_status_has_no_keys_yet() -> None:
    trust = issuer_trust("auth/main", {"spec": {"issuer": "urn:x"}}, T0)
    assert trust == IssuerTrust(ref="auth/main", issuer="urn:x", keys=())


def test_project_reports_missing_and_unusable_issuers() -> None:
    spec = policy(
        issuers=[*ISSUERS, {"namespace": "auth", "name": "gone"}, {"namespace": "b", "name": "bare"}]
    )
    projection = project(spec, {"auth/main": issuer_body([KEY_A]), "b/bare": issuer_body([], iss=None)}, T0)
    assert projection.missing_issuers == ("auth/gone", "b/bare")
    assert [i.ref for i in projection.trust.issuers] == ["auth/main"]


def test_projected_data_is_what_the_verifier_reads_back() -> None:
    spec = policy(verification={"audiences": ["api"], "typ": "JWT"})
    projection = project(spec, {"auth/main": issuer_body([KEY_A, KEY_B])}, T0)
    data = projection.data(7)
    trust, revision = parse_trust_files({k: v.encode() for k, v in data.items()})
    assert revision == 7
    assert trust == projection.trust
    assert trust.audiences == ("api",)


def test_content_hash_ignores_the_revision() -> None:
    projection = project(policy(), {"auth/main": issuer_body([KEY_A])}, T0)
    assert projection.data(1) != projection.data(2)
    again = project(policy(), {"auth/main": issuer_body([KEY_A])}, T0 + 3600)
    assert again.unhashed == projection.unhashed


@pytest.mark.parametrize(
    ("change", "issuers"),
    [
        ("a key is added", {"auth/main": issuer_body([KEY_A, KEY_B])}),
        ("a key is revoked", {"auth/main": issuer_body([KEY_A], revoked_keys=[KEY_A["kid"]])}),
        (
            "a token is revoked",
            {"auth/main": issuer_body([KEY_A], revoked_tokens=[{"jti": "x", "expiresAt": FUTURE}])},
        ),
        ("the iss changes", {"auth/main": issuer_body([KEY_A], iss="urn:other")}),
        ("the issuer disappears", {}),
    ],
)
def test_content_hash_changes_with_the_issuers(change: str, issuers: dict[str, Any]) -> None:
    before = project(policy(), {"auth/main": issuer_body([KEY_A])}, T0)
    assert project(policy(), issuers, T0).unhashed != before.unhashed, change


@pytest.mark.parametrize(
    "verification",
    [
        {"audiences": ["api"]},
        {"algorithms": ["ES256"]},
        {"typ": "at+jwt"},
        {"requiredClaims": ["sub"]},
        {"leeway": "5s"},
    ],
)
def test_content_hash_changes_with_the_verification_settings(verification: dict[str, Any]) -> None:
    issuers = {"auth/main": issuer_body([KEY_A])}
    assert (
        project(policy(verification=verification), issuers, T0).unhashed
        != project(policy(), issuers, T0).unhashed
    )


def test_content_hash_changes_when_a_revoked_token_expires_and_not_before() -> None:
    issuers = {"auth/main": issuer_body([KEY_A], revoked_tokens=[{"jti": "x", "expiresAt": FUTURE}])}
    hashes = [project(policy(), issuers, T0 + offset).unhashed for offset in (0, 86399, 86400)]
    assert hashes[0] == hashes[1] != hashes[2]


def test_content_hash_ignores_status_key_order_and_entry_metadata() -> None:
    first = issuer_body([KEY_A, KEY_B])
    second = issuer_body([KEY_B, KEY_A])
    for entry in second["status"]["keys"]:
        entry["state"] = "next"
    assert (
        project(policy(), {"auth/main": first}, T0).unhashed
        == project(policy(), {"auth/main": second}, T0).unhashed
    )


def test_published_kids_lists_each_issuers_projected_kids() -> None:
    spec = policy(issuers=[*ISSUERS, {"namespace": "b", "name": "other"}])
    issuers = {
        "auth/main": issuer_body([KEY_A, KEY_B], revoked_keys=[KEY_B["kid"]]),
        "b/other": issuer_body([KEY_C]),
    }
    assert published_kids(project(spec, issuers, T0)) == [
        {"issuer": "auth/main", "kids": [KEY_A["kid"]]},
        {"issuer": "b/other", "kids": [KEY_C["kid"]]},
    ]


def test_published_kids_of_a_policy_without_issuers_is_empty() -> None:
    assert published_kids(project(policy(), {}, T0)) == []


def test_too_large_leaves_room_for_metadata() -> None:
    limit = MAX_CONFIGMAP_BYTES - 16 * 1024
    fits = {"k": "x" * (limit - 1)}
    assert data_size(fits) == limit
    assert not too_large(fits)
    assert too_large({"k": "x" * limit})
    # Sizes are in bytes, not characters.
    assert data_size({"é": "€"}) == 5


def test_a_realistic_projection_is_far_from_too_large() -> None:
    issuers = {f"ns/i{n}": issuer_body([KEY_A, KEY_B, KEY_C]) for n in range(20)}
    spec = policy(issuers=[{"namespace": "ns", "name": f"i{n}"} for n in range(20)])
    assert not too_large(project(spec, issuers, T0).data(1))


# --- plan_targets --------------------------------------------------------------------------------

WANTED = "wanted-hash"
SELECTED = {"team": "a"}


def ours(namespace: str, name: str = "web", data_hash: str = WANTED) -> Target:
    return Target(namespace=namespace, name=name, policy="web", data_hash=data_hash)


def test_missing_targets_are_applied_in_every_selected_namespace() -> None:
    matched, actions = plan_targets(
        policy(), {"n1": SELECTED, "n2": SELECTED, "n3": {"team": "b"}}, [], WANTED
    )
    assert matched == ["n1", "n2"]
    assert actions == {("n1", "web"): "apply", ("n2", "web"): "apply"}


def test_a_correct_target_needs_nothing() -> None:
    matched, actions = plan_targets(policy(), {"n1": SELECTED}, [ours("n1")], WANTED)
    assert (matched, actions) == (["n1"], {})


def test_drifted_target_is_applied_again() -> None:
    _, actions = plan_targets(policy(), {"n1": SELECTED}, [ours("n1", data_hash="edited")], WANTED)
    assert actions == {("n1", "web"): "apply"}


def test_target_in_a_namespace_that_stopped_matching_is_deleted() -> None:
    matched, actions = plan_targets(policy(), {"n1": {"team": "b"}}, [ours("n1")], WANTED)
    assert (matched, actions) == ([], {("n1", "web"): "delete"})


def test_target_in_a_terminating_namespace_is_left_to_the_namespace_deletion() -> None:
    # A Terminating namespace is absent from the mapping; its ConfigMaps go with it.
    matched, actions = plan_targets(policy(), {}, [ours("n1")], WANTED)
    assert (matched, actions) == ([], {})


def test_renamed_target_is_written_under_the_new_name_and_the_old_one_deleted() -> None:
    spec = policy(target={"configMap": {"name": "jwt-trust"}})
    _, actions = plan_targets(spec, {"n1": SELECTED}, [ours("n1", name="web")], WANTED)
    assert actions == {("n1", "web"): "delete", ("n1", "jwt-trust"): "apply"}


def test_old_name_in_a_terminating_namespace_is_deleted_too() -> None:
    spec = policy(target={"configMap": {"name": "jwt-trust"}})
    _, actions = plan_targets(spec, {}, [ours("gone", name="web")], WANTED)
    assert actions == {("gone", "web"): "delete"}


@pytest.mark.parametrize("owner", ["other", None])
def test_target_name_held_by_another_policy_is_a_conflict(owner: str | None) -> None:
    theirs = Target(namespace="n1", name="web", policy=owner, data_hash=WANTED)
    _, actions = plan_targets(policy(), {"n1": SELECTED}, [theirs], WANTED)
    assert actions == {("n1", "web"): "conflict"}


def test_another_policys_configmaps_with_other_names_are_ignored() -> None:
    theirs = [
        Target(namespace="n1", name="other", policy="other", data_hash="x"),
        Target(namespace="n2", name="other", policy="other", data_hash="x"),
    ]
    _, actions = plan_targets(policy(), {"n1": SELECTED, "n2": {"team": "b"}}, theirs, WANTED)
    assert actions == {("n1", "web"): "apply"}


def test_another_policys_target_in_an_unselected_namespace_is_no_conflict() -> None:
    theirs = Target(namespace="n2", name="web", policy="other", data_hash="x")
    _, actions = plan_targets(policy(), {"n1": SELECTED, "n2": {"team": "b"}}, [theirs], WANTED)
    assert actions == {("n1", "web"): "apply"}


NAMESPACES = ["n1", "n2", "n3", "n4"]
NAMES = ["web", "old", "other"]
OWNERS = ["web", "other", None]


@st.composite
def clusters(draw: st.DrawFn) -> tuple[PolicySpec, dict[str, dict[str, str]], list[Target]]:
    target_name = draw(st.sampled_from(["web", "old"]))
    spec = policy(target={"configMap": {"name": target_name}})
    # Namespaces left out of the mapping are Terminating.
    active = draw(st.lists(st.sampled_from(NAMESPACES), unique=True))
    namespaces = {ns: {"team": draw(st.sampled_from(["a", "b"]))} for ns in active}
    places = draw(st.lists(st.tuples(st.sampled_from(NAMESPACES), st.sampled_from(NAMES)), unique=True))
    owned = [
        Target(ns, name, draw(st.sampled_from(OWNERS)), draw(st.sampled_from([WANTED, "stale"])))
        for ns, name in places
    ]
    return spec, namespaces, owned


def apply_actions(
    store: dict[tuple[str, str], Target], actions: Mapping[tuple[str, str], Action], policy_name: str
) -> None:
    for (namespace, name), action in actions.items():
        if action == "apply":
            store[(namespace, name)] = Target(namespace, name, policy_name, WANTED)
        elif action == "delete":
            del store[(namespace, name)]


@settings(max_examples=300, deadline=None)
@given(cluster=clusters())
def test_planning_again_after_the_actions_asks_only_for_the_same_conflicts(
    cluster: tuple[PolicySpec, dict[str, dict[str, str]], list[Target]],
) -> None:
    spec, namespaces, owned = cluster
    store = {(t.namespace, t.name): t for t in owned}
    matched, actions = plan_targets(spec, namespaces, owned, WANTED)
    conflicts = {place: a for place, a in actions.items() if a == "conflict"}
    apply_actions(store, actions, spec.name)
    again_matched, again = plan_targets(spec, namespaces, list(store.values()), WANTED)
    assert again_matched == matched
    assert again == conflicts


@settings(max_examples=300, deadline=None)
@given(cluster=clusters())
def test_plan_never_touches_another_policys_configmap_and_covers_every_selected_namespace(
    cluster: tuple[PolicySpec, dict[str, dict[str, str]], list[Target]],
) -> None:
    spec, namespaces, owned = cluster
    store = {(t.namespace, t.name): t for t in owned}
    matched, actions = plan_targets(spec, namespaces, owned, WANTED)
    assert matched == sorted(ns for ns, labels in namespaces.items() if labels == SELECTED)
    for place, action in actions.items():
        if action in ("apply", "delete") and place in store:
            assert store[place].policy == spec.name
        if action == "delete":
            assert place in store
    apply_actions(store, actions, spec.name)
    for namespace in matched:
        target = store.get((namespace, spec.target_name))
        assert target is not None
        assert target.data_hash == WANTED or target.policy != spec.name
    for (namespace, name), target in store.items():
        if target.policy == spec.name and namespace in namespaces:
            # In an active namespace only the one wanted target of ours survives.
            assert namespace in matched
            assert name == spec.target_name


def test_published_kids_is_json_serialisable_for_the_status() -> None:
    projection = project(policy(), {"auth/main": issuer_body([KEY_A])}, T0)
    assert json.loads(json.dumps(published_kids(projection))) == [
        {"issuer": "auth/main", "kids": [KEY_A["kid"]]}
    ]


# --- next_revision ---------------------------------------------------------------------------------


def test_unchanged_content_keeps_its_revision_and_a_change_takes_the_next() -> None:
    assert next_revision((4, "a"), None, "a") == (4, "a")
    assert next_revision((4, "a"), None, "b") == (5, "b")
    assert next_revision((0, None), None, "a") == (1, "a")


def test_two_changes_before_the_cache_catches_up_get_two_revisions() -> None:
    # The cache still shows revision 4 of content "a"; this process already wrote 5 for "b".
    assert next_revision((4, "a"), (5, "b"), "c") == (6, "c")
    assert next_revision((4, "a"), (5, "b"), "b") == (5, "b")
    # Once the cache has caught up (or another replica moved on), the status wins.
    assert next_revision((7, "d"), (5, "b"), "d") == (7, "d")


@given(
    changes=st.lists(st.sampled_from("abcd"), min_size=1, max_size=30),
    lags=st.lists(st.booleans(), min_size=30, max_size=30),
)
def test_revisions_increase_on_every_change_whatever_the_cache_lag(
    changes: list[str], lags: list[bool]
) -> None:
    status: tuple[int, str | None] = (0, None)
    written: tuple[int, str | None] | None = None
    seen: dict[int, str] = {}
    for content, lagging in zip(changes, lags, strict=False):
        revision = next_revision(status, written, content)
        assert seen.setdefault(revision[0], content) == content, "one revision named two contents"
        assert written is None or revision[0] >= written[0]
        written = revision
        if not lagging:
            status = revision
