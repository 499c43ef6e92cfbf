"""Probes, metrics, OpenAPI serving, and boot-time config validation."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from cloudphoenix_services import service_a
from cloudphoenix_services.core import ConfigError, load_settings

from tests.services.conftest import SERVICES_DIR, settings_env
from tests.support.net import free_port


def test_healthz_and_readyz_when_everything_is_up(client_a):
    assert client_a.get("/healthz").get_json() == {"status": "ok", "service": "service_a"}
    ready = client_a.get("/readyz")
    assert ready.status_code == 200
    body = ready.get_json()
    assert body["status"] == "ready" and body["checks"]["database"]["ok"] is True
    assert body["checks"]["database"]["latency_ms"] >= 0
    assert body["fencing"]["enabled"] is False and body["fencing"]["writes_allowed"] is True


def test_readyz_with_database_down_is_not_ready_but_alive(app_db, make_settings, capfd):
    """A DSN at a closed port: the DB is down for this app, the process is fine."""
    settings = make_settings("service_a", db_dsn=f"host=127.0.0.1 port={free_port()} dbname=phoenix user=phoenix_app")
    app = service_a.create_app(settings)
    client = app.test_client()
    try:
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.get_json()["status"] == "not ready"
        assert ready.get_json()["checks"]["database"]["ok"] is False
        assert client.get("/healthz").status_code == 200
        write = client.post(
            "/orders",
            json={"customer_id": "c", "currency": "EUR", "items": [{"sku": "s", "quantity": 1, "unit_price_cents": 1}]},
            headers={"X-Request-ID": "db-down-1"},
        )
        assert write.status_code == 503 and write.headers["Retry-After"] == "2"
        problem = write.get_json()
        assert problem["type"].endswith("/database-unavailable")
        # No internals and no secret in the response; the log line carries the request id, not the password.
        text = write.get_data(as_text=True)
        assert "psycopg2" not in text and "port=" not in text and app_db.password not in text
        logs = capfd.readouterr().err
        lines = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
        assert any(line.get("request_id") == "db-down-1" and line["level"] == "warning" for line in lines)
        assert app_db.password not in logs
    finally:
        app.extensions["cloudphoenix"].close()


def test_metrics_count_requests_and_durations(client_a):
    client_a.get("/healthz")
    client_a.get("/orders/00000000-0000-0000-0000-000000000000")
    text = client_a.get("/metrics").get_data(as_text=True)
    assert (
        'http_requests_total{endpoint="/orders/<uuid:order_id>",method="GET",service="service_a",status="404"}' in text
    )
    assert 'http_request_duration_seconds_bucket{endpoint="/healthz"' in text
    # Label values stay a bounded set: an invented method is "other", an unrouted path "unmatched".
    client_a.open("/no/such/path", method="BREW")
    text = client_a.get("/metrics").get_data(as_text=True)
    assert 'http_requests_total{endpoint="unmatched",method="other",service="service_a",status="404"}' in text
    assert "BREW" not in text


def test_openapi_document_is_served_and_matches_the_repo(client_a):
    response = client_a.get("/openapi.yaml")
    assert response.status_code == 200
    assert response.data == (SERVICES_DIR / "cloudphoenix_services" / "service_a" / "openapi.yaml").read_bytes()


def test_bad_settings_fail_at_boot_with_every_problem_named(app_db):
    env = settings_env(app_db, db_pool_max="0", fencing_enabled="maybe", s3_endpoint_url="ftp://x")
    env["CLOUDPHOENIX_DB_DSN"] += " password=hunter2"
    with pytest.raises(ConfigError) as error:
        load_settings("service_a", env)
    message = str(error.value)
    assert "CLOUDPHOENIX_DB_POOL_MAX: must be an integer from 1 to 100, got '0'" in message
    assert "CLOUDPHOENIX_FENCING_ENABLED: must be true or false" in message
    assert "CLOUDPHOENIX_S3_ENDPOINT_URL: must be an http(s) URL" in message
    assert "CLOUDPHOENIX_DB_DSN: must not contain a password" in message
    assert "hunter2" not in message
    with pytest.raises(ConfigError, match="CLOUDPHOENIX_S3_BUCKET: required for service_b"):
        load_settings(
            "service_b", {**env, "CLOUDPHOENIX_S3_BUCKET": "", "CLOUDPHOENIX_DB_POOL_MAX": "1"}, needs_bucket=True
        )


def test_settings_repr_hides_the_password(make_settings, app_db):
    settings = make_settings()
    assert settings.db_password == app_db.password
    assert app_db.password not in repr(settings) and "db_password='***'" in repr(settings)


def test_gunicorn_refuses_to_start_with_a_bad_setting_and_binds_nothing(app_db, tmp_path):
    port = free_port()
    env = {
        **settings_env(app_db, db_retry_attempts="lots"),
        "CLOUDPHOENIX_BIND": f"127.0.0.1:{port}",
        "CLOUDPHOENIX_METRICS_DIR": str(tmp_path / "m"),
        "PYTHONPATH": str(SERVICES_DIR),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PATH": "/usr/bin:/bin",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", str(SERVICES_DIR / "gunicorn.conf.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode != 0
    assert "CLOUDPHOENIX_DB_RETRY_ATTEMPTS: must be an integer from 1 to 20, got 'lots'" in proc.stderr
    assert "Listening at" not in proc.stderr and "Booting worker" not in proc.stderr


def test_cli_check_config_and_idempotent_migrate(app_db, tmp_path):
    env_file = tmp_path / "service_a.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in settings_env(app_db).items()))

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "cloudphoenix_services",
                *args,
                "--service",
                "service_a",
                "--env-file",
                str(env_file),
            ],
            env={"PYTHONPATH": str(SERVICES_DIR), "PYTHONDONTWRITEBYTECODE": "1", "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            check=False,
        )

    assert json.loads(run("check-config").stdout)["changed"] is False
    app_db.cluster.execute("DROP TABLE IF EXISTS orders", dbname="phoenix")
    app_db.cluster.execute("DELETE FROM schema_migrations WHERE service = 'service_a'", dbname="phoenix")
    first, second = json.loads(run("migrate").stdout), json.loads(run("migrate").stdout)
    assert first == {"changed": True, "applied": [1]} and second == {"changed": False, "applied": []}
    env_file.write_text(env_file.read_text() + "CLOUDPHOENIX_DB_POOL_MAX=-1\n")
    bad = run("check-config")
    assert bad.returncode == 2 and "CLOUDPHOENIX_DB_POOL_MAX" in json.loads(bad.stdout)["msg"]
    assert app_db.password not in bad.stdout + bad.stderr


def test_tracing_is_off_unless_an_exporter_is_configured(app_db, make_settings, capfd):
    quiet = service_a.create_app(make_settings("service_a"))
    assert quiet.extensions["cloudphoenix"].tracer_provider is None
    quiet.extensions["cloudphoenix"].close()
    traced = service_a.create_app(make_settings("service_a", otel_exporter="console"))
    try:
        assert traced.test_client().get("/healthz", headers={"X-Request-ID": "span-1"}).status_code == 200
    finally:
        traced.extensions["cloudphoenix"].close()  # flushes the batch processor
    out = capfd.readouterr().out
    assert '"name": "GET /healthz"' in out and "span-1" in out
    with pytest.raises(ConfigError, match="needs the opentelemetry-exporter-otlp-proto-http package"):
        service_a.create_app(make_settings("service_a", otel_exporter="otlp"))
