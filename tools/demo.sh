#!/usr/bin/env bash
# The main job, end to end on this machine: a local control plane, a signing key, the trust projected
# into a namespace as a ConfigMap, a token minted and then verified offline from the ConfigMap's content.
# Until the operator lands (issue 4), this script writes the projected ConfigMap itself, with the same
# library code the operator will use (jwt_trust.projection).
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/venv.sh
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1. control-plane binaries (built once from Go modules, then cached)"
BIN_DIR=$(bash tools/k8s-bins/build.sh); export PATH="$BIN_DIR:$PATH"; echo "$BIN_DIR"

export JWT_TRUST_DEV_DIR=${JWT_TRUST_DEV_DIR:-$PWD/.dev-cluster}
step "2. start kube-apiserver + etcd + kube-controller-manager on loopback"
jwt-trust dev-cluster up
eval "$(jwt-trust dev-cluster env)"
[ "${KEEP_CLUSTER:-0}" = 1 ] || trap 'jwt-trust dev-cluster down' EXIT
kubectl version

WORK=$(mktemp -d)
step "3. a signing key for issuer https://issuer.demo.example (ES256)"
jwt-trust keygen --alg ES256 --issuer https://issuer.demo.example --out "$WORK/signing-keys" --jwks-out "$WORK/jwks.json"
cat "$WORK/jwks.json"

step "4. project the public trust into namespace team-a as ConfigMap demo-trust"
kubectl create namespace team-a --dry-run=client -o yaml | kubectl apply -f -
kubectl label namespace team-a jwt-trust.dev/trust=demo --overwrite
python - "$WORK/jwks.json" > "$WORK/configmap.json" <<'PY'
import json, sys
from jwt_trust.projection import IssuerTrust, PolicyTrust, content_hash, render_configmap_data
keys = tuple(json.load(open(sys.argv[1]))["keys"])
trust = PolicyTrust(policy="demo-trust", audiences=("api://orders",), algorithms=("ES256",),
                    issuers=(IssuerTrust(ref="demo/issuer", issuer="https://issuer.demo.example", keys=keys),))
data = render_configmap_data(trust, revision=1)
print(json.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                  "metadata": {"name": "demo-trust", "namespace": "team-a",
                               "labels": {"app.kubernetes.io/managed-by": "jwt-trust", "jwt-trust.dev/policy": "demo-trust"},
                               "annotations": {"jwt-trust.dev/content-hash": content_hash(data)}},
                  "data": data}))
PY
kubectl apply --server-side --field-manager=jwt-trust -f "$WORK/configmap.json"

step "5. read the ConfigMap back from the API, as a mounted volume would present it"
mkdir -p "$WORK/mounted"
kubectl get configmap demo-trust -n team-a -o json | python -c '
import json, pathlib, sys
for name, text in json.load(sys.stdin)["data"].items():
    pathlib.Path(sys.argv[1], name).write_text(text)' "$WORK/mounted"
ls "$WORK/mounted"

step "6. mint a token with the signing key"
TOKEN=$(jwt-trust mint --key-dir "$WORK/signing-keys" --subject alice --audience api://orders --lifetime 300)
echo "$TOKEN"

step "7. verify it offline from the projected files (no network, no IdP)"
jwt-trust verify "$TOKEN" --trust-dir "$WORK/mounted" --audience api://orders

step "8. a token for another audience is rejected"
OTHER=$(jwt-trust mint --key-dir "$WORK/signing-keys" --subject alice --audience api://billing --lifetime 300)
if jwt-trust verify "$OTHER" --trust-dir "$WORK/mounted" --audience api://orders; then echo "UNEXPECTED: accepted"; exit 1; fi
rm -rf "$WORK"
step "done: token verified offline from the projected ConfigMap"
