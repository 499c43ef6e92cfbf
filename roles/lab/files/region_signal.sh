#!/usr/bin/env bash
# region_signal.sh SIGNAL PIDFILE...: send SIGNAL to each pidfile's live process and its
# children (postmaster + backends, gunicorn master + workers). Prints how many it hit.
set -euo pipefail
signal=$1
shift
hit=0
for pidfile in "$@"; do
  [ -r "$pidfile" ] || continue
  pid=$(head -n 1 "$pidfile" | tr -dc '0-9')
  if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then
    continue
  fi
  # Parent first for STOP/KILL so it cannot respawn children; children first for CONT.
  if [ "$signal" = CONT ]; then
    pkill "-$signal" -P "$pid" || true
    kill "-$signal" "$pid" || true
  else
    kill "-$signal" "$pid" || true
    pkill "-$signal" -P "$pid" || true
  fi
  hit=$((hit + 1))
done
echo "signalled=$hit"
