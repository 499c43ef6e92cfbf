"""Partial failures on the lab (issue 14): figures, not pass/fail (tests/integration/failover asserts them).

`python -m bench partial` runs, in async and sync mode, the case where the controller loses the old
primary region (SSH to its host fails, and root's packets to its address are dropped: `controller_cut`)
while the other region, its services and the clients still reach it. West's service_a holds pooled
connections to east before the run. After failover.yml, clients POST orders straight to west's and to
east's service_a; the rows are then counted in both databases. One row per mode: acknowledged writes,
on the new primary, on the old primary only, lost (acknowledged, on neither), hung (no answer within
the client timeout), the run's RTO and its lease wait. Uses the lab's fixed addresses: never beside the
lab tests or molecule.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from pathlib import Path

import psycopg2
import requests

from tests.support.ansible import REPO_ROOT, run_playbook

INVENTORY = REPO_ROOT / "inventories" / "lab"
PLAYBOOKS = REPO_ROOT / "playbooks"
LAB_DIR = Path("/var/tmp/cloudphoenix-lab")
ADDRESS = {"east": "127.0.10.1", "west": "127.0.20.1"}
MODES = os.environ.get("BENCH_PARTIAL_MODES", "async,sync").split(",")
WRITES = int(os.environ.get("BENCH_PARTIAL_WRITES", "100"))
CLIENT_TIMEOUT = 30.0  # above the services' own request and statement timeouts


def _play(name: str, *args: str, **extra):
    run = run_playbook(PLAYBOOKS / f"{name}.yml", *args, inventory=INVENTORY, extra_vars=extra or None, timeout=900)
    if run.rc != 0:
        print(f"  {name} {extra} failed (rc={run.rc}):\n{run.stdout[-2500:]}", flush=True)
    return run


def _orders(region: str, customer: str) -> set[str]:
    conn = psycopg2.connect(host=str(LAB_DIR / region / "pg/run"), port=5432, user="postgres", dbname="phoenix",
                            connect_timeout=3)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT idempotency_key FROM orders WHERE customer_id = %s", (customer,))
            return {row[0] for row in cur.fetchall()}
    finally:
        conn.close()


def _post(address: str, customer: str, key: str) -> str:
    """'acked', 'refused' (an HTTP error status) or 'hung' (no answer within the client timeout)."""
    body = {"customer_id": customer, "currency": "EUR", "items": [{"sku": "B-1", "quantity": 1, "unit_price_cents": 1}]}
    try:
        status = requests.post(f"http://{address}:8080/orders", json=body, headers={"Idempotency-Key": key},
                               timeout=CLIENT_TIMEOUT).status_code
    except requests.Timeout:
        return "hung"
    except requests.RequestException:
        return "refused"
    return "acked" if status == 201 else "refused"


def _as_client(fn, *args):
    """East's address is cut for root only: clients run as another user (a child process as nobody)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(read)
        try:
            os.setgid(65534)
            os.setuid(65534)
            result = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            result = f"error:{exc}"
        os.write(write, str(result).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as stream:
        answer = stream.read()
    os.waitpid(pid, 0)
    return answer


def _case(mode: str) -> dict:
    customer = f"bench-partial-{mode}-{int(time.time())}"
    for _ in range(12):  # west's service_a pools connections to east (reads follow read-write to it)
        with contextlib.suppress(requests.RequestException):
            requests.get(f"http://{ADDRESS['west']}:8080/orders", params={"customer_id": customer}, timeout=10)
    with tempfile.TemporaryDirectory() as tmp:
        cut = Path(tmp) / "east-unreachable.yml"
        cut.write_text("all:\n  hosts:\n    east:\n      ansible_connection: ssh\n      ansible_host: 127.0.10.1\n"
                       "      ansible_port: 9\n      ansible_ssh_common_args: -o ConnectTimeout=3\n")
        _play("lab_fault", fault="controller_cut", region="east")
        try:
            run = _play("failover", "-i", str(cut), cloudphoenix_pg_replication_mode=mode)
            report = {}
            if run.rc == 0:
                report = json.loads((LAB_DIR / "reports" / "failover-latest.json").read_text())
            outcomes = {}
            for n in range(WRITES):
                region = "west" if n % 2 == 0 else "east"
                key = f"{customer}-{region}-{n}"
                outcomes[key] = _post(ADDRESS[region], customer, key) if region == "west" else \
                    _as_client(_post, ADDRESS[region], customer, key)
        finally:
            _play("lab_fault", fault="heal")
    acked = {key for key, outcome in outcomes.items() if outcome == "acked"}
    on_west, on_east = _orders("west", customer), _orders("east", customer)
    phases = {row["phase"]: row for row in report.get("phases", [])}
    _play("failback", cloudphoenix_pg_replication_mode=mode, failback_allow_data_loss=True)
    return {
        "acked": len(acked), "on_new": len(acked & on_west), "old_only": len((acked | on_east) - on_west),
        "lost": len(acked - on_west - on_east), "hung": sum(1 for o in outcomes.values() if o == "hung"),
        "rto": report.get("rto_seconds"), "lease_wait": (phases.get("lease_wait") or {}).get("seconds"),
        "acked_east": len({k for k in acked if "-east-" in k}),
    }


def run() -> None:
    if os.geteuid() != 0:
        print("needs root (nftables, the lab)")
        return
    rows = []
    _play("lab_down")
    for mode in MODES:
        _play("lab_up", cloudphoenix_pg_replication_mode=mode)
        rows.append((mode, _case(mode)))
    _play("lab_down")
    print(f"{'case':<26} {'mode':<5} {'acked':>5} {'on new':>6} {'old only':>8} {'lost':>4} {'hung':>4} "
          f"{'acked@east':>10} {'RTO s':>6} {'lease wait s':>12}")
    for mode, f in rows:
        print(f"{'controller cut off east':<26} {mode:<5} {f['acked']:>5} {f['on_new']:>6} {f['old_only']:>8} "
              f"{f['lost']:>4} {f['hung']:>4} {f['acked_east']:>10} {f['rto'] or '-':>6} {f['lease_wait'] or '-':>12}")
