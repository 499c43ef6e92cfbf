"""dns_records against Route 53 as moto_server emulates it (fixture `r53`), plus the Route 53 behaviours
moto cannot produce (throttling, PriorRequestNotComplete, a stale DELETE rejected), with botocore's Stubber."""

from __future__ import annotations

import time

import boto3
import pytest
from botocore.stub import Stubber
from dns_support import EAST, WEST, ZONE, r53_args, r53_records, switch_args

from tests.support.ansible import run_module
from tests.support.moto import MOTO_ENV
from tests.support.net import free_port

ACTIVE = f"_active.{ZONE}"


def claim(token: str, expect: str = "region=east epoch=1") -> dict:
    return {"records": [{"name": ACTIVE, "type": "TXT", "ttl": 5, "values": [token]}],
            "expect": [{"name": ACTIVE, "type": "TXT", "values": [expect]}]}


def test_switch_is_one_batch_and_waits_for_insync(r53: dict) -> None:
    result = run_module("dns_records", r53_args(r53, records=switch_args(WEST), wait=True))
    assert not result.failed, result.result
    assert result.changed
    records = r53_records(r53)
    assert records[(f"api.{ZONE}", "A")] == (5, [WEST]) and records[(f"docs.{ZONE}", "A")] == (5, [WEST])
    [batch] = result["batches"]
    assert batch["status"] == "applied" and batch["change_status"] == "INSYNC"
    assert batch["actions"] == 2 and batch["change_id"]
    assert r53["client"].get_change(Id=batch["change_id"])["ChangeInfo"]["Status"] == "INSYNC"


def _counting_provider(r53: dict):
    """A Route53Provider on a real moto client that counts the write calls it makes."""
    from ansible_collections.cloudphoenix.stack.plugins.module_utils._dns_route53 import Route53Provider

    client = boto3.client("route53", endpoint_url=r53["endpoint_url"], region_name="us-east-1")
    writes: list[dict] = []
    client.meta.events.register("provide-client-params.route53.ChangeResourceRecordSets",
                                lambda params, **_: writes.append(params))
    return Route53Provider(zone=ZONE, client=client), writes


def test_second_run_changes_nothing_and_sends_no_change(r53: dict) -> None:
    from ansible_collections.cloudphoenix.stack.plugins.module_utils import _dns

    assert run_module("dns_records", r53_args(r53, records=switch_args(WEST))).changed
    again = run_module("dns_records", r53_args(r53, records=switch_args(WEST), wait=True))
    assert not again.failed and not again.changed and again["batches"] == []
    # the same decision in-process, with the write calls counted on the wire
    provider, writes = _counting_provider(r53)
    outcome = _dns.switch(provider, _dns.normalize_records(switch_args(WEST), ZONE, 300), wait=True)
    assert outcome["changed"] is False and writes == []


def test_check_mode_and_diff_change_nothing(r53: dict) -> None:
    before = r53_records(r53)
    result = run_module("dns_records", r53_args(r53, records=switch_args(WEST)), check=True, diff=True)
    assert not result.failed and result.changed
    assert result["diff"]["before"] == f"api.{ZONE}. 5 IN A {EAST}\ndocs.{ZONE}. 5 IN A {EAST}\n"
    assert result["diff"]["after"] == f"api.{ZONE}. 5 IN A {WEST}\ndocs.{ZONE}. 5 IN A {WEST}\n"
    assert r53_records(r53) == before


def test_cas_success_is_delete_exact_old_plus_create(r53: dict) -> None:
    from ansible_collections.cloudphoenix.stack.plugins.module_utils import _dns

    provider, writes = _counting_provider(r53)
    args = claim("region=west epoch=2 run=a")
    outcome = _dns.switch(provider, _dns.normalize_records(args["records"], ZONE, 5),
                          expect=_dns.normalize_expect(args["expect"], ZONE))
    assert outcome["cas"] == "swapped"
    [call] = writes
    assert [(c["Action"], c["ResourceRecordSet"]["ResourceRecords"]) for c in call["ChangeBatch"]["Changes"]] == [
        ("DELETE", [{"Value": '"region=east epoch=1"'}]), ("CREATE", [{"Value": '"region=west epoch=2 run=a"'}])]
    assert r53_records(r53)[(ACTIVE, "TXT")] == (5, ['"region=west epoch=2 run=a"'])
    # and through the module: the next epoch
    result = run_module("dns_records", r53_args(r53, **claim("region=east epoch=3 run=b",
                                                             expect="region=west epoch=2 run=a")))
    assert result.changed and result["cas"] == "swapped"
    assert r53_records(r53)[(ACTIVE, "TXT")] == (5, ['"region=east epoch=3 run=b"'])


def test_cas_conflict_fails_and_changes_nothing(r53: dict) -> None:
    before = r53_records(r53)
    args = claim("region=west epoch=8", expect="region=east epoch=7")
    args["records"] += switch_args(WEST)
    result = run_module("dns_records", r53_args(r53, **args))
    assert result.failed and result["conflict"] is True and not result.changed
    assert 'expected "region=east epoch=7"' in result["msg"]
    assert r53_records(r53) == before


def test_route53_rejecting_a_stale_delete_is_a_conflict() -> None:
    """Mock (botocore Stubber): moto does not check a DELETE against the current values, real Route 53 does.

    The error below is Route 53's answer when the record changed between our read and our write.
    """
    from ansible_collections.cloudphoenix.stack.plugins.module_utils import _dns
    from ansible_collections.cloudphoenix.stack.plugins.module_utils._dns_route53 import Route53Provider

    client = boto3.client("route53", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
    stub = Stubber(client)
    stub.add_response("list_hosted_zones_by_name", {
        "HostedZones": [{"Id": "/hostedzone/Z1", "Name": f"{ZONE}.", "CallerReference": "r"}],
        "IsTruncated": False, "MaxItems": "100"})
    stub.add_response("list_resource_record_sets", {
        "ResourceRecordSets": [{"Name": f"{ACTIVE}.", "Type": "TXT", "TTL": 5,
                                "ResourceRecords": [{"Value": '"region=east epoch=1"'}]}],
        "IsTruncated": False, "MaxItems": "1"})
    stub.add_client_error(
        "change_resource_record_sets", service_error_code="InvalidChangeBatch", http_status_code=400,
        service_message=f"[Tried to delete resource record set [name='{ACTIVE}.', type='TXT'] but the values "
                        "provided do not match the current values]")
    stub.add_response("list_resource_record_sets", {  # the re-read that reports who holds it now
        "ResourceRecordSets": [{"Name": f"{ACTIVE}.", "Type": "TXT", "TTL": 5,
                                "ResourceRecords": [{"Value": '"region=west epoch=2 run=other"'}]}],
        "IsTruncated": False, "MaxItems": "1"})
    args = claim("region=west epoch=2")
    with stub, pytest.raises(_dns.ConflictError, match="do not match the current values") as info:
        _dns.switch(Route53Provider(zone=ZONE, client=client), _dns.normalize_records(args["records"], ZONE, 5),
                    expect=_dns.normalize_expect(args["expect"], ZONE))
    stub.assert_no_pending_responses()
    assert info.value.details["current"][0]["values"] == ['"region=west epoch=2 run=other"']


def test_throttling_and_prior_request_not_complete_are_retried() -> None:
    """Mock (botocore Stubber): moto never throttles nor answers PriorRequestNotComplete."""
    from ansible_collections.cloudphoenix.stack.plugins.module_utils import _dns
    from ansible_collections.cloudphoenix.stack.plugins.module_utils._dns_route53 import Route53Provider

    client = boto3.client("route53", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
    stub = Stubber(client)
    stub.add_client_error("get_hosted_zone", service_error_code="Throttling", http_status_code=400)
    stub.add_response("get_hosted_zone", {"HostedZone": {"Id": "/hostedzone/Z1", "Name": f"{ZONE}.",
                                                         "CallerReference": "r"}})
    stub.add_response("list_resource_record_sets", {"ResourceRecordSets": [], "IsTruncated": False, "MaxItems": "1"})
    stub.add_client_error("change_resource_record_sets", service_error_code="PriorRequestNotComplete",
                          http_status_code=400)
    stub.add_response("change_resource_record_sets", {"ChangeInfo": {
        "Id": "/change/C1", "Status": "PENDING", "SubmittedAt": "2026-01-01T00:00:00Z"}})
    stub.add_response("get_change", {"ChangeInfo": {"Id": "/change/C1", "Status": "PENDING",
                                                    "SubmittedAt": "2026-01-01T00:00:00Z"}})
    stub.add_response("get_change", {"ChangeInfo": {"Id": "/change/C1", "Status": "INSYNC",
                                                    "SubmittedAt": "2026-01-01T00:00:00Z"}})
    records = [{"name": f"new.{ZONE}", "type": "A", "ttl": 5, "values": [WEST]}]
    with stub:
        outcome = _dns.switch(Route53Provider(hosted_zone_id="Z1", client=client),
                              _dns.normalize_records(records, None, 5), wait=True, retry_timeout=10)
    stub.assert_no_pending_responses()
    assert [r["error"].split(":")[1].split("(")[0].strip() for r in outcome["retries"]] == [
        "Throttling", "PriorRequestNotComplete"]
    assert outcome["batches"][0]["change_id"] == "C1" and outcome["batches"][0]["change_status"] == "INSYNC"


def test_access_denied_is_not_retried() -> None:
    """Mock (botocore Stubber): an IAM denial never gets better by asking again."""
    from ansible_collections.cloudphoenix.stack.plugins.module_utils import _dns
    from ansible_collections.cloudphoenix.stack.plugins.module_utils._dns_route53 import Route53Provider

    client = boto3.client("route53", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
    stub = Stubber(client)
    stub.add_client_error("get_hosted_zone", service_error_code="AccessDenied", http_status_code=403)
    with stub, pytest.raises(_dns.DnsError, match="AccessDenied"):
        _dns.switch(Route53Provider(hosted_zone_id="Z1", client=client),
                    _dns.normalize_records(switch_args(WEST), None, 5))
    stub.assert_no_pending_responses()


def test_batch_of_1000_new_records_is_one_change(r53: dict) -> None:
    records = [{"name": f"h{i}.{ZONE}", "type": "A", "ttl": 5, "values": [f"10.1.{i // 250}.{i % 250}"]}
               for i in range(1000)]
    result = run_module("dns_records", r53_args(r53, records=records, wait=True))
    assert not result.failed, result.get("msg")
    assert [(b["status"], b["change_status"], b["actions"]) for b in result["batches"]] == [("applied", "INSYNC", 1000)]
    assert r53_records(r53)[(f"h999.{ZONE}", "A")] == (5, ["10.1.3.249"])
    assert not run_module("dns_records", r53_args(r53, records=records)).changed


def test_over_the_batch_limit_is_refused_unless_splitting_is_allowed(r53: dict) -> None:
    records = [{"name": f"h{i}.{ZONE}", "type": "A", "ttl": 5, "values": [f"10.1.{i // 250}.{i % 250}"]}
               for i in range(600)]
    assert run_module("dns_records", r53_args(r53, records=records)).changed
    moved = [dict(r, values=[f"10.2.{i // 250}.{i % 250}"]) for i, r in enumerate(records)]
    before = r53_records(r53)
    refused = run_module("dns_records", r53_args(r53, records=moved))
    assert refused.failed and not refused.changed
    assert "over Route 53's limits for one atomic batch (1200 ResourceRecord elements of 1000" in refused["msg"]
    assert "allow_split=true" in refused["msg"]
    assert r53_records(r53) == before
    split = run_module("dns_records", r53_args(r53, records=moved, allow_split=True))
    assert not split.failed and split.changed
    assert [(b["index"], b["changes"], b["status"]) for b in split["batches"]] == [
        (0, 500, "applied"), (1, 100, "applied")]
    assert r53_records(r53)[(f"h599.{ZONE}", "A")] == (5, ["10.2.2.99"])


def test_zone_not_hosted_is_a_clear_error(r53: dict) -> None:
    result = run_module("dns_records", r53_args(r53, zone="other.test",
                                                records=[{"name": "api.other.test", "type": "A", "values": [WEST]}]))
    assert result.failed and "zone other.test. is not a hosted zone" in result["msg"]
    by_id = run_module("dns_records", r53_args(r53, zone=None, hosted_zone_id="ZNOTTHERE",
                                               records=switch_args(WEST)))
    assert by_id.failed and "not found in Route 53" in by_id["msg"]
    assert by_id["code"] == "NoSuchHostedZone"


def test_endpoint_down_is_retried_then_fails_within_the_timeout(r53: dict) -> None:
    started = time.monotonic()
    result = run_module("dns_records", r53_args(r53, records=switch_args(WEST), timeout=2,
                                                endpoint_url=f"http://127.0.0.1:{free_port()}"))
    elapsed = time.monotonic() - started
    assert result.failed and "could not reach the DNS provider within timeout=2.0s" in result["msg"]
    assert int(result["msg"].split("gave up after ")[1].split(" ")[0]) > 1
    assert elapsed < 2 + 6  # budget + interpreter and boto3 start on a loaded machine


@pytest.mark.parametrize(("record", "message"), [
    ({"name": f"api.{ZONE}", "type": "A", "values": ["10.0.0.300"]}, "'10.0.0.300' is not an IPv4 address"),
    ({"name": f"api.{ZONE}", "type": "A", "ttl": -5, "values": [WEST]}, "ttl -5 must be an integer"),
    ({"name": "bad_name!.phoenix.test", "type": "A", "values": [WEST]}, "may only hold letters"),
    ({"name": "api.example.com", "type": "A", "values": [WEST]}, "is not in zone phoenix.test."),
])
def test_invalid_input_is_rejected_before_any_api_call(r53: dict, record: dict, message: str) -> None:
    import socket

    listener = socket.socket()  # an "endpoint" that remembers whether anyone called
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    before = r53_records(r53)
    try:
        result = run_module("dns_records", r53_args(
            r53, endpoint_url=f"http://127.0.0.1:{listener.getsockname()[1]}", records=[*switch_args(WEST), record]))
        with pytest.raises(BlockingIOError):
            listener.accept()
    finally:
        listener.close()
    assert result.failed and not result.changed
    assert message in result["msg"], result["msg"]
    assert r53_records(r53) == before


def test_aws_secrets_never_printed(r53: dict) -> None:
    secret, token = MOTO_ENV["AWS_SECRET_ACCESS_KEY"], "session-token-never-printed-123"
    runs = [
        run_module("dns_records", r53_args(r53, records=switch_args(WEST), wait=True), diff=True),
        run_module("dns_records", r53_args(r53, records=switch_args(EAST)), check=True, diff=True),
        run_module("dns_records", r53_args(r53, **claim("x", expect="nope"))),
        run_module("dns_records", r53_args(r53, records=switch_args(WEST), session_token=token)),
        run_module("dns_records_info", r53_args(r53, records=[{"name": ACTIVE, "type": "TXT"}])),
    ]
    assert [r.failed for r in runs] == [False, False, True, False, False]
    for run in runs:
        assert secret not in run.stdout + run.stderr
        assert token not in run.stdout + run.stderr


def test_a_failed_later_batch_says_which_batches_applied() -> None:
    """Mock (botocore Stubber): moto accepts anything that passed validation, so a second batch that
    Route 53 refuses (here: throttled until the budget ends) can only be produced this way."""
    from ansible_collections.cloudphoenix.stack.plugins.module_utils import _dns
    from ansible_collections.cloudphoenix.stack.plugins.module_utils._dns_route53 import Route53Provider

    client = boto3.client("route53", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
    stub = Stubber(client)
    stub.add_response("get_hosted_zone", {"HostedZone": {"Id": "/hostedzone/Z1", "Name": f"{ZONE}.",
                                                         "CallerReference": "r"}})
    existing = [{"Name": f"h{i}.{ZONE}.", "Type": "A", "TTL": 5, "ResourceRecords": [{"Value": EAST}]}
                for i in range(600)]
    for start in range(0, 600, 300):
        stub.add_response("list_resource_record_sets", {
            "ResourceRecordSets": existing[start:start + 300], "IsTruncated": start + 300 < 600, "MaxItems": "300",
            **({"NextRecordName": f"h{start + 300}.{ZONE}.", "NextRecordType": "A"} if start + 300 < 600 else {})})
    stub.add_response("change_resource_record_sets", {"ChangeInfo": {
        "Id": "/change/C1", "Status": "PENDING", "SubmittedAt": "2026-01-01T00:00:00Z"}})
    stub.add_client_error("change_resource_record_sets", service_error_code="AccessDenied", http_status_code=403)
    records = [{"name": f"h{i}.{ZONE}", "type": "A", "ttl": 5, "values": [WEST]} for i in range(600)]
    with stub, pytest.raises(_dns.DnsError) as info:
        _dns.switch(Route53Provider(hosted_zone_id="Z1", client=client), _dns.normalize_records(records, None, 5),
                    allow_split=True)
    stub.assert_no_pending_responses()
    assert "(batches 0..0 were applied; batch 1 and later were not)" in info.value.msg
    assert [b["status"] for b in info.value.details["batches"]] == ["applied", "failed"]
    assert info.value.details["before"][0]["values"] == [EAST]


def test_wait_is_insync_then_the_given_servers(r53: dict, lab_bind) -> None:
    """Route 53 wait: GetChange INSYNC, then every server in wait_servers must answer the new values
    (a real BIND stands in for an authoritative server here)."""
    bind = f"{lab_bind.host}:{lab_bind.port}"
    db = [{"name": f"db.{ZONE}", "type": "A", "ttl": 5, "values": [WEST]}]
    lagging = run_module("dns_records", r53_args(r53, records=db, wait=True, wait_servers=[bind], wait_timeout=1))
    assert lagging.failed and lagging.changed
    assert f"{bind}: db.{ZONE}. A serves {EAST} ttl=5, want {WEST} ttl=5" in lagging["msg"]
    assert lagging["batches"][0]["change_status"] == "INSYNC"
    back = [dict(db[0], values=[EAST])]  # what the BIND server serves
    result = run_module("dns_records", r53_args(r53, records=back, wait=True, wait_servers=[bind]))
    assert not result.failed and result.changed
    assert result["wait"] == [{"server": bind, "in_sync": True, "polls": 1, "serves": None}]


def test_unknown_profile_is_a_clear_error(r53: dict) -> None:
    args = r53_args(r53, records=switch_args(WEST), profile="no-such-profile")
    del args["access_key"], args["secret_key"]
    result = run_module("dns_records", args)
    assert result.failed and "cannot set up the Route 53 client" in result["msg"]
    assert "no-such-profile" in result["msg"]


def _listing_provider(r53: dict) -> tuple:
    """A Route53Provider on a real moto client, recording every ListResourceRecordSets call."""
    from ansible_collections.cloudphoenix.stack.plugins.module_utils._dns_route53 import Route53Provider

    provider = Route53Provider(zone=ZONE, client=r53["client"])
    provider.resolve_zone()
    calls = []
    original = provider._call

    def counted(operation, **kwargs):
        if operation == "list_resource_record_sets":
            calls.append(kwargs.get("StartRecordName"))
        return original(operation, **kwargs)

    provider._call = counted
    return provider, calls


def _create(r53: dict, names: list[str], address: str = EAST) -> None:
    for start in range(0, len(names), 400):
        r53["client"].change_resource_record_sets(HostedZoneId=r53["zone_id"], ChangeBatch={"Changes": [
            {"Action": "CREATE", "ResourceRecordSet": {"Name": name, "Type": "A", "TTL": 5,
                                                       "ResourceRecords": [{"Value": address}]}}
            for name in names[start:start + 400]]})


def test_large_reads_list_from_the_first_record_asked_and_stop_when_all_are_found(r53: dict) -> None:
    """600 records before the ones asked for: a read of 30 lists one page from the first of them, not the zone."""
    _create(r53, [f"a{i}.{ZONE}" for i in range(600)])
    wanted = [f"m{i}.{ZONE}" for i in range(30)]
    _create(r53, wanted)
    provider, calls = _listing_provider(r53)
    keys = [(f"{name}.", "A") for name in wanted]
    current = provider.read(keys)
    assert all(current[key]["values"] == [EAST] for key in keys)
    assert len(calls) == 1 and calls[0] is not None
    # some absent: the listing goes on to the zone's end, then lists the zone's head up to where it began
    calls.clear()
    more = [*keys, *((f"z{i}.{ZONE}.", "A") for i in range(5))]
    current = provider.read(more)
    assert all(current[key] is None for key in more[30:]) and current[keys[0]]["values"] == [EAST]
    assert calls[0] is not None and None in calls  # the head listing starts at the zone's beginning
    # and the module on top of it: 630 existing + new records switch with a correct `before`
    result = run_module("dns_records", r53_args(r53, records=[
        {"name": name, "type": "A", "ttl": 5, "values": [WEST]} for name in [*wanted, f"z0.{ZONE}"]]))
    assert not result.failed, result.get("msg")
    assert [b["state"] for b in result["before"]] == ["present"] * 30 + ["absent"]
    assert r53_records(r53)[(f"m29.{ZONE}", "A")] == (5, [WEST])


def test_a_record_listed_before_where_the_guessed_order_begins_is_still_found(r53: dict) -> None:
    """moto orders names as reversed strings ('test.phoenix.a-b' < 'test.phoenix.a.c'), unlike label by label:
    the record the guessed order puts first is not listed first. Its listing misses a-b; the head listing
    finds it."""
    names = [f"c.a.{ZONE}", f"a-b.{ZONE}", *(f"w{i}.{ZONE}" for i in range(25))]
    _create(r53, names)
    provider, calls = _listing_provider(r53)
    keys = [(f"{name}.", "A") for name in names]
    current = provider.read(keys)
    assert all(current[key] and current[key]["values"] == [EAST] for key in keys), current
    assert calls[0] == f"c.a.{ZONE}." and None in calls
