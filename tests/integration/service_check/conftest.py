"""A real gunicorn serving app.py on a free port, for the service_check tests."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.net import free_port, wait_for_port

HERE = Path(__file__).resolve().parent
TOKEN = "Bearer sc-test-9f3e1b7c-not-a-real-secret-5d2a"


@dataclass
class TestServer:
    host: str
    port: int
    token: str

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"


@pytest.fixture(scope="session")
def http_server() -> Iterator[TestServer]:
    """gunicorn (1 worker, 32 threads, own control socket disabled) serving app.py."""
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="cp-service-check-gunicorn-", suffix=".log", delete=False)  # noqa: SIM115
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("gunicorn")), "--no-control-socket", "--chdir", str(HERE),
         "-b", f"127.0.0.1:{port}", "-w", "1", "-k", "gthread", "--threads", "32", "--timeout", "60",
         "app:app"],
        stdout=log, stderr=log, env={**os.environ, "SERVICE_CHECK_TEST_TOKEN": TOKEN},
    )
    try:
        wait_for_port("127.0.0.1", port, timeout=30)
        yield TestServer(host="127.0.0.1", port=port, token=TOKEN)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        os.unlink(log.name)
