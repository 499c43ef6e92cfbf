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
    scheme: str = "http"
    ca_file: str | None = None

    def url(self, path: str) -> str:
        return f"{self.scheme}://{self.host}:{self.port}{path}"


def _gunicorn(*extra: str) -> Iterator[TestServer]:
    """gunicorn (1 worker, 32 threads, own control socket disabled) serving app.py on a free port."""
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="cp-service-check-gunicorn-", suffix=".log", delete=False)  # noqa: SIM115
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("gunicorn")), "--no-control-socket", "--chdir", str(HERE),
         "-b", f"127.0.0.1:{port}", "-w", "1", "-k", "gthread", "--threads", "32", "--timeout", "60",
         *extra, "app:app"],
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


@pytest.fixture(scope="session")
def http_server() -> Iterator[TestServer]:
    """The test app over plain HTTP."""
    yield from _gunicorn()


@pytest.fixture(scope="session")
def tls_material(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A test CA and a server certificate for *.phoenix.test only (no IP address in it), via openssl."""
    base = tmp_path_factory.mktemp("service-check-tls")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=base)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=service_check test CA",
            "-keyout", "ca.key", "-out", "ca.pem")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=*.phoenix.test", "-keyout", "server.key",
            "-out", "server.csr")
    (base / "san.ext").write_text("subjectAltName=DNS:*.phoenix.test\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-extfile", "san.ext", "-out", "server.pem")
    return {"ca": str(base / "ca.pem"), "cert": str(base / "server.pem"), "key": str(base / "server.key")}


@pytest.fixture(scope="session")
def https_server(tls_material: dict[str, str]) -> Iterator[TestServer]:
    """The test app over TLS with a certificate for *.phoenix.test signed by the test CA."""
    for server in _gunicorn("--certfile", tls_material["cert"], "--keyfile", tls_material["key"]):
        server.scheme = "https"
        server.ca_file = tls_material["ca"]
        yield server
