"""How the operator scales: fan-out of one TrustPolicy to N namespaces on the real control plane.

For each N (default 1,000; 10,000 with ``--sizes 10000``) this starts a fresh control plane, installs
the CRDs and the chart's RBAC, runs the operator as its ServiceAccount, and measures each step against
a baseline measured in the same run just before it: the same number of server-side applies of
ConfigMaps of the same content into the same namespaces, from a minimal asyncio client (aiohttp, the
admin's client certificate) with the operator's concurrency (16). Every time is printed as a ratio to
its baseline, and so is the API server's own p99 latency of ConfigMap applies during the step
(``apiserver_request_duration_seconds``). Measured:

1. policy creation → a correct ConfigMap in all N namespaces (seconds);
2. API writes per namespace for that change, from the API server's own ``apiserver_request_total``;
3. writes during a steady state with no change anywhere (must be zero);
4. a new key (the next key replaced by revoking it) → every namespace holds it (seconds), and its
   writes per namespace;
5. creating a labelled namespace → its ConfigMap exists (median and p95 over 50);
6. the operator's resident memory, and again after 10,000 unrelated ConfigMaps and Secrets appear.

Run: ``python benchmarks/fanout.py`` (about 10 minutes with the default 5-minute steady state);
``--sizes 100 --steady-seconds 30`` for a quick look; ``--sizes 10000`` for the large case (about half
an hour). Needs the control-plane binaries
(``bash tools/k8s-bins/build.sh``) on PATH or in the cache.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import ssl
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import aiohttp
import kopf

from jwt_trust.kube.api import KubeAPI, Ref
from jwt_trust.kube.errors import APIError
from jwt_trust.kube.policies import parse_policy_spec, project
from jwt_trust_testing.cluster import ControlPlane, start
from jwt_trust_testing.operator import OperatorProcess, chart_rbac, install

GROUP = "jwt-trust.dev/v1alpha1"
WRITE_VERBS = {"POST", "PUT", "PATCH", "DELETE", "APPLY"}
OUR_RESOURCES = {"configmaps", "secrets", "issuers", "trustpolicies", "events"}
ROTATION = {"every": "24h", "maxTokenLifetime": "5m", "propagation": "3s", "leeway": "10s", "margin": "3s"}


def admin_api(plane: ControlPlane) -> KubeAPI:
    os.environ["KUBECONFIG"] = str(plane.kubeconfig)

    async def login() -> kopf.ConnectionInfo:
        info = kopf.login_with_kubeconfig(settings=kopf.OperatorSettings(), logger=logging.getLogger("bench"))
        assert info is not None
        return info

    return KubeAPI(login)


async def bounded(jobs: Iterable[Awaitable[Any]], limit: int = 16) -> list[Any]:
    slots = asyncio.Semaphore(limit)

    async def run(job: Awaitable[Any]) -> Any:
        async with slots:
            return await job

    return await asyncio.gather(*(run(job) for job in jobs))


_SAMPLE = re.compile(r"^apiserver_request_total\{([^}]*)\} ([0-9.e+]+)$")


async def api_writes(api: KubeAPI) -> dict[str, float]:
    """Write requests the API server has served, by resource (its own counter, all clients)."""
    text = await api.text("/metrics")
    totals: dict[str, float] = {}
    for line in str(text).splitlines():
        match = _SAMPLE.match(line)
        if not match:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
        if labels.get("verb") in WRITE_VERBS and labels.get("resource") in OUR_RESOURCES:
            key = labels["resource"] + ("/" + labels["subresource"] if labels.get("subresource") else "")
            totals[key] = totals.get(key, 0.0) + float(match.group(2))
    return totals


def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {
        k: after.get(k, 0.0) - before.get(k, 0.0) for k in after if after.get(k, 0.0) != before.get(k, 0.0)
    }


async def wait_until(check: Callable[[], Awaitable[bool]], timeout: float, interval: float = 0.1) -> float:
    """Seconds until ``check`` is true (raises after ``timeout``)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if await check():
            return time.monotonic() - started
        await asyncio.sleep(interval)
    raise TimeoutError(f"not done after {timeout:.0f}s")


_BUCKET = re.compile(r"^apiserver_request_duration_seconds_bucket\{([^}]*)\} ([0-9.e+]+)$")


async def apply_latency_buckets(api: KubeAPI) -> dict[float, float]:
    """The API server's cumulative latency histogram of ConfigMap applies (upper bound → count)."""
    buckets: dict[float, float] = {}
    for line in str(await api.text("/metrics")).splitlines():
        match = _BUCKET.match(line)
        if not match:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
        if (
            labels.get("verb") == "APPLY"
            and labels.get("resource") == "configmaps"
            and not labels.get("subresource")
        ):
            bound = float("inf") if labels["le"] == "+Inf" else float(labels["le"])
            buckets[bound] = buckets.get(bound, 0.0) + float(match.group(2))
    return buckets


def p99(before: dict[float, float], after: dict[float, float]) -> float | None:
    """The 99th percentile (a bucket's upper bound) of the applies between two snapshots."""
    counts = sorted((bound, after[bound] - before.get(bound, 0.0)) for bound in after)
    total = counts[-1][1] if counts else 0.0
    if total <= 0:
        return None
    return next(bound for bound, cumulative in counts if cumulative >= 0.99 * total)


async def baseline_applies(
    plane: ControlPlane, namespaces: Iterable[str], data: dict[str, str], limit: int = 16
) -> float:
    """Seconds for server-side applies of a ConfigMap holding ``data`` into every namespace, from a
    minimal client: aiohttp, the admin's client certificate, ``limit`` requests at a time."""
    context = ssl.create_default_context(cafile=str(plane.ca_file))
    pki = plane.workdir / "pki"
    context.load_cert_chain(pki / "admin.crt", pki / "admin.key")
    headers = {"Content-Type": "application/apply-patch+yaml"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context, limit=limit)) as session:

        async def one(namespace: str) -> None:
            body = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": "baseline",
                    "namespace": namespace,
                    "labels": {
                        "app.kubernetes.io/managed-by": "baseline",
                        "jwt-trust.dev/policy": "baseline",
                    },
                    "annotations": {"jwt-trust.dev/content-hash": "0" * 64},
                },
                "data": data,
            }
            url = f"{plane.server}/api/v1/namespaces/{namespace}/configmaps/baseline"
            params = {"fieldManager": "baseline", "force": "true"}
            async with session.patch(url, params=params, data=json.dumps(body), headers=headers) as response:
                await response.read()
                assert response.status in (200, 201), response.status

        started = time.monotonic()
        await bounded((one(ns) for ns in namespaces), limit)
        return time.monotonic() - started


async def projected_data(api: KubeAPI, policy: dict[str, Any], revision: int) -> dict[str, str]:
    """The content the operator will write for ``policy`` (what the baseline writes too)."""
    body = await api.get(Ref(GROUP, "issuers", "bench-idp", "idp"))
    spec = parse_policy_spec(policy["metadata"]["name"], policy["spec"])
    return project(spec, {"bench-idp/idp": body}, int(time.time())).data(revision)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def targets_hold(
    api: KubeAPI, policy: str, namespaces: set[str], kid: str, absent: str | None = None
) -> bool:
    items, _ = await api.list(Ref("v1", "configmaps"), label_selector=f"jwt-trust.dev/policy={policy}")
    good = {
        item["metadata"]["namespace"]
        for item in items
        if kid in (item.get("data") or {}).get("jwks.json", "")
        and (absent is None or absent not in item["data"]["jwks.json"])
    }
    return namespaces <= good


async def issuer_status(api: KubeAPI) -> dict[str, Any]:
    body = await api.get(Ref(GROUP, "issuers", "bench-idp", "idp"))
    return dict((body or {}).get("status") or {})


async def measure(n: int, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    plane = start(workdir / f"plane-{n}")
    operator = None
    api = admin_api(plane)
    try:
        kubeconfig = install(plane, workdir / f"op-{n}", rbac_yaml=chart_rbac(plane))
        operator = OperatorProcess(plane, workdir / f"op-{n}", kubeconfig)
        operator.start()
        assert operator.process is not None
        result: dict[str, Any] = {"N": n}

        # An issuer in steady state (active + next key), and N labelled namespaces.
        await api.create(Ref("v1", "namespaces"), {"metadata": {"name": "bench-idp"}})
        issuer = {
            "apiVersion": GROUP,
            "kind": "Issuer",
            "metadata": {"name": "idp", "namespace": "bench-idp"},
            "spec": {"issuer": "https://bench.example", "rotation": ROTATION},
        }
        await api.create(Ref(GROUP, "issuers", "bench-idp"), issuer)
        names = {f"bench-{i:05d}" for i in range(n)}
        await bounded(
            api.create(Ref("v1", "namespaces"), {"metadata": {"name": ns, "labels": {"bench": "yes"}}})
            for ns in sorted(names)
        )

        async def steady_issuer() -> bool:
            states = [k["state"] for k in (await issuer_status(api)).get("keys") or []]
            return states.count("active") == 1 and states.count("next") == 1

        await wait_until(steady_issuer, 60)

        # kube-controller-manager writes a kube-root-ca.crt ConfigMap into every new namespace, rate
        # limited, for a minute or more at N = 1,000: wait for it, so that the API server's counters
        # below count only the operator's writes.
        async def root_ca_everywhere() -> bool:
            items, _ = await api.list(
                Ref("v1", "configmaps"), label_selector=None, field_selector="metadata.name=kube-root-ca.crt"
            )
            return names <= {item["metadata"]["namespace"] for item in items}

        result["kcm_settle_s"] = await wait_until(root_ca_everywhere, 600, 1.0)
        status = await issuer_status(api)
        active = status["activeKeyID"]
        following = next(k["kid"] for k in status["keys"] if k["state"] == "next")

        # 1 + 2: policy creation → all N correct, after the baseline of as many first applies.
        policy = {
            "apiVersion": GROUP,
            "kind": "TrustPolicy",
            "metadata": {"name": "bench"},
            "spec": {
                "issuers": [{"namespace": "bench-idp", "name": "idp"}],
                "namespaceSelector": {"matchLabels": {"bench": "yes"}},
                "verification": {"audiences": ["api://bench"]},
            },
        }
        latency = await apply_latency_buckets(api)
        result["baseline_create_s"] = await baseline_applies(
            plane, sorted(names), await projected_data(api, policy, 1)
        )
        latency, baseline_latency = await apply_latency_buckets(api), latency
        result["baseline_create_p99_s"] = p99(baseline_latency, latency)
        before, ours_before = await api_writes(api), operator.writes("configmaps")
        await api.create(Ref(GROUP, "trustpolicies"), policy)
        result["create_s"] = await wait_until(lambda: targets_hold(api, "bench", names, following), 600, 0.25)
        result["create_p99_s"] = p99(latency, await apply_latency_buckets(api))
        await asyncio.sleep(3)  # let status updates and any stray write land before counting
        writes = delta(before, await api_writes(api))
        result["create_writes"] = writes
        result["create_cm_writes_per_ns"] = writes.get("configmaps", 0) / n
        result["create_operator_cm_writes"] = operator.writes("configmaps") - ours_before

        # 3: steady state.
        before, ours_before = await api_writes(api), operator.writes()
        await asyncio.sleep(args.steady_seconds)
        result["steady_writes"] = delta(before, await api_writes(api))
        result["steady_operator_writes"] = operator.writes() - ours_before

        # 4: a new key reaches every namespace, after the baseline of as many changing applies.
        latency = await apply_latency_buckets(api)
        result["baseline_change_s"] = await baseline_applies(
            plane, sorted(names), await projected_data(api, policy, 2)
        )
        latency, baseline_latency = await apply_latency_buckets(api), latency
        result["baseline_change_p99_s"] = p99(baseline_latency, latency)
        before = await api_writes(api)
        started = time.monotonic()
        await api.merge_patch(
            Ref(GROUP, "issuers", "bench-idp", "idp"),
            {"spec": {"revokedKeys": [following]}},
        )

        async def fresh_key() -> bool:
            keys = [k["kid"] for k in (await issuer_status(api)).get("keys") or []]
            return len(keys) == 2 and following not in keys

        await wait_until(fresh_key, 60, 0.05)
        fresh = next(k["kid"] for k in (await issuer_status(api))["keys"] if k["kid"] != active)
        await wait_until(lambda: targets_hold(api, "bench", names, fresh, absent=following), 600, 0.25)
        result["rotation_s"] = time.monotonic() - started
        result["rotation_p99_s"] = p99(latency, await apply_latency_buckets(api))
        await asyncio.sleep(3)
        writes = delta(before, await api_writes(api))
        result["rotation_writes"] = writes
        result["rotation_cm_writes_per_ns"] = writes.get("configmaps", 0) / n

        # 5: new namespace → ConfigMap, one at a time.
        latencies = []
        for i in range(args.new_namespaces):
            name = f"late-{i:03d}"
            begun = time.monotonic()
            await api.create(
                Ref("v1", "namespaces"),
                {"metadata": {"name": name, "labels": {"bench": "yes"}}},
            )

            async def exists(name: str = name) -> bool:
                return await api.get(Ref("v1", "configmaps", name, "bench")) is not None

            await wait_until(exists, 30, 0.02)
            latencies.append(time.monotonic() - begun)
        result["new_ns_median_s"] = statistics.median(latencies)
        result["new_ns_p95_s"] = (
            statistics.quantiles(latencies, n=20)[18] if len(latencies) >= 20 else max(latencies)
        )

        # 6: memory, before and after 10,000 unrelated objects elsewhere.
        await asyncio.sleep(2)
        result["rss_mib"] = rss_mib(operator.process.pid)
        if args.unrelated:
            await api.create(Ref("v1", "namespaces"), {"metadata": {"name": "unrelated"}})
            filler = "x" * 512
            half = args.unrelated // 2
            await bounded(
                [
                    api.create(
                        Ref("v1", "configmaps", "unrelated"),
                        {"metadata": {"name": f"cm-{i}"}, "data": {"v": filler}},
                    )
                    for i in range(half)
                ]
                + [
                    api.create(
                        Ref("v1", "secrets", "unrelated"),
                        {"metadata": {"name": f"s-{i}"}, "stringData": {"v": filler}},
                    )
                    for i in range(half)
                ],
                limit=32,
            )
            await asyncio.sleep(10)
            result["rss_after_unrelated_mib"] = rss_mib(operator.process.pid)
        result["operator_restarts"] = operator.runs - 1
        return result
    finally:
        await api.close()
        if operator is not None:
            operator.stop()
        plane.stop()


def report(results: list[dict[str, Any]]) -> None:
    rows = [
        ("baseline: N first applies (s)", "baseline_create_s", "{:.1f}"),
        ("policy created → all ConfigMaps correct (s)", "create_s", "{:.1f}"),
        ("  ratio to the baseline", "create_ratio", "{:.2f}x"),
        ("  API server p99 of ConfigMap applies, baseline (s)", "baseline_create_p99_s", "{:.3f}"),
        ("  API server p99 of ConfigMap applies, operator (s)", "create_p99_s", "{:.3f}"),
        ("  ConfigMap writes per namespace", "create_cm_writes_per_ns", "{:.2f}"),
        ("steady-state writes (API server count)", "steady_writes", "{}"),
        ("steady-state writes (operator's own count)", "steady_operator_writes", "{:.0f}"),
        ("baseline: N changing applies (s)", "baseline_change_s", "{:.1f}"),
        ("new key → all namespaces (s)", "rotation_s", "{:.1f}"),
        ("  ratio to the baseline", "rotation_ratio", "{:.2f}x"),
        ("  API server p99 of ConfigMap applies, baseline (s)", "baseline_change_p99_s", "{:.3f}"),
        ("  API server p99 of ConfigMap applies, operator (s)", "rotation_p99_s", "{:.3f}"),
        ("  ConfigMap writes per namespace", "rotation_cm_writes_per_ns", "{:.2f}"),
        ("new namespace → ConfigMap, median (s)", "new_ns_median_s", "{:.2f}"),
        ("new namespace → ConfigMap, p95 (s)", "new_ns_p95_s", "{:.2f}"),
        ("operator RSS (MiB)", "rss_mib", "{:.0f}"),
        ("operator RSS after 10k unrelated objects (MiB)", "rss_after_unrelated_mib", "{:.0f}"),
    ]
    for r in results:
        r["create_ratio"] = r["create_s"] / r["baseline_create_s"]
        r["rotation_ratio"] = r["rotation_s"] / r["baseline_change_s"]
    width = max(len(label) for label, _, _ in rows)
    print("\n" + "metric".ljust(width) + "".join(f"  N={r['N']:>6}" for r in results))
    for label, key, fmt in rows:
        cells = []
        for r in results:
            value = r.get(key)
            cells.append(
                "—"
                if value is None
                else (fmt.format(sum(value.values())) if isinstance(value, dict) else fmt.format(value))
            )
        print(label.ljust(width) + "".join(f"  {c:>8}" for c in cells))
    for r in results:
        print(
            f"N={r['N']}: writes at creation {r['create_writes']}, at the new key {r['rotation_writes']},"
            f" steady {r['steady_writes']}"
        )
        if "rss_after_unrelated_mib" in r:
            growth = (r["rss_after_unrelated_mib"] / r["rss_mib"] - 1) * 100
            print(f"N={r['N']}: RSS growth with 10k unrelated objects: {growth:+.1f}%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000")
    parser.add_argument("--steady-seconds", type=float, default=300)
    parser.add_argument("--new-namespaces", type=int, default=50)
    parser.add_argument(
        "--unrelated", type=int, default=10000, help="unrelated ConfigMaps+Secrets (largest N only)"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results = []
    with tempfile.TemporaryDirectory(prefix="jwt-trust-fanout-") as tmp:
        for n in sizes:
            one = argparse.Namespace(**{**vars(args), "unrelated": args.unrelated if n == max(sizes) else 0})
            print(f"== N = {n}", flush=True)
            results.append(asyncio.run(measure(n, one, Path(tmp))))
            print(json.dumps(results[-1]), flush=True)
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    try:
        main()
    except APIError as error:
        raise SystemExit(f"API error: {error}") from None
