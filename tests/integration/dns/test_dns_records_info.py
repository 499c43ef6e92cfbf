"""dns_records_info against real BIND servers (and moto): values and TTL per authoritative server, SOA serial,
unreachable servers reported without failing."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from dns_support import EAST, LAB_RECORDS, WEST, ZONE, r53_args, rfc_args, soa_serial, switch_args

from tests.support.ansible import run_module
from tests.support.bind import BindServer
from tests.support.net import free_port

RECORDS = [{"name": f"api.{ZONE}", "type": "A"}, {"name": f"_active.{ZONE}", "type": "TXT"},
           {"name": f"gone.{ZONE}", "type": "A"}]
EXPECTED = [
    {"name": f"api.{ZONE}", "type": "A", "ttl": 5, "values": [EAST], "state": "present"},
    {"name": f"_active.{ZONE}", "type": "TXT", "ttl": 5, "values": ['"region=east epoch=1"'], "state": "present"},
    {"name": f"gone.{ZONE}", "type": "A", "values": [], "state": "absent"},
]


@pytest.fixture
def second_bind():
    server = BindServer(base_dir=Path(tempfile.mkdtemp(prefix="cp-bind-second-", dir="/tmp")), records=LAB_RECORDS)
    server.start()
    yield server
    server.destroy()


def test_values_ttl_and_serial_from_the_zone_ns(lab_bind: BindServer) -> None:
    result = run_module("dns_records_info", rfc_args(lab_bind, records=RECORDS))
    assert not result.failed and not result.changed, result.result
    assert result["records"] == EXPECTED
    [server] = result["servers"]  # the NS (ns1 -> 127.0.0.1) is the primary itself
    assert server["server"] == f"{lab_bind.host}:{lab_bind.port}" and server["reachable"] and server["error"] is None
    assert server["soa_serial"] == soa_serial(lab_bind)
    assert server["records"] == EXPECTED
    assert result["consistent"] is True


def test_each_server_reported_and_an_unreachable_one_is_not_fatal(lab_bind: BindServer, second_bind) -> None:
    assert run_module("dns_records", rfc_args(lab_bind, records=switch_args(WEST))).changed
    dead = f"127.0.0.1:{free_port()}"
    servers = [f"{lab_bind.host}:{lab_bind.port}", f"{second_bind.host}:{second_bind.port}", dead]
    result = run_module("dns_records_info", rfc_args(lab_bind, records=RECORDS[:1], servers=servers))
    assert not result.failed, result.result
    by_server = {s["server"]: s for s in result["servers"]}
    assert by_server[servers[0]]["records"][0]["values"] == [WEST]
    assert by_server[servers[0]]["soa_serial"] == 2
    assert by_server[servers[1]]["records"][0]["values"] == [EAST]  # a lagging server, as it is
    assert by_server[servers[1]]["soa_serial"] == 1
    assert by_server[dead]["reachable"] is False and "unreachable" in by_server[dead]["error"]
    assert by_server[dead]["records"] == []
    assert result["records"][0]["values"] == [WEST]
    assert result["consistent"] is False


def test_primary_down_is_reported_not_fatal(lab_bind: BindServer) -> None:
    lab_bind.stop()
    result = run_module("dns_records_info", rfc_args(lab_bind, records=RECORDS, timeout=1))
    assert not result.failed, result.result
    assert result["records"] == [] and "unreachable" in result["source_error"]
    assert result["servers"][0]["reachable"] is False
    assert result["consistent"] is False


def test_a_server_not_serving_the_zone_is_reported(lab_bind: BindServer) -> None:
    result = run_module("dns_records_info", rfc_args(lab_bind, zone="other.test",
                                                     records=[{"name": "api.other.test", "type": "A"}]))
    assert not result.failed
    assert "does not serve zone other.test." in result["servers"][0]["error"]
    assert result["servers"][0]["reachable"] is True and result["consistent"] is False


def test_route53_values_from_the_api_and_given_servers(r53: dict, lab_bind: BindServer) -> None:
    result = run_module("dns_records_info", r53_args(r53, records=RECORDS,
                                                     servers=[f"{lab_bind.host}:{lab_bind.port}"]))
    assert not result.failed, result.result
    assert result["records"] == EXPECTED
    assert result["servers"][0]["records"] == EXPECTED  # the BIND zone holds the same lab records
    assert result["consistent"] is True


def test_invalid_record_name_is_rejected(lab_bind: BindServer) -> None:
    result = run_module("dns_records_info", rfc_args(lab_bind, records=[{"name": "bad name.phoenix.test",
                                                                         "type": "A"}]))
    assert result.failed and "may only hold letters" in result["msg"]
