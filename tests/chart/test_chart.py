"""The Helm chart installs a working, locked-down operator, and refuses bad values.

Why: users install the operator with this chart, and the e2e tests run the operator under the chart's
ServiceAccount and RBAC. These tests hold the chart to its contract: `helm lint --strict` is clean;
the rendered objects are what the operator needs (peering, probes on kopf's liveness endpoint, the
restricted Pod Security profile, least-privilege RBAC, Secret access scoped by `secretNamespaces`);
`values.schema.json` rejects bad values with a schema message; the chart's CRDs are exact copies of
`crds/`. The `e2e` tests validate the manifests against the real Kubernetes API server
(`kubectl apply --dry-run=server`), check the pod is admitted under `enforce=restricted`, and
`helm install` into the test control plane (it has no kubelet: the objects exist, Pods never run).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from jwt_trust_testing.chart import find_chart, render, render_rbac
from jwt_trust_testing.cluster import ControlPlane, build_binaries

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "jwt-trust"
NAMESPACE = "jwt-trust-system"

# The operator's permissions (docs/architecture.md). A change to the chart's ClusterRole
# must be deliberate: it changes what the operator may do in every cluster.
OPERATOR_RULES = [
    (["jwt-trust.dev"], ["issuers", "trustpolicies"], ["get", "list", "watch", "patch"]),
    (["jwt-trust.dev"], ["issuers/status", "trustpolicies/status"], ["get", "patch"]),
    ([""], ["namespaces"], ["get", "list", "watch"]),
    ([""], ["configmaps"], ["get", "list", "watch", "create", "patch", "delete"]),
    ([""], ["events"], ["create", "patch"]),
    (["events.k8s.io"], ["events"], ["create", "patch"]),
    (["kopf.dev"], ["clusterkopfpeerings"], ["get", "list", "watch", "patch"]),
    (["apiextensions.k8s.io"], ["customresourcedefinitions"], ["get", "list", "watch"]),
]
SECRETS_RULE = ([""], ["secrets"], ["get", "list", "watch", "create", "patch"])


@pytest.fixture(scope="session")
def helm() -> Path:
    return build_binaries() / "helm"


def objects(manifest: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(manifest) if doc]


def only(manifest: str, kind: str) -> dict[str, Any]:
    found = [obj for obj in objects(manifest) if obj["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def rules(role: dict[str, Any]) -> list[tuple[list[str], list[str], list[str]]]:
    return [(rule["apiGroups"], rule["resources"], rule["verbs"]) for rule in role["rules"]]


def container(manifest: str) -> dict[str, Any]:
    containers = only(manifest, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def env(manifest: str) -> dict[str, str]:
    return {item["name"]: item.get("value", "") for item in container(manifest)["env"]}


# --- lint, render, schema (no cluster) ------------------------------------------------------------


@pytest.mark.parametrize(
    "settings",
    [
        [],
        [
            "replicas=1",
            "peering.enabled=false",
            "secretNamespaces={identity,payments}",
            "metrics.serviceMonitor.enabled=true",
            "image.digest=sha256:" + "ab" * 32,
        ],
    ],
    ids=["defaults", "every-option"],
)
def test_chart_passes_helm_lint_in_strict_mode(helm: Path, settings: list[str]) -> None:
    argv = [str(helm), "lint", "--strict", str(CHART)]
    for setting in settings:
        argv += ["--set", setting]
    result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout
    assert "[ERROR]" not in result.stdout


def test_default_render_holds_the_operator_and_everything_it_needs(helm: Path) -> None:
    manifest = render(helm, namespace=NAMESPACE)
    kinds = sorted(obj["kind"] for obj in objects(manifest))
    assert kinds == sorted(
        [
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "PodDisruptionBudget",
            "Service",
            "ClusterKopfPeering",
        ]
    )
    for obj in objects(manifest):
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "jwt-trust"
        assert labels["app.kubernetes.io/instance"] == "jwt-trust"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["app.kubernetes.io/version"] == "0.1.0"
        if obj["kind"] not in {"ClusterRole", "ClusterRoleBinding", "ClusterKopfPeering"}:
            assert obj["metadata"]["namespace"] == NAMESPACE


def test_deployment_runs_two_peered_replicas_probed_on_kopfs_liveness_endpoint(helm: Path) -> None:
    manifest = render(helm, namespace=NAMESPACE)
    deployment = only(manifest, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "jwt-trust"
    operator = container(manifest)
    assert operator["args"] == ["--peering=jwt-trust", "--log-format=json"]
    assert only(manifest, "ClusterKopfPeering")["metadata"]["name"] == "jwt-trust"
    ports = {port["name"]: port["containerPort"] for port in operator["ports"]}
    assert ports == {"health": 8080, "metrics": 9090}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert operator[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert env(manifest)["JWT_TRUST_METRICS_PORT"] == "9090"
    assert "JWT_TRUST_SECRET_NAMESPACES" not in env(manifest)
    # kopf's peering identity is the pod's name: uid 10001 has no passwd entry for kopf to name it by.
    pod_id = next(item for item in operator["env"] if item["name"] == "POD_ID")
    assert pod_id["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert set(operator["resources"]["requests"]) == {"cpu", "memory"}
    assert set(operator["resources"]["limits"]) == {"cpu", "memory"}
    pdb = only(manifest, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]


def test_pod_follows_the_restricted_pod_security_profile(helm: Path) -> None:
    manifest = render(helm, namespace=NAMESPACE)
    pod = only(manifest, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container(manifest)["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == 10001
    assert security["runAsGroup"] == 10001
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    # The only writable place: /tmp, an emptyDir.
    assert container(manifest)["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert pod["volumes"][0]["name"] == "tmp"
    assert "emptyDir" in pod["volumes"][0]


def test_image_defaults_to_the_app_version_and_prefers_a_digest(helm: Path) -> None:
    assert container(render(helm, namespace=NAMESPACE))["image"] == "ghcr.io/jwt-trust/jwt-trust:0.1.0"
    tagged = render(helm, namespace=NAMESPACE, values={"image": {"tag": "1.2.3", "pullPolicy": "Always"}})
    assert container(tagged)["image"] == "ghcr.io/jwt-trust/jwt-trust:1.2.3"
    assert container(tagged)["imagePullPolicy"] == "Always"
    digest = "sha256:" + "0f" * 32
    pinned = render(helm, namespace=NAMESPACE, values={"image": {"tag": "1.2.3", "digest": digest}})
    assert container(pinned)["image"] == f"ghcr.io/jwt-trust/jwt-trust@{digest}"


def test_without_peering_the_operator_runs_standalone_and_no_peering_object_is_rendered(
    helm: Path,
) -> None:
    manifest = render(helm, namespace=NAMESPACE, values={"replicas": 1, "peering": {"enabled": False}})
    assert container(manifest)["args"] == ["--standalone", "--log-format=json"]
    kinds = {obj["kind"] for obj in objects(manifest)}
    assert "ClusterKopfPeering" not in kinds
    # One replica cannot stay available through a drain, so it gets no budget.
    assert "PodDisruptionBudget" not in kinds


def test_cluster_role_grants_exactly_the_operators_permissions(helm: Path) -> None:
    manifest = render(helm, namespace=NAMESPACE)
    assert sorted(rules(only(manifest, "ClusterRole"))) == sorted([*OPERATOR_RULES, SECRETS_RULE])
    binding = only(manifest, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == only(manifest, "ClusterRole")["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "jwt-trust", "namespace": NAMESPACE}]
    assert "Role" not in {obj["kind"] for obj in objects(manifest)}


ISTIO_RULE = (
    ["security.istio.io"],
    ["requestauthentications"],
    ["get", "list", "watch", "create", "patch", "delete"],
)


def test_istio_consumers_add_exactly_the_request_authentication_rule_and_tell_the_operator(
    helm: Path,
) -> None:
    assert ISTIO_RULE not in rules(only(render(helm, namespace=NAMESPACE), "ClusterRole"))
    assert "JWT_TRUST_CONSUMERS" not in env(render(helm, namespace=NAMESPACE))
    manifest = render(helm, namespace=NAMESPACE, values={"consumers": {"istio": {"enabled": True}}})
    assert sorted(rules(only(manifest, "ClusterRole"))) == sorted([*OPERATOR_RULES, SECRETS_RULE, ISTIO_RULE])
    assert env(manifest)["JWT_TRUST_CONSUMERS"] == "istio"
    # The e2e tests run the operator under exactly this rendering.
    assert ISTIO_RULE in rules(
        only(render_rbac(helm, "ops", "sa", {"consumers": {"istio": {"enabled": True}}}), "ClusterRole")
    )


def test_secret_namespaces_move_secret_access_from_the_cluster_role_to_roles(helm: Path) -> None:
    manifest = render(helm, namespace=NAMESPACE, values={"secretNamespaces": ["identity", "payments"]})
    assert sorted(rules(only(manifest, "ClusterRole"))) == sorted(OPERATOR_RULES)
    roles = {obj["metadata"]["namespace"]: obj for obj in objects(manifest) if obj["kind"] == "Role"}
    assert set(roles) == {"identity", "payments"}
    assert all(rules(role) == [SECRETS_RULE] for role in roles.values())
    bindings = [obj for obj in objects(manifest) if obj["kind"] == "RoleBinding"]
    assert {binding["metadata"]["namespace"] for binding in bindings} == {"identity", "payments"}
    for binding in bindings:
        assert binding["roleRef"]["name"] == roles[binding["metadata"]["namespace"]]["metadata"]["name"]
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "jwt-trust", "namespace": NAMESPACE}
        ]
    assert env(manifest)["JWT_TRUST_SECRET_NAMESPACES"] == "identity,payments"


def test_metrics_service_and_optional_service_monitor_select_the_operators_metrics_port(helm: Path) -> None:
    default = render(helm, namespace=NAMESPACE)
    assert "ServiceMonitor" not in {obj["kind"] for obj in objects(default)}
    manifest = render(
        helm,
        namespace=NAMESPACE,
        values={"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}}},
    )
    service = only(manifest, "Service")
    deployment = only(manifest, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}
    ]
    monitor = only(manifest, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert [(e["port"], e["path"]) for e in monitor["spec"]["endpoints"]] == [("metrics", "/metrics")]


@pytest.mark.parametrize(
    ("setting", "where"),
    [
        ("replicas=two", "/replicas"),
        ("replicas=0", "/replicas"),
        ("replica=2", "replica"),  # a typo: unknown keys are refused, not ignored
        ("image.pullPolicy=Sometimes", "/image/pullPolicy"),
        ("secretNamespaces={Not_A_Namespace}", "/secretNamespaces/0"),
        ("logFormat=xml", "/logFormat"),
        ("metrics.port=8080", "/metrics/port"),  # kopf's liveness endpoint already listens there
        ("podDisruptionBudget.minAvailable=0", "/podDisruptionBudget/minAvailable"),
        ("resources.requests=big", "/resources/requests"),
        ("peering.enabled=false", "/replicas"),  # two standalone replicas would both act
        ("consumers.istio.enabled=maybe", "/consumers/istio/enabled"),
        ("consumers.envoy.enabled=true", "consumers"),  # no such consumer: nothing to grant for it
    ],
)
def test_bad_values_fail_with_a_schema_message(helm: Path, setting: str, where: str) -> None:
    result = subprocess.run(
        [str(helm), "template", "jwt-trust", str(CHART), "--set", setting],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert where in result.stderr


DISCOVERY = {"discovery": {"enabled": True, "tls": {"secretName": "discovery-tls"}}}


def deployments(manifest: str) -> dict[str, dict[str, Any]]:
    return {obj["metadata"]["name"]: obj for obj in objects(manifest) if obj["kind"] == "Deployment"}


def test_the_discovery_service_is_off_by_default_and_needs_a_tls_secret(helm: Path) -> None:
    assert list(deployments(render(helm, namespace=NAMESPACE))) == ["jwt-trust"]
    argv = [str(helm), "template", "x", str(CHART), "--set", "discovery.enabled=true"]
    result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode != 0
    assert "discovery/tls/secretName" in result.stderr


def test_the_discovery_service_runs_locked_down_and_reads_only_issuers(helm: Path) -> None:
    manifest = render(helm, namespace=NAMESPACE, values=DISCOVERY)
    operator, discovery = deployments(manifest)["jwt-trust"], deployments(manifest)["jwt-trust-discovery"]
    # Neither Deployment (nor budget, nor Service) selects the other's pods.
    for one, other in ((operator, discovery), (discovery, operator)):
        selector = one["spec"]["selector"]["matchLabels"]
        labels = other["spec"]["template"]["metadata"]["labels"]
        assert not all(labels.get(k) == v for k, v in selector.items())
    assert discovery["spec"]["replicas"] == 2
    pod = discovery["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "jwt-trust-discovery"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (server,) = pod["containers"]
    assert server["command"] == ["jwt-trust", "discovery"]
    assert "--url=https://jwt-trust-discovery.jwt-trust-system.svc:8443" in server["args"]
    assert server["securityContext"]["readOnlyRootFilesystem"] is True
    assert server["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert server["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    tls = next(v for v in pod["volumes"] if v["name"] == "tls")
    assert tls["secret"]["secretName"] == "discovery-tls"
    roles = {
        obj["metadata"]["name"]: obj for obj in objects(manifest) if obj["kind"] in {"ClusterRole", "Role"}
    }
    assert rules(roles["jwt-trust-discovery"]) == [(["jwt-trust.dev"], ["issuers"], ["get", "list", "watch"])]
    assert rules(roles["jwt-trust-discovery-endpoints"]) == [
        (["discovery.k8s.io"], ["endpointslices"], ["get", "list", "watch"])
    ]
    assert roles["jwt-trust-discovery-endpoints"]["metadata"]["namespace"] == NAMESPACE
    service = next(
        o
        for o in objects(manifest)
        if o["kind"] == "Service" and o["metadata"]["name"] == "jwt-trust-discovery"
    )
    assert service["spec"]["selector"] == discovery["spec"]["selector"]["matchLabels"]
    # The operator finds the replicas through that Service and trusts only the CA of its certificate.
    settings = {
        e["name"]: e.get("value") for e in operator["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert settings["JWT_TRUST_DISCOVERY_URL"] == "https://jwt-trust-discovery.jwt-trust-system.svc:8443"
    assert settings["JWT_TRUST_DISCOVERY_SERVICE"] == f"{NAMESPACE}/jwt-trust-discovery"
    ca = next(v for v in operator["spec"]["template"]["spec"]["volumes"] if v["name"] == "discovery-ca")
    assert ca["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}]


def test_chart_crds_are_exact_copies_of_the_repository_crds() -> None:
    source = {path.name: path.read_bytes() for path in sorted((REPO / "crds").glob("*.yaml"))}
    copies = {path.name: path.read_bytes() for path in sorted((CHART / "crds").iterdir())}
    assert source, "crds/ holds no CRD"
    assert set(copies) == set(source), "run tools/sync-chart-crds.sh"
    for name, content in source.items():
        assert copies[name] == content, f"charts/jwt-trust/crds/{name} differs: run tools/sync-chart-crds.sh"


def test_sync_script_makes_the_chart_crds_equal_to_the_repository_crds(tmp_path: Path) -> None:
    (tmp_path / "tools").mkdir()
    shutil.copy(REPO / "tools" / "sync-chart-crds.sh", tmp_path / "tools")
    shutil.copytree(REPO / "crds", tmp_path / "crds")
    chart_crds = tmp_path / "charts" / "jwt-trust" / "crds"
    chart_crds.mkdir(parents=True)
    (chart_crds / "stale.yaml").write_text("kind: CustomResourceDefinition\n")
    (tmp_path / "crds" / "issuers.jwt-trust.dev.yaml").write_text("# changed\n")
    subprocess.run(["bash", str(tmp_path / "tools" / "sync-chart-crds.sh")], check=True, capture_output=True)
    assert sorted(p.name for p in chart_crds.iterdir()) == sorted(
        p.name for p in (tmp_path / "crds").iterdir()
    )
    assert (chart_crds / "issuers.jwt-trust.dev.yaml").read_text() == "# changed\n"


def test_render_rbac_returns_only_the_service_account_and_its_rbac(helm: Path) -> None:
    manifest = render_rbac(helm, "ops", "operator-sa")
    assert sorted(obj["kind"] for obj in objects(manifest)) == [
        "ClusterRole",
        "ClusterRoleBinding",
        "ServiceAccount",
    ]
    account = only(manifest, "ServiceAccount")["metadata"]
    assert (account["namespace"], account["name"]) == ("ops", "operator-sa")
    subject = {"kind": "ServiceAccount", "name": "operator-sa", "namespace": "ops"}
    assert only(manifest, "ClusterRoleBinding")["subjects"] == [subject]

    scoped = render_rbac(helm, "ops", "operator-sa", {"secretNamespaces": ["identity"]})
    assert sorted(obj["kind"] for obj in objects(scoped)) == [
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "ServiceAccount",
    ]
    assert only(scoped, "RoleBinding")["subjects"] == [subject]
    assert SECRETS_RULE not in rules(only(scoped, "ClusterRole"))


def test_find_chart_locates_this_repositorys_chart() -> None:
    assert find_chart() == CHART


# --- against the real API server (e2e) ------------------------------------------------------------


@pytest.fixture
def release(control_plane: ControlPlane) -> Iterator[tuple[str, str]]:
    """A release name and its own namespace; the release is uninstalled and the namespace deleted after."""
    suffix = uuid.uuid4().hex[:8]
    name, namespace = f"chart-{suffix}", f"chart-{suffix}"
    yield name, namespace
    helm_run(control_plane, "uninstall", name, "--namespace", namespace, "--wait=false", check=False)
    control_plane.kubectl("delete", "namespace", namespace, "--wait=false", "--ignore-not-found", check=False)


def helm_run(plane: ControlPlane, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(plane.bin_dir / "helm"), *args],
        capture_output=True,
        text=True,
        env=plane.env(),
        check=False,
        timeout=180,
    )
    if check:
        assert result.returncode == 0, f"helm {' '.join(args)}: {result.stderr}"
    return result


def kube_json(plane: ControlPlane, *args: str) -> dict[str, Any]:
    return dict(json.loads(plane.kubectl("get", *args, "-o", "json").stdout))


def install_crds(plane: ControlPlane) -> None:
    # Server-side, as the README says; idempotent when the operator's tests already installed them.
    plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CHART / "crds"))
    plane.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")


@pytest.mark.e2e
@pytest.mark.parametrize(
    "values",
    [
        {},
        {"replicas": 1, "peering": {"enabled": False}, "secretNamespaces": ["SECRETS_NS"]},
        {"discovery": {"enabled": True, "tls": {"secretName": "discovery-tls"}}},
    ],
    ids=["defaults", "single-replica-scoped-secrets", "discovery"],
)
def test_rendered_manifests_pass_the_api_servers_validation(
    control_plane: ControlPlane, unique_namespace: str, values: dict[str, Any]
) -> None:
    install_crds(control_plane)
    if "secretNamespaces" in values:
        values = {**values, "secretNamespaces": [unique_namespace]}
    manifest = render(control_plane.bin_dir / "helm", namespace=unique_namespace, values=values)
    # Strict field validation: an unknown or misplaced field is an error, not a silent drop.
    result = control_plane.kubectl(
        "apply", "--dry-run=server", "--validate=strict", "-f", "-", input=manifest, check=False
    )
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.strip().splitlines()) == len(objects(manifest))


@pytest.mark.e2e
def test_operator_pod_is_admitted_where_the_restricted_profile_is_enforced(
    control_plane: ControlPlane, unique_namespace: str
) -> None:
    control_plane.kubectl(
        "label", "namespace", unique_namespace, "pod-security.kubernetes.io/enforce=restricted", "--overwrite"
    )
    template = only(render(control_plane.bin_dir / "helm", namespace=unique_namespace), "Deployment")["spec"][
        "template"
    ]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "operator",
            "namespace": unique_namespace,
            "labels": template["metadata"]["labels"],
        },
        "spec": template["spec"],
    }
    admitted = control_plane.kubectl(
        "create", "--dry-run=server", "-f", "-", input=json.dumps(pod), check=False
    )
    assert admitted.returncode == 0, admitted.stderr

    # The same pod without its container security context is refused: the namespace really enforces.
    del pod["spec"]["containers"][0]["securityContext"]
    refused = control_plane.kubectl(
        "create", "--dry-run=server", "-f", "-", input=json.dumps(pod), check=False
    )
    assert refused.returncode != 0
    assert "violates PodSecurity" in refused.stderr


@pytest.mark.e2e
def test_helm_install_creates_the_operator_its_rbac_and_the_crds(
    control_plane: ControlPlane, release: tuple[str, str]
) -> None:
    name, namespace = release
    # The peering object is cluster-wide: a release-specific name keeps this test apart from others.
    installed = helm_run(
        control_plane,
        "install",
        name,
        str(CHART),
        "--namespace",
        namespace,
        "--create-namespace",
        "--set",
        f"peering.name={name}",
    )
    assert f"rollout status deployment/{name}-jwt-trust" in installed.stdout  # NOTES.txt
    fullname = f"{name}-jwt-trust"
    deployment = kube_json(control_plane, "deployment", fullname, "-n", namespace)
    assert deployment["spec"]["replicas"] == 2
    kube_json(control_plane, "serviceaccount", fullname, "-n", namespace)
    kube_json(control_plane, "service", f"{fullname}-metrics", "-n", namespace)
    assert (
        kube_json(control_plane, "poddisruptionbudget", fullname, "-n", namespace)["spec"]["minAvailable"]
        == 1
    )
    assert sorted(rules(kube_json(control_plane, "clusterrole", fullname))) == sorted(
        [*OPERATOR_RULES, SECRETS_RULE]
    )
    binding = kube_json(control_plane, "clusterrolebinding", fullname)
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": fullname, "namespace": namespace}]
    kube_json(control_plane, "clusterkopfpeering", name)
    for crd in ("issuers.jwt-trust.dev", "trustpolicies.jwt-trust.dev", "clusterkopfpeerings.kopf.dev"):
        kube_json(control_plane, "crd", crd)

    account = f"system:serviceaccount:{namespace}:{fullname}"

    def can(*args: str) -> bool:
        answer = control_plane.kubectl("auth", "can-i", *args, f"--as={account}", check=False).stdout.strip()
        return answer == "yes"

    assert can("patch", "secrets", "-n", "default")
    assert can("delete", "configmaps", "-n", "default")
    assert not can("delete", "secrets", "-n", "default")
    assert not can("create", "issuers.jwt-trust.dev", "-n", "default")
    assert not can("update", "configmaps", "-n", "default")


@pytest.mark.e2e
def test_helm_install_with_secret_namespaces_grants_secrets_only_there(
    control_plane: ControlPlane, release: tuple[str, str], unique_namespace: str
) -> None:
    name, namespace = release
    helm_run(
        control_plane,
        "install",
        name,
        str(CHART),
        "--namespace",
        namespace,
        "--create-namespace",
        "--set",
        f"peering.name={name}",
        "--set",
        f"secretNamespaces={{{unique_namespace}}}",
    )
    fullname = f"{name}-jwt-trust"
    assert SECRETS_RULE not in rules(kube_json(control_plane, "clusterrole", fullname))
    assert rules(kube_json(control_plane, "role", f"{fullname}-secrets", "-n", unique_namespace)) == [
        SECRETS_RULE
    ]
    kube_json(control_plane, "rolebinding", f"{fullname}-secrets", "-n", unique_namespace)
    account = f"system:serviceaccount:{namespace}:{fullname}"

    def can(*args: str) -> bool:
        answer = control_plane.kubectl("auth", "can-i", *args, f"--as={account}", check=False).stdout.strip()
        return answer == "yes"

    assert can("create", "secrets", "-n", unique_namespace)
    assert not can("get", "secrets", "-n", "default")
    assert not can("list", "secrets", "--all-namespaces")


@pytest.mark.e2e
def test_helm_install_with_a_bad_value_fails_with_a_schema_message_and_installs_nothing(
    control_plane: ControlPlane, release: tuple[str, str]
) -> None:
    name, namespace = release
    result = helm_run(
        control_plane,
        "install",
        name,
        str(CHART),
        "--namespace",
        namespace,
        "--create-namespace",
        "--set",
        "replicas=two",
        check=False,
    )
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert "/replicas" in result.stderr
    releases = json.loads(helm_run(control_plane, "list", "--all-namespaces", "--all", "-o", "json").stdout)
    assert name not in {entry["name"] for entry in releases}
