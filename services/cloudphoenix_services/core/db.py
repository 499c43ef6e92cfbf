"""PostgreSQL access: a bounded pool, timeouts, and retries for transient errors only.

The conninfo is libpq multi-host with ``target_session_attrs=read-write``: after a promotion a
fresh connection lands on the new primary, so recovering is "drop the broken connection and
retry", with no restart. Work is passed in as a function so a retry replays the whole
transaction; callers make their writes idempotent (pre-generated ids, ON CONFLICT).

With fencing enabled, every connection is pinned to the write lease's epoch (``-c
cloudphoenix.lease_epoch=N`` at connect, no extra round trip) and the database refuses a write
unless it is stamped at that epoch (core/token.py). A connection of an older epoch is dropped, not
re-pinned: after a failover it most likely points at the old primary. A refusal (CPF01) marks that
server stale for the epoch and the work is retried on the DSN's other hosts first.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

import psycopg2
import psycopg2.errorcodes
import psycopg2.extensions
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from .config import Settings
from .errors import DatabaseError
from .jsonio import use_orjson_for_jsonb
from .token import CORE_MIGRATIONS, SETTING, STALE_EPOCH, HostPicker, ensure_triggers

T = TypeVar("T")
Connection = psycopg2.extensions.connection
log = logging.getLogger("cloudphoenix.db")

# SQLSTATEs worth a retry: the next attempt (on a fresh connection) can succeed.
TRANSIENT_SQLSTATES = frozenset(
    {
        psycopg2.errorcodes.SERIALIZATION_FAILURE,  # 40001
        psycopg2.errorcodes.DEADLOCK_DETECTED,  # 40P01
        psycopg2.errorcodes.ADMIN_SHUTDOWN,  # 57P01: server shutting down (fenced or failing over)
        psycopg2.errorcodes.CRASH_SHUTDOWN,  # 57P02
        psycopg2.errorcodes.CANNOT_CONNECT_NOW,  # 57P03: starting up / promoting
        psycopg2.errorcodes.READ_ONLY_SQL_TRANSACTION,  # 25006: we hold a connection to a demoted node
        STALE_EPOCH,  # CPF01: not the primary of our lease epoch; the retry goes to the other hosts
    }
)


def is_transient(error: BaseException) -> bool:
    """Connection-level failures and the SQLSTATEs above; never constraint or syntax errors."""
    if not isinstance(error, psycopg2.Error):
        return False
    code = getattr(error, "pgcode", None)
    if code is None:
        # No SQLSTATE: libpq could not connect or lost the connection.
        return isinstance(error, (psycopg2.OperationalError, psycopg2.InterfaceError))
    return code in TRANSIENT_SQLSTATES or code.startswith("08")


class PinnedConnection(psycopg2.extensions.connection):
    """A connection that remembers the lease epoch it was opened with (None: no lease)."""

    lease_epoch: int | None = None


class Database:
    """A bounded, thread-safe pool opened lazily in each worker process (never before gunicorn forks).

    psycopg2's own pools keep only ``minconn`` idle connections and connect those eagerly; this
    one keeps up to ``db_pool_max`` and connects on demand, so a service boots with the DB down.
    """

    def __init__(self, settings: Settings, on_retry: Callable[[], None] | None = None) -> None:
        self.settings = settings
        self._on_retry = on_retry
        self._lease_epoch: Callable[[], int | None] | None = None  # set by follow_lease()
        self._epoch: int | None = None  # the epoch the pooled connections are pinned to
        self._hosts = HostPicker(settings.db_dsn)
        self._idle: list[Connection] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(settings.db_pool_max)
        self._connect_kwargs: dict[str, object] = {
            "dsn": settings.db_dsn,
            "connect_timeout": settings.db_connect_timeout_s,
            "connection_factory": PinnedConnection,
            "application_name": f"cloudphoenix-{settings.service_name}",
            "options": f"-c statement_timeout={settings.db_statement_timeout_ms}",
            # Notice a dead peer (hung primary, partition) within seconds, not hours.
            "keepalives": 1,
            "keepalives_idle": 5,
            "keepalives_interval": 2,
            "keepalives_count": 2,
        }
        if settings.db_password is not None:
            self._connect_kwargs["password"] = settings.db_password
        # Built once: tenacity keeps per-call state in thread-locals, so sharing is safe and cheaper.
        self._retrying = self._make_retrying(settings.db_retry_attempts)

    def follow_lease(self, lease_epoch: Callable[[], int | None]) -> None:
        """Pin connections to ``lease_epoch()`` (read at every checkout) when fencing is enabled.

        Without it (fencing disabled, migrations, admin tools) sessions carry no lease epoch and the
        database does not check them.
        """
        if self.settings.fencing_enabled:
            self._lease_epoch = lease_epoch

    def _make_retrying(self, attempts: int) -> Retrying:
        return Retrying(
            stop=stop_after_attempt(attempts),
            wait=wait_random_exponential(multiplier=0.05, max=self.settings.db_retry_max_wait_s),  # full jitter
            retry=retry_if_exception(is_transient),
            before_sleep=self._log_retry,
            reraise=True,
        )

    def _acquire(self) -> Connection:
        if not self._slots.acquire(timeout=self.settings.db_connect_timeout_s):
            raise psycopg2.OperationalError("connection pool exhausted")
        try:
            epoch = self._lease_epoch() if self._lease_epoch is not None else None
            old: list[Connection] = []
            with self._lock:
                if epoch != self._epoch:  # the lease moved: new pins, nothing known stale yet
                    self._epoch, old, self._idle = epoch, self._idle, []
                    self._hosts.clear()
                conn = self._idle.pop() if self._idle else None
                hosts = self._hosts.overrides() if conn is None else None
            for stale in old:
                stale.close()
            if old:
                log.info("lease epoch %s: closed %d pooled connection(s) of the previous epoch", epoch, len(old))
            return conn if conn is not None else self._connect(epoch, hosts)
        except BaseException:
            self._slots.release()
            raise

    def _connect(self, epoch: int | None = None, hosts: dict[str, str] | None = None) -> Connection:
        kwargs = self._connect_kwargs
        if epoch is not None:  # in the startup packet: no SET, no extra round trip
            kwargs = {**kwargs, **(hosts or {}), "options": f"{kwargs['options']} -c {SETTING}={int(epoch)}"}
        conn = psycopg2.connect(**kwargs)
        conn.lease_epoch = epoch
        use_orjson_for_jsonb(conn)
        return conn

    def _release(self, conn: Connection, discard: bool) -> None:
        try:
            if discard or conn.closed:
                conn.close()
                self._discard_idle()  # they most likely point at the same failed server
            else:
                with self._lock:
                    current = conn.lease_epoch == self._epoch
                    if current:
                        self._idle.append(conn)
                if not current:  # pinned to an epoch that ended while it was checked out
                    conn.close()
        finally:
            self._slots.release()

    def _mark_stale(self, conn: Connection) -> None:
        """CPF01: the server this connection is on is not the primary of our lease epoch."""
        host, port = conn.info.host, conn.info.port
        with self._lock:
            if conn.lease_epoch != self._epoch:
                return  # refused an epoch that has already ended: nothing to learn
            known = self._hosts.mark(host, port)
        log.warning(
            "database %s:%s refused lease epoch %s (CPF01: not stamped at it); %s",
            host,
            port,
            conn.lease_epoch,
            "new connections try the other hosts first" if known else "it is not one of the DSN's hosts",
        )

    def _discard_idle(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def _attempt(self, work: Callable[[Connection], T], autocommit: bool) -> T:
        """One transaction on a pooled connection: commit on success, rollback otherwise.

        With ``autocommit`` each statement is its own transaction: no BEGIN and COMMIT round trips.
        A connection that failed at the connection level is closed instead of going back to the pool.
        """
        conn = self._acquire()
        broken = False
        try:
            if autocommit:
                conn.autocommit = True  # a flag in psycopg2, no round trip (there is no open transaction)
                return work(conn)  # not inside `with conn`: since psycopg2 2.9 that opens a transaction anyway
            with conn:  # psycopg2: commit on success, rollback on exception
                return work(conn)
        except psycopg2.Error as exc:
            broken = conn.closed != 0 or is_transient(exc)
            if getattr(exc, "pgcode", None) == STALE_EPOCH and not conn.closed:
                self._mark_stale(conn)
            raise
        finally:
            if autocommit and not conn.closed:
                try:
                    conn.autocommit = False
                except psycopg2.Error:
                    broken = True  # a connection in an unknown state never goes back to the pool
            self._release(conn, broken)

    def run(self, work: Callable[[Connection], T], *, retry: bool = True, autocommit: bool = False) -> T:
        """Run ``work(conn)`` in a transaction, replaying it on transient errors with jittered backoff.

        ``autocommit=True`` is for work that is one statement, or statements that need no atomicity
        together (an idempotent INSERT, then a read of what it found): each commits on its own, in one
        round trip instead of three (BEGIN, statement, COMMIT), which counts double when the primary
        is in another region after a failover.

        The first attempt runs without tenacity (its per-call setup cost ~10 us, and almost every
        call succeeds at once); a transient failure hands over to tenacity as its attempt 1, so
        the attempts, backoff, logging and retry metric are the same as a plain tenacity loop.
        """
        first_error: psycopg2.Error | None = None
        try:
            try:
                return self._attempt(work, autocommit)
            except psycopg2.Error as exc:
                if not (retry and is_transient(exc)):
                    raise
                first_error = exc
            for attempt in self._retrying:
                with attempt:
                    if first_error is not None:
                        error, first_error = first_error, None
                        raise error
                    return self._attempt(work, autocommit)
        except psycopg2.Error as exc:
            if getattr(exc, "pgcode", None) == STALE_EPOCH:
                raise DatabaseError("No database is the primary of this lease's epoch yet; retry later.") from exc
            if is_transient(exc):
                raise DatabaseError("The database is not reachable or not writable; retry later.") from exc
            raise
        raise AssertionError("unreachable")  # pragma: no cover - Retrying either returns or raises

    def _log_retry(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        code = getattr(error, "pgcode", None) or type(error).__name__
        log.warning("transient database error (%s), attempt %d, retrying", code, state.attempt_number)
        if self._on_retry:
            self._on_retry()

    def check_writable(self) -> tuple[bool, float, str | None]:
        """Readiness: can we reach a primary right now? No retries, so a probe answers fast."""
        started = time.perf_counter()
        try:
            in_recovery = self.run(
                lambda conn: _fetch_one(conn, "SELECT pg_is_in_recovery()"), retry=False, autocommit=True
            )
        except (DatabaseError, psycopg2.Error) as exc:
            reason = getattr(exc.__cause__, "pgcode", None) or type(exc.__cause__ or exc).__name__
            return False, _elapsed_ms(started), f"unreachable ({reason})"
        if in_recovery:
            return False, _elapsed_ms(started), "connected node is in recovery (read-only)"
        return True, _elapsed_ms(started), None

    def close(self) -> None:
        self._discard_idle()


def _fetch_one(conn: Connection, sql: str) -> object:
    with conn.cursor() as cur:
        cur.execute(sql)
        row = cur.fetchone()
    return row[0] if row else None


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


def migrate(database: Database, service_name: str, steps: list[str], fenced_tables: Iterable[str] = ()) -> list[int]:
    """Apply the not-yet-applied ``steps`` (ordered SQL), each once, under an advisory lock.

    The core steps (the fence table and check function, core/token.py) come first, once per
    database whichever service migrates first; then the service's steps; then the fence trigger on
    each of ``fenced_tables`` that lacks it. Returns the service's version numbers applied now:
    empty on a second run. Workers of several regions may start together; the lock makes them
    apply each step exactly once. ``migrate_service`` also reports the core steps and triggers.
    """
    return migrate_service(database, service_name, steps, fenced_tables)["applied"]


def migrate_service(
    database: Database, service_name: str, steps: list[str], fenced_tables: Iterable[str] = ()
) -> dict[str, list]:
    """``migrate`` with everything it did: {"core": [...], "applied": [...], "fenced": [tables]}."""

    def apply(conn: Connection) -> dict[str, list]:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", ("cloudphoenix-migrations",))
            cur.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " service text NOT NULL, version integer NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (service, version))"
            )
            done = {"core": _apply_steps(cur, "core", CORE_MIGRATIONS)}
            done["applied"] = _apply_steps(cur, service_name, steps)
            done["fenced"] = ensure_triggers(cur, fenced_tables)
            return done

    return database.run(apply)


def _apply_steps(cur: psycopg2.extensions.cursor, service_name: str, steps: list[str]) -> list[int]:
    cur.execute("SELECT version FROM schema_migrations WHERE service = %s", (service_name,))
    done = {row[0] for row in cur.fetchall()}
    applied = []
    for version, sql in enumerate(steps, start=1):
        if version in done:
            continue
        cur.execute(sql)
        cur.execute("INSERT INTO schema_migrations (service, version) VALUES (%s, %s)", (service_name, version))
        applied.append(version)
    return applied
