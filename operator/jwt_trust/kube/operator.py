"""What the daemons of one operator process share: the client, the caches, pokes, Events and retries.

The caches are label-selected informers (namespaces, our ConfigMaps, Secrets and consumer objects,
Issuers, TrustPolicies); a change in one pokes the daemons it concerns. They are listed completely before any
daemon acts: a namespace missing from a half-filled cache would look unselected and lose its ConfigMap.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kopf

from jwt_trust.projection import content_hash
from jwt_trust.rotation import KEY_STATES

from . import metrics
from .api import KubeAPI, Ref
from .backoff import Backoff
from .errors import Transient, retry_after
from .events import EventRecorder
from .informers import Informer, Key
from .policies import (
    CONFIGMAP,
    MANAGED_BY,
    MANAGED_BY_VALUE,
    POLICY_LABEL,
    REQUEST_AUTHENTICATION,
    Revision,
    Target,
    object_hash,
)
from .reconcile import (
    API_VERSION,
    DISABLED,
    ISSUER_LABEL,
    MISSING,
    SERVED,
    TARGET_APIS,
    Event,
    discovery_urls,
    policy_refs,
)
from .scheduling import WriteScheduler

OUR_LABEL = f"{MANAGED_BY}={MANAGED_BY_VALUE}"
RETRY_CAUSES = ("api", "write", "fetch")
RESYNC_SECONDS = 600.0
CONSUMER_NAMES = {"istio": REQUEST_AUTHENTICATION}
DEBOUNCE_SECONDS = 0.1

log = logging.getLogger("jwt_trust.operator")


@dataclass(frozen=True)
class NamespaceSummary:
    labels: tuple[tuple[str, str], ...]
    terminating: bool


@dataclass(frozen=True)
class DiscoveryService:
    """The discovery service whose replicas serve opted-in Issuers: where consumers reach it
    (``base_url``), the Service whose EndpointSlices list its replicas, and the CA its certificate
    chains to (None: the system roots)."""

    base_url: str
    namespace: str
    service: str
    ca_bundle: str | None = None

    @classmethod
    def from_environment(cls, env: Mapping[str, str]) -> DiscoveryService | None:
        """``JWT_TRUST_DISCOVERY_URL``, ``_SERVICE`` (namespace/name) and ``_CA_FILE``, as the chart
        sets them when the service is enabled; None when it is not."""
        base_url, service = env.get("JWT_TRUST_DISCOVERY_URL", ""), env.get("JWT_TRUST_DISCOVERY_SERVICE", "")
        if not base_url or "/" not in service:
            return None
        namespace, _, name = service.partition("/")
        ca_file = env.get("JWT_TRUST_DISCOVERY_CA_FILE", "")
        return cls(base_url, namespace, name, Path(ca_file).read_text() if ca_file else None)


@dataclass
class Operator:
    """Everything the daemons share in one process."""

    api: KubeAPI
    namespaces: Informer[NamespaceSummary]
    configmaps: Informer[Target]
    secrets: list[Informer[tuple[str, str]]]
    issuers: Informer[dict[str, Any]]
    policies: Informer[dict[str, Any]]
    write_slots: WriteScheduler
    pokes: dict[tuple[str, str, str], asyncio.Event] = field(default_factory=dict)
    events: EventRecorder = field(default_factory=EventRecorder)
    # One retry policy; keys are (kind, namespace, name, cause) so that one cause's success does not
    # reset another's count.
    retries: Backoff = field(default_factory=Backoff)
    fetched: dict[Key, tuple[float, str]] = field(default_factory=dict)  # per external Issuer: (when, spec)
    stale_since: dict[str, float] = field(default_factory=dict)
    revisions: dict[str, Revision] = field(default_factory=dict)  # per policy: the last one written
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    discovery: DiscoveryService | None = None
    # Per consumer kind the operator manages (chart values consumers.*): the cache of our objects.
    consumers: dict[str, Informer[Target]] = field(default_factory=dict)

    @property
    def informers(self) -> list[Informer[Any]]:
        return [
            self.namespaces,
            self.configmaps,
            *self.secrets,
            self.issuers,
            self.policies,
            *self.consumers.values(),
        ]

    def cache(self, kind: str) -> Informer[Target]:
        """The cache of our target objects of ``kind`` (ConfigMaps, or a consumer kind we manage)."""
        return self.configmaps if kind == CONFIGMAP else self.consumers[kind]

    def targets(self) -> list[Target]:
        """Every target object of ours the caches hold, of every kind."""
        return [
            target
            for cache in (self.configmaps, *self.consumers.values())
            for target in cache.objects.values()
        ]

    def apis(self) -> dict[str, str]:
        """Per consumer kind: SERVED, MISSING (its CRD is not installed) or DISABLED (not managed)."""
        states = dict.fromkeys(TARGET_APIS, DISABLED)
        states[CONFIGMAP] = SERVED
        for kind, cache in self.consumers.items():
            states[kind] = MISSING if cache.absent else SERVED
        return states

    def wake(self, kind: str, namespace: str, name: str) -> asyncio.Event:
        return self.pokes.setdefault((kind, namespace, name), asyncio.Event())

    def poke(self, kind: str, namespace: str, name: str) -> None:
        self.wake(kind, namespace, name).set()

    def poke_policies(self, issuer_ref: str | None = None) -> None:
        for (_, name), body in self.policies.objects.items():
            if issuer_ref is None or issuer_ref in policy_refs(body):
                self.poke("policy", "", name)

    def live_issuers(self) -> dict[str, dict[str, Any]]:
        """Every Issuer that is not being deleted, by ``namespace/name``."""
        return {
            f"{ns}/{n}": obj
            for (ns, n), obj in self.issuers.objects.items()
            if not obj["metadata"].get("deletionTimestamp")
        }

    def served_at(self, body: Mapping[str, Any], *, opted_in: bool) -> dict[str, str] | None:
        """Where the discovery service serves an Issuer (None: it does not)."""
        if not opted_in or self.discovery is None:
            return None
        meta = body["metadata"]
        return discovery_urls(self.discovery.base_url, meta["namespace"], meta["name"])

    def active_namespaces(self) -> dict[str, dict[str, str]]:
        """Every namespace that is not Terminating, with its labels."""
        return {ns: dict(s.labels) for (_, ns), s in self.namespaces.objects.items() if not s.terminating}

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
            for target_kind in TARGET_APIS:
                metrics.forget(metrics.TARGETS_FAILED, name, target_kind)
            return
        issuer_ref = f"{namespace}/{name}"
        for state in KEY_STATES:
            metrics.forget(metrics.KEYS, issuer_ref, state)
        for metric in (metrics.ROTATIONS, metrics.REVOCATIONS, metrics.SECONDS_TO_ROTATION):
            metrics.forget(metric, issuer_ref)
        self.fetched.pop((namespace, name), None)
        self.stale_since.pop(issuer_ref, None)

    async def report(self, obj: Mapping[str, Any], event: Event) -> None:
        """Post an Event unless the recorder says this (object, reason, message) was posted lately."""
        type_, reason, message = event
        count = self.events.record(_uid(obj), reason, message, time.time())
        if count is None:
            return
        if type_ == "Warning":
            metrics.FAILURES.labels(kind=str(obj.get("kind")), reason=reason).inc()
        await self.api.event(obj, type_, reason, message, count=count)

    def cleared(self, obj: Mapping[str, Any], reason: str) -> None:
        """A failure reported under ``reason`` is over: the next occurrence is news again."""
        self.events.forget(_uid(obj), reason)


def _uid(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("uid"))


def summarise_custom(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    status = {k: v for k, v in (obj.get("status") or {}).items() if k != "kopf"}
    return {
        "apiVersion": obj.get("apiVersion"),
        "kind": obj.get("kind"),
        "metadata": {k: meta.get(k) for k in ("name", "namespace", "uid", "generation", "deletionTimestamp")},
        "spec": obj.get("spec") or {},
        "status": status,
    }


def summarise_namespace(obj: dict[str, Any]) -> NamespaceSummary:
    meta = obj.get("metadata") or {}
    terminating = (
        bool(meta.get("deletionTimestamp")) or (obj.get("status") or {}).get("phase") == "Terminating"
    )
    return NamespaceSummary(tuple(sorted((meta.get("labels") or {}).items())), terminating)


def summarise_configmap(obj: dict[str, Any]) -> Target:
    meta = obj.get("metadata") or {}
    return Target(
        namespace=str(meta.get("namespace")),
        name=str(meta.get("name")),
        policy=(meta.get("labels") or {}).get(POLICY_LABEL),
        data_hash=content_hash(obj.get("data") or {}),
        uid=str(meta.get("uid") or ""),
    )


def summarise_consumer(obj: dict[str, Any]) -> Target:
    """A consumer object (a RequestAuthentication): its content is its ``spec``."""
    meta = obj.get("metadata") or {}
    return Target(
        namespace=str(meta.get("namespace")),
        name=str(meta.get("name")),
        policy=(meta.get("labels") or {}).get(POLICY_LABEL),
        data_hash=object_hash(obj.get("spec") or {}),
        uid=str(meta.get("uid") or ""),
        kind=str(obj.get("kind") or ""),
    )


def summarise_target(obj: dict[str, Any]) -> Target:
    """The cache entry of a target object of any kind, from the object (a watch event, a write's answer)."""
    return summarise_configmap(obj) if obj.get("kind", CONFIGMAP) == CONFIGMAP else summarise_consumer(obj)


def summarise_secret(obj: dict[str, Any]) -> tuple[str, str]:
    # Only a digest: private keys are not kept in the operator's memory between reconciliations.
    meta = obj.get("metadata") or {}
    digest = hashlib.sha256(json.dumps(obj.get("data") or {}, sort_keys=True).encode()).hexdigest()
    return str((meta.get("labels") or {}).get(ISSUER_LABEL, "")), digest


def build(
    api: KubeAPI,
    *,
    secret_namespaces: list[str],
    write_concurrency: int,
    discovery: DiscoveryService | None = None,
    consumers: frozenset[str] = frozenset(),
) -> Operator:
    """The operator's caches, wired so that each change pokes the daemons it concerns; ``consumers``:
    the consumer kinds it manages (each gets a cache of our objects of that kind)."""
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
        for body in (old, new):
            for issuer_ref in policy_refs(body or {}):
                namespace, _, name = issuer_ref.partition("/")
                operator.poke("issuer", namespace, name)
        if new is None:
            operator.forget("policy", old)

    secret_refs = [Ref("v1", "secrets", ns) for ns in secret_namespaces] or [Ref("v1", "secrets")]
    operator = Operator(
        api=api,
        namespaces=Informer(api, Ref("v1", "namespaces"), summarise_namespace, on_change=on_namespace),
        configmaps=Informer(
            api,
            Ref("v1", "configmaps"),
            summarise_configmap,
            label_selector=OUR_LABEL,
            on_change=on_configmap,
        ),
        secrets=[
            Informer(api, ref, summarise_secret, label_selector=OUR_LABEL, on_change=on_secret)
            for ref in secret_refs
        ],
        issuers=Informer(api, Ref(API_VERSION, "issuers"), summarise_custom, on_change=on_issuer),
        policies=Informer(api, Ref(API_VERSION, "trustpolicies"), summarise_custom, on_change=on_policy),
        write_slots=WriteScheduler(cap=write_concurrency),
        discovery=discovery,
    )
    for kind in sorted(consumers & TARGET_APIS.keys() - {CONFIGMAP}):
        group_version, resource = TARGET_APIS[kind]
        operator.consumers[kind] = Informer(
            api,
            Ref(group_version, resource),
            summarise_consumer,
            label_selector=OUR_LABEL,
            on_change=on_configmap,
            # Its CRD may not be installed (yet): an empty cache then, and every policy that wants
            # one of these objects is told so, and looked at again once the CRD appears.
            optional=True,
            on_served=operator.poke_policies,
        )
    api.on_throttled = operator.write_slots.throttled
    return operator


def consumers_from_environment(env: Mapping[str, str]) -> frozenset[str]:
    """``JWT_TRUST_CONSUMERS`` (comma-separated, as the chart sets it from ``consumers.*.enabled``): the
    consumer kinds the operator manages; ``istio`` names RequestAuthentications."""
    names = {name.strip().lower() for name in env.get("JWT_TRUST_CONSUMERS", "").split(",") if name.strip()}
    unknown = names - CONSUMER_NAMES.keys()
    if unknown:
        log.warning("JWT_TRUST_CONSUMERS: unknown consumers %s ignored", ", ".join(sorted(unknown)))
    return frozenset(CONSUMER_NAMES[name] for name in names & CONSUMER_NAMES.keys())


# --- the daemons' loop ----------------------------------------------------------------------------

Reconcile = Callable[["Operator", str, str], Awaitable[float | None]]


async def run_daemon(
    operator: Operator,
    kind: str,
    namespace: str,
    name: str,
    *,
    stopped: kopf.DaemonStopped,
    reconcile: Reconcile,
) -> None:
    """Reconcile, then sleep until the outcome's wake-up time, a poke, the resync or the stop flag."""
    wake = operator.wake(kind, namespace, name)
    retry_key = (kind, namespace, name, "api")
    try:
        while not stopped:
            wake.clear()
            try:
                wake_at = await reconcile(operator, namespace, name)
                operator.retries.succeeded(retry_key)
            except Transient as error:
                if retry_after(error) == "now":
                    log.info("%s %s/%s: changed while reconciling; again", kind, namespace, name)
                    wake_at = time.time()
                else:
                    log.warning(
                        "%s %s/%s: reconciliation failed (%s); retrying", kind, namespace, name, error
                    )
                    metrics.FAILURES.labels(kind=kind, reason=type(error).__name__).inc()
                    wake_at = operator.retries.failed(retry_key, time.time())
            delay = (
                RESYNC_SECONDS if wake_at is None else min(max(wake_at - time.time(), 0.0), RESYNC_SECONDS)
            )
            if await _sleep(wake, stopped, delay):
                return
            await asyncio.sleep(DEBOUNCE_SECONDS)  # coalesce a burst of pokes into one reconciliation
    finally:
        cache = operator.issuers if kind == "issuer" else operator.policies
        body = cache.objects.get((namespace, name))
        if body is None or body["metadata"].get("deletionTimestamp"):
            # Stopped because the object is going: a reconciliation that was in flight when its
            # DELETED event was handled may have set metric series again after they were removed.
            operator.forget(kind, {"metadata": {"namespace": namespace, "name": name}})


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
