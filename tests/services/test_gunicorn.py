"""The services under a real gunicorn: multi-worker metrics, JSON access logs, reload, graceful SIGTERM."""

from __future__ import annotations

import json
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg2
import requests

from tests.services.conftest import settings_env
from tests.support.pg import wait_until

ORDER = {"customer_id": "cust-g", "currency": "EUR", "items": [{"sku": "A-1", "quantity": 1, "unit_price_cents": 100}]}


def healthz_total(metrics: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("http_requests_total{") and 'endpoint="/healthz"' in line
    )


def test_metrics_add_up_across_workers_and_access_log_is_json(clean_db, gunicorn_factory):
    server = gunicorn_factory({**settings_env(clean_db), "CLOUDPHOENIX_WORKERS": "3"}, name="metrics")
    before = healthz_total(requests.get(server.url + "/metrics", timeout=5).text)
    metrics_dir = Path(server.env["CLOUDPHOENIX_METRICS_DIR"])
    sent = 0

    def probe(index: int) -> int:  # a new connection each time, so the requests spread over the workers
        return requests.get(server.url + "/healthz", headers={"X-Request-ID": f"probe-{index}"}, timeout=10).status_code

    with ThreadPoolExecutor(max_workers=6) as pool:
        for _batch in range(20):  # until at least two workers have served (and written their own sample files)
            assert set(pool.map(probe, range(sent, sent + 30))) == {200}
            sent += 30
            if len(list(metrics_dir.glob("counter_*.db"))) >= 2:
                break
    assert len(list(metrics_dir.glob("counter_*.db"))) >= 2
    after = healthz_total(requests.get(server.url + "/metrics", timeout=5).text)
    assert after - before == sent  # every worker's requests, each counted once

    access = [
        json.loads(line) for line in server.log().splitlines() if line.startswith("{") and "gunicorn.access" in line
    ]
    entry = next(line for line in access if line["request_id"] == "probe-7")
    assert entry["path"] == "/healthz" and entry["status"] == 200 and entry["service"] == "service_a"
    assert clean_db.password not in server.log()


def test_sighup_reload_applies_new_settings_without_dropping_requests(clean_db, gunicorn_factory, tmp_path):
    env_file = tmp_path / "service.env"
    env_file.write_text("CLOUDPHOENIX_HSTS_MAX_AGE=100\n")
    server = gunicorn_factory({**settings_env(clean_db), "CLOUDPHOENIX_ENV_FILE": str(env_file)}, name="reload")
    assert (
        requests.get(server.url + "/healthz", timeout=5).headers["Strict-Transport-Security"].startswith("max-age=100;")
    )
    env_file.write_text("CLOUDPHOENIX_HSTS_MAX_AGE=200\n")
    server.process.send_signal(signal.SIGHUP)
    failures: list[int] = []

    def reloaded() -> bool:
        response = requests.get(server.url + "/healthz", timeout=5)
        if response.status_code != 200:
            failures.append(response.status_code)
        return response.headers["Strict-Transport-Security"].startswith("max-age=200;")

    wait_until(reloaded, timeout=20, message="new workers with the new setting")
    assert failures == [] and server.process.poll() is None


def test_sigterm_finishes_the_request_in_flight_then_closes_the_pool(clean_db, gunicorn_factory):
    """A create blocks on a table lock the test holds; SIGTERM arrives; the lock is released after 1 s."""
    server = gunicorn_factory({**settings_env(clean_db), "CLOUDPHOENIX_WORKERS": "1"}, name="graceful")
    assert requests.post(server.url + "/orders", json=ORDER, timeout=10).status_code == 201  # pool is warm
    locker = psycopg2.connect(clean_db.cluster.socket_dsn("phoenix"))
    cursor = locker.cursor()
    cursor.execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
    outcome: dict[str, object] = {}

    def create() -> None:
        response = requests.post(server.url + "/orders", json=ORDER, timeout=30)
        outcome["status"] = response.status_code

    request_thread = threading.Thread(target=create)
    request_thread.start()
    wait_until(
        lambda: (
            clean_db.cluster.query(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE application_name = 'cloudphoenix-service_a' AND wait_event_type = 'Lock'"
            )[0][0]
            == 1
        ),
        message="the create waits on the lock",
    )

    server.process.send_signal(signal.SIGTERM)
    time.sleep(1.0)
    assert server.process.poll() is None  # still draining the request in flight
    locker.rollback()
    locker.close()
    request_thread.join(timeout=20)
    assert outcome["status"] == 201
    assert server.process.wait(timeout=30) == 0
    assert clean_db.cluster.query("SELECT count(*) FROM orders", dbname="phoenix") == [(2,)]
    wait_until(
        lambda: (
            clean_db.cluster.query(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'cloudphoenix-service_a'"
            )[0][0]
            == 0
        ),
        message="pool closed",
    )
    assert "Shutting down" in server.log() or "Handling signal: term" in server.log()
