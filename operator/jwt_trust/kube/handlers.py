"""The kopf entry point: ``kopf run -m jwt_trust.kube.handlers --all-namespaces``.

Shape: one kopf daemon per Issuer and per TrustPolicy runs a loop "reconcile, then sleep until the
plan's next event or until poked". Pokes come from label-selected informers (namespaces, our
ConfigMaps and Secrets, Issuers, TrustPolicies), which are listed completely at start-up before any
daemon acts. The decisions are pure (``issuers``, ``policies``); this module only reads, calls them and
applies their result idempotently: a write happens only when the stored content differs.

kopf keeps its bookkeeping in ``status.kopf`` and one finalizer (no annotations on users' objects), and
its peering pauses every daemon on replicas that are not the leader.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import random
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import kopf
from prometheus_client import start_http_server

from jwt_trust.projection import content_hash
from jwt_trust.rotation import KeyRecord

from . import metrics
from .api import APIError, KubeAPI, Ref
from .backoff import Backoff
from .events import EventRecorder
from .external import FetchError, fetch_jwks
from .informers import Informer, Key
from .issuers import (
    IssuerSpec,
    SpecError,
    Step,
    iso,
    load_stored,
    parse_external_jwks,
    parse_issuer_spec,
    records_from_status,
    secret_name,
    status_keys,
    step,
    stored_public_keys,
)
from .policies import (
    HASH_ANNOTATION,
    MANAGED_BY,
    MANAGED_BY_VALUE,
    POLICY_LABEL,
    Revision,
    Target,
    next_revision,
    parse_policy_spec,
    plan_targets,
    project,
    published_kids,
    too_large,
)

GROUP, VERSION = "jwt-trust.dev", "v1alpha1"
ISSUER_LABEL = "jwt-trust.dev/issuer"
FINALIZER = "jwt-trust.dev/finalizer"
RESYNC_SECONDS = 600.0
DEBOUNCE_SECONDS = 0.1
OUR_LABEL = f"{MANAGED_BY}={MANAGED_BY_VALUE}"
RETRY_CAUSES = ("api", "write", "fetch")
KEY_STATES = ("pending", "next", "active", "retired")
# How long kopf lets a daemon finish after setting its stop flag, before cancelling it: a reconciliation
# runs to its end (the Secret, then the status; every target of a change) instead of being cut between
# two writes.
CANCELLATION_BACKOFF = 5.0
# A cache failing without a break for this long cannot recover by itself: liveness goes red, so that
# Kubernetes restarts the process (a fresh client, fresh connections, fresh credentials).
WATCH_UNHEALTHY_SECONDS = float(os.environ.get("JWT_TRUST_WATCH_UNHEALTHY_SECONDS", "120"))

log = logging.getLogger("jwt_trust.operator")


@dataclass(frozen=True)
class NamespaceSummary:
    labels: tuple[tuple[str, str], ...]
    terminating: bool


@dataclass
class Operator:
    """Everything the daemons share in one process."""

    api: KubeAPI
    namespaces: Informer[NamespaceSummary]
    configmaps: Informer[Target]
    secrets: list[Informer[tuple[str, str]]]
    issuers: Informer[dict[str, Any]]
    policies: Informer[dict[str, Any]]
    write_slots: asyncio.Semaphore
    pokes: dict[tuple[str, str, str], asyncio.Event] = field(default_factory=dict)
    events: EventRecorder = field(default_factory=EventRecorder)
    # One retry policy; keys are (kind, namespace, name, cause) so that one cause's success does not
    # reset another's count.
    retries: Backoff = field(default_factory=Backoff)
    fetched: dict[Key, tuple[float, str]] = field(default_factory=dict)
    stale_since: dict[str, float] = field(default_factory=dict)
    revisions: dict[str, Revision] = field(default_factory=dict)  # per policy: the last one written
    informers: list[Informer[Any]] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def wake(self, kind: str, namespace: str, name: str) -> asyncio.Event:
        return self.pokes.setdefault((kind, namespace, name), asyncio.Event())

    def poke(self, kind: str, namespace: str, name: str) -> None:
        self.wake(kind, namespace, name).set()

    def forget(self, kind: str, body: Mapping[str, Any] | None) -> None:
        """An Issuer or TrustPolicy is gone: drop what we kept about it, its metric series included
        (a deleted object must not be reported, or kept in memory, for the life of the process)."""
        meta = (body or {}).get("metadata") or {}
        namespace, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
        self.pokes.pop((kind, namespace, name), None)
        if "uid" in meta:
            self.events.forget(str(meta["uid"]))
        for cause in RETRY_CAUSES:
            self.retries.succeeded((kind, namespace, name, cause))
        if kind == "policy":
            self.revisions.pop(name, None)
            metrics.forget(metrics.MATCHED, name)
            metrics.forget(metrics.SYNCED, name)
            return
        issuer_ref = f"{namespace}/{name}"
        for state in KEY_STATES:
            metrics.forget(metrics.KEYS, issuer_ref, state)
        for metric in (metrics.ROTATIONS, metrics.REVOCATIONS, metrics.SECONDS_TO_ROTATION):
            metrics.forget(metric, issuer_ref)
        self.fetched.pop((namespace, name), None)
        self.stale_since.pop(issuer_ref, None)

    def poke_policies(self, issuer_ref: str | None = None) -> None:
        for (_, name), body in self.policies.objects.items():
            if issuer_ref is None or issuer_ref in _policy_refs(body):
                self.poke("policy", "", name)

    async def report(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        """Post an Event unless the recorder says this (object, reason, message) was posted lately."""
        uid = str((obj.get("metadata") or {}).get("uid"))
        count = self.events.record(uid, reason, message, time.time())
        if count is None:
            return
        if type_ == "Warning":
            metrics.FAILURES.labels(kind=str(obj.get("kind")), reason=reason).inc()
        await self.api.event(obj, type_, reason, message, count=count)

    def cleared(self, obj: Mapping[str, Any], reason: str) -> None:
        """A failure reported under ``reason`` is over: the next occurrence is news again."""
        self.events.forget(str((obj.get("metadata") or {}).get("uid")), reason)


def _policy_refs(body: Mapping[str, Any]) -> set[str]:
    return {f"{i.get('namespace')}/{i.get('name')}" for i in (body.get("spec") or {}).get("issuers") or ()}


def _summarise_custom(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    status = {k: v for k, v in (obj.get("status") or {}).items() if k != "kopf"}
    return {
        "apiVersion": obj.get("apiVersion"),
        "kind": obj.get("kind"),
        "metadata": {k: meta.get(k) for k in ("name", "namespace", "uid", "generation", "deletionTimestamp")},
        "spec": obj.get("spec") or {},
        "status": status,
    }


def _summarise_namespace(obj: dict[str, Any]) -> NamespaceSummary:
    meta = obj.get("metadata") or {}
    terminating = (
        bool(meta.get("deletionTimestamp")) or (obj.get("status") or {}).get("phase") == "Terminating"
    )
    return NamespaceSummary(tuple(sorted((meta.get("labels") or {}).items())), terminating)


def _summarise_configmap(obj: dict[str, Any]) -> Target:
    meta = obj.get("metadata") or {}
    return Target(
        namespace=str(meta.get("namespace")),
        name=str(meta.get("name")),
        policy=(meta.get("labels") or {}).get(POLICY_LABEL),
        data_hash=content_hash(obj.get("data") or {}),
        uid=str(meta.get("uid") or ""),
    )


def _summarise_secret(obj: dict[str, Any]) -> tuple[str, str]:
    # Only a digest: private keys are not kept in the operator's memory between reconciliations.
    meta = obj.get("metadata") or {}
    digest = hashlib.sha256(json.dumps(obj.get("data") or {}, sort_keys=True).encode()).hexdigest()
    return str((meta.get("labels") or {}).get(ISSUER_LABEL, "")), digest


# --- start-up -------------------------------------------------------------------------------------


def _login(
    settings: kopf.OperatorSettings, logger: logging.Logger | logging.LoggerAdapter[Any]
) -> kopf.ConnectionInfo:
    # The in-cluster ServiceAccount first, then $KUBECONFIG: no Kubernetes client library needed.
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
        # kopf's own login handler (below) reads the ServiceAccount token or kubeconfig afresh, so a
        # rotated token is picked up when the API server rejects the old one.
        return _login(settings, log)

    api = KubeAPI(login_again)
    await api.open()
    secret_namespaces = [
        ns for ns in os.environ.get("JWT_TRUST_SECRET_NAMESPACES", "").split(",") if ns.strip()
    ]
    operator: Operator

    def on_namespace(key: Key, old: NamespaceSummary | None, new: NamespaceSummary | None) -> None:
        operator.poke_policies()

    def on_configmap(key: Key, old: Target | None, new: Target | None) -> None:
        for target in (old, new):
            if target is not None and target.policy:
                operator.poke("policy", "", target.policy)

    def on_secret(key: Key, old: tuple[str, str] | None, new: tuple[str, str] | None) -> None:
        for summary in (old, new):
            if summary is not None and summary[0]:
                operator.poke("issuer", key[0], summary[0])

    def on_issuer(key: Key, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        operator.poke("issuer", key[0], key[1])
        operator.poke_policies(f"{key[0]}/{key[1]}")
        if new is None:
            operator.forget("issuer", old)

    def on_policy(key: Key, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        operator.poke("policy", "", key[1])
        body: dict[str, Any] | None
        for body in (old, new):
            for issuer_ref in _policy_refs(body or {}):
                namespace, _, name = issuer_ref.partition("/")
                operator.poke("issuer", namespace, name)
        if new is None:
            operator.forget("policy", old)

    secret_refs = [Ref("v1", "secrets", ns.strip()) for ns in secret_namespaces] or [Ref("v1", "secrets")]
    operator = Operator(
        api=api,
        namespaces=Informer(api, Ref("v1", "namespaces"), _summarise_namespace, on_change=on_namespace),
        configmaps=Informer(
            api,
            Ref("v1", "configmaps"),
            _summarise_configmap,
            label_selector=OUR_LABEL,
            on_change=on_configmap,
        ),
        secrets=[
            Informer(api, target, _summarise_secret, label_selector=OUR_LABEL, on_change=on_secret)
            for target in secret_refs
        ],
        issuers=Informer(api, Ref(f"{GROUP}/{VERSION}", "issuers"), _summarise_custom, on_change=on_issuer),
        policies=Informer(
            api, Ref(f"{GROUP}/{VERSION}", "trustpolicies"), _summarise_custom, on_change=on_policy
        ),
        write_slots=asyncio.Semaphore(int(os.environ.get("JWT_TRUST_WRITE_CONCURRENCY", "16"))),
    )
    operator.informers = [
        operator.namespaces,
        operator.configmaps,
        *operator.secrets,
        operator.issuers,
        operator.policies,
    ]
    # Complete caches before any daemon acts: a namespace missing from a half-filled cache would look
    # unselected and lose its ConfigMap.
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


async def _loop(
    operator: Operator, kind: str, namespace: str, name: str, *, stopped: kopf.DaemonStopped, reconcile: Any
) -> None:
    try:
        await _reconcile_until_stopped(operator, kind, namespace, name, stopped=stopped, reconcile=reconcile)
    finally:
        cache = operator.issuers if kind == "issuer" else operator.policies
        body = cache.objects.get((namespace, name))
        if body is None or body["metadata"].get("deletionTimestamp"):
            # Stopped because the object is going: a reconciliation that was in flight when its
            # DELETED event was handled may have set metric series again after they were removed.
            operator.forget(kind, {"metadata": {"namespace": namespace, "name": name}})


async def _reconcile_until_stopped(
    operator: Operator, kind: str, namespace: str, name: str, *, stopped: kopf.DaemonStopped, reconcile: Any
) -> None:
    wake = operator.wake(kind, namespace, name)
    retry_key = (kind, namespace, name, "api")
    while not stopped:
        wake.clear()
        try:
            wake_at = await reconcile(operator, namespace, name)
            operator.retries.succeeded(retry_key)
        except (TimeoutError, APIError, aiohttp.ClientError, OSError) as error:
            if isinstance(error, APIError) and error.status == 409:
                # A conditional write lost a race (the object changed since we read it): read it
                # again and decide again, now; a conflict is no failure.
                log.info("%s %s/%s: changed while reconciling; again", kind, namespace, name)
                wake_at = time.time()
            else:
                log.warning("%s %s/%s: reconciliation failed (%s); retrying", kind, namespace, name, error)
                metrics.FAILURES.labels(kind=kind, reason=type(error).__name__).inc()
                wake_at = operator.retries.failed(retry_key, time.time())
        delay = RESYNC_SECONDS if wake_at is None else min(max(wake_at - time.time(), 0.0), RESYNC_SECONDS)
        if await _sleep(wake, stopped, delay):
            return
        await asyncio.sleep(DEBOUNCE_SECONDS)  # coalesce a burst of pokes into one reconciliation


async def _sleep(wake: asyncio.Event, stopped: kopf.DaemonStopped, delay: float) -> bool:
    """Sleep until poked, stopped, or ``delay`` passes; True when the daemon is being stopped.

    Waking on the stop flag matters: kopf stops a daemon by setting it (Issuer or policy deleted,
    operator shutting down, peering pause) and cancels it only after CANCELLATION_BACKOFF. A daemon
    that ignored the flag would make every stop wait that long, and then be cancelled wherever it
    is; one that honours it exits at once when asleep, or after its current reconciliation.
    """

    async def until_stopped() -> None:
        await stopped.wait()

    waiters = [asyncio.ensure_future(wake.wait()), asyncio.ensure_future(until_stopped())]
    try:
        await asyncio.wait(waiters, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
    return bool(stopped)


@kopf.daemon(GROUP, VERSION, "issuers", cancellation_backoff=CANCELLATION_BACKOFF, cancellation_timeout=10.0)
async def issuer_daemon(
    namespace: str | None, name: str, memo: kopf.Memo, stopped: kopf.DaemonStopped, **_: Any
) -> None:
    await _loop(memo.operator, "issuer", namespace or "", name, stopped=stopped, reconcile=reconcile_issuer)


@kopf.daemon(
    GROUP, VERSION, "trustpolicies", cancellation_backoff=CANCELLATION_BACKOFF, cancellation_timeout=10.0
)
async def policy_daemon(name: str, memo: kopf.Memo, stopped: kopf.DaemonStopped, **_: Any) -> None:
    await _loop(memo.operator, "policy", "", name, stopped=stopped, reconcile=reconcile_policy)


# --- Issuer ---------------------------------------------------------------------------------------


def _condition(
    status: bool, reason: str, message: str, generation: Any, previous: Mapping[str, Any]
) -> dict[str, Any]:
    old: Mapping[str, Any] = next(
        (c for c in previous.get("conditions") or () if c.get("type") == "Ready"), {}
    )
    value = "True" if status else "False"
    changed = old.get("status") != value
    return {
        "type": "Ready",
        "status": value,
        "reason": reason,
        "message": message[:1024],
        "observedGeneration": generation,
        "lastTransitionTime": iso(int(time.time()))
        if changed or not old.get("lastTransitionTime")
        else old["lastTransitionTime"],
    }


async def _patch_status(
    operator: Operator, body: Mapping[str, Any], url: Ref, status: dict[str, Any]
) -> None:
    current = {k: v for k, v in (body.get("status") or {}).items() if k != "kopf"}
    wanted = {**current, **status}
    if wanted == current:
        return
    # Keys that vanished must be removed explicitly in a merge patch.
    patch = {
        **status,
        **{k: None for k in current if k not in status and k in ("activeKeyID", "nextRotation")},
    }
    await operator.api.merge_patch(url, {"status": patch}, subresource="status")


async def _not_ready(
    operator: Operator, body: Mapping[str, Any], url: Ref, error: SpecError, kind: str
) -> None:
    meta = body.get("metadata") or {}
    log.warning(
        "%s %s/%s not ready: %s: %s",
        kind,
        meta.get("namespace"),
        meta.get("name"),
        error.reason,
        error.message,
    )
    status = body.get("status") or {}
    await _patch_status(
        operator,
        body,
        url,
        {
            "observedGeneration": meta.get("generation"),
            "conditions": [_condition(False, error.reason, error.message, meta.get("generation"), status)],
        },
    )
    await operator.report(body, "Warning", error.reason, error.message)


def _secret_body(issuer: Mapping[str, Any], data: Mapping[str, bytes], spec: IssuerSpec) -> dict[str, Any]:
    meta = issuer["metadata"]
    metadata: dict[str, Any] = {
        "name": secret_name(meta["name"]),
        "namespace": meta["namespace"],
        "labels": {MANAGED_BY: MANAGED_BY_VALUE, ISSUER_LABEL: meta["name"]},
    }
    if not spec.retain_secret:
        metadata["ownerReferences"] = [
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "Issuer",
                "name": meta["name"],
                "uid": meta["uid"],
                "controller": True,
                "blockOwnerDeletion": False,
            }
        ]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": metadata,
        "data": {key: base64.b64encode(value).decode() for key, value in sorted(data.items())},
    }


def _secret_data(secret: Mapping[str, Any]) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}


def _ours(obj: Mapping[str, Any]) -> bool:
    """True for an object we created: our label, or an Apply entry of our field manager."""
    meta = obj.get("metadata") or {}
    if (meta.get("labels") or {}).get(MANAGED_BY) == MANAGED_BY_VALUE:
        return True
    return any(
        entry.get("manager") == "jwt-trust" and entry.get("operation") == "Apply"
        for entry in meta.get("managedFields") or ()
    )


async def reconcile_issuer(operator: Operator, namespace: str, name: str) -> float | None:
    body = operator.issuers.objects.get((namespace, name))
    if body is None or body["metadata"].get("deletionTimestamp"):
        return None
    url = Ref(f"{GROUP}/{VERSION}", "issuers", namespace, name)
    try:
        spec = parse_issuer_spec(body["spec"])
    except SpecError as error:
        await _not_ready(operator, body, url, error, "Issuer")
        return None
    if spec.external is not None:
        return await reconcile_external(operator, body, url, spec)

    secret_url = Ref("v1", "secrets", namespace, secret_name(name))
    try:
        secret = await operator.api.get(secret_url)
    except APIError as error:
        if error.status != 403:
            raise
        denied = SpecError(
            "SecretAccessDenied",
            f"the operator may not read Secrets in namespace {namespace} (Helm value secretNamespaces)",
        )
        await _not_ready(operator, body, url, denied, "Issuer")
        return None
    if secret is not None and not _ours(secret):
        await _not_ready(
            operator,
            body,
            url,
            SpecError(
                "SecretNotOwned",
                f"Secret {secret_name(name)} exists and was not created by jwt-trust; not touched",
            ),
            "Issuer",
        )
        return None
    data = _secret_data(secret) if secret else None
    try:
        stored = load_stored(data)
    except SpecError as error:
        await _not_ready(operator, body, url, error, "Issuer")
        return None

    ref = f"{namespace}/{name}"
    policies = list(operator.policies.objects.values())
    if not any(ref in _policy_refs(p) for p in policies):
        # "No policy trusts this Issuer" publishes a new key at once, so it must not come from a cache
        # that may lag behind a policy created a moment ago (both applied together from Git, say).
        items, _version = await operator.api.list(Ref(f"{GROUP}/{VERSION}", "trustpolicies"))
        policies = [_summarise_custom(item) for item in items]
    trusting = [p for p in policies if ref in _policy_refs(p) and not p["metadata"].get("deletionTimestamp")]
    # What each trusting policy reports as held by all its targets; a key is published when all agree.
    held = {
        p["metadata"]["name"]: {
            kid
            for entry in (p.get("status") or {}).get("publishedKeys") or ()
            if entry.get("issuer") == ref
            for kid in entry.get("kids") or ()
        }
        for p in trusting
    }
    published = set.intersection(*held.values()) if held else set()
    status = body.get("status") or {}
    now = int(time.time())
    result = step(
        now,
        spec,
        stored,
        published,
        status_keys=stored_public_keys(status),
        recorded=records_from_status(status, external_at=now),
        has_targets=bool(trusting),
    )
    pending = [r.kid for r in result.records if r.published_at is None]
    waiting_for = [name for name, kids in held.items() if any(kid not in kids for kid in pending)]

    new_data = result.secret_data(spec)
    if new_data != data or (secret is not None and _owner_mismatch(secret, spec)):
        # Conditional on the version we read: two replicas during a peering hand-over must not
        # overwrite each other's keys. A conflict makes _loop read and plan again at once.
        await operator.api.apply(
            secret_url, _secret_body(body, new_data, spec), force=True, resource_version=_read_version(secret)
        )

    for kid in result.generated:
        metrics.ROTATIONS.labels(issuer=ref).inc()
        await operator.report(body, "Normal", "KeyGenerated", f"generated {spec.algorithm} key {kid}")
    for type_, reason, message in result.events:
        if reason == "KeyRevoked":
            metrics.REVOCATIONS.labels(issuer=ref).inc()
        await operator.report(body, type_, reason, message)

    active = result.plan.active_kid
    if active is not None:
        ready = _condition(
            True, "KeyActive", f"key {active} signs", body["metadata"].get("generation"), status
        )
    elif waiting_for:
        ready = _condition(
            False,
            "AwaitingPublication",
            f"the next key waits for TrustPolicies {', '.join(sorted(waiting_for))} to publish it",
            body["metadata"].get("generation"),
            status,
        )
    else:
        upcoming = min((r.activates_at for r in result.records if r.activates_at is not None), default=None)
        ready = _condition(
            False,
            "AwaitingActivation",
            f"no key signs yet; the next key activates at {iso(upcoming)}"
            if upcoming
            else "no key signs yet",
            body["metadata"].get("generation"),
            status,
        )
    new_status: dict[str, Any] = {
        "observedGeneration": body["metadata"].get("generation"),
        "conditions": [ready],
        "keys": status_keys(result.records, result.public_keys, now),
    }
    if active is not None:
        new_status["activeKeyID"] = active
    if result.plan.wake_at is not None:
        new_status["nextRotation"] = iso(result.plan.wake_at)
    await _patch_status(operator, body, url, new_status)

    for state in KEY_STATES:
        metrics.KEYS.labels(issuer=ref, state=state).set(
            sum(1 for k in new_status["keys"] if k["state"] == state)
        )
    if result.plan.wake_at is not None:
        metrics.SECONDS_TO_ROTATION.labels(issuer=ref).set(max(result.plan.wake_at - now, 0))
    return None if result.plan.wake_at is None else float(result.plan.wake_at)


def _read_version(obj: Mapping[str, Any] | None) -> str | None:
    """The resourceVersion an object was read at (None for an object that did not exist)."""
    return None if obj is None else str(obj["metadata"]["resourceVersion"])


def _owner_mismatch(secret: Mapping[str, Any], spec: IssuerSpec) -> bool:
    owned = bool((secret.get("metadata") or {}).get("ownerReferences"))
    return owned == spec.retain_secret


# --- external issuers -----------------------------------------------------------------------------


async def reconcile_external(
    operator: Operator, body: Mapping[str, Any], url: Ref, spec: IssuerSpec
) -> float | None:
    external = spec.external
    assert external is not None
    meta = body["metadata"]
    status = body.get("status") or {}
    key = (meta["namespace"], meta["name"])
    now = time.time()
    wake_at: float | None = None
    try:
        if external.inline_jwks is not None:
            mirrored = parse_external_jwks(dict(external.inline_jwks))
            source = "inline JWKS"
        else:
            assert external.jwks_url is not None
            fingerprint = hashlib.sha256(json.dumps(body["spec"], sort_keys=True).encode()).hexdigest()
            last, last_spec = operator.fetched.get(key, (0.0, ""))
            due = last + external.refresh_interval
            if last_spec == fingerprint and now < due and status.get("keys"):
                return due
            try:
                raw = await fetch_jwks(
                    external.jwks_url,
                    ca_bundle=external.ca_bundle,
                    timeout=external.timeout,
                    max_bytes=external.max_bytes,
                )
            except (TimeoutError, FetchError, aiohttp.ClientError, OSError, ValueError) as error:
                raise SpecError(
                    "JWKSFetchFailed",
                    f"fetching {external.jwks_url} failed: {error}; the last good keys stay published",
                ) from None
            mirrored = parse_external_jwks(raw)
            operator.fetched[key] = (now, fingerprint)
            wake_at = now + external.refresh_interval
            source = external.jwks_url
    except SpecError as error:
        await _not_ready(operator, body, url, error, "Issuer")
        # Back off, but keep trying: the provider may come back.
        retry_at = operator.retries.failed(("issuer", *key, "fetch"), now)
        return min(now + float(external.refresh_interval), retry_at)
    operator.retries.succeeded(("issuer", *key, "fetch"))
    entries = [
        {
            "kid": jwk["kid"],
            **({"alg": jwk["alg"]} if "alg" in jwk else {}),
            "state": "external",
            "publicKey": jwk,
        }
        for jwk in mirrored.keys
    ]
    message = f"{len(mirrored.keys)} keys from {source}"
    if mirrored.warnings:
        # Keys we cannot verify are left out, not the whole set: say which, once per distinct list.
        skipped = "; ".join(mirrored.warnings)
        message += f"; skipped: {skipped}"
        await operator.report(body, "Warning", "JWKSKeysSkipped", skipped[:1024])
    else:
        operator.cleared(body, "JWKSKeysSkipped")
    winding_down: list[dict[str, Any]] = []
    if generated := records_from_status(status):
        # The Issuer generated keys before it mirrored this provider.
        moment = int(now)
        wound = await _wind_down(operator, body, spec, status, generated=generated, now=moment)
        winding_down = status_keys(wound.records, wound.public_keys, moment)
        if wound.records:
            until = max(r.remove_at or 0 for r in wound.records)
            message += f"; {len(wound.records)} generated keys stay published until {iso(until)}"
        if wound.plan.wake_at is not None:
            wake_at = min(wake_at or float("inf"), float(wound.plan.wake_at))
    new_status: dict[str, Any] = {
        "observedGeneration": meta.get("generation"),
        "conditions": [_condition(True, "JWKSLoaded", message, meta.get("generation"), status)],
        "keys": entries + winding_down,
    }
    if entries != [k for k in status.get("keys") or () if k.get("state") == "external"]:
        # Written only when the keys change, so a steady provider costs no writes.
        new_status["jwksUpdatedAt"] = iso(int(now))
        await operator.report(body, "Normal", "JWKSUpdated", message)
    await _patch_status(operator, body, url, new_status)
    operator.cleared(body, "JWKSFetchFailed")
    return wake_at


async def _wind_down(
    operator: Operator,
    body: Mapping[str, Any],
    spec: IssuerSpec,
    status: Mapping[str, Any],
    *,
    generated: Sequence[KeyRecord],
    now: int,
) -> Step:
    """Retire the keys an Issuer generated before it mirrored an external JWKS.

    Their private keys leave the Secret, so no signer mints a token with them again; every copy of the
    old Secret (up to P old) may still sign, so the keys stay published under the lost-key rule of the
    rotation plan.
    """
    meta = body["metadata"]
    secret_url = Ref("v1", "secrets", meta["namespace"], secret_name(meta["name"]))
    try:
        secret = await operator.api.get(secret_url)
    except APIError as error:
        if error.status != 403:
            raise
        secret = None
    data = None
    stored = None
    if secret is not None and _ours(secret):
        data = _secret_data(secret)
        with contextlib.suppress(SpecError):
            stored = load_stored(data)
    result = step(
        now,
        spec,
        dataclasses.replace(stored, private_keys={}) if stored is not None else None,
        (),
        status_keys=stored_public_keys(status),
        recorded=generated,
        generate_keys=False,
    )
    for type_, reason, text in result.events:
        await operator.report(body, type_, reason, text)
    new_data = result.secret_data(spec)
    if data is not None and new_data != data:
        secret_body = _secret_body(body, new_data, spec)
        await operator.api.apply(secret_url, secret_body, force=True, resource_version=_read_version(secret))
    return result


# --- TrustPolicy ----------------------------------------------------------------------------------


def _configmap_body(
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
            "ownerReferences": [
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "TrustPolicy",
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": False,
                }
            ],
        },
        "data": dict(data),
    }


async def _write_target(
    operator: Operator,
    policy: Mapping[str, Any],
    namespace: str,
    name: str,
    data: Mapping[str, str],
    *,
    known: bool,
) -> tuple[str, str] | None:
    """Apply one target; returns (reason, message) when it could not be written."""
    url = Ref("v1", "configmaps", namespace, name)
    async with operator.write_slots:
        try:
            if not known:
                existing = await operator.api.get(url)
                if existing is not None and not _ours(existing):
                    return (
                        "TargetNotOwned",
                        f"ConfigMap {namespace}/{name} exists and is not managed by jwt-trust; left alone",
                    )
            written = await operator.api.apply(
                url, _configmap_body(policy, namespace, name, data), force=True
            )
        except APIError as error:
            return "WriteFailed", f"ConfigMap {namespace}/{name}: {error}"
        except (TimeoutError, aiohttp.ClientError) as error:
            return "WriteFailed", f"ConfigMap {namespace}/{name}: {error!r}"
    # Record what we wrote now, so a reconciliation that runs before the watch event arrives does not
    # write the same content again.
    operator.configmaps.objects[(namespace, name)] = _summarise_configmap(written)
    return None


async def _delete_target(operator: Operator, namespace: str, name: str, uid: str) -> tuple[str, str] | None:
    """Delete the ConfigMap we saw as ``uid``: one created again under that name since is left alone."""
    async with operator.write_slots:
        try:
            await operator.api.delete(Ref("v1", "configmaps", namespace, name), uid=uid)
        except (TimeoutError, APIError, aiohttp.ClientError) as error:
            return "DeleteFailed", f"ConfigMap {namespace}/{name}: {error!r}"
    operator.configmaps.objects.pop((namespace, name), None)
    return None


async def reconcile_policy(operator: Operator, _namespace: str, name: str) -> float | None:
    body = operator.policies.objects.get(("", name))
    if body is None or body["metadata"].get("deletionTimestamp"):
        return None
    url = Ref(f"{GROUP}/{VERSION}", "trustpolicies", None, name)
    try:
        spec = parse_policy_spec(name, body["spec"])
    except SpecError as error:
        await _not_ready(operator, body, url, error, "TrustPolicy")
        return None
    now = int(time.time())
    if (retry_at := _issuers_settling(operator, spec.issuer_refs)) is not None:
        return retry_at
    issuers = {
        f"{ns}/{n}": obj
        for (ns, n), obj in operator.issuers.objects.items()
        if not obj["metadata"].get("deletionTimestamp")
    }
    projection = project(spec, issuers, now)
    status = body.get("status") or {}
    recorded = (int(status.get("revision") or 0), status.get("contentHash"))
    revision, _ = next_revision(recorded, operator.revisions.get(name), projection.unhashed)
    data = projection.data(revision)
    if too_large(data):
        await _not_ready(
            operator,
            body,
            url,
            SpecError(
                "ProjectionTooLarge", "the projected ConfigMap would exceed 1 MiB; nothing was written"
            ),
            "TrustPolicy",
        )
        return None
    wanted = content_hash(data)
    namespaces = {
        ns: dict(s.labels) for (_, ns), s in operator.namespaces.objects.items() if not s.terminating
    }
    matched, actions = plan_targets(spec, namespaces, operator.configmaps.objects.values(), wanted)

    jobs = []
    if actions:
        log.info(
            "TrustPolicy %s revision %d: %d matched, %d to apply, %d to delete",
            name,
            revision,
            len(matched),
            sum(a == "apply" for a in actions.values()),
            sum(a == "delete" for a in actions.values()),
        )
    for (namespace, target), action in sorted(actions.items()):
        if action == "apply":
            known = (namespace, target) in operator.configmaps.objects
            jobs.append((namespace, _write_target(operator, body, namespace, target, data, known=known)))
        elif action == "delete":
            uid = operator.configmaps.objects[(namespace, target)].uid
            jobs.append((namespace, _delete_target(operator, namespace, target, uid)))
    outcomes = await asyncio.gather(*(job for _, job in jobs))
    failed = {
        namespace: outcome
        for (namespace, _), outcome in zip(jobs, outcomes, strict=True)
        if outcome is not None
    }
    for (namespace, _), action in actions.items():
        if action == "conflict":
            failed[namespace] = (
                "TargetOwnedByAnotherPolicy",
                f"ConfigMap {namespace}/{spec.target_name} belongs to another TrustPolicy; left alone",
            )
    not_ours = {
        ns for ns, (reason, _) in failed.items() if reason in ("TargetNotOwned", "TargetOwnedByAnotherPolicy")
    }
    synced = [ns for ns in matched if ns not in failed]
    write_failures = {ns: f for ns, f in failed.items() if ns not in not_ours and ns in matched}

    # A key counts as published only when every target we are responsible for holds it; targets owned
    # by someone else never had our keys, so they do not hold rotation back.
    if write_failures:
        previous = {e.get("issuer"): set(e.get("kids") or ()) for e in status.get("publishedKeys") or ()}
        current = published_kids(projection)
        published = [
            {"issuer": e["issuer"], "kids": sorted(previous.get(e["issuer"], set()) & set(e["kids"]))}
            for e in current
        ]
    else:
        published = published_kids(projection)

    generation = body["metadata"].get("generation")
    if projection.missing_issuers:
        reason, message, ok = (
            "IssuerNotFound",
            f"Issuers not found: {', '.join(projection.missing_issuers)}",
            False,
        )
    elif failed:
        first = sorted(failed.items())[0]
        reason, message, ok = (
            first[1][0],
            f"{len(failed)} of {len(matched)} namespaces not synced; first: {first[1][1]}",
            False,
        )
    else:
        reason, message, ok = "Synced", f"{len(synced)} namespaces hold revision {revision}", True
    if not ok:
        await operator.report(body, "Warning", reason, message)
    for _namespace, (fail_reason, fail_message) in sorted(failed.items())[:5]:
        await operator.report(body, "Warning", fail_reason, fail_message)
    new_status: dict[str, Any] = {
        "observedGeneration": generation,
        "conditions": [_condition(ok, reason, message, generation, status)],
        "matchedNamespaces": len(matched),
        "syncedNamespaces": len(synced),
        "failedNamespaces": [
            {"namespace": ns, "reason": r, "message": m} for ns, (r, m) in sorted(failed.items())[:100]
        ],
        "revision": revision,
        "contentHash": projection.unhashed,
        "publishedKeys": published,
    }
    await _patch_status(operator, body, url, new_status)
    operator.revisions[name] = (revision, projection.unhashed)
    metrics.MATCHED.labels(policy=name).set(len(matched))
    metrics.SYNCED.labels(policy=name).set(len(synced))
    # Retry failed writes with the backoff; otherwise sleep until poked (or the periodic resync).
    if write_failures:
        return operator.retries.failed(("policy", "", name, "write"), now)
    operator.retries.succeeded(("policy", "", name, "write"))
    return None


ISSUER_SETTLE_SECONDS = 5.0


def _issuers_settling(operator: Operator, refs: Iterable[str]) -> float | None:
    """When a named Issuer's spec changed and it has not reconciled yet, the time to look again.

    Projecting it now would write twice (once for the spec, once for the keys its reconciliation is
    about to produce), so the policy waits, but at most ISSUER_SETTLE_SECONDS: a revocation must not
    be held back by an Issuer that cannot reconcile.
    """
    now = time.time()
    waiting = False
    for ref in refs:
        namespace, _, name = ref.partition("/")
        body = operator.issuers.objects.get((namespace, name))
        meta = (body or {}).get("metadata") or {}
        if body is None or meta.get("generation") == (body.get("status") or {}).get("observedGeneration"):
            operator.stale_since.pop(ref, None)
            continue
        since = operator.stale_since.setdefault(ref, now)
        waiting = waiting or now - since < ISSUER_SETTLE_SECONDS
    return now + 0.2 if waiting else None


@kopf.on.delete(GROUP, VERSION, "trustpolicies")
async def policy_deleted(name: str, memo: kopf.Memo, **_: Any) -> None:
    operator: Operator = memo.operator
    items, _version = await operator.api.list(
        Ref("v1", "configmaps"), label_selector=f"{OUR_LABEL},{POLICY_LABEL}={name}"
    )
    for item in items:
        meta = item["metadata"]
        await _delete_target(operator, meta["namespace"], meta["name"], meta["uid"])
    log.info("TrustPolicy %s deleted: removed %d ConfigMaps", name, len(items))


@kopf.on.delete(GROUP, VERSION, "issuers")
async def issuer_deleted(
    namespace: str | None, name: str, spec: kopf.Spec, memo: kopf.Memo, **_: Any
) -> None:
    operator: Operator = memo.operator
    if spec.get("deletionPolicy") == "Retain":
        # Drop our ownerReference so the garbage collector keeps the Secret.
        url = Ref("v1", "secrets", namespace, secret_name(name))
        with contextlib.suppress(APIError):
            await operator.api.merge_patch(url, {"metadata": {"ownerReferences": None}})
    operator.poke_policies(f"{namespace}/{name}")
