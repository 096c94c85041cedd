"""Test and demo support: a real, throw-away Kubernetes control plane (see :mod:`jwt_trust_testing.cluster`).

Development tooling of the repository, not part of the ``jwt-trust`` wheel: it builds the control-plane
binaries with ``tools/k8s-bins/build.sh`` and reads ``crds/`` and the Helm chart from the checkout.
``tools/venv.sh`` installs it (editable, as the never-published distribution ``jwt-trust-testing``)
for the tests, the demo and the benchmarks; ``jwt_trust`` never imports it (an import-linter contract).
"""
