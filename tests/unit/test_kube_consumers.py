"""Tests of the consumer targets of a TrustPolicy (Istio RequestAuthentication, per-issuer ConfigMaps for
gateways), without a cluster.

What they pin down: the spec's consumers and their defaults; what each consumer object holds (exactly
the per-issuer JWK Set of the projection); that consumer objects are planned by the same rule as the
ConfigMap (one write per object per change, none when correct, deletes only of our own objects); that
a consumer object that cannot be written (its kind not served, not enabled, or a failed write) holds
rotation back exactly like a ConfigMap, while a foreign object of the same name does not; and that an
informer of a resource that is not served is an empty cache, not a failure.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import kopf
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from jwt_trust.keys import generate_private_key, public_jwk
from jwt_trust.kube.api import KubeAPI, Ref
from jwt_trust.kube.errors import SpecError
from jwt_trust.kube.informers import Informer
from jwt_trust.kube.operator import consumers_from_environment, summarise_consumer
from jwt_trust.kube.policies import (
    CONFIGMAP,
    REQUEST_AUTHENTICATION,
    PolicySpec,
    Target,
    object_hash,
    parse_policy_spec,
    plan_objects,
    project,
    wanted_objects,
)
from jwt_trust.kube.reconcile import (
    DISABLED,
    MISSING,
    SERVED,
    policy_outcome,
    policy_writes,
    target_manifest,
)
from jwt_trust.projection import content_hash, issuer_jwks_key

T0 = 1_700_000_000
SELECTED = {"team": "a"}
ISTIO: dict[str, Any] = {"requestAuthentication": {}}
GATEWAY: dict[str, Any] = {"jwksConfigMaps": {}}


def jwk() -> dict[str, str]:
    return public_jwk(generate_private_key("ES256").public_key(), "ES256")


KEY_A, KEY_B = jwk(), jwk()


def spec_of(name: str = "web", consumers: Mapping[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "issuers": [{"namespace": "idp", "name": "auth"}, {"namespace": "idp", "name": "other"}],
        "namespaceSelector": {"matchLabels": SELECTED},
        "verification": {"audiences": ["api://web"]},
        **fields,
    }
    if consumers is not None:
        body["consumers"] = dict(consumers)
    return body


def policy(name: str = "web", consumers: Mapping[str, Any] | None = None, **fields: Any) -> PolicySpec:
    return parse_policy_spec(name, spec_of(name, consumers, **fields))


def issuer_body(iss: str, keys: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "metadata": {"generation": 1},
        "spec": {"issuer": iss},
        "status": {"keys": [{"kid": k["kid"], "state": "active", "publicKey": k} for k in keys]},
    }


ISSUERS = {
    "idp/auth": issuer_body("https://auth.example", [KEY_A]),
    "idp/other": issuer_body("https://other.example", [KEY_B]),
}


def policy_body(spec: Mapping[str, Any], published: Mapping[str, list[str]] | None = None) -> dict[str, Any]:
    return {
        "kind": "TrustPolicy",
        "metadata": {"name": "web", "uid": "uid-web", "generation": 1},
        "spec": dict(spec),
        "status": {"publishedKeys": [{"issuer": r, "kids": k} for r, k in (published or {}).items()]},
    }


# --- the spec -------------------------------------------------------------------------------------


def test_consumers_default_to_the_policys_name_and_are_off_unless_listed() -> None:
    assert policy().consumers.request_authentication is None
    assert policy().consumers.jwks_configmap_prefix is None
    both = policy(consumers={**ISTIO, **GATEWAY})
    assert both.consumers.request_authentication is not None
    assert both.consumers.request_authentication.name == "web"
    assert both.consumers.request_authentication.match_labels is None
    assert both.consumers.jwks_configmap_prefix == "web"


def test_istio_needs_audiences_because_it_checks_none_when_none_are_listed() -> None:
    with pytest.raises(SpecError) as caught:
        policy(consumers=ISTIO, verification={})
    assert caught.value.reason == "InvalidConsumer"
    assert "audiences" in caught.value.message


def test_a_per_issuer_configmap_name_must_fit_and_must_not_be_the_policys_target() -> None:
    with pytest.raises(SpecError, match="longer than 253"):
        policy(
            consumers={"jwksConfigMaps": {"namePrefix": "p" * 200}},
            issuers=[{"namespace": "idp", "name": "a" * 60}],
        )
    with pytest.raises(SpecError, match="also the policy's target"):
        policy(
            consumers={"jwksConfigMaps": {"namePrefix": "x"}}, target={"configMap": {"name": "x.idp.auth"}}
        )


# --- what each consumer object holds -------------------------------------------------------------


def wanted(spec: PolicySpec) -> tuple[dict[str, str], dict[tuple[str, str], dict[str, Any]]]:
    data = project(spec, ISSUERS, T0).data(1)
    return data, wanted_objects(spec, project(spec, ISSUERS, T0), data)


def test_the_request_authentication_has_one_rule_per_issuer_with_its_keys_inline() -> None:
    spec = policy(
        consumers={
            "requestAuthentication": {
                "name": "web-jwt",
                "selector": {"matchLabels": {"app": "web"}},
                "forwardOriginalToken": True,
                "outputPayloadToHeader": "x-jwt-payload",
            }
        }
    )
    data, objects = wanted(spec)
    assert set(objects) == {(CONFIGMAP, "web"), (REQUEST_AUTHENTICATION, "web-jwt")}
    body = objects[(REQUEST_AUTHENTICATION, "web-jwt")]
    assert body["selector"] == {"matchLabels": {"app": "web"}}
    assert [rule["issuer"] for rule in body["jwtRules"]] == ["https://auth.example", "https://other.example"]
    for rule, ref in zip(body["jwtRules"], ["idp/auth", "idp/other"], strict=True):
        assert rule["audiences"] == ["api://web"]
        assert rule["jwks"] == data[issuer_jwks_key(ref)]  # a JSON string, byte for byte the file
        assert rule["forwardOriginalToken"] is True
        assert rule["outputPayloadToHeader"] == "x-jwt-payload"
    first = json.loads(body["jwtRules"][0]["jwks"])
    assert [k["kid"] for k in first["keys"]] == [KEY_A["kid"]]


def test_unset_passthrough_fields_are_left_out_for_istio_to_default() -> None:
    _, objects = wanted(policy(consumers=ISTIO))
    body = objects[(REQUEST_AUTHENTICATION, "web")]
    assert "selector" not in body
    assert all(set(rule) == {"issuer", "audiences", "jwks"} for rule in body["jwtRules"])


def test_gateway_configmaps_hold_one_issuers_set_under_the_key_jwks() -> None:
    data, objects = wanted(policy(consumers={"jwksConfigMaps": {"namePrefix": "gw"}}))
    assert objects[(CONFIGMAP, "gw.idp.auth")] == {"jwks": data["issuer.idp.auth.jwks.json"]}
    assert objects[(CONFIGMAP, "gw.idp.other")] == {"jwks": data["issuer.idp.other.jwks.json"]}
    assert objects[(CONFIGMAP, "web")] == data


def test_a_missing_issuer_has_no_rule_and_no_configmap() -> None:
    spec = policy(consumers={**ISTIO, **GATEWAY})
    projection = project(spec, {"idp/auth": ISSUERS["idp/auth"]}, T0)
    objects = wanted_objects(spec, projection, projection.data(1))
    assert (CONFIGMAP, "web.idp.other") not in objects
    assert len(objects[(REQUEST_AUTHENTICATION, "web")]["jwtRules"]) == 1


def test_the_object_hash_of_configmap_data_is_the_projections_content_hash() -> None:
    data, _ = wanted(policy())
    assert object_hash(data) == content_hash(data)


def test_the_request_authentication_manifest_is_labelled_and_owned_by_the_policy() -> None:
    spec = policy(consumers=ISTIO)
    _, objects = wanted(spec)
    body = policy_body(spec_of(consumers=ISTIO))
    manifest = target_manifest(
        body, (REQUEST_AUTHENTICATION, "ns1", "web"), objects[(REQUEST_AUTHENTICATION, "web")]
    )
    assert manifest["apiVersion"] == "security.istio.io/v1"
    assert manifest["kind"] == "RequestAuthentication"
    assert manifest["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "jwt-trust",
        "jwt-trust.dev/policy": "web",
    }
    (owner,) = manifest["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("TrustPolicy", "web", "uid-web")
    # What the cache makes of the written object is what the plan compares: no write when it holds it.
    stored = {**manifest, "metadata": {**manifest["metadata"], "uid": "u1"}}
    summary = summarise_consumer(stored)
    assert summary.data_hash == object_hash(objects[(REQUEST_AUTHENTICATION, "web")])
    assert (summary.kind, summary.policy, summary.uid) == (REQUEST_AUTHENTICATION, "web", "u1")


# --- planning: one rule for every kind -------------------------------------------------------------


def test_consumer_objects_are_applied_once_and_then_left_alone() -> None:
    spec = policy(consumers={**ISTIO, **GATEWAY})
    _, objects = wanted(spec)
    hashes = {key: object_hash(content) for key, content in objects.items()}
    matched, actions = plan_objects(spec, {"n1": SELECTED, "n2": {"team": "b"}}, [], hashes)
    assert matched == ["n1"]
    assert actions == {(kind, "n1", name): "apply" for kind, name in objects}
    held = [Target("n1", name, "web", h, kind=kind) for (kind, name), h in hashes.items()]
    assert plan_objects(spec, {"n1": SELECTED}, held, hashes) == (["n1"], {})


def test_a_consumer_removed_from_the_spec_or_a_relabelled_namespace_deletes_only_ours() -> None:
    spec = policy()
    hashes = {(CONFIGMAP, "web"): "h"}
    ours = Target("n1", "web", "web", "x", uid="u1", kind=REQUEST_AUTHENTICATION)
    theirs = Target("n1", "web", "other", "x", uid="u2", kind=REQUEST_AUTHENTICATION)
    _, actions = plan_objects(spec, {"n1": SELECTED}, [ours], hashes)
    assert actions[(REQUEST_AUTHENTICATION, "n1", "web")] == "delete"
    _, actions = plan_objects(spec, {"n1": SELECTED}, [theirs], hashes)
    assert (REQUEST_AUTHENTICATION, "n1", "web") not in actions
    _, actions = plan_objects(policy(consumers=ISTIO), {"n1": {"team": "b"}}, [ours], hashes)
    assert actions == {(REQUEST_AUTHENTICATION, "n1", "web"): "delete"}


KINDS = [CONFIGMAP, REQUEST_AUTHENTICATION]
NAMESPACES = ["n1", "n2", "n3"]
NAMES = ["web", "web.idp.auth", "old"]


@st.composite
def clusters(draw: st.DrawFn) -> tuple[PolicySpec, dict[str, dict[str, str]], list[Target], dict[Any, str]]:
    spec = policy()
    active = draw(st.lists(st.sampled_from(NAMESPACES), unique=True))
    namespaces = {ns: {"team": draw(st.sampled_from(["a", "b"]))} for ns in active}
    keys = draw(st.lists(st.tuples(st.sampled_from(KINDS), st.sampled_from(NAMES)), min_size=1, unique=True))
    wanted = {key: draw(st.sampled_from(["h1", "h2"])) for key in keys}
    places = draw(
        st.lists(
            st.tuples(st.sampled_from(KINDS), st.sampled_from(NAMESPACES), st.sampled_from(NAMES)),
            unique=True,
        )
    )
    owned = [
        Target(
            ns,
            name,
            draw(st.sampled_from(["web", "other", None])),
            draw(st.sampled_from(["h1", "h2"])),
            kind=kind,
        )
        for kind, ns, name in places
    ]
    return spec, namespaces, owned, wanted


@settings(max_examples=300, deadline=None)
@given(cluster=clusters())
def test_after_the_actions_every_selected_namespace_holds_every_wanted_object_and_planning_again_is_quiet(
    cluster: tuple[PolicySpec, dict[str, dict[str, str]], list[Target], dict[Any, str]],
) -> None:
    spec, namespaces, owned, wanted = cluster
    store = {(t.kind, t.namespace, t.name): t for t in owned}
    matched, actions = plan_objects(spec, namespaces, owned, wanted)
    for key, action in actions.items():
        if action in ("apply", "delete") and key in store:
            assert store[key].policy == spec.name, "another policy's object touched"
        if action == "apply":
            store[key] = Target(key[1], key[2], spec.name, wanted[(key[0], key[2])], kind=key[0])
        elif action == "delete":
            del store[key]
    for namespace in matched:
        for (kind, name), wanted_hash in wanted.items():
            found = store[(kind, namespace, name)]
            assert found.data_hash == wanted_hash or found.policy != spec.name
    again_matched, again = plan_objects(spec, namespaces, list(store.values()), wanted)
    assert again_matched == matched
    assert again == {key: a for key, a in actions.items() if a == "conflict"}


# --- a consumer that cannot be written holds activation back ---------------------------------------


def writes_for(apis: Mapping[str, str], published: Mapping[str, list[str]] | None = None) -> Any:
    raw = spec_of(consumers={**ISTIO, **GATEWAY})
    spec = parse_policy_spec("web", raw)
    body = policy_body(raw, published)
    writes = policy_writes(
        body,
        spec,
        ISSUERS,
        namespaces={"n1": SELECTED, "n2": SELECTED},
        targets=[],
        written=None,
        now=T0,
        apis=apis,
    )
    return body, spec, writes


@pytest.mark.parametrize(
    ("api", "reason", "says"),
    [
        (
            MISSING,
            "ConsumerCRDMissing",
            "requestauthentications.security.istio.io/v1 (is its CRD installed?)",
        ),
        (DISABLED, "ConsumerDisabled", "consumers.istio.enabled"),
    ],
)
def test_a_consumer_kind_not_served_is_not_written_and_holds_new_keys_back(
    api: str, reason: str, says: str
) -> None:
    body, spec, writes = writes_for(
        {REQUEST_AUTHENTICATION: api}, published={"idp/auth": [], "idp/other": []}
    )
    assert all(kind == CONFIGMAP for kind, _, _ in writes.actions)
    assert set(writes.unwritable) == {
        (REQUEST_AUTHENTICATION, "n1", "web"),
        (REQUEST_AUTHENTICATION, "n2", "web"),
    }
    outcome = policy_outcome(body, spec, writes, {}, T0)
    assert outcome.retry
    assert outcome.status["publishedKeys"] == [
        {"issuer": "idp/auth", "kids": []},
        {"issuer": "idp/other", "kids": []},
    ]
    condition = outcome.status["conditions"][0]
    assert (condition["status"], condition["reason"]) == ("False", reason)
    assert says in condition["message"]
    assert outcome.status["syncedNamespaces"] == 0
    assert outcome.failed(REQUEST_AUTHENTICATION) == 2
    assert outcome.failed(CONFIGMAP) == 0
    entry = outcome.status["failedNamespaces"][0]
    assert (entry["kind"], entry["namespace"], entry["name"], entry["reason"]) == (
        REQUEST_AUTHENTICATION,
        "n1",
        "web",
        reason,
    )
    assert any(r == reason for _, r, _ in outcome.events)


def test_served_consumers_are_written_next_to_the_configmap() -> None:
    _, _, writes = writes_for({REQUEST_AUTHENTICATION: SERVED})
    assert writes.unwritable == {}
    assert {(kind, name) for kind, _, name in writes.actions} == {
        (CONFIGMAP, "web"),
        (CONFIGMAP, "web.idp.auth"),
        (CONFIGMAP, "web.idp.other"),
        (REQUEST_AUTHENTICATION, "web"),
    }


def test_a_failed_consumer_write_counts_like_a_failed_configmap_write() -> None:
    body, spec, writes = writes_for({REQUEST_AUTHENTICATION: SERVED}, published={"idp/auth": [KEY_A["kid"]]})
    failed = {(REQUEST_AUTHENTICATION, "n2", "web"): ("WriteFailed", "RequestAuthentication n2/web: 403")}
    outcome = policy_outcome(body, spec, writes, failed, T0)
    assert outcome.retry
    # Only what was published before and is projected now: n2's object may hold the older content.
    assert outcome.status["publishedKeys"] == [
        {"issuer": "idp/auth", "kids": [KEY_A["kid"]]},
        {"issuer": "idp/other", "kids": []},
    ]
    assert outcome.status["syncedNamespaces"] == 1
    assert outcome.status["conditions"][0]["reason"] == "WriteFailed"


def test_a_foreign_consumer_object_is_reported_but_does_not_hold_rotation_back() -> None:
    body, spec, writes = writes_for({REQUEST_AUTHENTICATION: SERVED})
    failed = {
        (REQUEST_AUTHENTICATION, "n2", "web"): ("TargetNotOwned", "RequestAuthentication n2/web exists")
    }
    outcome = policy_outcome(body, spec, writes, failed, T0)
    assert not outcome.retry
    assert outcome.status["publishedKeys"] == [
        {"issuer": "idp/auth", "kids": [KEY_A["kid"]]},
        {"issuer": "idp/other", "kids": [KEY_B["kid"]]},
    ]
    assert outcome.status["conditions"][0]["reason"] == "TargetNotOwned"


@settings(max_examples=200, deadline=None)
@given(
    previous=st.frozensets(st.sampled_from([KEY_A["kid"], "old-1", "old-2"])),
    fails=st.dictionaries(
        st.tuples(
            st.sampled_from(KINDS), st.sampled_from(["n1", "n2"]), st.sampled_from(["web", "web.idp.auth"])
        ),
        st.sampled_from(["WriteFailed", "DeleteFailed", "TargetNotOwned", "TargetOwnedByAnotherPolicy"]),
    ),
)
def test_a_published_kid_is_held_by_every_target_object_of_ours_whatever_failed(
    previous: frozenset[str], fails: dict[tuple[str, str, str], str]
) -> None:
    """Every object starts holding what was published before (the rule held last round); a write that
    succeeds makes it hold the projection, one that fails leaves it as it was. Whatever failed, every
    kid reported published is held by every object of ours."""
    body, spec, writes = writes_for(
        {REQUEST_AUTHENTICATION: SERVED}, published={"idp/auth": sorted(previous)}
    )
    failed = {key: (reason, "x") for key, reason in fails.items() if key in writes.actions}
    outcome = policy_outcome(body, spec, writes, failed, T0)
    projected = {KEY_A["kid"]}
    published = next(e for e in outcome.status["publishedKeys"] if e["issuer"] == "idp/auth")["kids"]
    for key in writes.actions:
        reason = failed.get(key, ("", ""))[0]
        if reason in ("TargetNotOwned", "TargetOwnedByAnotherPolicy"):
            continue  # never ours: it never held our keys and nobody reads our keys from it
        held = previous if reason else projected
        assert set(published) <= held


# --- the operator's wiring --------------------------------------------------------------------------


def test_the_environment_names_the_consumer_kinds_the_operator_manages() -> None:
    assert consumers_from_environment({}) == frozenset()
    assert consumers_from_environment({"JWT_TRUST_CONSUMERS": " Istio, nonsense "}) == {
        REQUEST_AUTHENTICATION
    }


def is_absent(informer: Informer[str]) -> bool:
    return informer.absent


def test_an_optional_informer_of_a_resource_not_served_is_empty_and_healthy_until_it_appears() -> None:
    served = asyncio.Event()
    lists: list[int] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.query.get("watch", "").lower() == "true":
            response = web.StreamResponse()
            await response.prepare(request)
            await asyncio.sleep(1)
            return response
        lists.append(1)
        if len(lists) < 3:
            body = {
                "kind": "Status",
                "code": 404,
                "reason": "NotFound",
                "message": "the server could not find the requested resource",
            }
            return web.json_response(body, status=404)
        item = {"metadata": {"name": "ra", "namespace": "ns", "resourceVersion": "5"}}
        return web.json_response({"metadata": {"resourceVersion": "5"}, "items": [item]})

    async def main() -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

        async def login() -> kopf.ConnectionInfo:
            return kopf.ConnectionInfo(server=f"http://127.0.0.1:{port}", token="t")

        api = KubeAPI(login)
        informer: Informer[str] = Informer(
            api,
            Ref("security.istio.io/v1", "requestauthentications"),
            lambda obj: obj["metadata"]["name"],
            optional=True,
            on_served=served.set,
        )
        try:
            await informer.list()  # start-up: no exception, an empty cache
            assert informer.absent
            assert informer.objects == {}
            assert informer.synced.is_set()
            task = asyncio.create_task(informer.run())
            await asyncio.wait_for(served.wait(), timeout=10)
            assert not is_absent(informer)
            assert set(informer.objects) == {("ns", "ra")}
            assert informer.failing_since is None  # never reported to liveness
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        finally:
            await api.close()
            await runner.cleanup()

    asyncio.run(main())
