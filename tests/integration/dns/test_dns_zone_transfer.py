"""Reading and waiting with one zone transfer (AXFR) for large record sets, against a real BIND with TSIG:
the key-only transfer, the fallback to per-name queries when the transfer is refused or not worth it, and
the TSIG check of the transfer's answer messages."""

from __future__ import annotations

import shutil
import socket
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from ansible_collections.cloudphoenix.stack.plugins.module_utils import _dns
from ansible_collections.cloudphoenix.stack.plugins.module_utils import _dns_rfc2136 as rfc
from dns_support import EAST, LAB_RECORDS, WEST, ZONE, rfc_args, served

from tests.support.ansible import run_module
from tests.support.bind import BindServer

MANY = 60  # over rfc.AXFR_MIN_KEYS


def _bind(zone_options: str) -> Iterator[BindServer]:
    base = Path(tempfile.mkdtemp(prefix="cp-bind-xfr-", dir="/tmp"))
    server = BindServer(base_dir=base, records=LAB_RECORDS, zone_options=zone_options)
    server.zone_options = zone_options.replace("KEY", server.key_name)
    server.start()
    yield server
    server.destroy()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def key_only_bind() -> Iterator[BindServer]:
    """Zone transfers only for holders of the TSIG key (a common production setting)."""
    yield from _bind('  allow-transfer { key "KEY"; };')


@pytest.fixture
def no_transfer_bind() -> Iterator[BindServer]:
    yield from _bind("  allow-transfer { none; };")


def _records(address: str, count: int = MANY) -> list[dict]:
    return [{"name": f"x{i}.{ZONE}", "type": "A", "ttl": 5, "values": [address]} for i in range(count)]


def _provider(bind: BindServer, keyed: bool = True) -> rfc.Rfc2136Provider:
    if keyed:
        return rfc.Rfc2136Provider(bind.host, bind.port, ZONE, bind.key_name, bind.secret)
    return rfc.Rfc2136Provider(bind.host, bind.port, ZONE)


def test_large_switch_reads_and_waits_with_one_signed_transfer(key_only_bind: BindServer) -> None:
    first = run_module("dns_records", rfc_args(key_only_bind, records=_records(EAST), wait=True))
    assert not first.failed, first.get("msg")
    assert [w["via"] for w in first["wait"]] == ["transfer"] and first["wait"][0]["in_sync"]
    assert all(b["state"] == "absent" for b in first["before"])
    second = run_module("dns_records", rfc_args(key_only_bind, records=_records(WEST), wait=True))
    assert not second.failed, second.get("msg")
    assert second["before"] == [{"name": f"x{i}.{ZONE}", "type": "A", "ttl": 5, "values": [EAST], "state": "present"}
                                for i in range(MANY)]
    assert second["wait"][0]["via"] == "transfer"
    assert served(key_only_bind, f"x{MANY - 1}.{ZONE}") == (5, [WEST])
    # the read was a transfer too, and it needed the key: without it the server refuses
    keys = [(f"x{i}.{ZONE}.", "A") for i in range(MANY)]
    keyed = _provider(key_only_bind)
    assert keyed.read(keys)[keys[0]]["values"] == [WEST] and keyed.transfer.transfers and not keyed.transfer.refused
    unsigned = _provider(key_only_bind, keyed=False)
    assert unsigned.read(keys) == keyed.read(keys)  # same answer, by per-name queries
    assert "REFUSED" in unsigned.transfer.refused[unsigned.server] and not unsigned.transfer.transfers


def test_small_sets_are_read_per_name(key_only_bind: BindServer) -> None:
    result = run_module("dns_records", rfc_args(key_only_bind, records=_records(WEST, count=3), wait=True))
    assert not result.failed and result["wait"][0]["via"] == "queries"


def test_refused_transfer_falls_back_to_per_name_queries(no_transfer_bind: BindServer) -> None:
    result = run_module("dns_records", rfc_args(no_transfer_bind, records=_records(WEST), wait=True))
    assert not result.failed, result.get("msg")
    assert result["wait"][0]["via"] == "queries" and result["wait"][0]["in_sync"]
    assert served(no_transfer_bind, f"x0.{ZONE}") == (5, [WEST])
    again = run_module("dns_records", rfc_args(no_transfer_bind, records=_records(WEST)))
    assert not again.failed and not again.changed  # the per-name read saw the change
    provider = _provider(no_transfer_bind)
    keys = [(f"x{i}.{ZONE}.", "A") for i in range(MANY)]
    assert provider.read(keys)[keys[0]]["values"] == [WEST]
    assert "REFUSED" in provider.transfer.refused[provider.server]


def test_wait_names_a_lagging_server_read_by_transfer(key_only_bind: BindServer) -> None:
    """A second server that never gets the change: the timeout message says what it serves, as with queries."""
    stale = BindServer(base_dir=Path(tempfile.mkdtemp(prefix="cp-bind-xfr-stale-", dir="/tmp")),
                       records="".join(f"x{i} IN A {EAST}\n" for i in range(MANY)))
    stale.start()
    try:
        servers = [f"{key_only_bind.host}:{key_only_bind.port}", f"{stale.host}:{stale.port}"]
        result = run_module("dns_records", rfc_args(key_only_bind, records=_records(WEST), wait=True,
                                                    wait_servers=servers, wait_timeout=1.5))
    finally:
        stale.destroy()
    assert result.failed and result.changed
    # the stale server does not know our key: it refuses the signed transfer and is asked per name
    assert {w["server"]: (w["in_sync"], w["via"]) for w in result["wait"]} == {
        servers[0]: (True, "transfer"), servers[1]: (False, "queries")}
    assert f"{servers[1]}: x0.{ZONE}. A serves {EAST} ttl=5, want {WEST} ttl=5" in result["msg"]
    assert f"and {MANY - 5} more" in result["msg"]


def test_a_zone_far_larger_than_the_records_asked_is_not_transferred(key_only_bind: BindServer) -> None:
    provider = _provider(key_only_bind)
    with pytest.raises(rfc.TransferRefused, match="too many"):
        rfc.transfer_zone(provider.server, provider.zone, [(f"api.{ZONE}.", "A")], key_name=provider.key_name,
                          key=provider.keyring[provider.key_name], max_rrs=3)
    provider.transfer.min_keys, provider.transfer.rrs_base, provider.transfer.rrs_per_key = 1, 0, 2
    assert provider.read([(f"api.{ZONE}.", "A")])[(f"api.{ZONE}.", "A")]["values"] == [EAST]
    assert "too many" in provider.transfer.refused[provider.server]


def _raw_transfer(bind: BindServer, provider: rfc.Rfc2136Provider) -> tuple[int, bytes, list[bytes]]:
    msg_id = 4242
    wire, mac = rfc.axfr_request(provider.zone, msg_id, provider.key_name, provider.keyring[provider.key_name])
    messages = []
    with socket.create_connection((bind.host, bind.port), timeout=3) as sock:
        sock.sendall(struct.pack("!H", len(wire)) + wire)
        soas = 0
        while soas < 2:
            (length,) = struct.unpack("!H", _dns._recv_exact(sock, 2))
            message = _dns._recv_exact(sock, length)
            messages.append(message)
            soas += sum(1 for _n, rdtype, _t, _r in _dns._parse_answer(message)[1].rrs if rdtype == 6)
    return msg_id, mac, messages


def test_a_tampered_signed_transfer_is_an_error_not_an_answer(key_only_bind: BindServer) -> None:
    provider = _provider(key_only_bind)
    key = provider.keyring[provider.key_name]
    keys = [(f"api.{ZONE}.", "A")]
    msg_id, mac, messages = _raw_transfer(key_only_bind, provider)

    def read(wires: list[bytes]) -> dict:
        reader = rfc.TransferReader(provider.zone, keys, msg_id, key=key, request_mac=mac)
        for wire in wires:
            reader.feed(wire)
        assert reader.done
        return reader.result()

    assert read(messages)[keys[0]]["values"] == [EAST]
    address = socket.inet_aton(EAST)
    tampered = [m.replace(address, socket.inet_aton(WEST), 1) for m in messages]
    assert tampered != messages
    with pytest.raises(_dns.DnsError, match="does not verify"):
        read(tampered)
    unsigned = [m[:10] + b"\0\0" + m[12:m.rfind(provider.key_name.to_wire())] for m in messages]
    with pytest.raises(_dns.DnsError, match="without a signature"):
        read(unsigned)
