"""Shared fixtures: real PostgreSQL clusters, a real BIND9 with TSIG, moto in server mode.

Fixture names are part of the test suite's contract; other conftest files build on them.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.bind import BindServer
from tests.support.moto import MOTO_ENV, MotoServer
from tests.support.pg import PgCluster, make_shared_dir

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def pg_dir() -> Iterator[Path]:
    """A directory the PostgreSQL OS user owns (pytest's tmp_path is not reachable for it)."""
    path = make_shared_dir("cp-pg-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def pg_factory(pg_dir: Path) -> Iterator:
    """Make clusters on demand: `pg_factory("east")` -> an un-initialised PgCluster.

    Every cluster made here is stopped (immediate) and removed after the test.
    """
    made: list[PgCluster] = []

    def make(name: str, host: str = "127.0.0.1") -> PgCluster:
        cluster = PgCluster(base_dir=pg_dir, name=name, host=host)
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        cluster.destroy()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """One moto_server for the session; use `moto` (function scope) for a clean state."""
    server = MotoServer().start()
    yield server
    server.stop()


@pytest.fixture
def moto(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    """A reset moto endpoint, with fake AWS credentials in the environment."""
    moto_server.reset()
    for key, value in MOTO_ENV.items():
        monkeypatch.setenv(key, value)
    return moto_server


@pytest.fixture
def bind_server() -> Iterator[BindServer]:
    """A fresh named serving `phoenix.test` with TSIG updates allowed (hmac-sha256)."""
    server = BindServer(base_dir=Path(tempfile.mkdtemp(prefix="cp-bind-", dir="/tmp"))).start()
    yield server
    server.destroy()
