#!/usr/bin/env bash
# Installs (as root, with apt-get, only when missing) the Debian packages the local node and the image
# build need: containerd and runc (the container runtime), containernetworking-plugins (CNI bridge,
# host-local, loopback), iptables and conntrack (kube-proxy), mmdebstrap (the image's Debian base) and
# buildah (builds the Dockerfile without a daemon). Debian's, not the Go module proxy's: they are the
# versions this machine's kernel and libc were tested with, and runc/containerd need cgo and
# libseccomp, which the proxy-only Go builds here do not have.
set -euo pipefail
PACKAGES=(containerd runc containernetworking-plugins iptables conntrack mmdebstrap buildah)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "warning: missing ${missing[*]} and cannot install them (needs root and apt-get): the node tests will fail" >&2
  exit 0
fi
echo "installing ${missing[*]}" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
