#!/bin/bash
# Runs one command (normally podman) against an isolated podman instance made by test/helpers/podman.ts.
#   podman-env.sh --version 4|5 --dir INSTANCE_DIR [--chroot DIR] [--bind DIR]... -- COMMAND [ARGS...]
# INSTANCE_DIR holds storage.conf, containers.conf, registries.conf (written by podman.ts) and the
# state dirs graph/ run/ cache/ tmp/. The command runs in a private mount namespace
# (unshare -m --propagation slave), so every mount podman makes (overlay, bind, the fixes below)
# disappears with the namespace and nothing reaches the host's mount table.
# Fixes this VM needs (see docs of the shared e2e recipe):
#  - crun refuses hybrid cgroup v1+v2 ("cgroups in hybrid mode not supported"): unmount the cgroup2
#    mount /sys/fs/cgroup/unified inside the namespace;
#  - c/image's blob-info cache lives at /var/lib/containers/cache whatever storage.conf says: bind
#    the instance's cache/ over it, so instances (and the host) never share it;
#  - podman 5 runs in the trixie chroot. c/storage's chrootarchive needs the chroot's "/" to be a
#    mount point (else "remount /, flags: 0x44000: invalid argument"): bind the chroot on itself.
#    /proc /sys /dev (with /dev/fuse) are rbind-mounted in, and so are INSTANCE_DIR and every --bind
#    DIR, at the same paths, with the mounts below them (a FUSE ALS must be mounted before the call).
# The environment gets LAZY_ALS_TEST_PODMAN=INSTANCE_DIR: scripts/teardown.sh and cleanup() find
# stray processes of this instance by it, and nothing else.
set -euo pipefail
die() { printf 'podman-env.sh: %s\n' "$*" >&2; exit 125; }

IN_NS=0; VER=""; DIR=""; CHROOT=""; BINDS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --in-ns) IN_NS=1; shift;;
    --version) VER=${2:-}; shift 2;;
    --dir) DIR=${2:-}; shift 2;;
    --chroot) CHROOT=${2:-}; shift 2;;
    --bind) BINDS+=("${2:-}"); shift 2;;
    --) shift; break;;
    *) die "unknown option $1";;
  esac
done
case "$VER" in 4|5) ;; *) die "--version 4|5 required";; esac
case "$DIR" in /*) ;; *) die "--dir must be an absolute path";; esac
[ $# -gt 0 ] || die "no command"
[ -f "$DIR/storage.conf" ] || die "$DIR/storage.conf missing (made by podman.ts)"
[ "$(id -u)" = 0 ] || die "must run as root"

if [ $IN_NS = 0 ]; then
  args=(--in-ns --version "$VER" --dir "$DIR")
  [ -n "$CHROOT" ] && args+=(--chroot "$CHROOT")
  for b in "${BINDS[@]}"; do args+=(--bind "$b"); done
  exec unshare -m --propagation slave /bin/bash "$0" "${args[@]}" -- "$@"
fi

ENVS=(CONTAINERS_STORAGE_CONF="$DIR/storage.conf" CONTAINERS_CONF="$DIR/containers.conf"
      CONTAINERS_REGISTRIES_CONF="$DIR/registries.conf" PODMAN_IGNORE_CGROUPSV1_WARNING=1
      TMPDIR="$DIR/tmp" LAZY_ALS_TEST_PODMAN="$DIR")
mkdir -p "$DIR/cache" "$DIR/tmp" "$DIR/crun"

if [ "$VER" = 4 ]; then
  if mountpoint -q /sys/fs/cgroup/unified; then umount -l /sys/fs/cgroup/unified; fi
  mkdir -p /var/lib/containers/cache
  mount --bind "$DIR/cache" /var/lib/containers/cache
  # crun keeps container state in /run/crun (no --root from podman): per instance, so a container
  # left behind by a test leaves nothing on the host
  mkdir -p /run/crun
  mount --bind "$DIR/crun" /run/crun
  exec /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root "${ENVS[@]}" "$@"
fi

R=$CHROOT
[ -n "$R" ] || die "--chroot required for podman 5"
[ -x "$R/usr/bin/podman" ] || die "$R has no podman: run test/e2e/setup-chroot.sh"
mount --bind "$R" "$R"
mount --rbind /proc "$R/proc"
mount --rbind /sys "$R/sys"
if mountpoint -q "$R/sys/fs/cgroup/unified"; then umount -l "$R/sys/fs/cgroup/unified"; fi
mount --rbind /dev "$R/dev"
# the chroot's /tmp and /run are per instance (INSTANCE_DIR/chroot-{tmp,run}): mount points made
# for the binds below and podman's files there stay out of the shared chroot, and they persist
# between calls of one instance (crun's container state lives in /run/crun: a later
# "podman stop/rm" needs it)
mkdir -p "$DIR/chroot-tmp" "$DIR/chroot-run"
chmod 1777 "$DIR/chroot-tmp"
mount --bind "$DIR/chroot-tmp" "$R/tmp"
mount --bind "$DIR/chroot-run" "$R/run"
for d in "$DIR" "${BINDS[@]}"; do
  # a missing dir (e.g. an ALS dir a test removed on purpose) is left for podman to complain about
  [ -d "$d" ] || { printf 'podman-env.sh: warning: %s is not a directory, not bound into the chroot\n' "$d" >&2; continue; }
  mkdir -p "$R$d"
  mount --rbind "$d" "$R$d"
done
mkdir -p "$R/var/lib/containers/cache"
mount --bind "$DIR/cache" "$R/var/lib/containers/cache"
cd /
exec chroot "$R" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  HOME=/root "${ENVS[@]}" "$@"
