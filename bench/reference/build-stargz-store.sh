#!/usr/bin/env bash
# Builds the reference store the benchmarks compare against (bench/e2e/reference-store.ts):
# a minimal stargz-store command (bench/reference/stargz-store/main.go) over the store package of
# Debian's golang-github-containerd-stargz-snapshotter-dev, in GOPATH mode against /usr/share/gocode
# (Debian's Go library packages; no network). Output: bench/reference/.build/stargz-store.
#
#   apt-get install golang-go golang-github-containerd-stargz-snapshotter-dev   (once, ~270 packages)
#   bash bench/reference/build-stargz-store.sh
#   install -m 0755 bench/reference/.build/stargz-store /usr/local/bin/   (optional: outlives the packages)
# The Go library packages add ~500 MiB under /usr/share (bench/formats/inspect-extract.mjs tars
# /usr/share): remove them once the binary is installed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out="$here/.build"
for need in /usr/bin/go /usr/share/gocode/src/github.com/containerd/stargz-snapshotter/store; do
  [ -e "$need" ] || { echo "build-stargz-store: $need missing: apt-get install golang-go golang-github-containerd-stargz-snapshotter-dev" >&2; exit 1; }
done
mkdir -p "$out/gopath/src"
ln -sfn "$here/stargz-store" "$out/gopath/src/stargz-store"
cd "$out/gopath/src/stargz-store"
GO111MODULE=off GOPATH="$out/gopath:/usr/share/gocode" GOCACHE="$out/cache" GOFLAGS= go build -o "$out/stargz-store" .
echo "built $out/stargz-store"
