#!/usr/bin/env bash
# stop_pidfiles.sh TIMEOUT DIR: stop the process of each DIR/*.pid and its children for good.
# QUIT is a fast shutdown for gunicorn (a fenced region has nothing to finish); a hung (SIGSTOPped)
# process is resumed so it can act on it; whatever still runs
# TIMEOUT seconds later gets KILL. Prints "stopped=N" (N = processes that were running).
set -euo pipefail
timeout=$1
dir=$2
pids=()
shopt -s nullglob
for pidfile in "$dir"/*.pid; do
  [ -r "$pidfile" ] || continue
  pid=$(head -n 1 "$pidfile" | tr -dc '0-9')
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    pids+=("$pid")
  fi
done
for pid in "${pids[@]}"; do
  children=$(pgrep -P "$pid" || true)
  if [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" = T ]; then
    # hung (SIGSTOPped): nothing to finish gracefully, and a stopped process cannot act on QUIT
    # shellcheck disable=SC2086
    kill -KILL "$pid" $children 2>/dev/null || true
    continue
  fi
  kill -QUIT "$pid" 2>/dev/null || true
  # shellcheck disable=SC2086
  kill -CONT "$pid" $children 2>/dev/null || true
done
deadline=$(( $(date +%s%N) + timeout * 1000000000 ))
for pid in "${pids[@]}"; do
  while kill -0 "$pid" 2>/dev/null && [ "$(date +%s%N)" -lt "$deadline" ]; do
    sleep 0.05
  done
  if kill -0 "$pid" 2>/dev/null; then
    children=$(pgrep -P "$pid" || true)
    # shellcheck disable=SC2086
    kill -KILL "$pid" $children 2>/dev/null || true
  fi
done
echo "stopped=${#pids[@]}"
