"""Layer 3 of fencing, the token (issue 14), against real PostgreSQL primaries and streaming standbys.

The lease comes from the real DNS-backed Fence reading a real BIND9 (TSIG updates, as the runbook
does); each test refreshes the fence itself (its background refresher is not started), so the
moment the lease moves is the test's. The databases are stamped with the contract SQL the runbook
uses (core/token.py STAMP_SQL).
"""

from __future__ import annotations

import ast
import json
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import pytest
from cloudphoenix_services import __main__ as cli
from cloudphoenix_services import service_a
from cloudphoenix_services.core import load_settings, token
from cloudphoenix_services.core.db import Database
from cloudphoenix_services.core.token import STAMP_SQL

from tests.services.conftest import APP_USER, BUCKET, SERVICES_DIR, create_app_database
from tests.support.bind import set_active
from tests.support.pg import PgCluster, clone_standby, make_primary_with_replicator, promote, wait_until

PASSWORD = "token-secret"
LEASE_SECONDS = "30"  # long: only the test's own refresh() moves the lease


def order(customer: str) -> dict:
    return {"customer_id": customer, "currency": "EUR", "items": [{"sku": "A-1", "quantity": 1, "unit_price_cents": 5}]}



def stamp(cluster: PgCluster, epoch: int, region: str) -> None:
    """What the runbook does on the new primary, with the contract SQL."""
    cluster.execute(STAMP_SQL, {"epoch": epoch, "region": region}, dbname="phoenix")


def orders_of(cluster: PgCluster, customer: str) -> int:
    return cluster.query("SELECT count(*) FROM orders WHERE customer_id = %s", (customer,), dbname="phoenix")[0][0]


@dataclass
class Region:
    """A database the services use: the primary (east), optionally a streaming standby (west)."""

    east: PgCluster
    west: PgCluster | None
    password_file: Path

    def env(self, **overrides: str) -> dict[str, str]:
        nodes = [self.east, *([self.west] if self.west else [])]
        env = {
            "CLOUDPHOENIX_DB_DSN": (
                f"host={','.join(n.host for n in nodes)} port={','.join(str(n.port) for n in nodes)}"
                f" dbname=phoenix user={APP_USER}"
            ),
            "CLOUDPHOENIX_DB_PASSWORD_FILE": str(self.password_file),
            "CLOUDPHOENIX_DB_CONNECT_TIMEOUT": "2",
            "CLOUDPHOENIX_DB_RETRY_ATTEMPTS": "6",
            "CLOUDPHOENIX_DB_RETRY_MAX_WAIT": "0.2",
            "CLOUDPHOENIX_RATE_LIMIT": "100000 per second",
            "CLOUDPHOENIX_S3_BUCKET": BUCKET,
            "CLOUDPHOENIX_REGION": "east",
        }
        env.update({f"CLOUDPHOENIX_{key.upper()}": value for key, value in overrides.items()})
        return env

    def fenced_env(self, bind_server, region: str) -> dict[str, str]:
        return self.env(
            region=region,
            fencing_enabled="true",
            fencing_dns_server=bind_server.host,
            fencing_dns_port=str(bind_server.port),
            fencing_record="_active.phoenix.test",
            fencing_lease_seconds=LEASE_SECONDS,
        )


def migrate_with_cli(region: Region, tmp_path: Path, service: str, capsys) -> dict:
    """The path the role takes: ``python -m cloudphoenix_services migrate`` (here in-process)."""
    env_file = tmp_path / f"{service}.env"
    env_file.write_text("".join(f"{key}={value}\n" for key, value in region.env().items()))
    capsys.readouterr()
    assert cli.main(["migrate", "--service", service, "--env-file", str(env_file)]) == 0
    return json.loads(capsys.readouterr().out)


def new_region(pg_factory, tmp_path: Path, capsys, *, standby: bool, pg_settings: dict | None = None) -> Region:
    east = pg_factory("east")
    if standby:
        make_primary_with_replicator(east)
    else:
        east.initdb(settings=pg_settings).start()
    create_app_database(east, PASSWORD)
    password_file = tmp_path / "pg_app_password"
    password_file.write_text(PASSWORD + "\n")
    region = Region(east, None, password_file)
    for service in ("service_a", "service_b"):
        migrate_with_cli(region, tmp_path, service, capsys)
    if standby:
        region.west = clone_standby(east, pg_factory("west"), slot="west")
        wait_until(
            lambda: (
                region.west.query(
                    "SELECT count(*) FROM pg_trigger WHERE tgname = 'cloudphoenix_fence'", dbname="phoenix"
                )
                == [(2,)]
            ),
            message="schema replicated to west",
        )
    return region


@pytest.fixture
def primary_and_standby(pg_factory, tmp_path, capsys) -> Region:
    return new_region(pg_factory, tmp_path, capsys, standby=True)


class App:
    """service_a built as gunicorn builds it, with the fence driven by the test."""

    def __init__(self, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
        self.app = service_a.create_app(load_settings("service_a", env))
        self.state = self.app.extensions["cloudphoenix"]
        monkeypatch.setattr(self.state.fence, "start", lambda: None)  # no background refresher
        self.client = self.app.test_client()

    @property
    def fence(self):
        return self.state.fence

    def pooled(self) -> list[tuple[int, int | None]]:
        """(port, pinned lease epoch) of each idle pooled connection."""
        return sorted((conn.info.port, conn.lease_epoch) for conn in self.state.db._idle)

    def close(self) -> None:
        self.state.close()


@pytest.fixture
def make_app(monkeypatch):
    made: list[App] = []

    def make(env: dict[str, str]) -> App:
        made.append(App(env, monkeypatch))
        return made[-1]

    yield make
    for app in made:
        app.close()


def test_after_failover_writes_land_on_the_new_primary_only_while_the_old_one_stays_writable(
    primary_and_standby, bind_server, make_app
):
    """Issue 14: west's pool held connections to east (read-write) opened before the failover.

    The controller lost east while east and west still reached each other: west is promoted and
    stamped at epoch 2, east is not fenced and stays a writable primary (still stamped at 1).
    """
    east, west = primary_and_standby.east, primary_and_standby.west
    stamp(east, 1, "east")
    set_active(bind_server, "region=east epoch=1")
    east_app = make_app(primary_and_standby.fenced_env(bind_server, "east"))
    west_app = make_app(primary_and_standby.fenced_env(bind_server, "west"))

    for _ in range(5):
        assert east_app.client.post("/orders", json=order("before")).status_code == 201
    assert orders_of(east, "before") == 5
    assert west_app.client.post("/orders", json=order("before")).status_code == 503  # west is passive (writes-fenced)
    listed = west_app.client.get("/orders", query_string={"customer_id": "before"})
    assert listed.status_code == 200 and len(listed.get_json()["items"]) == 5  # a passive region reads
    assert west_app.pooled() == [(east.port, 1)]  # the pooled connection of the bug: to east, under epoch 1

    promote(west)
    stamp(west, 2, "west")
    set_active(bind_server, "region=west epoch=2")  # the claim; east's services are not told
    assert west_app.fence.refresh().epoch == 2 and west_app.fence.describe()["writes_allowed"] is True
    assert not east.in_recovery()  # east stays a writable primary

    created = []
    for _ in range(20):
        response = west_app.client.post("/orders", json=order("after"))
        assert response.status_code == 201, response.get_json()
        created.append(response.get_json()["id"])
    assert orders_of(east, "after") == 0
    assert orders_of(west, "after") == 20
    assert all(west_app.client.get(f"/orders/{order_id}").status_code == 200 for order_id in created)
    assert set(west_app.pooled()) == {(west.port, 2)}  # the epoch-1 connection to east was dropped

    # Control: without a lease epoch the same DSN still picks east first (what the services did before).
    plain = Database(load_settings("service_a", primary_and_standby.env()))
    try:
        assert plain.run(lambda conn: conn.info.port, autocommit=True) == east.port
    finally:
        plain.close()


def test_a_write_no_database_is_stamped_for_is_refused_and_lands_nowhere(primary_and_standby, bind_server, make_app):
    east, west = primary_and_standby.east, primary_and_standby.west
    set_active(bind_server, "region=east epoch=1")
    app = make_app(primary_and_standby.fenced_env(bind_server, "east"))

    def post(customer: str) -> tuple[int, dict]:
        response = app.client.post("/orders", json=order(customer))
        return response.status_code, response.get_json()

    status, body = post("unstamped")  # no stamp row at all
    assert status == 503 and body["type"].endswith("/database-unavailable"), body
    stamp(east, 1, "east")
    assert post("stamped-1")[0] == 201  # east was stale for epoch 1; tried again once nothing else is writable

    set_active(bind_server, "region=east epoch=2")
    assert app.fence.refresh().epoch == 2
    status, body = post("ahead-of-stamp")  # the lease moved, the runbook has not stamped yet
    assert status == 503 and body["type"].endswith("/database-unavailable"), body
    assert "primary of this lease's epoch" in body["detail"]
    stamp(east, 2, "east")
    assert post("stamped-2")[0] == 201

    lsn = east.query("SELECT pg_current_wal_lsn()::text")[0][0]
    wait_until(
        lambda: west.query("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,))[0][0], message="west caught up"
    )
    for node in (east, west):
        assert [orders_of(node, c) for c in ("unstamped", "stamped-1", "ahead-of-stamp", "stamped-2")] == [0, 1, 0, 1]


@pytest.fixture
def primary(pg_factory, tmp_path, capsys) -> Region:
    return new_region(
        pg_factory, tmp_path, capsys, standby=False, pg_settings={"shared_preload_libraries": "pg_stat_statements"}
    )


def test_a_session_without_a_lease_writes_one_with_another_epoch_is_refused(primary):
    stamp(primary.east, 3, "east")
    conn = psycopg2.connect(primary.env()["CLOUDPHOENIX_DB_DSN"], password=PASSWORD)
    conn.autocommit = True
    insert = (
        "INSERT INTO orders (id, customer_id, currency, items, total_cents, request_hash)"
        " VALUES (%s, 'admin', 'EUR', '[]', 0, 'h')"
    )
    try:
        with conn.cursor() as cur:
            cur.execute(insert, (str(uuid.uuid4()),))  # migrations, admins: no lease, no check
            cur.execute("UPDATE orders SET total_cents = 1 WHERE customer_id = 'admin'")
            cur.execute("SET cloudphoenix.lease_epoch = '2'")
            for statement, params in (
                (insert, (str(uuid.uuid4()),)),
                ("UPDATE orders SET total_cents = 2", None),
                ("DELETE FROM orders", None),
                ("DELETE FROM documents", None),
            ):
                with pytest.raises(psycopg2.Error) as refused:
                    cur.execute(statement, params)
                assert refused.value.pgcode == "CPF01"
                assert "stamped at epoch 3" in str(refused.value) and "lease epoch 2" in str(refused.value)
            cur.execute("SET cloudphoenix.lease_epoch = '3'")
            cur.execute(insert, (str(uuid.uuid4()),))
            cur.execute("SET cloudphoenix.lease_epoch = ''")  # empty: no lease
            cur.execute(insert, (str(uuid.uuid4()),))
            cur.execute("SELECT count(*), sum(total_cents) FROM orders WHERE customer_id = 'admin'")
            assert cur.fetchone() == (3, 1)
    finally:
        conn.close()


def written_tables() -> set[str]:
    """Tables the services' code writes, read from its SQL (not from FENCED_TABLES or the migrations)."""
    write = re.compile(r"\b(?:INSERT\s+INTO|(?<!DO )UPDATE|DELETE\s+FROM)\s+([A-Za-z_][A-Za-z0-9_]*)")
    tables = set()
    for path in sorted((SERVICES_DIR / "cloudphoenix_services").glob("service_*/**/*.py")):
        tables.update(name.lower() for name in write.findall(path.read_text()))
    return tables


def test_every_written_table_has_the_fence_trigger_and_migrate_is_idempotent(primary, tmp_path, capsys):
    tables = written_tables()
    assert {"orders", "documents"} <= tables, tables  # the parser still finds what it must
    rows = primary.east.query(
        "SELECT c.relname, t.tgtype FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
        " WHERE t.tgname = 'cloudphoenix_fence' AND t.tgfoid = 'cloudphoenix_fence_check'::regproc",
        dbname="phoenix",
    )
    types = dict(rows)
    assert sorted(types) == sorted(tables)
    # tgtype bits: 1 row-level, 2 before, 4 insert, 8 delete, 16 update, 32 truncate
    assert all(tgtype == 2 | 4 | 8 | 16 for tgtype in types.values()), types
    for service in ("service_a", "service_b"):
        assert migrate_with_cli(primary, tmp_path, service, capsys) == {"changed": False, "applied": []}
    primary.east.execute("DROP TRIGGER cloudphoenix_fence ON documents", dbname="phoenix")  # a database from before
    assert migrate_with_cli(primary, tmp_path, "service_b", capsys) == {"changed": True, "applied": []}
    primary.east.execute("DROP TABLE orders", dbname="phoenix")
    primary.east.execute("DELETE FROM schema_migrations WHERE service = 'service_a'", dbname="phoenix")
    assert migrate_with_cli(primary, tmp_path, "service_a", capsys) == {"changed": True, "applied": [1]}
    assert primary.east.query(
        "SELECT c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
        " WHERE t.tgname = 'cloudphoenix_fence' ORDER BY 1",
        dbname="phoenix",
    ) == [(table,) for table in sorted(tables)]


def test_fencing_disabled_sets_no_lease_epoch_and_writes_an_unstamped_database(primary, make_app):
    app = make_app(primary.env())  # fencing off (the default)
    assert app.client.post("/orders", json=order("no-fencing")).status_code == 201  # no stamp row at all
    setting = app.state.db.run(
        lambda conn: _one(conn, "SELECT current_setting('cloudphoenix.lease_epoch', true)"), autocommit=True
    )
    assert setting is None
    assert app.pooled() == [(primary.east.port, None)]


def test_fencing_enabled_pins_the_epoch_at_connect(primary, bind_server, make_app):
    stamp(primary.east, 7, "east")
    set_active(bind_server, "region=east epoch=7")
    app = make_app(primary.fenced_env(bind_server, "east"))
    read_setting = "SELECT current_setting('cloudphoenix.lease_epoch', true)"
    # Before the fence's first answer a connection carries no epoch (reads are not fenced; a write asks the
    # fence first and then replaces such a connection, since its pinned epoch no longer matches).
    assert app.state.db.run(lambda conn: _one(conn, read_setting), autocommit=True) is None
    app.state.fence.refresh()
    assert app.state.db.run(lambda conn: _one(conn, read_setting), autocommit=True) == "7"


def _one(conn, sql: str):
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchone()[0]


def test_one_statement_per_create_with_the_token_as_without(primary, bind_server, make_app):
    """Round trips: the statements the app's sessions send, counted by pg_stat_statements."""
    east = primary.east
    east.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements", dbname="phoenix")

    def statements() -> int:
        rows = east.query(
            "SELECT coalesce(sum(s.calls), 0) FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid"
            " WHERE r.rolname = %s",
            (APP_USER,),
            dbname="phoenix",
        )
        return int(rows[0][0])

    def creates(app: App, count: int) -> int:
        """Statements sent for ``count`` creates (after a warm-up create that opens the connection)."""
        assert app.client.post("/orders", json=order("warm-up")).status_code == 201
        east.execute("SELECT pg_stat_statements_reset()", dbname="phoenix")
        for _ in range(count):
            assert app.client.post("/orders", json=order("counted")).status_code == 201
        wait_until(lambda: statements() >= count, message=f"{count} statements counted")
        return statements()

    plain = make_app(primary.env())
    assert creates(plain, 20) == 20
    plain.close()

    stamp(east, 1, "east")
    set_active(bind_server, "region=east epoch=1")
    fenced = make_app(primary.fenced_env(bind_server, "east"))
    assert creates(fenced, 20) == 20

    stamp(east, 2, "east")  # the lease moves: the pooled connection is dropped, not re-pinned with a SET
    set_active(bind_server, "region=east epoch=2")
    assert fenced.fence.refresh().epoch == 2
    east.execute("SELECT pg_stat_statements_reset()", dbname="phoenix")
    for _ in range(20):
        assert fenced.client.post("/orders", json=order("counted")).status_code == 201
    wait_until(lambda: statements() >= 20, message="20 statements counted")
    assert statements() == 20
    assert fenced.pooled() == [(east.port, 2)]


def test_the_contract_text_is_the_runbooks():
    """The table and the stamp: the same text as the runbook's (read from its source, not imported)."""
    source = (SERVICES_DIR.parent / "plugins" / "module_utils" / "_fence_token.py").read_text()
    runbook = {
        node.targets[0].id: ast.literal_eval(node.value)
        for node in ast.parse(source).body
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
        if node.targets[0].id in {"FENCE_TABLE_DDL", "STAMP_SQL"}
    }
    assert runbook == {"FENCE_TABLE_DDL": token.FENCE_TABLE_DDL, "STAMP_SQL": token.STAMP_SQL}
