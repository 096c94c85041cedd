"""Helpers of the operator's end-to-end tests: kubectl in JSON, polling, and object builders."""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from jwt_trust.testing.cluster import ControlPlane
from jwt_trust.testing.operator import chart_rbac

T = TypeVar("T")


def operator_rbac(plane: ControlPlane) -> str:
    """The ServiceAccount and RBAC objects exactly as the Helm chart renders them."""
    override = os.environ.get("JWT_TRUST_TEST_RBAC")  # only while the chart is being written
    return Path(override).read_text() if override else chart_rbac(plane)


def wait_for(
    check: Callable[[], T | None], *, timeout: float = 30.0, interval: float = 0.2, what: str = ""
) -> T:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what or check!r} (last: {last!r})")


class Kube:
    """Small conveniences over the control plane's kubectl, all JSON."""

    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane

    def apply(self, *objects: dict[str, Any]) -> None:
        self.plane.kubectl(
            "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)})
        )

    def try_apply(self, obj: dict[str, Any]) -> tuple[int, str]:
        result = self.plane.kubectl("apply", "-f", "-", input=json.dumps(obj), check=False)
        return result.returncode, result.stderr

    def get(self, *args: str) -> dict[str, Any] | None:
        result = self.plane.kubectl("get", *args, "-o", "json", check=False)
        if result.returncode != 0:
            if "NotFound" in result.stderr or "not found" in result.stderr:
                return None
            raise AssertionError(result.stderr)
        document: dict[str, Any] = json.loads(result.stdout)
        return document

    def configmap(self, namespace: str, name: str) -> dict[str, bytes] | None:
        obj = self.get("configmap", name, "-n", namespace)
        return None if obj is None else {k: v.encode() for k, v in (obj.get("data") or {}).items()}

    def secret(self, namespace: str, name: str) -> dict[str, bytes] | None:
        obj = self.get("secret", name, "-n", namespace)
        return None if obj is None else {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}

    def condition(self, *args: str) -> dict[str, Any] | None:
        obj = self.get(*args)
        conditions = ((obj or {}).get("status") or {}).get("conditions") or []
        return next((c for c in conditions if c.get("type") == "Ready"), None)

    def events(self, namespace: str, name: str) -> list[dict[str, Any]]:
        listing = self.get("events", "-n", namespace, "--field-selector", f"involvedObject.name={name}") or {}
        return list(listing.get("items") or [])

    def namespace(self, labels: dict[str, str] | None = None) -> str:
        name = f"e2e-{uuid.uuid4().hex[:10]}"
        self.apply(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels or {}}}
        )
        return name


def issuer(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"issuer": f"https://{name}.{namespace}.example"}
    body.update(spec)
    return {
        "apiVersion": "jwt-trust.dev/v1alpha1",
        "kind": "Issuer",
        "metadata": {"name": name, "namespace": namespace},
        "spec": body,
    }


def policy(name: str, issuers: list[tuple[str, str]], labels: dict[str, str], **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "issuers": [{"namespace": ns, "name": n} for ns, n in issuers],
        "namespaceSelector": {"matchLabels": labels},
    }
    body.update(spec)
    return {
        "apiVersion": "jwt-trust.dev/v1alpha1",
        "kind": "TrustPolicy",
        "metadata": {"name": name},
        "spec": body,
    }


FAST_ROTATION = {"every": "6s", "maxTokenLifetime": "4s", "propagation": "2s", "leeway": "1s", "margin": "2s"}
