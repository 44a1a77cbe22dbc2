#!/bin/bash
# Idempotent set-up for lazy-als on Debian 12: system packages, npm packages, build.
# Fast when everything is already there. Run as root (apt-get, FUSE mounts).
#   scripts/setup.sh            packages needed to run the store and the unit/integration tests
#   scripts/setup.sh --e2e      also a Debian 13 chroot with podman 5 (for fixtures and e2e tests)
set -euo pipefail
ROOT=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
cd "$ROOT"
log() { printf '[setup %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
WANT_E2E=0
for a in "$@"; do case "$a" in --e2e) WANT_E2E=1;; *) echo "usage: $0 [--e2e]" >&2; exit 2;; esac; done

# Run-time: libfuse2 (fuse-native links libfuse.so.2), fuse3 (fusermount3, /etc/fuse.conf);
# build: libfuse3-dev + pkg-config for the native backend (native/, built by scripts/build-native.sh).
# Tests: a real registry, podman/skopeo to make and consume images, debootstrap for rootfs fixtures,
# attr/libcap2-bin to check xattrs and capabilities, zstd/curl as independent tools.
PKGS="libfuse2 fuse3 docker-registry podman skopeo crun fuse-overlayfs conmon catatonit uidmap
      zstd curl attr libcap2-bin debootstrap busybox-static strace jq iproute2 util-linux
      build-essential python3 apache2-utils containerd stargz-snapshotter
      python3-prometheus-client libfuse3-dev pkg-config"
missing=()
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { log "need root to install: ${missing[*]}"; exit 1; }
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm packages: the reproducible install from the committed lock, only when the lock changed since the
# last install (the stamp is a copy of the lock `npm ci` installed; `npm ci` removes node_modules first).
STAMP=node_modules/.lazy-als-lock
if [ ! -f "$STAMP" ] || ! cmp -s package-lock.json "$STAMP"; then
  log "npm ci (from package-lock.json)"
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json "$STAMP"
fi

log "build"
npm run --silent build
# The native FUSE backend (C, node-gyp against the local node's headers; libfuse3-dev above).
bash "$ROOT/scripts/build-native.sh"

if [ $WANT_E2E = 1 ]; then
  bash "$ROOT/test/e2e/setup-chroot.sh"
fi
log "ready"
