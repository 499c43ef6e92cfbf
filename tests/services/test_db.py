"""core.db against a real PostgreSQL: transactions, autocommit runs, the pool after either."""

from __future__ import annotations

import psycopg2
import pytest
from cloudphoenix_services.core.db import Database

# In a transaction psycopg2 sends BEGIN first, in its own round trip: the statement starts later than
# its transaction (now()). In autocommit the statement is the transaction: the two times are equal.
STATEMENT_IS_THE_TRANSACTION = "SELECT now() = statement_timestamp()"


def one(conn, sql: str):
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchone()[0]


@pytest.fixture
def database(make_settings):
    db = Database(make_settings("service_a", db_pool_max="1"))  # one connection: every run reuses it
    yield db
    db.close()


def test_autocommit_run_sends_no_begin_and_the_pool_stays_transactional(database) -> None:
    assert database.run(lambda conn: one(conn, STATEMENT_IS_THE_TRANSACTION), autocommit=True) is True
    assert database.run(lambda conn: one(conn, STATEMENT_IS_THE_TRANSACTION)) is False
    assert database.run(lambda conn: conn.autocommit) is False  # the flag went back before the pool
    assert database.run(lambda conn: conn.autocommit, autocommit=True) is True


def test_a_failed_autocommit_run_leaves_a_usable_connection(database) -> None:
    with pytest.raises(psycopg2.errors.DivisionByZero):
        database.run(lambda conn: one(conn, "SELECT 1/0"), autocommit=True)
    assert database.run(lambda conn: one(conn, "SELECT 2")) == 2
    assert database.run(lambda conn: conn.autocommit) is False


def test_transactional_run_is_atomic_and_rolls_back_on_error(database) -> None:
    database.run(lambda conn: conn.cursor().execute("CREATE TABLE IF NOT EXISTS db_atomic (n int)"))

    def two_inserts_then_fail(conn) -> None:
        conn.cursor().execute("INSERT INTO db_atomic VALUES (1)")
        conn.cursor().execute("INSERT INTO db_atomic VALUES (1/0)")

    with pytest.raises(psycopg2.errors.DivisionByZero):
        database.run(two_inserts_then_fail)
    assert database.run(lambda conn: one(conn, "SELECT count(*) FROM db_atomic")) == 0
