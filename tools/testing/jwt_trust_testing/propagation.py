"""Measures P, the kubelet's delay from a ConfigMap write to the changed files inside a pod.

Why: the rotation guarantee holds for every mounted copy at most ``propagation`` old; this is the delay
that setting must cover, measured on a real kubelet instead of assumed.

How: ``pods`` pods (the node's pause image, nothing else) each mount their own ConfigMap. Each write is
a PUT straight to the API server, timed when its response arrives; the host then watches the ``..data``
link the kubelet swaps atomically in the pod's volume directory
(``<kubelet root>/pods/<uid>/volumes/kubernetes.io~configmap/<volume>``) until it names the new copy.
Every pod has its own schedule (a random wait after each change before the next write), so writes
land at random points of each pod's sync cycle and the samples are independent.
Standard library only.
"""

from __future__ import annotations

import json
import os
import random
import ssl
import statistics
import time
import urllib.request
from dataclasses import dataclass

from .cluster import ControlPlane

__all__ = ["Sample", "measure", "summary"]

_VOLUME = "watched"


@dataclass(frozen=True)
class Sample:
    pod: str
    seconds: float


def _put_configmap(
    plane: ControlPlane, context: ssl.SSLContext, namespace: str, name: str, value: str
) -> float:
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": {"value": value},
    }
    request = urllib.request.Request(  # noqa: S310 - the test cluster's own https URL
        f"{plane.server}/api/v1/namespaces/{namespace}/configmaps/{name}",
        data=json.dumps(body).encode(),
        method="PUT",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, context=context, timeout=30) as response:  # noqa: S310
        response.read()
    return time.monotonic()


def _pod_manifest(namespace: str, name: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "automountServiceAccountToken": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 65535,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "pause",
                    "image": "localhost/jwt-trust-pause:1",
                    "imagePullPolicy": "Never",
                    "volumeMounts": [{"name": _VOLUME, "mountPath": "/watched", "readOnly": True}],
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
            "volumes": [{"name": _VOLUME, "configMap": {"name": name}}],
        },
    }


def measure(
    plane: ControlPlane,
    *,
    namespace: str,
    pods: int = 10,
    writes_per_pod: int = 5,
    spread: float = 3.0,
    timeout: float = 300,
) -> list[Sample]:
    """``pods * writes_per_pod`` samples of the write-to-file delay, in seconds (raises if one never
    arrives). Each pod's next write comes a uniformly random 0 to ``spread`` seconds after its previous
    change was seen: with ``spread`` at least the kubelet's resync period (1.5 x ``syncFrequency``), the
    writes fall at random points of the pod's sync cycle instead of right after a sync."""
    node = plane.node
    if node is None:
        raise RuntimeError("measuring propagation needs a control plane started with a node")
    plane.kubectl("create", "namespace", namespace)
    names = [f"p{i}" for i in range(pods)]
    context = plane.admin_ssl_context()
    for name in names:
        plane.kubectl("create", "configmap", name, "-n", namespace, "--from-literal=value=0")
        plane.kubectl("apply", "-f", "-", input=json.dumps(_pod_manifest(namespace, name)))
    plane.kubectl("wait", "--for=condition=Ready", "pod", "--all", "-n", namespace, "--timeout=120s")
    paths = {}
    for name in names:
        uid = plane.kubectl("get", "pod", name, "-n", namespace, "-o", "jsonpath={.metadata.uid}").stdout
        paths[name] = node.configmap_volume(uid, _VOLUME) / "..data"
    samples: list[Sample] = []
    start = time.monotonic()
    next_write = {name: start + random.uniform(0, spread) for name in names}  # noqa: S311 - timing
    written: dict[str, tuple[float, str, int]] = {}  # name -> (when, the link before, the value)
    done = dict.fromkeys(names, 0)
    try:
        while any(count < writes_per_pod for count in done.values()):
            now = time.monotonic()
            for name in names:
                if name in written:
                    when, before, value = written[name]
                    try:
                        current = os.readlink(paths[name])
                    except OSError:
                        continue  # between the kubelet's unlink and rename
                    if current != before and (paths[name].parent / "value").read_text() == str(value):
                        samples.append(Sample(name, now - when))
                        del written[name]
                        done[name] += 1
                        next_write[name] = now + random.uniform(0, spread)  # noqa: S311
                    elif now - when > timeout:
                        raise RuntimeError(f"{name}: no change within {timeout}s of a write")
                elif done[name] < writes_per_pod and now >= next_write[name]:
                    before = os.readlink(paths[name])
                    value = done[name] + 1
                    written[name] = (
                        _put_configmap(plane, context, namespace, name, str(value)),
                        before,
                        value,
                    )
            time.sleep(0.01)
    finally:
        plane.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
    return samples


def summary(samples: list[Sample]) -> dict[str, float]:
    """Count, median, p90, p99 (nearest rank) and maximum of the delays, in seconds."""
    values = sorted(s.seconds for s in samples)

    def rank(q: float) -> float:
        return values[min(len(values) - 1, max(0, round(q * len(values)) - 1))]

    return {
        "n": float(len(values)),
        "median": statistics.median(values),
        "p90": rank(0.90),
        "p99": rank(0.99),
        "max": values[-1],
    }
