# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""DNS record switching shared by the dns_records modules and the failover runbook.

One small provider interface (`DnsProvider`), one class per provider
(`_dns_rfc2136.Rfc2136Provider`, `_dns_route53.Route53Provider`), and the provider-neutral
logic here: input validation (before anything is sent), the plan (what changes), the
compare-and-swap decision, waiting for authoritative servers, and per-server queries.

Records are plain dicts so results are JSON-ready:
``{"name": "api.phoenix.test.", "type": "A", "ttl": 5, "values": ["127.0.10.1"]}``;
a record that does not exist is ``None``. Values are in canonical presentation form
(TXT quoted, names absolute), sorted, so two sources compare equal when they mean the same.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import re
import socket
import struct
import threading
import time
import traceback

from ansible_collections.cloudphoenix.stack.plugins.module_utils._retry import (
    RetryBudgetExceeded,
    backoff_delays,
)

try:
    import dns.exception
    import dns.name
    import dns.rcode
    import dns.rdata
    import dns.rdataclass
    import dns.rdatatype
    HAS_DNSPYTHON = True
    DNSPYTHON_IMPORT_ERROR = None
except ImportError:
    HAS_DNSPYTHON = False
    DNSPYTHON_IMPORT_ERROR = traceback.format_exc()

SUPPORTED_TYPES = ("A", "AAAA", "CNAME", "TXT", "MX", "SRV", "CAA", "PTR", "NS")
MAX_TTL = 2147483647
_LABEL_RE = re.compile(r"^(\*|[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)$")
# fast paths for the common case (the slow checks below give the error messages)
_PLAIN_NAME_RE = re.compile(r"^(\*\.)?([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.)+\Z")
QUERY_TIMEOUT = 2.0  # one DNS query / connection attempt; the overall budget is the caller's


class DnsError(Exception):
    """A failure with a message meant for the operator; `details` go into the module result."""

    def __init__(self, msg, **details):
        super(DnsError, self).__init__(msg)
        self.msg = msg
        self.details = details


class ValidationError(DnsError):
    """Bad input; raised before anything is sent to a server."""


class ConflictError(DnsError):
    """Compare-and-swap failed: current values differ from `expect`. Nothing was changed."""


class RequirementError(ConflictError):
    """A record named in `require` (records the call must not change) does not hold the required values.

    Raised before anything is sent when the read shows it, or after the server refused the guarded change
    (the guard travels with the change). Nothing of the refused change was applied.
    """


class TransientError(DnsError):
    """Worth another attempt (SERVFAIL, timeouts, throttling, PriorRequestNotComplete)."""


class WaitTimeout(DnsError):
    """Authoritative servers did not all serve the new values in time."""


def require_dnspython(module):
    if not HAS_DNSPYTHON:
        from ansible.module_utils.basic import missing_required_lib
        module.fail_json(msg=missing_required_lib("dnspython"), exception=DNSPYTHON_IMPORT_ERROR)


# --------------------------------------------------------------------------- validation

def absolute_name(name, what="name"):
    """Validate a DNS owner name and return it lower-case with a trailing dot."""
    if not isinstance(name, str) or not name.strip():
        raise ValidationError("%s must be a non-empty string, got %r" % (what, name))
    text = name.strip().lower()
    if not text.endswith("."):
        text += "."
    if len(text) > 254:
        raise ValidationError("%s %r is longer than 253 characters" % (what, name))
    if _PLAIN_NAME_RE.match(text):
        return text
    labels = text[:-1].split(".")
    for index, label in enumerate(labels):
        if not label:
            raise ValidationError("%s %r has an empty label" % (what, name))
        if len(label) > 63:
            raise ValidationError("%s %r has a label longer than 63 characters" % (what, name))
        if not _LABEL_RE.match(label) or (label == "*" and index != 0):
            raise ValidationError(
                "%s %r: label %r may only hold letters, digits, '-' and '_' ('*' only as the first label)"
                % (what, name, label))
    return text


def in_zone(name, zone):
    return name == zone or name.endswith("." + zone)


def _quote_txt(value):
    if value.startswith('"'):
        return value  # already presentation form: one or more quoted strings
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    chunks = [escaped[i:i + 255] for i in range(0, len(escaped), 255)] or [""]
    return " ".join('"%s"' % chunk for chunk in chunks)


def _is_canonical_ipv4(text):
    """True for a dotted quad already in canonical form; the round trip refuses '127.1', '01.2.3.4', ..."""
    try:
        return socket.inet_ntoa(socket.inet_aton(text)) == text
    except (OSError, ValueError):
        return False


def canonical_value(rtype, value, where="value"):
    """Validate one value and return its canonical presentation form."""
    if not isinstance(value, str):
        value = str(value)
    text = value.strip()
    if rtype == "A":
        if _is_canonical_ipv4(text):
            return text
        try:
            return str(ipaddress.IPv4Address(text))
        except ValueError:
            raise ValidationError("%s %r is not an IPv4 address (type A)" % (where, value)) from None
    if rtype == "AAAA":
        try:
            return str(ipaddress.IPv6Address(text))
        except ValueError:
            raise ValidationError("%s %r is not an IPv6 address (type AAAA)" % (where, value)) from None
    if rtype in ("CNAME", "PTR", "NS"):
        return absolute_name(text, what=where)
    if rtype == "TXT":
        text = _quote_txt(value)
    if not HAS_DNSPYTHON:  # pragma: no cover - modules fail earlier with missing_required_lib
        return text
    try:
        rdata = dns.rdata.from_text(dns.rdataclass.IN, rtype, text, origin=dns.name.root)
    except Exception as exc:  # pylint: disable=broad-except
        raise ValidationError("%s %r is not valid %s data: %s" % (where, value, rtype, exc)) from exc
    return rdata.to_text(origin=dns.name.root, relativize=False)


def make_rrset(name, rtype, ttl, values, where="record"):
    rtype = str(rtype).upper()
    if rtype not in SUPPORTED_TYPES:
        raise ValidationError("%s: type %r is not supported (use one of %s)"
                              % (where, rtype, ", ".join(SUPPORTED_TYPES)))
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int) or not 0 <= ttl <= MAX_TTL):
        raise ValidationError("%s: ttl %r must be an integer from 0 to %d" % (where, ttl, MAX_TTL))
    canon = sorted({canonical_value(rtype, v, where="%s value" % where) for v in values})
    if rtype == "CNAME" and len(canon) > 1:
        raise ValidationError("%s: a CNAME holds exactly one value, got %d" % (where, len(canon)))
    return {"name": absolute_name(name, what="%s name" % where), "type": rtype, "ttl": ttl, "values": canon}


def key_of(rrset):
    return (rrset["name"], rrset["type"])


def key_text(key):
    return "%s %s" % key


def normalize_records(records, zone, default_ttl):
    """records option -> ordered {key: desired rrset or None (absent)}; validates everything.

    `zone` None (Route 53 by hosted_zone_id, name not known yet): zone membership is checked
    by `switch()` once the zone is resolved, still before anything is sent.
    """
    zone = absolute_name(zone, what="zone") if zone else None
    desired = {}
    for index, record in enumerate(records or []):
        where = "records[%d]" % index
        state = record.get("state") or "present"
        values = record.get("values") or []
        if state == "present" and not values:
            raise ValidationError("%s: state=present needs at least one value" % where)
        ttl = record.get("ttl")
        rrset = make_rrset(record.get("name"), record.get("type"), default_ttl if ttl is None else ttl, values, where)
        if zone and not in_zone(rrset["name"], zone):
            raise ValidationError("%s: %s is not in zone %s" % (where, rrset["name"], zone))
        key = key_of(rrset)
        if key in desired:
            raise ValidationError("%s: %s is listed twice" % (where, key_text(key)))
        desired[key] = rrset if state == "present" else None
    if not desired:
        raise ValidationError("records must name at least one record")
    return desired


def normalize_expect(expect, zone):
    """expect option -> {key: rrset (ttl None = any) or None (must not exist)}."""
    zone = absolute_name(zone, what="zone") if zone else None
    wanted = {}
    for index, item in enumerate(expect or []):
        where = "expect[%d]" % index
        rrset = make_rrset(item.get("name"), item.get("type"), item.get("ttl"), item.get("values") or [], where)
        if zone and not in_zone(rrset["name"], zone):
            raise ValidationError("%s: %s is not in zone %s" % (where, rrset["name"], zone))
        if key_of(rrset) in wanted:
            raise ValidationError("%s: %s is listed twice" % (where, key_text(key_of(rrset))))
        wanted[key_of(rrset)] = rrset if rrset["values"] else None
    return wanted


def normalize_require(require, zone):
    """require option -> {key: rrset (ttl None: not compared)}: records that must hold exactly these values.

    A required record must exist (Route 53 cannot guard the absence of a record inside a batch).
    """
    zone = absolute_name(zone, what="zone") if zone else None
    wanted = {}
    for index, item in enumerate(require or []):
        where = "require[%d]" % index
        if not item.get("values"):
            raise ValidationError("%s: values must list at least one value (a required record must exist, with "
                                  "exactly these values)" % where)
        rrset = make_rrset(item.get("name"), item.get("type"), None, item["values"], where)
        if zone and not in_zone(rrset["name"], zone):
            raise ValidationError("%s: %s is not in zone %s" % (where, rrset["name"], zone))
        if key_of(rrset) in wanted:
            raise ValidationError("%s: %s is listed twice" % (where, key_text(key_of(rrset))))
        wanted[key_of(rrset)] = rrset
    return wanted


def check_guards(desired, expect, require):
    """`expect` guards records this call changes, `require` records it does not: refuse a mix-up."""
    for key in expect:
        if key not in desired:
            raise ValidationError(
                "expect: %s is not in records. expect is the compare-and-swap of a record this call changes; "
                "for a record that must hold given values and is not changed, use require" % key_text(key))
    for key in require:
        if key in desired:
            raise ValidationError(
                "require: %s is also in records. require names records this call does not change; for a record "
                "it changes, use expect (compare-and-swap)" % key_text(key))


def requirement_message(current, require, unmet):
    return "; ".join("%s is %s, required %s" % (key_text(k), describe(current.get(k)), " ".join(require[k]["values"]))
                     for k in unmet)


def parse_server(text, default_port):
    """'host', 'host:port', '[v6]:port' or 'v6' -> (host, port)."""
    text = str(text).strip()
    match = re.match(r"^\[([^\]]+)\](?::(\d+))?$", text)
    if match:
        host, port = match.group(1), match.group(2)
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, None
    if not host:
        raise ValidationError("server %r has no host" % text)
    try:
        port = int(port) if port else int(default_port)
    except ValueError:
        raise ValidationError("server %r: port must be a number" % text) from None
    if not 0 < port < 65536:
        raise ValidationError("server %r: port %d is out of range" % (text, port))
    return host, port


def server_label(server):
    host, port = server
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)


# --------------------------------------------------------------------------- comparing / planning

def same(current, wanted, compare_ttl=True):
    """Does `current` (rrset or None) satisfy `wanted` (rrset, ttl None = any; or None)?"""
    if wanted is None or current is None:
        return wanted is None and current is None
    if current["values"] != wanted["values"]:
        return False
    return not compare_ttl or wanted.get("ttl") is None or current["ttl"] == wanted["ttl"]


def plan_changes(current, desired):
    """[{key, before, after}] for every record whose current state is not the desired one."""
    changes = []
    for key, after in desired.items():
        before = current.get(key)
        if not same(before, after):
            changes.append({"key": key, "before": before, "after": after})
    return changes


def cas_mismatches(current, expect):
    return [key for key, wanted in expect.items() if not same(current.get(key), wanted)]


def zone_lines(rrsets):
    lines = []
    for rrset in rrsets:
        if rrset is None:
            continue
        for value in rrset["values"]:
            lines.append("%s %s IN %s %s" % (rrset["name"], rrset["ttl"], rrset["type"], value))
    return "".join(line + "\n" for line in lines)


def public(rrset, key=None):
    """A record as returned to callers: usable as-is in `records` (rollback) or `expect`."""
    if rrset is None:
        name, rtype = key
        return {"name": name.rstrip("."), "type": rtype, "state": "absent", "values": []}
    return {"name": rrset["name"].rstrip("."), "type": rrset["type"], "ttl": rrset["ttl"],
            "values": list(rrset["values"]), "state": "present"}


def describe(rrset):
    if rrset is None:
        return "(absent)"
    return "%s ttl=%s" % (" ".join(rrset["values"]), rrset["ttl"])


# --------------------------------------------------------------------------- provider interface

class DnsProvider:
    """What every provider implements. `switch()` and the info module only use this."""

    name = "base"
    zone = None  # absolute zone name, set by the provider (Route 53 may look it up)
    transfer = None  # a _dns_rfc2136.ZoneTransfer when servers may be read with zone transfers

    def resolve_zone(self):
        """Make sure the zone exists and is served; set self.zone. May raise DnsError."""
        raise NotImplementedError

    def read(self, keys):
        """{key: rrset or None} as the provider's primary source holds it now."""
        raise NotImplementedError

    def plan_batches(self, changes, expect, allow_split, require=None):
        """Split `changes` into provider batches (a list of lists); refuse what cannot be atomic.

        `require` ({key: rrset}, records not changed) is only passed when given; it travels with every batch.
        """
        return [changes]

    def apply(self, batch, expect, require=None):
        """Send one atomic batch guarded by `expect` (and `require`, only passed when given); returns a dict
        (ids, timings). A guard the server finds broken raises ConflictError."""
        raise NotImplementedError

    def wait_synced(self, applied, deadline):
        """Provider-side propagation (Route 53 GetChange INSYNC); nothing for RFC 2136."""
        return None

    def authoritative_servers(self, deadline):
        """[(host, port)] to query when waiting and `wait_servers` is not given."""
        return []

    def close(self):
        return None


def retry_call(func, timeout, on_retry=None, base=0.05, cap=1.0, provider=None):
    """call_with_retries for provider operations: TransientError is the only retried error.

    With `provider`, each attempt's DNS query timeout is cut to what is left of the budget, so a
    hung server makes the call fail close to `timeout`, not one full query timeout later.
    """
    from ansible_collections.cloudphoenix.stack.plugins.module_utils._retry import call_with_retries

    attempt = func
    if provider is not None and getattr(provider, "query_timeout", None):
        deadline = time.monotonic() + timeout
        full = provider.query_timeout

        def attempt():
            provider.query_timeout = max(0.2, min(full, deadline - time.monotonic()))
            try:
                return func()
            finally:
                provider.query_timeout = full

    return call_with_retries(attempt, lambda exc: isinstance(exc, TransientError), timeout=timeout,
                             base=base, cap=cap, on_retry=on_retry)


# --------------------------------------------------------------------------- DNS queries (both providers)

def _transient_socket_error(exc):
    return isinstance(exc, (socket.timeout, ConnectionError, EOFError, OSError)) or (
        HAS_DNSPYTHON and isinstance(exc, dns.exception.Timeout))


class Answer:
    """A parsed query response: rcode, the AA flag and the answer RRs (name, type, ttl, rdata)."""

    __slots__ = ("aa", "rcode", "rrs")

    def __init__(self, rcode, aa, rrs):
        self.rcode = rcode
        self.aa = aa
        self.rrs = rrs


def name_wire(name):
    """Wire form of a validated absolute name (letters, digits, '-', '_', '*': no escapes needed)."""
    labels = [label.encode("ascii") for label in name.rstrip(".").split(".")] if name != "." else []
    return b"".join(struct.pack("!B", len(label)) + label for label in labels) + b"\0"


def _query_wire(qid, key):
    name, rtype = key
    # header: id, flags 0 (no RD: we ask authorities), 1 question
    body = struct.pack("!HHHHHH", qid, 0, 1, 0, 0, 0) + name_wire(name) + struct.pack(
        "!HH", _rdtype(rtype), 1)
    return struct.pack("!H", len(body)) + body


_RDTYPES = {}


def _rdtype(text):
    if text not in _RDTYPES:
        _RDTYPES[text] = int(dns.rdatatype.from_text(text))
    return _RDTYPES[text]


def _read_name(wire, pos):
    """(lower-case absolute name text, position after the name), following compression pointers."""
    labels = []
    end = None
    hops = 0
    while True:
        length = wire[pos]
        if length & 0xC0 == 0xC0:
            if end is None:
                end = pos + 2
            pos = ((length & 0x3F) << 8) | wire[pos + 1]
            hops += 1
            if hops > 64:
                raise ValueError("DNS name compression loop")
            continue
        if length == 0:
            pos += 1
            break
        labels.append(wire[pos + 1:pos + 1 + length])
        pos += 1 + length
    text = b".".join(labels).decode("ascii", "backslashreplace").lower() + "."
    return text, (end if end is not None else pos)


def _parse_answer(wire):
    """Header + answer section only; far cheaper than a full dns.message.from_wire per query."""
    qid, flags, qdcount, ancount = struct.unpack("!HHHH", wire[:8])
    current = 12
    for _dummy in range(qdcount):
        current = _read_name(wire, current)[1] + 4
    rrs = []
    for _dummy in range(ancount):
        name, current = _read_name(wire, current)
        rdtype, rdclass, ttl, rdlen = struct.unpack("!HHIH", wire[current:current + 10])
        current += 10
        if rdtype == 1 and rdlen == 4:
            rdata = socket.inet_ntop(socket.AF_INET, wire[current:current + 4])
        elif rdtype == 28 and rdlen == 16:
            rdata = socket.inet_ntop(socket.AF_INET6, wire[current:current + 16])
        else:
            rdata = dns.rdata.from_wire(rdclass, rdtype, wire, current, rdlen, origin=None)
        current += rdlen
        rrs.append((name, rdtype, ttl, rdata))
    return qid, Answer(flags & 0xF, bool(flags & 0x0400), rrs)


def _recv_exact(sock, count):
    chunks = []
    while count:
        chunk = sock.recv(min(count, 65536))
        if not chunk:
            raise EOFError("connection closed")
        chunks.append(chunk)
        count -= len(chunk)
    return b"".join(chunks)


def query_many(server, questions, timeout=QUERY_TIMEOUT, chunk=500):
    """Ask `server` for every (name, type) over ONE TCP connection, pipelined.

    Returns {key: Answer}. Raises TransientError when the server cannot be reached or stops
    answering within `timeout` (the caller decides whether to retry).
    """
    host, port = server
    answers = {}
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except (OSError, socket.timeout) as exc:
        raise TransientError("%s unreachable: %s" % (server_label(server), exc)) from exc
    try:
        sock.settimeout(timeout)
        questions = list(questions)
        for start in range(0, len(questions), chunk):
            pending = {}
            wire = []
            for offset, key in enumerate(questions[start:start + chunk]):
                qid = (start + offset) % 65536
                pending[qid] = key
                wire.append(_query_wire(qid, key))
            sock.sendall(b"".join(wire))
            while pending:
                (length,) = struct.unpack("!H", _recv_exact(sock, 2))
                qid, answer = _parse_answer(_recv_exact(sock, length))
                key = pending.pop(qid, None)
                if key is not None:
                    answers[key] = answer
    except (OSError, EOFError, socket.timeout) as exc:
        raise TransientError("%s stopped answering: %s"
                             % (server_label(server), str(exc) or type(exc).__name__)) from exc
    finally:
        sock.close()
    return answers


def rrset_from_response(key, response, server):
    """(rrset or None) from an Answer; raises DnsError when the server is no authority."""
    rcode = response.rcode
    if rcode == dns.rcode.SERVFAIL:
        raise TransientError("%s answered SERVFAIL for %s" % (server_label(server), key_text(key)))
    if rcode in (dns.rcode.REFUSED, dns.rcode.NOTAUTH) or (
            rcode in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN) and not response.aa):
        raise DnsError("%s is not authoritative for %s (rcode %s): zone not served there"
                       % (server_label(server), key_text(key), dns.rcode.to_text(rcode)),
                       server=server_label(server), rcode=dns.rcode.to_text(rcode))
    if rcode == dns.rcode.NXDOMAIN:
        return None
    if rcode != dns.rcode.NOERROR:
        raise DnsError("%s answered %s for %s" % (server_label(server), dns.rcode.to_text(rcode), key_text(key)))
    name = key[0]
    rdtype = _rdtype(key[1])
    values = set()
    ttl = None
    for rr_name, rr_type, rr_ttl, rdata in response.rrs:
        if rr_type == rdtype and rr_name == name:
            values.add(rdata if isinstance(rdata, str) else rdata.to_text(origin=dns.name.root, relativize=False))
            ttl = rr_ttl if ttl is None else min(ttl, rr_ttl)
    if not values:
        return None
    return {"name": key[0], "type": key[1], "ttl": ttl, "values": sorted(values)}


def read_from_server(server, keys, timeout=QUERY_TIMEOUT):
    responses = query_many(server, keys, timeout=timeout)
    return {key: rrset_from_response(key, responses[key], server) for key in keys}


def soa_serial(server, zone, timeout=QUERY_TIMEOUT):
    response = query_many(server, [(zone, "SOA")], timeout=timeout)[(zone, "SOA")]
    if response.rcode == dns.rcode.SERVFAIL:  # e.g. zone not loaded (yet): worth another try
        raise TransientError("%s answered SERVFAIL for zone %s" % (server_label(server), zone),
                             server=server_label(server), rcode="SERVFAIL")
    if response.rcode != dns.rcode.NOERROR or not response.aa:
        raise DnsError("%s does not serve zone %s (rcode %s%s)"
                       % (server_label(server), zone, dns.rcode.to_text(response.rcode),
                          "" if response.aa else ", not authoritative"),
                       server=server_label(server), rcode=dns.rcode.to_text(response.rcode))
    for _dummy_name, rdtype, _dummy_ttl, rdata in response.rrs:
        if rdtype == dns.rdatatype.SOA:
            return rdata.serial
    raise DnsError("%s returned no SOA for %s" % (server_label(server), zone))


def survey(servers, keys, zone, timeout=QUERY_TIMEOUT, transfer=None):
    """Query every server in parallel: [{server, reachable, error, soa_serial, records{key: rrset}}].

    With `transfer` (a `_dns_rfc2136.ZoneTransfer`), servers it is wanted for are read with one zone transfer
    (falling back to per-name queries when refused) and each entry says `via` which way it was read.
    """
    results = [None] * len(servers)

    def one(index, server):
        entry = {"server": server_label(server), "reachable": False, "error": None,
                 "soa_serial": None, "records": {}}
        if transfer is not None:
            entry["via"] = "queries"
        try:
            got = None
            if transfer is not None and transfer.wanted(server, keys):
                got = transfer.read(server, keys, timeout)
            if got is not None:
                entry.update(soa_serial=got[0], reachable=True, records=got[1], via="transfer")
            else:
                entry["soa_serial"] = soa_serial(server, zone, timeout=timeout)
                entry["reachable"] = True
                entry["records"] = read_from_server(server, keys, timeout=timeout)
        except DnsError as exc:
            answered = not isinstance(exc, TransientError) or exc.details.get("rcode") == "SERVFAIL"
            entry["reachable"] = entry["soa_serial"] is not None or answered
            entry["error"] = exc.msg
        except Exception as exc:  # noqa: BLE001 - reported per server, never fatal
            entry["error"] = "%s: %s" % (type(exc).__name__, exc)
        results[index] = entry

    if len(servers) == 1:  # the usual case: no thread needed
        one(0, servers[0])
        return results
    threads = [threading.Thread(target=one, args=(i, s)) for i, s in enumerate(servers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def wait_for_servers(servers, desired, zone, deadline, transfer=None):
    """Poll every server until it serves every desired record (values and TTL).

    `transfer`: read large sets with one zone transfer per server and poll (see `survey`).

    Returns [{server, in_sync, polls}]. Raises WaitTimeout listing what each lagging server serves.
    """
    keys = list(desired)
    state = {server: {"server": server_label(server), "in_sync": False, "polls": 0, "lagging": None, "via": None}
             for server in servers}
    delays = backoff_delays(base=0.02, cap=0.5)
    while True:
        todo = [server for server in servers if not state[server]["in_sync"]]
        if not todo:
            break
        timeout = max(0.2, min(QUERY_TIMEOUT, deadline - time.monotonic()))
        for server, entry in zip(todo, survey(todo, keys, zone, timeout=timeout, transfer=transfer)):  # noqa: B905
            record = state[server]
            record["polls"] += 1
            record["via"] = entry.get("via")
            if entry["error"]:
                record["lagging"] = "unreachable or failing (%s)" % entry["error"]
                continue
            wrong = [key for key in keys if not same(entry["records"].get(key), desired[key])]
            if wrong:
                record["lagging"] = "; ".join(
                    "%s serves %s, want %s"
                    % (key_text(key), describe(entry["records"].get(key)), describe(desired[key]))
                    for key in wrong[:5]) + ("; and %d more" % (len(wrong) - 5) if len(wrong) > 5 else "")
            else:
                record["in_sync"] = True
                record["lagging"] = None
        if all(state[s]["in_sync"] for s in servers):
            break
        delay = next(delays)
        if time.monotonic() + delay > deadline:
            lagging = ["%s: %s" % (state[s]["server"], state[s]["lagging"]) for s in servers if not state[s]["in_sync"]]
            raise WaitTimeout("timed out waiting for authoritative servers to serve the new values: %s"
                              % " | ".join(lagging),
                              wait=[_wait_entry(state[s]) for s in servers])
        time.sleep(delay)
    return [_wait_entry(state[s]) for s in servers]


def _wait_entry(record):
    entry = {"server": record["server"], "in_sync": record["in_sync"], "polls": record["polls"],
             "serves": record["lagging"]}
    if record["via"]:
        entry["via"] = record["via"]
    return entry


# --------------------------------------------------------------------------- the switch

def switch(provider, desired, expect=None, check_mode=False, wait=False, wait_servers=None,
           wait_timeout=60.0, allow_split=False, retry_timeout=30.0, log=None, require=None):
    """Apply `desired` ({key: rrset|None}) as one atomic change guarded by `expect` and `require`.

    `expect`: compare-and-swap of records in `desired` ("already as wanted" is success). `require`: records
    NOT in `desired` that must hold exactly the given values, checked on every call (also when nothing
    changes) and sent with every batch so that the server refuses the change if they moved meanwhile.

    Returns a JSON-ready dict: changed, before, after, changes, cas, requirement, batches, wait, timings.
    Raises RequirementError or ConflictError (nothing changed), ValidationError, DnsError, WaitTimeout.
    """
    expect = expect or {}
    require = require or {}
    check_guards(desired, expect, require)
    timings = {}
    started = time.monotonic()
    retries = []

    def note_retry(attempt, exc, delay):
        retries.append({"attempt": attempt, "error": str(exc), "delay": round(delay, 3)})
        if log:
            log("retry %d after %s (sleep %.2fs)" % (attempt, exc, delay))

    retry_call(provider.resolve_zone, retry_timeout, note_retry, provider=provider)
    for key in list(desired) + list(expect) + list(require):
        if not in_zone(key[0], provider.zone):
            raise ValidationError("%s is not in zone %s" % (key_text(key), provider.zone))
    keys = list(dict.fromkeys(list(desired) + list(expect) + list(require)))
    current = retry_call(lambda: provider.read(keys), retry_timeout, note_retry, provider=provider)
    timings["read"] = round(time.monotonic() - started, 4)
    changes = plan_changes(current, desired)
    result = {
        "changed": bool(changes),
        "before": [public(current.get(k), k) for k in desired],
        # name, type and action only: the values before are in `before`, after in `records` (and both in `diff`)
        "changes": [{"name": c["key"][0].rstrip("."), "type": c["key"][1],
                     "action": "delete" if c["after"] is None else ("create" if c["before"] is None else "update")}
                    for c in changes],
        "cas": None, "requirement": None, "batches": [], "wait": [], "retries": retries, "timings": timings,
    }
    unmet = cas_mismatches(current, require)
    if unmet:  # checked on every call, also when nothing would change: the caller's premise is gone
        raise RequirementError(
            "requirement not met, nothing changed: " + requirement_message(current, require, unmet),
            current=[public(current.get(k), k) for k in keys], before=result["before"])
    if require:
        result["requirement"] = "held"
    mismatched = cas_mismatches(current, expect)
    if expect:
        result["cas"] = "matched" if not mismatched else ("already_applied" if not changes else "conflict")
    if not changes:
        timings["total"] = timings["read"]
        return result
    if mismatched:
        raise ConflictError(
            "compare-and-swap failed, nothing changed: " + "; ".join(
                "%s is %s, expected %s" % (key_text(k), describe(current.get(k)), describe(expect[k]))
                for k in mismatched),
            current=[public(current.get(k), k) for k in keys])
    batches = (provider.plan_batches(changes, expect, allow_split, require=require) if require
               else provider.plan_batches(changes, expect, allow_split))
    result["batches"] = [{"index": i, "changes": len(b), "status": "planned"} for i, b in enumerate(batches)]
    if check_mode:
        timings["total"] = round(time.monotonic() - started, 4)
        return result
    applied = []
    for index, batch in enumerate(batches):
        attempt = {"n": 0}

        def send(batch=batch, attempt=attempt, index=index):  # pylint: disable=dangerous-default-value
            attempt["n"] += 1
            if require:  # every batch carries the requirement (expect: the first batch)
                return provider.apply(batch, expect if index == 0 else {}, require=require)
            return provider.apply(batch, expect if index == 0 else {})

        try:
            info = retry_call(send, retry_timeout, note_retry, provider=provider)
        except ConflictError as exc:
            # A retried send may have landed before its answer was lost: look before blaming others.
            landed = False
            if attempt["n"] > 1:
                now = provider.read(list(dict.fromkeys([c["key"] for c in batch] + list(require))))
                landed = (all(same(now.get(c["key"]), c["after"]) for c in batch)
                          and not cas_mismatches(now, require))
                if landed:
                    info = {"note": "applied by an earlier attempt whose answer was lost"}
            if not landed:
                result["batches"][index]["status"] = "conflict"
                now = None
                try:  # say what is there now (best effort: the conflict is the news)
                    now = provider.read(keys)
                    exc.details.setdefault("current", [public(now.get(k), k) for k in keys])
                except Exception as err:  # noqa: BLE001 - best effort, the conflict is what gets reported
                    exc.details.setdefault("current_error", str(err))
                exc = _requirement_refusal(exc, now, require, expect if index == 0 else {}, result, index)
                _annotate_partial(exc, result, index)
                raise exc
        except (DnsError, RetryBudgetExceeded) as exc:
            result["batches"][index]["status"] = "failed"
            if isinstance(exc, RetryBudgetExceeded):
                exc = DnsError("%s: %s" % ("could not apply the change", exc))
            elif require:
                # a provider may refuse a broken guard with an error of its own (moto: InvalidInput for a
                # DELETE it cannot match): if the required records moved, that is the news
                try:
                    now = provider.read(keys)
                except Exception:  # noqa: BLE001 - best effort: the provider's error is reported as it is
                    now = None
                if now is not None and cas_mismatches(now, require):
                    exc.details.setdefault("current", [public(now.get(k), k) for k in keys])
                    exc = _requirement_refusal(exc, now, require, {}, result, index)
            _annotate_partial(exc, result, index)
            raise exc
        result["batches"][index].update(info or {})
        result["batches"][index]["status"] = "applied"
        applied.append(result["batches"][index])
    if expect:
        result["cas"] = "swapped"
    timings["apply"] = round(time.monotonic() - started - timings["read"], 4)
    if wait:
        deadline = started + wait_timeout
        try:
            provider.wait_synced(applied, deadline)
            servers = wait_servers if wait_servers else provider.authoritative_servers(deadline)
            if servers:
                result["wait"] = wait_for_servers(servers, desired, provider.zone, deadline,
                                                  transfer=provider.transfer)
        except DnsError as exc:
            # the change is in place; the caller still needs `before` to roll back
            for name in ("before", "changes", "batches", "cas", "requirement"):
                exc.details.setdefault(name, result[name])
            raise
        timings["wait"] = round(time.monotonic() - started - timings["read"] - timings["apply"], 4)
    timings["total"] = round(time.monotonic() - started, 4)
    return result


def _requirement_refusal(exc, now, require, expect, result, index):
    """The server refused a guarded batch: a RequirementError when a required record moved (or when nothing but
    `require` guarded it), else the ConflictError as it is (the compare-and-swap lost)."""
    if not require:
        return exc
    unmet = cas_mismatches(now, require) if now is not None else list(require)
    if not unmet and expect:
        return exc
    if now is None:
        why = "the server refused the guarded change (%s); the required records could not be read back" % exc.msg
    elif not unmet:
        why = ("the server refused the guarded change (%s), though the required records hold their values again "
               "now" % exc.msg)
    else:
        why = requirement_message(now, require, unmet) + " (the server refused the change: %s)" % exc.msg
    result["batches"][index]["status"] = "requirement_failed"
    return RequirementError("requirement not met, %s: the required records changed after they were read; %s"
                            % ("nothing changed" if index == 0 else "change refused", why), **exc.details)


def _annotate_partial(exc, result, index):
    exc.details.setdefault("batches", result["batches"])
    exc.details.setdefault("before", result["before"])
    if index:
        exc.msg = "%s (batches 0..%d were applied; batch %d and later were not)" % (exc.msg, index - 1, index)
        exc.args = (exc.msg,)


# --------------------------------------------------------------------------- inspecting

def inspect(provider, keys, servers=None, retry_timeout=30.0):
    """Records as the provider holds them and as each authoritative server serves them.

    Unreachable servers are reported, not raised. For RFC 2136 the provider's source is the
    primary server itself, so an unreachable primary is reported too (`source_error`).
    """
    source_error = None
    current = {}
    if provider.name == "rfc2136":
        primary = provider.server
        if servers is None:
            try:
                servers = provider.authoritative_servers(None)
            except DnsError as exc:
                servers = []
                source_error = exc.msg
            servers = list(dict.fromkeys([primary, *servers]))
        entries = survey(servers, keys, provider.zone, timeout=provider.query_timeout)
        by_server = dict(zip(servers, entries))  # noqa: B905
        if primary in by_server and not by_server[primary]["error"]:
            current = by_server[primary]["records"]
        elif primary in by_server:
            source_error = by_server[primary]["error"]
        else:
            try:
                current = read_from_server(primary, keys, timeout=provider.query_timeout)
            except DnsError as exc:
                source_error = exc.msg
    else:
        retry_call(provider.resolve_zone, retry_timeout)
        for key in keys:
            if not in_zone(key[0], provider.zone):
                raise ValidationError("%s is not in zone %s" % (key_text(key), provider.zone))
        current = retry_call(lambda: provider.read(keys), retry_timeout)
        entries = survey(servers or [], keys, provider.zone, timeout=QUERY_TIMEOUT)
    consistent = source_error is None and all(
        not entry["error"] and all(same(entry["records"].get(k), current.get(k)) for k in keys) for entry in entries)
    for entry in entries:
        entry["records"] = [public(entry["records"].get(k), k) for k in keys] if not entry["error"] else []
    return {
        "zone": provider.zone,
        "records": [public(current.get(k), k) for k in keys] if source_error is None else [],
        "source_error": source_error,
        "servers": entries,
        "consistent": consistent,
    }
