"""TrustPolicy decisions: spec parsing, namespace selection, the projected content, and target actions.

Pure: no I/O, no clock, no kopf. The handler gives it the policy, the Issuers it names, the namespaces
and the objects it already owns (all from label-selected caches), and applies the actions returned.

A policy's targets in each selected namespace are its ConfigMap and its consumer objects (an Istio
RequestAuthentication, one ConfigMap per issuer for gateways): every one is planned by the same rule
(:func:`plan_objects`) and counts the same for ``status.publishedKeys``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from jwt_trust.algorithms import normalise_algorithm
from jwt_trust.projection import (
    DEFAULT_ALGORITHMS,
    MAX_CONFIGMAP_BYTES,
    IssuerTrust,
    PolicyTrust,
    content_hash,
    issuer_jwks_key,
    render_configmap_data,
)
from jwt_trust.rotation import parse_duration

from .errors import SpecError
from .issuers import epoch, stored_public_keys

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "jwt-trust"
POLICY_LABEL = "jwt-trust.dev/policy"
HASH_ANNOTATION = "jwt-trust.dev/content-hash"
CONFIGMAP = "ConfigMap"
REQUEST_AUTHENTICATION = "RequestAuthentication"
# The key an Envoy Gateway SecurityPolicy's localJWKS (and kgateway) reads from a referenced ConfigMap.
GATEWAY_JWKS_KEY = "jwks"
MAX_NAME = 253  # a DNS subdomain: the names of ConfigMaps and RequestAuthentications


@dataclass(frozen=True)
class Selector:
    match_labels: Mapping[str, str]
    match_expressions: tuple[tuple[str, str, frozenset[str]], ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        if any(labels.get(key) != value for key, value in self.match_labels.items()):
            return False
        for key, operator, values in self.match_expressions:
            present = key in labels
            if operator == "In" and not (present and labels[key] in values):
                return False
            if operator == "NotIn" and present and labels[key] in values:
                return False
            if operator == "Exists" and not present:
                return False
            if operator == "DoesNotExist" and present:
                return False
        return True


@dataclass(frozen=True)
class RequestAuthenticationSpec:
    """``spec.consumers.requestAuthentication``: what the Istio object carries besides the keys."""

    name: str
    match_labels: tuple[tuple[str, str], ...] | None = None  # the workload selector; None: every workload
    forward_original_token: bool | None = None
    output_payload_to_header: str | None = None


@dataclass(frozen=True)
class Consumers:
    """``spec.consumers``: the consumer objects written next to the ConfigMap in every namespace."""

    request_authentication: RequestAuthenticationSpec | None = None
    jwks_configmap_prefix: str | None = None  # None: no per-issuer ConfigMaps


@dataclass(frozen=True)
class PolicySpec:
    name: str
    issuer_refs: tuple[str, ...]
    selector: Selector
    target_name: str
    audiences: tuple[str, ...]
    algorithms: tuple[str, ...]
    typ: str | None
    required_claims: tuple[str, ...]
    leeway_seconds: int
    consumers: Consumers = Consumers()


def parse_selector(section: Any) -> Selector:
    if not isinstance(section, Mapping):
        raise SpecError("InvalidSelector", "spec.namespaceSelector is required")
    labels = dict(section.get("matchLabels") or {})
    expressions = []
    for entry in section.get("matchExpressions") or ():
        operator = entry.get("operator")
        values = frozenset(entry.get("values") or ())
        if operator not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise SpecError("InvalidSelector", f"unknown selector operator {operator!r}")
        if (operator in ("In", "NotIn")) != bool(values):
            raise SpecError(
                "InvalidSelector", f"selector operator {operator} with values {sorted(values)} is invalid"
            )
        expressions.append((str(entry.get("key")), operator, values))
    if not labels and not expressions:
        raise SpecError("InvalidSelector", "spec.namespaceSelector is empty; it would select every namespace")
    return Selector(labels, tuple(expressions))


def parse_policy_spec(name: str, spec: Mapping[str, Any]) -> PolicySpec:
    refs = []
    for entry in spec.get("issuers") or ():
        namespace, issuer = entry.get("namespace"), entry.get("name")
        if not namespace or not issuer:
            raise SpecError("InvalidIssuerRef", f"spec.issuers entry {entry!r} needs namespace and name")
        refs.append(f"{namespace}/{issuer}")
    if not refs:
        raise SpecError("InvalidIssuerRef", "spec.issuers must name at least one Issuer")
    verification = spec.get("verification") or {}
    try:
        # Validate each name but keep the one the user wrote: token headers carry the issuer's own
        # name for the algorithm (Ed25519 or EdDSA), and the verifier compares them exactly.
        algorithms = tuple(dict.fromkeys(verification.get("algorithms") or ()))
        for algorithm in algorithms:
            normalise_algorithm(algorithm)
        leeway = parse_duration(str(verification.get("leeway", "60s")))
    except ValueError as error:
        raise SpecError("InvalidVerification", str(error)) from None
    target = ((spec.get("target") or {}).get("configMap") or {}).get("name") or name
    audiences = tuple(verification.get("audiences") or ())
    issuer_refs = tuple(sorted(set(refs)))
    consumers = parse_consumers(name, spec.get("consumers") or {}, audiences)
    if consumers.jwks_configmap_prefix is not None:
        for ref in issuer_refs:
            jwks_name = jwks_configmap_name(consumers.jwks_configmap_prefix, ref)
            if len(jwks_name) > MAX_NAME:
                raise SpecError("InvalidConsumer", f"ConfigMap name {jwks_name} is longer than {MAX_NAME}")
            if jwks_name == target:
                raise SpecError("InvalidConsumer", f"ConfigMap {jwks_name} is also the policy's target")
    return PolicySpec(
        name=name,
        issuer_refs=issuer_refs,
        selector=parse_selector(spec.get("namespaceSelector")),
        target_name=str(target),
        audiences=audiences,
        algorithms=algorithms or DEFAULT_ALGORITHMS,
        typ=verification.get("typ") or None,
        required_claims=tuple(verification.get("requiredClaims") or ()),
        leeway_seconds=leeway,
        consumers=consumers,
    )


def parse_consumers(policy: str, section: Mapping[str, Any], audiences: tuple[str, ...]) -> Consumers:
    """``spec.consumers``; every default is the policy's name."""
    istio = section.get("requestAuthentication")
    request_authentication = None
    if istio is not None:
        if not audiences:
            # Istio checks no audience when none is listed, where our verifier refuses a token with one.
            raise SpecError(
                "InvalidConsumer",
                "consumers.requestAuthentication needs verification.audiences "
                "(Istio accepts every audience when none is listed)",
            )
        labels = (istio.get("selector") or {}).get("matchLabels")
        header = istio.get("outputPayloadToHeader")
        forward = istio.get("forwardOriginalToken")
        request_authentication = RequestAuthenticationSpec(
            name=str(istio.get("name") or policy),
            match_labels=tuple(sorted((str(k), str(v)) for k, v in labels.items())) if labels else None,
            forward_original_token=bool(forward) if forward is not None else None,
            output_payload_to_header=str(header) if header else None,
        )
    gateway = section.get("jwksConfigMaps")
    prefix = None if gateway is None else str(gateway.get("namePrefix") or policy)
    return Consumers(request_authentication, prefix)


def jwks_configmap_name(prefix: str, ref: str) -> str:
    """The per-issuer ConfigMap of the Issuer ``namespace/name``: ``<prefix>.<namespace>.<name>``
    (unambiguous: a namespace holds no dot)."""
    namespace, _, name = ref.partition("/")
    return f"{prefix}.{namespace}.{name}"


def issuer_trust(ref: str, issuer: Mapping[str, Any], now: int) -> IssuerTrust | None:
    """What a policy publishes for one Issuer: the keys in its status, its revocations from its spec."""
    spec, status = issuer.get("spec") or {}, issuer.get("status") or {}
    iss = spec.get("issuer")
    if not isinstance(iss, str) or not iss:
        return None
    revoked_kids = tuple(sorted({str(k) for k in spec.get("revokedKeys") or ()}))
    keys = tuple(jwk for kid, jwk in sorted(stored_public_keys(status).items()) if kid not in revoked_kids)
    revoked_jtis = []
    for entry in spec.get("revokedTokens") or ():
        try:
            jti, expires = str(entry["jti"]), epoch(str(entry["expiresAt"]))
        except (KeyError, TypeError, ValueError):
            continue
        if expires > now:
            revoked_jtis.append((jti, expires))
    return IssuerTrust(
        ref=ref, issuer=iss, keys=keys, revoked_kids=revoked_kids, revoked_jtis=tuple(sorted(revoked_jtis))
    )


@dataclass(frozen=True)
class Projection:
    trust: PolicyTrust
    missing_issuers: tuple[str, ...]
    unhashed: str  # hash of the content rendered at revision 0: changes exactly when the content does

    def data(self, revision: int) -> dict[str, str]:
        return render_configmap_data(self.trust, revision=revision)


def project(policy: PolicySpec, issuers: Mapping[str, Mapping[str, Any]], now: int) -> Projection:
    trusted: list[IssuerTrust] = []
    missing: list[str] = []
    for ref in policy.issuer_refs:
        body = issuers.get(ref)
        entry = issuer_trust(ref, body, now) if body is not None else None
        if entry is None:
            missing.append(ref)
        else:
            trusted.append(entry)
    trust = PolicyTrust(
        policy=policy.name,
        issuers=tuple(trusted),
        audiences=policy.audiences,
        algorithms=policy.algorithms,
        typ=policy.typ,
        required_claims=policy.required_claims,
        leeway_seconds=policy.leeway_seconds,
    )
    return Projection(trust, tuple(missing), content_hash(render_configmap_data(trust, revision=0)))


Revision = tuple[int, str | None]
"""A ``trust.json`` revision and the hash of the content it names (``status.revision``/``contentHash``)."""


def next_revision(recorded: Revision, written: Revision | None, content_hash: str) -> Revision:
    """The revision for ``content_hash``: the newest known one if the content is unchanged, else one more.

    ``recorded`` is what the (cached) status says; ``written`` what this process last wrote, which the
    cache may not show yet. Taking the newer of the two keeps the contract that the revision increases
    on every change, even when two changes are reconciled before the watch reports the first.
    """
    newest = max(recorded, written or (0, None), key=lambda revision: revision[0])
    return newest if newest[1] == content_hash else (newest[0] + 1, content_hash)


def data_size(data: Mapping[str, str]) -> int:
    return sum(len(k.encode()) + len(v.encode()) for k, v in data.items())


def too_large(data: Mapping[str, str]) -> bool:
    # Labels, annotations and object overhead share the 1 MiB limit; keep a few KiB for them.
    return data_size(data) > MAX_CONFIGMAP_BYTES - 16 * 1024


@dataclass(frozen=True)
class Target:
    """What the cache knows of one object (a ConfigMap, a consumer object) that carries our managed-by
    label."""

    namespace: str
    name: str
    policy: str | None
    data_hash: str  # hash of the content actually stored (drift shows as a mismatch)
    uid: str = ""  # deletes are conditional on it
    kind: str = CONFIGMAP


Action = Literal["apply", "delete", "conflict"]
ObjectKey = tuple[str, str, str]
"""(kind, namespace, name) of one target object."""


def object_hash(content: Mapping[str, Any]) -> str:
    """The hash of a target's content: a ConfigMap's ``data``, a RequestAuthentication's ``spec``; for
    a ConfigMap it is :func:`~jwt_trust.projection.content_hash` of its data."""
    canonical = json.dumps(dict(content), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def wanted_objects(
    spec: PolicySpec, projection: Projection, data: Mapping[str, str]
) -> dict[tuple[str, str], dict[str, Any]]:
    """Per (kind, name), the content every selected namespace must hold: the ConfigMap's ``data`` (the
    projection), each per-issuer ConfigMap's ``data``, the RequestAuthentication's ``spec``."""
    wanted: dict[tuple[str, str], dict[str, Any]] = {(CONFIGMAP, spec.target_name): dict(data)}
    consumers = spec.consumers
    issuers = sorted(projection.trust.issuers, key=lambda issuer: issuer.ref)
    if consumers.jwks_configmap_prefix is not None:
        for issuer in issuers:
            name = jwks_configmap_name(consumers.jwks_configmap_prefix, issuer.ref)
            wanted[(CONFIGMAP, name)] = {GATEWAY_JWKS_KEY: data[issuer_jwks_key(issuer.ref)]}
    istio = consumers.request_authentication
    if istio is not None:
        rules = []
        for issuer in issuers:
            rule: dict[str, Any] = {
                "issuer": issuer.issuer,
                "audiences": list(spec.audiences),
                "jwks": data[issuer_jwks_key(issuer.ref)],
            }
            if istio.forward_original_token is not None:
                rule["forwardOriginalToken"] = istio.forward_original_token
            if istio.output_payload_to_header is not None:
                rule["outputPayloadToHeader"] = istio.output_payload_to_header
            rules.append(rule)
        body: dict[str, Any] = {"jwtRules": rules}
        if istio.match_labels is not None:
            body["selector"] = {"matchLabels": dict(istio.match_labels)}
        wanted[(REQUEST_AUTHENTICATION, istio.name)] = body
    return wanted


def plan_objects(
    policy: PolicySpec,
    namespaces: Mapping[str, Mapping[str, str]],
    owned: Iterable[Target],
    wanted: Mapping[tuple[str, str], str],
) -> tuple[list[str], dict[ObjectKey, Action]]:
    """Decide per target object: ``apply`` (missing or different), ``delete`` (no longer selected or
    no longer wanted), ``conflict`` (another policy's).

    ``namespaces`` maps each active (not Terminating) namespace to its labels; ``wanted`` maps each
    (kind, name) every selected namespace must hold to the hash of its content. Returns the matched
    namespaces and the actions; an object that is already correct gets no action, so a steady state
    writes nothing. An object carrying our label for another policy is a ``conflict``; one without our
    label never reaches here and is checked by the handler before the first write. An object of ours
    in a Terminating namespace goes with the namespace, unless it is no longer wanted at all.
    """
    matched = sorted(ns for ns, labels in namespaces.items() if policy.selector.matches(labels))
    current: dict[ObjectKey, Target] = {}
    actions: dict[ObjectKey, Action] = {}
    for target in owned:
        key = (target.kind, target.namespace, target.name)
        is_wanted = (target.kind, target.name) in wanted
        if target.policy != policy.name:
            if is_wanted:
                current.setdefault(key, target)
            continue
        if (
            not is_wanted
            or target.namespace not in namespaces
            or not policy.selector.matches(namespaces[target.namespace])
        ):
            if target.namespace in namespaces or not is_wanted:
                actions[key] = "delete"
            continue
        current[key] = target
    for namespace in matched:
        for (kind, name), wanted_hash in wanted.items():
            key = (kind, namespace, name)
            found = current.get(key)
            if found is None:
                actions[key] = "apply"
            elif found.policy != policy.name:
                actions[key] = "conflict"
            elif found.data_hash != wanted_hash:
                actions[key] = "apply"
    return matched, actions


def plan_targets(
    policy: PolicySpec,
    namespaces: Mapping[str, Mapping[str, str]],
    owned: Iterable[Target],
    wanted_hash: str,
) -> tuple[list[str], dict[tuple[str, str], Action]]:
    """:func:`plan_objects` for the policy's ConfigMap alone, keyed by (namespace, name)."""
    configmaps = [target for target in owned if target.kind == CONFIGMAP]
    matched, actions = plan_objects(
        policy, namespaces, configmaps, {(CONFIGMAP, policy.target_name): wanted_hash}
    )
    return matched, {(namespace, name): action for (_, namespace, name), action in actions.items()}


def published_kids(projection: Projection) -> list[dict[str, Any]]:
    """``status.publishedKeys``: per issuer, the kids that every synced target now holds."""
    return [
        {"issuer": issuer.ref, "kids": sorted(jwk["kid"] for jwk in issuer.keys if "kid" in jwk)}
        for issuer in projection.trust.issuers
    ]
