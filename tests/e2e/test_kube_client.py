"""The operator's API client and informers against the real API server, in this process.

What only a real API server can show: that a server-side apply conditional on a resourceVersion loses
to a change made since the read, that a delete conditional on a uid spares an object created again
under the same name, and that an informer follows a ~1 MiB object through its watch, with the label
selector applied by the server.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import kopf
import pytest
from prometheus_client import REGISTRY

from jwt_trust.kube.api import KubeAPI, Ref
from jwt_trust.kube.errors import APIError
from jwt_trust.kube.informers import Informer
from jwt_trust.projection import content_hash
from jwt_trust_testing.cluster import ControlPlane

pytestmark = pytest.mark.e2e


def _api(plane: ControlPlane) -> KubeAPI:
    pki = plane.ca_file.parent

    async def login() -> kopf.ConnectionInfo:
        # The admin's client certificate: the kubeconfig path of the mapping (the operator's own
        # process covers the ServiceAccount token).
        return kopf.ConnectionInfo(
            server=plane.server,
            ca_path=str(plane.ca_file),
            certificate_path=str(pki / "admin.crt"),
            private_key_path=str(pki / "admin.key"),
        )

    return KubeAPI(login)


def _run(plane: ControlPlane, test: Callable[[KubeAPI], Awaitable[None]]) -> None:
    async def main() -> None:
        api = _api(plane)
        try:
            await test(api)
        finally:
            await api.close()

    asyncio.run(main())


async def _eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


def _configmap(namespace: str, name: str, data: dict[str, str], labels: dict[str, str] | None = None) -> Any:
    metadata = {"name": name, "namespace": namespace, "labels": labels or {}}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}


def test_a_conditional_apply_loses_to_a_later_change_and_a_delete_spares_a_recreated_object(
    control_plane: ControlPlane, unique_namespace: str
) -> None:
    ns = unique_namespace

    async def test(api: KubeAPI) -> None:
        target = Ref("v1", "configmaps", ns, "keys")
        first = await api.apply(target, _configmap(ns, "keys", {"v": "1"}), force=True)
        read_at = first["metadata"]["resourceVersion"]
        # Another writer (another replica) changes it after our read ...
        await api.apply(target, _configmap(ns, "keys", {"v": "2"}), force=True, resource_version=read_at)
        # ... so our write, decided from the old read, is refused and changes nothing.
        with pytest.raises(APIError) as raised:
            await api.apply(target, _configmap(ns, "keys", {"v": "3"}), force=True, resource_version=read_at)
        assert raised.value.status == 409
        assert (await api.get(target))["data"] == {"v": "2"}

        seen = (await api.get(target))["metadata"]["uid"]
        assert await api.delete(target, uid=seen)
        again = await api.apply(target, _configmap(ns, "keys", {"v": "4"}), force=True)
        assert not await api.delete(target, uid=seen), "a delete for the old object removed the new one"
        assert (await api.get(target))["metadata"]["uid"] == again["metadata"]["uid"]

    _run(control_plane, test)


# aiohttp warns that sending a body over 1 MiB from memory holds the event loop for a moment: true, and
# what this test does on purpose.
@pytest.mark.filterwarnings("ignore:Sending a large body:ResourceWarning")
def test_an_informer_follows_a_mebibyte_object_through_its_watch(
    control_plane: ControlPlane, unique_namespace: str
) -> None:
    ns = unique_namespace
    selector = f"e2e.jwt-trust.dev/informer={uuid.uuid4().hex[:8]}"
    label = dict([selector.split("=")])
    # Quotes and backslashes double in JSON: about 1 MiB stored is more on the wire.
    data = {"big": '{"k":"\\\\"}' * 90_000}

    def restarts() -> float:
        return REGISTRY.get_sample_value("jwt_trust_watch_restarts_total", {"resource": "configmaps"}) or 0.0

    async def test(api: KubeAPI) -> None:
        collection = Ref("v1", "configmaps", ns)
        await api.apply(
            Ref("v1", "configmaps", ns, "unlabelled"), _configmap(ns, "unlabelled", data), force=True
        )
        informer: Informer[str] = Informer(
            api, collection, lambda obj: content_hash(obj.get("data") or {}), label_selector=selector
        )
        await informer.list()
        task = asyncio.create_task(informer.run())
        before = restarts()
        try:
            written = await api.apply(
                Ref("v1", "configmaps", ns, "big"), _configmap(ns, "big", data, label), force=True
            )
            assert len(str(written)) > 1_000_000
            await _eventually(lambda: informer.objects.get((ns, "big")) == content_hash(data))
            assert (ns, "unlabelled") not in informer.objects, "the label selector is the server's"
            await api.delete(Ref("v1", "configmaps", ns, "big"))
            await _eventually(lambda: (ns, "big") not in informer.objects)
            assert restarts() == before
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    _run(control_plane, test)
