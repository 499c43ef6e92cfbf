# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The runbook's fence phase on the old region's host: its database and its services, at the same time.

One module call instead of two tasks (each Ansible task and module start costs 0.2-0.5 s on the
critical path of a failover). The database fence is pg_replication's (fast shutdown, then
immediate, SIGKILL for a SIGSTOPped postmaster); when the preflight already found the old primary
cut off or hung, the fast shutdown is skipped: it would wait for a standby it cannot reach.
The services: QUIT (gunicorn's fast shutdown; with timeout 0, KILL right after it), KILL at once
for a stopped (hung) process, KILL for whatever still runs after the timeout.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import glob
import os
import signal
import threading
import time

from ansible_collections.cloudphoenix.stack.plugins.module_utils._pg import PgError, wait_for
from ansible_collections.cloudphoenix.stack.plugins.module_utils._pg_replication import (
    Outcome,
    _kill_tree,
    _process_state,
    ensure_fenced,
)


def fence_database(node, opts, skip_fast, check_mode):
    """pg_replication's state=fenced; with skip_fast (old primary unreachable or hung) immediate at once."""
    strategy = opts.get("strategy") or "stop"
    if not skip_fast or strategy != "stop" or node.layout() != "cluster":
        return ensure_fenced(node, opts, check_mode)
    pid = node.postmaster_pid()
    if pid is None:
        return ensure_fenced(node, opts, check_mode)
    out = Outcome()
    out.extra["strategy"] = strategy
    if not _alive(pid):  # killed, a zombie nobody reaped yet: nothing to stop
        out.before = out.after = {"running": False, "accepting_writes": False}
        out.extra["msg"] = "not running: takes no writes"
        return out.as_dict()
    out.before = {"running": True}
    out.after = {"running": False, "accepting_writes": False}
    out.act("stop %s (immediate: it did not answer the preflight)" % node.what())
    if check_mode:
        return out.as_dict()
    if _process_state(pid) != "T" and node.stop("immediate", 5):
        out.extra["method"] = "immediate"
    else:  # SIGSTOPped (hung), or immediate did not do: only SIGKILL works
        _kill_tree(pid)
        # a killed postmaster may stay a zombie until init reaps it: gone is what counts, not reaped
        wait_for(lambda: not _alive(pid), 10, interval=0.01)
        out.extra["method"] = "kill"
    if _alive(pid):
        raise PgError("could not stop %s" % node.what())
    return out.as_dict()


def _pid_of(pidfile):
    try:
        with open(pidfile) as stream:
            text = "".join(ch for ch in stream.readline() if ch.isdigit())
    except OSError:
        return None
    return int(text) if text else None


def _alive(pid):
    if _process_state(pid) in (None, "Z"):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal(pids, signum):
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signum)


def stop_services(pid_dir, timeout, check_mode, poll=0.02):
    """Stop the process of each pid_dir/*.pid and its children for good; returns {stopped, killed}."""
    pids = [pid for pid in (_pid_of(path) for path in sorted(glob.glob(os.path.join(pid_dir, "*.pid"))))
            if pid and _alive(pid)]
    result = {"stopped": len(pids), "killed": 0}
    if check_mode or not pids:
        return result
    waiting = []
    for pid in pids:
        if _process_state(pid) == "T":  # hung: nothing to finish, and a stopped process cannot act on QUIT
            _kill_tree(pid)
            result["killed"] += 1
            continue
        _signal([pid], signal.SIGQUIT)
        _signal([pid], signal.SIGCONT)
        waiting.append(pid)
    deadline = time.monotonic() + timeout
    while waiting and time.monotonic() < deadline:
        waiting = [pid for pid in waiting if _alive(pid)]
        if waiting:
            time.sleep(poll)
    for pid in waiting:
        if _alive(pid):
            _kill_tree(pid)
            result["killed"] += 1
    return result


def fence(node, opts, pid_dir, services_timeout, skip_fast, check_mode):
    """Database and services concurrently. Returns (database outcome or error, services result or error)."""
    outcomes = {}

    def run(key, call):
        began = time.monotonic()
        try:
            outcome = call()
            outcome["seconds"] = round(time.monotonic() - began, 3)
            outcomes[key] = (outcome, None)
        except Exception as exc:  # noqa: BLE001 - reported by the module, the other half still runs
            outcomes[key] = (None, exc)

    threads = []
    if node is not None:
        threads.append(threading.Thread(target=run, args=("database", lambda: fence_database(
            node, opts, skip_fast, check_mode))))
    if pid_dir:
        threads.append(threading.Thread(target=run, args=("services", lambda: stop_services(
            pid_dir, services_timeout, check_mode))))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes.get("database", (None, None)), outcomes.get("services", (None, None))
