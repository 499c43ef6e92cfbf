"""pg_replication / pg_replication_info against real PostgreSQL 15 clusters (fixture `pg_factory`).

Every module call goes through `run_module` (the module file executed the way AnsiballZ does),
as root, managing clusters owned by the `postgres` OS user.
"""

from __future__ import annotations

import os
import pwd
import signal
import threading
from pathlib import Path

import psycopg2
import psycopg2.extras
from ansible_collections.cloudphoenix.stack.plugins.module_utils._pg import scram_matches

from tests.support.net import free_port
from tests.support.pg import wait_until

from .conftest import REPL_PASSWORD, SUPER_PASSWORD, node_args, standby_args
from .test_divergence import diverged_copies, history_fork_lsn, query_copy, tree_digest


def server_logs(*clusters) -> list[str]:
    return [cluster.log_file.read_text(errors="replace") for cluster in clusters if cluster.log_file.exists()]


def clone(run, standby, primary, slot="west", **extra):
    result = run("pg_replication", standby_args(standby, primary, slot=slot, **extra))
    assert not result.failed, result.get("msg")
    return result


def rows(cluster) -> list[str]:
    return [row[0] for row in cluster.query("SELECT x FROM t ORDER BY x")]


def commits_within(cluster, sql: str, seconds: float) -> bool:
    """Run sql in a thread: a synchronous commit with no sync standby would block forever."""
    done = threading.Event()

    def work():
        cluster.execute(sql)
        done.set()

    threading.Thread(target=work, daemon=True).start()
    return done.wait(seconds)


def test_primary_check_mode_apply_idempotent_and_restart_report(pg_factory, run):
    east = pg_factory("east").initdb(wal_log_hints=False).start()
    hba_before = (east.data_dir / "pg_hba.conf").read_text()
    auto_before = (east.data_dir / "postgresql.auto.conf").read_text()
    args = {**node_args(east), "state": "primary", "replication_password": REPL_PASSWORD,
            "standby_slots": ["west"], "hba_networks": ["127.0.0.0/8"]}

    check = run("pg_replication", args, check=True, diff=True)
    assert not check.failed and check.changed
    assert check["actions"][:2] == ["create replication role replicator", "create physical slot west"]
    assert check["restart_required"] == ["wal_log_hints"]
    assert check["diff"]["before"]["settings"] == {"wal_log_hints": "off"}
    assert check["diff"]["after"]["settings"] == {"wal_log_hints": "on"}
    assert check["diff"]["before"]["role"]["exists"] is False
    # check mode moved nothing
    assert east.query("SELECT count(*) FROM pg_roles WHERE rolname = 'replicator'") == [(0,)]
    assert east.query("SELECT count(*) FROM pg_replication_slots") == [(0,)]
    assert (east.data_dir / "pg_hba.conf").read_text() == hba_before
    assert (east.data_dir / "postgresql.auto.conf").read_text() == auto_before

    applied = run("pg_replication", args, diff=True)
    assert not applied.failed and applied.changed
    assert applied["reloaded"] is True and applied["restart_required"] == ["wal_log_hints"]
    verifier = east.query("SELECT rolpassword FROM pg_authid WHERE rolname = 'replicator' AND rolreplication")[0][0]
    assert scram_matches(verifier, REPL_PASSWORD)
    assert east.query("SELECT slot_name, slot_type FROM pg_replication_slots") == [("west", "physical")]
    assert "host replication replicator 127.0.0.0/8 scram-sha-256" in (east.data_dir / "pg_hba.conf").read_text()
    # the password really works over TCP for replication
    conn = psycopg2.connect(host=east.host, port=east.port, user="replicator", password=REPL_PASSWORD,
                            connection_factory=psycopg2.extras.PhysicalReplicationConnection)
    conn.close()

    again = run("pg_replication", args)
    assert not again.failed and not again.changed, again["actions"]
    assert again["restart_required"] == ["wal_log_hints"]  # still pending: reported, not redone
    east.stop()
    east.start()
    after_restart = run("pg_replication", args)
    assert not after_restart.changed and after_restart["restart_required"] == []

    changed_password = run("pg_replication", {**args, "replication_password": SUPER_PASSWORD})
    assert changed_password["actions"] == ["set the password of replicator"]
    verifier = east.query("SELECT rolpassword FROM pg_authid WHERE rolname = 'replicator'")[0][0]
    assert scram_matches(verifier, SUPER_PASSWORD)
    run.assert_no_secrets(*server_logs(east))


def test_standby_clone_check_mode_streams_idempotent_and_info(pg_factory, east, run):
    west = pg_factory("west")
    passfile = west.base_dir / "west" / "replication.pgpass"
    args = standby_args(west, east)

    check = run("pg_replication", args, check=True, diff=True)
    assert not check.failed and check.changed and check["plan"] == "clone"
    assert any(action.startswith("clone primary") for action in check["actions"])
    assert check["diff"]["after"]["primary_conninfo"].startswith(f"host={east.host} port={east.port} user=replicator")
    assert not west.data_dir.exists() and not passfile.exists()
    assert east.query("SELECT count(*) FROM pg_replication_slots") == [(0,)]

    cloned = run("pg_replication", args, diff=True)
    assert not cloned.failed and cloned.changed and cloned["plan"] == "clone", cloned.get("msg")
    assert cloned["role"] == "standby" and cloned["info"]["streaming"] is True
    stat = passfile.stat()
    assert stat.st_mode & 0o777 == 0o600 and stat.st_uid == pwd.getpwnam("postgres").pw_uid
    conninfo = west.query("SHOW primary_conninfo")[0][0]
    assert f"passfile={passfile}" in conninfo and "password" not in conninfo.replace("passfile", "")
    assert west.query("SHOW primary_slot_name") == [("west",)]

    east.execute("CREATE TABLE t (x text)")
    east.execute("INSERT INTO t VALUES ('replicated')")
    wait_until(lambda: west.query("SELECT to_regclass('t') IS NOT NULL")[0][0] and rows(west) == ["replicated"],
               message="row replicated to west")

    assert not run("pg_replication", args).changed
    second_check = run("pg_replication", args, check=True)
    assert not second_check.changed and second_check["plan"] == "none"

    standby_info = run("pg_replication_info", {"socket_dir": str(west.socket_dir), "port": west.port})
    assert standby_info["reachable"] and standby_info["role"] == "standby" and standby_info["in_recovery"]
    assert standby_info["timeline"] == 1 and standby_info["streaming"]
    wait_until(lambda: run("pg_replication_info", {"socket_dir": str(west.socket_dir), "port": west.port})
               ["lag_bytes"] == 0, message="west caught up")
    primary_info = run("pg_replication_info", {"socket_dir": str(east.socket_dir), "port": east.port})
    assert primary_info["role"] == "primary" and primary_info["lag_bytes"] == 0
    assert [s["application_name"] for s in primary_info["standbys"]] == ["west"]
    assert primary_info["standbys"][0]["sync_state"] == "async"
    assert primary_info["slots"][0]["slot_name"] == "west" and primary_info["slots"][0]["active"]

    dead = run("pg_replication_info", {"listen_address": "127.0.0.1", "port": free_port(), "connect_timeout": 2})
    assert not dead.failed and dead["reachable"] is False and "unreachable" in dead["error"]

    # Repoint a running standby (new application_name): ALTER SYSTEM + reload, no restart.
    postmaster = west.postmaster_pid()
    renamed = run("pg_replication", {**args, "application_name": "west_dr"}, diff=True)
    assert not renamed.failed and renamed.changed and renamed["plan"] == "reconfigure", renamed.get("msg")
    assert "application_name=west_dr" in renamed["diff"]["after"]["primary_conninfo"]
    assert "application_name=west" in renamed["diff"]["before"]["primary_conninfo"]
    assert west.postmaster_pid() == postmaster
    wait_until(lambda: east.query("SELECT application_name FROM pg_stat_replication") == [("west_dr",)],
               message="east sees the renamed standby")
    assert not run("pg_replication", {**args, "application_name": "west_dr"}).changed
    run.assert_no_secrets(*server_logs(east, west))


def test_fence_promote_and_rewind_after_real_divergence(pg_factory, east, run):
    west = pg_factory("west")
    clone(run, west, east)
    east.execute("CREATE TABLE t (x text)")
    east.execute("INSERT INTO t VALUES ('before-split')")
    wait_until(lambda: west.query("SELECT to_regclass('t') IS NOT NULL")[0][0] and rows(west) == ["before-split"],
               message="row replicated")
    promote = {**node_args(west), "state": "promoted"}

    split_brain = run("pg_replication", promote)
    assert split_brain.failed and "still a writable primary: fence it first" in split_brain["msg"]
    assert west.in_recovery()

    fence = {**node_args(east), "state": "fenced"}
    fence_check = run("pg_replication", fence, check=True, diff=True)
    assert fence_check.changed and fence_check["diff"]["after"]["running"] is False and east.is_running()
    fenced = run("pg_replication", fence)
    assert fenced.changed and fenced["method"] == "fast" and not east.is_running()
    assert not run("pg_replication", fence).changed

    promote_check = run("pg_replication", promote, check=True)
    assert promote_check.changed and promote_check["actions"] == ["promote"] and west.in_recovery()
    promoted = run("pg_replication", promote, diff=True)
    assert not promoted.failed and promoted.changed, promoted.get("msg")
    assert promoted["role"] == "primary" and promoted["timeline"] == 2
    assert promoted["diff"]["before"]["role"] == "standby" and promoted["diff"]["after"]["role"] == "primary"
    assert promoted["seconds_to_writable"] > 0 and promoted["promoted_lsn"]
    assert not run("pg_replication", promote).changed

    # Split brain: the old primary comes back, takes a write, then crashes.
    east.start()
    east.execute("INSERT INTO t VALUES ('east-after-split')")
    west.execute("INSERT INTO t VALUES ('west-after-split')")
    east.kill()

    # East committed one transaction after the fork: a rewind would discard it. Refused, nothing changed.
    rejoin = standby_args(east, west, slot="east")
    digest = tree_digest(east.data_dir)
    refused = run("pg_replication", rejoin)
    assert refused.failed and not refused.changed
    assert "refusing to rewind" in refused["msg"] and "1 committed transaction(s)" in refused["msg"]
    assert f"fork point {history_fork_lsn(west)}" in refused["msg"]
    assert tree_digest(east.data_dir) == digest and not east.is_running() and diverged_copies(east) == []
    assert not (east.data_dir / "standby.signal").exists()

    rejoin = {**rejoin, "allow_data_loss": True}
    rejoin_check = run("pg_replication", rejoin, check=True, diff=True)
    assert rejoin_check.changed and rejoin_check["plan"] == "rewind"
    assert rejoin_check["diff"]["before"]["role"] == "primary" and rejoin_check["diff"]["after"]["role"] == "standby"
    assert rejoin_check["divergence"]["transactions"] == 1
    assert not east.is_running() and not (east.data_dir / "standby.signal").exists()
    assert tree_digest(east.data_dir) == digest and diverged_copies(east) == []

    rejoined = run("pg_replication", rejoin, diff=True)
    assert not rejoined.failed, rejoined.get("msg")
    assert rejoined["plan"] == "rewind" and rejoined["rewind"] == "done"
    divergence = rejoined["divergence"]
    assert divergence["transactions"] == 1 and divergence["discarded"] is True
    assert diverged_copies(east) == [Path(divergence["kept_copy"])]
    assert any(divergence["kept_copy"] in str(warning) for warning in rejoined["warnings"])
    # the kept copy really holds what the rewind discarded: start it as a throwaway cluster
    assert query_copy(Path(divergence["kept_copy"]), "SELECT x FROM t ORDER BY x") == [
        ("before-split",), ("east-after-split",)]
    assert rejoined["role"] == "standby" and rejoined["timeline"] == 2 and rejoined["info"]["streaming"]
    conninfo = east.query("SHOW primary_conninfo")[0][0]
    assert f"port={west.port}" in conninfo and "user=replicator" in conninfo  # not the rewind source's
    wait_until(lambda: rows(east) == ["before-split", "west-after-split"], message="east shows west's rows")
    assert "east-after-split" not in rows(east)
    assert not run("pg_replication", rejoin).changed
    west_info = run("pg_replication_info", {"socket_dir": str(west.socket_dir), "port": west.port})
    assert [(s["application_name"], s["state"]) for s in west_info["standbys"]] == [("east", "streaming")]
    run.assert_no_secrets(*server_logs(east, west))


def test_promote_lag_guard_refuses_then_allow_data_loss(pg_factory, east, run):
    west = pg_factory("west")
    clone(run, west, east)
    # Cut west off (walreceiver stops), then write 2+ MiB on east: west cannot have it.
    west.execute("ALTER SYSTEM SET primary_conninfo = ''")
    west.execute("SELECT pg_reload_conf()")
    wait_until(lambda: west.query("SELECT count(*) FROM pg_stat_wal_receiver") == [(0,)], message="receiver gone")
    east.execute("CREATE TABLE big AS SELECT repeat('x', 1000) AS x FROM generate_series(1, 3000)")
    primary_lsn = east.query("SELECT pg_current_wal_lsn()::text")[0][0]
    promote = {**node_args(west), "state": "promoted", "primary_lsn": primary_lsn}

    refused = run("pg_replication", promote)
    assert refused.failed and not refused.changed
    assert "refusing to promote" in refused["msg"] and "above max_lag_bytes=1048576" in refused["msg"]
    assert "allow_data_loss: true" in refused["msg"]
    assert west.in_recovery()

    bad_lsn = run("pg_replication", {**promote, "primary_lsn": "nonsense"})
    assert bad_lsn.failed and "is not an LSN" in bad_lsn["msg"] and west.in_recovery()

    loss = run("pg_replication", {**promote, "allow_data_loss": True})
    assert not loss.failed and loss.changed
    assert loss["lag_bytes_at_promotion"] > 1024 * 1024 and loss["lag_source"] == "primary_lsn option"
    assert any("data loss" in str(warning) for warning in loss.get("warnings", []))
    assert not west.in_recovery()


def test_sync_mode_and_promotion_clears_copied_sync_names(pg_factory, east, run):
    primary = {**node_args(east), "state": "primary", "replication_password": REPL_PASSWORD,
               "standby_slots": ["west"], "mode": "sync"}
    configured = run("pg_replication", primary)
    assert configured.changed and east.query("SHOW synchronous_standby_names") == [('FIRST 1 ("west")',)]
    west = pg_factory("west")
    clone(run, west, east)  # pg_basebackup copies east's synchronous_standby_names along
    wait_until(lambda: east.query("SELECT sync_state FROM pg_stat_replication") == [("sync",)], message="sync")
    assert commits_within(east, "CREATE TABLE t AS SELECT 'sync' AS x", 10)
    assert not run("pg_replication", primary).changed

    run("pg_replication", {**node_args(east), "state": "fenced"})
    promoted = run("pg_replication", {**node_args(west), "state": "promoted"})
    assert not promoted.failed, promoted.get("msg")
    assert promoted["actions"] == ["clear synchronous_standby_names", "promote"]
    assert commits_within(west, "INSERT INTO t VALUES ('after-failover')", 10), "commit blocked on SyncRep"


def test_bad_input_and_faults_change_nothing(pg_factory, east, run):
    west = pg_factory("west")
    passfile = west.base_dir / "west" / "replication.pgpass"

    wrong = run("pg_replication", standby_args(west, east, replication_password="not-the-password"))
    assert wrong.failed and "authentication failed for user 'replicator'" in wrong["msg"]
    assert not west.data_dir.exists() and not passfile.exists()

    closed_port = free_port()
    unreachable = run("pg_replication", standby_args(west, east, primary_port=closed_port))
    assert unreachable.failed and f"primary {east.host}:{closed_port} is unreachable" in unreachable["msg"]
    assert not west.data_dir.exists()

    west.data_dir.mkdir(parents=True)
    (west.data_dir / "notes.txt").write_text("keep me")
    foreign = run("pg_replication", standby_args(west, east))
    assert foreign.failed and "is not empty and is not a PostgreSQL cluster" in foreign["msg"]
    assert os.listdir(west.data_dir) == ["notes.txt"] and not passfile.exists()

    other = pg_factory("other").initdb()
    auto_conf = (other.data_dir / "postgresql.auto.conf").read_text()
    stranger = run("pg_replication", standby_args(other, east, slot="other"))
    assert stranger.failed and "belongs to another cluster" in stranger["msg"] and "re-clone" in stranger["msg"]
    assert (other.data_dir / "postgresql.auto.conf").read_text() == auto_conf
    assert not (other.data_dir / "standby.signal").exists() and not other.is_running()

    not_standby = run("pg_replication", {**node_args(other), "state": "promoted"})
    assert not_standby.failed and "is not a standby" in not_standby["msg"] and not other.is_running()

    bad_slot = run("pg_replication", {**node_args(east), "state": "primary", "standby_slots": ["West-1"]})
    assert bad_slot.failed and "'West-1' is not a valid slot name" in bad_slot["msg"]
    bad_net = run("pg_replication", {**node_args(east), "state": "primary", "hba_networks": ["10.0.0.300/8"]})
    assert bad_net.failed and "is not a CIDR network" in bad_net["msg"]
    assert east.query("SELECT count(*) FROM pg_replication_slots") == [(0,)]

    # already a primary: promoted is a no-op; a read_only-fenced primary is refused
    assert not run("pg_replication", {**node_args(east), "state": "promoted"}).changed
    fence = {**node_args(east), "state": "fenced", "strategy": "read_only"}
    assert run("pg_replication", fence, check=True).changed
    assert east.query("SHOW default_transaction_read_only") == [("off",)]
    fenced = run("pg_replication", fence)
    assert fenced.changed and east.query("SHOW default_transaction_read_only") == [("on",)]
    assert not run("pg_replication", fence).changed
    refused = run("pg_replication", {**node_args(east), "state": "promoted"})
    assert refused.failed and "fenced (read-only) primary" in refused["msg"]
    unfenced = run("pg_replication", {**node_args(east), "state": "primary"})
    assert "set default_transaction_read_only = 'off'" in unfenced["actions"]
    assert east.query("SHOW default_transaction_read_only") == [("off",)]
    run.assert_no_secrets(*server_logs(east))


def test_rewind_impossible_without_wal_log_hints_says_reclone(pg_factory, run):
    east = pg_factory("east").initdb(wal_log_hints=False)
    with open(east.data_dir / "pg_hba.conf", "a", encoding="utf-8") as handle:
        handle.write("host replication replicator 127.0.0.0/8 scram-sha-256\nhost all all 127.0.0.0/8 scram-sha-256\n")
    east.start()
    east.execute(f"CREATE ROLE replicator WITH REPLICATION LOGIN PASSWORD '{REPL_PASSWORD}'")
    east.execute(f"ALTER ROLE postgres PASSWORD '{SUPER_PASSWORD}'")
    west = pg_factory("west")
    clone(run, west, east)
    run("pg_replication", {**node_args(east), "state": "fenced"})
    run("pg_replication", {**node_args(west), "state": "promoted"})
    east.start()
    east.execute("CREATE TABLE diverged AS SELECT 1 AS x")
    east.stop()
    control_before = (east.data_dir / "global" / "pg_control").read_bytes()

    refused = run("pg_replication", standby_args(east, west, slot="east"))
    assert refused.failed and "rewind impossible" in refused["msg"] and "re-clone it" in refused["msg"]
    assert not east.is_running() and not (east.data_dir / "standby.signal").exists()
    assert (east.data_dir / "global" / "pg_control").read_bytes() == control_before
    assert not (east.base_dir / "east" / "replication.pgpass").exists()


def test_fence_stop_kills_a_hung_primary(pg_factory, east, run):
    """A SIGSTOPped server (the lab's "hang" fault) ignores pg_ctl: the fence must SIGKILL it."""
    pid = east.postmaster_pid()
    os.kill(pid, signal.SIGSTOP)
    try:
        fenced = run("pg_replication", {**node_args(east), "state": "fenced", "wait_timeout": 5})
    finally:
        if east.is_running():
            os.kill(pid, signal.SIGCONT)
    assert not fenced.failed and fenced.changed and fenced["method"] == "kill"
    assert not east.is_running()
    assert not run("pg_replication", {**node_args(east), "state": "fenced"}).changed


PLAYBOOK = """
- name: Clone a standby and read both nodes
  hosts: localhost
  gather_facts: false
  tasks:
    - name: West follows east
      cloudphoenix.stack.pg_replication: "{{ standby }}"
      register: west
    - name: Both regions
      cloudphoenix.stack.pg_replication_info: "{{ item }}"
      loop: "{{ info_targets }}"
      register: info
    - name: The facts the runbook relies on
      ansible.builtin.assert:
        that:
          - west.role == 'standby'
          - info.results[0].role == 'primary'
          - info.results[1].lag_bytes is number
"""


def test_playbook_idempotent_and_no_secret_even_at_vvv(pg_factory, east, run, tmp_path):
    """Through real ansible-playbook (-vvv): PLAY RECAP counts, and secrets masked everywhere."""
    import sys

    from tests.support.ansible import run_playbook

    west = pg_factory("west")
    playbook = tmp_path / "clone.yml"
    playbook.write_text(PLAYBOOK)
    extra_vars = {
        "ansible_python_interpreter": sys.executable,
        "standby": standby_args(west, east),
        "info_targets": [{"socket_dir": str(c.socket_dir), "port": c.port} for c in (east, west)],
    }
    first = run_playbook(playbook, "-vvv", "-c", "local", inventory="localhost,", extra_vars=extra_vars)
    assert first.rc == 0, first.stdout[-3000:]
    assert first.recap()["localhost"]["changed"] == 1
    second = run_playbook(playbook, "-c", "local", inventory="localhost,", extra_vars=extra_vars)
    assert second.rc == 0 and second.recap()["localhost"]["changed"] == 0, second.stdout[-3000:]
    # the passwords are in extra vars (-e) on purpose: only the module output must not show them
    module_output = first.stdout.split("TASK [West follows east]", 1)[1]
    run.assert_no_secrets(module_output, second.stdout.split("TASK [West follows east]", 1)[1],
                          *server_logs(east, west))
