"""The discovery service end to end: the real process (``python -m jwt_trust.kube.discovery``) against
the real API server, as a ServiceAccount that may only read Issuers, next to the operator.

The HTTP rules on their own (304, HEAD, 405, limits, TLS reload, exit codes) are in
tests/unit/test_discovery.py.
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support import FAST_ROTATION, Kube, issuer, wait_for

from jwt_trust.kube.discovery_documents import served_kids
from jwt_trust.kube.policies import issuer_trust
from jwt_trust_testing.cluster import _free_ports
from jwt_trust_testing.https import certificates
from jwt_trust_testing.operator import OperatorProcess

pytestmark = pytest.mark.e2e

READ_ISSUERS = """
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: jwt-trust-discovery-e2e}
rules:
  - apiGroups: [jwt-trust.dev]
    resources: [issuers]
    verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: jwt-trust-discovery-e2e}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: jwt-trust-discovery-e2e}
subjects: [{kind: ServiceAccount, name: discovery, namespace: NAMESPACE}]
"""


@dataclass
class Discovery:
    url: str
    context: ssl.SSLContext
    process: subprocess.Popen[bytes]
    log: Path

    def get(self, path: str) -> tuple[int, bytes, dict[str, str]]:
        try:
            with urllib.request.urlopen(self.url + path, context=self.context, timeout=10) as response:  # noqa: S310
                return response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as error:
            return error.code, error.read(), dict(error.headers)


@pytest.fixture
def discovery(kube: Kube, tmp_path: Path) -> Iterator[Discovery]:
    namespace = kube.namespace()
    kube.plane.kubectl("apply", "-f", "-", input=READ_ISSUERS.replace("NAMESPACE", namespace))
    kubeconfig = kube.plane.service_account_kubeconfig(
        namespace, "discovery", tmp_path / "discovery.kubeconfig"
    )
    ca, cert, key = certificates()
    (tmp_path / "tls.crt").write_bytes(cert)
    (tmp_path / "tls.key").write_bytes(key)
    (port,) = _free_ports(1)
    url = f"https://127.0.0.1:{port}"
    log = tmp_path / "discovery.log"
    argv = [
        sys.executable, "-m", "jwt_trust.kube.discovery",
        "--url", url, "--host", "127.0.0.1", "--port", str(port),
        "--tls-cert", str(tmp_path / "tls.crt"), "--tls-key", str(tmp_path / "tls.key"),
        "--kubeconfig", str(kubeconfig),
    ]  # fmt: skip
    with log.open("wb") as output:
        process = subprocess.Popen(
            argv, stdout=output, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        )
    service = Discovery(url, ssl.create_default_context(cadata=ca.decode()), process, log)
    try:

        def ready() -> bool:
            assert process.poll() is None, log.read_text()
            try:
                return service.get("/readyz")[0] == 200
            except OSError:
                return False

        wait_for(ready, timeout=60, what="the discovery service ready")
        yield service
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        kube.plane.kubectl("delete", "clusterrolebinding,clusterrole", "jwt-trust-discovery-e2e", check=False)


def _published(kube: Kube, namespace: str, name: str) -> tuple[str, ...]:
    """The kids a TrustPolicy would publish for the Issuer right now."""
    body = kube.get("issuer", name, "-n", namespace) or {}
    trust = issuer_trust(f"{namespace}/{name}", body, 0)
    return tuple(sorted(k["kid"] for k in trust.keys)) if trust else ()


def _served(service: Discovery, namespace: str, name: str) -> tuple[str, ...] | None:
    status, body, _ = service.get(f"/issuers/{namespace}/{name}/jwks")
    return served_kids(body) if status == 200 else None


def test_an_opted_in_issuer_is_served_and_followed_and_others_are_not(
    operator: OperatorProcess, kube: Kube, discovery: Discovery
) -> None:
    ns = kube.namespace()
    kube.apply(
        issuer(ns, "served", rotation=FAST_ROTATION, discovery={"enabled": True}),
        issuer(ns, "hidden", rotation=FAST_ROTATION),
    )
    kube.plane.kubectl("wait", "--for=condition=Ready", "issuer/hidden", "-n", ns, "--timeout=60s")
    # The suite's operator is not set up to reach a discovery service: an Issuer that opts in keeps its
    # first key unpublished (the service is a publication target) and says why. The service serves
    # the key all the same, as it serves every key in the status.
    waiting = wait_for(
        lambda: (
            (c := kube.condition("issuer", "served", "-n", ns)) and c["reason"] == "AwaitingPublication" and c
        ),
        timeout=60,
        what="the opted-in Issuer waiting for the discovery service",
    )
    assert "discovery.enabled" in waiting["message"]

    def in_step() -> tuple[str, ...] | None:
        served, published = _served(discovery, ns, "served"), _published(kube, ns, "served")
        return served if served and served == published else None

    first = wait_for(in_step, timeout=30, what="the served JWKS equal to the published keys")
    status, body, headers = discovery.get(f"/issuers/{ns}/served/.well-known/openid-configuration")
    assert status == 200
    configuration: dict[str, Any] = json.loads(body)
    assert configuration["issuer"] == f"https://served.{ns}.example"
    assert configuration["jwks_uri"] == f"{discovery.url}/issuers/{ns}/served/jwks"
    assert headers["Cache-Control"] == "public, max-age=1"  # half of FAST_ROTATION's 2 s propagation
    for path in (f"/issuers/{ns}/hidden/jwks", f"/issuers/{ns}/hidden/.well-known/openid-configuration"):
        assert discovery.get(path)[0] == 404

    # Rotation through the service's gate, with a replica set the operator reaches, is covered by
    # test_api_server_authentication.py.

    # A revoked kid leaves the served set (from the spec, like every policy's projection).
    revoked = _served(discovery, ns, "served")
    assert revoked
    kube.plane.kubectl(
        "patch",
        "issuer",
        "served",
        "-n",
        ns,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"revokedKeys": [revoked[0]]}}),
    )
    wait_for(
        lambda: (kids := _served(discovery, ns, "served")) is not None and revoked[0] not in kids,
        timeout=30,
        what="the revoked kid withdrawn",
    )
    # The key generated in its place is served as soon as it is in the status.
    wait_for(
        lambda: (kids := in_step()) is not None and set(kids) - set(first),
        timeout=30,
        what="the new key served",
    )

    # Opting out withdraws the documents; opting the other one in serves it.
    kube.plane.kubectl(
        "patch",
        "issuer",
        "served",
        "-n",
        ns,
        "--type=merge",
        "-p",
        '{"spec":{"discovery":{"enabled":false}}}',
    )
    kube.plane.kubectl(
        "patch", "issuer", "hidden", "-n", ns, "--type=merge", "-p", '{"spec":{"discovery":{"enabled":true}}}'
    )
    wait_for(lambda: discovery.get(f"/issuers/{ns}/served/jwks")[0] == 404, timeout=30, what="opted out")
    wait_for(lambda: _served(discovery, ns, "hidden"), timeout=30, what="opted in")

    discovery.process.send_signal(signal.SIGTERM)
    assert discovery.process.wait(timeout=30) == 0
    log = discovery.log.read_text()
    assert "BEGIN" not in log  # no key material
    assert "Traceback" not in log
    assert "ERROR" not in log
