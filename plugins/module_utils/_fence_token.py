# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fencing token a database enforces: the epoch its primary was promoted at.

Layer 3 of fencing (docs/architecture.md). The runbook stamps the claim's epoch into every
application database of the new primary right after promotion; the services' write triggers
(their migrations) refuse a write unless the stamped epoch equals the writer's lease epoch.
An old primary the controller could not reach keeps its old epoch, so services that moved to the
new lease cannot commit there, whatever connections their pools still hold.

The table and the stamp statement are a contract with the services
(services/cloudphoenix_services/core/token.py keeps the same text; a test compares them).
Epochs only grow: a stamp never lowers one, and a database already stamped with a newer epoch
than this run's stops the run (another run took over).
"""

from __future__ import absolute_import, annotations, division, print_function

__metaclass__ = type

from ansible_collections.cloudphoenix.stack.plugins.module_utils._pg import PgError, fetch_one

FENCE_TABLE_DDL = """CREATE TABLE IF NOT EXISTS cloudphoenix_fence (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    epoch bigint NOT NULL CHECK (epoch >= 0),
    region text NOT NULL,
    stamped_at timestamptz NOT NULL DEFAULT now()
)"""

STAMP_SQL = """INSERT INTO cloudphoenix_fence (singleton, epoch, region) VALUES (true, %(epoch)s, %(region)s)
ON CONFLICT (singleton) DO UPDATE SET epoch = EXCLUDED.epoch, region = EXCLUDED.region, stamped_at = now()
WHERE cloudphoenix_fence.epoch < EXCLUDED.epoch"""


def read_stamp(conn):
    """{'epoch': int, 'region': str} as stamped in the connected database, or None if never stamped."""
    if fetch_one(conn, "SELECT to_regclass('cloudphoenix_fence') IS NOT NULL AS present")["present"] is False:
        return None
    row = fetch_one(conn, "SELECT epoch, region FROM cloudphoenix_fence")
    return {"epoch": int(row["epoch"]), "region": row["region"]} if row else None


def stamp_needed(current, epoch, region, database):
    """True when `database` must be stamped with (epoch, region); False when it already is.

    Raises PgError when the database holds a newer epoch (a later run promoted it: this run is stale),
    or the same epoch for another region (two runs claimed one epoch: never silently accepted).
    """
    if current is None or current["epoch"] < epoch:
        return True
    if current["epoch"] > epoch:
        raise PgError("database %s is stamped with epoch %d (region %s), newer than this run's epoch %d: "
                      "another run took over after this one claimed; this run stops and changes nothing"
                      % (database, current["epoch"], current["region"], epoch))
    if current["region"] != region:
        raise PgError("database %s is stamped with epoch %d for region %s, not %s: two claims share one "
                      "epoch; resolve the fencing record by hand before any run continues"
                      % (database, epoch, current["region"], region))
    return False


def plan_stamps(node, databases, epoch, region):
    """(before, todo): each database's current stamp and those that need this one. Reads only.

    Raises PgError (via stamp_needed) before anything is written when one database refuses.
    """
    if int(epoch) < 0:
        raise PgError("fence_epoch must be >= 0, got %s" % epoch)
    before, todo = {}, []
    for database in databases:
        conn = node.connect(dbname=database)
        try:
            current = read_stamp(conn)
        finally:
            conn.close()
        before[database] = current
        if stamp_needed(current, int(epoch), region, database):
            todo.append(database)
    return before, todo


def ensure_stamps(node, databases, epoch, region, check_mode, out):
    """Stamp (epoch, region) into each database of a writable primary; record before/after in `out`.

    Every database is read and checked before any is written, so a refusal changes nothing.
    """
    if epoch is None or not databases:
        return
    epoch = int(epoch)
    before, todo = plan_stamps(node, databases, epoch, region)
    # new dicts: an unchanged node reports one shared dict as both before and after
    out.before = dict(out.before, fence=before)
    out.after = dict(out.after, fence=dict((database, {"epoch": epoch, "region": region}) for database in databases))
    out.extra["fence_epoch"] = epoch
    for database in todo:
        out.act("stamp epoch %d (%s) in database %s" % (epoch, region, database))
        if check_mode:
            continue
        conn = node.connect(dbname=database)
        try:
            cur = conn.cursor()
            cur.execute(FENCE_TABLE_DDL)
            # Every writer's trigger reads it (as the writer); only the runbook's superuser may write it.
            cur.execute("GRANT SELECT ON cloudphoenix_fence TO PUBLIC")
            cur.execute(STAMP_SQL, {"epoch": epoch, "region": region})
            # A concurrent newer stamp wins the upsert's WHERE: read back, never claim what is not there.
            stamp_needed(read_stamp(conn), epoch, region, database)
        finally:
            conn.close()
