# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PostgreSQL node access shared by pg_replication, pg_replication_info and the runbook.

One node = a data directory on this host plus how to reach its server. Everything that must
act as the cluster's OS user (pg_ctl, pg_basebackup, pg_rewind, files in the data dir) goes
through `run_as()`, which prefixes `runuser` when we are root. Secrets never appear in argv,
results or logs: upstream passwords live in a 0600 passfile, and role passwords are sent to
the server as SCRAM verifiers, never as plain text.
"""

from __future__ import absolute_import, annotations, division, print_function

__metaclass__ = type

import base64
import hashlib
import hmac
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field

try:
    import psycopg2
    import psycopg2.extensions
    import psycopg2.extras
    HAS_PSYCOPG2 = True
    PSYCOPG2_IMPORT_ERROR = None
    DRIVER_ERRORS = (psycopg2.Error,)
except ImportError:
    HAS_PSYCOPG2 = False
    PSYCOPG2_IMPORT_ERROR = traceback.format_exc()
    DRIVER_ERRORS = ()

DEFAULT_BIN_DIR = "/usr/lib/postgresql/15/bin"
SCRAM_ITERATIONS = 4096  # the server's default scram_iterations


class PgError(Exception):
    """An operator-facing failure: the message says what is wrong and what to do."""


# ---------------------------------------------------------------- LSN helpers

def connection_argument_spec() -> dict:
    """How a module reaches a node's SQL interface (doc fragment C(cloudphoenix.stack.postgres))."""
    return dict(
        listen_address=dict(type="str", default="127.0.0.1"),
        port=dict(type="int", default=5432),
        socket_dir=dict(type="path"),
        login_host=dict(type="str"),
        login_port=dict(type="int"),
        login_user=dict(type="str", default="postgres"),
        login_password=dict(type="str", no_log=True),
        login_db=dict(type="str", default="postgres"),
        connect_timeout=dict(type="int", default=5),
    )


def lsn_to_int(lsn: str | None) -> int | None:
    if not lsn:
        return None
    high, low = str(lsn).split("/", 1)
    return (int(high, 16) << 32) + int(low, 16)


def int_to_lsn(value: int | None) -> str | None:
    if value is None:
        return None
    return "%X/%X" % (value >> 32, value & 0xFFFFFFFF)


def lsn_diff(newer: str | None, older: str | None) -> int | None:
    if newer is None or older is None:
        return None
    return max(0, lsn_to_int(newer) - lsn_to_int(older))


# ---------------------------------------------------------------- processes

def as_user(os_user: str, argv: list[str]) -> list[str]:
    """argv run as os_user: prefixed with runuser when we are root."""
    if os.geteuid() == 0 and os_user != "root":
        return [shutil.which("runuser") or "/usr/sbin/runuser", "-u", os_user, "--", *argv]
    return argv


def child_env(env: dict | None = None) -> dict:
    """The environment for a child process: ours plus env, never a caller's PGPASSWORD."""
    run_env = dict(os.environ)
    run_env.pop("PGPASSWORD", None)  # never let a caller's password leak into child processes
    run_env.update(env or {})
    return run_env


def run_as(os_user: str, argv: list[str], timeout: float = 120, env: dict | None = None):
    """Run argv as os_user (via runuser when root); returns (rc, stdout, stderr)."""
    argv = as_user(os_user, argv)
    run_env = child_env(env)
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=run_env, check=False)
    except subprocess.TimeoutExpired:
        return 124, "", "%s timed out after %ss" % (os.path.basename(argv[0]), timeout)
    except OSError as exc:
        return 127, "", "cannot run %s: %s" % (argv[0], exc)
    return proc.returncode, proc.stdout, proc.stderr


def chown_to(path: str, os_user: str) -> None:
    if os.geteuid() != 0:
        return
    entry = pwd.getpwnam(os_user)
    os.chown(path, entry.pw_uid, entry.pw_gid)


def ensure_dir_as(path: str, os_user: str, mode: int = 0o755) -> None:
    """Create a directory (and missing parents) owned by os_user."""
    if os.path.isdir(path):
        return
    ensure_dir_as(os.path.dirname(path.rstrip("/")), os_user, mode)
    os.mkdir(path, mode)
    chown_to(path, os_user)


def write_file_as(path: str, content: str, os_user: str, mode: int = 0o600) -> None:
    """Atomically replace `path` with content, owned by os_user with `mode`."""
    directory = os.path.dirname(path) or "."
    ensure_dir_as(directory, os_user)
    handle, tmp_path = tempfile.mkstemp(dir=directory, prefix=".cp-")
    try:
        with os.fdopen(handle, "w") as stream:
            stream.write(content)
        os.chmod(tmp_path, mode)
        chown_to(tmp_path, os_user)
        os.rename(tmp_path, path)
    except Exception:
        if os.path.exists(tmp_path):
            os.unlink(tmp_path)
        raise


# ---------------------------------------------------------------- conninfo / passfile

def quote_conninfo_value(value) -> str:
    value = str(value)
    if value and not any(ch in value for ch in " '\\\t\n"):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def build_conninfo(params: dict) -> str:
    """libpq keyword=value string in a stable order, skipping empty values."""
    return " ".join("%s=%s" % (key, quote_conninfo_value(value)) for key, value in params.items()
                    if value not in (None, ""))


def parse_conninfo(conninfo: str | None) -> dict:
    if not conninfo:
        return {}
    try:
        return psycopg2.extensions.parse_dsn(conninfo)
    except psycopg2.ProgrammingError:
        return {"unparsable": True}


def passfile_line(host: str, port: int, user: str, password: str) -> str:
    def esc(value):
        return str(value).replace("\\", "\\\\").replace(":", "\\:")
    return "%s:%s:*:%s:%s\n" % (esc(host), port, esc(user), esc(password))


def passfile_needs_update(path: str, content: str) -> bool:
    try:
        with open(path) as stream:
            current = stream.read()
    except OSError:
        return True
    return current != content or (os.stat(path).st_mode & 0o077) != 0


# ---------------------------------------------------------------- SCRAM verifiers

def _scram_keys(password: str, salt: bytes, iterations: int):
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    return stored_key, server_key


def scram_verifier(password: str, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS) -> str:
    """The value PostgreSQL stores for a scram-sha-256 password (so plain text never reaches it)."""
    salt = salt if salt is not None else os.urandom(16)
    stored_key, server_key = _scram_keys(password, salt, iterations)
    b64 = base64.b64encode
    return "SCRAM-SHA-256$%d:%s$%s:%s" % (iterations, b64(salt).decode(), b64(stored_key).decode(),
                                          b64(server_key).decode())


def scram_matches(verifier: str | None, password: str) -> bool:
    """True when `verifier` (pg_authid.rolpassword) was made from `password`."""
    if not verifier or not verifier.startswith("SCRAM-SHA-256$"):
        return False
    try:
        iter_salt, keys = verifier[len("SCRAM-SHA-256$"):].split("$", 1)
        iterations, salt_b64 = iter_salt.split(":", 1)
        stored_b64, server_b64 = keys.split(":", 1)
        stored_key, server_key = _scram_keys(password, base64.b64decode(salt_b64), int(iterations))
    except (ValueError, TypeError):
        return False
    return (hmac.compare_digest(stored_key, base64.b64decode(stored_b64))
            and hmac.compare_digest(server_key, base64.b64decode(server_b64)))


# ---------------------------------------------------------------- connections

def describe_connect_error(exc: Exception, what: str, user: str) -> str:
    text = str(exc).strip()
    first = text.splitlines()[0] if text else exc.__class__.__name__
    if "password authentication failed" in text or "no password supplied" in text:
        return "authentication failed for user '%s' at %s: check the password (%s)" % (user, what, first)
    if "no pg_hba.conf entry" in text:
        return "%s refuses user '%s' (no pg_hba.conf entry): %s" % (what, user, first)
    return "%s is unreachable: %s" % (what, first)


@dataclass
class Node:
    """A local PostgreSQL node: its data directory, binaries, and how to reach its server."""

    data_dir: str | None = None
    bin_dir: str = DEFAULT_BIN_DIR
    os_user: str = "postgres"
    listen_address: str = "127.0.0.1"
    port: int = 5432
    socket_dir: str | None = None
    log_file: str | None = None
    login_host: str | None = None
    login_port: int | None = None
    login_user: str = "postgres"
    login_password: str | None = field(default=None, repr=False)
    login_db: str = "postgres"
    connect_timeout: int = 5

    @classmethod
    def from_params(cls, params: dict) -> Node:
        names = cls.__dataclass_fields__.keys()
        return cls(**{name: params[name] for name in names if params.get(name) is not None})

    # paths and commands
    def binary(self, name: str) -> str:
        return os.path.join(self.bin_dir, name)

    def server_log(self) -> str:
        return self.log_file or os.path.join(os.path.dirname(self.data_dir.rstrip("/")), "server.log")

    def pg_ctl_options(self) -> str:
        """Port and address on the pg_ctl -o line: basebackup and rewind copy config files."""
        options = "-p %d -c listen_addresses=%s" % (self.port, self.listen_address)
        if self.socket_dir:
            options += " -c unix_socket_directories=%s" % self.socket_dir
        return options

    def what(self) -> str:
        return "node %s:%s (%s)" % (self.listen_address, self.port, self.data_dir or "no data_dir")

    # SQL connection to this node
    def dsn_params(self) -> dict:
        params = {
            "host": self.login_host or self.socket_dir or self.listen_address,
            "port": self.login_port or self.port,
            "user": self.login_user,
            "dbname": self.login_db,
            "connect_timeout": self.connect_timeout,
            "application_name": "cloudphoenix",
        }
        if self.login_password:
            params["password"] = self.login_password
        return params

    def connect(self, dbname: str | None = None):
        params = self.dsn_params()
        if dbname:
            params["dbname"] = dbname
        try:
            conn = psycopg2.connect(**params)
        except psycopg2.Error as exc:
            raise PgError(describe_connect_error(exc, "server %s:%s" % (params["host"], params["port"]),
                                                 self.login_user)) from None
        conn.autocommit = True
        return conn

    # local files and processes
    def layout(self) -> str:
        """'missing' | 'empty' | 'cluster' | 'foreign' (non-empty, not a cluster)."""
        if not os.path.isdir(self.data_dir):
            return "missing"
        entries = os.listdir(self.data_dir)
        if not entries:
            return "empty"
        if os.path.isfile(os.path.join(self.data_dir, "PG_VERSION")):
            return "cluster"
        return "foreign"

    def postmaster_pid(self) -> int | None:
        try:
            with open(os.path.join(self.data_dir, "postmaster.pid")) as stream:
                pid = int(stream.readline().strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        return pid

    def is_running(self) -> bool:
        return self.postmaster_pid() is not None

    def has_standby_signal(self) -> bool:
        return os.path.exists(os.path.join(self.data_dir, "standby.signal"))

    def controldata(self) -> dict:
        rc, out, err = run_as(self.os_user, [self.binary("pg_controldata"), "-D", self.data_dir], timeout=30)
        if rc != 0:
            raise PgError("pg_controldata failed for %s: %s" % (self.data_dir, err.strip() or out.strip()))
        values = {}
        for line in out.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                values[key.strip()] = value.strip()
        return {
            "system_identifier": values.get("Database system identifier"),
            "state": values.get("Database cluster state"),
            "timeline": int(values.get("Latest checkpoint's TimeLineID", "0") or 0),
            "checkpoint_lsn": values.get("Latest checkpoint location"),
            "wal_log_hints": values.get("wal_log_hints setting") == "on",
            "data_checksums": values.get("Data page checksum version", "0") not in ("0", ""),
            "wal_segment_size": int(values.get("Bytes per WAL segment", "16777216") or 16777216),
            "wal_block_size": int(values.get("WAL block size", "8192") or 8192),
        }

    def tail_log(self, lines: int = 8) -> str:
        try:
            with open(self.server_log(), errors="replace") as stream:
                return "".join(stream.readlines()[-lines:]).strip()
        except OSError:
            return ""

    def start(self, timeout: int) -> None:
        log_dir = os.path.dirname(self.server_log())
        if log_dir:
            ensure_dir_as(log_dir, self.os_user)
        if self.socket_dir:
            ensure_dir_as(self.socket_dir, self.os_user)
        rc, out, err = run_as(
            self.os_user,
            [self.binary("pg_ctl"), "-D", self.data_dir, "-l", self.server_log(), "-o", self.pg_ctl_options(),
             "-w", "-t", str(int(timeout)), "start"],
            timeout=timeout + 10,
        )
        if rc != 0:
            raise PgError("pg_ctl start failed for %s: %s; server log: %s"
                          % (self.data_dir, (err or out).strip(), self.tail_log()))

    def stop(self, mode: str, timeout: int) -> bool:
        rc, _out, _err = run_as(
            self.os_user, [self.binary("pg_ctl"), "-D", self.data_dir, "-m", mode, "-w", "-t", str(int(timeout)),
                           "stop"], timeout=timeout + 10)
        return rc == 0 and not self.is_running()

    # postgresql.auto.conf: the file ALTER SYSTEM writes and basebackup/rewind copy between nodes
    def auto_conf_path(self) -> str:
        return os.path.join(self.data_dir, "postgresql.auto.conf")

    def read_auto_conf(self) -> dict:
        values = {}
        try:
            with open(self.auto_conf_path()) as stream:
                for line in stream:
                    name, sep, value = line.strip().partition("=")
                    if not sep or name.strip().startswith("#"):
                        continue
                    value = value.strip()
                    if value.startswith("'") and value.endswith("'") and len(value) >= 2:
                        value = value[1:-1].replace("''", "'").replace("\\\\", "\\")
                    values[name.strip()] = value
        except OSError:
            pass
        return values

    def write_auto_conf(self, settings: dict) -> None:
        """Set (or with None, remove) settings in postgresql.auto.conf while the server is down."""
        kept = []
        try:
            with open(self.auto_conf_path()) as stream:
                for line in stream:
                    name = line.partition("=")[0].strip()
                    if name not in settings:
                        kept.append(line if line.endswith("\n") else line + "\n")
        except OSError:
            kept = ["# Do not edit this file manually!\n",
                    "# It will be overwritten by the ALTER SYSTEM command.\n"]
        for name, value in settings.items():
            if value is not None:
                kept.append("%s = '%s'\n" % (name, str(value).replace("\\", "\\\\").replace("'", "''")))
        write_file_as(self.auto_conf_path(), "".join(kept), self.os_user)


# ---------------------------------------------------------------- the upstream primary

@dataclass
class Upstream:
    """A primary reached over the replication protocol (only needs the replication role)."""

    host: str
    port: int
    user: str
    password: str | None = field(default=None, repr=False)
    passfile: str | None = None
    connect_timeout: int = 5

    def what(self) -> str:
        return "primary %s:%s" % (self.host, self.port)

    def connect_params(self, dbname: str | None = None, user: str | None = None,
                       password: str | None = None) -> dict:
        params = {"host": self.host, "port": self.port, "user": user or self.user,
                  "connect_timeout": self.connect_timeout, "application_name": "cloudphoenix"}
        if dbname:
            params["dbname"] = dbname
        secret = password if user else self.password
        if secret:
            params["password"] = secret
        elif self.passfile and os.path.exists(self.passfile):
            params["passfile"] = self.passfile
        return params

    def replication_connection(self):
        try:
            return psycopg2.connect(connection_factory=psycopg2.extras.PhysicalReplicationConnection,
                                    **self.connect_params())
        except psycopg2.Error as exc:
            raise PgError(describe_connect_error(exc, self.what(), self.user)) from None

    def identify(self) -> dict:
        """System identifier, timeline, flushed WAL position and recovery state of the upstream."""
        conn = self.replication_connection()
        try:
            cur = conn.cursor()
            cur.execute("IDENTIFY_SYSTEM")
            system_identifier, timeline, xlogpos, _db = cur.fetchone()
            cur.execute("SHOW default_transaction_read_only")
            read_only = cur.fetchone()[0] == "on"
            return {
                "system_identifier": str(system_identifier),
                "timeline": int(timeline),
                "lsn": xlogpos,
                # in_hot_standby is reported at connection start by PostgreSQL >= 14
                "in_recovery": conn.get_parameter_status("in_hot_standby") == "on",
                "read_only": read_only,
            }
        finally:
            conn.close()

    def ensure_slot(self, slot_name: str, check_mode: bool) -> bool:
        """Create the physical slot on the upstream if missing; True when it was (or would be) created."""
        conn = self.replication_connection()
        try:
            cur = conn.cursor()
            cur.execute("READ_REPLICATION_SLOT %s" % quote_ident(slot_name))
            slot_type = cur.fetchone()[0]
            if slot_type == "physical":
                return False
            if slot_type is not None:
                raise PgError("slot '%s' on %s is a %s slot, not a physical one" % (slot_name, self.what(), slot_type))
            if not check_mode:
                cur.execute("CREATE_REPLICATION_SLOT %s PHYSICAL RESERVE_WAL" % quote_ident(slot_name))
            return True
        finally:
            conn.close()

    def timeline_history(self, timeline: int) -> list[tuple[int, int]]:
        """The upstream's history of `timeline` (TIMELINE_HISTORY): [(ancestor timeline, switchpoint)]."""
        if timeline <= 1:
            return []
        conn = self.replication_connection()
        try:
            cur = conn.cursor()
            cur.execute("TIMELINE_HISTORY %d" % int(timeline))
            content = cur.fetchone()[1]
        except psycopg2.Error as exc:
            raise PgError("cannot read the history of timeline %s from %s: %s"
                          % (timeline, self.what(), str(exc).strip())) from None
        finally:
            conn.close()
        if isinstance(content, (bytes, memoryview)):
            content = bytes(content).decode("utf-8", "replace")
        return parse_timeline_history(content)

    def rewind_source_state(self, user: str, password: str | None, checkpoint: bool = False) -> dict:
        """Recovery state and control-file timeline of a rewind source, over a normal connection.

        pg_rewind reads the source's timeline from pg_control, which a just-promoted server only
        updates at its first checkpoint: with `checkpoint`, force it when it lags the live timeline.
        """
        try:
            conn = psycopg2.connect(**self.connect_params(dbname="postgres", user=user, password=password))
        except psycopg2.Error as exc:
            raise PgError(describe_connect_error(exc, self.what(), user)) from None
        conn.autocommit = True
        try:
            cur = conn.cursor()
            cur.execute("SELECT pg_is_in_recovery(), (SELECT timeline_id FROM pg_control_checkpoint())")
            in_recovery, control_timeline = cur.fetchone()
            checkpointed = False
            if checkpoint and not in_recovery and control_timeline != self.identify()["timeline"]:
                cur.execute("CHECKPOINT")
                checkpointed = True
            return {"in_recovery": bool(in_recovery), "control_timeline": control_timeline,
                    "checkpointed": checkpointed}
        finally:
            conn.close()


def parse_timeline_history(text: str) -> list[tuple[int, int]]:
    """A timeline history file (`<parent TLI> <switchpoint LSN> <reason>` lines) as [(tli, switchpoint)]."""
    entries = []
    for line in (text or "").splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) >= 2 and fields[0].isdigit() and "/" in fields[1]:
            entries.append((int(fields[0]), lsn_to_int(fields[1])))
    return entries


def fork_point(target_tli: int, target_history: list, source_tli: int, source_history: list):
    """Where two timelines' histories part (as pg_rewind finds it): (timeline, LSN), or None on one timeline.

    Each history lists (ancestor tli, switchpoint) oldest first; the timeline itself runs to the end.
    """
    target = [*target_history, (target_tli, None)]
    source = [*source_history, (source_tli, None)]
    common = None
    for index in range(min(len(target), len(source))):
        if target[index][0] != source[index][0]:
            break
        common = (target[index][0], target[index][1], source[index][1])
    if common is None:
        return None
    tli, t_end, s_end = common
    ends = [end for end in (t_end, s_end) if end is not None]
    return (tli, min(ends)) if ends else None


def wal_record_end(lsn: int, total: int, segment_size: int = 16 * 1024 * 1024, block_size: int = 8192) -> int:
    """End of a WAL record of `total` bytes starting at `lsn`, counting the page headers it spans (MAXALIGNed)."""
    position, left = lsn, total
    while left > 0:
        if position % block_size == 0:
            position += 40 if position % segment_size == 0 else 24  # long / short page header
        chunk = min(left, block_size - position % block_size)
        position += chunk
        left -= chunk
    return (position + 7) & ~7


WALDUMP_RECORD = re.compile(r"^rmgr: (?P<rmgr>\S+)\s+len \(rec/tot\):\s*\d+/\s*(?P<tot>\d+), tx:\s*(?P<xid>\d+), "
                            r"lsn: (?P<lsn>[0-9A-Fa-f]+/[0-9A-Fa-f]+), prev [0-9A-Fa-f/]+, desc: (?P<desc>.*)$")
WALDUMP_COMMIT = re.compile(r"^COMMIT(?:_PREPARED)? (?:\d+: )?(?P<ts>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? \S+)")


def scan_wal(node: Node, start_lsn: int, timeline: int, timeout: float = 600) -> dict:
    """Every WAL record of `node` (its pg_wal, stopped or not) from start_lsn on `timeline`, with pg_waldump.

    Returns records, bytes (start to the end of the last valid record), committed transactions
    (Transaction COMMIT / COMMIT_PREPARED records), the last commit's timestamp, the first and end LSN,
    records per resource manager and why the scan stopped (pg_waldump's end-of-WAL error).
    Raises PgError when pg_waldump cannot read from start_lsn at all.
    """
    control = node.controldata()
    argv = [node.binary("pg_waldump"), "-p", os.path.join(node.data_dir, "pg_wal"), "-t", str(int(timeline)),
            "-s", int_to_lsn(start_lsn)]
    argv = as_user(node.os_user, argv)
    env = child_env({"LC_ALL": "C", "TZ": "UTC"})  # commit times in UTC
    result = {"records": 0, "transactions": 0, "last_commit": None, "first_lsn": None,
              "end_lsn": int_to_lsn(start_lsn), "bytes": 0, "rmgr_records": {}}
    end = start_lsn
    timed_out = threading.Event()
    with tempfile.TemporaryFile(mode="w+") as errors:
        try:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errors, text=True, env=env)
        except OSError as exc:
            raise PgError("cannot run pg_waldump: %s" % exc) from None

        def kill():
            timed_out.set()
            proc.kill()

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            for line in proc.stdout:
                match = WALDUMP_RECORD.match(line.strip())
                if not match:
                    continue
                lsn = lsn_to_int(match["lsn"])
                result["records"] += 1
                result["first_lsn"] = result["first_lsn"] or int_to_lsn(lsn)
                rmgr = match["rmgr"]
                result["rmgr_records"][rmgr] = result["rmgr_records"].get(rmgr, 0) + 1
                end = max(end, wal_record_end(lsn, int(match["tot"]), control["wal_segment_size"],
                                              control["wal_block_size"]))
                if rmgr == "Transaction":
                    commit = WALDUMP_COMMIT.match(match["desc"])
                    if commit:
                        result["transactions"] += 1
                        result["last_commit"] = commit["ts"]
            rc = proc.wait()
        finally:
            timer.cancel()
            proc.stdout.close()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        errors.seek(0)
        stderr = errors.read().strip()
    if timed_out.is_set():
        raise PgError("pg_waldump did not finish reading %s within %ss"
                      % (os.path.join(node.data_dir, "pg_wal"), timeout))
    last_error = stderr.splitlines()[-1] if stderr else ""
    if rc != 0 and result["records"] == 0 and "could not find a valid record after" not in stderr:
        raise PgError("pg_waldump cannot read %s from %s on timeline %s: %s"
                      % (os.path.join(node.data_dir, "pg_wal"), int_to_lsn(start_lsn), timeline, last_error or rc))
    result["end_lsn"] = int_to_lsn(end)
    result["bytes"] = end - start_lsn
    result["end_reason"] = last_error.replace("pg_waldump: error: ", "") or "end of WAL"
    return result


def quote_ident(name: str) -> str:
    return '"%s"' % str(name).replace('"', '""')


# ---------------------------------------------------------------- what a running node reports

def fetch_all(conn, sql: str, params=None) -> list[dict]:
    cur = conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor)
    cur.execute(sql, params)
    return [dict(row) for row in cur.fetchall()]


def fetch_one(conn, sql: str, params=None) -> dict:
    rows = fetch_all(conn, sql, params)
    return rows[0] if rows else {}


STATUS_SQL = """
SELECT pg_is_in_recovery() AS in_recovery,
       (SELECT system_identifier::text FROM pg_control_system()) AS system_identifier,
       current_setting('server_version') AS server_version,
       CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END AS current_lsn,
       CASE WHEN pg_is_in_recovery() THEN NULL
            ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END AS primary_tli,
       (SELECT timeline_id FROM pg_control_checkpoint()) AS checkpoint_tli,
       pg_last_wal_receive_lsn()::text AS receive_lsn,
       pg_last_wal_replay_lsn()::text AS replay_lsn,
       CASE WHEN pg_is_in_recovery() THEN pg_get_wal_replay_pause_state() END AS replay_pause_state,
       CASE WHEN NOT pg_is_in_recovery() OR pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
            ELSE COALESCE(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0)
       END::float AS lag_seconds,
       current_setting('primary_conninfo') AS primary_conninfo,
       current_setting('primary_slot_name') AS primary_slot_name,
       current_setting('synchronous_standby_names') AS synchronous_standby_names,
       current_setting('synchronous_commit') AS synchronous_commit,
       current_setting('default_transaction_read_only') AS default_transaction_read_only,
       current_setting('data_directory') AS data_directory
"""

WAL_RECEIVER_SQL = """
SELECT status, received_tli, flushed_lsn::text AS flushed_lsn, latest_end_lsn::text AS latest_end_lsn,
       sender_host, sender_port, slot_name,
       extract(epoch FROM now() - last_msg_receipt_time)::float AS seconds_since_last_message
FROM pg_stat_wal_receiver
"""

STANDBYS_SQL = """
SELECT application_name, client_addr::text AS client_addr, state, sync_state, sync_priority,
       sent_lsn::text AS sent_lsn, write_lsn::text AS write_lsn, flush_lsn::text AS flush_lsn,
       replay_lsn::text AS replay_lsn,
       extract(epoch FROM replay_lag)::float AS replay_lag_seconds
FROM pg_stat_replication ORDER BY application_name
"""

SLOTS_SQL = """
SELECT slot_name, slot_type, active, restart_lsn::text AS restart_lsn, wal_status
FROM pg_replication_slots ORDER BY slot_name
"""


def node_status(conn) -> dict:
    """Role, timeline, LSNs and lag of a running node, as plain JSON-able values."""
    status = fetch_one(conn, STATUS_SQL)
    receiver = fetch_one(conn, WAL_RECEIVER_SQL) or None
    in_recovery = bool(status["in_recovery"])
    facts = {
        "reachable": True,
        "error": None,
        "role": "standby" if in_recovery else "primary",
        "in_recovery": in_recovery,
        "system_identifier": status["system_identifier"],
        "server_version": status["server_version"],
        "current_lsn": status["current_lsn"],
        "receive_lsn": status["receive_lsn"],
        "replay_lsn": status["replay_lsn"],
        "replay_paused": status["replay_pause_state"] not in (None, "not paused"),
        "wal_receiver": receiver,
        "primary_conninfo": status["primary_conninfo"],
        "primary_slot_name": status["primary_slot_name"],
        "synchronous_standby_names": status["synchronous_standby_names"],
        "synchronous_commit": status["synchronous_commit"],
        "read_only": status["default_transaction_read_only"] == "on",
        "data_directory": status["data_directory"],
    }
    if in_recovery:
        facts["timeline"] = (receiver or {}).get("received_tli") or status["checkpoint_tli"]
        # The newest primary position this standby has heard of: what it would replay or lose.
        known = [lsn for lsn in (status["receive_lsn"], (receiver or {}).get("latest_end_lsn"), status["replay_lsn"])
                 if lsn]
        newest = max(known, key=lsn_to_int) if known else None
        facts["primary_reported_lsn"] = (receiver or {}).get("latest_end_lsn")
        facts["lag_bytes"] = lsn_diff(newest, status["replay_lsn"]) or 0
        facts["lag_seconds"] = round(status["lag_seconds"] or 0.0, 3)
        facts["lsn"] = status["replay_lsn"]
        facts["streaming"] = bool(receiver and receiver.get("status") == "streaming")
    else:
        facts["timeline"] = status["primary_tli"]
        facts["primary_reported_lsn"] = None
        facts["lag_bytes"] = 0
        facts["lag_seconds"] = 0.0
        facts["lsn"] = status["current_lsn"]
        facts["streaming"] = False
    standbys = fetch_all(conn, STANDBYS_SQL)
    for standby in standbys:
        standby["lag_bytes"] = lsn_diff(status["current_lsn"], standby["replay_lsn"]) if not in_recovery else None
    facts["standbys"] = standbys
    slots = fetch_all(conn, SLOTS_SQL)
    position = status["current_lsn"] or status["replay_lsn"]
    for slot in slots:
        slot["retained_bytes"] = lsn_diff(position, slot["restart_lsn"])
    facts["slots"] = slots
    return facts


def gather_info(node: Node) -> dict:
    """node_status() for a node, or reachable=false and the error when it does not answer."""
    try:
        conn = node.connect()
    except PgError as exc:
        return {"reachable": False, "error": str(exc), "role": "unknown", "in_recovery": None, "timeline": None,
                "lsn": None, "lag_bytes": None, "standbys": [], "slots": []}
    try:
        return node_status(conn)
    finally:
        conn.close()


def wait_for(predicate, timeout: float, interval: float = 0.02):
    """Poll predicate() until it returns a truthy value or timeout passes; returns the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)
