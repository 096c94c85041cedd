"""The operator, installed as a user would install it, for the operator's end-to-end tests.

The operator runs as its own process (``kopf run``) under the chart's ServiceAccount and ClusterRole,
so a permission it lacks fails a test. One operator serves the session; tests isolate themselves with
their own namespaces, Issuers and TrustPolicies.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support import OPERATOR_ENV, Kube, operator_rbac

from jwt_trust_testing.cluster import ControlPlane
from jwt_trust_testing.operator import OperatorProcess, install


@pytest.fixture(scope="session")
def operator(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    workdir = tmp_path_factory.mktemp("operator")
    kubeconfig = install(control_plane, workdir, rbac_yaml=operator_rbac(control_plane))
    process = OperatorProcess(control_plane, workdir, kubeconfig, extra_env=dict(OPERATOR_ENV))
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="session")
def kube(control_plane: ControlPlane) -> Kube:
    return Kube(control_plane)
