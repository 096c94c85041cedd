"""The Envoy and Istio snippets in docs/interop.md consume exactly what the projection writes.

Why it exists: a configuration snippet that names a file we do not write, or inlines a JWK Set shaped
differently from ours, fails only in someone's cluster. These tests read the fenced YAML blocks of
docs/interop.md and check them against ``jwt_trust.projection.render_configmap_data``: the Envoy
``local_jwks`` file is a per-issuer key of the projection inside the documented ConfigMap mount, and
Istio's inline ``jwks`` is byte for byte a per-issuer file of the projection, each key with
``kid`` (its RFC 7638 thumbprint), ``alg`` and ``use: "sig"`` and nothing private. The consumer
objects the operator writes (a RequestAuthentication, a ConfigMap for an Envoy Gateway
SecurityPolicy) are exactly what it computes for the documented TrustPolicy. They also keep the
snippets consistent with the Issuer, TrustPolicy and workload in examples/, and the pinned versions
the page states equal to go.mod and package-lock.json.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from jwt_trust.keys import PRIVATE_MEMBERS, generate_private_key, public_jwk, public_key_from_jwk, thumbprint
from jwt_trust.projection import IssuerTrust, PolicyTrust, issuer_jwks_key, render_configmap_data

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "interop.md"
EXAMPLES = ROOT / "examples"
PER_ISSUER_FILE = re.compile(r"issuer\.(?P<namespace>[^.]+)\.(?P<name>.+)\.jwks\.json")


URL_SECTION = "## Keys from a URL: the discovery service"


def _documents(text: str) -> list[Any]:
    blocks = re.findall(r"^```yaml\n(.*?)^```$", text, re.DOTALL | re.MULTILINE)
    assert blocks, "no yaml blocks"
    return [document for block in blocks for document in yaml.safe_load_all(block)]


@pytest.fixture(scope="module")
def snippets() -> list[Any]:
    """Every YAML document of the page's file and inline sections (before the discovery service), in order."""
    return _documents(DOC.read_text().split(URL_SECTION)[0])


@pytest.fixture(scope="module")
def url_snippets() -> list[Any]:
    """The YAML documents of the section on the discovery service."""
    text = DOC.read_text()
    assert URL_SECTION in text
    return _documents(text.split(URL_SECTION)[1])


def _mappings(node: Any) -> Iterator[dict[str, Any]]:
    """Every mapping anywhere inside a parsed YAML document."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _mappings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _mappings(item)


def _one(snippets: list[Any], wanted: str) -> dict[str, Any]:
    found = [
        mapping
        for document in snippets
        for mapping in _mappings(document)
        if str(mapping.get("@type", mapping.get("kind", ""))).endswith(wanted)
    ]
    assert len(found) == 1, f"expected one {wanted} in docs/interop.md, found {len(found)}"
    return found[0]


def _configmap_mount(snippets: list[Any]) -> tuple[str, str]:
    """(ConfigMap name, mount path) of the documented pod fragment."""
    volumes = {
        volume["name"]: volume["configMap"]["name"]
        for document in snippets
        if isinstance(document, dict)
        for volume in document.get("volumes", [])
        if "configMap" in volume
    }
    mounts = [
        mount
        for document in snippets
        if isinstance(document, dict)
        for container in document.get("containers", [])
        for mount in container.get("volumeMounts", [])
        if mount["name"] in volumes
    ]
    assert len(mounts) == 1, "expected one documented mount of the projected ConfigMap"
    assert "subPath" not in mounts[0], "a subPath mount is never updated by the kubelet"
    return volumes[mounts[0]["name"]], mounts[0]["mountPath"]


def _example(name: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text())
    return document


def _example_ref() -> str:
    metadata = _example("issuer.yaml")["metadata"]
    return f"{metadata['namespace']}/{metadata['name']}"


def _projection_of(ref: str, issuer: str, keys: tuple[dict[str, str], ...]) -> dict[str, str]:
    trust = PolicyTrust(policy="orders-trust", issuers=(IssuerTrust(ref=ref, issuer=issuer, keys=keys),))
    return render_configmap_data(trust, revision=1)


def test_envoy_reads_a_per_issuer_file_that_the_projection_writes_inside_the_mounted_configmap(
    snippets: list[Any],
) -> None:
    jwt_authn = _one(snippets, "JwtAuthentication")
    _configmap, mount_path = _configmap_mount(snippets)
    providers = jwt_authn["providers"]
    assert providers
    for name, provider in providers.items():
        path = PurePosixPath(provider["local_jwks"]["filename"])
        match = PER_ISSUER_FILE.fullmatch(path.name)
        assert match is not None, f"provider {name} reads {path.name}, not a per-issuer file"
        ref = f"{match['namespace']}/{match['name']}"
        assert issuer_jwks_key(ref) == path.name
        sample = public_jwk(generate_private_key("ES256"), "ES256")
        assert path.name in _projection_of(ref, provider["issuer"], (sample,))
        assert str(path.parent) == mount_path
        assert provider["audiences"], f"provider {name} checks no audience"
        # Our issuers' default leeway; a larger skew would accept tokens our verifier rejects.
        assert provider.get("clock_skew_seconds", 60) <= 60
    required = {rule["requires"]["provider_name"] for rule in jwt_authn["rules"]}
    assert required <= set(providers)


def test_istio_inlines_exactly_a_per_issuer_file_of_the_projection(snippets: list[Any]) -> None:
    authentication = _one(snippets, "RequestAuthentication")
    rules = authentication["spec"]["jwtRules"]
    assert rules
    for rule in rules:
        jwks = json.loads(rule["jwks"])
        assert isinstance(jwks, dict)
        assert list(jwks) == ["keys"]
        assert jwks["keys"]
        for jwk in jwks["keys"]:
            assert {"kid", "alg", "use"} <= set(jwk)
            assert jwk["use"] == "sig"
            assert not PRIVATE_MEMBERS & set(jwk)
            assert jwk["kid"] == thumbprint(jwk)
            # Exactly the members we publish for such a key, no more and no fewer.
            assert public_jwk(public_key_from_jwk(jwk), jwk["alg"]) == jwk
        rendered = _projection_of(_example_ref(), rule["issuer"], tuple(jwks["keys"]))
        assert rule["jwks"].strip() == rendered[issuer_jwks_key(_example_ref())]


def test_istio_and_envoy_examples_describe_the_same_issuer_and_audience(snippets: list[Any]) -> None:
    envoy_providers = _one(snippets, "JwtAuthentication")["providers"].values()
    istio_rules = _one(snippets, "RequestAuthentication")["spec"]["jwtRules"]
    envoy = {(p["issuer"], tuple(p["audiences"])) for p in envoy_providers}
    istio = {(r["issuer"], tuple(r["audiences"])) for r in istio_rules}
    assert envoy == istio


def test_snippets_describe_the_issuer_policy_and_workload_of_the_examples_directory(
    snippets: list[Any],
) -> None:
    issuer = _example("issuer.yaml")
    policy = _example("trustpolicy.yaml")
    workload = _example("workload.yaml")
    configmap, mount_path = _configmap_mount(snippets)
    assert configmap == policy["spec"]["target"]["configMap"]["name"]
    issuer_ref = {"namespace": issuer["metadata"]["namespace"], "name": issuer["metadata"]["name"]}
    assert issuer_ref in policy["spec"]["issuers"]
    expected = (issuer["spec"]["issuer"], tuple(policy["spec"]["verification"]["audiences"]))
    for provider in _one(snippets, "JwtAuthentication")["providers"].values():
        assert (provider["issuer"], tuple(provider["audiences"])) == expected
        assert provider["local_jwks"]["filename"] == f"{mount_path}/{issuer_jwks_key(_example_ref())}"
    authentication = _one(snippets, "RequestAuthentication")
    assert authentication["metadata"]["namespace"] == workload["metadata"]["namespace"]
    labels = workload["spec"]["template"]["metadata"]["labels"]
    assert authentication["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_istio_example_makes_a_valid_token_mandatory_for_the_same_workload(snippets: list[Any]) -> None:
    authentication = _one(snippets, "RequestAuthentication")
    authorization = _one(snippets, "AuthorizationPolicy")
    assert authorization["spec"]["selector"] == authentication["spec"]["selector"]
    assert authorization["metadata"]["namespace"] == authentication["metadata"]["namespace"]
    principals = [
        principal
        for rule in authorization["spec"]["rules"]
        for source in rule["from"]
        for principal in source["source"]["requestPrincipals"]
    ]
    issuers = {rule["issuer"] for rule in authentication["spec"]["jwtRules"]}
    assert principals
    assert all(principal.rsplit("/", 1)[0] in issuers for principal in principals)


def _document(snippets: list[Any], kind: str) -> dict[str, Any]:
    (found,) = [d for d in snippets if isinstance(d, dict) and d.get("kind") == kind]
    return found


def test_the_documented_trustpolicy_is_the_example_with_consumers(snippets: list[Any]) -> None:
    documented = _document(snippets, "TrustPolicy")
    example = _example("trustpolicy.yaml")
    consumers = documented["spec"]["consumers"]
    assert documented | {"spec": {k: v for k, v in documented["spec"].items() if k != "consumers"}} == example
    assert set(consumers) == {"requestAuthentication", "jwksConfigMaps"}


def _rendered(snippets: list[Any]) -> tuple[Any, dict[tuple[str, str], dict[str, Any]], dict[str, str]]:
    """What the operator computes for the documented TrustPolicy and the documented key."""
    from jwt_trust.kube.policies import parse_policy_spec, project, wanted_objects

    documented = _document(snippets, "TrustPolicy")
    spec = parse_policy_spec(documented["metadata"]["name"], documented["spec"])
    (rule,) = _one(snippets, "RequestAuthentication")["spec"]["jwtRules"]
    keys = json.loads(rule["jwks"])["keys"]
    issuer = _example("issuer.yaml")
    body = {
        "spec": issuer["spec"],
        "status": {"keys": [{"kid": k["kid"], "state": "active", "publicKey": k} for k in keys]},
    }
    projection = project(spec, {_example_ref(): body}, 0)
    data = projection.data(1)
    return documented, wanted_objects(spec, projection, data), data


def test_the_documented_request_authentication_is_what_the_operator_writes(snippets: list[Any]) -> None:
    from jwt_trust.kube.reconcile import target_manifest

    policy, objects, _data = _rendered(snippets)
    documented = _one(snippets, "RequestAuthentication")
    meta = documented["metadata"]
    key = ("RequestAuthentication", meta["namespace"], meta["name"])
    spec = objects[("RequestAuthentication", meta["name"])]
    rendered = target_manifest({"metadata": {**policy["metadata"], "uid": "u"}}, key, spec)
    assert documented["spec"] == rendered["spec"] | {
        "jwtRules": [rule | {"jwks": rule["jwks"] + "\n"} for rule in rendered["spec"]["jwtRules"]]
    }
    assert meta["labels"] == rendered["metadata"]["labels"]
    assert documented["apiVersion"] == rendered["apiVersion"]


def test_the_security_policy_reads_the_configmap_the_operator_writes_for_the_issuer(
    snippets: list[Any],
) -> None:
    from jwt_trust.kube.policies import jwks_configmap_name

    policy, objects, data = _rendered(snippets)
    configmap = _document(snippets, "ConfigMap")
    prefix = policy["spec"]["consumers"]["jwksConfigMaps"]["namePrefix"]
    name = jwks_configmap_name(prefix, _example_ref())
    assert configmap["metadata"]["name"] == name
    assert configmap["data"] == {"jwks": objects[("ConfigMap", name)]["jwks"] + "\n"}
    assert objects[("ConfigMap", name)]["jwks"] == data[issuer_jwks_key(_example_ref())]
    security = _document(snippets, "SecurityPolicy")
    assert security["metadata"]["namespace"] == configmap["metadata"]["namespace"]
    (provider,) = security["spec"]["jwt"]["providers"]
    assert provider["localJWKS"] == {
        "type": "ValueRef",
        "valueRef": {"group": "", "kind": "ConfigMap", "name": name},
    }
    issuer = _example("issuer.yaml")["spec"]["issuer"]
    assert (provider["issuer"], provider["audiences"]) == (
        issuer,
        policy["spec"]["verification"]["audiences"],
    )


def test_documented_go_and_node_versions_are_the_pinned_ones() -> None:
    text = DOC.read_text()
    go_mod = (ROOT / "tests" / "interop" / "go" / "go.mod").read_text()
    direct = re.findall(r"^\t(\S+) (v\S+)$", go_mod.split("require (", 1)[1].split(")", 1)[0], re.MULTILINE)
    assert {module for module, _ in direct} == {
        "github.com/go-jose/go-jose/v4",
        "github.com/golang-jwt/jwt/v5",
        "github.com/lestrrat-go/jwx/v3",
    }
    for module, version in direct:
        assert f"| `{module}` | {version} |" in text
    lock = json.loads((ROOT / "tests" / "interop" / "node" / "package-lock.json").read_text())
    assert f"| `jose` | {lock['packages']['node_modules/jose']['version']} |" in text


def test_url_consumers_are_pointed_at_the_documents_the_discovery_service_serves(
    url_snippets: list[Any],
) -> None:
    """The API server stanza is what ``jwt-trust authentication-config`` prints for the example Issuer,
    and Istio's ``jwksUri`` and Envoy's ``remote_jwks`` name that Issuer's JWK Set on the service."""
    from jwt_trust.authentication_config import authentication_configuration, jwt_authenticator
    from jwt_trust.kube.reconcile import discovery_urls

    example = yaml.safe_load((EXAMPLES / "issuer.yaml").read_text())
    meta = example["metadata"]
    urls = discovery_urls(
        "https://jwt-trust-discovery.jwt-trust-system.svc:8443", meta["namespace"], meta["name"]
    )
    (config,) = [
        d for d in url_snippets if isinstance(d, dict) and d.get("kind") == "AuthenticationConfiguration"
    ]
    documented_ca = config["jwt"][0]["issuer"]["certificateAuthority"]
    served = {**example, "status": {"discovery": urls}}
    assert config == authentication_configuration(
        [jwt_authenticator(served, audiences=["kubernetes"], certificate_authority=documented_ca)]
    )
    (istio,) = [d for d in url_snippets if isinstance(d, dict) and d.get("kind") == "RequestAuthentication"]
    (rule,) = istio["spec"]["jwtRules"]
    assert rule["issuer"] == example["spec"]["issuer"]
    assert rule["jwksUri"] == urls["jwksURL"]
    (envoy,) = [d for d in url_snippets if isinstance(d, dict) and "providers" in d]
    (provider,) = envoy["providers"].values()
    assert provider["issuer"] == example["spec"]["issuer"]
    assert provider["remote_jwks"]["http_uri"]["uri"] == urls["jwksURL"]
