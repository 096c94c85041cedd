#!/usr/bin/env bash
# Builds the consumers checker once and prints the path of the binary:
#   ${JWT_TRUST_CACHE:-~/.cache/jwt-trust}/consumers/<hash>/consumers-checker
# The hash covers this script, go.mod, go.sum, the Go sources and the Go version: a second run with the
# same inputs reuses the binary and costs nothing. Versions are pinned by the committed go.sum (Go runs
# with -mod=readonly), so a build never resolves anything new.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then export PATH="/usr/local/go/bin:$PATH"; fi
command -v go >/dev/null || { echo "Go is required for the consumers checker" >&2; exit 1; }
CACHE_ROOT=${JWT_TRUST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/jwt-trust}
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-trimpath -buildvcs=false -mod=readonly"

KEY=$( { cat "$HERE/build.sh" "$HERE/checker/go.mod" "$HERE/checker/go.sum" "$HERE"/checker/*.go
         go env GOVERSION GOOS GOARCH; } | sha256sum | cut -c1-16 )
OUT="$CACHE_ROOT/consumers/$KEY"
if [[ -x "$OUT/consumers-checker" ]]; then
  echo "$OUT/consumers-checker"; exit 0
fi

mkdir -p "$CACHE_ROOT/consumers"
TMP=$(mktemp -d "$CACHE_ROOT/consumers/.build.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
started=$(date +%s)
echo "building the consumers checker" >&2
( cd "$HERE/checker" && go build -ldflags "-s -w" -o "$TMP/consumers-checker" . >&2 )
echo "built in $(( $(date +%s) - started )) s" >&2
rm -rf "$OUT"; mv -T "$TMP" "$OUT"; trap - EXIT
echo "$OUT/consumers-checker"
