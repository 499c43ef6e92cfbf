#!/usr/bin/env bash
# Run a command (default: `make test`) on a fresh Debian 12 machine, the way container-based CI does:
# a debootstrap'd bookworm root (variant minbase, plus only git, make and python3, i.e. Debian's own
# Python 3.11.2), the committed HEAD cloned into it, and the command run there as root in a chroot.
# Everything else (Debian packages, venvs) must come from the project's own `make setup`.
#
#   hack/fresh-debian.sh [COMMAND ...]          e.g.  hack/fresh-debian.sh make demo
#
# Run as root on a Debian host. Only committed work is tested (the root gets a clone, not the work tree).
# The root is built anew each run under FRESH_ROOT (default .build/fresh-root) and kept afterwards for
# inspection; the lab inside shares the host's network namespace, so don't run a second lab meanwhile.
# FRESH_MIRROR overrides the Debian mirror (default: the host's configured one).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
root=${FRESH_ROOT:-$repo/.build/fresh-root}
suite=bookworm
if [ "$#" -eq 0 ]; then set -- make test; fi

log() { printf 'fresh-debian: %s\n' "$*"; }
die() { printf 'fresh-debian: %s\n' "$*" >&2; exit 2; }

[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap, chroot, mounts)"
commit=$(git -C "$repo" rev-parse HEAD) || die "$repo is not a git checkout"

# The Debian mirror this host is configured with (deb822 sources first, then a one-line sources.list).
host_mirror() {
  local uri
  uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1 || true)
  [ -n "$uri" ] || uri=$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  printf '%s' "${uri:-http://deb.debian.org/debian}"
}
mirror=${FRESH_MIRROR:-$(host_mirror)}

# Processes started inside the root (a lab left by a failed test) would keep its mounts busy.
stop_processes_in_root() {
  local pid link
  for pid in /proc/[0-9]*; do
    link=$(readlink "$pid/root" 2>/dev/null) || continue
    if [ "$link" = "$root" ]; then kill -KILL "${pid#/proc/}" 2>/dev/null || true; fi
  done
}

unmount_root() {
  local target
  stop_processes_in_root
  # Deepest mount points first; a lazy unmount if one is still busy.
  while read -r target; do
    umount "$target" 2>/dev/null || umount -l "$target" 2>/dev/null || true
  done < <(findmnt -rn -o TARGET | awk -v r="$root" 'index($0, r "/") == 1' | sort -r)
}

remove_root() {
  unmount_root
  if findmnt -rn -o TARGET | awk -v r="$root" 'index($0, r "/") == 1' | grep -q .; then
    die "mounts remain under $root; not removing it"
  fi
  # --one-file-system: never follow into a mount (e.g. a bind of the host's /dev) that survived.
  rm -rf --one-file-system "$root"
}

if ! command -v debootstrap >/dev/null; then
  log "installing debootstrap on the host"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi

[ -e "$root" ] && remove_root
mkdir -p "$(dirname "$root")"
started=$SECONDS
log "building a Debian 12 ($suite) root from $mirror in $root"
if ! debootstrap --variant=minbase --include=ca-certificates,git,make,python3 \
    "$suite" "$root" "$mirror" >"$root.debootstrap.log" 2>&1; then
  tail -n 20 "$root.debootstrap.log" >&2
  die "debootstrap failed (log: $root.debootstrap.log)"
fi
log "root built in $((SECONDS - started)) s: $(chroot "$root" python3 --version), $(chroot "$root" dpkg-query -W | wc -l) packages"

# Reach the package registries as this host does: its name resolution, CA bundle (the registries may
# sit behind a TLS proxy whose CA only the host's bundle has), pip configuration and apt sources.
cp -L /etc/resolv.conf "$root/etc/resolv.conf"
cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
if compgen -G '/usr/local/share/ca-certificates/*' >/dev/null; then
  # So that a ca-certificates update inside the root rebuilds the bundle with the same local CAs.
  cp -a /usr/local/share/ca-certificates/. "$root/usr/local/share/ca-certificates/"
fi
[ -f /etc/pip.conf ] && cp -L /etc/pip.conf "$root/etc/pip.conf"
[ -d /etc/xdg/pip ] && mkdir -p "$root/etc/xdg" && cp -a /etc/xdg/pip "$root/etc/xdg/"
if compgen -G '/etc/apt/sources.list.d/*.sources' >/dev/null; then
  rm -f "$root/etc/apt/sources.list"
  cp -L /etc/apt/sources.list.d/*.sources "$root/etc/apt/sources.list.d/"
elif [ -f /etc/apt/sources.list ]; then
  cp -L /etc/apt/sources.list "$root/etc/apt/sources.list"
fi
for conf in /etc/apt/apt.conf.d/*; do  # only the host's fetch settings (proxy, validity), nothing else
  grep -q '^[[:space:]]*Acquire::' "$conf" 2>/dev/null && cp -L "$conf" "$root/etc/apt/apt.conf.d/"
done

git clone --quiet --no-hardlinks "$repo" "$root/srv/project"
git -C "$root/srv/project" checkout --quiet --detach "$commit"
log "cloned $commit into /srv/project"

trap unmount_root EXIT
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev" && mount --make-rslave "$root/dev"
mount --rbind /sys "$root/sys" && mount --make-rslave "$root/sys"
mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"

# A clean environment, as on a new machine: nothing of the host's (venvs, pyenv, pip settings) leaks in.
in_root() {
  chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb CI="${CI:-}" \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    bash -c 'cd /srv/project && "$@"' bash "$@"
}

started=$SECONDS
in_root make setup
log "make setup took $((SECONDS - started)) s"
started=$SECONDS
status=0
in_root "$@" || status=$?
log "'$*' took $((SECONDS - started)) s; exit $status"
exit "$status"
