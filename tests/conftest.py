"""Shared pytest wiring: the session's real control plane and the ``e2e`` opt-out.

Tests marked ``e2e`` run by default (CI runs them). ``JWT_TRUST_SKIP_E2E=1`` deselects them, so they are
reported as deselected rather than skipped or passed; ``JWT_TRUST_SKIP_NODE=1`` deselects only those
marked ``node`` (a kubelet node: root, containerd, iptables). One control plane serves the whole
session; tests isolate themselves with :func:`unique_namespace`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from jwt_trust_testing.cluster import ControlPlane


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skipped = [
        marker
        for marker, env in (("e2e", "JWT_TRUST_SKIP_E2E"), ("node", "JWT_TRUST_SKIP_NODE"))
        if os.environ.get(env) == "1"
    ]
    if not skipped:
        return
    deselected = [item for item in items if any(item.get_closest_marker(m) is not None for m in skipped)]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if item not in deselected]


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    # Imported here so that unit-test collection never depends on the cluster module.
    from jwt_trust_testing.cluster import start

    plane = start(tmp_path_factory.mktemp("control-plane"))
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture
def unique_namespace(control_plane: ControlPlane) -> Iterator[str]:
    """A fresh namespace for one test, deleted (without waiting) afterwards."""
    name = f"e2e-{uuid.uuid4().hex[:10]}"
    control_plane.kubectl("create", "namespace", name)
    yield name
    control_plane.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)
