"""The operator's image and Helm chart on a real node, and a workload verifying from the mounted files.

What only a kubelet can prove: the image built from the Dockerfile (tools/image/build.sh: a Debian base
made here, buildah, no Docker, no registry) starts under the chart as two replicas, Ready, under the
restricted Pod Security profile, with one active peer and a PodDisruptionBudget; when the active pod
is deleted the standby takes over and rotation continues; a workload pod that mounts the projected
ConfigMap (the examples/workload.yaml shape) verifies, with the library, tokens that a signer pod mints
from the mounted Secret, without a single failure across rotations; and the kubelet's own delay P
between a ConfigMap write and the files in a pod.

One control plane with one node (``start(..., node=...)``) serves the module, with the kubelet's sync
period tuned to :data:`SYNC` so that rotations can run every few seconds. Needs root and the node's
Debian packages (tools/node/packages.sh, run by tools/test.sh); ``JWT_TRUST_SKIP_NODE=1`` deselects
the module on a machine that cannot run a kubelet.
"""

from __future__ import annotations

import contextlib
import json
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime

import pytest

from jwt_trust_testing.cluster import ControlPlane, find_repo_root, start
from jwt_trust_testing.incluster import (
    IMAGE,
    RESTRICTED,
    active_replica,
    install_chart,
    kubectl_json,
    mint,
    namespace,
    operator_pods,
    ready,
    replica_writes,
    start_verification_pods,
    token_kid,
    verify,
    wait_for,
)
from jwt_trust_testing.node import NodeOptions, build_operator_image, leftovers, missing_requirements
from jwt_trust_testing.propagation import measure, summary

pytestmark = [pytest.mark.e2e, pytest.mark.node]

SYNC = "2s"  # the kubelet's syncFrequency here (its default is 1m)
RELEASE_NS = "jwt-trust-system"
ISSUER_NS = "node-identity"
WORKLOAD_NS = "node-orders"
AUDIENCE = "api://orders"
# P covers the tuned kubelet's worst measured delay (about 1.5 x SYNC, plus the write) with room.
ROTATION = {"every": "8s", "maxTokenLifetime": "6s", "propagation": "6s", "leeway": "1s", "margin": "2s"}


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    problems = missing_requirements()
    assert not problems, f"a node cannot run here: {problems} (tools/node/packages.sh; JWT_TRUST_SKIP_NODE=1)"
    started = time.monotonic()
    image = build_operator_image(find_repo_root())
    plane = start(tmp_path_factory.mktemp("node-plane"), node=NodeOptions(sync_frequency=SYNC))
    try:
        assert plane.node is not None
        plane.node.import_image(image)
        print(f"\nimage (cached) + control plane + node + image import: {time.monotonic() - started:.1f} s")
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="module")
def chart(plane: ControlPlane) -> str:
    started = time.monotonic()
    install_chart(plane, RELEASE_NS)
    print(f"\nhelm install --wait: {time.monotonic() - started:.1f} s")
    return RELEASE_NS


def two_ready_replicas(plane: ControlPlane) -> list[dict[str, object]]:
    pods = operator_pods(plane, RELEASE_NS)
    return pods if len(pods) == 2 and all(map(ready, pods)) else []


def test_the_chart_runs_two_ready_replicas_under_the_restricted_profile(
    plane: ControlPlane, chart: str
) -> None:
    labels = kubectl_json(plane, "get", "namespace", chart)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    pods = wait_for(lambda: two_ready_replicas(plane), 120, "two Ready replicas")
    for pod in kubectl_json(plane, "get", "pods", "-n", chart)["items"]:
        assert pod["spec"]["containers"][0]["image"] == IMAGE
        status = pod["status"]["containerStatuses"][0]
        assert status["ready"], status
        assert status["restartCount"] == 0, status
    for pod in pods:
        # The probes' endpoint, called as the kubelet calls it.
        url = f"http://{pod['status']['podIP']}:8080/healthz"  # type: ignore[index]
        with urllib.request.urlopen(url, timeout=5) as response:
            assert response.status == 200
    # Peering: both replicas registered, with different priorities (exactly one is the highest).
    peering = kubectl_json(plane, "get", "clusterkopfpeering", "jwt-trust").get("status", {})
    assert len(peering) == 2, peering
    assert len({info["priority"] for info in peering.values()}) == 2, peering
    pdb = wait_for(
        lambda: [
            b
            for b in kubectl_json(plane, "get", "pdb", "-n", chart)["items"]
            if b.get("status", {}).get("currentHealthy") == 2
        ],
        60,
        "the PodDisruptionBudget to count both replicas",
    )[0]
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["status"]["disruptionsAllowed"] == 1
    # The namespace's profile is enforced: a privileged pod is refused.
    overrides = {
        "spec": {"containers": [{"name": "p", "image": IMAGE, "securityContext": {"privileged": True}}]}
    }
    refused = plane.kubectl(
        "run", "p", "-n", chart, f"--image={IMAGE}", "--overrides", json.dumps(overrides), check=False
    )
    assert refused.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in refused.stderr, refused.stderr


def example_issuer_and_policy() -> str:
    """examples/issuer.yaml and trustpolicy.yaml, moved to this module's namespace, rotating in seconds."""
    repo = find_repo_root()
    lines = []
    for line in (repo / "examples" / "issuer.yaml").read_text().splitlines():
        key = line.strip().split(":")[0]
        lines.append(f"{line.split(':')[0]}: {ROTATION[key]}" if key in ROTATION else line)
    documents = ["\n".join(lines), (repo / "examples" / "trustpolicy.yaml").read_text()]
    return "\n---\n".join(documents).replace("namespace: identity", f"namespace: {ISSUER_NS}")


def resumed_after(plane: ControlPlane, chart: str, since: float, exclude: str) -> tuple[str, float]:
    """The first replica (other than ``exclude``) whose log says kopf resumed after ``since``, and when.

    Read with ``kubectl logs``: the API server reaches the kubelet with its client certificate."""
    found: list[tuple[float, str]] = []
    for pod in operator_pods(plane, chart):
        name = pod["metadata"]["name"]
        if name == exclude:
            continue
        for line in plane.kubectl("logs", "-n", chart, name).stdout.splitlines():
            with contextlib.suppress(ValueError, KeyError):
                entry = json.loads(line)
                when = datetime.fromisoformat(entry["timestamp"]).timestamp()
                if entry["message"].startswith("Resuming operations") and when > since:
                    found.append((when, name))
    assert found, "no replica resumed after the deletion"
    when, name = min(found)
    return name, when


def test_a_workload_verifies_every_token_across_rotations_and_a_failover(
    plane: ControlPlane, chart: str
) -> None:
    namespace(plane, ISSUER_NS, RESTRICTED)
    namespace(plane, WORKLOAD_NS, {**RESTRICTED, "jwt-trust.dev/trust": "orders-api"})
    plane.kubectl("apply", "-f", "-", input=example_issuer_and_policy())
    rotation = kubectl_json(plane, "get", "issuer", "orders-issuer", "-n", ISSUER_NS)["spec"]["rotation"]
    assert rotation["every"] == ROTATION["every"], rotation
    plane.kubectl("wait", "--for=condition=Ready", "issuer/orders-issuer", "-n", ISSUER_NS, "--timeout=90s")
    signer, verifier = start_verification_pods(
        plane,
        issuer_namespace=ISSUER_NS,
        issuer="orders-issuer",
        workload_namespace=WORKLOAD_NS,
        configmap="orders-api-trust",
        audience=AUDIENCE,
    )
    # Exactly one replica works: only the active one writes.
    pods = {p["metadata"]["name"]: p for p in operator_pods(plane, chart)}
    active = active_replica(plane, chart)
    standby = next(name for name in pods if name != active)
    assert replica_writes(pods[active]) > 0
    assert replica_writes(pods[standby]) == 0

    verified, paused, failures, kids = 0, 0, [], set()
    deleted_at = deleted_wall = takeover = next_look = 0.0
    taken_by = ""
    started = time.monotonic()
    while time.monotonic() - started < 60:
        if not deleted_at and time.monotonic() - started > 15:
            plane.kubectl("delete", "pod", active, "-n", chart, "--wait=false")
            deleted_at, deleted_wall = time.monotonic(), time.time()
        if deleted_at and not takeover and time.monotonic() >= next_look:
            # The standby takes over, unless the Deployment's replacement joins first with a higher
            # priority: either way, one of the others starts writing.
            next_look = time.monotonic() + 0.5
            for pod in operator_pods(plane, chart):
                name = pod["metadata"]["name"]
                if name == active or not pod["status"].get("podIP"):
                    continue
                with contextlib.suppress(OSError):  # a replacement still starting: nothing listens yet
                    if replica_writes(pod) > 0:
                        takeover, taken_by = time.monotonic() - deleted_at, name
        token = mint(signer)
        if token is None:
            paused += 1
        elif (error := verify(verifier, token)) is None:
            verified += 1
            kids.add(token_kid(token))
        else:
            failures.append(error)
        time.sleep(0.1)
    keys = kubectl_json(plane, "get", "issuer", "orders-issuer", "-n", ISSUER_NS)["status"]["keys"]
    created_after = [
        k
        for k in keys
        if datetime.fromisoformat(k["createdAt"].replace("Z", "+00:00")).timestamp() > deleted_wall
    ]
    resumed = resumed_after(plane, chart, deleted_wall, exclude=active)
    print(
        f"\nverified {verified}, failures {len(failures)}, paused {paused}, keys that signed {len(kids)}, "
        f"another replica resumed {resumed[1] - deleted_wall:.2f} s after the deletion ({resumed[0]}), "
        f"first write by another replica ({'the standby' if taken_by == standby else 'its replacement'}) "
        f"{takeover:.1f} s after the deletion, keys created since {len(created_after)}"
    )
    assert failures == [], failures[:5]
    assert paused == 0
    assert len(kids) >= 6, f"tokens of {len(kids)} keys: fewer than 5 rotations"
    assert takeover > 0, "no other replica wrote after the active replica was deleted"
    assert resumed[0] == standby, "the standby did not resume first"
    assert resumed[1] - deleted_wall < 5, "the standby resumed late: was the peering record left behind?"
    assert len(created_after) >= 2, keys
    # The Deployment replaced the deleted pod: two Ready replicas again, the deleted one not among them.
    wait_for(lambda: two_ready_replicas(plane), 120, "two Ready replicas again")
    assert active not in {p["metadata"]["name"] for p in operator_pods(plane, chart)}


def test_propagation_delay_of_the_tuned_kubelet(plane: ControlPlane) -> None:
    samples = measure(plane, namespace="node-propagation", pods=5, writes_per_pod=4, spread=3.0)
    stats = summary(samples)
    print(f"\nP with syncFrequency {SYNC}: {json.dumps({k: round(v, 2) for k, v in stats.items()})}")
    assert stats["n"] == 20
    # The kubelet rewrites a pod's volumes on the pod's next sync, at most 1.5 x syncFrequency later
    # (its jitter), plus the write itself: well inside the propagation the rotation test relies on.
    assert stats["max"] < 2 * 1.5 + 2
    assert stats["max"] < int(ROTATION["propagation"].rstrip("s"))


def test_stopping_leaves_nothing_on_the_machine(plane: ControlPlane) -> None:
    node = plane.node
    assert node is not None
    assert plane.network is not None
    plane.stop()
    assert leftovers(node.workdir, plane.network) == []
