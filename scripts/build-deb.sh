#!/bin/bash
# Build the Debian package of lazy-als: scripts/build-deb.sh [OUTDIR]  →  OUTDIR/lazy-als_<version>_<arch>.deb
#
# Installs:
#   /usr/lib/lazy-als/       dist/ (compiled daemon and CLI), bin/, package.json, production-only
#                            node_modules, the native FUSE addon (when built), and the node binary
#                            the addons were built against (Debian 12's nodejs is 18; lazy-als needs 20)
#   /usr/bin/lazy-als, /usr/bin/lazy-als-auth-helper     launchers
#   /lib/systemd/system/lazy-als.service                 not enabled by the package: `systemctl enable --now lazy-als`
#   /etc/lazy-als/config.toml                            conffile (every key, at its default)
#   /usr/share/lazy-als/storage.conf.d/50-lazy-als.conf  drop-in example for containers/storage
#   /usr/share/doc/lazy-als/                             README, metrics reference, copyright
# Remove stops the service and unmounts the store; purge also deletes /var/lib/lazy-als (the cache).
# Needs: node/npm (the build), dpkg-deb, fakeroot. Builds src/ and native/ first.
set -euo pipefail
ROOT=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
OUT=$(readlink -f "${1:-$ROOT/build}")
cd "$ROOT"

VERSION=$(node -p "require('./package.json').version")
ARCH=$(dpkg --print-architecture)
NODE=$(command -v node)
NODE_VERSION=$(node -p 'process.versions.node')

echo "build-deb: building dist/ and the native addon" >&2
npm run -s build
if [ -f scripts/build-native.sh ]; then bash scripts/build-native.sh >&2 || echo "build-deb: native addon not built; the package serves with fuse-native only" >&2; fi

STAGE=$(mktemp -d "${TMPDIR:-/tmp}/lazy-als-deb.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
PKG="$STAGE/pkg"
LIB="$PKG/usr/lib/lazy-als"
mkdir -p "$LIB/bin" "$PKG/usr/bin" "$PKG/lib/systemd/system" "$PKG/etc/lazy-als" \
  "$PKG/usr/share/lazy-als/storage.conf.d" "$PKG/usr/share/doc/lazy-als" "$PKG/DEBIAN"

# The application: compiled JS, launchers, manifest and lock (for the prune below).
cp -a dist "$LIB/dist"
cp -a bin/lazy-als.js bin/lazy-als-auth-helper.js "$LIB/bin/"
cp package.json package-lock.json "$LIB/"
# Production dependencies only: exactly the packages `npm ls --omit=dev` resolves, copied from the
# installed tree (no registry access; dev tools, their platform binaries and caches stay behind).
npm ls --omit=dev --all --parseable 2>/dev/null | grep '/node_modules/' | sort | while read -r p; do
  rel=${p#"$ROOT"/}
  [ -e "$LIB/$rel" ] && continue
  mkdir -p "$LIB/$(dirname "$rel")"
  cp -a "$p" "$LIB/$(dirname "$rel")/"
done
rm -f "$LIB/package-lock.json"
if [ -f native/build/Release/lazy_als_native.node ]; then
  mkdir -p "$LIB/native/build/Release"
  cp native/build/Release/lazy_als_native.node "$LIB/native/build/Release/"
fi
# The node the addons were built for (N-API, but one binary keeps the package self-contained).
install -m 0755 "$NODE" "$LIB/node"

for cmd in lazy-als lazy-als-auth-helper; do
  cat >"$PKG/usr/bin/$cmd" <<EOF
#!/bin/sh
exec /usr/lib/lazy-als/node /usr/lib/lazy-als/bin/$cmd.js "\$@"
EOF
  chmod 0755 "$PKG/usr/bin/$cmd"
done

install -m 0644 contrib/lazy-als.service "$PKG/lib/systemd/system/lazy-als.service"
# the rootless store: `systemctl --user enable --now lazy-als` (docs/rootless.md)
install -D -m 0644 contrib/lazy-als-user.service "$PKG/usr/lib/systemd/user/lazy-als.service"
install -m 0644 contrib/lazy-als.conf "$PKG/etc/lazy-als/config.toml"
install -m 0644 contrib/storage.conf.d/50-lazy-als.conf "$PKG/usr/share/lazy-als/storage.conf.d/50-lazy-als.conf"
install -m 0644 README.md "$PKG/usr/share/doc/lazy-als/README.md"
for d in metrics rootless; do [ -f docs/$d.md ] && install -m 0644 docs/$d.md "$PKG/usr/share/doc/lazy-als/$d.md"; done
printf 'lazy-als\nLicense: Apache-2.0\nBundles node %s (MIT and others, see https://nodejs.org/) and the npm packages under /usr/lib/lazy-als/node_modules (each with its own license file).\n' "$NODE_VERSION" \
  >"$PKG/usr/share/doc/lazy-als/copyright"

SIZE=$(du -sk "$PKG" | cut -f1)
cat >"$PKG/DEBIAN/control" <<EOF
Package: lazy-als
Version: $VERSION
Architecture: $ARCH
Maintainer: lazy-als maintainers <lazy-als@localhost>
Installed-Size: $SIZE
Depends: fuse3, libfuse2, libfuse3-3, ca-certificates
Recommends: podman
Section: admin
Priority: optional
Description: lazy-pulling Additional Layer Store for podman, buildah and CRI-O
 Point containers/storage at it and podman pull of an eStargz or zstd:chunked
 image returns after reading only each layer's table of contents; file
 contents are fetched on first read, verified against their recorded sha256,
 and kept in an on-disk cache that survives restarts.
EOF
echo /etc/lazy-als/config.toml >"$PKG/DEBIAN/conffiles"

cat >"$PKG/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = configure ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload || true
  # An upgrade restarts a running store; a first install leaves enabling to the admin.
  if systemctl is-active --quiet lazy-als.service; then systemctl restart lazy-als.service || true; fi
fi
exit 0
EOF
cat >"$PKG/DEBIAN/prerm" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = remove ] || [ "$1" = deconfigure ]; then
  if [ -d /run/systemd/system ]; then
    systemctl disable --now lazy-als.service >/dev/null 2>&1 || true
  fi
  # Whatever mounted the default store (the unit, or a daemon killed earlier): never leave it behind.
  if grep -qs ' /var/lib/lazy-als/store fuse' /proc/mounts; then
    fusermount3 -uz /var/lib/lazy-als/store 2>/dev/null || umount -l /var/lib/lazy-als/store 2>/dev/null || true
  fi
fi
exit 0
EOF
cat >"$PKG/DEBIAN/postrm" <<'EOF'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then systemctl daemon-reload >/dev/null 2>&1 || true; fi
if [ "$1" = purge ]; then
  # The cache and state: only once nothing is mounted there.
  if ! grep -qs ' /var/lib/lazy-als' /proc/mounts; then rm -rf /var/lib/lazy-als; fi
  rm -rf /run/lazy-als
  rmdir /etc/lazy-als 2>/dev/null || true
fi
exit 0
EOF
chmod 0755 "$PKG/DEBIAN/postinst" "$PKG/DEBIAN/prerm" "$PKG/DEBIAN/postrm"

mkdir -p "$OUT"
DEB="$OUT/lazy-als_${VERSION}_${ARCH}.deb"
fakeroot dpkg-deb -Zzstd -z3 --build "$PKG" "$DEB" >&2
echo "$DEB"
