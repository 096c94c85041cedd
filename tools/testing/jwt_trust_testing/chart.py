"""Render the repository's Helm chart with ``helm template``, for tests and the dev cluster.

Why: the operator's e2e tests must run it under exactly the ServiceAccount and RBAC that the chart
grants (never a hand-written copy), so that a permission the chart lacks fails a test. This module is
the one place that knows how to render those objects.

Guarantees: :func:`render_rbac` returns only the ServiceAccount and the RBAC objects (ClusterRole,
ClusterRoleBinding, and the per-namespace Roles and RoleBindings when ``secretNamespaces`` is set),
as multi-document YAML ready for ``kubectl apply -f -``. Values are passed as a file, never through
``--set``, so no value needs escaping. Standard library only.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

RELEASE = "jwt-trust"
RBAC_TEMPLATES = ("templates/serviceaccount.yaml", "templates/rbac.yaml")


class ChartError(RuntimeError):
    """``helm`` failed, or the chart cannot be found."""


def find_chart() -> Path:
    """``charts/jwt-trust`` of the source checkout this module was imported from, else above the cwd."""
    here = Path(__file__).resolve()
    for start in (here.parents[3], Path.cwd()):
        for candidate in (start, *start.parents):
            chart = candidate / "charts" / "jwt-trust"
            if (chart / "Chart.yaml").is_file():
                return chart
    raise ChartError(f"cannot find charts/jwt-trust above {here.parents[3]} or {Path.cwd()}")


def render(
    helm: Path,
    *,
    namespace: str,
    values: Mapping[str, Any] | None = None,
    show_only: Sequence[str] = (),
    release: str = RELEASE,
    chart: Path | None = None,
) -> str:
    """``helm template`` of the chart as release ``release`` in ``namespace``; raise on any helm error."""
    with tempfile.TemporaryDirectory(prefix="jwt-trust-chart-") as tmp:
        values_file = Path(tmp) / "values.json"  # JSON is YAML: helm reads it as a values file
        values_file.write_text(json.dumps(dict(values or {})))
        argv = [
            str(helm),
            "template",
            release,
            str(chart if chart is not None else find_chart()),
            "--namespace",
            namespace,
            "--values",
            str(values_file),
        ]
        for template in show_only:
            argv += ["--show-only", template]
        result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
    if result.returncode != 0:
        raise ChartError(f"helm template failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout


def render_rbac(
    helm: Path, namespace: str, service_account: str, values: dict[str, Any] | None = None
) -> str:
    """The operator's ServiceAccount ``namespace/service_account`` and its RBAC objects, as YAML."""
    merged = dict(values or {})
    merged["serviceAccount"] = {**merged.get("serviceAccount", {}), "create": True, "name": service_account}
    merged["rbac"] = {**merged.get("rbac", {}), "create": True}
    return render(helm, namespace=namespace, values=merged, show_only=RBAC_TEMPLATES)
