#!/usr/bin/env bash
# Builds the node's Kubernetes binaries (kubelet, kube-proxy, kube-scheduler) from Go modules, and the
# sandbox image's `pause` (node/pause, standard library only), into a cache
# directory keyed by their version and by the wrapper module, and prints that directory. The same
# approach as build.sh (which builds the control plane), with its own wrapper module (node/) and its own
# cache key, so that neither build invalidates the other. A second run with the same inputs costs nothing.
# containerd, runc and the CNI plugins come from Debian packages instead (tools/testing/node-packages.sh).
set -euo pipefail
K8S_VERSION=v1.37.2                   # must match node/go.mod (and build.sh: one Kubernetes version)
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE_ROOT=${JWT_TRUST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/jwt-trust}
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-trimpath -buildvcs=false"
BINS=(kubelet kube-proxy kube-scheduler pause)

KEY=$(cat "$HERE/build-node.sh" "$HERE/node/go.mod" "$HERE/node/pause/main.go" | sha256sum | cut -c1-12)
OUT="$CACHE_ROOT/k8s-bins/node-${K8S_VERSION}_$(go env GOOS)-$(go env GOARCH)_${KEY}"
complete() { for b in "${BINS[@]}"; do [[ -x "$OUT/$b" ]] || return 1; done; }
if complete; then echo "$OUT"; exit 0; fi

mkdir -p "$CACHE_ROOT/k8s-bins"
TMP=$(mktemp -d "$CACHE_ROOT/k8s-bins/.build-node.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
started=$(date +%s)

# The real version stamped in, as build.sh does: the kubelet reports it in the Node's status.
v=${K8S_VERSION#v}; MAJOR=${v%%.*}; MINOR=${v#*.}; MINOR=${MINOR%%.*}
DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ); LDF="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  LDF+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=$MAJOR -X $p.gitMinor=$MINOR -X $p.gitTreeState=clean -X $p.buildDate=$DATE"
done

echo "building kubelet, kube-proxy, kube-scheduler $K8S_VERSION (a few minutes with a warm Go build cache)" >&2
( cd "$HERE/node" && go build -ldflags "$LDF" -o "$TMP/" \
    k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy k8s.io/kubernetes/cmd/kube-scheduler >&2 )
( cd "$HERE/node" && go build -ldflags "-s -w" -o "$TMP/pause" ./pause >&2 )

"$TMP/kubelet" --version >&2
echo "built in $(( $(date +%s) - started )) s" >&2
rm -rf "$OUT"; mv -T "$TMP" "$OUT"; trap - EXIT
echo "$OUT"
