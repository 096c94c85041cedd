#!/usr/bin/env bash
# Builds the operator's image without Docker and without a registry, and prints the path of a
# docker-archive tar that `ctr images import` (or `docker load`) reads.
#
# 1. The base: a Debian bookworm root with its Python 3.11 made by mmdebstrap from the Debian mirror
#    this machine's apt uses, wrapped as a one-layer image (localhost/jwt-trust-base:bookworm-py3.11).
#    Cached by that version and this script under ${JWT_TRUST_CACHE:-~/.cache/jwt-trust}/images.
# 2. The repository's Dockerfile built with buildah (chroot isolation, storage of its own, deleted
#    afterwards) with BASE_IMAGE set to that base. Cached by the content of everything the build reads:
#    the Dockerfile, the build context that .dockerignore lets through, and the base.
#
# Needs root, mmdebstrap and buildah (tools/node/packages.sh installs them). Package downloads inside
# the build (pip) trust exactly what this host trusts: the host's CA bundle ($SSL_CERT_FILE, else
# Debian's) is mounted read-only over the base's bundle for the build's RUN steps, and never lands in
# a layer.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
CACHE_ROOT=${JWT_TRUST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/jwt-trust}
OUT_DIR="$CACHE_ROOT/images"
SUITE=bookworm
BASE_PACKAGES=python3,python3-venv,python-is-python3,ca-certificates
BASE_NAME=localhost/jwt-trust-base:$SUITE-py3.11
IMAGE_NAME=localhost/jwt-trust:dev
mkdir -p "$OUT_DIR"

# --- the base -------------------------------------------------------------------------------------
base_key=$(printf '%s\n' "$SUITE" "$BASE_PACKAGES" "$(sed -n '/^# --- the base/,/^# --- the image/p' "$0")" \
  | sha256sum | cut -c1-12)
BASE_TAR="$OUT_DIR/base-$SUITE-py3.11-$base_key.tar"
if [[ ! -f "$BASE_TAR" ]]; then
  mirror=$(sed -n 's/^URIs: *//p; s/^deb \[[^]]*\] *\([^ ]*\) .*/\1/p; s/^deb \(http[^ ]*\) .*/\1/p' \
    /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list 2>/dev/null | grep -m1 debian || true)
  mirror=${mirror:-http://deb.debian.org/debian}
  echo "building the base image: mmdebstrap $SUITE ($BASE_PACKAGES) from $mirror" >&2
  started=$(date +%s)
  work=$(mktemp -d "$OUT_DIR/.base.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  mmdebstrap --quiet --variant=minbase --include="$BASE_PACKAGES" \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --customize-hook='rm -rf "$1"/var/lib/apt/lists/*' \
    "$SUITE" "$work/rootfs.tar" "$mirror" >&2
  python3 - "$work" "$BASE_NAME" <<'PY'
import hashlib, json, os, sys
work, name = sys.argv[1], sys.argv[2]
digest = hashlib.sha256()
with open(os.path.join(work, "rootfs.tar"), "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
        digest.update(chunk)
config = {
    "architecture": "amd64", "os": "linux",
    "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"],
               "Cmd": ["python3"]},
    "rootfs": {"type": "layers", "diff_ids": ["sha256:" + digest.hexdigest()]},
    "history": [{"created_by": "mmdebstrap --variant=minbase (tools/image/build.sh)"}],
}
with open(os.path.join(work, "config.json"), "w") as f:
    json.dump(config, f)
with open(os.path.join(work, "manifest.json"), "w") as f:
    json.dump([{"Config": "config.json", "RepoTags": [name], "Layers": ["rootfs.tar"]}], f)
PY
  tar -C "$work" -cf "$work/image.tar" manifest.json config.json rootfs.tar
  mv "$work/image.tar" "$BASE_TAR"
  rm -rf "$work"; trap - EXIT
  echo "base image built in $(( $(date +%s) - started )) s: $BASE_TAR" >&2
fi

# --- the image ------------------------------------------------------------------------------------
# The build context exactly as .dockerignore admits it (an allow-list: metadata, README, operator/).
context_files() {
  cd "$REPO"
  printf '%s\n' pyproject.toml setup.py README.md
  find operator -type f ! -path '*/__pycache__/*' ! -name '*.pyc' ! -name '*.so' ! -path 'operator/*.egg-info/*' | LC_ALL=C sort
}
image_key=$( { echo "$base_key"; sed -n '/^# --- the image/,$p' "$0"; cat "$REPO/Dockerfile" "$REPO/.dockerignore";
  context_files | while read -r f; do echo "$f"; sha256sum < "$REPO/$f"; done; } | sha256sum | cut -c1-12)
IMAGE_TAR="$OUT_DIR/jwt-trust-$image_key.tar"
if [[ -f "$IMAGE_TAR" ]]; then echo "$IMAGE_TAR"; exit 0; fi

echo "building the operator image with buildah (BASE_IMAGE=$BASE_NAME)" >&2
started=$(date +%s)
work=$(mktemp -d "$OUT_DIR/.image.XXXXXX")
storage=(--storage-driver vfs --root "$work/storage" --runroot "$work/run")
cleanup() { buildah "${storage[@]}" rm --all >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
export BUILDAH_ISOLATION=chroot REGISTRIES_CONFIG_PATH="$work/registries.conf"
printf 'unqualified-search-registries = []\n' > "$REGISTRIES_CONFIG_PATH"
buildah "${storage[@]}" pull --quiet "docker-archive:$BASE_TAR" >/dev/null
ca=${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}
buildah "${storage[@]}" bud --quiet --isolation chroot --pull-never --layers=false \
  --build-arg "BASE_IMAGE=$BASE_NAME" --volume "$ca:/etc/ssl/certs/ca-certificates.crt:ro" \
  --tag "$IMAGE_NAME" -f "$REPO/Dockerfile" "$REPO" >&2
buildah "${storage[@]}" push --quiet "$IMAGE_NAME" "docker-archive:$work/image.tar:$IMAGE_NAME" >&2
mv "$work/image.tar" "$IMAGE_TAR"
# Every change to the build context (README.md included) makes a new image: keep the three newest.
find "$OUT_DIR" -maxdepth 1 -name 'jwt-trust-*.tar' -printf '%T@ %p\n' | sort -rn | tail -n +4 | cut -d' ' -f2- \
  | xargs -r rm -f
echo "operator image built in $(( $(date +%s) - started )) s: $IMAGE_TAR" >&2
echo "$IMAGE_TAR"
