"""Layer 3 of fencing, the token: a write commits only on the primary stamped at the writer's lease epoch.

The failover runbook stamps the new primary with the epoch it claimed (``STAMP_SQL``, the contract
below). Every table a service writes has a statement-level trigger that refuses a write whose
session carries ``cloudphoenix.lease_epoch`` unless the stamp equals it, with SQLSTATE ``CPF01``.
A session without the setting (migrations, an admin, fencing disabled) is not checked. core/db.py
pins each pooled connection to the lease epoch and, on ``CPF01``, moves to the other hosts of the
multi-host DSN (``HostPicker``). Migrations apply ``CORE_MIGRATIONS`` and ``ensure_triggers``.
"""

from __future__ import annotations

from collections.abc import Iterable

import psycopg2.extensions
from psycopg2 import sql

STALE_EPOCH = "CPF01"  # SQLSTATE: this database is not the primary of the session's lease epoch
SETTING = "cloudphoenix.lease_epoch"
TRIGGER = "cloudphoenix_fence"

# The contract with the runbook (plugins/module_utils/_fence_token.py has the same two texts under the
# same names): both sides may create the table; the runbook stamps the new primary. Keep them identical.
FENCE_TABLE_DDL = """CREATE TABLE IF NOT EXISTS cloudphoenix_fence (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    epoch bigint NOT NULL CHECK (epoch >= 0),
    region text NOT NULL,
    stamped_at timestamptz NOT NULL DEFAULT now()
)"""

STAMP_SQL = """INSERT INTO cloudphoenix_fence (singleton, epoch, region) VALUES (true, %(epoch)s, %(region)s)
ON CONFLICT (singleton) DO UPDATE SET epoch = EXCLUDED.epoch, region = EXCLUDED.region, stamped_at = now()
WHERE cloudphoenix_fence.epoch < EXCLUDED.epoch"""

# The lease epoch is compared as text: the services send a canonical decimal, and anything else
# (garbage set by hand) is refused with CPF01 instead of failing with a cast error.
CHECK_FUNCTION = """
CREATE OR REPLACE FUNCTION cloudphoenix_fence_check() RETURNS trigger LANGUAGE plpgsql AS $fence$
DECLARE
    lease text := current_setting('cloudphoenix.lease_epoch', true);
    stamped bigint;
BEGIN
    IF lease IS NULL OR lease = '' THEN
        RETURN NULL;  -- a session without a lease: migrations, admins, fencing disabled
    END IF;
    SELECT epoch INTO stamped FROM cloudphoenix_fence WHERE singleton;
    IF stamped IS NULL OR stamped::text IS DISTINCT FROM lease THEN
        RAISE EXCEPTION 'cloudphoenix fence: this database is stamped at epoch %, the writer holds lease epoch %',
                coalesce(stamped::text, 'none'), lease
            USING ERRCODE = 'CPF01',
                  HINT = 'Not the primary of the writer''s lease epoch: the writer retries on its other hosts.';
    END IF;
    RETURN NULL;
END
$fence$;
"""

CORE_MIGRATIONS = [FENCE_TABLE_DDL + ";\n" + CHECK_FUNCTION]


def ensure_triggers(cur: psycopg2.extensions.cursor, tables: Iterable[str]) -> list[str]:
    """Create the fence trigger on each of ``tables`` that lacks it; return the tables changed.

    Checked on every migrate rather than kept as numbered steps: a table dropped and created again
    gets its trigger back. Present triggers are left alone (no lock on a table in use).
    """
    wanted = sorted(set(tables))
    cur.execute(
        "SELECT c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
        " WHERE t.tgname = %s AND c.relnamespace = current_schema()::regnamespace AND c.relname = ANY(%s)",
        (TRIGGER, wanted),
    )
    present = {row[0] for row in cur.fetchall()}
    created = []
    for table in wanted:
        if table not in present:
            cur.execute(
                sql.SQL(
                    "CREATE TRIGGER {} BEFORE INSERT OR UPDATE OR DELETE ON {}"
                    " FOR EACH STATEMENT EXECUTE FUNCTION cloudphoenix_fence_check()"
                ).format(sql.Identifier(TRIGGER), sql.Identifier(table))
            )
            created.append(table)
    return created


class HostPicker:
    """Which hosts of a multi-host DSN a new connection may try, given servers that refused our epoch.

    A server that raised CPF01 is stale for the current lease epoch: new connections try the other
    hosts first (``host=``/``port=`` overrides of the DSN's lists, in the DSN's order) and the stale
    ones last, the one that refused longest ago first. Last, not never: with
    ``target_session_attrs=read-write`` libpq skips standbys and dead hosts, so a stale primary that
    is stamped later (the runbook is a step behind the lease) is still found, and if every host is
    stale they take turns. ``clear()`` when the lease epoch changes. The caller holds its lock.
    """

    def __init__(self, dsn: str) -> None:
        params = psycopg2.extensions.parse_dsn(dsn)
        hosts = params.get("host", "").split(",")
        ports = params.get("port", "").split(",")
        if len(ports) == 1:
            ports *= len(hosts)
        # hostaddr= lists would have to be overridden in step; such a DSN is used as it is.
        usable = "hostaddr" not in params and len(hosts) == len(ports) and all(hosts)
        self.servers: list[tuple[str, str]] = list(zip(hosts, ports, strict=True)) if usable else []
        self._stale: list[tuple[str, str]] = []  # oldest refusal first

    def clear(self) -> None:
        self._stale.clear()

    def mark(self, host: str | None, port: int | str | None) -> bool:
        """Remember the server a connection was on as stale; False when it is not one of the DSN's."""
        found = [(h, p) for h, p in self.servers if h == host and p in ("", str(port))]
        for server in found:
            if server in self._stale:
                self._stale.remove(server)
            self._stale.append(server)
        return bool(found)

    def overrides(self) -> dict[str, str] | None:
        """``host``/``port`` for psycopg2.connect, or None: nothing is stale, use the DSN as it is."""
        if not self._stale:
            return None
        order = [server for server in self.servers if server not in self._stale] + self._stale
        chosen = {"host": ",".join(host for host, _ in order)}
        if any(port for _, port in order):
            chosen["port"] = ",".join(port for _, port in order)
        return chosen
