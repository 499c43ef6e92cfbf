"""Failover figures for pg_replication on fixture clusters (real PostgreSQL 15, loopback, free ports).

Per round: clone west from east with the module, fence east (stop), then
  promote   - `state=promoted` on west: wall time of the module call (process start to result,
              the call returns only once west accepted a write) and the module's own
              seconds_to_writable;
  rejoin    - east comes back, takes a write of its own (a real divergence), crashes (SIGKILL);
              `state=standby` on east: wall time of the call (stop check, checkpoint on the source,
              pg_rewind incl. crash recovery, config rewrite, start, streaming on the new timeline).
Targets (issue 3): promote <= 1 s, rewind + rejoin <= 3 s.

pg_rewind copies whole WAL segments from the source (the diverged one, the new timeline's and
recycled ones: ~52 MB with the default 16 MB segments). A second series runs the same rounds with
clusters made by `initdb --wal-segsize=1` to show what a smaller segment size buys.
"""

from __future__ import annotations

import contextlib
import shutil
import statistics
import time

ROUNDS = 3


@contextlib.contextmanager
def _initdb_wal_segsize(megabytes: int | None):
    """Make the fixture's initdb pass --wal-segsize (bench only; the fixture has no such option)."""
    from tests.support import pg

    if megabytes is None:
        yield
        return
    original = pg.run_as_pg

    def run_as_pg(*argv, **kwargs):
        if argv and argv[0].endswith("/initdb"):
            argv = (*argv, f"--wal-segsize={megabytes}")
        return original(*argv, **kwargs)

    pg.run_as_pg = run_as_pg
    try:
        yield
    finally:
        pg.run_as_pg = original


def _round(wal_segsize_mb: int | None) -> dict:
    from tests.integration.pg.conftest import REPL_PASSWORD, SUPER_PASSWORD, node_args, standby_args
    from tests.support.ansible import run_module
    from tests.support.pg import PgCluster, make_primary_with_replicator, make_shared_dir, wait_until

    base = make_shared_dir("cp-bench-pg-")
    east = PgCluster(base_dir=base, name="east")
    west = PgCluster(base_dir=base, name="west")
    try:
        with _initdb_wal_segsize(wal_segsize_mb):
            make_primary_with_replicator(east, password=REPL_PASSWORD)
        east.execute(f"ALTER ROLE postgres PASSWORD '{SUPER_PASSWORD}'")
        cloned = run_module("pg_replication", standby_args(west, east))
        assert not cloned.failed, cloned.get("msg")
        east.execute("CREATE TABLE t AS SELECT 'before' AS x")
        wait_until(lambda: west.query("SELECT to_regclass('t') IS NOT NULL")[0][0], message="replicated")
        fenced = run_module("pg_replication", {**node_args(east), "state": "fenced"})
        assert not fenced.failed, fenced.get("msg")

        started = time.monotonic()
        promoted = run_module("pg_replication", {**node_args(west), "state": "promoted"})
        promote_wall = time.monotonic() - started
        assert not promoted.failed and promoted["role"] == "primary", promoted.get("msg")
        west.execute("INSERT INTO t VALUES ('after-promote')")

        east.start()
        east.execute("INSERT INTO t VALUES ('east-diverged')")
        east.kill()
        started = time.monotonic()
        rejoined = run_module("pg_replication", standby_args(east, west, slot="east"))
        rejoin_wall = time.monotonic() - started
        assert not rejoined.failed and rejoined["rewind"] == "done", rejoined.get("msg")
        assert rejoined["info"]["streaming"] and rejoined["timeline"] == 2
        wait_until(lambda: east.query("SELECT count(*) FROM t WHERE x = 'east-diverged'") == [(0,)],
                   message="divergent row gone")
        return {"promote_wall": promote_wall, "to_writable": promoted["seconds_to_writable"],
                "rejoin_wall": rejoin_wall, "rejoin_phases": rejoined["timings"],
                "copied_kb": rejoined.get("rewind_copied_kb")}
    finally:
        east.destroy()
        west.destroy()
        shutil.rmtree(base, ignore_errors=True)


def _report(title: str, results: list[dict]) -> None:
    print(title, flush=True)
    for index, figures in enumerate(results, 1):
        print(f"  round {index}: promote call->writable {figures['promote_wall']:.3f} s "
              f"(in-module {figures['to_writable']:.3f} s); "
              f"rewind+rejoin->streaming {figures['rejoin_wall']:.3f} s "
              f"(phases {figures['rejoin_phases']}, pg_rewind copied {figures['copied_kb']} kB)", flush=True)
    for key, label, target in (("promote_wall", "promote call->writable (wall)", 1.0),
                               ("to_writable", "promote seconds_to_writable (in-module)", 1.0),
                               ("rejoin_wall", "rewind+rejoin->streaming (wall)", 3.0)):
        values = [figures[key] for figures in results]
        print(f"  {label:<42} median {statistics.median(values):.3f} s  max {max(values):.3f} s  "
              f"target <= {target:.1f} s", flush=True)


def run() -> None:
    _report("default initdb (16 MB WAL segments):", [_round(None) for _ in range(ROUNDS)])
    _report("initdb --wal-segsize=1:", [_round(1) for _ in range(ROUNDS)])


if __name__ == "__main__":
    run()
