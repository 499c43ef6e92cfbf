"""service_a (hardened) vs a bare Flask app: create + get orders, same gunicorn settings, one run.

Both talk to the same real PostgreSQL and do the same SQL (INSERT ... RETURNING, SELECT by id)
under the same gunicorn settings file (services/gunicorn.conf.py); the difference is everything
the core adds: validation, idempotency key, problem errors, request ids, security headers, rate
limiting (memory storage), multiprocess metrics, JSON access log, pooled connections with
retries. Target: hardened >= 0.85x bare req/s. Also run, for reference: the bare app on
gunicorn's defaults (``bare-cli``).

Besides req/s and p99 it reports each server's CPU time per request (gunicorn master + workers,
from /proc): on a shared machine req/s move with other people's load, CPU per request far less.

    python -m bench services            (BENCH_SECONDS=10, BENCH_ROUNDS=4, BENCH_CONNECTIONS=16)
"""

from __future__ import annotations

import json
import os
import re
import resource
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import NamedTuple

import psycopg2
import requests
from flask import Flask, request

sys.dont_write_bytecode = True  # roles/services copies services/ as it is: keep it free of __pycache__

REPO = Path(__file__).resolve().parent.parent
SERVICES = REPO / "services"
WORKERS, THREADS, WORKER_CLASS = "2", "4", "gthread"
BARE_APP = "bench.bench_services:create_bare_app()"
ORDER = {"customer_id": "bench", "currency": "EUR", "items": [{"sku": "A-1", "quantity": 2, "unit_price_cents": 1250}]}

# Every POST must be a real create: a unique Idempotency-Key per request, run and wrk thread.
# (LuaJIT's math.random is not seeded, so a random id was the same in both wrk threads and in
# every run: most POSTs were idempotent replays, an INSERT that conflicts plus a SELECT, where
# the bare app always did one INSERT.) The run token comes from Python, the thread number from setup().
WRK_SCRIPT = """
local counter = 0
local body = '%s'
local threads = 0
setup = function(thread)
  threads = threads + 1
  thread:set("tid", tostring(threads))
end
request = function()
  counter = counter + 1
  if counter %% 2 == 1 then
    return wrk.format("POST", "/orders", {["Content-Type"] = "application/json",
      ["Idempotency-Key"] = "bench-%s-" .. tid .. "-" .. counter}, body)
  end
  return wrk.format("GET", "/orders/%s")
end
"""


def create_bare_app() -> Flask:
    """The baseline: the same two queries with one plain psycopg2 connection per thread, nothing else."""
    app = Flask("bare")
    local = threading.local()

    def conn():
        if getattr(local, "conn", None) is None:
            local.conn = psycopg2.connect(os.environ["BENCH_BARE_DSN"])
        return local.conn

    @app.post("/orders")
    def create():
        body = request.get_json()
        order_id = str(uuid.uuid4())
        total = sum(i["quantity"] * i["unit_price_cents"] for i in body["items"])
        connection = conn()
        with connection, connection.cursor() as cur:
            cur.execute(
                "INSERT INTO orders (id, customer_id, currency, items, total_cents, request_hash)"
                " VALUES (%s, %s, %s, %s, %s, '') RETURNING id, customer_id, currency, items, total_cents, created_at",
                (order_id, body["customer_id"], body["currency"], json.dumps(body["items"]), total),
            )
            row = cur.fetchone()
        return {
            "id": str(row[0]),
            "customer_id": row[1],
            "currency": row[2],
            "items": row[3],
            "total_cents": row[4],
            "created_at": row[5].isoformat(),
        }, 201

    @app.get("/orders/<uuid:order_id>")
    def get(order_id):
        connection = conn()
        with connection, connection.cursor() as cur:
            cur.execute(
                "SELECT id, customer_id, currency, items, total_cents, created_at FROM orders WHERE id = %s",
                (str(order_id),),
            )
            row = cur.fetchone()
        return {
            "id": str(row[0]),
            "customer_id": row[1],
            "currency": row[2],
            "items": row[3],
            "total_cents": row[4],
            "created_at": row[5].isoformat(),
        }

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    return app


def _free_port() -> int:
    sys.path.insert(0, str(REPO))
    from tests.support.net import free_port

    return free_port()


def _start(argv: list[str], env: dict[str, str], port: int, log: Path) -> subprocess.Popen:
    process = subprocess.Popen(
        argv,
        env=env,
        stdout=open(log, "wb"),  # noqa: SIM115 - lives as long as the process
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=REPO,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except requests.RequestException:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(log.read_text())


def _stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


def _server_cpu_seconds(pid: int) -> float:
    """CPU time of a gunicorn master and all its workers, the exited ones included (their cutime/cstime).

    The machine is shared, so req/s move with other people's load; CPU per request does much less.
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    own = sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")  # utime stime cutime cstime
    return own + sum(cpu for cpu, _rss in _workers(pid).values())


def _workers(pid: int) -> dict[int, tuple[float, float]]:
    """{worker pid: (CPU seconds, RSS MiB)} of a gunicorn master's running workers: balance and memory."""
    tick, out = os.sysconf("SC_CLK_TCK"), {}
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return out
    for child in children:
        try:
            fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
            rss_kb = next(int(line.split()[1]) for line in Path(f"/proc/{child}/status").read_text().splitlines()
                          if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            continue  # exited between the two reads: counted in the master's cutime from the next read on
        out[int(child)] = (sum(int(value) for value in fields[11:13]) / tick, rss_kb / 1024)
    return out


def _describe_workers(name: str, warm: dict[int, tuple[float, float]], end: dict[int, tuple[float, float]],
                      served: int) -> str:
    """Each worker's share of the CPU over the rounds and its memory after warm-up and at the end."""
    cpu = {worker: end[worker][0] - warm.get(worker, (0.0, 0.0))[0] for worker in end}
    total = sum(cpu.values()) or 1.0
    parts = [
        f"{worker}: {cpu[worker] / total:.0%} of the CPU, RSS {warm[worker][1]:.1f} -> {end[worker][1]:.1f} MiB"
        if worker in warm else f"{worker} (started during the rounds): RSS {end[worker][1]:.1f} MiB"
        for worker in sorted(end)
    ]
    return f"    {name:10s} {served} requests; workers " + "; ".join(parts)


def _children_cpu_seconds() -> float:
    """CPU of this process's finished children (the wrk runs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _wrk(port: int, order_id: str, seconds: int, connections: int, work_dir: Path) -> tuple[float, str, int, int]:
    script = work_dir / "create_get.lua"
    script.write_text(WRK_SCRIPT % (json.dumps(ORDER), secrets.token_hex(8), order_id))  # new keys each run
    out = subprocess.run(
        [
            "/usr/bin/wrk",
            "-t2",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"\s99%\s+(\S+)", out).group(1)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    requests_done = int(re.search(r"(\d+) requests in", out).group(1))
    return rps, p99, int(non2xx.group(1)) if non2xx else 0, requests_done


class Round(NamedTuple):
    rps: float
    p99: str
    errors: int
    cpu_ms: float  # server CPU (gunicorn master + workers) per request
    all_ms: float  # the same + PostgreSQL + wrk: what one request costs the machine
    load: float  # 1-minute load average at the end of the run


def _median(runs: list[Round]) -> Round:
    """Each figure's own median (req/s, p99, CPU), so one slow round cannot pick the others."""

    def middle(values: list[float]) -> float:
        return statistics.median(values)

    p99s = sorted(runs, key=lambda run: _ms(run.p99))
    return Round(
        middle([r.rps for r in runs]),
        p99s[len(p99s) // 2].p99,
        sum(r.errors for r in runs),
        middle([r.cpu_ms for r in runs]),
        middle([r.all_ms for r in runs]),
        middle([r.load for r in runs]),
    )


def _ms(text: str) -> float:
    value = float(re.match(r"[\d.]+", text).group(0))
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0}[re.search(r"[a-z]+$", text).group(0)]


def _describe(label: str, results: dict[str, list[Round]], index: int) -> str:
    ratio = results["hardened"][index].rps / results["bare"][index].rps
    lines = [f"  {label}: hardened/bare {ratio:.2f}x  (load average {results['bare'][index].load:.1f})"]
    for name, runs in results.items():
        run = runs[index]
        errors = f"  non-2xx {run.errors}" if run.errors else ""
        lines.append(
            f"    {name:10s} {run.rps:7.1f} req/s  p99 {run.p99:>8s}  CPU ms/req: server {run.cpu_ms:.2f}"
            f" all {run.all_ms:.2f}{errors}"
        )
    return "\n".join(lines)


def run() -> None:
    sys.path[:0] = [str(REPO), str(SERVICES)]
    from cloudphoenix_services import service_a
    from cloudphoenix_services.core import load_settings
    from cloudphoenix_services.core.db import Database, migrate

    from tests.support.pg import PgCluster, make_shared_dir

    seconds = int(os.environ.get("BENCH_SECONDS", "10"))
    connections = int(os.environ.get("BENCH_CONNECTIONS", "16"))
    base = make_shared_dir("cp-bench-svc-pg-")
    work = Path(tempfile.mkdtemp(prefix="cp-bench-svc-"))
    cluster = PgCluster(base_dir=base, name="bench").initdb().start()
    processes: list[subprocess.Popen] = []
    try:
        password = secrets.token_hex(12)
        cluster.execute(f"CREATE ROLE phoenix_app LOGIN PASSWORD '{password}'")
        cluster.execute("CREATE DATABASE phoenix OWNER phoenix_app")
        (work / "pw").write_text(password)
        dsn = f"host=127.0.0.1 port={cluster.port} dbname=phoenix user=phoenix_app"
        env = {
            **os.environ,
            "PYTHONPATH": f"{SERVICES}{os.pathsep}{REPO}",
            "PYTHONDONTWRITEBYTECODE": "1",
            "CLOUDPHOENIX_DB_DSN": dsn,
            "CLOUDPHOENIX_DB_PASSWORD_FILE": str(work / "pw"),
            "CLOUDPHOENIX_RATE_LIMIT": "1000000 per second",
            "CLOUDPHOENIX_REGION": "east",
            "CLOUDPHOENIX_WORKERS": WORKERS,
            "CLOUDPHOENIX_THREADS": THREADS,
            "CLOUDPHOENIX_WORKER_CLASS": WORKER_CLASS,
            "CLOUDPHOENIX_METRICS_DIR": str(work / "metrics"),
            "CLOUDPHOENIX_ACCESS_LOG": str(work / "access.log"),
            "BENCH_BARE_DSN": f"{dsn} password={password}",
        }
        database = Database(load_settings("service_a", env))
        migrate(database, "service_a", service_a.SPEC.migrations)
        database.close()

        servers: dict[str, tuple[int, str]] = {}
        pids: dict[str, int] = {}
        postmaster = cluster.postmaster_pid()
        same_settings = [sys.executable, "-m", "gunicorn", "-c", str(SERVICES / "gunicorn.conf.py")]
        for name in ("hardened", "bare", "bare-cli"):
            port = _free_port()
            run_env = {**env, "CLOUDPHOENIX_BIND": f"127.0.0.1:{port}"}
            if name == "hardened":  # production defaults (the limit is raised: one wrk client is one address)
                argv = same_settings
            elif name == "bare":  # the same gunicorn settings file (workers, threads, keep-alive, max_requests, ...)
                argv = [*same_settings, BARE_APP]
                run_env["CLOUDPHOENIX_ACCESS_LOG"] = ""  # a bare app has no JSON access log: that is hardening
            else:  # bare-cli: for reference, the bare app on gunicorn's defaults plus the same workers/threads
                argv = [sys.executable, "-m", "gunicorn", "-b", f"127.0.0.1:{port}", "-w", WORKERS, "-k", WORKER_CLASS]
                argv += ["--threads", THREADS, "--no-control-socket", BARE_APP]
            processes.append(_start(argv, run_env, port, work / f"{name}.log"))
            pids[name] = processes[-1].pid
            created = requests.post(f"http://127.0.0.1:{port}/orders", json=ORDER, timeout=5)
            assert created.status_code == 201, created.text
            servers[name] = (port, created.json()["id"])
            _wrk(port, servers[name][1], 2, connections, work)  # warm-up: pools, imports, caches
        # Interleaved rounds, all servers up the whole time: the machine is shared, so load from
        # other work hits every side alike. The order flips each round (no side always goes last);
        # the ratio is taken per round (neighbours in time) and over the medians.
        warm = {name: _workers(pid) for name, pid in pids.items()}
        served = dict.fromkeys(servers, 0)
        rounds = int(os.environ.get("BENCH_ROUNDS", "4"))  # even: each order (see below) runs equally often
        results: dict[str, list[Round]] = {name: [] for name in servers}
        print(
            f"service_a create+get, gunicorn {WORKERS} workers x {THREADS} threads ({WORKER_CLASS}), "
            f"wrk -t2 -c{connections} -d{seconds}s x {rounds} interleaved rounds, same PostgreSQL",
            flush=True,
        )
        for number in range(1, rounds + 1):
            order = list(servers) if number % 2 else list(reversed(servers))
            for name in order:
                port, order_id = servers[name]
                before = _server_cpu_seconds(pids[name]), _server_cpu_seconds(postmaster), _children_cpu_seconds()
                rps, p99, errors, done = _wrk(port, order_id, seconds, connections, work)
                served[name] += done
                server = (_server_cpu_seconds(pids[name]) - before[0]) * 1000 / max(done, 1)
                others = _server_cpu_seconds(postmaster) - before[1] + _children_cpu_seconds() - before[2]
                all_ms = server + others * 1000 / max(done, 1)
                results[name].append(Round(rps, p99, errors, server, all_ms, os.getloadavg()[0]))
            print(_describe(f"round {number}", results, -1), flush=True)
        medians = {name: _median(runs) for name, runs in results.items()}
        ratios = [h.rps / b.rps for h, b in zip(results["hardened"], results["bare"], strict=True)]
        print(_describe("median", {name: [median] for name, median in medians.items()}, 0))
        hardened, bare = medians["hardened"], medians["bare"]
        print(
            f"  hardened/bare req/s: median of per-round ratios {statistics.median(ratios):.2f}x, ratio of medians "
            f"{hardened.rps / bare.rps:.2f}x (target >= 0.85x)\n"
            f"  CPU per request, bare/hardened: all {bare.all_ms / hardened.all_ms:.2f}x (the req/s ratio where the"
            f" machine's CPU is the limit), server {bare.cpu_ms / hardened.cpu_ms:.2f}x\n"
            f"  for reference: hardened/bare-cli {hardened.rps / medians['bare-cli'].rps:.2f}x"
        )
        print("  worker balance and memory over the rounds:")
        for name, pid in pids.items():
            print(_describe_workers(name, warm[name], _workers(pid), served[name]))
    finally:
        for process in processes:
            if process.poll() is None:
                _stop(process)
        cluster.destroy()
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    run()
