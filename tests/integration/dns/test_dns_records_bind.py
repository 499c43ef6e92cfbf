"""dns_records against a real BIND9 with TSIG (fixture `lab_bind`): every behaviour the runbook relies on."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from dns_support import EAST, LAB_RECORDS, WEST, ZONE, rfc_args, send_notify, served, soa_serial, switch_args

from tests.support.ansible import run_module
from tests.support.bind import BindServer

ACTIVE = f"_active.{ZONE}"


def claim(token: str, expect: str = "region=east epoch=1") -> dict:
    return {"records": [{"name": ACTIVE, "type": "TXT", "ttl": 5, "values": [token]}],
            "expect": [{"name": ACTIVE, "type": "TXT", "values": [expect]}]}


def test_switch_is_one_update_and_waits_for_the_servers(lab_bind: BindServer) -> None:
    serial = soa_serial(lab_bind)
    result = run_module("dns_records", rfc_args(lab_bind, records=switch_args(WEST), wait=True))
    assert not result.failed, result.result
    assert result.changed
    assert served(lab_bind, f"api.{ZONE}") == (5, [WEST])
    assert served(lab_bind, f"docs.{ZONE}") == (5, [WEST])
    # both records in ONE update message: the server bumped its serial exactly once
    assert soa_serial(lab_bind) == serial + 1
    assert [b["status"] for b in result["batches"]] == ["applied"]
    # wait found the zone's NS (ns1 -> 127.0.0.1) and saw the new values there
    assert result["wait"] == [
        {"server": f"{lab_bind.host}:{lab_bind.port}", "in_sync": True, "polls": 1, "serves": None, "via": "queries"}]
    assert {c["name"]: c["action"] for c in result["changes"]} == {f"api.{ZONE}": "update", f"docs.{ZONE}": "update"}


def test_second_run_changes_nothing_and_sends_no_update(lab_bind: BindServer) -> None:
    assert run_module("dns_records", rfc_args(lab_bind, records=switch_args(WEST))).changed
    serial = soa_serial(lab_bind)
    again = run_module("dns_records", rfc_args(lab_bind, records=switch_args(WEST), wait=True))
    assert not again.failed and not again.changed
    assert again["changes"] == [] and again["batches"] == []
    assert soa_serial(lab_bind) == serial  # no UPDATE reached the server


def test_check_mode_reports_the_change_and_changes_nothing(lab_bind: BindServer) -> None:
    serial = soa_serial(lab_bind)
    result = run_module("dns_records", rfc_args(lab_bind, records=switch_args(WEST), wait=True), check=True)
    assert not result.failed and result.changed
    assert result["changes"] == [{"name": f"api.{ZONE}", "type": "A", "action": "update"},
                                 {"name": f"docs.{ZONE}", "type": "A", "action": "update"}]
    assert [(b["name"], b["values"], b["ttl"]) for b in result["before"]] == [
        (f"api.{ZONE}", [EAST], 5), (f"docs.{ZONE}", [EAST], 5)]
    assert [b["status"] for b in result["batches"]] == ["planned"]
    assert served(lab_bind, f"api.{ZONE}") == (5, [EAST])
    assert soa_serial(lab_bind) == serial


def test_diff_shows_before_and_after_and_before_rolls_back(lab_bind: BindServer) -> None:
    result = run_module("dns_records", rfc_args(lab_bind, records=switch_args(WEST)), diff=True)
    assert result["diff"]["before"] == f"api.{ZONE}. 5 IN A {EAST}\ndocs.{ZONE}. 5 IN A {EAST}\n"
    assert result["diff"]["after"] == f"api.{ZONE}. 5 IN A {WEST}\ndocs.{ZONE}. 5 IN A {WEST}\n"
    rollback = run_module("dns_records", rfc_args(lab_bind, records=result["before"]))
    assert rollback.changed
    assert served(lab_bind, f"api.{ZONE}") == (5, [EAST]) and served(lab_bind, f"docs.{ZONE}") == (5, [EAST])


def test_create_and_delete_in_the_same_change(lab_bind: BindServer) -> None:
    records = [{"name": f"db.{ZONE}", "type": "A", "state": "absent"},
               {"name": f"db2.{ZONE}", "type": "AAAA", "ttl": 60, "values": ["2001:DB8::0:1"]},
               {"name": f"www.{ZONE}", "type": "CNAME", "values": [f"api.{ZONE}"]}]
    result = run_module("dns_records", rfc_args(lab_bind, records=records), diff=True)
    assert result.changed, result.result
    assert served(lab_bind, f"db.{ZONE}") == (None, [])
    assert served(lab_bind, f"db2.{ZONE}", "AAAA") == (60, ["2001:db8::1"])
    assert served(lab_bind, f"www.{ZONE}", "CNAME") == (300, [f"api.{ZONE}."])
    assert result["before"][0] == {"name": f"db.{ZONE}", "type": "A", "ttl": 5, "values": [EAST], "state": "present"}
    assert not run_module("dns_records", rfc_args(lab_bind, records=records)).changed


def test_cas_success_swaps_the_fencing_record(lab_bind: BindServer) -> None:
    result = run_module("dns_records", rfc_args(lab_bind, **claim("region=west epoch=2 run=a")))
    assert not result.failed, result.result
    assert result.changed and result["cas"] == "swapped"
    assert served(lab_bind, ACTIVE, "TXT") == (5, ['"region=west epoch=2 run=a"'])
    # a re-run by the same owner finds its own claim in place: nothing sent, not a failure
    again = run_module("dns_records", rfc_args(lab_bind, **claim("region=west epoch=2 run=a")))
    assert not again.failed and not again.changed and again["cas"] == "already_applied"


def test_cas_conflict_fails_and_changes_nothing(lab_bind: BindServer) -> None:
    serial = soa_serial(lab_bind)
    args = claim("region=west epoch=8 run=b", expect="region=east epoch=7")
    args["records"] += switch_args(WEST)  # the whole change is refused, not just the guarded record
    result = run_module("dns_records", rfc_args(lab_bind, **args))
    assert result.failed and result["conflict"] is True and not result.changed
    assert 'expected "region=east epoch=7"' in result["msg"] and 'is "region=east epoch=1"' in result["msg"]
    assert served(lab_bind, ACTIVE, "TXT") == (5, ['"region=east epoch=1"'])
    assert served(lab_bind, f"api.{ZONE}") == (5, [EAST])
    assert soa_serial(lab_bind) == serial


def test_server_enforces_the_cas_when_records_move_after_the_read(lab_bind: BindServer) -> None:
    """The read-compare in the module is not the only guard: the UPDATE carries prerequisites."""
    from ansible_collections.cloudphoenix.stack.plugins.module_utils import _dns
    from ansible_collections.cloudphoenix.stack.plugins.module_utils._dns_rfc2136 import Rfc2136Provider

    provider = Rfc2136Provider(lab_bind.host, lab_bind.port, ZONE, lab_bind.key_name, lab_bind.secret)
    expect = _dns.normalize_expect([{"name": ACTIVE, "type": "TXT", "values": ["region=east epoch=1"]}], ZONE)
    desired = _dns.normalize_records([{"name": ACTIVE, "type": "TXT", "ttl": 5, "values": ["mine"]}], ZONE, 5)
    changes = _dns.plan_changes(provider.read(list(desired)), desired)  # read: epoch=1, as expected
    # a competitor swaps the record between our read and our write
    assert run_module("dns_records", rfc_args(lab_bind, **claim("theirs"))).changed
    serial = soa_serial(lab_bind)
    with pytest.raises(_dns.ConflictError, match="NXRRSET"):
        provider.apply(changes, expect)
    assert served(lab_bind, ACTIVE, "TXT") == (5, ['"theirs"'])
    assert soa_serial(lab_bind) == serial


def test_two_concurrent_cas_calls_exactly_one_wins(lab_bind: BindServer) -> None:
    """Two real module processes race for the fencing record, three rounds; each round has one winner."""
    current = "region=east epoch=1"
    for round_no in range(2, 5):
        tokens = [f"region=west epoch={round_no} run=a", f"region=west epoch={round_no} run=b"]
        results: dict[str, object] = {}
        barrier = threading.Barrier(2)

        def race(token: str, expect: str = current, barrier=barrier, results=results) -> None:
            barrier.wait()
            results[token] = run_module("dns_records", rfc_args(lab_bind, **claim(token, expect=expect)))

        threads = [threading.Thread(target=race, args=(t,)) for t in tokens]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        winners = [t for t in tokens if not results[t].failed and results[t].changed]
        losers = [t for t in tokens if results[t].failed]
        assert len(winners) == 1 and len(losers) == 1, {t: results[t].result for t in tokens}
        assert results[losers[0]]["conflict"] is True and not results[losers[0]].changed
        assert results[losers[0]]["current"][0]["values"] == [f'"{winners[0]}"']
        assert served(lab_bind, ACTIVE, "TXT") == (5, [f'"{winners[0]}"'])
        current = winners[0]


@pytest.fixture
def stale_bind(lab_bind: BindServer):
    """A second authoritative server for the zone that never receives updates (a lagging secondary)."""
    import tempfile
    from pathlib import Path

    server = BindServer(base_dir=Path(tempfile.mkdtemp(prefix="cp-bind-stale-", dir="/tmp")), records=LAB_RECORDS)
    server.start()
    yield server
    server.destroy()


def test_wait_times_out_naming_each_lagging_server_and_what_it_serves(lab_bind: BindServer, stale_bind) -> None:
    servers = [f"{lab_bind.host}:{lab_bind.port}", f"{stale_bind.host}:{stale_bind.port}"]
    started = time.monotonic()
    result = run_module("dns_records", rfc_args(lab_bind, records=switch_args(WEST), wait=True,
                                                wait_servers=servers, wait_timeout=1.5))
    elapsed = time.monotonic() - started
    assert result.failed
    assert result.changed  # the change itself was applied; only the wait failed
    assert f"{stale_bind.host}:{stale_bind.port}: api.{ZONE}. A serves {EAST} ttl=5, want {WEST} ttl=5" in result["msg"]
    assert f"{lab_bind.host}:{lab_bind.port}:" not in result["msg"]
    assert {w["server"]: w["in_sync"] for w in result["wait"]} == {servers[0]: True, servers[1]: False}
    assert elapsed < 10
    assert served(lab_bind, f"api.{ZONE}") == (5, [WEST])


def test_wait_reports_an_unreachable_server(lab_bind: BindServer) -> None:
    from tests.support.net import free_port

    dead = f"127.0.0.1:{free_port()}"
    result = run_module("dns_records", rfc_args(lab_bind, records=switch_args(WEST), wait=True,
                                                wait_servers=[dead], wait_timeout=1))
    assert result.failed and f"{dead}: unreachable" in result["msg"]


def test_batch_of_1000_records_is_one_update(lab_bind: BindServer) -> None:
    records = [{"name": f"h{i}.{ZONE}", "type": "A", "ttl": 5, "values": [f"10.1.{i // 250}.{i % 250}"]}
               for i in range(1000)]
    serial = soa_serial(lab_bind)
    result = run_module("dns_records", rfc_args(lab_bind, records=records, wait=True))
    assert not result.failed, result.get("msg")
    assert len(result["changes"]) == 1000 and len(result["batches"]) == 1
    assert soa_serial(lab_bind) == serial + 1
    assert served(lab_bind, f"h0.{ZONE}") == (5, ["10.1.0.0"])
    assert served(lab_bind, f"h999.{ZONE}") == (5, ["10.1.3.249"])
    assert result["wait"][0]["in_sync"] and result["wait"][0]["via"] == "transfer"  # one AXFR, not 1000 queries
    assert not run_module("dns_records", rfc_args(lab_bind, records=records)).changed


def test_bad_tsig_key_is_refused_at_once_and_nothing_changes(lab_bind: BindServer) -> None:
    import base64
    import secrets

    wrong = base64.b64encode(secrets.token_bytes(32)).decode()
    started = time.monotonic()
    result = run_module("dns_records", rfc_args(lab_bind, records=switch_args(WEST), key_secret=wrong))
    assert result.failed and not result.changed
    assert "TSIG BADSIG" in result["msg"] and "rejected" in result["msg"]
    assert time.monotonic() - started < 10  # not retried for 30 s
    assert served(lab_bind, f"api.{ZONE}") == (5, [EAST])
    assert wrong not in result.stdout + result.stderr


def test_unknown_tsig_key_name_is_refused(lab_bind: BindServer) -> None:
    result = run_module("dns_records", rfc_args(lab_bind, records=switch_args(WEST), key_name="not-a-key"))
    assert result.failed and "TSIG BADKEY" in result["msg"]
    assert served(lab_bind, f"api.{ZONE}") == (5, [EAST])


def test_unsigned_update_is_refused(lab_bind: BindServer) -> None:
    args = rfc_args(lab_bind, records=switch_args(WEST))
    del args["key_name"], args["key_secret"]
    started = time.monotonic()
    result = run_module("dns_records", args)
    assert result.failed and not result.changed
    assert "REFUSED" in result["msg"] and "unsigned" in result["msg"]
    assert time.monotonic() - started < 10  # refused at once, not retried for the 30 s budget
    assert served(lab_bind, f"api.{ZONE}") == (5, [EAST])


def test_zone_not_served_is_a_clear_error(lab_bind: BindServer) -> None:
    started = time.monotonic()
    result = run_module("dns_records", rfc_args(lab_bind, zone="other.test",
                                                records=[{"name": "api.other.test", "type": "A", "values": [WEST]}]))
    assert result.failed and not result.changed
    assert "does not serve zone other.test." in result["msg"]
    assert time.monotonic() - started < 10


def test_server_down_is_retried_then_fails_within_the_timeout(lab_bind: BindServer) -> None:
    lab_bind.stop()
    started = time.monotonic()
    result = run_module("dns_records", rfc_args(lab_bind, records=switch_args(WEST), timeout=2))
    elapsed = time.monotonic() - started
    assert result.failed and not result.changed
    assert "could not reach the DNS provider within timeout=2.0s" in result["msg"]
    attempts = int(result["msg"].split("gave up after ")[1].split(" ")[0])
    assert attempts > 1  # retried with backoff
    assert elapsed < 2 + 5  # budget + interpreter start on a loaded machine


def test_hung_server_is_retried_then_fails_within_the_timeout(lab_bind: BindServer) -> None:
    lab_bind.pause()
    try:
        started = time.monotonic()
        result = run_module("dns_records", rfc_args(lab_bind, records=switch_args(WEST), timeout=3))
        elapsed = time.monotonic() - started
    finally:
        lab_bind.resume()
    assert result.failed and "could not reach the DNS provider within timeout=3.0s" in result["msg"]
    assert int(result["msg"].split("gave up after ")[1].split(" ")[0]) > 1  # 2 s query timeout, then retried
    assert elapsed < 3 + 5  # the last attempt's query timeout is cut to the budget; + interpreter start
    assert served(lab_bind, f"api.{ZONE}") == (5, [EAST])


@pytest.fixture
def listener():
    """A TCP port that accepts connections and remembers whether anyone came (nothing may be sent)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.setblocking(False)
    yield sock
    sock.close()


def _nobody_connected(sock: socket.socket) -> bool:
    try:
        sock.accept()[0].close()
    except BlockingIOError:
        return True
    return False


@pytest.mark.parametrize(("record", "message"), [
    ({"name": "bad name.phoenix.test", "type": "A", "values": ["127.0.20.1"]}, "may only hold letters"),
    ({"name": "a..phoenix.test", "type": "A", "values": ["127.0.20.1"]}, "has an empty label"),
    ({"name": "x" * 64 + ".phoenix.test", "type": "A", "values": ["127.0.20.1"]}, "longer than 63"),
    ({"name": "api.example.com", "type": "A", "values": ["127.0.20.1"]}, "is not in zone phoenix.test."),
    ({"name": "api.phoenix.test", "type": "A", "ttl": -1, "values": ["127.0.20.1"]}, "ttl -1 must be an integer"),
    ({"name": "api.phoenix.test", "type": "A", "ttl": 2**31, "values": ["127.0.20.1"]}, "must be an integer from 0"),
    ({"name": "api.phoenix.test", "type": "A", "values": ["256.1.1.1"]}, "'256.1.1.1' is not an IPv4 address"),
    ({"name": "api.phoenix.test", "type": "A", "values": ["127.0.20"]}, "is not an IPv4 address"),
    ({"name": "api.phoenix.test", "type": "AAAA", "values": ["zz::1"]}, "is not an IPv6 address"),
    ({"name": "www.phoenix.test", "type": "CNAME", "values": ["a.test", "b.test"]}, "exactly one value"),
    ({"name": "api.phoenix.test", "type": "A", "values": []}, "needs at least one value"),
])
def test_invalid_input_is_rejected_before_anything_is_sent(lab_bind: BindServer, listener, record, message) -> None:
    # one valid record first: a bad one anywhere in the list stops the whole change
    records = [switch_args(WEST)[0], record]
    args = rfc_args(lab_bind, records=records, port=listener.getsockname()[1])
    result = run_module("dns_records", args)
    assert result.failed and not result.changed
    assert message in result["msg"], result["msg"]
    assert _nobody_connected(listener)
    assert served(lab_bind, f"api.{ZONE}") == (5, [EAST])


def test_invalid_tsig_secret_is_rejected_without_echoing_it(lab_bind: BindServer, listener) -> None:
    result = run_module("dns_records", rfc_args(lab_bind, records=switch_args(WEST), key_secret="not*base64!",
                                                port=listener.getsockname()[1]))
    assert result.failed and "not valid base64" in result["msg"]
    assert "not*base64!" not in result.stdout + result.stderr
    assert _nobody_connected(listener)


def test_options_of_the_other_provider_are_refused(lab_bind: BindServer) -> None:
    result = run_module("dns_records", rfc_args(lab_bind, records=switch_args(WEST), hosted_zone_id="Z1"))
    assert result.failed and "hosted_zone_id do not apply to provider rfc2136" in result["msg"]


def test_tsig_secret_never_printed(lab_bind: BindServer) -> None:
    runs = [
        run_module("dns_records", rfc_args(lab_bind, records=switch_args(WEST), wait=True), diff=True),
        run_module("dns_records", rfc_args(lab_bind, records=switch_args(EAST)), check=True, diff=True),
        run_module("dns_records", rfc_args(lab_bind, **claim("x", expect="nope"))),
        run_module("dns_records_info", rfc_args(lab_bind, records=[{"name": ACTIVE, "type": "TXT"}])),
    ]
    assert [r.failed for r in runs] == [False, False, True, False]
    for run in runs:
        assert lab_bind.secret not in run.stdout + run.stderr
        assert run["invocation"]["module_args"]["key_secret"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"


def test_wait_failure_still_returns_before_for_rollback(lab_bind: BindServer) -> None:
    from tests.support.net import free_port

    result = run_module("dns_records", rfc_args(lab_bind, records=switch_args(WEST), wait=True,
                                                wait_servers=[f"127.0.0.1:{free_port()}"], wait_timeout=0.5))
    assert result.failed and result.changed
    assert result["before"][0] == {"name": f"api.{ZONE}", "type": "A", "ttl": 5, "values": [EAST], "state": "present"}
    assert run_module("dns_records", rfc_args(lab_bind, records=result["before"])).changed
    assert served(lab_bind, f"api.{ZONE}") == (5, [EAST])


def test_hmac_sha512_key() -> None:
    import tempfile
    from pathlib import Path

    server = BindServer(base_dir=Path(tempfile.mkdtemp(prefix="cp-bind-512-", dir="/tmp")), records=LAB_RECORDS,
                        key_algorithm="hmac-sha512")
    server.start()
    try:
        args = rfc_args(server, records=switch_args(WEST))
        assert run_module("dns_records", {**args, "key_algorithm": "hmac-sha256"}).failed  # wrong algorithm
        result = run_module("dns_records", {**args, "key_algorithm": "hmac-sha512"})
        assert not result.failed and result.changed
        assert served(server, f"api.{ZONE}") == (5, [WEST])
    finally:
        server.destroy()


def test_servfail_is_retried_then_fails_within_the_timeout() -> None:
    """A zone file that does not load: named answers SERVFAIL for the zone (a real SERVFAIL, not a mock)."""
    import tempfile
    from pathlib import Path

    broken = BindServer(base_dir=Path(tempfile.mkdtemp(prefix="cp-bind-broken-", dir="/tmp")),
                        records="api IN A not-an-address\n")
    broken.start()
    try:
        started = time.monotonic()
        result = run_module("dns_records", rfc_args(broken, records=switch_args(WEST), timeout=1.5))
        elapsed = time.monotonic() - started
    finally:
        broken.destroy()
    assert result.failed and not result.changed
    assert "SERVFAIL" in result["msg"] and "within timeout=1.5s" in result["msg"]
    assert int(result["msg"].split("gave up after ")[1].split(" ")[0]) > 1
    assert elapsed < 1.5 + 5  # budget + interpreter start


def test_wait_follows_a_real_secondary_until_it_serves_the_change(bind_pair) -> None:
    """The secondary learns the change only when NOTIFYed (by the test, 1 s after the primary's serial moved)
    and then transfers the zone from the primary: the wait polls it until it serves the new values."""
    primary, secondary = bind_pair
    deadline = time.monotonic() + 15
    while served(secondary, f"api.{ZONE}") != (5, [EAST]):  # the first transfer
        assert time.monotonic() < deadline, "the secondary never loaded the zone"
        time.sleep(0.1)
    servers = [f"{primary.host}:{primary.port}", f"{secondary.host}:{secondary.port}"]
    serial = soa_serial(primary)

    def notify_one_second_after_the_update() -> None:
        give_up = time.monotonic() + 30
        while soa_serial(primary) == serial and time.monotonic() < give_up:
            time.sleep(0.02)
        time.sleep(1)
        send_notify(secondary)

    notify = threading.Thread(target=notify_one_second_after_the_update)
    notify.start()
    try:
        result = run_module("dns_records", rfc_args(primary, records=switch_args(WEST), wait=True, wait_timeout=20,
                                                    wait_servers=servers))
    finally:
        notify.join()
    assert not result.failed, result.get("msg")
    assert {w["server"]: w["in_sync"] for w in result["wait"]} == {
        f"{primary.host}:{primary.port}": True, f"{secondary.host}:{secondary.port}": True}
    assert served(secondary, f"api.{ZONE}") == (5, [WEST])
    polls = {w["server"]: w["polls"] for w in result["wait"]}
    assert polls[servers[0]] == 1 and polls[servers[1]] > 1  # the secondary was waited for


def test_wait_names_a_hung_secondary(bind_pair) -> None:
    primary, secondary = bind_pair
    deadline = time.monotonic() + 15
    while served(secondary, f"api.{ZONE}") != (5, [EAST]):
        assert time.monotonic() < deadline, "the secondary never loaded the zone"
        time.sleep(0.1)
    secondary.pause()
    try:
        result = run_module("dns_records", rfc_args(primary, records=switch_args(WEST), wait=True, wait_timeout=2,
                                                    wait_servers=[f"{primary.host}:{primary.port}",
                                                                  f"{secondary.host}:{secondary.port}"]))
    finally:
        secondary.resume()
    assert result.failed and result.changed
    assert f"{secondary.host}:{secondary.port}: unreachable or failing" in result["msg"]
    assert f"{primary.host}:{primary.port}:" not in result["msg"]
