"""The kopf entry point: ``kopf run -m jwt_trust.kube.handlers --all-namespaces``.

Shape: one kopf daemon per Issuer and per TrustPolicy runs a loop "reconcile, then sleep until the
outcome's wake-up time or until poked"; pokes come from the caches (``operator``). A reconciliation
reads, calls the pure decisions (``reconcile``, ``issuers``, ``policies``) and applies their outcome
idempotently: the Secret, then the targets, then one server-side apply of the status, the Events.

kopf keeps its bookkeeping in ``status.kopf`` and one finalizer (no annotations on users' objects), and
its peering pauses every daemon on replicas that are not the leader.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections.abc import Mapping
from typing import Any

import kopf
from prometheus_client import start_http_server

from .api import KubeAPI, Ref
from .errors import APIError, FetchError, NotReady
from .external import fetch_jwks
from .issuers import (
    IssuerSpec,
    load_stored,
    parse_external_jwks,
    parse_issuer_spec,
    records_from_status,
    secret_name,
    step,
    stored_public_keys,
)
from .operator import (
    DiscoveryService,
    Operator,
    build,
    consumers_from_environment,
    run_daemon,
    summarise_custom,
)
from .policies import CONFIGMAP, parse_policy_spec
from .reconcile import (
    API_VERSION,
    DISCOVERY,
    DISCOVERY_UNCONFIGURED,
    GROUP,
    VERSION,
    external_outcome,
    generated_outcome,
    policy_outcome,
    policy_refs,
    policy_writes,
    publication,
    readable_secret,
    refresh_due,
    served_by_every_replica,
    settling,
    spec_fingerprint,
)
from .writes import (
    apply_issuer_outcome,
    apply_policy_outcome,
    delete_target,
    discovery_served,
    list_policy_objects,
    not_ready,
    read_secret,
    wind_down,
    write_secret,
    write_targets,
)

FINALIZER = "jwt-trust.dev/finalizer"
# How long kopf lets a daemon finish after setting its stop flag, before cancelling it: a reconciliation
# runs to its end (the Secret, then the status; every target of a change) instead of being cut between
# two writes.
CANCELLATION_BACKOFF = 5.0
# A cache failing without a break for this long cannot recover by itself: liveness goes red, so that
# Kubernetes restarts the process (a fresh client, fresh connections, fresh credentials).
WATCH_UNHEALTHY_SECONDS = float(os.environ.get("JWT_TRUST_WATCH_UNHEALTHY_SECONDS", "120"))

log = logging.getLogger("jwt_trust.operator")


# --- start-up -------------------------------------------------------------------------------------


def _login(
    settings: kopf.OperatorSettings, logger: logging.Logger | logging.LoggerAdapter[Any]
) -> kopf.ConnectionInfo:
    # The in-cluster ServiceAccount first, then $KUBECONFIG.
    info = kopf.login_with_service_account(settings=settings, logger=logger) or kopf.login_with_kubeconfig(
        settings=settings, logger=logger
    )
    if info is None:
        raise kopf.LoginError("no in-cluster ServiceAccount and no kubeconfig found")
    return info


@kopf.on.login()
def login(
    settings: kopf.OperatorSettings, logger: logging.Logger | logging.LoggerAdapter[Any], **_: Any
) -> kopf.ConnectionInfo:
    return _login(settings, logger)


class _NoDiffBase(kopf.DiffBaseStorage):
    """Stores nothing: no handler here reacts to field changes (daemons and deletion only), and kopf's
    default would copy each object's spec into its status (or an annotation) on every change."""

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    if settings.peering.priority == 0:
        # Replicas of one Deployment share their flags, and kopf pauses every peer when the highest
        # priority is shared: a random priority makes exactly one replica the leader.
        settings.peering.priority = random.SystemRandom().randint(1, 2**31 - 1)
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.StatusProgressStorage(field="status.kopf.progress")
    settings.persistence.diffbase_storage = _NoDiffBase()
    settings.posting.enabled = False  # our own Events say what happened, once
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 60

    async def login_again() -> kopf.ConnectionInfo:
        # Reads the ServiceAccount token or kubeconfig afresh, so a rotated token is picked up when
        # the API server rejects the old one.
        return _login(settings, log)

    api = KubeAPI(login_again)
    await api.open()
    operator = build(
        api,
        secret_namespaces=[
            ns.strip() for ns in os.environ.get("JWT_TRUST_SECRET_NAMESPACES", "").split(",") if ns.strip()
        ],
        write_concurrency=int(os.environ.get("JWT_TRUST_WRITE_CONCURRENCY", "16")),
        discovery=DiscoveryService.from_environment(os.environ),
        consumers=consumers_from_environment(os.environ),
    )
    await asyncio.gather(*(informer.list() for informer in operator.informers))
    operator.tasks = [asyncio.create_task(informer.run()) for informer in operator.informers]
    memo.operator = operator

    port = int(os.environ.get("JWT_TRUST_METRICS_PORT", "9090"))
    if port:
        start_http_server(port)
    log.info(
        "jwt-trust operator started: %d namespaces, %d issuers, %d policies, %d owned ConfigMaps",
        len(operator.namespaces.objects),
        len(operator.issuers.objects),
        len(operator.policies.objects),
        len(operator.configmaps.objects),
    )
    for kind, cache in operator.consumers.items():
        state = "its CRD is not installed" if cache.absent else f"{len(cache.objects)} owned"
        log.info("consumer %s: %s", kind, state)


@kopf.on.probe(id="caches")
async def caches(memo: kopf.Memo, **_: Any) -> dict[str, str]:
    """Liveness (``kopf run --liveness``): red when a cache has failed for WATCH_UNHEALTHY_SECONDS in
    a row or its task has ended. A blind operator must not look healthy."""
    operator: Operator | None = getattr(memo, "operator", None)
    if operator is None:
        return {"caches": "starting"}
    now = time.monotonic()
    broken = []
    for informer, task in zip(operator.informers, operator.tasks, strict=True):
        if task.done():
            broken.append(f"{informer.name}: its watch task ended")
        elif informer.failing_since is not None and now - informer.failing_since > WATCH_UNHEALTHY_SECONDS:
            broken.append(
                f"{informer.name}: failing for {now - informer.failing_since:.0f}s ({informer.last_error})"
            )
    if broken:
        raise kopf.PermanentError("caches not recovering: " + "; ".join(broken))
    return {"caches": "ok"}


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    operator: Operator | None = getattr(memo, "operator", None)
    if operator is None:
        return
    for task in operator.tasks:
        task.cancel()
    await asyncio.gather(*operator.tasks, return_exceptions=True)
    await operator.api.close()


# --- the daemons ----------------------------------------------------------------------------------


@kopf.daemon(GROUP, VERSION, "issuers", cancellation_backoff=CANCELLATION_BACKOFF, cancellation_timeout=10.0)
async def issuer_daemon(
    namespace: str | None, name: str, memo: kopf.Memo, stopped: kopf.DaemonStopped, **_: Any
) -> None:
    await run_daemon(
        memo.operator, "issuer", namespace or "", name, stopped=stopped, reconcile=reconcile_issuer
    )


@kopf.daemon(
    GROUP, VERSION, "trustpolicies", cancellation_backoff=CANCELLATION_BACKOFF, cancellation_timeout=10.0
)
async def policy_daemon(name: str, memo: kopf.Memo, stopped: kopf.DaemonStopped, **_: Any) -> None:
    await run_daemon(memo.operator, "policy", "", name, stopped=stopped, reconcile=reconcile_policy)


# --- Issuer ---------------------------------------------------------------------------------------


async def reconcile_issuer(operator: Operator, namespace: str, name: str) -> float | None:
    body = operator.issuers.objects.get((namespace, name))
    if body is None or body["metadata"].get("deletionTimestamp"):
        return None
    try:
        spec = parse_issuer_spec(body["spec"])
        if spec.external is not None:
            return await reconcile_external(operator, body, spec)
        secret = await read_secret(operator, namespace, name)
        stored = load_stored(readable_secret(name, secret))
    except NotReady as error:
        await not_ready(operator, body, error)
        return None
    ref = f"{namespace}/{name}"
    policies = list(operator.policies.objects.values())
    if not any(ref in policy_refs(p) for p in policies):
        # "No policy trusts this Issuer" publishes a new key at once, so it must not come from a cache
        # that may lag behind a policy created a moment ago (both applied together from Git, say).
        items, _version = await operator.api.list(Ref(API_VERSION, "trustpolicies"))
        policies = [summarise_custom(item) for item in items]
    served = (
        served_by_every_replica(await discovery_served(operator, namespace, name)) if spec.discovery else None
    )
    label = DISCOVERY if operator.discovery is not None else DISCOVERY_UNCONFIGURED
    trust = publication(ref, policies, discovery=served, discovery_label=label)
    status = body.get("status") or {}
    now = int(time.time())
    result = step(
        now,
        spec,
        stored,
        trust.kids,
        status_keys=stored_public_keys(status),
        recorded=records_from_status(status, external_at=now),
        has_targets=bool(trust.held),
    )
    await write_secret(operator, body, spec, secret, result)
    outcome = generated_outcome(
        body, spec, result, trust, now, discovery=operator.served_at(body, opted_in=spec.discovery)
    )
    return await apply_issuer_outcome(operator, body, outcome, now)


async def reconcile_external(operator: Operator, body: Mapping[str, Any], spec: IssuerSpec) -> float | None:
    external = spec.external
    assert external is not None
    meta, status = body["metadata"], body.get("status") or {}
    key = (meta["namespace"], meta["name"])
    retry_key = ("issuer", *key, "fetch")
    now = time.time()
    next_fetch: float | None = None
    try:
        if external.inline_jwks is not None:
            mirrored, source = parse_external_jwks(dict(external.inline_jwks)), "inline JWKS"
        else:
            assert external.jwks_url is not None
            fingerprint = spec_fingerprint(body["spec"])
            due = refresh_due(
                operator.fetched.get(key),
                fingerprint,
                external.refresh_interval,
                now,
                bool(status.get("keys")),
            )
            if due is not None:
                return due
            try:
                raw = await fetch_jwks(
                    external.jwks_url,
                    ca_bundle=external.ca_bundle,
                    timeout=external.timeout,
                    max_bytes=external.max_bytes,
                )
            except FetchError as error:
                raise NotReady(
                    "JWKSFetchFailed",
                    f"fetching {external.jwks_url} failed: {error}; the last good keys stay published",
                ) from None
            mirrored, source = parse_external_jwks(raw), external.jwks_url
            operator.fetched[key] = (now, fingerprint)
            next_fetch = now + external.refresh_interval
    except NotReady as error:
        await not_ready(operator, body, error)
        # Back off, but keep trying: the provider may come back.
        return min(now + float(external.refresh_interval), operator.retries.failed(retry_key, now))
    operator.retries.succeeded(retry_key)
    moment = int(now)
    # Keys the Issuer generated before it mirrored this provider are wound down.
    generated = records_from_status(status)
    wound = (
        await wind_down(operator, body, spec, status, generated=generated, now=moment) if generated else None
    )
    outcome = external_outcome(
        body,
        mirrored,
        source,
        wound,
        now=moment,
        next_fetch=next_fetch,
        discovery=operator.served_at(body, opted_in=spec.discovery),
    )
    return await apply_issuer_outcome(operator, body, outcome, moment)


@kopf.on.delete(GROUP, VERSION, "issuers")
async def issuer_deleted(
    namespace: str | None, name: str, spec: kopf.Spec, memo: kopf.Memo, **_: Any
) -> None:
    operator: Operator = memo.operator
    if spec.get("deletionPolicy") == "Retain":
        # Drop our ownerReference so the garbage collector keeps the Secret.
        with contextlib.suppress(APIError):
            await operator.api.merge_patch(
                Ref("v1", "secrets", namespace, secret_name(name)), {"metadata": {"ownerReferences": None}}
            )
    operator.poke_policies(f"{namespace}/{name}")


# --- TrustPolicy ----------------------------------------------------------------------------------


async def reconcile_policy(operator: Operator, _namespace: str, name: str) -> float | None:
    body = operator.policies.objects.get(("", name))
    if body is None or body["metadata"].get("deletionTimestamp"):
        return None
    now = time.time()
    try:
        spec = parse_policy_spec(name, body["spec"])
        issuers = operator.live_issuers()
        if (retry_at := settling(spec.issuer_refs, issuers, operator.stale_since, now)) is not None:
            return retry_at
        writes = policy_writes(
            body,
            spec,
            issuers,
            namespaces=operator.active_namespaces(),
            targets=operator.targets(),
            written=operator.revisions.get(name),
            now=int(now),
            apis=operator.apis(),
        )
    except NotReady as error:
        await not_ready(operator, body, error)
        return None
    failed = await write_targets(operator, body, writes)
    return await apply_policy_outcome(
        operator, body, policy_outcome(body, spec, writes, failed, int(now)), writes
    )


@kopf.on.delete(GROUP, VERSION, "trustpolicies")
async def policy_deleted(name: str, memo: kopf.Memo, **_: Any) -> None:
    """Remove every object of the policy (its ConfigMaps, its consumer objects of every kind served),
    each only as the object listed (uid precondition)."""
    operator: Operator = memo.operator
    removed = 0
    for kind in (CONFIGMAP, *operator.consumers):
        if kind != CONFIGMAP and operator.consumers[kind].absent:
            continue
        for item in await list_policy_objects(operator, kind, name):
            meta = item["metadata"]
            await delete_target(operator, (kind, meta["namespace"], meta["name"]), meta["uid"], policy=name)
            removed += 1
    log.info("TrustPolicy %s deleted: removed %d objects", name, removed)
