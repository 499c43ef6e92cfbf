"""The failover preflight's claim (compare-and-swap of the fencing record) against a real BIND9 with TSIG.

The claim is called directly, with the plan the preflight would have decided: two whole
failover runs only lose the claim this way when both read the record before either writes,
which a test cannot time. The module object is a small stand-in that records fail_json/exit
arguments as AnsibleModule would return them; the DNS server and the CAS are real.
"""

from __future__ import annotations

import pytest
from dns_support import EAST, ZONE, rfc_args, served, soa_serial

from tests.support.ansible import run_module
from tests.support.bind import BindServer

ACTIVE = f"_active.{ZONE}"


class Failed(Exception):
    def __init__(self, result: dict) -> None:
        super().__init__(result.get("msg"))
        self.result = result


class RecordingModule:
    """What claim() uses of AnsibleModule: check_mode, debug, fail_json with AnsibleModule's signature."""

    check_mode = False

    def debug(self, _msg: str) -> None:
        pass

    def fail_json(self, msg: str, **kwargs) -> None:
        raise Failed(dict(kwargs, msg=msg, failed=True))


def claim_params(bind: BindServer) -> dict:
    from ansible_collections.cloudphoenix.stack.plugins.modules import failover_preflight

    params = dict.fromkeys(failover_preflight.provider_argument_spec())
    params.update(rfc_args(bind), timeout=3.0, fencing_record=ACTIVE, claim_ttl=5, mode="failover",
                  endpoint_url=None, wait=False)
    return params


def test_a_claim_lost_after_the_plan_fails_clearly_and_changes_nothing(lab_bind: BindServer) -> None:
    from ansible_collections.cloudphoenix.stack.plugins.module_utils._dns_providers import build_provider
    from ansible_collections.cloudphoenix.stack.plugins.modules import failover_preflight

    params = claim_params(lab_bind)
    plan = {"msg": "ready: fail over from east to west",
            "claim": {"needed": True, "value": "region=west epoch=2 run=ctl/1/1", "expect": "region=east epoch=1"}}
    result = {"changed": False, "plan": plan, "msg": plan["msg"]}  # what main() holds when it claims
    # the other run's claim lands between this run's read and its write
    theirs = {"records": [{"name": ACTIVE, "type": "TXT", "ttl": 5, "values": ["region=west epoch=2 run=ctl/2/2"]}],
              "expect": [{"name": ACTIVE, "type": "TXT", "values": ["region=east epoch=1"]}]}
    assert run_module("dns_records", rfc_args(lab_bind, **theirs)).changed
    serial = soa_serial(lab_bind)

    with pytest.raises(Failed) as failed:
        failover_preflight.claim(RecordingModule(), build_provider(params), plan, params, result)

    out = failed.value.result
    assert out["msg"].startswith('claim lost: the fencing record now says "region=west epoch=2 run=ctl/2/2"')
    assert "another run is doing this failover" in out["msg"] and "it changed nothing" in out["msg"]
    assert out["conflict"] is True and out["changed"] is False and out["plan"] == plan
    assert lab_bind.secret not in repr(out)
    assert served(lab_bind, ACTIVE, "TXT") == (5, ['"region=west epoch=2 run=ctl/2/2"'])
    assert soa_serial(lab_bind) == serial
    assert served(lab_bind, f"api.{ZONE}") == (5, [EAST])


def test_a_claim_that_wins_reports_the_swap(lab_bind: BindServer) -> None:
    from ansible_collections.cloudphoenix.stack.plugins.module_utils._dns_providers import build_provider
    from ansible_collections.cloudphoenix.stack.plugins.modules import failover_preflight

    params = claim_params(lab_bind)
    plan = {"msg": "ready", "claim": {"needed": True, "value": "region=west epoch=2 run=ctl/1/1",
                                      "expect": "region=east epoch=1"}}
    result = {"changed": False, "msg": plan["msg"]}
    failover_preflight.claim(RecordingModule(), build_provider(params), plan, params, result)
    assert result["changed"] is True and result["claim"]["cas"] == "swapped"
    assert served(lab_bind, ACTIVE, "TXT") == (5, ['"region=west epoch=2 run=ctl/1/1"'])
