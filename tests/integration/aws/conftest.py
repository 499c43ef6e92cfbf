"""Fixtures for the aws_infra tests: a two-region inventory pointing at the per-test moto server."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from tests.support.net import free_port

REPO_ROOT = Path(__file__).resolve().parents[3]
PROVISION = REPO_ROOT / "playbooks" / "provision.yml"
TEARDOWN = REPO_ROOT / "playbooks" / "teardown.yml"
DB_PASSWORD = "Db-master-password-never-printed-42"

REGIONS = {
    "east": {"aws_region": "us-east-1", "address": "127.0.10.1", "octet": 10},
    "west": {"aws_region": "us-west-2", "address": "127.0.20.1", "octet": 20},
}


def host_vars(name: str) -> dict:
    region = REGIONS[name]
    octet, aws_region = region["octet"], region["aws_region"]
    return {
        "cloudphoenix_region": name,
        "cloudphoenix_region_address": region["address"],
        "aws_infra_region": aws_region,
        "aws_infra_vpc_cidr": f"10.{octet}.0.0/16",
        "aws_infra_subnets": [
            {"name": "public-a", "cidr": f"10.{octet}.0.0/24", "az": f"{aws_region}a", "tier": "public"},
            {"name": "public-b", "cidr": f"10.{octet}.10.0/24", "az": f"{aws_region}b", "tier": "public"},
            {"name": "private-a", "cidr": f"10.{octet}.1.0/24", "az": f"{aws_region}a", "tier": "private"},
            {"name": "private-b", "cidr": f"10.{octet}.2.0/24", "az": f"{aws_region}b", "tier": "private"},
        ],
    }


class Inventory:
    """A two-region inventory in the lab's shape; `write()` renders it with overrides."""

    def __init__(self, directory: Path, endpoint_url: str):
        self.directory = directory
        self.endpoint_url = endpoint_url
        self.hosts = {name: host_vars(name) for name in REGIONS}
        self.common = {
            "ansible_connection": "local",
            "ansible_python_interpreter": "{{ ansible_playbook_python }}",
            "aws_infra_endpoint_url": endpoint_url,
            "aws_infra_environment": "dev",
            "aws_infra_zone": "phoenix.example.com",
            "aws_infra_health_check_type": "HTTP",
            "aws_infra_health_check_port": 8080,
            "aws_infra_db_master_password": DB_PASSWORD,
        }

    def write(self) -> Path:
        data = {"all": {"vars": self.common, "children": {"regions": {"children": {
            "primary_region": {"hosts": {"east": self.hosts["east"]}},
            "dr_region": {"hosts": {"west": self.hosts["west"]}},
        }}}}}
        path = self.directory / "hosts.yml"
        path.write_text(yaml.safe_dump(copy.deepcopy(data), sort_keys=False))
        return path


@pytest.fixture
def inventory(moto, tmp_path: Path) -> Inventory:
    """Two regions (east primary us-east-1, west DR us-west-2) against the reset moto server."""
    return Inventory(tmp_path, moto.endpoint_url)


@pytest.fixture
def dead_inventory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Inventory:
    """Same inventory, endpoint on a closed port: any AWS call would fail with a connection error."""
    from tests.support.moto import MOTO_ENV

    for key, value in MOTO_ENV.items():
        monkeypatch.setenv(key, value)
    return Inventory(tmp_path, f"http://127.0.0.1:{free_port('127.0.0.1')}")


def outputs(path: Path) -> dict:
    return json.loads(path.read_text())
