"""The fencing record's integrity: one strict format for the runbook and the services, epochs only grow.

The runbook (plugins/module_utils/_failover.py) and the services (cloudphoenix_services.core.fencing)
each keep their own parser (service code never imports Ansible); the table below holds them together.
"""

from __future__ import annotations

import pytest
from ansible_collections.cloudphoenix.stack.plugins.module_utils import _failover as fo
from cloudphoenix_services.core import fencing

RECORD = "_active.phoenix.test."

# record content (as on the wire, unquoted) -> (region, epoch), or None when it is malformed
RECORDS = [
    ("region=east epoch=1", ("east", 1)),
    ("region=west epoch=12 run=h/1/2", ("west", 12)),
    ("epoch=3 region=west", ("west", 3)),
    ("region=west epoch=0", ("west", 0)),
    ("region=west epoch=007", ("west", 7)),
    ("region=west epoch=2 run=h/1/2 lease=9", ("west", 2)),  # unknown words: a later version may add some
    ("  region=west\tepoch=2  ", ("west", 2)),
    ("region=west epoch=123456789012345678901234567890", ("west", 123456789012345678901234567890)),
    ("", None),
    ("   ", None),
    ("garbage", None),
    ("region=east", None),
    ("epoch=1", None),
    ("run=h/1/2 epoch=1", None),
    ("region= epoch=1", None),
    ("region=east epoch=", None),
    ("region=east epoch=x", None),
    ("region=east epoch=-1", None),
    ("region=east epoch=+1", None),
    ("region=east epoch=1.5", None),
    ("region=east epoch=0x10", None),
    ("region=east epoch=1_000", None),  # int() would take it
    ("region=east epoch=\u00b2", None),  # str.isdigit() would take it
    ("region=east epoch=\u0661", None),  # an Arabic-Indic 1: isdigit() and int() would take it
    ("region=east epoch=1 epoch=2", None),
    ("region=east region=west epoch=1", None),
    ("region=east epoch=1 run=a run=b", None),
    ("region=east epoch=1 run=", None),
    ("region=east epoch=1 =x", None),
    ("region=east epoch=1 stray", None),
    ('"region=east epoch=1"', None),  # literal quotes in the content: not the record's words
]


def runbook_parse(text: str) -> tuple[str, int] | None:
    try:
        active = fo.parse_active(text)
    except fo.MalformedActive:
        return None
    return active["region"], active["epoch"]


def service_parse(text: str) -> tuple[str, int] | None:
    try:
        return fencing.parse_record(text)
    except fencing.MalformedRecord:
        return None


@pytest.mark.parametrize("text,expected", RECORDS)
def test_runbook_and_services_accept_and_reject_the_same_records(text, expected):
    assert runbook_parse(text) == expected
    assert service_parse(text) == expected


@pytest.mark.parametrize("values", [["region=east epoch=1", "region=west epoch=2"],
                                    ["region=east epoch=1", "region=east epoch=1 run=a"]])
def test_several_txt_records_are_malformed_for_both(values):
    with pytest.raises(fencing.MalformedRecord, match="2 TXT records"):
        fencing.parse_answer(values)
    with pytest.raises(fo.PreflightError) as stopped:
        fo.active_value([f'"{value}"' for value in values], RECORD)
    assert stopped.value.details["malformed"] and RECORD in stopped.value.msg
    assert "holds 2 TXT records" in stopped.value.msg and "nothing was changed" in stopped.value.msg


def test_one_or_no_txt_record():
    assert fencing.parse_answer(["region=east epoch=1"]) == ("east", 1)
    assert fo.active_value(['"region=east epoch=1"'], RECORD) == "region=east epoch=1"
    assert fo.active_value(['"region=east" " epoch=1"'], RECORD) == "region=east epoch=1"  # strings are joined
    assert fo.active_value([], RECORD) is None


def test_format_is_what_both_parse():
    text = fo.format_active("west", 7, "ctl/1/2")
    assert text == "region=west epoch=7 run=ctl/1/2"
    assert fo.parse_active(text) == {"region": "west", "epoch": 7, "run": "ctl/1/2"}
    assert fencing.parse_record(text) == ("west", 7)


# ------------------------------------------------------------------ the runbook's decision

API = ("api.phoenix.test.", "A")


def primary(**extra):
    return {"reachable": True, "role": "primary", "read_only": False, "current_lsn": "0/3000000", **extra}


def standby():
    return {"reachable": True, "role": "standby", "read_only": False, "receive_lsn": "0/3000000",
            "replay_lsn": "0/3000000"}


def decide(active, regions=None, dns=None, alive=False, takeover=False, owner="ctl/10/99"):
    return fo.decide("west", regions or {"east": primary(), "west": standby()}, active,
                     dns or {API: ("127.0.10.1",)}, {API: ("127.0.20.1",)}, {}, 1 << 20, False, owner,
                     owner_alive_fn=lambda run: alive, takeover=takeover, record=RECORD)


@pytest.mark.parametrize("text", [text for text, expected in RECORDS if expected is None])
def test_a_malformed_record_stops_the_run_naming_the_record(text):
    with pytest.raises(fo.PreflightError) as stopped:
        decide(text)
    msg = stopped.value.msg
    assert msg.startswith(f"the fencing record {RECORD} is malformed ({text!r}): ")
    assert "nothing was changed" in msg and stopped.value.details == {"malformed": True}


def test_the_reason_is_in_the_message():
    with pytest.raises(fo.PreflightError, match=r"epoch '-1' is not a whole number >= 0"):
        decide("region=east epoch=-1")
    with pytest.raises(fo.PreflightError, match=r"'epoch' appears twice"):
        decide("region=east epoch=1 epoch=2")
    with pytest.raises(fo.PreflightError, match=r"no region= word"):
        decide("epoch=1")


def test_an_absent_record_stops_the_run():
    with pytest.raises(fo.PreflightError, match=rf"the fencing record {RECORD} does not exist: which region is "
                                                r"active is unknown.*nothing was changed"):
        decide(None)


def test_a_new_run_claims_epoch_plus_one_on_the_value_read():
    plan = decide("region=east epoch=41 run=old/1/1")
    assert plan["status"] == "ready" and plan["epoch"] == 42
    assert plan["claim"] == {"needed": True, "value": "region=west epoch=42 run=ctl/10/99",
                             "expect": "region=east epoch=41 run=old/1/1"}


def test_resuming_an_interrupted_run_claims_epoch_plus_one():
    plan = decide("region=west epoch=5 run=ctl/9/1", alive=False)
    assert plan["status"] == "resume" and plan["epoch"] == 6
    assert plan["claim"] == {"needed": True, "value": "region=west epoch=6 run=ctl/10/99",
                             "expect": "region=west epoch=5 run=ctl/9/1"}
    assert plan["msg"].startswith("continuing the failover to west (epoch 5 -> 6): claimed by an interrupted run")


def test_taking_over_another_controllers_claim_claims_epoch_plus_one():
    plan = decide("region=west epoch=5 run=other/9/1", alive=None, takeover=True)
    assert plan["status"] == "resume" and plan["epoch"] == 6
    assert plan["claim"]["value"] == "region=west epoch=6 run=ctl/10/99"
    assert plan["claim"]["expect"] == "region=west epoch=5 run=other/9/1"


def test_a_record_naming_the_target_without_a_run_is_claimed_at_epoch_plus_one():
    plan = decide("region=west epoch=5")
    assert plan["status"] == "resume" and plan["claim"]["needed"]
    assert plan["claim"]["value"] == "region=west epoch=6 run=ctl/10/99"


def test_no_write_no_new_epoch():
    own = decide("region=west epoch=5 run=ctl/10/99", regions={"east": primary(read_only=True), "west": standby()})
    assert own["status"] == "resume" and not own["claim"]["needed"] and own["epoch"] == 5
    assert own["msg"].startswith("continuing the failover to west (epoch 5): ")
    done = decide("region=west epoch=5 run=ctl/9/1", regions={"east": {"reachable": False}, "west": primary()},
                  dns={API: ("127.0.20.1",)})
    assert done["status"] == "done" and done["epoch"] == 5 and not done["claim"]["needed"]
