"""TrustPolicy decisions: spec parsing, namespace selection, the projected content, and target actions.

Pure: no I/O, no clock, no kopf. The handler gives it the policy, the Issuers it names, the namespaces
and the ConfigMaps it already owns (all from label-selected caches), and applies the actions returned.
"""

from __future__ import annotations

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
    render_configmap_data,
)
from jwt_trust.rotation import parse_duration

from .errors import SpecError
from .issuers import epoch, stored_public_keys

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "jwt-trust"
POLICY_LABEL = "jwt-trust.dev/policy"
HASH_ANNOTATION = "jwt-trust.dev/content-hash"


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
    return PolicySpec(
        name=name,
        issuer_refs=tuple(sorted(set(refs))),
        selector=parse_selector(spec.get("namespaceSelector")),
        target_name=str(target),
        audiences=tuple(verification.get("audiences") or ()),
        algorithms=algorithms or DEFAULT_ALGORITHMS,
        typ=verification.get("typ") or None,
        required_claims=tuple(verification.get("requiredClaims") or ()),
        leeway_seconds=leeway,
    )


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
    """What the cache knows of one ConfigMap that carries our managed-by label."""

    namespace: str
    name: str
    policy: str | None
    data_hash: str  # hash of the data actually stored (drift shows as a mismatch)
    uid: str = ""  # deletes are conditional on it


Action = Literal["apply", "delete", "conflict"]


def plan_targets(
    policy: PolicySpec,
    namespaces: Mapping[str, Mapping[str, str]],
    owned: Iterable[Target],
    wanted_hash: str,
) -> tuple[list[str], dict[tuple[str, str], Action]]:
    """Decide per target: ``apply`` (missing or different), ``delete`` (no longer selected), ``conflict``.

    ``namespaces`` maps each active (not Terminating) namespace to its labels. Returns the matched
    namespaces and the actions; a target that is already correct gets no action, so a steady state
    writes nothing. A ConfigMap carrying our label for another policy is a ``conflict``; one without our
    label never reaches here and is checked by the handler before the first write.
    """
    matched = sorted(ns for ns, labels in namespaces.items() if policy.selector.matches(labels))
    by_namespace: dict[str, Target] = {}
    actions: dict[tuple[str, str], Action] = {}
    for target in owned:
        if target.policy != policy.name:
            if target.name == policy.target_name:
                by_namespace.setdefault(target.namespace, target)
            continue
        if (
            target.name != policy.target_name
            or target.namespace not in namespaces
            or not policy.selector.matches(namespaces[target.namespace])
        ):
            if target.namespace in namespaces or target.name != policy.target_name:
                actions[(target.namespace, target.name)] = "delete"
            continue
        by_namespace[target.namespace] = target
    for namespace in matched:
        current = by_namespace.get(namespace)
        if current is None:
            actions[(namespace, policy.target_name)] = "apply"
        elif current.policy != policy.name:
            actions[(namespace, policy.target_name)] = "conflict"
        elif current.data_hash != wanted_hash:
            actions[(namespace, policy.target_name)] = "apply"
    return matched, actions


def published_kids(projection: Projection) -> list[dict[str, Any]]:
    """``status.publishedKeys``: per issuer, the kids that every synced target now holds."""
    return [
        {"issuer": issuer.ref, "kids": sorted(jwk["kid"] for jwk in issuer.keys if "kid" in jwk)}
        for issuer in projection.trust.issuers
    ]
