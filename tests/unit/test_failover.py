"""The failover runbook's decisions (plugins/module_utils/_failover.py): no servers needed."""

from __future__ import annotations

import os

import pytest
from ansible_collections.cloudphoenix.stack.plugins.module_utils import _failover as fo

from tests.support.pg import wait_until

API = ("api.phoenix.test.", "A")
DESIRED = {API: ("127.0.20.1",)}
BUDGET = 1024 * 1024


def primary(lsn="0/3000000", **extra):
    return {"reachable": True, "role": "primary", "read_only": False, "current_lsn": lsn, **extra}


def standby(received="0/3000000", reported=None, **extra):
    return {"reachable": True, "role": "standby", "read_only": False, "receive_lsn": received,
            "replay_lsn": received, "primary_reported_lsn": reported, **extra}


def dead():
    return {"reachable": False, "role": "unknown", "error": "connection refused"}


def decide(regions, active="region=east epoch=1", dns=None, listening=None, owner="ctl/10/99", alive=False,
           budget=BUDGET, allow=False, takeover=False):
    return fo.decide("west", regions, active, dns or {API: ("127.0.10.1",)}, DESIRED, listening or {},
                     budget, allow, owner, owner_alive_fn=lambda run: alive, takeover=takeover)


def test_parse_and_format_the_fencing_record():
    assert fo.parse_active("region=west epoch=12 run=h/1/2") == {"region": "west", "epoch": 12, "run": "h/1/2"}
    assert fo.parse_active("region=east epoch=1") == {"region": "east", "epoch": 1, "run": None}
    with pytest.raises(fo.MalformedActive, match="not a key=value word"):  # malformed: no silent epoch 0
        fo.parse_active("garbage")
    with pytest.raises(fo.MalformedActive, match="not a whole number"):
        fo.parse_active("region=east epoch=x")
    assert fo.format_active("west", 2, "h/1/2") == "region=west epoch=2 run=h/1/2"
    assert fo.unquote_txt('"region=west" " epoch=2"') == "region=west epoch=2"
    assert fo.unquote_txt('"a\\"b"') == 'a"b'


def test_fresh_failover_claims_the_next_epoch():
    plan = decide({"east": primary(), "west": standby()})
    assert plan["status"] == "ready"
    assert plan["source"] == "east" and plan["target"] == "west" and plan["epoch"] == 2
    assert plan["claim"] == {"needed": True, "value": "region=west epoch=2 run=ctl/10/99",
                             "expect": "region=east epoch=1"}
    assert plan["promote"]["needed"] and plan["promote"]["lag_bytes"] == 0
    assert plan["promote"]["lag_source"] == "primary"


def test_lag_over_budget_is_refused_unless_allowed():
    regions = {"east": primary("0/5000000"), "west": standby("0/3000000")}
    with pytest.raises(fo.PreflightError) as refused:
        decide(regions)
    assert "33554432 bytes behind" in refused.value.msg and "nothing was changed" in refused.value.msg
    assert "failover_allow_data_loss=true" in refused.value.msg
    plan = decide(regions, allow=True)
    assert plan["promote"]["lag_bytes"] == 0x2000000


def test_dead_primary_uses_what_the_wal_receiver_heard():
    plan = decide({"east": dead(), "west": standby("0/3000000", reported="0/3000100")})
    assert plan["promote"]["lag_bytes"] == 0x100 and plan["promote"]["lag_source"] == "wal receiver"
    assert any(item["phase"] == "fence" for item in plan["skipped"])
    unknown = decide({"east": dead(), "west": standby("0/3000000")})
    assert unknown["promote"]["lag_source"] == "unknown"


def test_unreachable_target_or_unknown_regions_refuse():
    with pytest.raises(fo.PreflightError, match="does not answer"):
        decide({"east": primary(), "west": dead()})
    with pytest.raises(fo.PreflightError, match="not in the inventory"):
        decide({"east": primary(), "west": standby()}, active="region=north epoch=3")
    with pytest.raises(fo.PreflightError, match="does not exist: which region is active is unknown"):
        decide({"east": primary(), "west": standby()}, active=None)
    with pytest.raises(fo.PreflightError, match="not one of the regions"):
        fo.decide("south", {"east": primary()}, "region=east epoch=1", {}, {}, {}, 0, False, "o")


def test_done_when_everything_is_on_the_target():
    plan = decide({"east": dead(), "west": primary()}, active="region=west epoch=2 run=ctl/9/1",
                  dns={API: ("127.0.20.1",)})
    assert plan["status"] == "done" and "already on west" in plan["msg"]


def test_not_done_while_the_old_primary_is_writable_or_dns_is_old():
    regions = {"east": dead(), "west": primary()}
    warm = decide(regions, active="region=west epoch=2 run=ctl/9/1", dns={API: ("127.0.20.1",)},
                  listening={"east": [8080]})
    assert warm["status"] == "done"  # services of the other region may listen (fenced by the lease)
    writable = decide({"east": primary(), "west": primary()}, active="region=west epoch=2 run=ctl/9/1",
                      dns={API: ("127.0.20.1",)})
    assert writable["status"] == "resume"
    old_dns = decide(regions, active="region=west epoch=2 run=ctl/9/1")
    assert old_dns["status"] == "resume" and old_dns["epoch"] == 3  # resuming another run's claim: epoch + 1
    assert old_dns["claim"]["value"] == "region=west epoch=3 run=ctl/10/99"
    assert not old_dns["promote"]["needed"]


def test_a_live_concurrent_run_stops_this_one():
    with pytest.raises(fo.PreflightError) as stopped:
        decide({"east": primary(), "west": standby()}, active="region=west epoch=2 run=ctl/9/1", alive=True)
    assert stopped.value.details["concurrent"] and "still running" in stopped.value.msg


def test_a_claim_from_another_controller_needs_takeover():
    regions = {"east": primary(), "west": standby()}
    with pytest.raises(fo.PreflightError, match="failover_takeover=true"):
        decide(regions, active="region=west epoch=2 run=other/9/1", alive=None)
    taken = decide(regions, active="region=west epoch=2 run=other/9/1", alive=None, takeover=True)
    assert taken["status"] == "resume" and taken["claim"]["value"] == "region=west epoch=3 run=ctl/10/99"


def test_own_claim_needs_no_new_claim():
    plan = decide({"east": primary(read_only=True), "west": standby()}, active="region=west epoch=2 run=ctl/10/99")
    assert plan["status"] == "resume" and not plan["claim"]["needed"] and plan["epoch"] == 2


def test_owner_of_this_process_is_alive_and_a_gone_one_is_not():
    owner = fo.run_owner(hostname="ctl", pid=os.getpid())
    host, pid, _start = owner.split("/")
    assert host == "ctl" and pid.isdigit()
    me = f"ctl/{os.getpid()}/{fo._proc_stat(os.getpid())[1]}"
    assert fo.owner_alive(me, hostname="ctl") is True
    assert fo.owner_alive(f"ctl/{os.getpid()}/1", hostname="ctl") is False  # pid reused: other start time
    assert fo.owner_alive("other/1/1", hostname="ctl") is None
    assert fo.owner_alive(None) is False


def test_report_and_table():
    plan = decide({"east": primary(), "west": standby()})
    marks = [{"phase": "start", "at": 100.0}, {"phase": "preflight", "at": 100.5}, {"phase": "claim", "at": 100.6}]
    report = fo.build_report("failover", plan, marks, [{"phase": "preflight"}, {"phase": "claim", "status": "changed"},
                                                       {"phase": "verify", "status": "skipped"}], False,
                             extra={"fenced": "db east: fast"})
    assert report["rto_seconds"] == 0.6 and report["phases"][0]["seconds"] == 0.5
    assert report["phases"][2]["seconds"] is None and report["outcome"] == "completed"
    lines = fo.render_table(report)
    assert lines[0].startswith("failover east -> west (epoch 2)")
    assert any(line.startswith("total") and "0.60" in line for line in lines)
    assert "fenced: db east: fast" in lines
    assert fo.human_bytes(None) == "unknown" and fo.human_bytes(2048) == "2.0 KiB"
    assert fo.lag_between("0/10", "0/20") == 0 and fo.lag_between(None, "0/1") is None


def test_switchover_needs_a_writable_primary():
    with pytest.raises(fo.PreflightError, match=r"use failover\.yml"):
        fo.decide("west", {"east": dead(), "west": standby()}, "region=east epoch=1", {API: ("127.0.10.1",)},
                  DESIRED, {}, BUDGET, False, "o", owner_alive_fn=lambda run: False, mode="switchover")
    plan = fo.decide("west", {"east": primary(), "west": standby()}, "region=east epoch=1", {API: ("127.0.10.1",)},
                     DESIRED, {}, BUDGET, False, "o", owner_alive_fn=lambda run: False, mode="switchover")
    assert plan["status"] == "ready" and plan["msg"].startswith("switchover east -> west")


def test_writer_figures():
    from ansible_collections.cloudphoenix.stack.plugins.module_utils import _failover_writer as writer

    entries = [{"start": 1.0, "end": 1.1, "ok": True, "id": "a"},
               {"start": 2.0, "end": 2.1, "ok": False},
               {"start": 3.0, "end": 3.5, "ok": False},
               {"start": 4.0, "end": 4.2, "ok": True, "id": "b"},
               {"start": 4.3, "end": 4.4, "ok": True, "id": "c"}]
    assert writer.outage(entries, 1.5) == (2.2, 2.0, 4.2)
    assert writer.outage(entries[:3], 1.5) == (None, 2.0, None)  # never recovered
    assert writer.outage(entries[3:], 0) == (None, None, None)  # nothing failed
    assert writer.write_gap(entries, 0) == 3.1
    assert writer.acknowledged_ids(entries) == ["a", "b", "c"]


def test_prepare_is_reported_but_not_in_the_rto():
    plan = decide({"east": primary(), "west": standby()})
    marks = [{"phase": "start", "at": 100.0}, {"phase": "preflight", "at": 100.5}, {"phase": "prepare", "at": 106.5},
             {"phase": "claim", "at": 106.7}]
    report = fo.build_report("switchover", plan, marks, [{"phase": "preflight"}, {"phase": "prepare"},
                                                         {"phase": "claim"}], False)
    assert report["rto_seconds"] == 0.7 and report["total_seconds"] == 6.7
    assert any(line.startswith("total") and "(6.70 s with prepare)" in line for line in fo.render_table(report))


def _state(pid):
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0]


def _sleeper(pid_dir, name, stopped=False):
    import signal
    import subprocess

    proc = subprocess.Popen(["sleep", "30"])
    if stopped:
        os.kill(proc.pid, signal.SIGSTOP)
        # A signal is delivered asynchronously: on a busy machine the child may not show as stopped yet,
        # and the code under test would rightly take it for a running process.
        wait_until(lambda: _state(proc.pid) == "T", message=f"sleep {proc.pid} stopped")
    with open(os.path.join(pid_dir, name + ".pid"), "w") as handle:
        handle.write(f"{proc.pid}\n")
    return proc


def test_services_fence_kills_hung_ones_at_once_and_the_rest_after_the_timeout(tmp_path):
    from ansible_collections.cloudphoenix.stack.plugins.module_utils import _failover_fence as fence

    running, hung = _sleeper(str(tmp_path), "a"), _sleeper(str(tmp_path), "b", stopped=True)
    try:
        assert fence.stop_services(str(tmp_path), 0, check_mode=True) == {"stopped": 2, "killed": 0}
        assert running.poll() is None and hung.poll() is None  # check mode: nothing signalled
        # sleep dies of QUIT at once; the stopped one cannot act on it and is killed without waiting for
        # the timeout (killed 1: only the hung one; the running one needed no SIGKILL)
        assert fence.stop_services(str(tmp_path), 5, check_mode=False) == {"stopped": 2, "killed": 1}
        assert running.wait(5) is not None and hung.wait(5) is not None
        assert fence.stop_services(str(tmp_path), 5, check_mode=False) == {"stopped": 0, "killed": 0}
    finally:
        for proc in (running, hung):
            if proc.poll() is None:
                proc.kill()


class FakeNode:
    """A postmaster stand-in: a process, and pg_ctl stop modes recorded."""

    def __init__(self, proc):
        self.proc, self.stops = proc, []

    def layout(self):
        return "cluster"

    def postmaster_pid(self):
        return self.proc.pid if self.proc.poll() is None else None

    def is_running(self):
        return self.postmaster_pid() is not None

    def what(self):
        return f"node {self.proc.pid}"

    def stop(self, mode, timeout):
        self.stops.append(mode)
        self.proc.kill()
        self.proc.wait()
        return True


@pytest.mark.parametrize("stopped,method", [(False, "immediate"), (True, "kill")])
def test_unreachable_primary_skips_the_fast_shutdown(tmp_path, stopped, method):
    from ansible_collections.cloudphoenix.stack.plugins.module_utils import _failover_fence as fence

    proc = _sleeper(str(tmp_path), "pg", stopped=stopped)
    node = FakeNode(proc)
    try:
        out = fence.fence_database(node, {"strategy": "stop", "wait_timeout": 10}, skip_fast=True, check_mode=False)
        assert out["method"] == method and "fast" not in node.stops and out["changed"]
        assert node.stops == ([] if stopped else ["immediate"])  # a SIGSTOPped postmaster only yields to SIGKILL
        assert proc.wait(5) is not None
    finally:
        if proc.poll() is None:
            proc.kill()


def test_fence_runs_database_and_services_together(tmp_path):
    from ansible_collections.cloudphoenix.stack.plugins.module_utils import _failover_fence as fence

    services = str(tmp_path / "pids")
    os.mkdir(services)
    svc = _sleeper(services, "a")
    pg = _sleeper(str(tmp_path), "pg")
    try:
        (db, db_error), (stopped, svc_error) = fence.fence(FakeNode(pg), {"strategy": "stop"}, services, 0,
                                                           skip_fast=True, check_mode=False)
        assert db_error is None and svc_error is None
        assert db["method"] == "immediate" and stopped["stopped"] == 1 and "seconds" in stopped
    finally:
        for proc in (svc, pg):
            if proc.poll() is None:
                proc.kill()


def test_a_killed_unreaped_postmaster_is_not_running(tmp_path):
    import signal
    import subprocess

    from ansible_collections.cloudphoenix.stack.plugins.module_utils import _failover_fence as fence

    proc = subprocess.Popen(["sleep", "30"])
    os.kill(proc.pid, signal.SIGKILL)
    wait_until(lambda: _state(proc.pid) == "Z", message="a zombie")  # until reaped below: kill -0 still succeeds
    node = FakeNode(proc)
    node.postmaster_pid = lambda: proc.pid
    try:
        out = fence.fence_database(node, {"strategy": "stop"}, skip_fast=True, check_mode=False)
        assert out["msg"].startswith("not running") and not out["changed"] and node.stops == []
    finally:
        proc.wait()


MARKS = [{"phase": "start", "at": 100.0}, {"phase": "preflight", "at": 100.5}, {"phase": "claim", "at": 100.7},
         {"phase": "fence", "at": 101.5}]
PLAN = {"status": "ready", "source": "east", "target": "west", "epoch": 8,
        "active": {"region": "east", "epoch": 7, "run": None},
        "claim": {"needed": True, "value": "region=west epoch=8 run=ctl/1/2", "expect": "region=east epoch=7"}}


@pytest.mark.parametrize("task,phase", [
    ("cloudphoenix.stack.failover : Promote - the new primary (lag guard again at the last moment)", "promote"),
    ("Switch DNS - every public name and db to the new region", "switch_dns"),
    ("Repoint and verify - the new region's services write to the new primary", "repoint"),
    ("Fence - stop the old primary database", "fence"),
    ("some task without a phase name", "lease_wait"),  # the phase after the last one finished (fence)
    (None, "lease_wait"),
])
def test_failed_phase_from_the_task_name_or_the_marks(task, phase):
    assert fo.failed_phase(MARKS, task) == phase


def test_failed_run_report_says_where_it_stopped_who_holds_the_claim_and_how_to_resume():
    phase = fo.failed_phase(MARKS, "Promote - the new primary")
    rows = fo.failed_rows(MARKS, phase, "refusing to promote: 2 MiB behind")
    assert [(row["phase"], row["status"]) for row in rows] == [
        ("preflight", "ok"), ("claim", "ok"), ("fence", "ok"), ("promote", "failed")]
    failure = {"phase": phase, "msg": "refusing to promote: 2 MiB behind",
               "claim_held_by": fo.claim_holder(PLAN, MARKS),
               "resume_command": "ansible-playbook cloudphoenix.stack.failover -i inventories/lab"}
    report = fo.build_report("failover", PLAN, MARKS, rows, False, failure=failure)
    assert report["outcome"] == "failed" and report["failed_phase"] == "promote" and report["rto_seconds"] is None
    assert report["claim_held_by"] == "region=west epoch=8 run=ctl/1/2"  # this run claimed before it failed
    table = "\n".join(fo.render_table(report))
    assert "outcome: failed" in table and "failed in promote: refusing to promote: 2 MiB behind" in table
    assert "fencing record held by: region=west epoch=8 run=ctl/1/2" in table
    assert "to resume: ansible-playbook cloudphoenix.stack.failover -i inventories/lab" in table


def test_a_run_that_failed_before_its_claim_names_the_previous_holder():
    before_claim = MARKS[:2]
    assert fo.claim_holder(PLAN, before_claim) == "region=east epoch=7"
    assert fo.claim_holder({"active": {"region": "east", "epoch": 7, "run": "x/1/2"}, "claim": {}},
                           before_claim) == "region=east epoch=7 run=x/1/2"
