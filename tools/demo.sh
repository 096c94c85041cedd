#!/usr/bin/env bash
# The main job, end to end on this machine, each step printed: a local control plane; the CRDs installed
# with kubectl apply; the operator running as the Helm chart's ServiceAccount; the examples applied (an
# Issuer, a TrustPolicy, labelled namespaces); a token minted with the key the operator generated, and
# verified offline from the ConfigMap the operator projected.
#
# `tools/demo.sh --node` takes the full path instead (root only): the operator's image built without
# Docker, a local kubelet node, `helm install` of the chart with that image, a workload pod verifying
# from the mounted ConfigMap while the Issuer rotates and the active replica is deleted.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/venv.sh
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

if [ "${1:-}" = --node ]; then
  bash tools/node/packages.sh
  exec python -m jwt_trust_testing.node_demo
fi

step "1. control-plane binaries (built once from Go modules, then cached)"
BIN_DIR=$(bash tools/k8s-bins/build.sh); export PATH="$BIN_DIR:$PATH"; echo "$BIN_DIR"

export JWT_TRUST_DEV_DIR=${JWT_TRUST_DEV_DIR:-$PWD/.dev-cluster}
step "2. start kube-apiserver + etcd + kube-controller-manager on loopback"
jwt-trust-dev-cluster up
eval "$(jwt-trust-dev-cluster env)"
[ "${KEEP_CLUSTER:-0}" = 1 ] || trap 'jwt-trust-dev-cluster down' EXIT
kubectl version

step "3. install the CRDs (kubectl apply -f crds/)"
kubectl apply -f crds/
kubectl wait --for=condition=Established crd --all --timeout=60s >/dev/null
kubectl get crds -l app.kubernetes.io/part-of=jwt-trust

step "4. run the operator as the chart's ServiceAccount with the chart's ClusterRole"
jwt-trust-dev-cluster operator

step "5. apply the examples: namespaces, an Issuer, a TrustPolicy"
# The local control plane has no kubelet, so mounted copies cannot lag: seconds are a safe propagation
# delay and margin here (on a real cluster keep the 5m of the example). Timestamps only move forward,
# so this must be set when the Issuer is created.
kubectl apply -f examples/namespaces.yaml -f examples/trustpolicy.yaml
sed -e 's/propagation: 5m /propagation: 2s /' -e 's/margin: 5m/margin: 2s/' examples/issuer.yaml | tee /dev/stderr | kubectl apply -f -

step "6. wait until the first key is published everywhere and activates (propagation + margin)"
kubectl wait --for=condition=Ready issuer/orders-issuer -n identity --timeout=120s
kubectl wait --for=condition=Ready trustpolicy/orders-api --timeout=60s
kubectl get issuers,trustpolicies -A
kubectl get configmaps -A -l app.kubernetes.io/managed-by=jwt-trust

WORK=$(mktemp -d)
step "7. a signer's view: the Secret the operator keeps (private keys, never printed)"
mkdir -p "$WORK/signing-keys" "$WORK/mounted"
kubectl get secret orders-issuer-signing-keys -n identity -o json | python -c '
import base64, json, pathlib, sys
for name, value in json.load(sys.stdin)["data"].items():
    pathlib.Path(sys.argv[1], name).write_bytes(base64.b64decode(value))' "$WORK/signing-keys"
ls "$WORK/signing-keys" | sed 's/\.pem$/.pem (private key, stays in the Secret)/'

step "8. a workload's view: the projected ConfigMap in namespace orders, as a mounted volume presents it"
kubectl get configmap orders-api-trust -n orders -o json | python -c '
import json, pathlib, sys
for name, text in json.load(sys.stdin)["data"].items():
    pathlib.Path(sys.argv[1], name).write_text(text)' "$WORK/mounted"
ls "$WORK/mounted"; python -m json.tool "$WORK/mounted/jwks.json"

step "9. mint a token with the active key"
TOKEN=$(jwt-trust mint --key-dir "$WORK/signing-keys" --subject alice --audience api://orders --lifetime 300)
echo "$TOKEN"

step "10. verify it offline from the projected files (no network, no IdP)"
jwt-trust verify "$TOKEN" --trust-dir "$WORK/mounted" --audience api://orders

step "11. a token for another audience is rejected"
OTHER=$(jwt-trust mint --key-dir "$WORK/signing-keys" --subject alice --audience api://billing --lifetime 300)
if jwt-trust verify "$OTHER" --trust-dir "$WORK/mounted" --audience api://orders; then echo "UNEXPECTED: accepted"; exit 1; fi
rm -rf "$WORK"
step "done: a token signed with an operator-managed key, verified offline from the projected ConfigMap"
