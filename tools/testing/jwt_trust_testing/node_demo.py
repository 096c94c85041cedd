"""``tools/demo.sh --node``: the full path on one real node, each step printed.

The operator's image built without Docker (tools/image/build.sh), a control plane with one kubelet node,
``helm install`` of the chart with that image under the restricted Pod Security profile, the examples
(an Issuer rotating every 20 seconds here), a signer pod minting from the mounted Secret and a workload
pod verifying from the mounted ConfigMap, the active replica deleted while tokens keep verifying, and
a clean stop. Root only (containerd, iptables). ``python -m jwt_trust_testing.node_demo``.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from .cluster import find_repo_root, start
from .incluster import (
    RESTRICTED,
    active_replica,
    install_chart,
    kubectl_json,
    mint,
    namespace,
    operator_pods,
    ready,
    start_verification_pods,
    token_kid,
    verify,
    wait_for,
)
from .node import NodeOptions, build_node_binaries, build_operator_image, leftovers

RELEASE_NS = "jwt-trust-system"
# The kubelet rewrites mounted ConfigMaps within about 1.5 x its sync period (2 s here): 10 s of
# propagation covers it with room. On a real cluster keep the example's 5m (docs: "Measured P").
ROTATION = {"every": "20s", "maxTokenLifetime": "15s", "propagation": "10s", "leeway": "1s", "margin": "3s"}


def step(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def main() -> int:
    repo = find_repo_root()
    step("1. node binaries (kubelet, kube-proxy, kube-scheduler; built once from Go modules, then cached)")
    print(build_node_binaries(repo))
    step("2. the operator image: a Debian bookworm base (mmdebstrap) + the Dockerfile built with buildah")
    started = time.monotonic()
    image = build_operator_image(repo)
    print(f"{image} ({time.monotonic() - started:.0f} s; cached by the content of its inputs)")
    with tempfile.TemporaryDirectory(prefix="jwt-trust-node-demo-") as tmp:
        step("3. control plane + one node (containerd/runc, CNI bridge, kube-proxy, kubelet)")
        plane = start(Path(tmp), node=NodeOptions(sync_frequency="2s"))
        try:
            assert plane.node is not None
            print(plane.kubectl("get", "nodes", "-o", "wide").stdout)
            plane.node.import_image(image)
            print(plane.node.ctr("images", "ls", "-q").stdout)

            step(f"4. helm install the chart with that image into {RELEASE_NS} (enforce=restricted)")
            install_chart(plane, RELEASE_NS)
            print(plane.kubectl("get", "pods,pdb", "-n", RELEASE_NS, "-o", "wide").stdout)
            print(f"active replica (kopf peering): {active_replica(plane, RELEASE_NS)}")

            step("5. the examples, rotating every 20 s; a signer and a workload pod mounting their copies")
            namespace(plane, "identity", RESTRICTED)
            namespace(plane, "orders", {**RESTRICTED, "jwt-trust.dev/trust": "orders-api"})
            issuer = (repo / "examples" / "issuer.yaml").read_text()
            for key, value in ROTATION.items():
                issuer = "\n".join(
                    f"{line.split(':')[0]}: {value}" if line.strip().startswith(f"{key}:") else line
                    for line in issuer.splitlines()
                )
            plane.kubectl("apply", "-f", "-", input=issuer)
            plane.kubectl("apply", "-f", str(repo / "examples" / "trustpolicy.yaml"))
            plane.kubectl(
                "wait", "--for=condition=Ready", "issuer/orders-issuer", "-n", "identity", "--timeout=120s"
            )
            signer, verifier = start_verification_pods(
                plane,
                issuer_namespace="identity",
                issuer="orders-issuer",
                workload_namespace="orders",
                configmap="orders-api-trust",
                audience="api://orders",
            )
            print(plane.kubectl("get", "pods", "-n", "identity", "-o", "wide").stdout)
            print(plane.kubectl("get", "pods", "-n", "orders", "-o", "wide").stdout)

            step(
                "6. tokens minted in the signer pod, verified in the workload pod; the active replica deleted"
            )
            active = active_replica(plane, RELEASE_NS)
            counts = {"verified": 0, "failed": 0, "paused": 0}
            kids: set[str] = set()
            started = time.monotonic()
            deleted = False
            while time.monotonic() - started < 70:
                if not deleted and time.monotonic() - started > 20:
                    print(f"deleting the active replica {active}", flush=True)
                    plane.kubectl("delete", "pod", active, "-n", RELEASE_NS, "--wait=false")
                    deleted = True
                token = mint(signer)
                if token is None:
                    counts["paused"] += 1
                elif (error := verify(verifier, token)) is None:
                    counts["verified"] += 1
                    if token_kid(token) not in kids:
                        kids.add(token_kid(token))
                        print(
                            f"{time.monotonic() - started:5.1f} s  signing with key {token_kid(token)[:12]}…"
                        )
                else:
                    counts["failed"] += 1
                    print(f"FAILED: {error}")
                time.sleep(0.2)
            wait_for(
                lambda: len(pods := operator_pods(plane, RELEASE_NS)) == 2 and all(map(ready, pods)),
                120,
                "two replicas again",
            )
            print(
                f"{counts}, {len(kids)} keys signed; active replica now {active_replica(plane, RELEASE_NS)}"
            )
            keys = kubectl_json(plane, "get", "issuer", "orders-issuer", "-n", "identity")["status"]["keys"]
            print(f"the Issuer's keys now: {[k['kid'][:12] for k in keys]}")
            if counts["failed"]:
                return 1
        finally:
            step("7. stop: drain the node, stop every process, check that nothing is left")
            plane.stop()
            assert plane.node is not None
            left = leftovers(plane.node.workdir, plane.network)
            print("nothing left behind" if not left else f"LEFT BEHIND: {left}")
    step("done: the chart's pods ran the locally built image; a workload verified from its mounted ConfigMap")
    return 0


if __name__ == "__main__":
    sys.exit(main())
