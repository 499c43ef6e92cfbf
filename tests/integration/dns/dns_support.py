"""Helpers for the dns_records tests (imported as a top-level module: this folder has no __init__.py,
so that `dns` here never shadows dnspython)."""

from __future__ import annotations

import dns.message
import dns.query
import dns.rdatatype

from tests.support.bind import BindServer
from tests.support.moto import MOTO_ENV

ZONE = "phoenix.test"
EAST, WEST = "127.0.10.1", "127.0.20.1"
LAB_RECORDS = (
    f"api IN A {EAST}\n"
    f"docs IN A {EAST}\n"
    f"db IN A {EAST}\n"
    '_active IN TXT "region=east epoch=1"\n'
)


def rfc_args(bind: BindServer, **extra) -> dict:
    return {"provider": "rfc2136", "server": bind.host, "port": bind.port, "zone": bind.zone,
            "key_name": bind.key_name, "key_secret": bind.secret, **extra}


def served(bind: BindServer, name: str, rtype: str = "A") -> tuple[int | None, list[str]]:
    """(ttl, sorted values) straight from the server with plain dnspython: independent of the code under test."""
    query = dns.message.make_query(name, rtype)
    response = dns.query.tcp(query, bind.host, port=bind.port, timeout=3)
    for rrset in response.answer:
        if rrset.rdtype == dns.rdatatype.from_text(rtype) and rrset.name.to_text().rstrip(".") == name.rstrip("."):
            return rrset.ttl, sorted(rd.to_text() for rd in rrset)
    return None, []


def soa_serial(bind: BindServer) -> int:
    response = dns.query.tcp(dns.message.make_query(bind.zone, "SOA"), bind.host, port=bind.port, timeout=3)
    return response.answer[0][0].serial


def r53_args(r53: dict, **extra) -> dict:
    return {"provider": "route53", "zone": ZONE, "endpoint_url": r53["endpoint_url"], "region": "us-east-1",
            "access_key": MOTO_ENV["AWS_ACCESS_KEY_ID"], "secret_key": MOTO_ENV["AWS_SECRET_ACCESS_KEY"], **extra}


def r53_records(r53: dict) -> dict[tuple[str, str], tuple[int, list[str]]]:
    """{(name, type): (ttl, values)} straight from the Route 53 API."""
    out = {}
    for page in r53["client"].get_paginator("list_resource_record_sets").paginate(HostedZoneId=r53["zone_id"]):
        for rrset in page["ResourceRecordSets"]:
            out[(rrset["Name"].rstrip("."), rrset["Type"])] = (
                rrset.get("TTL"), sorted(r["Value"] for r in rrset.get("ResourceRecords", [])))
    return out


def switch_args(address: str) -> list[dict]:
    return [{"name": f"{name}.{ZONE}", "type": "A", "ttl": 5, "values": [address]} for name in ("api", "docs")]


def write_pair_config(primary: BindServer, secondary: BindServer) -> None:
    """Primary + secondary of phoenix.test. The primary sends no NOTIFY and the SOA refresh is 60 s, so the
    secondary lags until a test sends it a NOTIFY (send_notify): then it transfers the zone for real."""
    import os
    import pwd

    zone = primary.zone
    primary.base_dir.mkdir(parents=True, exist_ok=True)
    secondary.base_dir.mkdir(parents=True, exist_ok=True)
    primary.zone_file.write_text(
        f"$TTL 5\n@ IN SOA ns1.{zone}. hostmaster.{zone}. 1 60 30 600 5\n"
        f"@ IN NS ns1.{zone}.\nns1 IN A {primary.host}\n{primary.records}\n")
    common = ("controls { };\noptions {\n  directory \"%s\";\n  pid-file \"%s/named.pid\";\n"
              "  listen-on port %d { %s; };\n  listen-on-v6 { none; };\n  recursion no;\n"
              "  dnssec-validation no;\n%s};\n")
    (primary.base_dir / "named.conf").write_text(
        f'key "{primary.key_name}" {{ algorithm {primary.key_algorithm}; secret "{primary.secret}"; }};\n'
        + common % (primary.base_dir, primary.base_dir, primary.port, primary.host,
                    "  notify no;\n")
        + f'zone "{zone}" {{\n  type primary;\n  file "{primary.zone_file}";\n'
        "  allow-transfer { any; };\n"
        f"  update-policy {{ grant {primary.key_name} zonesub ANY; }};\n}};\n")
    (secondary.base_dir / "named.conf").write_text(
        common % (secondary.base_dir, secondary.base_dir, secondary.port, secondary.host, "  notify no;\n")
        + f'zone "{zone}" {{\n  type secondary;\n  file "{secondary.base_dir}/secondary.db";\n'
        f"  primaries {{ {primary.host} port {primary.port}; }};\n}};\n")
    bind_user = pwd.getpwnam("bind")
    for server in (primary, secondary):
        for path in [server.base_dir, *server.base_dir.iterdir()]:
            os.chown(path, bind_user.pw_uid, bind_user.pw_gid)


class PreconfiguredBind(BindServer):
    """A BindServer whose named.conf and zone were written by write_pair_config()."""

    def write_config(self) -> None:
        return None


def send_notify(secondary: BindServer) -> None:
    """What a primary sends after a change (RFC 1996): the secondary then checks the SOA and transfers."""
    import dns.flags
    import dns.opcode

    notify = dns.message.make_query(secondary.zone, "SOA")
    notify.set_opcode(dns.opcode.NOTIFY)
    notify.flags = dns.flags.AA | (notify.flags & ~dns.flags.RD)
    dns.query.udp(notify, secondary.host, port=secondary.port, timeout=2)
