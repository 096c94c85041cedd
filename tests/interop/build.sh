#!/usr/bin/env bash
# Builds the interop helpers once and prints the directory that holds them:
#   <dir>/interop-go          the Go batch verifier/signer (go-jose, golang-jwt, jwx), from ./go
#   <dir>/node/interop.mjs    the Node batch verifier/signer (jose), with its node_modules, from ./node
# The directory is ${JWT_TRUST_CACHE:-~/.cache/jwt-trust}/interop/<hash>, where the hash covers this
# script, go.mod, go.sum, the Go sources, package.json, package-lock.json, the Node script and the Go and
# Node versions: a second run with the same inputs reuses the directory as it is and costs nothing.
# Versions are pinned by the committed go.sum and package-lock.json (Go runs with -mod=readonly and
# npm with `npm ci`), so a build never resolves anything new.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then export PATH="/usr/local/go/bin:$PATH"; fi
command -v go >/dev/null || { echo "Go is required for the interop tests" >&2; exit 1; }
command -v node >/dev/null && command -v npm >/dev/null || { echo "node and npm are required for the interop tests" >&2; exit 1; }
CACHE_ROOT=${JWT_TRUST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/jwt-trust}
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-trimpath -buildvcs=false -mod=readonly"

KEY=$( { cat "$HERE/build.sh" "$HERE/go/go.mod" "$HERE/go/go.sum" "$HERE"/go/*.go \
           "$HERE/node/package.json" "$HERE/node/package-lock.json" "$HERE"/node/*.mjs
         go env GOVERSION GOOS GOARCH; node --version; } | sha256sum | cut -c1-16 )
OUT="$CACHE_ROOT/interop/$KEY"
if [[ -x "$OUT/interop-go" && -f "$OUT/node/interop.mjs" && -d "$OUT/node/node_modules/jose" ]]; then
  echo "$OUT"; exit 0
fi

mkdir -p "$CACHE_ROOT/interop"
TMP=$(mktemp -d "$CACHE_ROOT/interop/.build.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
started=$(date +%s)

echo "building the Go interop helper" >&2
( cd "$HERE/go" && go build -ldflags "-s -w" -o "$TMP/interop-go" . >&2 )

echo "installing the Node interop helper's packages" >&2
mkdir -p "$TMP/node"
cp "$HERE/node/package.json" "$HERE/node/package-lock.json" "$HERE"/node/*.mjs "$TMP/node/"
( cd "$TMP/node" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2 )

echo "built in $(( $(date +%s) - started )) s" >&2
rm -rf "$OUT"; mv -T "$TMP" "$OUT"; trap - EXIT
echo "$OUT"
