"""The test control plane behaves like a real cluster in the ways the operator relies on.

If one of these fails, the operator's own e2e tests would fail for reasons unrelated to the operator:
CRD schema validation, server-side apply, RBAC with TokenRequest tokens, and the two controllers
(namespace deletion, garbage collection) that only kube-controller-manager provides. The last two
tests cover the harness itself: the CLI's dev cluster lifecycle, and a failed start cleaning up.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from jwt_trust_testing.cluster import ControlPlane, ControlPlaneError, dev_down, dev_env, dev_up, start

pytestmark = pytest.mark.e2e

WIDGET_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.e2e.jwt-trust.dev
spec:
  group: e2e.jwt-trust.dev
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, listKind: WidgetList}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              required: [size]
              properties:
                size: {type: integer, minimum: 1, maximum: 10}
                colour: {type: string, enum: [red, green]}
"""


def widget(namespace: str, name: str, size: int) -> str:
    return json.dumps(
        {
            "apiVersion": "e2e.jwt-trust.dev/v1",
            "kind": "Widget",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"size": size, "colour": "green"},
        }
    )


def get_json(plane: ControlPlane, *args: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(plane.kubectl("get", *args, "-o", "json").stdout)
    return result


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(1)
    return condition()


def is_gone(plane: ControlPlane, *args: str) -> bool:
    result = plane.kubectl("get", *args, check=False)
    return result.returncode != 0 and "NotFound" in result.stderr


@pytest.fixture(scope="module")
def widget_crd(control_plane: ControlPlane) -> str:
    control_plane.kubectl("apply", "-f", "-", input=WIDGET_CRD)
    control_plane.kubectl(
        "wait", "--for=condition=Established", "crd/widgets.e2e.jwt-trust.dev", "--timeout=60s"
    )
    return "widgets.e2e.jwt-trust.dev"


def test_applies_a_custom_resource_definition_and_a_custom_resource_of_it(
    control_plane: ControlPlane, widget_crd: str, unique_namespace: str
) -> None:
    control_plane.kubectl("apply", "-f", "-", input=widget(unique_namespace, "small", 3))

    stored = get_json(control_plane, widget_crd, "small", "-n", unique_namespace)

    assert stored["spec"] == {"size": 3, "colour": "green"}
    assert stored["metadata"]["uid"]


def test_refuses_a_custom_resource_that_violates_the_schema_with_the_api_servers_message(
    control_plane: ControlPlane, widget_crd: str, unique_namespace: str
) -> None:
    result = control_plane.kubectl(
        "apply", "-f", "-", input=widget(unique_namespace, "huge", 99), check=False
    )

    assert result.returncode != 0
    assert "spec.size" in result.stderr
    assert "should be less than or equal to 10" in result.stderr
    assert is_gone(control_plane, widget_crd, "huge", "-n", unique_namespace)


def test_server_side_apply_records_the_field_manager_and_reports_conflicts(
    control_plane: ControlPlane, unique_namespace: str
) -> None:
    def config_map(value: str) -> str:
        return json.dumps(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "applied", "namespace": unique_namespace},
                "data": {"key": value},
            }
        )

    control_plane.kubectl(
        "apply", "--server-side", "--field-manager=jwt-trust-e2e", "-f", "-", input=config_map("one")
    )
    stored = get_json(control_plane, "configmap", "applied", "-n", unique_namespace, "--show-managed-fields")
    conflict = control_plane.kubectl(
        "apply",
        "--server-side",
        "--field-manager=someone-else",
        "-f",
        "-",
        input=config_map("two"),
        check=False,
    )

    managers = {(entry["manager"], entry["operation"]) for entry in stored["metadata"]["managedFields"]}
    assert ("jwt-trust-e2e", "Apply") in managers
    assert conflict.returncode != 0
    assert "conflict" in conflict.stderr.lower()


def test_deleting_a_namespace_completes_within_a_minute(control_plane: ControlPlane) -> None:
    namespace = f"e2e-doomed-{uuid.uuid4().hex[:8]}"
    control_plane.kubectl("create", "namespace", namespace)
    control_plane.kubectl("create", "configmap", "content", "-n", namespace, "--from-literal=a=b")

    control_plane.kubectl("delete", "namespace", namespace, "--wait=false")

    assert wait_until(lambda: is_gone(control_plane, "namespace", namespace), timeout=60)


def test_garbage_collects_an_owned_config_map_after_its_owner_is_deleted(
    control_plane: ControlPlane, unique_namespace: str
) -> None:
    control_plane.kubectl("create", "configmap", "owner", "-n", unique_namespace)
    owner_uid = get_json(control_plane, "configmap", "owner", "-n", unique_namespace)["metadata"]["uid"]
    child = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "child",
            "namespace": unique_namespace,
            "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner_uid}],
        },
    }
    control_plane.kubectl("apply", "-f", "-", input=json.dumps(child))
    assert not is_gone(control_plane, "configmap", "child", "-n", unique_namespace)

    control_plane.kubectl("delete", "configmap", "owner", "-n", unique_namespace)

    assert wait_until(
        lambda: is_gone(control_plane, "configmap", "child", "-n", unique_namespace), timeout=90
    )


def test_a_service_account_with_a_narrow_role_lists_config_maps_but_is_forbidden_secrets(
    control_plane: ControlPlane, unique_namespace: str, tmp_path: Path
) -> None:
    ns = ("-n", unique_namespace)
    control_plane.kubectl("create", "role", "read-config", "--verb=get,list", "--resource=configmaps", *ns)
    control_plane.kubectl(
        "create",
        "rolebinding",
        "read-config",
        "--role=read-config",
        f"--serviceaccount={unique_namespace}:reader",
        *ns,
    )
    control_plane.kubectl("create", "configmap", "visible", "--from-literal=a=b", *ns)
    kubeconfig = control_plane.service_account_kubeconfig(
        unique_namespace, "reader", tmp_path / "sa.kubeconfig"
    )

    allowed = control_plane.kubectl("get", "configmaps", "-o", "name", *ns, kubeconfig=kubeconfig)
    denied = control_plane.kubectl("get", "secrets", *ns, kubeconfig=kubeconfig, check=False)

    assert "configmap/visible" in allowed.stdout.split()
    assert denied.returncode != 0
    assert "Forbidden" in denied.stderr
    assert f"system:serviceaccount:{unique_namespace}:reader" in denied.stderr


def test_dev_cluster_is_reused_while_healthy_and_leaves_no_process_after_down(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    state_dir = tmp_path / "dev"
    first = dev_up(state_dir)
    try:
        again = dev_up(state_dir)
        namespaces = first.kubectl("get", "namespaces", "-o", "name").stdout.split()
        env_lines = dev_env(state_dir)
    finally:
        dev_down(state_dir)

    assert again.pids == first.pids
    assert "namespace/default" in namespaces
    assert f"export KUBECONFIG={first.kubeconfig}" in env_lines
    assert f"export PATH={control_plane.bin_dir}:$PATH" in env_lines
    assert not (state_dir / "state.json").exists()
    assert not [pid for pid in first.pids if _alive(pid)]


def test_a_failed_start_raises_with_the_log_tail_and_stops_what_it_started(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    # Real etcd and kube-apiserver, but a kube-controller-manager that dies at once.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("etcd", "kube-apiserver", "kubectl"):
        (bin_dir / name).symlink_to(control_plane.bin_dir / name)
    broken = bin_dir / "kube-controller-manager"
    broken.write_text("#!/bin/sh\necho 'controller manager refuses to run' >&2\nexit 3\n")
    broken.chmod(0o755)
    workdir = tmp_path / "cluster"

    with pytest.raises(ControlPlaneError, match="controller manager refuses to run"):
        start(workdir, bin_dir=bin_dir, timeout=60)

    assert not [pid for pid in _pids_running_from(bin_dir) if _alive(pid)]
    assert not (workdir / "etcd-data").exists()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def _pids_running_from(bin_dir: Path) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if cmdline.startswith(str(bin_dir).encode()):
                pids.append(int(proc.name))
    return pids
