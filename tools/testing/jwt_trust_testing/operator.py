"""Run the operator as a separate process against a control plane, as it runs in a cluster.

Why: the e2e tests and the demo must exercise the operator with the ServiceAccount and the RBAC the
Helm chart grants it (missing permissions must fail), through ``kopf run`` exactly as the container
does, and must be able to kill and restart it at will.

Standard library only (plus :mod:`jwt_trust_testing.cluster`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .chart import render_rbac
from .cluster import ControlPlane, ControlPlaneError, _free_ports, find_repo_root

NAMESPACE = "jwt-trust-system"
SERVICE_ACCOUNT = "jwt-trust"


def install(plane: ControlPlane, workdir: Path, *, rbac_yaml: str, namespace: str = NAMESPACE) -> Path:
    """Install the CRDs and the operator's ServiceAccount + RBAC; return a kubeconfig for that account."""
    plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(find_repo_root() / "crds"))
    plane.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    if plane.kubectl("get", "namespace", namespace, check=False).returncode != 0:
        plane.kubectl("create", "namespace", namespace)
    plane.kubectl("apply", "-f", "-", input=rbac_yaml)
    return plane.service_account_kubeconfig(namespace, SERVICE_ACCOUNT, workdir / "operator.kubeconfig")


@dataclass
class OperatorProcess:
    """One ``kopf run`` of the operator, logging to ``workdir/operator-<n>.log``."""

    plane: ControlPlane
    workdir: Path
    kubeconfig: Path
    peering: str | None = None
    priority: int = 0
    extra_env: dict[str, str] = field(default_factory=dict)
    metrics_port: int = 0
    liveness_port: int = 0
    process: subprocess.Popen[bytes] | None = None
    runs: int = 0

    @property
    def log_path(self) -> Path:
        return self.workdir / f"operator-{self.runs}.log"

    def logs(self) -> str:
        """Every run's log, concatenated (for assertions and for scanning for secrets)."""
        return "".join(
            (self.workdir / f"operator-{n}.log").read_text(errors="replace")
            for n in range(1, self.runs + 1)
            if (self.workdir / f"operator-{n}.log").exists()
        )

    def start(self, timeout: float = 60.0) -> None:
        self.metrics_port, self.liveness_port = _free_ports(2)
        self.runs += 1
        argv = [
            sys.executable,
            "-m",
            "kopf",
            "run",
            "--all-namespaces",
            "-m",
            "jwt_trust.kube.handlers",
            f"--liveness=http://127.0.0.1:{self.liveness_port}/healthz",
        ]
        argv += (
            [f"--peering={self.peering}", f"--priority={self.priority}"] if self.peering else ["--standalone"]
        )
        env = {
            **os.environ,
            **self.plane.env(),
            "KUBECONFIG": str(self.kubeconfig),
            "JWT_TRUST_METRICS_PORT": str(self.metrics_port),
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
        }
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ControlPlaneError(
                    f"operator exited with {self.process.returncode}:\n{self.log_path.read_text()[-3000:]}"
                )
            if self.healthy():
                return
            time.sleep(0.2)
        self.stop()
        raise ControlPlaneError(
            f"operator not live after {timeout:.0f}s:\n{self.log_path.read_text()[-3000:]}"
        )

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.liveness_port}/healthz", timeout=2
            ) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
            return str(response.read().decode())

    def writes(self, resource: str | None = None) -> float:
        """The operator's own count of the writes it sent (``jwt_trust_api_writes_total``), all
        resources or one (``configmaps``, ``issuers/status``, ...)."""
        labels = {} if resource is None else {"resource": resource}
        return metric_total(self.metrics(), "jwt_trust_api_writes_total", **labels)

    def kill(self) -> None:
        """SIGKILL, no clean-up: what a crash or an OOM kill does."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()


def chart_rbac(plane: ControlPlane, namespace: str = NAMESPACE, values: dict[str, Any] | None = None) -> str:
    """The operator's ServiceAccount and RBAC objects exactly as the Helm chart renders them (with
    ``values``, for example the consumers a test enables)."""
    return render_rbac(plane.bin_dir / "helm", namespace, SERVICE_ACCOUNT, values)


def dev_operator_up(state_dir: Path) -> OperatorProcess:
    """Install the CRDs and the chart's RBAC into the dev cluster and start the operator, detached.

    The operator runs as the chart's ServiceAccount; its pid and log are recorded in
    ``state_dir/operator.json`` so that :func:`dev_operator_down` can stop it from another command.
    """
    from .cluster import dev_up  # noqa: PLC0415 - a dev-only path

    dev_operator_down(state_dir)
    plane = dev_up(state_dir)
    workdir = Path(state_dir) / "operator"
    kubeconfig = install(plane, workdir, rbac_yaml=chart_rbac(plane))
    process = OperatorProcess(plane, workdir, kubeconfig)
    process.start()
    assert process.process is not None
    state = {"pid": process.process.pid, "log": str(process.log_path), "metrics_port": process.metrics_port}
    (Path(state_dir) / "operator.json").write_text(json.dumps(state) + "\n")
    return process


def dev_operator_down(state_dir: Path) -> None:
    """Stop the operator started by :func:`dev_operator_up`, if it still runs."""
    path = Path(state_dir) / "operator.json"
    if not path.is_file():
        return
    pid = int(json.loads(path.read_text())["pid"])
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            os.killpg(pid, 0)
            time.sleep(0.2)
        os.killpg(pid, signal.SIGKILL)
    path.unlink(missing_ok=True)


def metric_total(text: str, name: str, **labels: str) -> float:
    """The sum of a Prometheus metric's samples in exposition ``text`` that carry every given label."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total
