"""Reading what a decision needs and applying what it decided, idempotently: a write happens only when
the stored content differs. Every status goes through :func:`write_status` (server-side apply under our
field manager), every Event through the operator's recorder.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from jwt_trust.rotation import KeyRecord

from . import metrics
from .api import Ref
from .discovery_documents import JWKS_PATH, issuer_path, served_kids
from .errors import APIError, FetchError, NotReady, Transient
from .external import fetch_jwks
from .issuers import IssuerSpec, Step, load_stored, secret_name, step, stored_public_keys
from .operator import OUR_LABEL, Operator, summarise_target
from .policies import CONFIGMAP, POLICY_LABEL, ObjectKey
from .reconcile import (
    API_VERSION,
    TARGET_APIS,
    IssuerOutcome,
    PolicyOutcome,
    PolicyWrites,
    is_ours,
    key_counts,
    not_ready_status,
    owned_status,
    readable_secret,
    replica_urls,
    secret_data,
    secret_denied,
    secret_manifest,
    secret_needs_write,
    target_manifest,
    unserved,
)

PLURALS = {"Issuer": "issuers", "TrustPolicy": "trustpolicies"}
# Up to this many targets missing from our caches are each read before their first write; more are
# checked with one list per kind and name (:func:`foreign_objects`).
FEW_UNKNOWN = 8
DISCOVERY_TIMEOUT = 5.0
DISCOVERY_MAX_BYTES = 1024 * 1024

log = logging.getLogger("jwt_trust.operator")


async def write_status(operator: Operator, body: Mapping[str, Any], status: dict[str, Any]) -> None:
    """The one status writer: a server-side apply of the whole status we own, when it differs."""
    if status == owned_status(body):
        return
    meta = body["metadata"]
    ref = Ref(API_VERSION, PLURALS[body["kind"]], meta.get("namespace"), meta["name"])
    manifest = {
        "apiVersion": API_VERSION,
        "kind": body["kind"],
        "metadata": {k: meta[k] for k in ("name", "namespace") if meta.get(k)},
        "status": status,
    }
    written = await operator.api.apply(ref, manifest, force=True, subresource="status")
    if leftover := [k for k in owned_status(written) if k not in status]:
        # A field written by a merge patch (an earlier version of the operator) is co-owned by that
        # write and outlives an apply that leaves it out: it is removed explicitly, once.
        await operator.api.merge_patch(ref, {"status": dict.fromkeys(leftover)}, subresource="status")


async def not_ready(operator: Operator, body: Mapping[str, Any], error: NotReady) -> None:
    meta = body.get("metadata") or {}
    log.warning(
        "%s %s/%s not ready: %s: %s",
        body.get("kind"),
        meta.get("namespace"),
        meta.get("name"),
        error.reason,
        error.message,
    )
    await write_status(operator, body, not_ready_status(body, error, int(time.time())))
    await operator.report(body, ("Warning", error.reason, error.message))


async def apply_issuer_outcome(
    operator: Operator, body: Mapping[str, Any], outcome: IssuerOutcome, now: int
) -> float | None:
    ref = f"{body['metadata']['namespace']}/{body['metadata']['name']}"
    if outcome.generated:
        metrics.ROTATIONS.labels(issuer=ref).inc(outcome.generated)
    if outcome.revoked:
        metrics.REVOCATIONS.labels(issuer=ref).inc(outcome.revoked)
    for event in outcome.events:
        await operator.report(body, event)
    await write_status(operator, body, outcome.status)
    for reason in outcome.cleared:
        operator.cleared(body, reason)
    for state, count in key_counts(outcome.status).items():
        metrics.KEYS.labels(issuer=ref, state=state).set(count)
    if outcome.wake_at is not None:
        metrics.SECONDS_TO_ROTATION.labels(issuer=ref).set(max(outcome.wake_at - now, 0))
    return outcome.wake_at


async def read_secret(operator: Operator, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        secret: dict[str, Any] | None = await operator.api.get(
            Ref("v1", "secrets", namespace, secret_name(name))
        )
    except APIError as error:
        raise secret_denied(namespace) if error.status == 403 else error from None
    return secret


async def write_secret(
    operator: Operator,
    body: Mapping[str, Any],
    spec: IssuerSpec,
    secret: Mapping[str, Any] | None,
    result: Step,
) -> None:
    data = secret_data(secret) if secret is not None else None
    wanted = result.secret_data(spec)
    if not secret_needs_write(secret, data, wanted, spec):
        return
    meta = body["metadata"]
    # Conditional on the version we read: two replicas during a peering hand-over must not overwrite
    # each other's keys. A Conflict makes the loop read and plan again at once.
    await operator.api.apply(
        Ref("v1", "secrets", meta["namespace"], secret_name(meta["name"])),
        secret_manifest(body, wanted, spec),
        force=True,
        resource_version=None if secret is None else str(secret["metadata"]["resourceVersion"]),
    )


def target_ref(key: ObjectKey) -> Ref:
    kind, namespace, name = key
    group_version, resource = TARGET_APIS[kind]
    return Ref(group_version, resource, namespace, name)


async def write_target(
    operator: Operator,
    policy: Mapping[str, Any],
    key: ObjectKey,
    content: Mapping[str, Any],
    *,
    checked: bool = False,
) -> tuple[str, str] | None:
    """Apply one target object (a ConfigMap or a consumer object); (reason, message) when it could not
    be written. ``checked``: no object of someone else's has this name (:func:`foreign_objects`)."""
    kind, namespace, name = key
    ref = target_ref(key)
    where = f"{kind} {namespace}/{name}"
    async with operator.write_slots.slot(policy["metadata"]["name"]):
        try:
            if not checked and (namespace, name) not in operator.cache(kind).objects:
                # Not in our label-selected cache: someone else's object may have this name.
                existing = await operator.api.get(ref)
                if existing is not None and not is_ours(existing):
                    return not_ours(key)
            written = await operator.api.apply(
                ref, target_manifest(policy, key, content), force=True, strict=kind != CONFIGMAP
            )
        except APIError as error:
            if kind != CONFIGMAP and error.status == 404 and "requested resource" in error.message:
                # The resource itself is not served (not the namespace gone): its CRD was removed.
                return unserved(kind, namespace, name, "missing")
            return "WriteFailed", f"{where}: {error}"
        except Transient as error:
            return "WriteFailed", f"{where}: {error}"
    # Recorded now, so a reconciliation that runs before the watch event arrives does not write again.
    operator.cache(kind).objects[(namespace, name)] = summarise_target(written)
    return None


async def delete_target(
    operator: Operator, key: ObjectKey, uid: str, *, policy: str
) -> tuple[str, str] | None:
    """Delete the object we saw as ``uid``: one created again under that name since is left alone."""
    kind, namespace, name = key
    async with operator.write_slots.slot(policy):
        try:
            await operator.api.delete(target_ref(key), uid=uid)
        except Transient as error:
            return "DeleteFailed", f"{kind} {namespace}/{name}: {error}"
    if kind == CONFIGMAP or kind in operator.consumers:
        operator.cache(kind).objects.pop((namespace, name), None)
    return None


async def list_policy_objects(operator: Operator, kind: str, policy: str) -> list[dict[str, Any]]:
    """Every object of ``kind`` that carries our label and the policy's, read fresh (not the cache)."""
    group_version, resource = TARGET_APIS[kind]
    items, _version = await operator.api.list(
        Ref(group_version, resource), label_selector=f"{OUR_LABEL},{POLICY_LABEL}={policy}"
    )
    return items


async def write_targets(
    operator: Operator, policy: Mapping[str, Any], writes: PolicyWrites
) -> dict[ObjectKey, tuple[str, str]]:
    """Carry out a policy's target actions concurrently (every kind alike); per object, why a write
    failed."""
    jobs = []
    failed: dict[ObjectKey, tuple[str, str]] = {}
    unknown = [
        k for k, a in writes.actions.items() if a == "apply" and k[1:] not in operator.cache(k[0]).objects
    ]
    foreign = await foreign_objects(operator, unknown) if len(unknown) > FEW_UNKNOWN else None
    for key, action in sorted(writes.actions.items()):
        kind, namespace, name = key
        if foreign is not None and key in foreign:
            failed[key] = not_ours(key)
        elif action == "apply":
            content = writes.objects[(kind, name)]
            jobs.append((key, write_target(operator, policy, key, content, checked=foreign is not None)))
        elif action == "delete":
            uid = operator.cache(kind).objects[(namespace, name)].uid
            jobs.append((key, delete_target(operator, key, uid, policy=policy["metadata"]["name"])))
    if jobs:
        log.info(
            "TrustPolicy %s revision %d: %d matched, %d writes",
            policy["metadata"]["name"],
            writes.revision[0],
            len(writes.matched),
            len(jobs),
        )
    outcomes = await asyncio.gather(*(job for _, job in jobs))
    failed.update({key: outcome for (key, _), outcome in zip(jobs, outcomes, strict=True) if outcome})
    return failed


def not_ours(key: ObjectKey) -> tuple[str, str]:
    kind, namespace, name = key
    return "TargetNotOwned", f"{kind} {namespace}/{name} exists and is not managed by jwt-trust; left alone"


async def foreign_objects(operator: Operator, keys: list[ObjectKey]) -> set[ObjectKey]:
    """Which of ``keys`` (objects not in our caches) exist as someone else's object.

    One list per kind and name across all namespaces instead of one read per object: a policy
    created over 10,000 namespaces costs 10,000 writes, not 20,000 requests. An object created under
    such a name between this list and our write is taken over by the forced apply, as one created
    between a read and the write would be.
    """
    found: set[ObjectKey] = set()
    for kind, name in sorted({(kind, name) for kind, _namespace, name in keys}):
        group_version, resource = TARGET_APIS[kind]
        try:
            items, _version = await operator.api.list(
                Ref(group_version, resource), field_selector=f"metadata.name={name}"
            )
        except APIError as error:
            if error.status == 404:
                continue  # the kind is not served: the writes report it
            raise
        found |= {(kind, item["metadata"]["namespace"], name) for item in items if not is_ours(item)}
    return found & set(keys)


async def apply_policy_outcome(
    operator: Operator, policy: Mapping[str, Any], outcome: PolicyOutcome, writes: PolicyWrites
) -> float | None:
    name = policy["metadata"]["name"]
    for event in outcome.events:
        await operator.report(policy, event)
    await write_status(operator, policy, outcome.status)
    operator.revisions[name] = writes.revision
    metrics.MATCHED.labels(policy=name).set(len(writes.matched))
    metrics.SYNCED.labels(policy=name).set(outcome.synced)
    for kind in TARGET_APIS:
        metrics.TARGETS_FAILED.labels(policy=name, kind=kind).set(outcome.failed(kind))
    # Failed writes are retried with the backoff; otherwise sleep until poked (or the periodic resync).
    retry_key = ("policy", "", name, "write")
    if outcome.retry:
        return operator.retries.failed(retry_key, time.time())
    operator.retries.succeeded(retry_key)
    return None


async def discovery_served(operator: Operator, namespace: str, name: str) -> dict[str, frozenset[str] | None]:
    """Per ready replica of the discovery service, the kids it serves for the Issuer (None: no answer).
    No discovery service configured: no replica."""
    service = operator.discovery
    if service is None:
        return {}
    slices, _version = await operator.api.list(
        Ref("discovery.k8s.io/v1", "endpointslices", service.namespace),
        label_selector=f"kubernetes.io/service-name={service.service}",
    )
    urls = replica_urls(slices, f"{issuer_path(namespace, name)}/{JWKS_PATH}")
    hostname = urlsplit(service.base_url).hostname

    async def served(url: str) -> frozenset[str] | None:
        try:
            raw = await fetch_jwks(
                url,
                ca_bundle=service.ca_bundle,
                timeout=DISCOVERY_TIMEOUT,
                max_bytes=DISCOVERY_MAX_BYTES,
                server_hostname=hostname,
            )
            return frozenset(served_kids(raw))
        except (FetchError, ValueError) as error:
            log.info("discovery replica %s: %s", url, error)
            return None

    answers = await asyncio.gather(*(served(url) for url in urls.values()))
    return dict(zip(urls, answers, strict=True))


async def wind_down(
    operator: Operator,
    body: Mapping[str, Any],
    spec: IssuerSpec,
    status: Mapping[str, Any],
    *,
    generated: list[KeyRecord],
    now: int,
) -> Step:
    """Retire the keys an Issuer generated before it mirrored an external JWKS.

    Their private keys leave the Secret, so no signer mints a token with them again; every copy of the
    old Secret (up to P old) may still sign, so the keys stay published under the lost-key rule of the
    rotation plan.
    """
    meta = body["metadata"]
    secret, stored = None, None
    with contextlib.suppress(NotReady):
        secret = await read_secret(operator, meta["namespace"], meta["name"])
        stored = load_stored(readable_secret(meta["name"], secret))
    result = step(
        now,
        spec,
        dataclasses.replace(stored, private_keys={}) if stored is not None else None,
        (),
        status_keys=stored_public_keys(status),
        recorded=generated,
        generate_keys=False,
    )
    if stored is not None:
        await write_secret(operator, body, spec, secret, result)
    return result
