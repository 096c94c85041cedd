"""The chart and a workload on the local node: shared by tests/e2e/test_node.py and ``tools/demo.sh --node``.

- :func:`install_chart`: ``helm install`` of ``charts/jwt-trust`` with the image built by
  ``tools/image/build.sh`` (``localhost/jwt-trust:dev``, never pulled) into a namespace labelled for the
  restricted Pod Security profile, waiting until the release is ready;
- :func:`operator_pods`, :func:`active_replica` (kopf's peering: the live peer of highest priority) and
  :func:`replica_writes` (a replica's own count of API writes, from its metrics port: pods are reachable
  from the host on the node's bridge);
- :func:`start_verification_pods`: a signer pod that mounts an Issuer's Secret and a verifier pod that
  mounts a projected ConfigMap (the ``examples/workload.yaml`` shape: restricted, read-only root), both
  running the operator's image, which holds the library; :func:`mint` and :func:`verify` call them.

Standard library only (plus the harness).
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any, TypeVar

from .cluster import ControlPlane, ControlPlaneError, find_repo_root
from .operator import metric_total

__all__ = [
    "IMAGE",
    "RESTRICTED",
    "active_replica",
    "install_chart",
    "kubectl_json",
    "mint",
    "namespace",
    "operator_pods",
    "ready",
    "replica_writes",
    "start_verification_pods",
    "token_kid",
    "verify",
    "wait_for",
]

IMAGE = "localhost/jwt-trust:dev"
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}
_SELECTOR = "app.kubernetes.io/name=jwt-trust"
T = TypeVar("T")

# Runs in the operator's image: a signer minting from the mounted Secret (GET), or a verifier reading the
# mounted ConfigMap (POST a token), each answering JSON over HTTP on port 8000.
SERVER = r"""
import http.server, json, sys
from jwt_trust.errors import InvalidToken, NoActiveKey
mode, directory, audience = sys.argv[1:4]
if mode == "signer":
    from jwt_trust.signer import Signer
    signer = Signer.from_directory(directory, reload_interval=0.2)
else:
    from jwt_trust.verifier import TrustStore
    store = TrustStore.from_directory(directory, reload_interval=0.2)

class Handler(http.server.BaseHTTPRequestHandler):
    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        try:
            self.answer(200, {"token": signer.mint(subject="orders", audience=audience)})
        except NoActiveKey as error:
            self.answer(503, {"error": str(error)})

    def do_POST(self):
        token = self.rfile.read(int(self.headers["Content-Length"])).decode()
        try:
            claims = store.verify(token, audience=audience)
            self.answer(200, {"sub": claims["sub"]})
        except InvalidToken as error:
            self.answer(401, {"error": f"{type(error).__name__}: {error}"})

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("0.0.0.0", 8000), Handler).serve_forever()
"""


def kubectl_json(plane: ControlPlane, *args: str) -> Any:
    return json.loads(plane.kubectl(*args, "-o", "json").stdout)


def namespace(plane: ControlPlane, name: str, labels: dict[str, str]) -> None:
    plane.kubectl("create", "namespace", name)
    plane.kubectl("label", "namespace", name, *(f"{k}={v}" for k, v in labels.items()))


def wait_for(check: Callable[[], T], timeout: float, what: str, interval: float = 0.5) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise ControlPlaneError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def helm(plane: ControlPlane, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(plane.bin_dir / "helm"), *args], env=plane.env(), capture_output=True, text=True, check=False
    )


def install_chart(plane: ControlPlane, release_namespace: str, *extra: str) -> None:
    """``helm install jwt-trust charts/jwt-trust --wait`` with the local image, in a restricted namespace."""
    namespace(plane, release_namespace, RESTRICTED)
    repository, tag = IMAGE.rsplit(":", 1)
    result = helm(
        plane,
        "install",
        "jwt-trust",
        str(find_repo_root() / "charts" / "jwt-trust"),
        "-n",
        release_namespace,
        f"--set=image.repository={repository}",
        f"--set=image.tag={tag}",
        "--set=image.pullPolicy=Never",
        "--wait",
        "--timeout=5m",
        *extra,
    )
    if result.returncode != 0:
        described = plane.kubectl("describe", "pods", "-n", release_namespace, check=False).stdout
        logs = plane.kubectl("logs", "-n", release_namespace, "-l", _SELECTOR, "--tail=30", check=False)
        raise ControlPlaneError(
            f"helm install failed: {result.stderr}\n{described[-4000:]}\n{logs.stdout}{logs.stderr}"
        )


def operator_pods(plane: ControlPlane, release_namespace: str) -> list[dict[str, Any]]:
    """The operator's pods that are not being deleted."""
    pods = kubectl_json(plane, "get", "pods", "-n", release_namespace, "-l", _SELECTOR)
    return [p for p in pods["items"] if not p["metadata"].get("deletionTimestamp")]


def ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def active_replica(plane: ControlPlane, release_namespace: str, peering: str = "jwt-trust") -> str:
    """The pod whose live peering record has the highest priority: kopf pauses every other one."""
    status: dict[str, dict[str, Any]] = kubectl_json(plane, "get", "clusterkopfpeering", peering).get(
        "status", {}
    )
    pods = [p["metadata"]["name"] for p in operator_pods(plane, release_namespace)]
    ranked = sorted(
        ((info["priority"], name) for peer, info in status.items() for name in pods if name in peer),
        reverse=True,
    )
    if not ranked:
        raise ControlPlaneError(f"no replica in the peering status: {status}")
    return str(ranked[0][1])


def replica_writes(pod: dict[str, Any]) -> float:
    """The replica's own count of its API writes (``jwt_trust_api_writes_total``)."""
    url = f"http://{pod['status']['podIP']}:9090/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        return metric_total(response.read().decode(), "jwt_trust_api_writes_total")


def _server_pod(name: str, ns: str, mode: str, audience: str, volume: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
        "spec": {
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 1,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 10001,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "app",
                    "image": IMAGE,
                    "imagePullPolicy": "Never",
                    "command": ["python", "-c", SERVER, mode, "/etc/jwt-trust", audience],
                    "volumeMounts": [{"name": "jwt-trust", "mountPath": "/etc/jwt-trust", "readOnly": True}],
                    "readinessProbe": {"tcpSocket": {"port": 8000}, "periodSeconds": 1},
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
            "volumes": [{"name": "jwt-trust", **volume}],
        },
    }


def start_verification_pods(
    plane: ControlPlane,
    *,
    issuer_namespace: str,
    issuer: str,
    workload_namespace: str,
    configmap: str,
    audience: str,
) -> tuple[str, str]:
    """Start the signer (mounting the Issuer's ``<issuer>-signing-keys`` Secret) and the verifier (mounting
    ``configmap``); return their pod IPs."""
    pods = [
        _server_pod(
            "signer",
            issuer_namespace,
            "signer",
            audience,
            {"secret": {"secretName": f"{issuer}-signing-keys"}},
        ),
        _server_pod("verifier", workload_namespace, "verifier", audience, {"configMap": {"name": configmap}}),
    ]
    for pod in pods:
        plane.kubectl("apply", "-f", "-", input=json.dumps(pod))
    ips = []
    for pod in pods:
        name, ns = pod["metadata"]["name"], pod["metadata"]["namespace"]
        plane.kubectl("wait", "--for=condition=Ready", f"pod/{name}", "-n", ns, "--timeout=120s")
        ips.append(kubectl_json(plane, "get", "pod", name, "-n", ns)["status"]["podIP"])
    return ips[0], ips[1]


def _call(url: str, data: bytes | None = None) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, data=data, timeout=5) as response:  # noqa: S310 - a pod's IP
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def mint(signer_ip: str) -> str | None:
    """A token from the signer pod; None while it has no active key (a pause, not a failure)."""
    status, body = _call(f"http://{signer_ip}:8000/token")
    if status == 503:
        return None
    if status != 200:
        raise ControlPlaneError(f"signer answered {status}: {body}")
    return str(body["token"])


def verify(verifier_ip: str, token: str) -> str | None:
    """None when the verifier pod accepts ``token``, else its error."""
    status, body = _call(f"http://{verifier_ip}:8000/verify", data=token.encode())
    return None if status == 200 else str(body.get("error", body))


def token_kid(token: str) -> str:
    header = token.split(".", maxsplit=1)[0]
    return str(json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"])
