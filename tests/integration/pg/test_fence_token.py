"""pg_replication's fencing token (fence_epoch): real PostgreSQL 15 clusters, no mocks.

The expected stamps are written here by hand (epoch, region per database) and read back with plain
SQL on each cluster, never through the module's own reader.
"""

from __future__ import annotations

from tests.support.pg import PgCluster, wait_until

from .conftest import node_args
from .test_pg_replication import clone

APP_DBS = ["phoenix", "reports"]


def stamps(cluster: PgCluster) -> dict[str, tuple[int, str] | None]:
    """Each application database's stamp as plain SQL sees it (None: never stamped)."""
    found: dict[str, tuple[int, str] | None] = {}
    for db in APP_DBS:
        if not cluster.query("SELECT to_regclass('cloudphoenix_fence') IS NOT NULL", dbname=db)[0][0]:
            found[db] = None
            continue
        rows = cluster.query("SELECT epoch, region FROM cloudphoenix_fence", dbname=db)
        found[db] = (rows[0][0], rows[0][1]) if rows else None
    return found


def promoted_args(cluster: PgCluster, epoch: int, region: str, **extra) -> dict:
    return {**node_args(cluster), "state": "promoted", "fence_epoch": epoch, "fence_region": region,
            "fence_databases": APP_DBS, **extra}


def with_app_dbs(cluster: PgCluster) -> PgCluster:
    for db in APP_DBS:
        cluster.execute(f"CREATE DATABASE {db}")
    return cluster


def test_stamp_on_a_primary_check_mode_apply_idempotent(east, run):
    with_app_dbs(east)
    args = promoted_args(east, 1, "east")

    check = run("pg_replication", args, check=True, diff=True)
    assert not check.failed and check.changed, check.get("msg")
    assert check["actions"] == ["stamp epoch 1 (east) in database phoenix", "stamp epoch 1 (east) in database reports"]
    assert check["diff"]["before"]["fence"] == {"phoenix": None, "reports": None}
    assert check["diff"]["after"]["fence"]["phoenix"] == {"epoch": 1, "region": "east"}
    assert stamps(east) == {"phoenix": None, "reports": None}  # check mode wrote nothing

    applied = run("pg_replication", args, diff=True)
    assert not applied.failed and applied.changed and applied["fence_epoch"] == 1
    assert stamps(east) == {"phoenix": (1, "east"), "reports": (1, "east")}
    again = run("pg_replication", args)
    assert not again.failed and not again.changed


def test_unreached_old_primary_keeps_its_epoch_and_stale_runs_are_refused(pg_factory, east, run):
    """The partial failure: the old primary could not be fenced and stays writable at its epoch."""
    with_app_dbs(east)
    assert run("pg_replication", promoted_args(east, 1, "east")).changed
    west = pg_factory("west")
    clone(run, west, east)
    wait_until(lambda: stamps(west) == {"phoenix": (1, "east"), "reports": (1, "east")},
               message="stamps replicated to the standby")

    # A run at an epoch older than the standby's stamps is refused before it promotes.
    stale = run("pg_replication", promoted_args(west, 0, "west", primary_probe_timeout=0))
    assert stale.failed and not stale.changed and "newer than this run's epoch 0" in stale["msg"]
    assert west.in_recovery()

    # The controller cannot reach east (no probe): west is promoted and stamped with the claim's epoch.
    promoted = run("pg_replication", promoted_args(west, 2, "west", primary_probe_timeout=0), diff=True)
    assert not promoted.failed and promoted.changed, promoted.get("msg")
    assert "promote" in promoted["actions"] and "stamp epoch 2 (west) in database phoenix" in promoted["actions"]
    assert promoted["diff"]["before"]["fence"]["phoenix"] == {"epoch": 1, "region": "east"}
    assert not west.in_recovery()
    assert stamps(west) == {"phoenix": (2, "west"), "reports": (2, "west")}
    assert stamps(east) == {"phoenix": (1, "east"), "reports": (1, "east")}  # east kept the old token
    assert not east.in_recovery()

    # A paused run of the old epoch that resumes now cannot lower west's stamp.
    resumed = run("pg_replication", promoted_args(west, 1, "east"))
    assert resumed.failed and not resumed.changed
    assert "stamped with epoch 2 (region west), newer than this run's epoch 1" in resumed["msg"]
    # One epoch, two regions: never accepted silently.
    clash = run("pg_replication", promoted_args(west, 2, "east"))
    assert clash.failed and "two claims share one epoch" in clash["msg"]
    assert stamps(west) == {"phoenix": (2, "west"), "reports": (2, "west")}
    assert not run("pg_replication", promoted_args(west, 2, "west")).changed

