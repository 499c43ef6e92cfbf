#!/usr/bin/env bash
# Install the Debian packages listed in bindep.txt that are missing (idempotent, root only).
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t wanted < <(sed -e 's/#.*//' -e 's/\[.*\]//' bindep.txt | awk 'NF {print $1}')
missing=()
for pkg in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "setup: all ${#wanted[@]} Debian packages present"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "setup: missing Debian packages (${missing[*]}); run 'make setup' as root" >&2
  exit 1
fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Quiet unless something fails: dpkg's per-package lines would bury the test output in CI.
apt_log=$(mktemp)
trap 'rm -f "$apt_log"' EXIT
run_apt() { "$@" >>"$apt_log" 2>&1 || { tail -n 40 "$apt_log" >&2; echo "setup: '$*' failed" >&2; exit 1; }; }
run_apt apt-get update -qq
# policy-rc.d keeps Debian from starting system daemons (named, postgresql): the lab runs its own.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"; created_policy=1; fi
status=0
(run_apt apt-get install -y -qq --no-install-recommends "${missing[@]}") || status=$?
if [ "$created_policy" -eq 1 ]; then rm -f "$policy"; fi
[ "$status" -eq 0 ] || exit "$status"
echo "setup: ${#missing[@]} Debian packages installed"
