"""Prometheus metrics of the operator (served on ``JWT_TRUST_METRICS_PORT``, default 9090)."""

from __future__ import annotations

import contextlib
from typing import Any

from prometheus_client import Counter, Gauge

KEYS = Gauge("jwt_trust_keys", "Keys per issuer and lifecycle state", ["issuer", "state"])
ROTATIONS = Counter("jwt_trust_rotations_total", "Keys generated", ["issuer"])
REVOCATIONS = Counter("jwt_trust_revocations_total", "Keys withdrawn by revocation", ["issuer"])
SECONDS_TO_ROTATION = Gauge(
    "jwt_trust_seconds_to_next_rotation", "Seconds until the key set changes", ["issuer"]
)
WRITES = Counter("jwt_trust_api_writes_total", "Writes sent to the Kubernetes API", ["verb", "resource"])
FAILURES = Counter("jwt_trust_failures_total", "Reconciliation failures", ["kind", "reason"])
MATCHED = Gauge("jwt_trust_namespaces_matched", "Namespaces a policy selects", ["policy"])
SYNCED = Gauge(
    "jwt_trust_namespaces_synced", "Selected namespaces holding the current projection", ["policy"]
)
TARGETS_FAILED = Gauge(
    "jwt_trust_targets_failed",
    "Target objects of a policy (its ConfigMaps, its consumer objects) that do not hold its content",
    ["policy", "kind"],
)
WATCH_RESTARTS = Counter(
    "jwt_trust_watch_restarts_total", "Watches restarted after a failure (a new list follows)", ["resource"]
)


def forget(metric: Any, *labels: str) -> None:
    """Drop one series (an object that no longer exists must not be reported forever)."""
    with contextlib.suppress(KeyError):
        metric.remove(*labels)
