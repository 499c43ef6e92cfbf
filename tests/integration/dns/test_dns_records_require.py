"""dns_records `require`: a change applied only while records it does not change (the fencing record) hold given
values, against a real BIND 9 with TSIG and a real moto_server.

The takeover between the module's read and its write is arranged in-process: a provider whose read lets another
writer (a real dns_records module run) take the fencing record over right after the read, so the write that
follows meets a server where the requirement no longer holds. Everything is read back independently: plain
dnspython queries for BIND (values, TTLs and the SOA serial), the Route 53 API for moto.
"""

from __future__ import annotations

import pytest
from dns_support import EAST, WEST, ZONE, r53_args, r53_records, rfc_args, served, soa_serial, switch_args

from tests.support.ansible import run_module
from tests.support.bind import BindServer
from tests.support.moto import MOTO_ENV

ACTIVE = f"_active.{ZONE}"
LAB_CLAIM = "region=east epoch=1"  # what the lab zone holds
MINE = "region=west epoch=2 run=ctl/1/1"
THEIRS = "region=west epoch=3 run=ctl/2/2"


def require(value: str = LAB_CLAIM) -> list[dict]:
    return [{"name": ACTIVE, "type": "TXT", "values": [value]}]


def takeover(value: str, expect: str) -> dict:
    """Another run's claim: compare-and-swap of the fencing record."""
    return {"records": [{"name": ACTIVE, "type": "TXT", "ttl": 5, "values": [value]}],
            "expect": [{"name": ACTIVE, "type": "TXT", "values": [expect]}]}


def bind_state(bind: BindServer) -> dict:
    return {"api": served(bind, f"api.{ZONE}"), "docs": served(bind, f"docs.{ZONE}"),
            "db": served(bind, f"db.{ZONE}"), "active": served(bind, ACTIVE, "TXT"), "serial": soa_serial(bind)}


def taken_over_after_read(base: type, other_writer):
    """A provider class of `base` whose first read is followed by `other_writer()` (a real write by someone else)."""

    class TakenOverAfterRead(base):
        reads = 0

        def read(self, keys):
            got = super().read(keys)
            self.reads += 1
            if self.reads == 1:
                other_writer()
            return got

    return TakenOverAfterRead


# --------------------------------------------------------------------------- BIND (RFC 2136, TSIG)

def test_guarded_switch_applies_while_the_claim_holds_and_a_rerun_changes_nothing(lab_bind: BindServer) -> None:
    before = bind_state(lab_bind)
    result = run_module("dns_records", rfc_args(lab_bind, records=switch_args(WEST), require=require(), wait=True))
    assert not result.failed, result.result
    assert result.changed and result["requirement"] == "held" and result["cas"] is None
    assert [c["name"] for c in result["changes"]] == [f"api.{ZONE}", f"docs.{ZONE}"]
    after = bind_state(lab_bind)
    assert after["api"] == (5, [WEST]) and after["docs"] == (5, [WEST]) and after["db"] == before["db"]
    assert after["active"] == before["active"] == (5, [f'"{LAB_CLAIM}"'])  # required, not touched
    assert after["serial"] == before["serial"] + 1  # one UPDATE

    again = run_module("dns_records", rfc_args(lab_bind, records=switch_args(WEST), require=require(), wait=True))
    assert not again.failed and not again.changed and again["requirement"] == "held" and again["batches"] == []
    assert bind_state(lab_bind) == after


def test_a_takeover_before_the_call_fails_it_early_and_nothing_changes(lab_bind: BindServer) -> None:
    assert run_module("dns_records", rfc_args(lab_bind, **takeover(THEIRS, LAB_CLAIM))).changed
    before = bind_state(lab_bind)
    result = run_module("dns_records", rfc_args(lab_bind, records=switch_args(WEST), require=require()))
    assert result.failed and not result.changed
    assert result["requirement_failed"] is True and result["conflict"] is False
    assert result["msg"] == (f'requirement not met, nothing changed: {ACTIVE}. TXT is "{THEIRS}" ttl=5, '
                             f'required "{LAB_CLAIM}"')
    assert {"name": ACTIVE, "type": "TXT", "ttl": 5, "values": [f'"{THEIRS}"'], "state": "present"} \
        in result["current"]
    assert "batches" not in result.result  # decided on the read: never planned, never sent
    assert bind_state(lab_bind) == before


def test_a_lost_claim_fails_even_when_the_records_are_already_as_wanted(lab_bind: BindServer) -> None:
    """The requirement is the caller's premise: checked also when nothing would change (no 'already done')."""
    assert run_module("dns_records", rfc_args(lab_bind, **takeover(THEIRS, LAB_CLAIM))).changed
    before = bind_state(lab_bind)
    result = run_module("dns_records", rfc_args(lab_bind, records=switch_args(EAST), require=require()))
    assert result.failed and result["requirement_failed"] is True and not result.changed
    assert bind_state(lab_bind) == before


def test_a_takeover_between_read_and_write_is_refused_by_the_server(lab_bind: BindServer) -> None:
    """The read-compare passes; another run claims; BIND refuses the UPDATE on its prerequisite (NXRRSET)."""
    from ansible_collections.cloudphoenix.stack.plugins.module_utils import _dns
    from ansible_collections.cloudphoenix.stack.plugins.module_utils._dns_rfc2136 import Rfc2136Provider

    states: list[dict] = []

    def other_run() -> None:
        assert run_module("dns_records", rfc_args(lab_bind, **takeover(THEIRS, LAB_CLAIM))).changed
        states.append(bind_state(lab_bind))

    provider = taken_over_after_read(Rfc2136Provider, other_run)(
        lab_bind.host, lab_bind.port, ZONE, lab_bind.key_name, lab_bind.secret)
    desired = _dns.normalize_records([*switch_args(WEST), {"name": f"db.{ZONE}", "type": "A", "ttl": 5,
                                                           "values": [WEST]}], ZONE, 5)
    with pytest.raises(_dns.RequirementError) as info:
        _dns.switch(provider, desired, require=_dns.normalize_require(require(), ZONE), retry_timeout=5)
    err = info.value
    assert err.msg.startswith("requirement not met, nothing changed: the required records changed after they were "
                              f'read; {ACTIVE}. TXT is "{THEIRS}" ttl=5, required "{LAB_CLAIM}"')
    assert "NXRRSET" in err.msg
    assert err.details["batches"] == [{"index": 0, "changes": 3, "status": "requirement_failed"}]
    assert [r["values"] for r in err.details["current"] if r["name"] == ACTIVE] == [[f'"{THEIRS}"']]
    # nothing of the refused UPDATE landed: the zone is exactly as the other run left it (same serial)
    [after_takeover] = states
    assert after_takeover["api"] == (5, [EAST]) and after_takeover["active"] == (5, [f'"{THEIRS}"'])
    assert bind_state(lab_bind) == after_takeover


def test_a_takeover_between_read_and_write_of_a_guarded_swap_is_a_failed_requirement(lab_bind: BindServer) -> None:
    """With expect and require both in the UPDATE, the server's refusal is put on the record that moved."""
    from ansible_collections.cloudphoenix.stack.plugins.module_utils import _dns
    from ansible_collections.cloudphoenix.stack.plugins.module_utils._dns_rfc2136 import Rfc2136Provider

    def other_run() -> None:
        assert run_module("dns_records", rfc_args(lab_bind, **takeover(THEIRS, LAB_CLAIM))).changed

    provider = taken_over_after_read(Rfc2136Provider, other_run)(
        lab_bind.host, lab_bind.port, ZONE, lab_bind.key_name, lab_bind.secret)
    desired = _dns.normalize_records(switch_args(WEST), ZONE, 5)
    expect = _dns.normalize_expect([{"name": f"api.{ZONE}", "type": "A", "values": [EAST]},
                                    {"name": f"docs.{ZONE}", "type": "A", "values": [EAST]}], ZONE)
    with pytest.raises(_dns.RequirementError, match="NXRRSET"):
        _dns.switch(provider, desired, expect=expect, require=_dns.normalize_require(require(), ZONE),
                    retry_timeout=5)
    assert served(lab_bind, f"api.{ZONE}") == (5, [EAST]) and served(lab_bind, f"docs.{ZONE}") == (5, [EAST])


def test_check_mode_reports_the_requirement_and_sends_nothing(lab_bind: BindServer) -> None:
    before = bind_state(lab_bind)
    holds = run_module("dns_records", rfc_args(lab_bind, records=switch_args(WEST), require=require()),
                       check=True, diff=True)
    assert not holds.failed and holds.changed and holds["requirement"] == "held"
    assert holds["batches"] == [{"index": 0, "changes": 2, "status": "planned"}]
    assert holds["diff"]["after"] == f"api.{ZONE}. 5 IN A {WEST}\ndocs.{ZONE}. 5 IN A {WEST}\n"
    broken = run_module("dns_records", rfc_args(lab_bind, records=switch_args(WEST), require=require(MINE)),
                        check=True)
    assert broken.failed and broken["requirement_failed"] is True and not broken.changed
    assert f'required "{MINE}"' in broken["msg"]
    assert bind_state(lab_bind) == before


@pytest.mark.parametrize(("extra", "message"), [
    ({"records": switch_args(WEST), "require": [*require(), {"name": f"api.{ZONE}", "type": "A", "values": [EAST]}]},
     f"require: api.{ZONE}. A is also in records"),
    ({"records": switch_args(WEST), "expect": require()},
     f"expect: {ACTIVE}. TXT is not in records"),
    ({"records": switch_args(WEST), "require": [{"name": ACTIVE, "type": "TXT", "values": []}]},
     "require[0]: values must list at least one value"),
    ({"records": switch_args(WEST), "require": [{"name": "_active.elsewhere.test", "type": "TXT", "values": ["x"]}]},
     "require[0]: _active.elsewhere.test. is not in zone phoenix.test."),
])
def test_guard_mix_ups_are_refused_before_anything_is_sent(lab_bind: BindServer, extra: dict, message: str) -> None:
    before = bind_state(lab_bind)
    result = run_module("dns_records", rfc_args(lab_bind, **extra))
    assert result.failed and not result.changed
    assert message in result["msg"], result["msg"]
    assert bind_state(lab_bind) == before


def test_the_tsig_secret_is_never_in_the_output(lab_bind: BindServer) -> None:
    runs = [
        run_module("dns_records", rfc_args(lab_bind, records=switch_args(WEST), require=require()), diff=True),
        run_module("dns_records", rfc_args(lab_bind, records=switch_args(EAST), require=require()), check=True),
        run_module("dns_records", rfc_args(lab_bind, records=switch_args(EAST), require=require(MINE))),
    ]
    assert [r.failed for r in runs] == [False, False, True]
    for run in runs:
        assert lab_bind.secret not in run.stdout + run.stderr
        assert run["invocation"]["module_args"]["key_secret"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"


# --------------------------------------------------------------------------- Route 53 (moto_server)
# moto cannot emulate the Route 53 guard (DELETE of the exact record set + CREATE of the identical one):
#  - it checks a DELETE against its journal of past writes, not against the current record set, so a takeover
#    between read and write to a value moto once held is not refused (the race is tested on BIND above);
#  - it refuses a CREATE identical to a CREATE in its journal while the record exists, before applying the
#    DELETE in front of it ("already exists"), where real Route 53 applies the batch in order.
# So these tests let the fencing record be written the way moto accepts the guard for (an UPSERT: a plain
# dns_records call), assert the batch on the wire, and test the refusal moto does produce (all or nothing).


def _counting_provider(r53: dict):
    """A Route53Provider on a real moto client that records the write calls it makes."""
    import boto3
    from ansible_collections.cloudphoenix.stack.plugins.module_utils._dns_route53 import Route53Provider

    client = boto3.client("route53", endpoint_url=r53["endpoint_url"], region_name="us-east-1",
                          aws_access_key_id=MOTO_ENV["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=MOTO_ENV["AWS_SECRET_ACCESS_KEY"])
    writes: list[dict] = []
    client.meta.events.register("provide-client-params.route53.ChangeResourceRecordSets",
                                lambda params, **_: writes.append(params))
    return Route53Provider(zone=ZONE, client=client), writes


def _claimed(r53: dict, value: str = MINE) -> dict:
    """This run's claim in the fencing record, written with an UPSERT (no expect); returns the records after."""
    assert run_module("dns_records", r53_args(r53, records=[{"name": ACTIVE, "type": "TXT", "ttl": 5,
                                                             "values": [value]}])).changed
    records = r53_records(r53)
    assert records[(ACTIVE, "TXT")] == (5, [f'"{value}"'])
    return records


def test_route53_guard_is_a_delete_and_identical_create_in_the_same_batch(r53: dict) -> None:
    from ansible_collections.cloudphoenix.stack.plugins.module_utils import _dns

    _claimed(r53)
    provider, writes = _counting_provider(r53)
    outcome = _dns.switch(provider, _dns.normalize_records(switch_args(WEST), ZONE, 5),
                          require=_dns.normalize_require(require(MINE), ZONE))
    assert outcome["changed"] and outcome["requirement"] == "held"
    [call] = writes
    assert [(c["Action"], c["ResourceRecordSet"]["Name"], c["ResourceRecordSet"]["TTL"],
             c["ResourceRecordSet"]["ResourceRecords"]) for c in call["ChangeBatch"]["Changes"]] == [
        ("DELETE", ACTIVE, 5, [{"Value": f'"{MINE}"'}]),
        ("CREATE", ACTIVE, 5, [{"Value": f'"{MINE}"'}]),
        ("UPSERT", f"api.{ZONE}", 5, [{"Value": WEST}]),
        ("UPSERT", f"docs.{ZONE}", 5, [{"Value": WEST}]),
    ]
    records = r53_records(r53)
    assert records[(f"api.{ZONE}", "A")] == (5, [WEST]) and records[(f"docs.{ZONE}", "A")] == (5, [WEST])
    assert records[(ACTIVE, "TXT")] == (5, [f'"{MINE}"'])


def test_route53_module_applies_while_the_claim_holds_and_a_rerun_sends_nothing(r53: dict) -> None:
    _claimed(r53)
    result = run_module("dns_records", r53_args(r53, records=switch_args(WEST), require=require(MINE), wait=True))
    assert not result.failed, result.result
    assert result.changed and result["requirement"] == "held" and result["batches"][0]["actions"] == 4
    after = r53_records(r53)
    assert after[(f"api.{ZONE}", "A")] == (5, [WEST]) and after[(ACTIVE, "TXT")] == (5, [f'"{MINE}"'])
    again = run_module("dns_records", r53_args(r53, records=switch_args(WEST), require=require(MINE), wait=True))
    assert not again.failed and not again.changed and again["requirement"] == "held" and again["batches"] == []
    assert r53_records(r53) == after


def test_route53_takeover_before_the_call_fails_early_and_sends_nothing(r53: dict) -> None:
    from ansible_collections.cloudphoenix.stack.plugins.module_utils import _dns

    _claimed(r53)
    assert run_module("dns_records", r53_args(r53, **takeover(THEIRS, MINE))).changed
    before = r53_records(r53)
    result = run_module("dns_records", r53_args(r53, records=switch_args(WEST), require=require(MINE)))
    assert result.failed and result["requirement_failed"] is True and not result.changed
    assert f'{ACTIVE}. TXT is "{THEIRS}" ttl=5, required "{MINE}"' in result["msg"]
    assert MOTO_ENV["AWS_SECRET_ACCESS_KEY"] not in result.stdout + result.stderr
    assert r53_records(r53) == before
    provider, writes = _counting_provider(r53)  # the same decision in-process: no write call at all
    with pytest.raises(_dns.RequirementError):
        _dns.switch(provider, _dns.normalize_records(switch_args(WEST), ZONE, 5),
                    require=_dns.normalize_require(require(MINE), ZONE))
    assert writes == [] and r53_records(r53) == before


def test_route53_check_mode_reports_the_requirement_and_changes_nothing(r53: dict) -> None:
    before = _claimed(r53)
    holds = run_module("dns_records", r53_args(r53, records=switch_args(WEST), require=require(MINE)), check=True)
    assert not holds.failed and holds.changed and holds["requirement"] == "held"
    broken = run_module("dns_records", r53_args(r53, records=switch_args(WEST), require=require(THEIRS)),
                        check=True)
    assert broken.failed and broken["requirement_failed"] is True
    assert r53_records(r53) == before


def test_what_moto_enforces_a_refused_guarded_batch_applies_none_of_its_changes(r53: dict) -> None:
    """The fencing record as the lab zone holds it was written by a CREATE: moto refuses the guard's identical
    re-CREATE ("already exists") before applying anything. The module fails closed (requirement_failed, the
    server's words, and that the required record holds its value again) and none of the batch's changes land."""
    before = r53_records(r53)
    result = run_module("dns_records", r53_args(r53, records=switch_args(WEST), require=require()))
    assert result.failed and result["requirement_failed"] is True and not result.changed
    assert "already exists" in result["msg"] and "hold their values again now" in result["msg"]
    assert result["batches"] == [{"index": 0, "changes": 2, "status": "requirement_failed"}]
    assert r53_records(r53) == before  # api/docs still east, the fencing record as it was
