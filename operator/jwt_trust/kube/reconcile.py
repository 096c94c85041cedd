"""What one reconciliation of an Issuer or a TrustPolicy must do, decided from what was observed.

Pure: no I/O, no kopf, no client, no clock (every function takes ``now``). The handlers read the
caches, the Secret and an external JWKS, call these functions, and apply the outcome: the Secret,
then the targets, then one status write, the Events, and when to look again. So every rule that keeps
tokens valid or says what a user sees is here and unit-tested with a fake clock.

Everything returned for ``status`` is the complete status we own (kopf's ``status.kopf`` aside): it is
written by server-side apply, so a field left out is a field removed.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from jwt_trust.projection import content_hash
from jwt_trust.rotation import KEY_STATES, earliest_activation

from .discovery_documents import configuration_url, jwks_url, normalise_base_url
from .errors import NotReady
from .issuers import ExternalJWKS, IssuerSpec, Step, iso, secret_name, status_keys
from .policies import (
    CONFIGMAP,
    HASH_ANNOTATION,
    MANAGED_BY,
    MANAGED_BY_VALUE,
    POLICY_LABEL,
    REQUEST_AUTHENTICATION,
    Action,
    ObjectKey,
    PolicySpec,
    Projection,
    Revision,
    Target,
    next_revision,
    object_hash,
    plan_objects,
    project,
    published_kids,
    too_large,
    wanted_objects,
)

GROUP, VERSION = "jwt-trust.dev", "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
ISSUER_LABEL = "jwt-trust.dev/issuer"
FIELD_MANAGER = "jwt-trust"
# A policy waits at most this long for a named Issuer whose spec changed to reconcile (see settling).
ISSUER_SETTLE_SECONDS = 5.0
SETTLE_POLL_SECONDS = 0.2
# At most this many failed namespaces are listed in a policy's status, and reported one Event each.
FAILED_LISTED, FAILED_REPORTED = 100, 5
DISCOVERY = "the discovery service"
DISCOVERY_UNCONFIGURED = (
    "the discovery service, which the operator is not set up to reach (Helm value discovery.enabled)"
)
# While a key waits for the discovery service, its replicas are asked again this often: they serve a
# key as soon as they see the status that lists it, and nothing pokes the operator when they do.
DISCOVERY_POLL_SECONDS = 2.0
NOT_OURS_REASONS = ("TargetNotOwned", "TargetOwnedByAnotherPolicy")
# Where each kind of target object lives: (apiVersion, resource).
TARGET_APIS = {
    CONFIGMAP: ("v1", "configmaps"),
    REQUEST_AUTHENTICATION: ("security.istio.io/v1", "requestauthentications"),
}
# What the operator knows of a consumer kind's API: it serves the kind and the operator watches it, the
# API server does not serve it (its CRD is not installed), or this operator was not enabled for it.
SERVED, MISSING, DISABLED = "served", "missing", "disabled"
HELM_VALUES = {REQUEST_AUTHENTICATION: "consumers.istio.enabled"}

Event = tuple[str, str, str]
"""An Event to report: (type, reason, message)."""


# --- shared ---------------------------------------------------------------------------------------


def ready_condition(
    ok: bool, reason: str, message: str, *, generation: Any, previous: Mapping[str, Any], now: int
) -> dict[str, Any]:
    """The Ready condition; its ``lastTransitionTime`` moves only when its status does."""
    old: Mapping[str, Any] = next(
        (c for c in previous.get("conditions") or () if c.get("type") == "Ready"), {}
    )
    value = "True" if ok else "False"
    keep = old.get("status") == value and old.get("lastTransitionTime")
    return {
        "type": "Ready",
        "status": value,
        "reason": reason,
        "message": message[:1024],
        "observedGeneration": generation,
        "lastTransitionTime": old["lastTransitionTime"] if keep else iso(now),
    }


def owned_status(body: Mapping[str, Any]) -> dict[str, Any]:
    """The status fields we write (kopf keeps its own bookkeeping in ``status.kopf``)."""
    return {k: v for k, v in (body.get("status") or {}).items() if k != "kopf"}


def not_ready_status(body: Mapping[str, Any], error: NotReady, now: int) -> dict[str, Any]:
    """The status for an object that cannot be reconciled as it is: Ready=False with the reason, and
    everything else as it was, so that keys already published stay published."""
    current = owned_status(body)
    generation = (body.get("metadata") or {}).get("generation")
    return {
        **current,
        "observedGeneration": generation,
        "conditions": [
            ready_condition(
                False, error.reason, error.message, generation=generation, previous=current, now=now
            )
        ],
    }


def is_ours(obj: Mapping[str, Any]) -> bool:
    """True for an object we created: our label, or an Apply entry of our field manager."""
    meta = obj.get("metadata") or {}
    if (meta.get("labels") or {}).get(MANAGED_BY) == MANAGED_BY_VALUE:
        return True
    return any(
        entry.get("manager") == FIELD_MANAGER and entry.get("operation") == "Apply"
        for entry in meta.get("managedFields") or ()
    )


def policy_refs(body: Mapping[str, Any]) -> set[str]:
    """The ``namespace/name`` of every Issuer a TrustPolicy names."""
    return {f"{i.get('namespace')}/{i.get('name')}" for i in (body.get("spec") or {}).get("issuers") or ()}


def _owner(kind: str, meta: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": kind,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": False,
    }


# --- Issuer with generated keys -------------------------------------------------------------------


def secret_data(secret: Mapping[str, Any]) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}


def readable_secret(name: str, secret: Mapping[str, Any] | None) -> dict[str, bytes] | None:
    """The data of an Issuer's Secret (None: there is none yet); NotReady for one we did not create."""
    if secret is None:
        return None
    if not is_ours(secret):
        raise NotReady(
            "SecretNotOwned",
            f"Secret {secret_name(name)} exists and was not created by jwt-trust; not touched",
        )
    return secret_data(secret)


def secret_denied(namespace: str) -> NotReady:
    return NotReady(
        "SecretAccessDenied",
        f"the operator may not read Secrets in namespace {namespace} (Helm value secretNamespaces)",
    )


def secret_manifest(issuer: Mapping[str, Any], data: Mapping[str, bytes], spec: IssuerSpec) -> dict[str, Any]:
    """The Secret to apply: owned by the Issuer (so it goes with it) unless the Issuer retains it."""
    meta = issuer["metadata"]
    metadata: dict[str, Any] = {
        "name": secret_name(meta["name"]),
        "namespace": meta["namespace"],
        "labels": {MANAGED_BY: MANAGED_BY_VALUE, ISSUER_LABEL: meta["name"]},
    }
    if not spec.retain_secret:
        metadata["ownerReferences"] = [_owner("Issuer", meta)]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": metadata,
        "data": {key: base64.b64encode(value).decode() for key, value in sorted(data.items())},
    }


def secret_needs_write(
    secret: Mapping[str, Any] | None,
    data: Mapping[str, bytes] | None,
    wanted: Mapping[str, bytes],
    spec: IssuerSpec,
) -> bool:
    """Write when the content differs, or when the owner reference disagrees with deletionPolicy."""
    if wanted != data:
        return True
    owned = secret is not None and bool((secret.get("metadata") or {}).get("ownerReferences"))
    return secret is not None and owned == spec.retain_secret


@dataclass(frozen=True)
class Publication:
    """What every publication target of one Issuer holds: the TrustPolicies naming it (each reports
    the kids all its targets hold) and, for an Issuer served by it, the discovery service."""

    held: Mapping[str, frozenset[str]]  # per target ("TrustPolicy web", DISCOVERY): the kids it holds

    @property
    def kids(self) -> frozenset[str]:
        """A key is published only when every target holds it (no target: nothing is)."""
        sets = list(self.held.values())
        return frozenset.intersection(*sets) if sets else frozenset()

    def waiting_for(self, kids: Iterable[str]) -> list[str]:
        """The targets that do not hold every one of ``kids`` yet."""
        wanted = set(kids)
        return sorted(name for name, held in self.held.items() if not wanted <= held)


def publication(
    ref: str,
    policies: Iterable[Mapping[str, Any]],
    *,
    discovery: frozenset[str] | None = None,
    discovery_label: str = DISCOVERY,
) -> Publication:
    """The progress of every TrustPolicy naming ``ref`` (one being deleted does not count), and with
    ``discovery`` (the kids every ready replica of the discovery service serves) of that service,
    under ``discovery_label`` (:data:`DISCOVERY_UNCONFIGURED` when the operator cannot reach it)."""
    held: dict[str, frozenset[str]] = {}
    for body in policies:
        meta = body.get("metadata") or {}
        if ref not in policy_refs(body) or meta.get("deletionTimestamp"):
            continue
        held[f"TrustPolicy {meta.get('name')}"] = frozenset(
            kid
            for entry in (body.get("status") or {}).get("publishedKeys") or ()
            if entry.get("issuer") == ref
            for kid in entry.get("kids") or ()
        )
    if discovery is not None:
        held[discovery_label] = discovery
    return Publication(held)


def served_by_every_replica(replicas: Mapping[str, frozenset[str] | None]) -> frozenset[str]:
    """The kids every ready replica of the discovery service serves (per replica: the kids of the JWK
    Set it served, None when it did not answer). No ready replica, or one that did not answer, serves
    nothing: a URL consumer may be sent to any of them."""
    sets = list(replicas.values())
    if not sets or any(kids is None for kids in sets):
        return frozenset()
    return frozenset.intersection(*(kids for kids in sets if kids is not None))


def replica_urls(endpoint_slices: Iterable[Mapping[str, Any]], path: str) -> dict[str, str]:
    """Per ready replica of a Service (from its EndpointSlices): the https URL of ``path`` on it."""
    urls: dict[str, str] = {}
    for piece in endpoint_slices:
        port = next((p.get("port") for p in piece.get("ports") or () if p.get("port")), None)
        if port is None:
            continue
        for endpoint in piece.get("endpoints") or ():
            # An unknown readiness counts as ready, as the EndpointSlice API asks of its consumers.
            if (endpoint.get("conditions") or {}).get("ready") is False or not endpoint.get("addresses"):
                continue
            address = endpoint["addresses"][0]
            host = f"[{address}]" if ":" in address else address
            urls[f"{host}:{port}"] = f"https://{host}:{port}{path}"
    return urls


def discovery_urls(base_url: str, namespace: str, name: str) -> dict[str, str]:
    """Where the discovery service serves an Issuer (``status.discovery``)."""
    base = normalise_base_url(base_url)
    return {
        "discoveryURL": configuration_url(base, namespace, name),
        "jwksURL": jwks_url(base, namespace, name),
    }


@dataclass(frozen=True)
class IssuerOutcome:
    status: dict[str, Any]
    events: tuple[Event, ...] = ()
    wake_at: float | None = None
    cleared: tuple[str, ...] = ()  # Event reasons whose episode is over
    generated: int = 0
    revoked: int = 0


def generated_outcome(
    body: Mapping[str, Any],
    spec: IssuerSpec,
    result: Step,
    trust: Publication,
    now: int,
    *,
    discovery: Mapping[str, str] | None = None,
) -> IssuerOutcome:
    """The status, Events and wake-up after one step of the rotation plan; ``discovery``: where the
    discovery service serves the Issuer, when it does."""
    status = owned_status(body)
    generation = (body.get("metadata") or {}).get("generation")
    pending = [r.kid for r in result.records if r.published_at is None]
    waiting_for = trust.waiting_for(pending)
    active = result.plan.active_kid
    if active is not None:
        ready = ready_condition(
            True, "KeyActive", f"key {active} signs", generation=generation, previous=status, now=now
        )
    elif waiting_for:
        message = f"the next key waits for publication by {', '.join(waiting_for)}"
        ready = ready_condition(
            False, "AwaitingPublication", message, generation=generation, previous=status, now=now
        )
    else:
        upcoming = min((r.activates_at for r in result.records if r.activates_at is not None), default=None)
        message = (
            f"no key signs yet; the next key activates at {iso(upcoming)}" if upcoming else "no key signs yet"
        )
        ready = ready_condition(
            False, "AwaitingActivation", message, generation=generation, previous=status, now=now
        )
    new_status: dict[str, Any] = {
        "observedGeneration": generation,
        "conditions": [ready],
        "keys": status_keys(result.records, result.public_keys, now),
    }
    if active is not None:
        new_status["activeKeyID"] = active
    # The next change of the key set; while a key waits for publication its activation time is not
    # known yet, and the earliest it can be is the best a user can be told.
    changes = [t for t in (result.plan.wake_at, earliest_activation(now, result.records, spec.rotation)) if t]
    if changes:
        new_status["nextRotation"] = iso(min(changes))
    if discovery:
        new_status["discovery"] = dict(discovery)
    events = [("Normal", "KeyGenerated", f"generated {spec.algorithm} key {kid}") for kid in result.generated]
    events += result.events
    wake_at = None if result.plan.wake_at is None else float(result.plan.wake_at)
    if DISCOVERY in waiting_for:
        wake_at = min(wake_at or float("inf"), now + DISCOVERY_POLL_SECONDS)
    return IssuerOutcome(
        status=new_status,
        events=tuple(events),
        wake_at=wake_at,
        generated=len(result.generated),
        revoked=sum(1 for _, reason, _ in result.events if reason == "KeyRevoked"),
    )


def key_counts(status: Mapping[str, Any]) -> dict[str, int]:
    """How many published keys are in each state (the keys metric)."""
    return {
        state: sum(1 for k in status.get("keys") or () if k.get("state") == state) for state in KEY_STATES
    }


# --- Issuer mirroring an external JWKS ------------------------------------------------------------


def spec_fingerprint(spec: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def refresh_due(
    last: tuple[float, str] | None, fingerprint: str, interval: float, now: float, has_keys: bool
) -> float | None:
    """When the JWKS URL must be fetched next: None for now (never fetched, the spec changed since, or
    nothing mirrored yet), else the end of the refresh interval."""
    if last is None or not has_keys:
        return None
    fetched_at, fetched_for = last
    due = fetched_at + interval
    return due if fetched_for == fingerprint and now < due else None


def external_outcome(
    body: Mapping[str, Any],
    mirrored: ExternalJWKS,
    source: str,
    wound: Step | None,
    *,
    now: int,
    next_fetch: float | None,
    discovery: Mapping[str, str] | None = None,
) -> IssuerOutcome:
    """The status after mirroring ``mirrored`` from ``source``; ``wound``: the wind-down of keys the
    Issuer generated before it mirrored this provider (None when it never did)."""
    status = owned_status(body)
    generation = (body.get("metadata") or {}).get("generation")
    entries = [
        {
            "kid": jwk["kid"],
            **({"alg": jwk["alg"]} if "alg" in jwk else {}),
            "state": "external",
            "publicKey": jwk,
        }
        for jwk in mirrored.keys
    ]
    events: list[Event] = []
    cleared = ["JWKSFetchFailed"]
    message = f"{len(mirrored.keys)} keys from {source}"
    if mirrored.warnings:
        # Keys we cannot verify are left out, not the whole set: say which, once per distinct list.
        skipped = "; ".join(mirrored.warnings)
        message += f"; skipped: {skipped}"
        events.append(("Warning", "JWKSKeysSkipped", skipped[:1024]))
    else:
        cleared.append("JWKSKeysSkipped")
    winding_down: list[dict[str, Any]] = []
    wake_at = next_fetch
    if wound is not None:
        winding_down = status_keys(wound.records, wound.public_keys, now)
        events += wound.events
        if wound.records:
            until = max(r.remove_at or 0 for r in wound.records)
            message += f"; {len(wound.records)} generated keys stay published until {iso(until)}"
        if wound.plan.wake_at is not None:
            wake_at = min(wake_at or float("inf"), float(wound.plan.wake_at))
    new_status: dict[str, Any] = {
        "observedGeneration": generation,
        "conditions": [
            ready_condition(True, "JWKSLoaded", message, generation=generation, previous=status, now=now)
        ],
        "keys": entries + winding_down,
    }
    # Stamped only when the keys change, so a steady provider costs no writes.
    updated_at = status.get("jwksUpdatedAt")
    if entries != [k for k in status.get("keys") or () if k.get("state") == "external"]:
        updated_at = iso(now)
        events.append(("Normal", "JWKSUpdated", message))
    if updated_at:
        new_status["jwksUpdatedAt"] = updated_at
    if discovery:
        new_status["discovery"] = dict(discovery)
    return IssuerOutcome(status=new_status, events=tuple(events), wake_at=wake_at, cleared=tuple(cleared))


# --- TrustPolicy ----------------------------------------------------------------------------------


def settling(
    refs: Iterable[str], issuers: Mapping[str, Mapping[str, Any]], stale_since: dict[str, float], now: float
) -> float | None:
    """When a named Issuer's spec changed and it has not reconciled yet, the time to look again.

    Projecting it now would write twice (once for the spec, once for the keys its reconciliation is
    about to produce), so the policy waits, but at most ISSUER_SETTLE_SECONDS: a revocation must not
    be held back by an Issuer that cannot reconcile. ``stale_since`` (per Issuer, when its change was
    first seen) is updated in place.
    """
    waiting = False
    for ref in refs:
        body = issuers.get(ref)
        meta = (body or {}).get("metadata") or {}
        if body is None or meta.get("generation") == (body.get("status") or {}).get("observedGeneration"):
            stale_since.pop(ref, None)
            continue
        since = stale_since.setdefault(ref, now)
        waiting = waiting or now - since < ISSUER_SETTLE_SECONDS
    return now + SETTLE_POLL_SECONDS if waiting else None


@dataclass(frozen=True)
class PolicyWrites:
    """What a policy's targets must hold, and what to do to each."""

    projection: Projection
    revision: Revision
    data: dict[str, str]
    matched: list[str]
    actions: dict[ObjectKey, Action]
    objects: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # (kind, name): content
    unwritable: dict[ObjectKey, tuple[str, str]] = field(default_factory=dict)  # not even tried: why


def unserved(kind: str, namespace: str, name: str, api: str) -> tuple[str, str]:
    """Why a consumer object cannot be written when its kind is not served or not enabled."""
    where = f"{kind} {namespace}/{name}"
    if api == MISSING:
        group_version, resource = TARGET_APIS[kind]
        return (
            "ConsumerCRDMissing",
            f"{where}: the API server does not serve {resource}.{group_version} (is its CRD installed?)",
        )
    return (
        "ConsumerDisabled",
        f"{where}: this operator does not manage {kind}s (Helm value {HELM_VALUES.get(kind, kind)})",
    )


def policy_writes(
    body: Mapping[str, Any],
    spec: PolicySpec,
    issuers: Mapping[str, Mapping[str, Any]],
    *,
    namespaces: Mapping[str, Mapping[str, str]],
    targets: Iterable[Target],
    written: Revision | None,
    now: int,
    apis: Mapping[str, str] | None = None,
) -> PolicyWrites:
    """The content and the per-target actions; NotReady when the content cannot be written at all.

    ``namespaces``: every active namespace and its labels; ``targets``: every object of ours the caches
    hold (ConfigMaps and consumer objects, any policy's); ``written``: the revision this process wrote
    last (the cached status may not show it yet); ``apis``: per consumer kind, SERVED, MISSING or
    DISABLED (a kind left out is DISABLED). A consumer object of a kind that is not served is not
    written but reported as unwritable, which holds rotation back like a failed write.
    """
    projection = project(spec, issuers, now)
    status = body.get("status") or {}
    recorded = (int(status.get("revision") or 0), status.get("contentHash"))
    revision = next_revision(recorded, written, projection.unhashed)
    data = projection.data(revision[0])
    if too_large(data):
        raise NotReady(
            "ProjectionTooLarge", "the projected ConfigMap would exceed 1 MiB; nothing was written"
        )
    objects = wanted_objects(spec, projection, data)
    wanted = {key: object_hash(content) for key, content in objects.items()}
    matched, actions = plan_objects(spec, namespaces, targets, wanted)
    states = {CONFIGMAP: SERVED, **(apis or {})}
    unwritable: dict[ObjectKey, tuple[str, str]] = {}
    for key, action in list(actions.items()):
        api = states.get(key[0], DISABLED)
        if action == "apply" and api != SERVED:
            unwritable[key] = unserved(*key, api)
            del actions[key]
    return PolicyWrites(projection, revision, data, matched, actions, objects, unwritable)


def target_manifest(policy: Mapping[str, Any], key: ObjectKey, content: Mapping[str, Any]) -> dict[str, Any]:
    """The object to apply for one target: labelled for our caches, owned by the policy (the garbage
    collector cleans up even if the operator is gone), its content in ``data`` or ``spec``."""
    kind, namespace, name = key
    if kind == CONFIGMAP:
        return configmap_manifest(policy, namespace, name, content)
    meta = policy["metadata"]
    return {
        "apiVersion": TARGET_APIS[kind][0],
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {MANAGED_BY: MANAGED_BY_VALUE, POLICY_LABEL: meta["name"]},
            "ownerReferences": [_owner("TrustPolicy", meta)],
        },
        "spec": dict(content),
    }


def configmap_manifest(
    policy: Mapping[str, Any], namespace: str, name: str, data: Mapping[str, str]
) -> dict[str, Any]:
    meta = policy["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {MANAGED_BY: MANAGED_BY_VALUE, POLICY_LABEL: meta["name"]},
            "annotations": {HASH_ANNOTATION: content_hash(data)},
            # A cluster-scoped owner: the garbage collector cleans up even if the operator is gone.
            "ownerReferences": [_owner("TrustPolicy", meta)],
        },
        "data": dict(data),
    }


def published_keys(
    projection: Projection, previous: Sequence[Mapping[str, Any]], writes_failed: bool
) -> list[dict[str, Any]]:
    """``status.publishedKeys``: per issuer, the kids every target holds.

    When every write succeeded that is the projection. When some failed, a target may still hold the
    previous content, so only the kids both in the projection and in what was published before count.
    """
    current = published_kids(projection)
    if not writes_failed:
        return current
    before = {e.get("issuer"): set(e.get("kids") or ()) for e in previous}
    return [
        {"issuer": e["issuer"], "kids": sorted(before.get(e["issuer"], set()) & set(e["kids"]))}
        for e in current
    ]


@dataclass(frozen=True)
class PolicyOutcome:
    status: dict[str, Any]
    events: tuple[Event, ...] = ()
    retry: bool = False  # some writes failed: try again after the backoff
    synced: int = 0
    failures: Mapping[ObjectKey, tuple[str, str]] = field(default_factory=dict)

    def failed(self, kind: str) -> int:
        """How many target objects of ``kind`` do not hold the content (the failed-targets metric)."""
        return sum(1 for key in self.failures if key[0] == kind)


def policy_outcome(
    body: Mapping[str, Any],
    spec: PolicySpec,
    writes: PolicyWrites,
    failed: Mapping[ObjectKey, tuple[str, str]],
    now: int,
) -> PolicyOutcome:
    """The status and Events once the writes were tried; ``failed``: per target object, why its write
    failed (the ConfigMap and every consumer object alike).

    Targets owned by someone else (not ours, or another policy's) never had our keys, so they do not
    hold rotation back; every other failure does (an object whose kind is not served included), and
    is retried.
    """
    failures: dict[ObjectKey, tuple[str, str]] = {**writes.unwritable, **failed}
    for (kind, namespace, name), action in writes.actions.items():
        if action == "conflict":
            failures[(kind, namespace, name)] = (
                "TargetOwnedByAnotherPolicy",
                f"{kind} {namespace}/{name} belongs to another TrustPolicy; left alone",
            )
    status = owned_status(body)
    generation = (body.get("metadata") or {}).get("generation")
    matched = writes.matched
    failed_namespaces = {namespace for _, namespace, _ in failures}
    synced = [ns for ns in matched if ns not in failed_namespaces]
    write_failed = any(
        ns in matched and reason not in NOT_OURS_REASONS for (_, ns, _), (reason, _) in failures.items()
    )
    ordered = sorted(failures.items(), key=lambda item: (item[0][1], item[0][0], item[0][2]))
    events: list[Event] = []
    if writes.projection.missing_issuers:
        ok, reason = False, "IssuerNotFound"
        message = f"Issuers not found: {', '.join(writes.projection.missing_issuers)}"
    elif failures:
        first = ordered[0][1]
        ok, reason = False, first[0]
        message = f"{len(failed_namespaces)} of {len(matched)} namespaces not synced; first: {first[1]}"
    else:
        ok, reason = True, "Synced"
        message = f"{len(synced)} namespaces hold revision {writes.revision[0]}"
    if not ok:
        events.append(("Warning", reason, message))
    events += [("Warning", r, m) for _, (r, m) in ordered[:FAILED_REPORTED]]
    new_status: dict[str, Any] = {
        "observedGeneration": generation,
        "conditions": [ready_condition(ok, reason, message, generation=generation, previous=status, now=now)],
        "matchedNamespaces": len(matched),
        "syncedNamespaces": len(synced),
        "failedNamespaces": [
            {"namespace": ns, "kind": kind, "name": name, "reason": r, "message": m}
            for (kind, ns, name), (r, m) in ordered[:FAILED_LISTED]
        ],
        "revision": writes.revision[0],
        "contentHash": writes.projection.unhashed,
        "publishedKeys": published_keys(writes.projection, status.get("publishedKeys") or (), write_failed),
    }
    return PolicyOutcome(
        new_status,
        tuple(events),
        retry=write_failed,
        synced=len(synced),
        failures=failures,
    )
