#!/usr/bin/env bash
# The one command that runs every check: installs what is missing (Python venv, control-plane binaries,
# cached by version), then lint, types, the import contract, and the whole pytest suite including the
# end-to-end tests against a real kube-apiserver + etcd + kube-controller-manager, and (as root) the
# node tests: the operator image built with buildah and the Helm chart installed on a local kubelet.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/venv.sh

echo "== control-plane binaries (cached by version under ${JWT_TRUST_CACHE:-~/.cache/jwt-trust})"
BIN_DIR=$(bash tools/k8s-bins/build.sh)
export PATH="$BIN_DIR:$PATH"
echo "$BIN_DIR"

if [ "${JWT_TRUST_SKIP_E2E:-0}" != 1 ] && [ "${JWT_TRUST_SKIP_NODE:-0}" != 1 ]; then
  echo "== node: Debian packages (when missing), kubelet/kube-proxy/kube-scheduler (cached by version), the operator image (cached by content)"
  bash tools/node/packages.sh
  bash tools/k8s-bins/build-node.sh
  bash tools/image/build.sh
fi

echo "== interop helpers (Go and Node verifiers, cached by content hash)"
bash tests/interop/build.sh

echo "== consumers checker (Go, from the consumers' upstream API modules, cached by content hash)"
bash tests/consumers/build.sh

echo "== ruff";   ruff check operator tests benchmarks tools
echo "== mypy";   mypy
echo "== import contract (the offline library imports only cryptography)"; lint-imports
echo "== pytest"; python -m pytest "$@"
echo "== fuzzing the verifier (atheris, bounded; longer runs: bash tools/fuzz.sh 600)"
bash tools/fuzz.sh "${JWT_TRUST_FUZZ_SECONDS:-30}"
echo "== fuzzing the C twin against its Python reference (AddressSanitizer + UBSan; longer: bash tools/fuzz-c.sh 600)"
bash tools/fuzz-c.sh "${JWT_TRUST_FUZZ_SECONDS:-30}"
