"""Fixtures for the services: one real PostgreSQL for the session, apps wired to it and to moto S3.

Tests that break the database (kill, promote) make their own clusters with ``pg_factory``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from cloudphoenix_services import service_a, service_b
from cloudphoenix_services.core import Settings, load_settings
from cloudphoenix_services.core.app import runtime
from cloudphoenix_services.core.db import Database, migrate

from tests.support.net import free_port, wait_for_port
from tests.support.pg import PgCluster, make_shared_dir

REPO = Path(__file__).resolve().parents[2]
SERVICES_DIR = REPO / "services"
APP_USER = "phoenix_app"
BUCKET = "phoenix-documents"


@dataclass
class AppDatabase:
    cluster: PgCluster
    password: str
    password_file: Path

    def dsn(self) -> str:
        return f"host={self.cluster.host} port={self.cluster.port} dbname=phoenix user={APP_USER}"


def create_app_database(cluster: PgCluster, password: str) -> None:
    cluster.execute(f"CREATE ROLE {APP_USER} LOGIN PASSWORD '{password}'")
    cluster.execute(f"CREATE DATABASE phoenix OWNER {APP_USER}")


@pytest.fixture(scope="session")
def app_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppDatabase]:
    base = make_shared_dir("cp-svc-pg-")
    cluster = PgCluster(base_dir=base, name="svc").initdb().start()
    password = "pw-" + secrets.token_hex(12)
    create_app_database(cluster, password)
    password_file = tmp_path_factory.mktemp("secrets") / "pg_app_password"
    password_file.write_text(password + "\n")
    password_file.chmod(0o600)
    yield AppDatabase(cluster, password, password_file)
    cluster.destroy()
    shutil.rmtree(base, ignore_errors=True)


def settings_env(app_db: AppDatabase, **overrides: str) -> dict[str, str]:
    env = {
        "CLOUDPHOENIX_DB_DSN": app_db.dsn(),
        "CLOUDPHOENIX_DB_PASSWORD_FILE": str(app_db.password_file),
        "CLOUDPHOENIX_DB_CONNECT_TIMEOUT": "2",
        "CLOUDPHOENIX_DB_RETRY_MAX_WAIT": "0.2",
        "CLOUDPHOENIX_REGION": "east",
        "CLOUDPHOENIX_RATE_LIMIT": "100000 per second",
        "CLOUDPHOENIX_S3_BUCKET": BUCKET,
    }
    env.update({f"CLOUDPHOENIX_{key.upper()}": value for key, value in overrides.items()})
    return env


@pytest.fixture
def make_settings(app_db: AppDatabase) -> Callable[..., Settings]:
    def make(service: str = "service_a", **overrides: str) -> Settings:
        spec = service_a.SPEC if service == "service_a" else service_b.SPEC
        return load_settings(
            spec.name,
            settings_env(app_db, **overrides),
            needs_bucket=spec.needs_bucket,
            default_max_request_bytes=spec.default_max_request_bytes,
        )

    return make


def reset_tables(app_db: AppDatabase) -> None:
    for spec in (service_a.SPEC, service_b.SPEC):
        database = Database(load_settings(spec.name, settings_env(app_db)))
        migrate(database, spec.name, spec.migrations)
        database.close()
    app_db.cluster.execute("TRUNCATE orders, documents", dbname="phoenix")


@pytest.fixture
def clean_db(app_db: AppDatabase) -> AppDatabase:
    reset_tables(app_db)
    return app_db


@pytest.fixture
def app_a(app_db: AppDatabase, make_settings):
    reset_tables(app_db)
    app = service_a.create_app(make_settings("service_a"))
    yield app
    app.extensions["cloudphoenix"].close()


@pytest.fixture
def client_a(app_a):
    return app_a.test_client()


@pytest.fixture
def app_b(app_db: AppDatabase, make_settings, moto):
    reset_tables(app_db)
    moto.client("s3").create_bucket(Bucket=BUCKET)
    app = service_b.create_app(make_settings("service_b", s3_endpoint_url=moto.endpoint_url, max_request_bytes="4096"))
    yield app
    app.extensions["cloudphoenix"].close()


@pytest.fixture
def client_b(app_b):
    return app_b.test_client()


@dataclass
class Gunicorn:
    """A real gunicorn running services/gunicorn.conf.py on a free loopback port."""

    env: dict[str, str]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, log_path: Path, timeout: float = 30) -> Gunicorn:
        self.log_path = log_path
        env = {
            **os.environ,
            **self.env,
            "CLOUDPHOENIX_BIND": f"127.0.0.1:{self.port}",
            "PYTHONPATH": str(SERVICES_DIR),
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(SERVICES_DIR / "gunicorn.conf.py")],
            env=env,
            stdout=open(log_path, "wb"),  # noqa: SIM115 - lives as long as the process
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited {self.process.returncode}:\n{self.log()}")
            try:
                if requests.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                time.sleep(0.1)
        raise TimeoutError(f"gunicorn not healthy:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def stop(self) -> int | None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return self.process.returncode if self.process else None


@pytest.fixture
def gunicorn_factory(tmp_path: Path) -> Iterator[Callable[..., Gunicorn]]:
    started: list[Gunicorn] = []

    def start(env: dict[str, str], name: str = "gunicorn") -> Gunicorn:
        server = Gunicorn(env={"CLOUDPHOENIX_METRICS_DIR": str(tmp_path / f"{name}-metrics"), **env})
        started.append(server)
        return server.start(tmp_path / f"{name}.log")

    yield start
    for server in started:
        server.stop()


__all__ = [
    "APP_USER",
    "BUCKET",
    "AppDatabase",
    "Gunicorn",
    "create_app_database",
    "runtime",
    "settings_env",
    "wait_for_port",
]
