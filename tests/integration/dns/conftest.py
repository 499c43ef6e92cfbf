"""Fixtures for the dns_records tests: a lab-like BIND zone and a lab-like Route 53 zone (moto).

No __init__.py in this folder on purpose: a package named `dns` would shadow dnspython.
Helpers live in dns_support.py.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from dns_support import EAST, LAB_RECORDS, ZONE, PreconfiguredBind, write_pair_config

from tests.support.bind import BindServer
from tests.support.moto import MotoServer


@pytest.fixture
def lab_bind() -> Iterator[BindServer]:
    """A fresh named (free port, TSIG hmac-sha256) serving phoenix.test with the lab's records, TTL 5."""
    base = Path(tempfile.mkdtemp(prefix="cp-bind-dns-", dir="/tmp"))
    server = BindServer(base_dir=base, records=LAB_RECORDS).start()
    yield server
    server.destroy()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def r53(moto: MotoServer) -> dict:
    """A Route 53 hosted zone phoenix.test in moto with the lab's records; returns ids and a client."""
    client = moto.client("route53")
    zone_id = client.create_hosted_zone(Name=ZONE, CallerReference="dns-tests")["HostedZone"]["Id"].split("/")[-1]
    changes = [
        {"Action": "CREATE", "ResourceRecordSet": {"Name": f"{name}.{ZONE}", "Type": rtype, "TTL": 5,
                                                   "ResourceRecords": [{"Value": value}]}}
        for name, rtype, value in [("api", "A", EAST), ("docs", "A", EAST), ("db", "A", EAST),
                                   ("_active", "TXT", '"region=east epoch=1"')]
    ]
    client.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": changes})
    return {"client": client, "zone_id": zone_id, "endpoint_url": moto.endpoint_url}


@pytest.fixture
def bind_pair() -> Iterator[tuple[BindServer, BindServer]]:
    """A real primary and secondary of phoenix.test (127.0.0.1, two free ports): the primary NOTIFYs the
    secondary, which transfers the zone. (Other loopback addresses are not interface addresses here,
    so named would not listen on them: the two servers differ by port, and tests name them in
    wait_servers.)"""
    primary = PreconfiguredBind(base_dir=Path(tempfile.mkdtemp(prefix="cp-bind-primary-", dir="/tmp")),
                                records=LAB_RECORDS)
    secondary = PreconfiguredBind(base_dir=Path(tempfile.mkdtemp(prefix="cp-bind-secondary-", dir="/tmp")))
    write_pair_config(primary, secondary)
    primary.start()
    secondary.start()
    yield primary, secondary
    secondary.destroy()
    primary.destroy()
