#!/bin/bash
# Removes what tests can leave behind after a crash or an interrupted run (root). Run it when no
# test is running: it stops test processes and deletes test temp dirs.
#   scripts/teardown.sh            remove containers of podman instances, stop stray test
#                                  processes, unmount, delete the temp dirs
#   scripts/teardown.sh --dry-run  only print what would be done
#   scripts/teardown.sh --purge    also delete the caches in $LAZY_ALS_TEST_VAR (trixie chroot,
#                                  debootstrap rootfs); setup is then slow again
# The only places it touches ("test paths"):
#   ${TMPDIR:-/tmp}/lazy-als-*      temp dirs of tests and helpers (mkdtemp 'lazy-als-…'), including
#   $LAZY_ALS_TEST_TMP              default ${TMPDIR:-/tmp}/lazy-als-test (test/helpers makeTestDir)
#   $LAZY_ALS_TEST_VAR              default /var/lib/lazy-als-test (chroot, rootfs cache; mounts only,
#                                   deleted with --purge)
# A process is stopped only if one of these holds (nothing is ever killed by name alone):
#   1. its environment has LAZY_ALS_TEST_PODMAN=<test path> (test/helpers/podman-env.sh sets it);
#   2. it is a container whose root is an overlay with upperdir in a test path;
#   3. one of its arguments is a test path AND its command is docker-registry, lazy-als
#      (node …lazy-als…), conmon, podman, crun, skopeo, unshare, fuse-overlayfs, bindfs, strace,
#      containerd, ctr-remote (the eStargz fixtures' private containerd: --config <test path>),
#      or bash/sh running test/helpers/*.sh (conmon's arguments name the podman instance dir, a
#      test registry's its config file);
#   4. its pid is in a *.pid file in a test path AND its command line names docker-registry,
#      lazy-als, conmon, podman or containerd.
set -euo pipefail
ROOT=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
T=${TMPDIR:-/tmp}; T=${T%/}
PREFIX="$T/lazy-als-"
TMP_ROOT=${LAZY_ALS_TEST_TMP:-$T/lazy-als-test}
VAR_ROOT=${LAZY_ALS_TEST_VAR:-/var/lib/lazy-als-test}
DRY=0; PURGE=0
for a in "$@"; do
  case "$a" in --dry-run) DRY=1;; --purge) PURGE=1;; *) echo "usage: $0 [--dry-run] [--purge]" >&2; exit 2;; esac
done
log() { printf '[teardown %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
[ "$(id -u)" = 0 ] || { log "run as root"; exit 1; }
for r in "$TMP_ROOT" "$VAR_ROOT" "$PREFIX"; do
  case "$r" in /?*/?*) ;; *) log "refusing suspicious path '$r'"; exit 1;; esac
done

test_path() { # PATH -> 0 if it is a test path
  local p=$1 r
  case "$p" in "$PREFIX"?*) return 0;; esac
  for r in "$TMP_ROOT" "$VAR_ROOT"; do
    if [ "$p" = "$r" ] || [ "${p#"$r"/}" != "$p" ]; then return 0; fi
  done
  return 1
}
# mount points of this namespace, decoded (\040 = space), one per line
mount_points() { awk '{ m = $5; gsub(/\\040/, " ", m); print m }' /proc/self/mountinfo; }

# ---- 1. podman instances (test/helpers/podman.ts): remove their containers the proper way ----
if [ -d "$TMP_ROOT" ]; then
  while IFS= read -r -d '' f; do
    d=$(dirname "$f"); VERSION=""; CHROOT=""
    VERSION=$(sed -n 's/^VERSION=//p' "$f"); CHROOT=$(sed -n 's/^CHROOT=//p' "$f")
    [ -f "$d/storage-noals.conf" ] && [ -d "$d/graph/overlay-containers" ] || continue
    log "podman $VERSION rm -af in $d"
    [ $DRY = 1 ] && continue
    args=(--version "$VERSION" --dir "$d"); [ "$VERSION" = 5 ] && args+=(--chroot "$CHROOT")
    timeout 120 bash "$ROOT/test/helpers/podman-env.sh" "${args[@]}" -- \
      env CONTAINERS_STORAGE_CONF="$d/storage-noals.conf" podman rm -af -t 0 >/dev/null 2>&1 \
      || log "podman rm in $d failed (processes are killed below)"
  done < <(find "$TMP_ROOT" -xdev -maxdepth 3 -name instance.env -type f -print0 2>/dev/null)
fi

# ---- 2. processes ----
is_ours() { # PID
  local pid=$1 env cmd comm a v
  if [ "$pid" = $$ ] || [ "$pid" = "$PPID" ]; then return 1; fi
  env=$(tr '\0' '\n' 2>/dev/null < "/proc/$pid/environ") || return 1
  v=$(printf '%s\n' "$env" | sed -n 's/^LAZY_ALS_TEST_PODMAN=//p' | head -1)
  if [ -n "$v" ] && test_path "$v"; then return 0; fi
  cmd=$(tr '\0' '\n' 2>/dev/null < "/proc/$pid/cmdline") || return 1
  [ -n "$cmd" ] || return 1 # zombie or kernel thread
  # a container: its "/" is an overlay whose upperdir is in a test path
  v=$(awk '$5 == "/" { for (i = 1; i <= NF; i++) if ($i ~ /upperdir=/) { sub(/.*upperdir=/, "", $i); sub(/,.*/, "", $i); print $i; exit } }' \
      2>/dev/null < "/proc/$pid/mountinfo") || v=""
  if [ -n "$v" ] && test_path "$v"; then return 0; fi
  comm=$(cat 2>/dev/null < "/proc/$pid/comm") || return 1
  case "$comm" in
    docker-registry|registry|lazy-als|conmon|podman|crun|skopeo|unshare|fuse-overlayfs|bindfs|strace|containerd|ctr-remote) ;;
    node) printf '%s\n' "$cmd" | grep -q 'lazy-als' || return 1;;
    bash|sh) printf '%s\n' "$cmd" | grep -q 'test/helpers/.*\.sh$' || return 1;;
    *) return 1;;
  esac
  while IFS= read -r a; do
    a=${a#--*=}
    if test_path "$a"; then return 0; fi
  done <<< "$cmd"
  return 1
}
declare -A victims=()
for d in /proc/[0-9]*; do
  pid=${d#/proc/}
  if is_ours "$pid"; then victims[$pid]=1; fi
done
for r in "$TMP_ROOT" "$VAR_ROOT" "$PREFIX"*; do
  [ -d "$r" ] || continue
  while IFS= read -r -d '' f; do
    pid=$(tr -dc '0-9' < "$f" | head -c 10)
    [ -n "$pid" ] && [ -d "/proc/$pid" ] || continue
    if tr '\0' ' ' 2>/dev/null < "/proc/$pid/cmdline" | grep -qE 'docker-registry|lazy-als|conmon|podman|containerd'; then
      victims[$pid]=1
    fi
  done < <(find "$r" -xdev -name '*.pid' -type f -print0 2>/dev/null)
done
alive() { [ -d "/proc/$1" ] && [ -n "$(tr -d '\0' 2>/dev/null < "/proc/$1/cmdline")" ]; }
if [ ${#victims[@]} -gt 0 ]; then
  for pid in "${!victims[@]}"; do
    log "stopping pid $pid: $(tr '\0' ' ' 2>/dev/null < "/proc/$pid/cmdline" | cut -c1-160)"
  done
  if [ $DRY = 0 ]; then
    kill -TERM "${!victims[@]}" 2>/dev/null || true
    for _ in $(seq 30); do
      n=0; for pid in "${!victims[@]}"; do alive "$pid" && n=$((n + 1)); done
      [ $n = 0 ] && break
      sleep 0.1
    done
    # container init processes (pid 1 in their pid namespace) ignore SIGTERM
    for pid in "${!victims[@]}"; do alive "$pid" && kill -KILL "$pid" 2>/dev/null || true; done
  fi
else
  log "no stray test processes"
fi

# ---- 3. mounts (deepest first; lazy, so busy or dead FUSE mounts go too) ----
mapfile -t mounts < <(mount_points | while IFS= read -r m; do
  if test_path "$m"; then printf '%s\n' "$m"; fi
done | awk '{ print length($0) "\t" $0 }' | sort -rn | cut -f2-)
if [ ${#mounts[@]} -gt 0 ]; then
  for m in "${mounts[@]}"; do
    log "unmounting $m"
    [ $DRY = 1 ] && continue
    umount -l "$m" 2>/dev/null || fusermount3 -uz "$m" 2>/dev/null || fusermount -uz "$m" 2>/dev/null \
      || log "could not unmount $m"
  done
else
  log "nothing mounted in test paths"
fi

# ---- 4. files ----
rmtree() {
  [ -e "$1" ] || return 0
  log "removing $1"
  [ $DRY = 1 ] && return 0
  if mount_points | awk -v p="$1" '$0 == p || index($0, p "/") == 1 { f = 1 } END { exit !f }'; then
    log "still mounted under $1: not removing"; return 0
  fi
  rm -rf --one-file-system -- "$1"
}
rmtree "$TMP_ROOT"
for d in "$PREFIX"*; do [ -d "$d" ] && rmtree "$d"; done
if [ $PURGE = 1 ]; then rmtree "$VAR_ROOT"; fi
log "done"
