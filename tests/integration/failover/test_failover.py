"""failover.yml / failback.yml on the real lab (PostgreSQL, BIND, gunicorn services).

The tests share one lab (module fixture) and run in file order: each leaves the stack in a
known state (on east after a failback, or on west after a failover) for the next one.
They use the lab's fixed addresses and ports, so they never run in parallel with the lab
tests or molecule.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dns.message
import dns.query
import psycopg2
import pytest

from tests.support.ansible import REPO_ROOT, ansible_env, run_playbook
from tests.support.pg import wait_until

INVENTORY = REPO_ROOT / "inventories" / "lab"
PLAYBOOKS = REPO_ROOT / "playbooks"
LAB_DIR = Path("/var/tmp/cloudphoenix-lab")
REPORTS = LAB_DIR / "reports"
SECRET_FILES = ["pg_superuser_password", "pg_replication_password", "pg_app_password", "tsig_secret"]
PUBLIC = ["api.phoenix.test", "docs.phoenix.test", "db.phoenix.test"]
ADDRESS = {"east": "127.0.10.1", "west": "127.0.20.1"}
FAILOVER_CMD = [str(Path(sys.executable).with_name("ansible-playbook")), str(PLAYBOOKS / "failover.yml"),
                "-i", str(INVENTORY)]
OUTPUTS: list[str] = []  # every playbook output, for the secrets check
# the first test also brings the lab up (module fixture), which takes minutes on a loaded machine
pytestmark = pytest.mark.timeout(900)


def playbook(name: str, *args: str, **extra_vars):
    run = run_playbook(PLAYBOOKS / f"{name}.yml", *args, inventory=INVENTORY, extra_vars=extra_vars or None)
    OUTPUTS.append(run.stdout + run.stderr)
    return run


def ask(name: str, rtype: str = "A") -> list[str]:
    query = dns.message.make_query(name, rtype)
    answer = dns.query.udp(query, "127.0.0.1", port=5353, timeout=2)
    return sorted(rdata.to_text().strip('"') for rrset in answer.answer for rdata in rrset)


def ttl(name: str) -> int:
    query = dns.message.make_query(name, "A")
    answer = dns.query.udp(query, "127.0.0.1", port=5353, timeout=2)
    return answer.answer[0].ttl


def active() -> str:
    return ask("_active.phoenix.test", "TXT")[0]


def pg(region: str, dbname: str = "postgres"):
    conn = psycopg2.connect(host=str(LAB_DIR / region / "pg/run"), port=5432, user="postgres", dbname=dbname,
                            connect_timeout=3)
    conn.autocommit = True
    return conn


def role(region: str) -> str:
    try:
        conn = pg(region)
    except psycopg2.OperationalError:
        return "down"
    try:
        cur = conn.cursor()
        cur.execute("SELECT pg_is_in_recovery()")
        return "standby" if cur.fetchone()[0] else "primary"
    finally:
        conn.close()


def snapshot() -> dict:
    """What a failover would change: the fencing record, the public records, each database's role."""
    return {"active": active(), "dns": {name: ask(name) for name in PUBLIC},
            "roles": {region: role(region) for region in ADDRESS}}


def failover_under_fault(**fault_vars):
    """Inject a lab fault, run failover.yml, heal the lab whatever happened; returns the failover run."""
    fault = playbook("lab_fault", **fault_vars)
    assert fault.rc == 0, fault.stdout[-2000:]
    try:
        return playbook("failover")
    finally:
        heal = playbook("lab_fault", fault="heal")
        assert heal.rc == 0, heal.stdout[-2000:]


def changed_tasks(run) -> str:
    """The TASK lines followed by a 'changed:' line: what a run that should change nothing changed."""
    lines, task, found = run.stdout.splitlines(), "", []
    for line in lines:
        if line.startswith("TASK ["):
            task = line
        elif line.startswith("changed:") and task:
            found.append(f"{task} -> {line}")
    return "\n".join(found) or run.stdout[-3000:]


def latest_report(kind: str = "failover") -> dict:
    return json.loads((REPORTS / f"{kind}-latest.json").read_text())


def on(region: str) -> None:
    assert active().startswith(f"region={region} ")
    assert all(ask(name) == [ADDRESS[region]] for name in PUBLIC)
    assert role(region) == "primary"


@pytest.fixture(scope="module")
def lab():
    down = run_playbook(PLAYBOOKS / "lab_down.yml", inventory=INVENTORY)
    assert down.rc == 0, down.stdout[-3000:]
    up = run_playbook(PLAYBOOKS / "lab_up.yml", inventory=INVENTORY)
    assert up.rc == 0, up.stdout[-3000:]
    yield up
    run_playbook(PLAYBOOKS / "lab_fault.yml", inventory=INVENTORY, extra_vars={"fault": "heal"})
    run_playbook(PLAYBOOKS / "lab_down.yml", inventory=INVENTORY)


@pytest.fixture
def from_east(lab):
    """The stack on east at the start: when an earlier test stopped half-way, heal and fail back first,
    so one failure is reported once instead of cascading through the tests after it."""
    if not active().startswith("region=east "):
        playbook("lab_fault", fault="heal")
        # recovery between tests: whatever east committed after the fork is kept in a copy, not asked about
        back = playbook("failback", failback_allow_data_loss=True)
        assert back.rc == 0, back.stdout[-4000:]
    on("east")
    return lab


def test_check_mode_shows_the_plan_and_changes_nothing(from_east) -> None:
    before = snapshot()
    run = playbook("failover", "--check", "--diff")
    assert run.rc == 0, run.stdout[-3000:]
    assert "+api.phoenix.test. 5 IN A 127.0.20.1" in run.stdout  # the DNS plan, as a diff
    assert "database east: would stop" in run.stdout and "check mode: nothing changed" in run.stdout
    assert snapshot() == before
    assert not (REPORTS / "failover-latest.json").exists()


def test_dns_down_at_preflight_changes_nothing(from_east) -> None:
    before = snapshot()
    run = failover_under_fault(fault="dns_down")
    assert run.rc != 0
    assert "the DNS provider (rfc2136) does not answer" in run.stdout and "nothing was changed" in run.stdout
    assert run.total("changed") == 0
    assert snapshot() == before


def test_lag_over_budget_is_refused_then_allowed_with_the_override(from_east) -> None:
    # west stops receiving WAL (no primary_conninfo), then east takes ~300 kB of writes
    west = pg("west")
    west.cursor().execute("ALTER SYSTEM SET primary_conninfo = ''")
    west.cursor().execute("SELECT pg_reload_conf()")
    west.close()
    east = pg("east", "phoenix")
    east.cursor().execute("CREATE TABLE IF NOT EXISTS failover_lag (id serial PRIMARY KEY, pad text)")
    east.cursor().execute("INSERT INTO failover_lag (pad) SELECT repeat('x', 1000) FROM generate_series(1, 300)")
    east.close()
    before = snapshot()

    refused = playbook("failover", failover_max_data_loss_bytes=65536)
    assert refused.rc != 0
    assert "bytes behind the primary" in refused.stdout and "nothing was changed" in refused.stdout
    assert "failover_allow_data_loss=true" in refused.stdout
    assert refused.total("changed") == 0
    assert snapshot() == before

    allowed = playbook("failover", failover_max_data_loss_bytes=65536, failover_allow_data_loss=True)
    assert allowed.rc == 0, allowed.stdout[-4000:]
    on("west")
    report = latest_report()
    assert report["outcome"] == "completed" and report["kind"] == "failover"
    assert report["data_at_risk_bytes"] > 65536 and report["lag_bytes_at_promotion"] == report["data_at_risk_bytes"]
    assert "lag at promotion (data at risk)" in allowed.stdout and "KiB" in allowed.stdout
    # DNS switches right after the promotion; repoint (a check in the lab) is made with verify
    assert [row["phase"] for row in report["phases"]] == ["preflight", "claim", "fence", "promote", "switch_dns",
                                                          "repoint", "verify"]
    assert all(row["seconds"] is not None for row in report["phases"])
    assert report["old_primary"] == "east" and report["new_primary"] == "west"


def test_rerun_after_success_changes_nothing(lab) -> None:
    before = snapshot()
    again = playbook("failover")
    assert again.rc == 0, again.stdout[-3000:]
    assert again.total("changed") == 0, changed_tasks(again)
    assert "already on west" in again.stdout
    assert snapshot() == before
    assert latest_report()["outcome"] == "already_done"


def test_failback_rejoins_switches_back_and_is_idempotent(lab) -> None:
    """After the data-loss failover above, east holds the rows west never received: failback refuses to rewind
    them away unless allowed, and then keeps a copy of east's data directory that still has them."""
    before = snapshot()
    refused = playbook("failback")
    assert refused.rc != 0
    printed = " ".join(refused.stdout.replace("\\n", " ").split())
    assert "refusing to rewind" in printed and "committed transaction(s)" in printed, refused.stdout[-4000:]
    assert "-e failback_allow_data_loss=true" in printed
    assert snapshot() == before and role("east") == "down"
    back = playbook("failback", failback_allow_data_loss=True)
    assert back.rc == 0, back.stdout[-4000:]
    copies = sorted((LAB_DIR / "east" / "pg").glob("data.diverged-*"))
    assert len(copies) == 1 and (copies[0] / "PG_VERSION").is_file()
    on("east")
    assert role("west") == "standby"
    report = latest_report("failback")
    assert report["data_at_risk_bytes"] == 0  # zero-loss budget: promotion only with everything received
    assert [row["phase"] for row in report["phases"]][:2] == ["preflight", "prepare"]  # planned: short TTL first
    assert all(ttl(name) == 5 for name in PUBLIC)  # ... and the configured TTL back afterwards
    again = playbook("failback")
    assert again.rc == 0 and again.total("changed") == 0, changed_tasks(again)


def test_switchover_lowers_the_ttl_first_and_restores_it(from_east) -> None:
    import threading

    seen, done = [], threading.Event()

    def watch() -> None:
        while not done.is_set():
            with contextlib.suppress(Exception):  # a missed poll
                rrset = dns.query.udp(dns.message.make_query("api.phoenix.test", "A"), "127.0.0.1", port=5353,
                                      timeout=1).answer[0]
                seen.append((rrset.ttl, rrset[0].address))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        run = playbook("switchover")
    finally:
        done.set()
        watcher.join()
    assert run.rc == 0, run.stdout[-4000:]
    on("west")
    # the old address with the short TTL (0) before the switch, the new one with it right after, then TTL 5 again
    assert (0, ADDRESS["east"]) in seen and (0, ADDRESS["west"]) in seen, sorted(set(seen))
    assert seen.index((0, ADDRESS["east"])) < seen.index((0, ADDRESS["west"]))
    assert all(ttl(name) == 5 for name in PUBLIC)
    report = latest_report("switchover")
    assert report["data_at_risk_bytes"] == 0
    prepare = next(row for row in report["phases"] if row["phase"] == "prepare")
    assert prepare["seconds"] >= 5  # the old TTL was waited out, and it is not counted in the RTO
    assert report["rto_seconds"] < report["total_seconds"] - 5
    again = playbook("switchover")
    assert again.rc == 0 and again.total("changed") == 0, changed_tasks(again)
    back = playbook("failback")
    assert back.rc == 0, back.stdout[-4000:]
    on("east")


def test_concurrent_runs_exactly_one_wins(from_east) -> None:
    cmd = FAILOVER_CMD
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ansible_env(),
                              cwd=REPO_ROOT) for _ in range(2)]
    outputs = [proc.communicate(timeout=300)[0] for proc in procs]
    OUTPUTS.extend(outputs)
    codes = [proc.returncode for proc in procs]
    winners = [out for out, rc in zip(outputs, codes, strict=True) if rc == 0 and "outcome: completed" in out]
    assert len(winners) == 1, outputs
    loser = next(out for out in outputs if out is not winners[0])
    assert ("another run" in loser or "claim lost" in loser or "already on west" in loser), loser[-3000:]
    recap = loser[loser.index("PLAY RECAP"):]
    assert "changed=0" in recap
    on("west")
    back = playbook("failback")
    assert back.rc == 0, back.stdout[-4000:]
    on("east")


def connects(address: str, port: int) -> bool:
    import socket

    try:
        with socket.create_connection((address, port), timeout=1):
            return True
    except OSError:
        return False


def test_hung_primary_is_fenced_and_never_takes_writes_after_it_heals(from_east) -> None:
    run = failover_under_fault(fault="hang", region="east")
    assert run.rc == 0, run.stdout[-4000:]
    on("west")
    assert "database east: kill" in run.stdout  # a SIGSTOPped postmaster only yields to SIGKILL
    # healed: nothing of east answers any more (database and services were stopped for good)
    time.sleep(1)
    assert not any(connects(ADDRESS["east"], port) for port in (5432, 8080, 8081))
    assert role("east") == "down"
    back = playbook("failback")
    assert back.rc == 0, back.stdout[-4000:]
    on("east")


def test_run_stopped_after_promote_is_continued_by_the_next_run(from_east) -> None:
    """A run cut at a known point: promoted and claimed, DNS not switched; the next run completes it."""
    stopped = playbook("failover", failover_stop_after="promote")
    assert stopped.rc == 0, stopped.stdout[-4000:]
    assert "stopped after promote as asked" in stopped.stdout
    assert active().startswith("region=west ") and role("west") == "primary" and role("east") == "down"
    assert all(ask(name) == [ADDRESS["east"]] for name in PUBLIC)  # DNS not switched yet
    rerun = playbook("failover")
    assert rerun.rc == 0, rerun.stdout[-4000:]
    assert "interrupted run" in rerun.stdout
    on("west")
    report = latest_report()
    assert report["outcome"] == "completed" and report["new_primary"] == "west"
    back = playbook("failback")
    assert back.rc == 0, back.stdout[-4000:]
    on("east")


def test_interruption_after_promote_then_rerun_completes(from_east) -> None:
    """SIGKILL of the whole ansible-playbook process group as soon as west is writable (DNS is switched
    right after the promotion, so the kill may land before or after the switch: both must be continued)."""
    cmd = FAILOVER_CMD
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ansible_env(),
                            cwd=REPO_ROOT, start_new_session=True)
    try:
        wait_until(lambda: role("west") == "primary", timeout=120, interval=0.02, message="west promoted")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # interrupted right after the promotion
        OUTPUTS.append(proc.communicate()[0])
    assert active().startswith("region=west ")
    assert "outcome: completed" not in OUTPUTS[-1]
    time.sleep(0.5)
    rerun = playbook("failover")
    assert rerun.rc == 0, rerun.stdout[-4000:]
    assert "interrupted run" in rerun.stdout
    on("west")
    assert latest_report()["outcome"] == "completed"


def post_order(address: str, customer: str, key: str) -> int:
    """POST one order straight to a region's service_a (no DNS); the HTTP status, 0 when nothing answered."""
    import requests

    body = {"customer_id": customer, "currency": "EUR",
            "items": [{"sku": "PARTIAL-1", "quantity": 1, "unit_price_cents": 100}]}
    try:
        return requests.post(f"http://{address}:8080/orders", json=body, headers={"Idempotency-Key": key},
                             timeout=30).status_code
    except requests.RequestException:
        return 0


def orders_of(region: str, customer: str) -> set[str]:
    conn = pg(region, "phoenix")
    try:
        cur = conn.cursor()
        cur.execute("SELECT idempotency_key FROM orders WHERE customer_id = %s", (customer,))
        return {row[0] for row in cur.fetchall()}
    finally:
        conn.close()


def test_controller_cut_off_the_old_region_no_acknowledged_write_outside_the_new_primary(from_east, tmp_path):
    """The partial failure of issue 14: the controller loses east (SSH to its host, and its address for root's
    sockets), while west, east's own services and clients still reach east. The fence cannot stop anything, so
    east's database stays a writable primary; west's services already hold pooled connections to it.

    Expected: the run waits out east's write lease before promoting (reported), stamps west with the new epoch,
    and every order west acknowledges afterwards is in west's database and not in east's (the write triggers
    refuse east's older epoch). Counted on both databases."""
    customer = f"partial-{int(time.time())}"
    # West's service_a opens pooled connections to east (reads follow target_session_attrs=read-write to it).
    import requests

    for _ in range(12):
        with contextlib.suppress(requests.RequestException):
            requests.get(f"http://{ADDRESS['west']}:8080/orders", params={"customer_id": customer}, timeout=10)
    # The controller's SSH to east fails: its fence and everything delegated there is unreachable.
    cut_inventory = tmp_path / "east-unreachable.yml"
    cut_inventory.write_text("all:\n  hosts:\n    east:\n      ansible_connection: ssh\n"
                             "      ansible_host: 127.0.10.1\n      ansible_port: 9\n"
                             "      ansible_ssh_common_args: -o ConnectTimeout=3\n")
    fault = playbook("lab_fault", fault="controller_cut", region="east")
    assert fault.rc == 0, fault.stdout[-2000:]
    try:
        run = run_playbook(PLAYBOOKS / "failover.yml", "-i", str(cut_inventory), inventory=INVENTORY)
        OUTPUTS.append(run.stdout + run.stderr)
        assert run.rc == 0, run.stdout[-4000:]
        assert "database east: host unreachable" in run.stdout
        assert role("east") == "primary"  # nothing could fence it (its socket is not the cut address)
        report = latest_report()
        phases = {row["phase"]: row for row in report["phases"]}
        assert phases["lease_wait"]["status"] == "changed", phases
        assert phases["fence"]["detail"].startswith("database east: host unreachable")

        statuses = {f"{customer}-{n}": post_order(ADDRESS["west"], customer, f"{customer}-{n}") for n in range(30)}
        acknowledged = {key for key, status in statuses.items() if status == 201}
        assert acknowledged, statuses  # west takes writes after the failover
        on_west, on_east = orders_of("west", customer), orders_of("east", customer)
        assert acknowledged <= on_west, sorted(acknowledged - on_west)
        assert not on_east, sorted(on_east)  # nothing acknowledged or not went to the unfenced old primary
    finally:
        heal = playbook("lab_fault", fault="heal")
        assert heal.rc == 0, heal.stdout[-2000:]
    # east stayed writable: whatever it committed after the fork (none of the services' orders, as counted
    # above; background work such as autoanalyze may commit) is kept in a copy
    back = playbook("failback", failback_allow_data_loss=True)
    assert back.rc == 0, back.stdout[-4000:]
    on("east")


def test_a_run_failing_after_its_claim_reports_where_it_stopped_and_the_resume_command_completes_it(from_east):
    """A failure after the claim (the promotion cannot stamp a database that does not exist: it refuses before
    promoting) still writes and prints the report: outcome failed, the phase, who holds the claim, how to
    resume. The printed command, run as it is (without the bad variable), completes the failover."""
    failed = playbook("failover", failover_fence_databases=["no_such_database"])
    assert failed.rc != 0
    printed = " ".join(failed.stdout.replace("\\n", " ").split())  # the callback folds long lines
    assert "outcome: failed" in printed and "failed in promote:" in printed, failed.stdout[-4000:]
    held = active()
    assert held.startswith("region=west ") and f"fencing record held by: {held}" in printed
    assert "to resume: ansible-playbook cloudphoenix.stack.failover -i " in printed
    report = latest_report()
    assert report["outcome"] == "failed" and report["failed_phase"] == "promote"
    assert report["claim_held_by"] == held and report["rto_seconds"] is None
    assert [row["status"] for row in report["phases"]][-1] == "failed"
    assert role("west") == "standby"  # refused before promoting
    assert all(ask(name) == [ADDRESS["east"]] for name in PUBLIC)  # DNS not switched
    resumed = playbook("failover")
    assert resumed.rc == 0, resumed.stdout[-4000:]
    assert "interrupted run" in resumed.stdout
    on("west")
    assert latest_report()["outcome"] == "completed"
    back = playbook("failback")
    assert back.rc == 0, back.stdout[-4000:]
    on("east")


def test_no_secret_in_any_output_or_report(lab) -> None:
    secrets = [(LAB_DIR / "secrets" / name).read_text().strip() for name in SECRET_FILES]
    assert all(len(secret) >= 16 for secret in secrets)
    texts = OUTPUTS + [path.read_text() for path in REPORTS.glob("*.json")]
    assert len(texts) > 10
    for text in texts:
        for secret in secrets:
            assert secret not in text
