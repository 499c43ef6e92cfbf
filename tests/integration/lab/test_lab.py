"""The local lab, end to end: real PostgreSQL, BIND9 and moto brought up by lab_up.yml.

These tests use the lab's fixed addresses and ports, so they run the real playbooks one
after another (never in parallel with molecule, which uses the same lab).
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import psycopg2
import pytest

from tests.support.ansible import REPO_ROOT, run_playbook
from tests.support.net import port_open
from tests.support.pg import wait_until

# The first test brings the lab up (services venv included): allow for a loaded machine.
pytestmark = pytest.mark.timeout(900)

INVENTORY = REPO_ROOT / "inventories" / "lab"
PLAYBOOKS = REPO_ROOT / "playbooks"
LAB_DIR = Path("/var/tmp/cloudphoenix-lab")
LAB_PORTS = [("127.0.0.1", 5353), ("127.0.0.1", 5000)] + [
    (address, port) for address in ("127.0.10.1", "127.0.20.1") for port in (5432, 8080, 8081)
]
SECRET_FILES = ["pg_superuser_password", "pg_replication_password", "pg_app_password", "tsig_secret"]


def playbook(name: str, **extra_vars):
    return run_playbook(PLAYBOOKS / f"{name}.yml", inventory=INVENTORY, extra_vars=extra_vars or None)


def nft_tables() -> str:
    return subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True).stdout


def connects(address: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def lab():
    down = playbook("lab_down")  # a clean start, whatever an earlier run left
    assert down.rc == 0, down.stdout
    up = playbook("lab_up")
    assert up.rc == 0, up.stdout[-3000:]
    yield up
    playbook("lab_down")


def test_unknown_fault_or_region_is_refused_and_changes_nothing() -> None:
    tables_before = nft_tables()
    bad_fault = playbook("lab_fault", fault="meteor", region="east")
    assert bad_fault.rc != 0
    assert "lab_fault" in bad_fault.stdout and "meteor" in bad_fault.stdout
    assert "kill" in bad_fault.stdout  # the message lists the valid choices
    bad_region = playbook("lab_fault", fault="partition", region="north")
    assert bad_region.rc != 0
    assert "Unknown or missing region 'north'" in bad_region.stdout
    assert "east, west" in bad_region.stdout
    assert bad_fault.total("changed") == 0 and bad_region.total("changed") == 0
    assert nft_tables() == tables_before


def test_lab_up_is_idempotent(lab) -> None:
    again = playbook("lab_up")
    assert again.rc == 0
    assert again.total("changed") == 0, again.stdout[-3000:]


def test_replication_dns_and_aws_answer(lab) -> None:
    import dns.message
    import dns.query

    primary = psycopg2.connect(host=str(LAB_DIR / "east/pg/run"), port=5432, user="postgres", dbname="phoenix")
    primary.autocommit = True
    with primary.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS lab_probe (marker text)")
        cur.execute("INSERT INTO lab_probe VALUES ('from-east')")
    primary.close()

    def replicated() -> bool:
        standby = psycopg2.connect(host=str(LAB_DIR / "west/pg/run"), port=5432, user="postgres", dbname="phoenix")
        try:
            with standby.cursor() as cur:
                cur.execute("SELECT pg_is_in_recovery(), count(*) FROM lab_probe WHERE marker = 'from-east'")
                in_recovery, count = cur.fetchone()
                return in_recovery and count >= 1
        finally:
            standby.close()

    wait_until(replicated, timeout=10, message="row written on east to appear on west")

    answer = dns.query.udp(dns.message.make_query("api.phoenix.test", "A"), "127.0.0.1", port=5353, timeout=2)
    assert "127.0.10.1" in answer.to_text()
    fencing = dns.query.udp(dns.message.make_query("_active.phoenix.test", "TXT"), "127.0.0.1", port=5353, timeout=2)
    assert "region=east epoch=1" in fencing.to_text()

    import boto3

    s3 = boto3.client("s3", endpoint_url="http://127.0.0.1:5000", region_name="us-east-1",
                      aws_access_key_id="lab-access-key", aws_secret_access_key="lab-secret-key")
    assert "phoenix-documents" in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_lab_up_prints_no_secret(lab) -> None:
    again = playbook("lab_up", **{"ansible_verbosity": 0})
    for name in SECRET_FILES:
        secret = (LAB_DIR / "secrets" / name).read_text().strip()
        assert len(secret) >= 32
        assert secret not in again.stdout and secret not in again.stderr
        assert secret not in lab.stdout


def test_partition_blocks_the_region_and_heal_restores_it(lab) -> None:
    assert connects("127.0.10.1", 5432)
    cut = playbook("lab_fault", fault="partition", region="east")
    assert cut.rc == 0 and cut.total("changed") > 0
    assert not connects("127.0.10.1", 5432)
    assert connects("127.0.20.1", 5432)  # the other region is untouched
    again = playbook("lab_fault", fault="partition", region="east")
    assert again.total("changed") == 0
    healed = playbook("lab_fault", fault="heal")
    assert healed.rc == 0
    assert connects("127.0.10.1", 5432)
    assert "cloudphoenix_lab" not in nft_tables()


def test_hang_stops_the_region_processes_and_heal_resumes_them(lab) -> None:
    pid = int((LAB_DIR / "east/pg/data/postmaster.pid").read_text().splitlines()[0])
    assert playbook("lab_fault", fault="hang", region="east").rc == 0
    state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    assert state == "T"
    assert playbook("lab_fault", fault="heal", region="east").rc == 0
    wait_until(lambda: Path(f"/proc/{pid}/stat").read_text().split()[2] != "T", timeout=5, message="SIGCONT")
    assert connects("127.0.10.1", 5432)


def apply_delay(region: str) -> str:
    conn = psycopg2.connect(host=str(LAB_DIR / region / "pg/run"), port=5432, user="postgres", dbname="postgres")
    try:
        cur = conn.cursor()
        cur.execute("SHOW recovery_min_apply_delay")
        return cur.fetchone()[0]
    finally:
        conn.close()


def test_delay_slows_the_standby_replay_and_heal_resets_it(lab) -> None:
    assert apply_delay("west") == "0"
    delayed = playbook("lab_fault", fault="delay", region="west", lab_fault_delay="30s")
    assert delayed.rc == 0, delayed.stdout[-3000:]
    assert delayed.total("changed") > 0 and apply_delay("west") == "30s"  # reloaded: in effect at once
    again = playbook("lab_fault", fault="delay", region="west", lab_fault_delay="30s")
    assert again.rc == 0 and again.total("changed") == 0
    healed = playbook("lab_fault", fault="heal")
    assert healed.rc == 0, healed.stdout[-3000:]
    assert apply_delay("west") == "0"
    assert "Database name has not been passed" not in delayed.stdout + delayed.stderr + healed.stdout + healed.stderr


def test_lab_down_leaves_no_port_process_or_rule(lab) -> None:
    playbook("lab_fault", fault="partition", region="west")  # down must clean up faults too
    playbook("lab_fault", fault="hang", region="east")
    down = playbook("lab_down")
    assert down.rc == 0, down.stdout[-3000:]
    still_open = [f"{host}:{port}" for host, port in LAB_PORTS if port_open(host, port)]
    assert still_open == []
    assert "cloudphoenix_lab" not in nft_tables()
    leftovers = subprocess.run(["pgrep", "-f", str(LAB_DIR) + "/"], capture_output=True, text=True, check=False)
    assert leftovers.stdout == ""
    assert not LAB_DIR.exists()
