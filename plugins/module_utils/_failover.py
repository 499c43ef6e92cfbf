# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The failover runbook's logic: the fencing record, run ownership, the plan, the report.

Pure functions (no Ansible, no network) except the probes at the end, so the unit tests
cover every decision. Used by the failover_preflight and failover_report modules.

The fencing record is a TXT value ``region=<name> epoch=<n> run=<owner>``. The services read
``region`` and ``epoch`` (a lower epoch than one already seen never renews their lease); the
runbook compare-and-swaps the whole value, so two runs that read the same value cannot both
claim, and every claim it writes raises the epoch by one. ``run`` names the claiming
ansible-playbook process (``host/pid/start``): a later run that finds an unfinished claim
continues it only when that process is gone (an interrupted run), and stops when it still runs
(a concurrent run).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re
import socket
import struct
import time

ACTIVE_WORDS = ("region", "epoch", "run")


class PreflightError(Exception):
    """The failover must not start (or continue); nothing was changed."""

    def __init__(self, msg, **details):
        super(PreflightError, self).__init__(msg)
        self.msg = msg
        self.details = details


# ------------------------------------------------------------------ the fencing record

def unquote_txt(value):
    """'"region=east epoch=1"' (presentation form, maybe split in strings) -> 'region=east epoch=1'."""
    if value is None:
        return None
    text = value.strip()
    if text.startswith('"'):
        parts = []
        inside = False
        current = []
        escaped = False
        for char in text:
            if escaped:
                current.append(char)
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                if inside:
                    parts.append("".join(current))
                    current = []
                inside = not inside
            elif inside:
                current.append(char)
        return "".join(parts)
    return text


# ASCII digits only: str.isdigit() also takes '²', which int() refuses
_EPOCH = re.compile(r"[0-9]+\Z")


class MalformedActive(ValueError):
    """The fencing record's value is not ``region=<name> epoch=<n> [run=<owner>]``."""


def parse_active(text):
    """'region=west epoch=2 run=h/1/2' -> {'region': 'west', 'epoch': 2, 'run': 'h/1/2'}, else MalformedActive.

    `text` is the TXT record's content (unquoted). Strict, with the same rules as the services'
    parse_record (services/cloudphoenix_services/core/fencing.py; a test holds them together):
    every word is key=value with a value, no key twice, region and a non-negative decimal epoch
    present, run optional. Unknown keys are ignored, so a later version can add words without
    fencing the services that run now.
    """
    fields = {}
    for word in (text or "").split():
        key, sep, value = word.partition("=")
        if not (sep and key and value):
            raise MalformedActive("%r is not a key=value word" % word)
        if key in fields:
            raise MalformedActive("%r appears twice" % key)
        fields[key] = value
    if "region" not in fields:
        raise MalformedActive("no region= word")
    epoch = fields.get("epoch")
    if epoch is None:
        raise MalformedActive("no epoch= word")
    if not _EPOCH.match(epoch):
        raise MalformedActive("epoch %r is not a whole number >= 0" % epoch)
    return {"region": fields["region"], "epoch": int(epoch), "run": fields.get("run")}


def active_value(values, record):
    """The fencing record's content from the TXT values the provider serves (presentation form); None if absent.

    Several TXT records at the name are malformed: which one a service reads is up to the resolver.
    """
    texts = [unquote_txt(value) for value in values or []]
    if len(texts) > 1:
        raise PreflightError("the fencing record %s is malformed: it holds %d TXT records (%s), it must hold one; "
                             "fix it by hand; nothing was changed" % (record, len(texts), ", ".join(texts)),
                             malformed=True)
    return texts[0] if texts else None


def read_active(text, record=None):
    """parse_active for the runbook: PreflightError naming the record when it is absent or malformed."""
    record = record or "_active"
    if text is None:
        # no record, no known active region: the runbook does not guess (the lab and a new stack create it
        # at epoch 1 with the zone)
        raise PreflightError("the fencing record %s does not exist: which region is active is unknown; create it "
                             "by hand (region=<active region> epoch=1); nothing was changed" % record)
    try:
        return parse_active(text)
    except MalformedActive as exc:
        why = str(exc)
    raise PreflightError("the fencing record %s is malformed (%r): %s; it must read region=<name> epoch=<n> "
                         "[run=<owner>]; fix it by hand, with an epoch above the last one; nothing was changed"
                         % (record, text, why), malformed=True)


def format_active(region, epoch, run=None):
    words = ["region=%s" % region, "epoch=%d" % int(epoch)]
    if run:
        words.append("run=%s" % run)
    return " ".join(words)


# ------------------------------------------------------------------ run ownership

def _proc_stat(pid):
    """(parent pid, start time in clock ticks, command name) of a process, or None."""
    try:
        with open("/proc/%d/stat" % pid) as handle:
            data = handle.read()
    except (OSError, IOError):
        return None
    name = data[data.index("(") + 1:data.rindex(")")]
    rest = data[data.rindex(")") + 2:].split()
    return int(rest[1]), rest[19], name


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except (OSError, IOError):
        return ""


def find_playbook_process(pid=None, marker="ansible-playbook"):
    """The ansible-playbook process this module runs under: 'pid/start', or None (not found).

    Ansible's workers are forked from the main process and keep its command line, so the answer
    is the outermost ancestor whose command line names ansible-playbook (the run, not the task).
    """
    pid = pid or os.getpid()
    found = None
    for _hop in range(16):
        stat = _proc_stat(pid)
        if stat is None:
            break
        parent, start, _name = stat
        if marker in _cmdline(pid):
            found = "%d/%s" % (pid, start)
        if parent <= 1:
            break
        pid = parent
    return found


def run_owner(hostname=None, pid=None):
    """This run's identity for the fencing record: '<host>/<pid>/<start>' (pid of ansible-playbook)."""
    host = (hostname or socket.gethostname()).split(".")[0] or "controller"
    process = find_playbook_process(pid) or "%d/%s" % (os.getpid(), int(time.time()))
    return "%s/%s" % (host, process)


def owner_alive(owner, hostname=None):
    """True when `owner` is a live process on this host, None when it is on another host (unknown)."""
    if not owner:
        return False
    parts = owner.split("/")
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    host = (hostname or socket.gethostname()).split(".")[0] or "controller"
    if parts[0] != host:
        return None
    stat = _proc_stat(int(parts[1]))
    return stat is not None and stat[1] == parts[2]


# ------------------------------------------------------------------ LSN arithmetic

def lsn_to_int(lsn):
    if not lsn:
        return None
    high, low = lsn.split("/")
    return (int(high, 16) << 32) + int(low, 16)


def lag_between(reference, received):
    ref, got = lsn_to_int(reference), lsn_to_int(received)
    if ref is None or got is None:
        return None
    return max(0, ref - got)


# ------------------------------------------------------------------ the plan

def standby_lag(old, new):
    """(lag bytes, reference lsn, source) of the new primary-to-be against the newest known primary position."""
    received = max([lsn for lsn in (new.get("receive_lsn"), new.get("replay_lsn")) if lsn] or [None],
                   key=lambda value: lsn_to_int(value) or 0)
    if old.get("reachable") and old.get("role") == "primary" and old.get("current_lsn"):
        return lag_between(old["current_lsn"], received), old["current_lsn"], "primary"
    reported = new.get("primary_reported_lsn")
    if reported:
        return lag_between(reported, received), reported, "wal receiver"
    return None, None, "unknown"


def decide(target, regions, active_text, dns_current, dns_desired, old_services_listening,
           max_data_loss_bytes, allow_data_loss, owner, owner_alive_fn=owner_alive, mode="failover",
           takeover=False, record=None):
    """The failover plan, or PreflightError (nothing changed) when it must not start.

    regions: {name: pg probe dict (reachable, role, read_only, current_lsn, receive_lsn, ...)}
    dns_current/dns_desired: {key: values tuple or None} for the public records.
    old_services_listening: {region: [ports that accept connections]}.
    """
    if target not in regions:
        raise PreflightError("target region %r is not one of the regions %s; nothing was changed"
                             % (target, ", ".join(sorted(regions))))
    active = read_active(active_text, record)
    if active["region"] not in regions:
        raise PreflightError("the fencing record names region %r, which is not in the inventory (%s); "
                             "nothing was changed" % (active["region"], ", ".join(sorted(regions))))
    others = sorted(name for name in regions if name != target)
    source = active["region"] if active["region"] != target else None
    new = regions[target]
    skipped = []
    # which old primary: the active region, or (resuming) the other region that answers as a primary
    old_name = source or next((name for name in others if regions[name].get("role") == "primary"), others[0]
                              if others else None)
    old = regions.get(old_name) or {"reachable": False}

    claimed = active["region"] == target
    owner_state = None
    if claimed and active["run"] and active["run"] != owner:
        owner_state = owner_alive_fn(active["run"])
        if owner_state:
            raise PreflightError(
                "another run (%s) claimed region %s at epoch %d and is still running: it is doing this %s; "
                "this run stops here and changes nothing" % (active["run"], target, active["epoch"], mode),
                concurrent=True, holder=active["run"])

    old_writable = bool(old.get("reachable") and old.get("role") == "primary" and not old.get("read_only"))
    new_is_primary = bool(new.get("reachable") and new.get("role") == "primary" and not new.get("read_only"))
    dns_done = all(dns_current.get(key) == values for key, values in dns_desired.items())
    listening = {name: ports for name, ports in (old_services_listening or {}).items() if ports and name != target}
    # old services still listening do not make it unfinished: the claim fences them (lease), and after a
    # failback the DR region's services listen on purpose (a warm standby)
    done = claimed and new_is_primary and not old_writable and dns_done
    if done:
        return {
            "status": "done", "source": old_name, "target": target, "epoch": active["epoch"],
            "active": active, "claim": {"needed": False},
            "promote": {"needed": False, "lag_bytes": 0, "reference_lsn": None, "lag_source": "none"},
            "msg": "the stack is already on %s (epoch %d): nothing to do" % (target, active["epoch"]),
            "skipped": [{"phase": "all", "why": "already on %s" % target}],
        }

    if claimed and active["run"] and active["run"] != owner and owner_state is None and not takeover:
        raise PreflightError(
            "region %s was claimed at epoch %d by run %s on another controller, and the %s is not complete: "
            "if that run is no longer running, continue it with -e failover_takeover=true; nothing was changed"
            % (target, active["epoch"], active["run"], mode), concurrent=True, holder=active["run"])
    if mode == "switchover" and not claimed and not old_writable:
        raise PreflightError("a switchover needs a running, writable primary in %s (%s): it is %s; use failover.yml "
                             "for an unplanned failover; nothing was changed"
                             % (old_name, old.get("error") or "answers", old.get("role") or "unreachable"))
    if not new.get("reachable"):
        raise PreflightError("the %s database in %s does not answer (%s): there is nothing to promote; "
                             "nothing was changed" % ("standby" if not claimed else "new primary", target,
                                                      new.get("error") or "unreachable"),
                             unreachable=target)
    promote_needed = new.get("role") == "standby"
    lag_bytes, reference_lsn, lag_source = (None, None, "none")
    if promote_needed:
        lag_bytes, reference_lsn, lag_source = standby_lag(old, new)
        if lag_bytes is not None and lag_bytes > max_data_loss_bytes and not allow_data_loss:
            raise PreflightError(
                "the %s standby is %d bytes behind the primary (%s), more than the data-loss budget of %d bytes: "
                "refusing to fail over; nothing was changed. Wait for it to catch up, or accept the loss with "
                "-e failover_allow_data_loss=true" % (target, lag_bytes, lag_source, max_data_loss_bytes),
                lag_bytes=lag_bytes, lag_source=lag_source)
        if lag_source == "unknown":
            skipped.append({"phase": "preflight", "why": "old primary position unknown: data at risk not measurable"})
    elif not new_is_primary:
        raise PreflightError("the database in %s is a read-only primary (fenced): unfence it or rejoin it; "
                             "nothing was changed" % target)

    # every claim write raises the epoch (a new run, a takeover, a resumed run), so a service that saw the new
    # claim never takes an older answer (a lagging DNS server) for a renewal; only this run's own claim is kept
    claim_needed = not claimed or active["run"] != owner
    epoch = active["epoch"] + 1 if claim_needed else active["epoch"]
    if claimed:
        why = ("claimed by an interrupted run (%s): continuing it" % active["run"]) if active["run"] else \
            "the fencing record already names %s: continuing" % target
        status = "resume"
    else:
        why = None
        status = "ready"
    if not old.get("reachable"):
        skipped.append({"phase": "fence", "why": "the %s database does not answer (%s): fenced on its host if "
                        "reachable, else by the services' lease" % (old_name, old.get("error") or "unreachable")})
    if claimed:
        epochs = ("%d -> %d" % (active["epoch"], epoch)) if claim_needed else "%d" % epoch
        msg = "continuing the %s to %s (epoch %s): %s" % (mode, target, epochs, why)
    else:
        msg = "%s %s -> %s, epoch %d -> %d" % (mode, old_name, target, active["epoch"], epoch)
    return {
        "status": status, "source": old_name, "target": target, "epoch": epoch, "active": active,
        "resume_reason": why,
        "claim": {"needed": claim_needed, "value": format_active(target, epoch, owner), "expect": active_text},
        "promote": {"needed": promote_needed, "lag_bytes": lag_bytes, "reference_lsn": reference_lsn,
                    "lag_source": lag_source},
        "old_writable": old_writable, "old_services_listening": listening.get(old_name, []),
        "dns_switch_needed": not dns_done,
        "msg": msg,
        "skipped": skipped,
    }


# ------------------------------------------------------------------ probes (network)

def pg_ping(host, port, timeout):
    """Does a PostgreSQL server answer at host:port within timeout? (None, or why not).

    Sends an SSLRequest and waits for the one-byte answer, so a hung server (SIGSTOP: the kernel
    still accepts the connection) counts as not answering, and costs at most `timeout`.
    """
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except socket.timeout:
        return "no answer within %gs (partitioned?)" % timeout
    except (OSError, IOError) as exc:
        return "connection failed: %s" % exc
    try:
        sock.settimeout(timeout)
        sock.sendall(struct.pack("!II", 8, 80877103))
        reply = sock.recv(1)
        if reply not in (b"S", b"N"):
            return "unexpected answer %r" % reply
        return None
    except socket.timeout:
        return "connected but no answer within %gs (hung?)" % timeout
    except (OSError, IOError) as exc:
        return "no answer: %s" % exc
    finally:
        sock.close()


def _accepts(host, port, timeout):
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.close()
        return True
    except (OSError, IOError):
        return False


def tcp_listening(host, ports, timeout):
    """Ports on host that accept a TCP connection within timeout (probed in parallel)."""
    if not ports:
        return []
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=len(ports)) as pool:
        accepted = list(pool.map(lambda port: _accepts(host, port, timeout), ports))
    return [port for port, ok in zip(ports, accepted) if ok]  # noqa: B905


# ------------------------------------------------------------------ the report

NOT_IN_RTO = ("prepare",)


def phase_timings(marks):
    """[{'phase': name, 'at': t}, ...] (first mark = start) -> [{'phase', 'seconds'}], total seconds."""
    rows = []
    for index in range(1, len(marks)):
        before, after = marks[index - 1], marks[index]
        rows.append({"phase": after["phase"], "seconds": round(float(after["at"]) - float(before["at"]), 3)})
    total = round(float(marks[-1]["at"]) - float(marks[0]["at"]), 3) if len(marks) > 1 else 0.0
    return rows, total


# The runbook's phases in the order they run; a failed run's report is built from this and its marks.
PHASE_ORDER = ("preflight", "prepare", "claim", "fence", "lease_wait", "promote", "switch_dns", "repoint", "verify")
# Task name prefixes of roles/failover (each task is named "<Phase> - ..." or "<Phase> and <phase> - ...").
TASK_PHASES = (("preflight", "preflight"), ("prepare", "prepare"), ("lower the public", "prepare"),
               ("claim", "claim"), ("fence", "fence"), ("promote", "promote"), ("switch dns", "switch_dns"),
               ("repoint", "repoint"), ("verify", "verify"), ("restore the public", "verify"))


def failed_phase(marks, task_name):
    """Which phase a failed task belongs to: by its name, else the phase after the last one finished."""
    name = (task_name or "").lower()
    # "cloudphoenix.stack.failover : Promote - ..." (the role prefix is not part of the task's own name)
    name = name.split(" : ", 1)[-1].strip()
    for prefix, phase in TASK_PHASES:
        if name.startswith(prefix):
            return phase
    done = [mark["phase"] for mark in marks[1:] if mark["phase"] in PHASE_ORDER]
    if not done:
        return PHASE_ORDER[0]
    later = PHASE_ORDER[PHASE_ORDER.index(done[-1]) + 1:]
    return later[0] if later else done[-1]


def failed_rows(marks, phase, msg):
    """Report rows of a run that failed in `phase`: the phases it finished, the failed one, none after it."""
    rows = [{"phase": mark["phase"], "status": "ok", "detail": ""} for mark in marks[1:]
            if mark["phase"] != phase]
    rows.append({"phase": phase, "status": "failed", "detail": msg})
    return rows


def claim_holder(plan, marks):
    """Who holds the fencing record after a failed run: this run once it claimed, else whoever held it."""
    claimed = any(mark["phase"] == "claim" for mark in marks[1:])
    claim = plan.get("claim") or {}
    if claimed and claim.get("needed") and claim.get("value"):
        return claim["value"]
    if claim.get("expect"):
        return claim["expect"]
    active = plan.get("active") or {}
    return format_active(active["region"], active["epoch"], active.get("run")) if active.get("region") else None


def build_report(kind, plan, marks, phases, check_mode, started_at=None, extra=None, failure=None):
    """The report dict: what happened, per phase, and what it cost."""
    timings, total = phase_timings(marks)
    seconds = dict((row["phase"], row["seconds"]) for row in timings)
    # a planned run's preparation (short TTL, old TTL waited out) happens while the old region takes every
    # write: it is time the playbook spends, not recovery time
    prepare = sum(seconds.get(name) or 0.0 for name in NOT_IN_RTO)
    rows = []
    for phase in phases:
        name = phase["phase"]
        rows.append({"phase": name, "seconds": seconds.get(name), "status": phase.get("status", "ok"),
                     "detail": phase.get("detail", "")})
    promote = plan.get("promote") or {}
    report = {
        "kind": kind,
        "check_mode": bool(check_mode),
        "outcome": "planned" if check_mode else ("already_done" if plan.get("status") == "done" else "completed"),
        "started_at": started_at,
        "source_region": plan.get("source"),
        "target_region": plan.get("target"),
        "old_primary": plan.get("source"),
        "new_primary": plan.get("target"),
        "epoch": plan.get("epoch"),
        "rto_seconds": round(total - prepare, 3),
        "total_seconds": total,
        "phases": rows,
        "lag_bytes_at_promotion": promote.get("lag_bytes"),
        "lag_source": promote.get("lag_source"),
        "data_at_risk_bytes": promote.get("lag_bytes"),
        "skipped": plan.get("skipped", []),
        "msg": plan.get("msg"),
    }
    report.update(extra or {})
    if failure:
        report.update(
            outcome="failed", failed_phase=failure["phase"], error=failure.get("msg") or "",
            claim_held_by=failure.get("claim_held_by"), resume_command=failure.get("resume_command"),
            rto_seconds=None)
    return report


def human_bytes(value):
    if value is None:
        return "unknown"
    if value < 1024:
        return "%d B" % value
    if value < 1024 * 1024:
        return "%.1f KiB" % (value / 1024.0)
    return "%.1f MiB" % (value / 1048576.0)


def render_table(report):
    """Printable lines: one row per phase, then the totals."""
    note = "  [check mode: nothing changed]" if report.get("check_mode") else ""
    title = "%s %s -> %s (epoch %s)%s" % (report["kind"], report.get("source_region"), report.get("target_region"),
                                          report.get("epoch"), note)
    lines = [title, "%-10s %8s  %-8s %s" % ("phase", "seconds", "status", "detail")]
    for row in report["phases"]:
        seconds = "-" if row["seconds"] is None else "%.2f" % row["seconds"]
        lines.append("%-10s %8s  %-8s %s" % (row["phase"], seconds, row["status"], row["detail"]))
    if report.get("outcome") == "failed":
        lines.append("%-10s %8.2f  %s" % ("total", report.get("total_seconds") or 0.0,
                                          "until it failed in %s (no RTO: not completed)" % report["failed_phase"]))
    else:
        with_prepare = report.get("total_seconds", report["rto_seconds"])
        lines.append("%-10s %8.2f  %s" % ("total", report["rto_seconds"], "RTO as run by this playbook" + (
            "" if with_prepare == report["rto_seconds"] else " (%.2f s with prepare)" % with_prepare)))
    lines.append("old primary: %s   new primary: %s   epoch: %s"
                 % (report.get("old_primary"), report.get("new_primary"), report.get("epoch")))
    lines.append("lag at promotion (data at risk): %s (%s)"
                 % (human_bytes(report.get("lag_bytes_at_promotion")), report.get("lag_source") or "none"))
    for key in ("fenced", "write_gap_seconds", "lost_writes"):
        value = report.get(key)
        if isinstance(value, list):
            value = "; ".join("%s: %s" % (item.get("what"), item.get("how")) if isinstance(item, dict) else str(item)
                              for item in value) or "nothing"
        if value is not None:
            lines.append("%s: %s" % (key.replace("_", " "), value))
    for item in report.get("skipped", []):
        lines.append("skipped %s: %s" % (item["phase"], item["why"]))
    lines.append("outcome: %s" % report["outcome"])
    if report.get("outcome") == "failed":
        lines.append("failed in %s: %s" % (report["failed_phase"], report.get("error") or "?"))
        lines.append("fencing record held by: %s" % (report.get("claim_held_by") or "unknown"))
        lines.append("to resume: %s" % report.get("resume_command"))
    return lines


def dumps(report):
    return json.dumps(report, indent=2, sort_keys=True) + "\n"
