"""Helpers for the pg_replication tests: module arguments for a fixture cluster, secret checks."""

from __future__ import annotations

import pytest

from tests.support.ansible import ModuleResult, run_module
from tests.support.pg import PgCluster, make_primary_with_replicator

REPL_PASSWORD = "repl-Secret-7f3a"
SUPER_PASSWORD = "super-Secret-91c2"
SECRETS = (REPL_PASSWORD, SUPER_PASSWORD)


def node_args(cluster: PgCluster) -> dict:
    """The pg_replication node options for a fixture cluster (socket login as the superuser)."""
    return {
        "data_dir": str(cluster.data_dir),
        "socket_dir": str(cluster.socket_dir),
        "listen_address": cluster.host,
        "port": cluster.port,
        "log_file": str(cluster.log_file),
        "wait_timeout": 30,
    }


def standby_args(standby: PgCluster, primary: PgCluster, slot: str = "west", **extra) -> dict:
    return {
        **node_args(standby),
        "state": "standby",
        "primary_host": primary.host,
        "primary_port": primary.port,
        "slot_name": slot,
        "replication_password": REPL_PASSWORD,
        "rewind_password": SUPER_PASSWORD,
        **extra,
    }


class Runner:
    """run_module that keeps every output, so a test can grep all of it for secrets."""

    def __init__(self) -> None:
        self.outputs: list[str] = []

    def __call__(self, name: str, args: dict, **kwargs) -> ModuleResult:
        result = run_module(name, args, **kwargs)
        self.outputs.append(result.stdout + result.stderr)
        return result

    def assert_no_secrets(self, *extra_texts: str) -> None:
        for text in [*self.outputs, *extra_texts]:
            for secret in SECRETS:
                assert secret not in text


@pytest.fixture
def run() -> Runner:
    return Runner()


@pytest.fixture
def east(pg_factory) -> PgCluster:
    """A running primary with a `replicator` role; the superuser has a password over TCP."""
    cluster = make_primary_with_replicator(pg_factory("east"), password=REPL_PASSWORD)
    cluster.execute(f"ALTER ROLE postgres PASSWORD '{SUPER_PASSWORD}'")
    return cluster
