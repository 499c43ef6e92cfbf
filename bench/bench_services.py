"""service_a (hardened) vs a bare Flask app: create + get orders, same gunicorn settings, one run.

Both talk to the same real PostgreSQL and do the same SQL (INSERT ... RETURNING, SELECT by id);
the difference is everything the core adds: validation, idempotency key, problem errors,
request ids, security headers, rate limiting (memory storage), multiprocess metrics, JSON
access log, pooled connections with retries. Target: hardened >= 0.85x bare req/s.

    python -m bench services            (BENCH_SECONDS=10 by default, BENCH_CONNECTIONS=16)
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psycopg2
import requests
from flask import Flask, request

sys.dont_write_bytecode = True  # roles/services copies services/ as it is: keep it free of __pycache__

REPO = Path(__file__).resolve().parent.parent
SERVICES = REPO / "services"
WORKERS, THREADS, WORKER_CLASS = "2", "4", "gthread"
ORDER = {"customer_id": "bench", "currency": "EUR", "items": [{"sku": "A-1", "quantity": 2, "unit_price_cents": 1250}]}

WRK_SCRIPT = """
local counter = 0
local body = '%s'
request = function()
  counter = counter + 1
  if counter %% 2 == 1 then
    return wrk.format("POST", "/orders", {["Content-Type"] = "application/json",
      ["Idempotency-Key"] = "bench-" .. id .. "-" .. counter}, body)
  end
  return wrk.format("GET", "/orders/%s")
end
setup = function(thread) thread:set("id", tostring(math.random(1, 1e9))) end
init = function() id = tostring(math.random(1, 1e9)) end
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


def _wrk(port: int, order_id: str, seconds: int, connections: int, work_dir: Path) -> tuple[float, str, int]:
    script = work_dir / "create_get.lua"
    script.write_text(WRK_SCRIPT % (json.dumps(ORDER), order_id))
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
    return rps, p99, int(non2xx.group(1)) if non2xx else 0


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
        for name in ("hardened", "no-limiter", "bare"):
            port = _free_port()
            if name != "bare":  # no-limiter: the hardened service with CLOUDPHOENIX_RATE_LIMIT_ENABLED=false
                argv = [sys.executable, "-m", "gunicorn", "-c", str(SERVICES / "gunicorn.conf.py")]
                run_env = {
                    **env,
                    "CLOUDPHOENIX_BIND": f"127.0.0.1:{port}",
                    "CLOUDPHOENIX_RATE_LIMIT_ENABLED": "true" if name == "hardened" else "false",
                }
            else:
                argv = [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "-b",
                    f"127.0.0.1:{port}",
                    "-w",
                    WORKERS,
                    "-k",
                    WORKER_CLASS,
                    "--threads",
                    THREADS,
                    "--no-control-socket",
                    "bench.bench_services:create_bare_app()",
                ]
                run_env = env
            processes.append(_start(argv, run_env, port, work / f"{name}.log"))
            created = requests.post(f"http://127.0.0.1:{port}/orders", json=ORDER, timeout=5)
            assert created.status_code == 201, created.text
            servers[name] = (port, created.json()["id"])
            _wrk(port, servers[name][1], 2, connections, work)  # warm-up: pools, imports, caches
        # Interleaved rounds, both servers up the whole time: the machine is shared, so load from
        # other work hits both sides alike; the median of each side is compared.
        rounds = int(os.environ.get("BENCH_ROUNDS", "3"))
        runs: dict[str, list[tuple[float, str, int]]] = {name: [] for name in servers}
        for _round in range(rounds):
            for name, (port, order_id) in servers.items():
                runs[name].append(_wrk(port, order_id, seconds, connections, work))
        print(
            f"service_a create+get, gunicorn {WORKERS} workers x {THREADS} threads ({WORKER_CLASS}), "
            f"wrk -t2 -c{connections} -d{seconds}s x {rounds} interleaved rounds, same PostgreSQL"
        )
        medians = {}
        for name, results in runs.items():
            ordered = sorted(results, key=lambda result: result[0])
            medians[name] = ordered[len(ordered) // 2]
            rounds_text = ", ".join(f"{rps:.0f}" for rps, _p99, _errors in results)
            rps, p99, _errors = medians[name]
            print(
                f"  {name:10s} median {rps:8.1f} req/s  p99 {p99:>8s}  non-2xx {sum(r[2] for r in results)}"
                f"  (rounds: {rounds_text} req/s)"
            )
        print(f"  ratio hardened/bare (medians): {medians['hardened'][0] / medians['bare'][0]:.2f}x (target >= 0.85x)")
        print(f"  ratio no-limiter/bare (medians): {medians['no-limiter'][0] / medians['bare'][0]:.2f}x")
    finally:
        for process in processes:
            if process.poll() is None:
                _stop(process)
        cluster.destroy()
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    run()
