"""P for real: the delay from a ConfigMap write to the changed files in a pod, per kubelet setting.

For each kubelet setting this starts a fresh control plane with one node (``start(..., node=...)``,
root only) and takes ``--pods`` x ``--writes-per-pod`` samples with
:func:`jwt_trust_testing.propagation.measure` (a PUT of the ConfigMap, then the host watching the
``..data`` link of the pod's volume directory; each pod's writes spaced by a random wait of up to 1.5
sync periods), and prints the count, median, p90, p99 and maximum per setting, as a Markdown table.

Run: ``python benchmarks/propagation.py`` (about 10 minutes: the kubelet's default sync period of one
minute dominates); ``--settings 5s/Watch`` for a tuned one alone.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from pathlib import Path

from jwt_trust_testing.cluster import start
from jwt_trust_testing.node import NodeOptions
from jwt_trust_testing.propagation import measure, summary

DEFAULT_SETTINGS = ["default", "5s/Watch", "5s/Get"]


def options(setting: str) -> NodeOptions:
    """``default`` or ``<syncFrequency>/<configMapAndSecretChangeDetectionStrategy>``."""
    if setting == "default":
        return NodeOptions()
    sync, _, strategy = setting.partition("/")
    return NodeOptions(sync_frequency=sync, change_detection=strategy or None)


def sync_seconds(setting: str) -> float:
    """The sync period of a setting in seconds (``1m`` by default; ``2s``, ``500ms``, ``1m30s``)."""
    sync = "1m" if setting == "default" else setting.partition("/")[0]
    total = 0.0
    for number, unit in re.findall(r"([0-9.]+)(ms|s|m|h)", sync):
        total += float(number) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="+", default=DEFAULT_SETTINGS)
    parser.add_argument("--pods", type=int, default=10)
    parser.add_argument("--writes-per-pod", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write every sample here")
    args = parser.parse_args()
    rows = []
    raw: dict[str, list[float]] = {}
    for setting in args.settings:
        with tempfile.TemporaryDirectory(prefix="jwt-trust-propagation-") as tmp:
            started = time.monotonic()
            plane = start(Path(tmp), node=options(setting))
            try:
                samples = measure(
                    plane,
                    namespace="propagation",
                    pods=args.pods,
                    writes_per_pod=args.writes_per_pod,
                    spread=1.5 * sync_seconds(setting),
                )
            finally:
                plane.stop()
        stats = summary(samples)
        raw[setting] = [s.seconds for s in samples]
        rows.append((setting, stats, time.monotonic() - started))
        print(f"{setting}: {json.dumps({k: round(v, 2) for k, v in stats.items()})}", flush=True)
    print("\n| kubelet syncFrequency / change detection | writes | median | p90 | p99 | max | run |")
    print("|---|---|---|---|---|---|---|")
    for setting, stats, took in rows:
        label = "1m (default) / Watch (default)" if setting == "default" else setting.replace("/", " / ")
        print(
            f"| {label} | {stats['n']:.0f} | {stats['median']:.1f} s | {stats['p90']:.1f} s | "
            f"{stats['p99']:.1f} s | {stats['max']:.1f} s | {took:.0f} s |"
        )
    if args.json is not None:
        args.json.write_text(json.dumps(raw, indent=2) + "\n")


if __name__ == "__main__":
    main()
