"""Real PostgreSQL clusters for tests, run as an unprivileged OS user (initdb refuses root).

Every cluster lives under a directory the `postgres` user can reach (pytest's own tmp dirs
under /tmp/pytest-of-root are 0700), listens on a free loopback port and is stopped and
removed by the fixture that made it.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2

from .net import free_port

PG_BIN = Path(os.environ.get("CLOUDPHOENIX_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_OS_USER = os.environ.get("CLOUDPHOENIX_PG_OS_USER", "postgres")
SUPERUSER = "postgres"


def make_shared_dir(prefix: str) -> Path:
    """A temp dir under /tmp owned by the PostgreSQL OS user, so the server can use it."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    user = pwd.getpwnam(PG_OS_USER)
    os.chown(path, user.pw_uid, user.pw_gid)
    path.chmod(0o755)
    return path


def run_as_pg(*argv: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    cmd = ["runuser", "-u", PG_OS_USER, "--", *argv] if os.geteuid() == 0 else list(argv)
    return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=timeout)


@dataclass
class PgCluster:
    """One PostgreSQL data directory plus how to reach it."""

    base_dir: Path
    name: str
    host: str = "127.0.0.1"
    port: int = field(default_factory=free_port)

    @property
    def data_dir(self) -> Path:
        return self.base_dir / self.name / "data"

    @property
    def socket_dir(self) -> Path:
        return self.base_dir / self.name / "run"

    @property
    def log_file(self) -> Path:
        return self.base_dir / self.name / "server.log"

    def _prepare_dirs(self) -> None:
        for path in (self.base_dir / self.name, self.socket_dir):
            path.mkdir(parents=True, exist_ok=True)
            user = pwd.getpwnam(PG_OS_USER)
            os.chown(path, user.pw_uid, user.pw_gid)

    def initdb(self, *, wal_log_hints: bool = True, settings: dict[str, str] | None = None) -> PgCluster:
        """Create a new cluster with replication-ready settings."""
        self._prepare_dirs()
        run_as_pg(
            str(PG_BIN / "initdb"), "-D", str(self.data_dir), "-U", SUPERUSER,
            "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8",
        )
        conf = {
            "wal_level": "replica",
            "max_wal_senders": "10",
            "max_replication_slots": "10",
            "wal_log_hints": "on" if wal_log_hints else "off",
            "hot_standby": "on",
            "fsync": "off",  # tests only: durability against power loss is not under test
            **(settings or {}),
        }
        with open(self.data_dir / "postgresql.conf", "a", encoding="utf-8") as handle:
            handle.write("".join(f"{key} = '{value}'\n" for key, value in conf.items()))
        return self

    def pg_ctl_options(self) -> str:
        """Port and address stay on the command line: basebackup/rewind copy config files."""
        return f"-p {self.port} -c listen_addresses={self.host} -c unix_socket_directories={self.socket_dir}"

    def start(self, timeout: float = 30) -> PgCluster:
        self._prepare_dirs()
        run_as_pg(
            str(PG_BIN / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_file),
            "-o", self.pg_ctl_options(), "-w", "-t", str(int(timeout)), "start", timeout=timeout + 5,
        )
        return self

    def stop(self, mode: str = "fast") -> None:
        if self.is_running():
            run_as_pg(str(PG_BIN / "pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop", check=False)

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None

    def is_running(self) -> bool:
        pid = self.postmaster_pid()
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    def kill(self) -> None:
        """Crash the node: SIGKILL the postmaster and its children (no shutdown checkpoint)."""
        pid = self.postmaster_pid()
        if pid is None:
            return
        subprocess.run(["pkill", "-KILL", "-P", str(pid)], check=False)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while self.is_running() and time.monotonic() < deadline:
            time.sleep(0.05)

    def dsn(self, user: str = SUPERUSER, dbname: str = "postgres", password: str | None = None) -> str:
        parts = [f"host={self.host}", f"port={self.port}", f"user={user}", f"dbname={dbname}", "connect_timeout=5"]
        if password is not None:
            parts.append(f"password={password}")
        return " ".join(parts)

    def socket_dsn(self, dbname: str = "postgres") -> str:
        """Superuser over the unix socket (trust auth): what tests use to inspect a node."""
        return f"host={self.socket_dir} port={self.port} user={SUPERUSER} dbname={dbname}"

    def connect(self, dbname: str = "postgres", autocommit: bool = True):
        conn = psycopg2.connect(self.socket_dsn(dbname))
        conn.autocommit = autocommit
        return conn

    def query(self, sql: str, params: tuple = (), dbname: str = "postgres") -> list[tuple]:
        conn = self.connect(dbname)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()

    def execute(self, sql: str, params: tuple = (), dbname: str = "postgres") -> None:
        self.query(sql, params, dbname)

    def allow_host(self, line: str) -> None:
        """Append a pg_hba.conf line and reload."""
        with open(self.data_dir / "pg_hba.conf", "a", encoding="utf-8") as handle:
            handle.write(line.rstrip() + "\n")
        if self.is_running():
            self.execute("SELECT pg_reload_conf()")

    def in_recovery(self) -> bool:
        return bool(self.query("SELECT pg_is_in_recovery()")[0][0])

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.base_dir / self.name, ignore_errors=True)


def wait_until(predicate, timeout: float = 15, interval: float = 0.05, message: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception as exc:  # noqa: BLE001 - retried until the deadline, then reported
            last_error = exc
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {message}" + (f": {last_error}" if last_error else ""))


def make_primary_with_replicator(cluster: PgCluster, password: str = "repl-secret") -> PgCluster:
    """Initialise and start a primary that accepts replication from a `replicator` role over TCP."""
    cluster.initdb()
    with open(cluster.data_dir / "pg_hba.conf", "a", encoding="utf-8") as handle:
        handle.write("host replication replicator 127.0.0.0/8 scram-sha-256\n")
        handle.write("host all all 127.0.0.0/8 scram-sha-256\n")
    cluster.start()
    cluster.execute(f"CREATE ROLE replicator WITH REPLICATION LOGIN PASSWORD '{password}'")
    cluster.execute(f"ALTER ROLE postgres PASSWORD '{password}'")
    return cluster


def clone_standby(primary: PgCluster, standby: PgCluster, slot: str, password: str = "repl-secret") -> PgCluster:
    """pg_basebackup a streaming standby with a physical slot, via a passfile (no inline secret)."""
    standby._prepare_dirs()
    passfile = standby.base_dir / standby.name / "pgpass"
    passfile.write_text(f"{primary.host}:{primary.port}:*:replicator:{password}\n")
    user = pwd.getpwnam(PG_OS_USER)
    os.chown(passfile, user.pw_uid, user.pw_gid)
    passfile.chmod(0o600)
    run_as_pg(
        str(PG_BIN / "pg_basebackup"), "-h", primary.host, "-p", str(primary.port), "-U", "replicator",
        "-D", str(standby.data_dir), "-R", "-X", "stream", "-C", "-S", slot, "-c", "fast",
        "-d", f"passfile={passfile}",
    )
    standby.start()
    return standby


def promote(standby: PgCluster, timeout: float = 30) -> None:
    """``pg_promote()`` a streaming standby and wait until it takes writes."""
    standby.execute("SELECT pg_promote(wait => true, wait_seconds => %s)", (int(timeout),))
    wait_until(lambda: not standby.in_recovery(), timeout=timeout, message=f"{standby.name} promoted")
