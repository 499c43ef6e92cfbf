# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The four replication states of a node: primary, standby, promoted, fenced.

Each `ensure_*` reads the node's state, decides, acts unless check mode, and returns an
Outcome (changed, actions taken or planned, diff before/after, extra facts). Every input is
validated and every remote precondition (primary reachable, right password, same system
identifier, source out of recovery, rewind possible) is checked before the first change, so
a refusal leaves the node as it was.
"""

from __future__ import absolute_import, annotations, division, print_function

__metaclass__ = type

import contextlib
import ipaddress
import os
import re
import shutil
import signal
import time

from ansible_collections.cloudphoenix.stack.plugins.module_utils._fence_token import ensure_stamps, plan_stamps
from ansible_collections.cloudphoenix.stack.plugins.module_utils._pg import (
    Node,
    PgError,
    Upstream,
    build_conninfo,
    chown_to,
    ensure_dir_as,
    fetch_all,
    fetch_one,
    fork_point,
    int_to_lsn,
    lsn_diff,
    lsn_to_int,
    node_status,
    parse_conninfo,
    parse_timeline_history,
    passfile_line,
    passfile_needs_update,
    quote_ident,
    run_as,
    scan_wal,
    scram_matches,
    scram_verifier,
    wait_for,
    write_file_as,
)

SLOT_NAME = re.compile(r"^[a-z0-9_]{1,63}$")
HBA_KEYWORDS = ("all", "samehost", "samenet")
DEFAULT_MAX_LAG_BYTES = 1024 * 1024  # Patroni's maximum_lag_on_failover default
DISCARD_WARNING = "allow_data_loss: rewinding"


class Outcome:
    """What a state run did (or, in check mode, would do)."""

    def __init__(self) -> None:
        self.changed = False
        self.actions: list[str] = []
        self.warnings: list[str] = []
        self.before: dict = {}
        self.after: dict = {}
        self.extra: dict = {}

    def act(self, description: str) -> None:
        self.changed = True
        self.actions.append(description)

    def as_dict(self) -> dict:
        return dict(self.extra, changed=self.changed, actions=self.actions, warnings=self.warnings,
                    diff={"before": self.before, "after": self.after})


def _validate_slot(name: str | None, option: str) -> None:
    if name is not None and not SLOT_NAME.match(name):
        raise PgError("%s '%s' is not a valid slot name: use 1-63 lower-case letters, digits or _" % (option, name))


def _validate_hba_network(network: str) -> None:
    if network in HBA_KEYWORDS:
        return
    try:
        ipaddress.ip_network(network, strict=False)
    except ValueError:
        raise PgError("hba_networks entry '%s' is not a CIDR network (e.g. 127.0.0.0/8) nor one of %s"
                      % (network, ", ".join(HBA_KEYWORDS))) from None


# ---------------------------------------------------------------- state=primary

def _configured_settings(conn) -> dict:
    """Per setting: running value, value the config files ask for, context, pending_restart."""
    rows = fetch_all(conn, "SELECT name, setting, context, pending_restart FROM pg_settings")
    files = fetch_all(conn, "SELECT DISTINCT ON (name) name, setting FROM pg_file_settings "
                            "WHERE name IS NOT NULL ORDER BY name, seqno DESC")
    configured = {row["name"]: row["setting"] for row in files}
    return {row["name"]: dict(row, configured=configured.get(row["name"], row["setting"])) for row in rows}


def _sync_names_value(mode: str, names: list[str]) -> str:
    if mode != "sync":
        return ""
    return "FIRST 1 (%s)" % ", ".join(quote_ident(name) for name in names)


def _desired_primary_settings(settings: dict, opts: dict) -> dict:
    slots = opts.get("standby_slots") or []
    wanted_senders = max(10, len(slots) + 2)
    desired = {}
    if settings["wal_level"]["configured"] not in ("replica", "logical"):
        desired["wal_level"] = "replica"
    if int(settings["max_wal_senders"]["configured"]) < wanted_senders:
        desired["max_wal_senders"] = str(wanted_senders)
    if int(settings["max_replication_slots"]["configured"]) < wanted_senders:
        desired["max_replication_slots"] = str(wanted_senders)
    # pg_rewind needs hint bits WAL-logged: wal_log_hints, unless the cluster has data checksums.
    if settings["data_checksums"]["setting"] != "on" and settings["wal_log_hints"]["configured"] != "on":
        desired["wal_log_hints"] = "on"
    if settings["hot_standby"]["configured"] != "on":
        desired["hot_standby"] = "on"  # copied to standbys by pg_basebackup: they must be readable
    sync_value = _sync_names_value(opts.get("mode") or "async",
                                   opts.get("sync_standby_names") or slots)
    if settings["synchronous_standby_names"]["configured"] != sync_value:
        desired["synchronous_standby_names"] = sync_value
    if settings["default_transaction_read_only"]["configured"] == "on":
        desired["default_transaction_read_only"] = "off"  # undo a read_only fence
    return desired


def _hba_lines(opts: dict) -> list[str]:
    return ["host replication %s %s scram-sha-256" % (opts["replication_user"], network)
            for network in opts.get("hba_networks") or []]


def _hba_missing(hba_text: str, wanted: list[str]) -> list[str]:
    present = set()
    for line in hba_text.splitlines():
        tokens = line.split("#", 1)[0].split()
        if tokens:
            present.add(tuple(tokens[:4]))
    return [line for line in wanted if tuple(line.split()[:4]) not in present]


def ensure_primary(node: Node, opts: dict, check_mode: bool) -> dict:
    out = Outcome()
    user = opts["replication_user"]
    slots = opts.get("standby_slots") or []
    for slot in slots:
        _validate_slot(slot, "standby_slots entry")
    for network in opts.get("hba_networks") or []:
        _validate_hba_network(network)
    if opts.get("mode") == "sync" and not (opts.get("sync_standby_names") or slots):
        raise PgError("mode=sync needs sync_standby_names (or standby_slots) to name the synchronous standby")

    conn = node.connect()
    try:
        if fetch_one(conn, "SELECT pg_is_in_recovery() AS r")["r"]:
            raise PgError("%s is a standby (in recovery): state=primary configures a running primary; "
                          "promote it first (state=promoted)" % node.what())
        role = fetch_one(conn, "SELECT rolreplication, rolcanlogin, rolpassword FROM pg_authid WHERE rolname = %s",
                         (user,))
        password = opts.get("replication_password")
        if not role and not password:
            raise PgError("replication role '%s' does not exist and no replication_password was given" % user)
        existing_slots = {row["slot_name"]: row["slot_type"]
                          for row in fetch_all(conn, "SELECT slot_name, slot_type FROM pg_replication_slots")}
        for slot in slots:
            if existing_slots.get(slot, "physical") != "physical":
                raise PgError("slot '%s' exists but is a %s slot" % (slot, existing_slots[slot]))
        hba_file = fetch_one(conn, "SELECT current_setting('hba_file') AS f")["f"]
        with open(hba_file) as stream:
            hba_missing = _hba_missing(stream.read(), _hba_lines(opts))
        settings = _configured_settings(conn)
        desired = _desired_primary_settings(settings, opts)

        password_ok = bool(role) and (not password or scram_matches(role.get("rolpassword"), password))
        out.before = {
            "role": {"exists": bool(role), "replication": bool(role and role["rolreplication"]),
                     "login": bool(role and role["rolcanlogin"]), "password_current": password_ok},
            "slots": sorted(name for name in existing_slots if name in slots),
            "hba_missing": hba_missing,
            "settings": {name: settings[name]["configured"] for name in desired},
        }
        out.after = {
            "role": {"exists": True, "replication": True, "login": True, "password_current": True},
            "slots": sorted(slots),
            "hba_missing": [],
            "settings": desired,
        }
        cur = conn.cursor()
        if not role:
            out.act("create replication role %s" % user)
            if not check_mode:
                cur.execute("CREATE ROLE %s WITH REPLICATION LOGIN PASSWORD %%s" % quote_ident(user),
                            (scram_verifier(password),))
        else:
            if not (role["rolreplication"] and role["rolcanlogin"]):
                out.act("grant REPLICATION LOGIN to %s" % user)
                if not check_mode:
                    cur.execute("ALTER ROLE %s WITH REPLICATION LOGIN" % quote_ident(user))
            if not password_ok:
                out.act("set the password of %s" % user)
                if not check_mode:
                    cur.execute("ALTER ROLE %s WITH PASSWORD %%s" % quote_ident(user), (scram_verifier(password),))
        for slot in slots:
            if slot not in existing_slots:
                out.act("create physical slot %s" % slot)
                if not check_mode:
                    cur.execute("SELECT pg_create_physical_replication_slot(%s, true)", (slot,))
        if hba_missing:
            out.act("add pg_hba.conf lines: %s" % "; ".join(hba_missing))
            if not check_mode:
                with open(hba_file) as stream:
                    text = stream.read()
                text = text if text.endswith("\n") or not text else text + "\n"
                text += "# cloudphoenix.stack.pg_replication\n" + "".join(line + "\n" for line in hba_missing)
                write_file_as(hba_file, text, node.os_user, mode=0o600)
        for name, value in desired.items():
            out.act("set %s = '%s'" % (name, value))
            if not check_mode:
                cur.execute("ALTER SYSTEM SET %s = %%s" % name, (value,))
        reload_needed = bool(hba_missing or desired)
        if reload_needed and not check_mode:
            cur.execute("SELECT pg_reload_conf()")
            # pg_reload_conf only signals: give the postmaster a moment to re-read the files.
            wait_for(lambda: not _settings_still_loading(conn, desired), timeout=5)
            errors = fetch_all(conn, "SELECT line_number, error FROM pg_hba_file_rules WHERE error IS NOT NULL")
            if errors:
                raise PgError("pg_hba.conf has errors after the change: %s" % errors)
        pending = [row["name"] for row in fetch_all(conn, "SELECT name FROM pg_settings WHERE pending_restart")]
        if check_mode:
            pending = sorted(set(pending) | {name for name in desired if settings[name]["context"] == "postmaster"})
        out.extra["restart_required"] = sorted(pending)
        out.extra["reloaded"] = reload_needed and not check_mode
        if pending:
            out.warnings.append("restart PostgreSQL to apply: %s" % ", ".join(sorted(pending)))
        return out.as_dict()
    finally:
        conn.close()


def _settings_still_loading(conn, desired: dict) -> bool:
    rows = fetch_all(conn, "SELECT name, setting, pending_restart, context FROM pg_settings WHERE name = ANY(%s)",
                     (list(desired),))
    # Reloaded once each new value is live, or (restart-only settings) flagged pending_restart.
    return any(row["setting"] != desired[row["name"]] and not row["pending_restart"] for row in rows)


# ---------------------------------------------------------------- state=standby

def _default_passfile(node: Node) -> str:
    return os.path.join(os.path.dirname(node.data_dir.rstrip("/")), "replication.pgpass")


def _passfile_content(opts: dict) -> str | None:
    if opts.get("replication_password") is None:
        return None
    host, port = opts["primary_host"], opts["primary_port"]
    text = passfile_line(host, port, opts["replication_user"], opts["replication_password"])
    if opts.get("rewind_password") is not None and opts["rewind_user"] != opts["replication_user"]:
        text += passfile_line(host, port, opts["rewind_user"], opts["rewind_password"])
    return text


def _conninfo_matches(current: str | None, desired: str) -> bool:
    keys = ("host", "port", "user", "passfile", "application_name")
    have, want = parse_conninfo(current), parse_conninfo(desired)
    return all(str(have.get(key, "")) == str(want.get(key, "")) for key in keys)


def _wait_streaming(node: Node, timeout: float, timeline: int | None = None) -> dict:
    """Wait until the node's WAL receiver streams (on `timeline`, when given)."""

    def streaming():
        try:
            conn = node.connect()
        except PgError:
            return None
        try:
            status = node_status(conn)
            on_timeline = timeline is None or (status["wal_receiver"] or {}).get("received_tli") == timeline
            return status if status["streaming"] and on_timeline else None
        finally:
            conn.close()

    status = wait_for(streaming, timeout, interval=0.05)
    if not status:
        raise PgError("%s did not start streaming%s within %ss; server log: %s"
                      % (node.what(), " on timeline %s" % timeline if timeline else "", timeout, node.tail_log()))
    return status


def _stop_for_change(node: Node, timeout: int) -> None:
    if node.is_running() and not node.stop("fast", timeout) and not node.stop("immediate", 10):
        raise PgError("could not stop %s; server log: %s" % (node.what(), node.tail_log()))


class PhaseClock:
    """Seconds spent per phase, returned as `timings` so the runbook can report where time went."""

    def __init__(self) -> None:
        self.timings: dict = {}
        self._mark = time.monotonic()

    def lap(self, phase: str) -> None:
        now = time.monotonic()
        self.timings[phase] = round(self.timings.get(phase, 0.0) + now - self._mark, 3)
        self._mark = now


def ensure_standby(node: Node, opts: dict, check_mode: bool) -> dict:
    out = Outcome()
    clock = PhaseClock()
    out.extra["timings"] = clock.timings
    _validate_slot(opts.get("slot_name"), "slot_name")
    passfile = opts.get("passfile") or _default_passfile(node)
    application_name = opts.get("application_name") or opts.get("slot_name") or "standby"
    timeout = opts.get("wait_timeout") or 60
    layout = node.layout()
    if layout == "foreign":
        raise PgError("data_dir %s is not empty and is not a PostgreSQL cluster (no PG_VERSION): refusing to "
                      "touch it; empty it or choose another data_dir" % node.data_dir)
    passfile_text = _passfile_content(opts)
    if passfile_text is None and not os.path.exists(passfile):
        raise PgError("replication_password is required: passfile %s does not exist yet" % passfile)
    upstream = Upstream(host=opts["primary_host"], port=opts["primary_port"], user=opts["replication_user"],
                        password=opts.get("replication_password"), passfile=passfile,
                        connect_timeout=node.connect_timeout)
    source = upstream.identify()
    if source["in_recovery"]:
        raise PgError("%s is in recovery (a standby itself), not a primary: point primary_host at the current "
                      "primary" % upstream.what())
    desired_conninfo = build_conninfo({"host": upstream.host, "port": upstream.port, "user": upstream.user,
                                       "passfile": passfile, "application_name": application_name})
    desired_slot = opts.get("slot_name") or ""

    plan = None
    control = None
    keep_copy = None
    running = False
    current = {}
    if layout in ("missing", "empty"):
        plan = "clone"
        out.before = {"data_dir": layout, "role": None, "running": False}
    else:
        control = node.controldata()
        if control["system_identifier"] != source["system_identifier"]:
            raise PgError("%s belongs to another cluster (system identifier %s, %s has %s): it cannot follow "
                          "this primary; re-clone it (empty data_dir and run state=standby again)"
                          % (node.data_dir, control["system_identifier"], upstream.what(),
                             source["system_identifier"]))
        running = node.is_running()
        if running:
            conn = node.connect()
            try:
                current = node_status(conn)
            finally:
                conn.close()
            role = current["role"]
            conninfo, slot = current["primary_conninfo"], current["primary_slot_name"]
        else:
            role = "standby" if node.has_standby_signal() else "primary"
            auto = node.read_auto_conf()
            conninfo, slot = auto.get("primary_conninfo", ""), auto.get("primary_slot_name", "")
        out.before = {"data_dir": layout, "role": role, "running": running, "timeline": control["timeline"],
                      "primary_conninfo": conninfo, "primary_slot_name": slot}
        if role == "primary":
            plan = "rewind"
        elif not (_conninfo_matches(conninfo, desired_conninfo) and slot == desired_slot):
            plan = "reconfigure"
        elif not running:
            plan = "start"
    out.after = {"data_dir": "cluster", "role": "standby", "running": True,
                 "timeline": source["timeline"] if plan in ("clone", "rewind") else out.before.get("timeline"),
                 "primary_conninfo": desired_conninfo, "primary_slot_name": desired_slot}

    if plan == "rewind":
        if not (control["wal_log_hints"] or control["data_checksums"]):
            raise PgError("rewind impossible: %s was running without wal_log_hints and without data checksums, "
                          "so pg_rewind cannot find the pages changed after the split; re-clone it: stop it, "
                          "empty data_dir and run state=standby again (it clones with pg_basebackup)"
                          % node.data_dir)
        # pg_rewind's source must be the primary itself: rewinding onto a standby rejoins a standby
        # to a standby (and a later promotion of that one forks again).
        if upstream.rewind_source_state(opts["rewind_user"], opts.get("rewind_password"))["in_recovery"]:
            raise PgError("rewind source %s is in recovery: refusing to rewind onto a standby" % upstream.what())
        divergence = _measure_divergence(node, upstream, control, source)
        out.extra["divergence"] = divergence
        keep_copy = _decide_divergence(node, upstream, divergence, opts, out)

    clock.lap("checks")
    # -- act (or plan, in check mode)
    if passfile_text is not None and passfile_needs_update(passfile, passfile_text):
        out.act("write passfile %s (0600, owner %s)" % (passfile, node.os_user))
        if not check_mode:
            write_file_as(passfile, passfile_text, node.os_user, mode=0o600)
    wants_slot = desired_slot and opts.get("create_slot", True) and plan in ("clone", "rewind", "reconfigure", "start")
    if wants_slot and upstream.ensure_slot(desired_slot, check_mode):
        out.act("create physical slot %s on %s" % (desired_slot, upstream.what()))
    if plan == "clone":
        out.act("clone %s with pg_basebackup" % upstream.what())
        if not check_mode:
            _clone(node, upstream, passfile, desired_slot, layout, timeout)
    elif plan == "rewind":
        if keep_copy:
            out.act("copy %s to %s (cp -a, as %s) before the rewind" % (node.data_dir, keep_copy, node.os_user))
        out.act("stop and pg_rewind %s onto %s" % (node.data_dir, upstream.what()))
        if not check_mode:
            _stop_for_change(node, timeout)
            clock.lap("stop")
            if running:
                # It took writes until it stopped: measure again what the rewind would discard.
                divergence = _measure_divergence(node, upstream, control, source)
                out.extra["divergence"] = divergence
                out.warnings = [text for text in out.warnings if not text.startswith(DISCARD_WARNING)]
                measured_keep = _decide_divergence(node, upstream, divergence, opts, out, stopped=True,
                                                   path=keep_copy)
                if measured_keep and not keep_copy:
                    out.act("copy %s to %s (cp -a, as %s) before the rewind"
                            % (node.data_dir, measured_keep, node.os_user))
                keep_copy = measured_keep
            if keep_copy:
                _keep_copy(node, keep_copy, timeout)
                clock.lap("keep_copy")
            upstream.rewind_source_state(opts["rewind_user"], opts.get("rewind_password"), checkpoint=True)
            clock.lap("source_checkpoint")
            out.extra["rewind"] = _rewind(node, upstream, opts, passfile, out.extra)
            clock.lap("pg_rewind")
            running = False
    if plan in ("clone", "rewind") or (plan in ("reconfigure", "start") and not running):
        if plan == "reconfigure":
            out.act("set primary_conninfo/primary_slot_name")
        if not check_mode:
            # basebackup/rewind copied the source's postgresql.auto.conf: replace its conninfo and slot.
            node.write_auto_conf({"primary_conninfo": desired_conninfo, "primary_slot_name": desired_slot or None})
            write_file_as(os.path.join(node.data_dir, "standby.signal"), "", node.os_user, mode=0o600)
    elif plan == "reconfigure":
        out.act("set primary_conninfo/primary_slot_name and reload")
        if not check_mode:
            conn = node.connect()
            try:
                cur = conn.cursor()
                cur.execute("ALTER SYSTEM SET primary_conninfo = %s", (desired_conninfo,))
                cur.execute("ALTER SYSTEM SET primary_slot_name = %s", (desired_slot,))
                cur.execute("SELECT pg_reload_conf()")
            finally:
                conn.close()
    if not running:
        out.act("start %s" % node.what())
        if not check_mode:
            clock.lap("configure")
            node.start(timeout)
            clock.lap("start")
    if not check_mode:
        status = _wait_streaming(node, timeout, timeline=source["timeline"])
        clock.lap("streaming")
        out.extra["timeline"] = status["timeline"]
    out.extra["plan"] = plan or "none"
    return out.as_dict()


def _read_local_history(node: Node, timeline: int) -> list:
    if timeline <= 1:
        return []
    path = os.path.join(node.data_dir, "pg_wal", "%08X.history" % timeline)
    try:
        with open(path) as stream:
            return parse_timeline_history(stream.read())
    except OSError as exc:
        raise PgError("cannot read %s (the history of timeline %s): %s" % (path, timeline, exc)) from None


def _measure_divergence(node: Node, upstream: Upstream, control: dict, source: dict) -> dict:
    """What an old primary wrote after the new primary's timeline branched off: what a rewind discards.

    The fork point comes from both timeline histories (the source's over TIMELINE_HISTORY, the node's
    from its pg_wal), the records after it from pg_waldump on the node's own WAL. `error` is set (and
    the counts are None) when it cannot be measured: the caller treats that as diverged.
    """
    facts = {"timeline": control["timeline"], "source_timeline": source["timeline"], "fork_timeline": None,
             "fork_lsn": None, "end_lsn": None, "bytes": None, "records": None, "transactions": None,
             "last_commit": None, "rmgr_records": {}, "kept_copy": None, "discarded": False}
    try:
        fork = fork_point(control["timeline"], _read_local_history(node, control["timeline"]),
                          source["timeline"], upstream.timeline_history(source["timeline"]))
        if fork is None:
            facts.update(bytes=0, records=0, transactions=0, end_reason="same timeline as the source: no fork")
            return facts
        facts["fork_timeline"], facts["fork_lsn"] = fork[0], int_to_lsn(fork[1])
        scan = scan_wal(node, fork[1], control["timeline"])
    except PgError as exc:
        facts["error"] = str(exc)
        return facts
    facts.update(scan)
    return facts


def _divergence_text(divergence: dict, upstream: Upstream) -> str:
    return ("%d committed transaction(s), %d bytes of WAL (%d records, up to %s) after the fork point %s where "
            "%s branched off to timeline %s; the last commit at %s"
            % (divergence["transactions"], divergence["bytes"], divergence["records"], divergence["end_lsn"],
               divergence["fork_lsn"], upstream.what(), divergence["source_timeline"], divergence["last_commit"]))


def _copy_path(node: Node) -> str:
    base = "%s.diverged-%s" % (node.data_dir.rstrip("/"), time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))
    path, number = base, 1
    while os.path.exists(path):
        number += 1
        path = "%s-%d" % (base, number)
    return path


def _tree_bytes(path: str) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return total


def _decide_divergence(node: Node, upstream: Upstream, divergence: dict, opts: dict, out: Outcome,
                       stopped: bool = False, path: str | None = None) -> str | None:
    """Refuse a rewind that discards commits unless allow_data_loss; then the path of the copy to keep."""
    allowed = bool(opts.get("allow_data_loss"))
    options = ("options: recover those transactions first (start %s alone, not as a standby, and copy the rows "
               "to the new primary), then run again; or set allow_data_loss: true (failback.yml, rejoining the "
               "primary region: -e failback_allow_data_loss=true) to keep a copy of the data directory in "
               "%s.diverged-<UTC stamp> and rewind; or re-clone it (empty data_dir)"
               % (node.data_dir, node.data_dir.rstrip("/")))
    was = (" (committed while this run measured and stopped it: it is stopped now, not rewound)"
           if stopped else "")
    if divergence.get("error"):
        if not allowed:
            raise PgError("refusing to rewind %s: cannot measure what it wrote after %s branched off (%s), so a "
                          "rewind may discard committed transactions%s; %s"
                          % (node.what(), upstream.what(), divergence["error"], was, options))
    elif divergence["transactions"] == 0:
        return None
    elif not allowed:
        raise PgError("refusing to rewind %s: it has %s%s; pg_rewind would discard them; %s"
                      % (node.what(), _divergence_text(divergence, upstream), was, options))
    path = path or _copy_path(node)
    parent = os.path.dirname(path)
    needed, free = _tree_bytes(node.data_dir), shutil.disk_usage(parent).free
    if needed * 1.05 > free:
        raise PgError("allow_data_loss: the copy of %s (%d bytes) kept before the rewind does not fit in %s "
                      "(%d bytes free): free space there or re-clone" % (node.data_dir, needed, parent, free))
    divergence.update(kept_copy=path, discarded=True)
    what = (_divergence_text(divergence, upstream) if not divergence.get("error")
            else "an unmeasured divergence (%s)" % divergence["error"])
    out.warnings.append("%s %s discards %s; the data directory before the rewind is kept in %s"
                        % (DISCARD_WARNING, node.what(), what, path))
    return path


def _keep_copy(node: Node, path: str, timeout: int) -> None:
    rc, out, err = run_as(node.os_user, ["cp", "-a", node.data_dir.rstrip("/"), path], timeout=max(timeout, 3600))
    if rc != 0:
        raise PgError("could not keep a copy of %s in %s before the rewind (nothing rewound; the node is stopped): "
                      "%s" % (node.data_dir, path, (err or out).strip()))


def _clone(node: Node, upstream: Upstream, passfile: str, slot: str, layout: str, timeout: int) -> None:
    if layout == "missing":
        ensure_dir_as(node.data_dir, node.os_user, 0o700)
    chown_to(node.data_dir, node.os_user)
    os.chmod(node.data_dir, 0o700)
    conninfo = build_conninfo({"host": upstream.host, "port": upstream.port, "user": upstream.user,
                               "passfile": passfile, "connect_timeout": upstream.connect_timeout,
                               "application_name": "cloudphoenix-clone"})
    argv = [node.binary("pg_basebackup"), "-D", node.data_dir, "-X", "stream", "-c", "fast", "--no-password",
            "-d", conninfo]
    if slot:
        argv += ["-S", slot]
    rc, out, err = run_as(node.os_user, argv, timeout=max(timeout, 600))
    if rc != 0:
        if layout == "missing" and os.path.isdir(node.data_dir) and not os.listdir(node.data_dir):
            os.rmdir(node.data_dir)  # leave the host as we found it
        raise PgError("pg_basebackup from %s failed: %s" % (upstream.what(), (err or out).strip()))


def _rewind(node: Node, upstream: Upstream, opts: dict, passfile: str, out_facts: dict) -> str:
    source = build_conninfo({"host": upstream.host, "port": upstream.port, "user": opts["rewind_user"],
                             "dbname": "postgres", "passfile": passfile, "connect_timeout": upstream.connect_timeout})
    argv = [node.binary("pg_rewind"), "-D", node.data_dir, "--source-server", source, "--progress"]
    rc, out, err = run_as(node.os_user, argv, timeout=max(opts.get("wait_timeout") or 60, 600))
    text = (out + err).strip()
    if rc != 0:
        raise PgError("pg_rewind of %s onto %s failed: %s; if it cannot be rewound, re-clone it (empty data_dir "
                      "and run state=standby again)" % (node.data_dir, upstream.what(), text))
    copied = re.findall(r"(\d+)/(\d+) kB \(100%\) copied", text)
    if copied:
        out_facts["rewind_copied_kb"] = int(copied[-1][1])
    return "not_required" if "no rewind required" in text else "done"


# ---------------------------------------------------------------- state=promoted

def _reference_lsn(status: dict, opts: dict, out: Outcome, node: Node):
    """The newest primary WAL position we can learn, and where it came from."""
    candidates = []
    if opts.get("primary_lsn"):
        try:
            lsn_to_int(opts["primary_lsn"])
        except ValueError:
            raise PgError("primary_lsn '%s' is not an LSN like 0/3000060" % opts["primary_lsn"]) from None
        candidates.append((opts["primary_lsn"], "primary_lsn option"))
    receiver_lsn = (status.get("wal_receiver") or {}).get("latest_end_lsn")
    if receiver_lsn:
        candidates.append((receiver_lsn, "wal receiver"))
    conninfo = parse_conninfo(status.get("primary_conninfo"))
    probe_timeout = opts.get("primary_probe_timeout", 2)
    if conninfo.get("host") and probe_timeout:
        upstream = Upstream(host=conninfo["host"], port=int(conninfo.get("port") or 5432),
                            user=conninfo.get("user") or "replicator", passfile=conninfo.get("passfile"),
                            connect_timeout=max(2, int(probe_timeout)))
        try:
            source = upstream.identify()
        except PgError as exc:
            out.extra["primary_probe"] = str(exc)
        else:
            out.extra["primary_probe"] = "reachable"
            if source["system_identifier"] == status["system_identifier"] and not source["in_recovery"]:
                candidates.append((source["lsn"], "primary"))
                if not source["read_only"]:
                    raise PgError("%s is still a writable primary: fence it first (state=fenced); promoting now "
                                  "would make two writable primaries" % upstream.what())
    if not candidates:
        return None, "unknown"
    return max(candidates, key=lambda item: lsn_to_int(item[0]))


def _writable(conn) -> bool:
    row = fetch_one(conn, "SELECT pg_is_in_recovery() AS r, current_setting('transaction_read_only') AS ro")
    if row["r"] or row["ro"] == "on":
        return False
    fetch_one(conn, "SELECT pg_current_xact_id() AS x")  # assigning an xid fails on anything read-only
    return True


def _wait_out_old_lease(not_before: float | None, check_mode: bool, out: Outcome) -> None:
    """Sleep until `not_before` (epoch seconds): the moment the old region's write lease has surely run out.

    The runbook asks for it when its fence could not reach the old region: until then that region's
    services may still hold a valid lease and commit on the old primary. Reported, never skipped.
    """
    remaining = (not_before or 0) - time.time()
    out.extra["lease_wait_seconds"] = round(max(0.0, remaining), 3)
    if remaining > 0 and not check_mode:
        time.sleep(remaining)
        out.extra["lease_waited_until"] = time.time()


def ensure_promoted(node: Node, opts: dict, check_mode: bool, started: float | None = None) -> dict:
    started = started if started is not None else time.monotonic()
    out = Outcome()
    timeout = opts.get("wait_timeout") or 60
    layout = node.layout()
    if layout != "cluster":
        raise PgError("cannot promote: %s holds no PostgreSQL cluster (%s)" % (node.data_dir, layout))
    if not node.is_running():
        if not node.has_standby_signal():
            raise PgError("cannot promote %s: it is not a standby (stopped, no standby.signal)" % node.what())
        out.act("start the stopped standby")
        if check_mode:
            out.act("promote")
            out.before, out.after = {"role": "standby", "running": False}, {"role": "primary", "running": True}
            return out.as_dict()
        node.start(timeout)
    conn = node.connect()
    try:
        status = node_status(conn)
        if not status["in_recovery"]:
            if status["read_only"]:
                raise PgError("cannot promote %s: it is not a standby but a fenced (read-only) primary; "
                              "use state=primary to unfence it deliberately" % node.what())
            out.before = out.after = {"role": "primary", "timeline": status["timeline"]}
            out.extra.update(msg="already a primary", promoted_lsn=None, seconds_to_writable=0.0)
            ensure_stamps(node, opts.get("fence_databases"), opts.get("fence_epoch"), opts.get("fence_region"),
                          check_mode, out)
            return out.as_dict()
        reference, source = _reference_lsn(status, opts, out, node)
        local = max((lsn for lsn in (status["receive_lsn"], status["replay_lsn"]) if lsn), key=lsn_to_int)
        lag = lsn_diff(reference, local) if reference else None
        max_lag = opts.get("max_lag_bytes", DEFAULT_MAX_LAG_BYTES)
        out.extra.update(lag_bytes_at_promotion=lag, lag_source=source, reference_lsn=reference)
        if lag is None:
            out.warnings.append("lag could not be measured (primary unreachable, no primary_lsn given): "
                                "promoting with what this standby received (%s)" % local)
        elif lag > max_lag:
            if not opts.get("allow_data_loss"):
                raise PgError("refusing to promote %s: it is %d bytes behind the primary (%s, from %s), above "
                              "max_lag_bytes=%d; wait for it to catch up, or set allow_data_loss: true to "
                              "promote and lose those bytes" % (node.what(), lag, reference, source, max_lag))
            out.warnings.append("promoting with %d bytes of data loss (allow_data_loss)" % lag)
        out.before = {"role": "standby", "timeline": status["timeline"],
                      "synchronous_standby_names": status["synchronous_standby_names"]}
        out.after = {"role": "primary", "timeline": (status["timeline"] or 0) + 1, "synchronous_standby_names": ""}
        cur = conn.cursor()
        if status["synchronous_standby_names"]:
            # Copied from the old primary by basebackup/rewind: once promoted, commits would wait
            # forever for a synchronous standby that is not there.
            out.act("clear synchronous_standby_names")
            if not check_mode:
                cur.execute("ALTER SYSTEM SET synchronous_standby_names = ''")
                cur.execute("SELECT pg_reload_conf()")
                wait_for(lambda: fetch_one(conn, "SELECT current_setting('synchronous_standby_names') AS s")["s"] == "",
                         5, interval=0.01)
        if opts.get("fence_epoch") is not None and opts.get("fence_databases"):
            # Refuse a stale run before promoting (the standby holds the old primary's stamps): changes nothing.
            plan_stamps(node, opts["fence_databases"], opts["fence_epoch"], opts.get("fence_region"))
        _wait_out_old_lease(opts.get("not_before"), check_mode, out)
        out.act("promote")
        if check_mode:
            ensure_stamps(node, opts.get("fence_databases"), opts.get("fence_epoch"), opts.get("fence_region"),
                          check_mode, out)
            return out.as_dict()
        cur.execute("SELECT pg_promote(true, %s)", (int(timeout),))
        if not cur.fetchone()[0]:
            raise PgError("promotion of %s did not finish within %ss; server log: %s"
                          % (node.what(), timeout, node.tail_log()))
        if not wait_for(lambda: _writable(conn), timeout, interval=0.01):
            raise PgError("%s left recovery but does not accept writes within %ss (default_transaction_read_only?)"
                          % (node.what(), timeout))
        out.extra["seconds_to_writable"] = round(time.monotonic() - started, 3)
        out.extra["promoted_lsn"] = fetch_one(conn, "SELECT pg_last_wal_replay_lsn()::text AS l")["l"]
        ensure_stamps(node, opts.get("fence_databases"), opts.get("fence_epoch"), opts.get("fence_region"),
                      check_mode, out)
        return out.as_dict()
    finally:
        conn.close()


# ---------------------------------------------------------------- state=fenced

def _process_state(pid: int) -> str | None:
    """The state letter from /proc/PID/stat (R, S, T for stopped, ...)."""
    try:
        with open("/proc/%d/stat" % pid) as stream:
            return stream.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def _kill_tree(pid: int) -> None:
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as stream:
                    if int(stream.read().rsplit(")", 1)[1].split()[1]) == pid:
                        children.append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    for target in [pid, *children]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(target, signal.SIGKILL)


def ensure_fenced(node: Node, opts: dict, check_mode: bool) -> dict:
    """Make an old primary stop taking writes (strategy stop, the default, or read_only)."""
    out = Outcome()
    strategy = opts.get("strategy") or "stop"
    if node.layout() != "cluster":
        raise PgError("cannot fence: %s holds no PostgreSQL cluster" % node.data_dir)
    pid = node.postmaster_pid()
    out.extra["strategy"] = strategy
    if pid is None:
        out.before = out.after = {"running": False, "accepting_writes": False}
        out.extra["msg"] = "not running: takes no writes"
        return out.as_dict()
    if strategy == "stop":
        out.before = {"running": True}
        out.after = {"running": False, "accepting_writes": False}
        out.act("stop %s" % node.what())
        if check_mode:
            return out.as_dict()
        stop_timeout = min(int(opts.get("wait_timeout") or 60), 10)
        if _process_state(pid) == "T":  # SIGSTOPped (hung): pg_ctl's signals would wait forever
            _kill_tree(pid)
            wait_for(lambda: not node.is_running(), 10)
            out.extra["method"] = "kill"
        elif node.stop("fast", stop_timeout):
            out.extra["method"] = "fast"
        elif node.stop("immediate", 5):
            out.extra["method"] = "immediate"
        else:  # a hung (SIGSTOPped) server ignores everything but SIGKILL
            _kill_tree(pid)
            wait_for(lambda: not node.is_running(), 10)
            out.extra["method"] = "kill"
        if node.is_running():
            raise PgError("could not stop %s" % node.what())
        return out.as_dict()
    # strategy read_only: advisory (a session may SET default_transaction_read_only=off), keeps reads.
    conn = node.connect()
    try:
        status = fetch_one(conn, "SELECT pg_is_in_recovery() AS r, "
                                 "current_setting('default_transaction_read_only') AS ro")
        read_only = status["r"] or status["ro"] == "on"
        out.before = {"running": True, "accepting_writes": not read_only}
        out.after = {"running": True, "accepting_writes": False}
        if read_only:
            out.extra["msg"] = "already read-only"
            return out.as_dict()
        out.act("set default_transaction_read_only = on, reload, terminate client sessions")
        if check_mode:
            return out.as_dict()
        cur = conn.cursor()
        cur.execute("ALTER SYSTEM SET default_transaction_read_only = on")
        cur.execute("SELECT pg_reload_conf()")
        wait_for(lambda: _new_session_read_only(node), 5)
        rows = fetch_all(conn, "SELECT pg_terminate_backend(pid) AS t FROM pg_stat_activity "
                               "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()")
        out.extra["terminated_sessions"] = len(rows)
        return out.as_dict()
    finally:
        conn.close()


def _new_session_read_only(node: Node) -> bool:
    conn = node.connect()
    try:
        return fetch_one(conn, "SELECT current_setting('default_transaction_read_only') AS ro")["ro"] == "on"
    finally:
        conn.close()
