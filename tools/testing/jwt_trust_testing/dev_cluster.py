"""``jwt-trust-dev-cluster``: a detached local control plane for the demo and for trying things out.

Development tooling of the repository (like the rest of :mod:`jwt_trust_testing`), not an installed
command of ``jwt-trust``: it builds the binaries with ``tools/k8s-bins/build.sh`` and reads ``crds/`` and
the chart from the checkout. ``tools/venv.sh`` installs it; ``python -m jwt_trust_testing.dev_cluster``
runs the same.

    jwt-trust-dev-cluster up             etcd + kube-apiserver + kube-controller-manager (reused if healthy)
    jwt-trust-dev-cluster operator       also the CRDs, the chart's RBAC, and the operator as its account
    jwt-trust-dev-cluster env            shell exports: KUBECONFIG, and PATH with kubectl and helm
    jwt-trust-dev-cluster down           stop everything

Exit 0 on success, 1 when the control plane or the operator fails (with the reason on stderr), 2 on
usage errors.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from . import cluster, operator
from .chart import ChartError


def parser() -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(
        prog="jwt-trust-dev-cluster",
        description="A local kube-apiserver + etcd + kube-controller-manager for the demo and tests.",
    )
    result.add_argument(
        "action",
        choices=["up", "operator", "env", "down"],
        help="up: start the control plane; operator: also install the CRDs and the chart's RBAC and run the "
        "operator as its ServiceAccount; env: shell exports; down: stop everything",
    )
    result.add_argument(
        "--state-dir", type=Path, help="default: $JWT_TRUST_DEV_DIR or ~/.cache/jwt-trust/dev-cluster"
    )
    return result


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    state_dir: Path = args.state_dir or cluster.default_dev_dir()
    try:
        if args.action == "up":
            plane = cluster.dev_up(state_dir)
            print(f"control plane ready at {plane.server} (kubeconfig {plane.kubeconfig})")
        elif args.action == "operator":
            process = operator.dev_operator_up(state_dir)
            print(
                f"operator running as ServiceAccount {operator.NAMESPACE}/{operator.SERVICE_ACCOUNT}"
                f" (log {process.log_path})"
            )
        elif args.action == "env":
            print(cluster.dev_env(state_dir), end="")
        else:
            operator.dev_operator_down(state_dir)
            cluster.dev_down(state_dir)
    except (cluster.ControlPlaneError, ChartError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def entrypoint() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entrypoint()
