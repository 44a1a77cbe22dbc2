#!/bin/bash
# Idempotent creation of a Debian 13 (trixie) chroot holding podman 5, used by the test harness
# (test/helpers/podman.ts) to make zstd:chunked fixtures and to run podman 5 end-to-end tests.
#   LAZY_ALS_CHROOT   chroot directory (default /var/lib/lazy-als-test/trixie)
# Stages, each with its own marker so an interrupted run resumes or redoes only what is unfinished:
#   1. debootstrap --variant=minbase trixie into "$R.partial", then rename to "$R" (a half-made
#      debootstrap never sits at "$R"; a stale "$R.partial" is deleted and redone);
#   2. apt-get install of $CHROOT_PKGS inside the chroot (dpkg --configure -a first, in case a
#      previous install was killed), in a private mount namespace so the /proc /sys /dev mounts
#      vanish with it; marker "$R/.lazy-als-ready" holds the package list;
#   3. $CHROOT_EXTRA_PKGS (uidmap: newuidmap/newgidmap for rootless podman 5) when missing, added
#      to a ready chroot without taking it out of service (its marker stays).
# The mirror comes from /etc/apt/sources.list.d/debian.sources (or sources.list): never hard-coded.
set -euo pipefail
R=${LAZY_ALS_CHROOT:-/var/lib/lazy-als-test/trixie}
CHROOT_PKGS="podman skopeo crun fuse-overlayfs conmon catatonit zstd ca-certificates"
CHROOT_EXTRA_PKGS="uidmap"
MARK="$R/.lazy-als-ready"
STAGE1="$R/.lazy-als-debootstrap-done"
log() { printf '[setup-chroot %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

ready() { [ -f "$MARK" ] && [ "$(cat "$MARK")" = "$CHROOT_PKGS" ] && [ -x "$R/usr/bin/podman" ]; }
extras_ready() { [ -x "$R/usr/bin/newuidmap" ] && [ -x "$R/usr/bin/newgidmap" ]; }
# fast path (no lock, no root needed): nothing to do
if ready && extras_ready; then log "chroot $R ready"; exit 0; fi

[ "$(id -u)" = 0 ] || die "run as root (debootstrap, chroot, mounts)"
T0=$(now)
case "$R" in /*) ;; *) die "LAZY_ALS_CHROOT must be absolute: $R";; esac
[ "$R" != / ] || die "LAZY_ALS_CHROOT must not be /"
mkdir -p "$(dirname "$R")"
# serialize concurrent runs (parallel test workers, a second terminal)
exec 9> "$R.lock"
flock 9

# ---- stage 3 (defined here, run last): extra packages into a ready chroot ----
install_extras() {
  extras_ready && return 0
  log "apt-get install in chroot (extras): $CHROOT_EXTRA_PKGS"
  # shellcheck disable=SC2016
  unshare -m --propagation slave /bin/bash -ec '
    R=$1; shift
    mount --rbind /proc "$R/proc"; mount --rbind /sys "$R/sys"; mount --rbind /dev "$R/dev"
    exec chroot "$R" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
      DEBIAN_FRONTEND=noninteractive /bin/sh -ec "
        apt-get update -q >/dev/null
        apt-get install -y -q --no-install-recommends $* >/dev/null
        apt-get clean"
  ' bash "$R" $CHROOT_EXTRA_PKGS > "$R.extras.log" 2>&1 || { tail -20 "$R.extras.log" >&2; die "extra package install in chroot failed (log $R.extras.log)"; }
  extras_ready || die "$CHROOT_EXTRA_PKGS installed but newuidmap/newgidmap missing in $R"
}
if ready; then install_extras; log "chroot $R ready"; exit 0; fi

# Anything mounted under a directory we are about to delete? Our mounts live only in private
# namespaces, so this means someone else's mount: refuse rather than delete through it.
mounted_under() {
  awk -v p="$1" '{ m = $5; gsub(/\\040/, " ", m); if (m == p || index(m, p "/") == 1) { print m; f = 1 } } END { exit !f }' /proc/self/mountinfo
}
safe_rm() {
  [ -e "$1" ] || return 0
  if mounted_under "$1" >/dev/null; then die "mounts under $1 (run scripts/teardown.sh): $(mounted_under "$1" | head -3 | tr '\n' ' ')"; fi
  rm -rf --one-file-system "$1"
}

mirror_url() {
  local u=""
  if [ -r /etc/apt/sources.list.d/debian.sources ]; then
    u=$(awk '$1 == "URIs:" { print $2; exit }' /etc/apt/sources.list.d/debian.sources)
  fi
  if [ -z "$u" ] && [ -r /etc/apt/sources.list ]; then
    u=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { print $i; exit } }' /etc/apt/sources.list)
  fi
  [ -n "$u" ] || die "no Debian mirror found in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list"
  printf '%s\n' "$u"
}

# ---- stage 1: debootstrap ----
if [ -d "$R" ] && [ ! -f "$STAGE1" ]; then
  log "$R exists but debootstrap never finished there: removing it"
  safe_rm "$R"
fi
if [ ! -d "$R" ]; then
  command -v debootstrap >/dev/null || die "debootstrap missing (scripts/setup.sh installs it)"
  P="$R.partial"
  safe_rm "$P"
  MIRROR=$(mirror_url)
  log "debootstrap --variant=minbase trixie $R (mirror from apt sources: $MIRROR)"
  t=$(now)
  # debootstrap mounts /proc and /sys in the target itself: a private namespace makes sure an
  # interrupted run cannot leave them mounted on the host
  if ! unshare -m --propagation slave debootstrap --variant=minbase trixie "$P" "$MIRROR" \
      > "$R.debootstrap.log" 2>&1; then
    tail -20 "$R.debootstrap.log" >&2
    die "debootstrap failed (log $R.debootstrap.log)"
  fi
  date -u +%FT%TZ > "$P/.lazy-als-debootstrap-done"
  mv -T "$P" "$R"
  log "debootstrap took $(since "$t")"
fi

# ---- stage 2: packages ----
rm -f "$MARK"
# An interrupted run can leave dpkg running on its own: apt starts it in a new session (on a pty),
# so killing our process group misses it, and it holds the dpkg lock for a while. Wait for every
# process whose root is this chroot (none can be a test: the chroot is not ready).
for i in $(seq 300); do
  busy=$(for p in /proc/[0-9]*; do [ "$(readlink "$p/root" 2>/dev/null)" = "$R" ] && printf '%s ' "${p#/proc/}"; done; true)
  [ -z "$busy" ] && break
  [ "$i" = 1 ] && log "waiting for processes still running in $R (an interrupted install?): $busy"
  [ "$i" = 300 ] && die "processes still running in $R after 300 s: $busy"
  sleep 1
done
cp -L /etc/resolv.conf "$R/etc/resolv.conf" 2>/dev/null || true
# no daemons started from maintainer scripts inside the chroot
printf '#!/bin/sh\nexit 101\n' > "$R/usr/sbin/policy-rc.d"; chmod 755 "$R/usr/sbin/policy-rc.d"
log "apt-get install in chroot: $CHROOT_PKGS"
t=$(now)
# shellcheck disable=SC2016
unshare -m --propagation slave /bin/bash -ec '
  R=$1; shift
  mount --rbind /proc "$R/proc"; mount --rbind /sys "$R/sys"; mount --rbind /dev "$R/dev"
  exec chroot "$R" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
    DEBIAN_FRONTEND=noninteractive /bin/sh -ec "
      dpkg --configure -a >/dev/null
      apt-get update -q >/dev/null
      apt-get install -y -q --no-install-recommends $* >/dev/null
      apt-get clean"
' bash "$R" $CHROOT_PKGS > "$R.install.log" 2>&1 || { tail -20 "$R.install.log" >&2; die "package install in chroot failed (log $R.install.log)"; }
log "chroot install took $(since "$t")"
[ -x "$R/usr/bin/podman" ] || die "podman missing in $R after install"
printf '%s' "$CHROOT_PKGS" > "$MARK"
install_extras
log "chroot $R ready: podman $(chroot "$R" dpkg-query -W -f='${Version}' podman) in $(since "$T0")"
