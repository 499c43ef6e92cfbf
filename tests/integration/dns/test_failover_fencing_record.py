"""failover_preflight and the fencing record's integrity, against a real BIND9 (TSIG) and a real PostgreSQL.

The module runs for real (run_module), with claim=true: west's database is a running primary, east's
does not answer, so everything but the fencing record allows a claim. A malformed record must stop
it with a message naming the record, changing nothing; every claim it writes raises the epoch by one.
"""

from __future__ import annotations

import os
import re
import socket

import dns.query
import dns.tsig
import dns.tsigkeyring
import dns.update
import pytest
from dns_support import EAST, WEST, ZONE, rfc_args, served, soa_serial

from tests.support.ansible import run_module
from tests.support.bind import BindServer, set_active
from tests.support.net import free_port
from tests.support.pg import PgCluster

ACTIVE = f"_active.{ZONE}"
PASSWORD = "preflight-secret"


@pytest.fixture
def west(pg_factory) -> PgCluster:
    cluster = pg_factory("west").initdb().start()
    cluster.execute(f"ALTER ROLE postgres PASSWORD '{PASSWORD}'")
    return cluster


def preflight(bind: BindServer, west: PgCluster, **extra):
    return run_module("failover_preflight", rfc_args(
        bind, timeout=3, target_region="west", fencing_record=ACTIVE, claim=True, login_password=PASSWORD,
        regions=[{"name": "east", "address": "127.0.0.1", "pg_port": free_port()},  # nothing listens there
                 {"name": "west", "address": west.host, "pg_port": west.port}],
        records=[{"name": f"api.{ZONE}", "type": "A", "ttl": 5, "values": [WEST]}], **extra))


@pytest.mark.parametrize("texts,why", [
    (["region=east epoch=x"], "epoch 'x' is not a whole number >= 0"),
    (["region=east epoch=-3"], "epoch '-3' is not a whole number >= 0"),
    (["region=east"], "no epoch= word"),
    (["epoch=4 run=ctl/1/1"], "no region= word"),
    (["region=east epoch=4 region=west"], "'region' appears twice"),
    (["region=east epoch=4", "region=west epoch=5"], None),
])
def test_a_malformed_fencing_record_stops_the_preflight_and_changes_nothing(lab_bind, west, texts, why):
    set_active(lab_bind, *texts)
    before = served(lab_bind, ACTIVE, "TXT")
    serial = soa_serial(lab_bind)

    out = preflight(lab_bind, west)

    assert out.failed and not out.changed and "plan" not in out.result and "claim" not in out.result
    if why:
        assert out["msg"] == (f"preflight: the fencing record {ACTIVE}. is malformed ({texts[0]!r}): {why}; it must "
                              "read region=<name> epoch=<n> [run=<owner>]; fix it by hand, with an epoch above the "
                              "last one; nothing was changed")
    else:
        assert out["msg"].startswith(f"preflight: the fencing record {ACTIVE}. is malformed: it holds 2 TXT records")
        assert out["dns"]["fencing"] == texts
    assert out["malformed"] is True
    assert served(lab_bind, ACTIVE, "TXT") == before
    assert soa_serial(lab_bind) == serial
    assert served(lab_bind, f"api.{ZONE}") == (5, [EAST])
    assert lab_bind.secret not in out.stdout


def test_an_absent_fencing_record_stops_the_preflight(lab_bind, west):
    keyring = dns.tsigkeyring.from_text({lab_bind.key_name: lab_bind.secret})
    update = dns.update.UpdateMessage(lab_bind.zone, keyring=keyring, keyalgorithm=dns.tsig.HMAC_SHA256)
    update.delete("_active", "TXT")
    assert dns.query.tcp(update, lab_bind.host, port=lab_bind.port, timeout=5).rcode() == 0
    serial = soa_serial(lab_bind)
    out = preflight(lab_bind, west)
    assert out.failed and f"the fencing record {ACTIVE}. does not exist" in out["msg"]
    assert served(lab_bind, ACTIVE, "TXT") == (None, []) and soa_serial(lab_bind) == serial


def interrupted_run() -> str:
    """A run on this controller whose process is gone (this pid, another start time)."""
    return f"{socket.gethostname().split('.')[0] or 'controller'}/{os.getpid()}/1"


@pytest.mark.parametrize("record,extra,status", [
    ("region=east epoch=5", {}, "ready"),  # a new run
    ("region=west epoch=5 run=other-ctl/9/1", {"takeover": True}, "resume"),  # another controller's claim
    (None, {}, "resume"),  # an interrupted run of this controller
])
def test_every_claim_writes_epoch_plus_one_compare_and_swapped(lab_bind, west, record, extra, status):
    record = record or f"region=west epoch=5 run={interrupted_run()}"
    set_active(lab_bind, record)
    serial = soa_serial(lab_bind)

    out = preflight(lab_bind, west, **extra)

    assert not out.failed, out["msg"]
    assert out["plan"]["status"] == status and out["plan"]["epoch"] == 6
    assert out["plan"]["claim"]["expect"] == record
    assert out.changed and out["claim"]["cas"] == "swapped"
    assert re.fullmatch(r"region=west epoch=6 run=[^ /]+/\d+/\d+", out["claim"]["value"])
    assert served(lab_bind, ACTIVE, "TXT") == (5, [f'"{out["claim"]["value"]}"'])
    assert soa_serial(lab_bind) > serial


def test_a_takeover_without_the_flag_changes_nothing(lab_bind, west):
    set_active(lab_bind, "region=west epoch=5 run=other-ctl/9/1")
    serial = soa_serial(lab_bind)
    out = preflight(lab_bind, west)
    assert out.failed and "failover_takeover=true" in out["msg"] and "epoch 5" in out["msg"]
    assert served(lab_bind, ACTIVE, "TXT") == (5, ['"region=west epoch=5 run=other-ctl/9/1"'])
    assert soa_serial(lab_bind) == serial
