"""Write fencing against a real BIND9 (TSIG updates), and the pool following a real promotion."""

from __future__ import annotations

import time

from cloudphoenix_services import service_a
from cloudphoenix_services.core import load_settings

from tests.services.conftest import APP_USER, create_app_database
from tests.support.bind import set_active
from tests.support.pg import clone_standby, make_primary_with_replicator, wait_until

ORDER = {"customer_id": "cust-f", "currency": "EUR", "items": [{"sku": "A-1", "quantity": 1, "unit_price_cents": 100}]}


def test_writes_refused_when_not_active_accepted_again_when_active_reads_always(bind_server, make_settings, clean_db):
    set_active(bind_server, "region=east epoch=1")
    settings = make_settings(
        "service_a",
        region="west",
        fencing_enabled="true",
        fencing_dns_server=bind_server.host,
        fencing_dns_port=str(bind_server.port),
        fencing_record="_active.phoenix.test",
        fencing_lease_seconds="0.6",
    )
    app = service_a.create_app(settings)
    client = app.test_client()
    try:
        refused = client.post("/orders", json=ORDER)
        assert refused.status_code == 503
        assert refused.headers["Retry-After"] == "1"
        assert refused.get_json()["type"].endswith("/writes-fenced")
        assert "region east is active (epoch 1)" in refused.get_json()["detail"]
        assert client.get("/orders", query_string={"customer_id": "cust-f"}).status_code == 200  # reads still work
        assert client.get("/readyz").get_json()["fencing"]["writes_allowed"] is False

        set_active(bind_server, "region=west epoch=2")  # the runbook's claim
        wait_until(
            lambda: client.post("/orders", json=ORDER).status_code == 201, timeout=5, message="west accepts writes"
        )
        created_before = client.get("/orders", query_string={"customer_id": "cust-f"}).get_json()["items"]
        assert len(created_before) == 1

        set_active(bind_server, "region=east epoch=3")  # failed back: an answer naming another region revokes at once
        wait_until(
            lambda: client.post("/orders", json=ORDER).status_code == 503, timeout=5, message="west fenced again"
        )

        set_active(bind_server, "region=west epoch=4")
        wait_until(
            lambda: client.post("/orders", json=ORDER).status_code == 201, timeout=5, message="west active again"
        )
        # DNS gone (SIGSTOP): no renewal, so the lease runs out and writes stop within lease_seconds.
        bind_server.pause()
        try:
            time.sleep(0.6 + 0.5)
            stale = client.post("/orders", json=ORDER)
            assert stale.status_code == 503 and "lease not renewed" in stale.get_json()["detail"]
        finally:
            bind_server.resume()
        wait_until(lambda: client.post("/orders", json=ORDER).status_code == 201, timeout=5, message="lease renewed")
        metrics = client.get("/metrics").get_data(as_text=True)
        assert 'writes_fenced_total{service="service_a"}' in metrics
    finally:
        app.extensions["cloudphoenix"].close()


def test_fencing_off_accepts_writes_without_any_dns(client_a):
    assert client_a.post("/orders", json=ORDER).status_code == 201


def test_pool_reaches_the_promoted_standby_without_restart(pg_factory, tmp_path):
    """east primary -> west streaming standby; kill east, promote west: the same app keeps working."""
    east = make_primary_with_replicator(pg_factory("east"))
    create_app_database(east, "app-secret")
    west = clone_standby(east, pg_factory("west"), slot="west")
    wait_until(lambda: west.query("SELECT count(*) FROM pg_roles WHERE rolname = %s", (APP_USER,)) == [(1,)])
    password_file = tmp_path / "pw"
    password_file.write_text("app-secret")
    env = {
        "CLOUDPHOENIX_DB_DSN": (
            f"host={east.host},{west.host} port={east.port},{west.port} dbname=phoenix user={APP_USER}"
        ),
        "CLOUDPHOENIX_DB_PASSWORD_FILE": str(password_file),
        "CLOUDPHOENIX_DB_CONNECT_TIMEOUT": "2",
        "CLOUDPHOENIX_DB_RETRY_ATTEMPTS": "6",
        "CLOUDPHOENIX_DB_RETRY_MAX_WAIT": "0.5",
        "CLOUDPHOENIX_RATE_LIMIT": "1000 per second",
    }
    settings = load_settings("service_a", env)
    assert "target_session_attrs=read-write" in settings.db_dsn
    app = service_a.create_app(settings)
    client = app.test_client()
    from cloudphoenix_services.core.db import migrate

    migrate(app.extensions["cloudphoenix"].db, "service_a", service_a.SPEC.migrations)
    try:
        before = client.post("/orders", json=ORDER)
        assert before.status_code == 201
        order_id = before.get_json()["id"]
        wait_until(lambda: west.query("SELECT count(*) FROM orders", dbname="phoenix") == [(1,)], message="replicated")

        east.kill()
        assert client.get("/readyz").status_code == 503  # only a standby left: not writable, not ready
        refused = client.post("/orders", json=ORDER)
        assert refused.status_code == 503 and refused.get_json()["type"].endswith("/database-unavailable")

        west.execute("SELECT pg_promote(wait => true)")
        after = client.post("/orders", json=ORDER)
        assert after.status_code == 201, after.get_json()
        assert client.get(f"/orders/{order_id}").status_code == 200
        assert client.get("/readyz").status_code == 200
        assert west.query("SELECT count(*) FROM orders", dbname="phoenix") == [(2,)]
        names = west.query(
            "SELECT application_name, usename FROM pg_stat_activity WHERE backend_type = 'client backend'"
        )
        assert ("cloudphoenix-service_a", APP_USER) in names, names
    finally:
        app.extensions["cloudphoenix"].close()
