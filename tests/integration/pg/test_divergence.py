"""pg_replication state=standby: what an old primary wrote after the fork point, before it is rewound.

Real PostgreSQL 15 clusters. The expected numbers come from the test itself: the commits it made on the
old primary, the fork point read from the new primary's own history file, and the rows found in the kept
copy once it is started as a throwaway cluster.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from datetime import datetime
from pathlib import Path

import psycopg2

from tests.support.net import free_port
from tests.support.pg import PG_BIN, make_shared_dir, run_as_pg, wait_until

from .conftest import node_args, standby_args


def rows(cluster) -> list[str]:
    return [row[0] for row in cluster.query("SELECT x FROM t ORDER BY x")]


def lsn_int(lsn: str) -> int:
    high, low = lsn.split("/")
    return (int(high, 16) << 32) + int(low, 16)


def tree_digest(path: Path) -> str:
    """Every file of a directory tree: relative path, mode and content."""
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            full = Path(root) / name
            digest.update(str(full.relative_to(path)).encode() + b"\0")
            digest.update(oct(full.lstat().st_mode).encode())
            digest.update(full.read_bytes())
    return digest.hexdigest()


def history_fork_lsn(new_primary, timeline: int = 2) -> str:
    """The switchpoint in the new primary's own timeline history file (pg_read_file, as superuser)."""
    text = new_primary.query("SELECT pg_read_file(%s)", (f"pg_wal/{timeline:08X}.history",))[0][0]
    return text.strip().splitlines()[-1].split()[1]


def diverged_copies(cluster) -> list[Path]:
    return sorted(cluster.data_dir.parent.glob(cluster.data_dir.name + ".diverged-*"))


def query_copy(data_dir: Path, sql: str) -> list[tuple]:
    """Start a copied data directory as a throwaway cluster on a free port, run sql, stop it."""
    run_dir = make_shared_dir("cp-copy-")
    port = free_port()
    options = f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={run_dir}"
    run_as_pg(str(PG_BIN / "pg_ctl"), "-D", str(data_dir), "-l", str(run_dir / "server.log"), "-o", options,
              "-w", "-t", "30", "start", timeout=40)
    try:
        conn = psycopg2.connect(host=str(run_dir), port=port, user="postgres", dbname="postgres")
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                return cur.fetchall()
        finally:
            conn.close()
    finally:
        run_as_pg(str(PG_BIN / "pg_ctl"), "-D", str(data_dir), "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(run_dir, ignore_errors=True)


def failover(run, east, west):
    """Clone west from east with table t, fence (stop) east, promote west: the new timeline 2."""
    assert not run("pg_replication", standby_args(west, east)).failed
    east.execute("CREATE TABLE t (x text)")
    east.execute("INSERT INTO t VALUES ('before-split')")
    wait_until(lambda: west.query("SELECT to_regclass('t') IS NOT NULL")[0][0] and rows(west) == ["before-split"],
               message="row replicated")
    assert run("pg_replication", {**node_args(east), "state": "fenced"}).changed and not east.is_running()
    promoted = run("pg_replication", {**node_args(west), "state": "promoted"})
    assert not promoted.failed and promoted["timeline"] == 2, promoted.get("msg")
    west.execute("INSERT INTO t VALUES ('west-after-split')")


def test_clean_failover_rejoins_without_allow_data_loss(pg_factory, east, run):
    west = pg_factory("west")
    failover(run, east, west)
    rejoin = standby_args(east, west, slot="east")

    check = run("pg_replication", rejoin, check=True)
    assert not check.failed and check.changed and check["plan"] == "rewind", check.get("msg")
    assert check["divergence"]["transactions"] == 0 and check["divergence"]["fork_lsn"] == history_fork_lsn(west)
    assert not east.is_running() and not (east.data_dir / "standby.signal").exists()

    rejoined = run("pg_replication", rejoin)
    assert not rejoined.failed, rejoined.get("msg")
    divergence = rejoined["divergence"]
    # the fast shutdown's checkpoint reached west before the promotion: east has nothing after the fork
    assert divergence["fork_lsn"] == history_fork_lsn(west)
    assert (divergence["transactions"], divergence["records"], divergence["bytes"]) == (0, 0, 0)
    assert divergence["kept_copy"] is None and divergence["discarded"] is False
    assert diverged_copies(east) == []
    assert rejoined["role"] == "standby" and rejoined["timeline"] == 2 and rejoined["info"]["streaming"]
    wait_until(lambda: rows(east) == ["before-split", "west-after-split"], message="east follows west")
    again = run("pg_replication", rejoin)
    assert not again.failed and not again.changed and "divergence" not in again.result


def test_checkpoints_after_the_fork_are_not_data_loss(pg_factory, east, run):
    """The old primary came back and was shut down again, with no write: a shutdown checkpoint only."""
    west = pg_factory("west")
    failover(run, east, west)
    east.start()
    east.stop()
    rejoined = run("pg_replication", standby_args(east, west, slot="east"))
    assert not rejoined.failed, rejoined.get("msg")
    divergence = rejoined["divergence"]
    assert divergence["transactions"] == 0 and divergence["last_commit"] is None
    assert divergence["records"] >= 1 and divergence["bytes"] > 0  # reported, not counted as loss
    assert "Transaction" not in divergence["rmgr_records"] and divergence["rmgr_records"].get("XLOG", 0) >= 1
    assert divergence["kept_copy"] is None and diverged_copies(east) == []
    assert rejoined["rewind"] == "done" and rejoined["role"] == "standby"
    assert not any("allow_data_loss" in str(warning) for warning in rejoined.get("warnings", []))


def test_diverged_old_primary_refused_in_check_mode_too(pg_factory, east, run):
    west = pg_factory("west")
    failover(run, east, west)
    east.start()
    written = ["east-1", "east-2", "east-3"]
    before = east.query("SELECT clock_timestamp() AT TIME ZONE 'UTC'")[0][0]
    for value in written:  # one transaction each
        east.execute("INSERT INTO t VALUES (%s)", (value,))
    after = east.query("SELECT clock_timestamp() AT TIME ZONE 'UTC'")[0][0]
    written_up_to = east.query("SELECT pg_current_wal_lsn()::text")[0][0]
    east.kill()
    digest = tree_digest(east.data_dir)
    fork = history_fork_lsn(west)
    passfile = east.base_dir / "east" / "replication.pgpass"
    rejoin = standby_args(east, west, slot="east")

    for check in (True, False):
        refused = run("pg_replication", rejoin, check=check)
        assert refused.failed and not refused.changed
        message = refused["msg"]
        assert "refusing to rewind" in message and f"{len(written)} committed transaction(s)" in message
        assert f"fork point {fork}" in message and "allow_data_loss: true" in message
        assert "failback_allow_data_loss=true" in message and "bytes of WAL" in message
        assert tree_digest(east.data_dir) == digest and not east.is_running()
        assert not passfile.exists() and diverged_copies(east) == []
        assert west.query("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'east'") == [(0,)]

    allowed_check = run("pg_replication", {**rejoin, "allow_data_loss": True}, check=True)
    assert not allowed_check.failed and allowed_check.changed, allowed_check.get("msg")
    divergence = allowed_check["divergence"]
    assert divergence["transactions"] == len(written) and divergence["fork_lsn"] == fork
    assert divergence["bytes"] == lsn_int(divergence["end_lsn"]) - lsn_int(fork)
    assert lsn_int(divergence["end_lsn"]) >= lsn_int(written_up_to)
    last_commit = datetime.fromisoformat(divergence["last_commit"].removesuffix(" UTC"))
    assert before <= last_commit <= after
    assert divergence["discarded"] is True and divergence["kept_copy"].startswith(str(east.data_dir) + ".diverged-")
    assert any(divergence["kept_copy"] in action for action in allowed_check["actions"])
    assert any(divergence["kept_copy"] in str(warning) for warning in allowed_check["warnings"])
    # check mode: measured and reported, nothing changed
    assert tree_digest(east.data_dir) == digest and diverged_copies(east) == [] and not passfile.exists()


def test_failback_fork_point_from_both_timeline_histories(pg_factory, east, run):
    """Failover (timeline 2), clean rejoin, failback (timeline 3); the DR side then wrote after the fork."""
    west = pg_factory("west")
    failover(run, east, west)
    assert not run("pg_replication", standby_args(east, west, slot="east")).failed
    wait_until(lambda: rows(east) == ["before-split", "west-after-split"], message="east follows west")
    assert run("pg_replication", {**node_args(west), "state": "fenced"}).changed
    promoted = run("pg_replication", {**node_args(east), "state": "promoted"})
    assert not promoted.failed and promoted["timeline"] == 3, promoted.get("msg")
    west.start()
    west.execute("INSERT INTO t VALUES ('west-after-failback')")
    west.kill()
    fork = history_fork_lsn(east, timeline=3)
    rejoin = standby_args(west, east, slot="west")

    refused = run("pg_replication", rejoin)
    assert refused.failed and "1 committed transaction(s)" in refused["msg"] and f"fork point {fork}" in refused["msg"]
    assert "branched off to timeline 3" in refused["msg"] and diverged_copies(west) == []

    rejoined = run("pg_replication", {**rejoin, "allow_data_loss": True})
    assert not rejoined.failed, rejoined.get("msg")
    divergence = rejoined["divergence"]
    assert (divergence["timeline"], divergence["fork_timeline"], divergence["source_timeline"]) == (2, 2, 3)
    assert divergence["fork_lsn"] == fork and divergence["transactions"] == 1
    assert rejoined["rewind"] == "done" and rejoined["timeline"] == 3 and rejoined["role"] == "standby"
    assert query_copy(Path(divergence["kept_copy"]), "SELECT count(*) FROM t WHERE x = 'west-after-failback'") == [
        (1,)]
    east.execute("INSERT INTO t VALUES ('east-after-failback')")
    wait_until(lambda: rows(west) == ["before-split", "east-after-failback", "west-after-split"],
               message="west follows east without its discarded row")
    assert not run("pg_replication", {**rejoin, "allow_data_loss": True}).changed


def test_running_diverged_old_primary_refused_then_stopped_kept_and_rewound(pg_factory, east, run):
    west = pg_factory("west")
    failover(run, east, west)
    east.start()
    east.execute("INSERT INTO t SELECT 'east-' || i FROM generate_series(1, 50) AS i")  # one transaction
    east.execute("INSERT INTO t VALUES ('east-last')")
    postmaster = east.postmaster_pid()
    rejoin = standby_args(east, west, slot="east")

    refused = run("pg_replication", rejoin)
    assert refused.failed and "2 committed transaction(s)" in refused["msg"]
    assert east.postmaster_pid() == postmaster and not east.in_recovery()
    assert east.query("SELECT count(*) FROM t WHERE x LIKE %s", ("east-%",)) == [(51,)]

    rejoined = run("pg_replication", {**rejoin, "allow_data_loss": True})
    assert not rejoined.failed, rejoined.get("msg")
    assert rejoined["divergence"]["transactions"] == 2 and rejoined["rewind"] == "done"
    assert east.in_recovery() and rows(east) == ["before-split", "west-after-split"]
    kept = Path(rejoined["divergence"]["kept_copy"])
    assert query_copy(kept, "SELECT count(*) FROM t WHERE x LIKE 'east-%'") == [(51,)]
