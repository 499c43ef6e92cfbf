# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""RFC 2136 dynamic updates (BIND and friends) with TSIG, over TCP, via dnspython.

One UPDATE message carries the whole change (atomic on the server); `expect` becomes
update prerequisites (RFC 2136 section 2.4: value-dependent "RRset exists" / "RRset does
not exist"), so the server itself refuses a stale compare-and-swap.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import binascii
import random
import socket
import struct
import time
import traceback

from ansible_collections.cloudphoenix.stack.plugins.module_utils._dns import (
    QUERY_TIMEOUT,
    ConflictError,
    DnsError,
    DnsProvider,
    TransientError,
    ValidationError,
    absolute_name,
    in_zone,
    key_text,
    name_wire,
    query_many,
    read_from_server,
    server_label,
    soa_serial,
)

try:
    import dns.exception
    import dns.message
    import dns.name
    import dns.query
    import dns.rcode
    import dns.rdata
    import dns.rdataclass
    import dns.rdatatype
    import dns.rdtypes.ANY.TSIG
    import dns.tsig
    HAS_DNSPYTHON = True
    DNSPYTHON_IMPORT_ERROR = None
except ImportError:
    HAS_DNSPYTHON = False
    DNSPYTHON_IMPORT_ERROR = traceback.format_exc()

TSIG_ALGORITHMS = ("hmac-sha256", "hmac-sha512", "hmac-sha384", "hmac-sha224")  # as in _dns_providers
MAX_MESSAGE = 65535  # a DNS message over TCP; one UPDATE must fit to stay atomic

_CONFLICT_RCODES = ("YXDOMAIN", "YXRRSET", "NXDOMAIN", "NXRRSET")
_RCODE_HELP = {
    "REFUSED": "the server refused the update (unsigned, or the TSIG key may not update this zone)",
    "NOTAUTH": "the server is not authoritative for the zone, or did not accept the TSIG key",
    "NOTZONE": "a record in the update is outside the zone",
    "FORMERR": "the server could not parse the update",
    "NOTIMP": "the server does not implement dynamic updates",
}


class Rfc2136Provider(DnsProvider):
    name = "rfc2136"

    def __init__(self, server, port, zone, key_name=None, key_secret=None, key_algorithm="hmac-sha256",
                 query_timeout=QUERY_TIMEOUT):
        self.server = (server, int(port))
        self.port = int(port)
        self.zone = absolute_name(zone, what="zone")
        self.query_timeout = query_timeout
        self._prepared = None
        self.keyring = None
        self.key_name = None
        self.key_algorithm = None
        if key_name:
            if key_algorithm not in TSIG_ALGORITHMS:
                raise ValidationError("key_algorithm %r is not one of %s" % (key_algorithm, ", ".join(TSIG_ALGORITHMS)))
            try:
                self.key_name = dns.name.from_text(key_name)
                key = dns.tsig.Key(self.key_name, key_secret, dns.name.from_text(key_algorithm))
            except (binascii.Error, ValueError, TypeError, dns.exception.DNSException):
                # never echo the secret itself
                raise ValidationError("key_secret for TSIG key %r is not valid base64" % key_name) from None
            self.keyring = {self.key_name: key}
            self.key_algorithm = key.algorithm

    # -- interface
    def resolve_zone(self):
        soa_serial(self.server, self.zone, timeout=self.query_timeout)

    def read(self, keys):
        return read_from_server(self.server, keys, timeout=self.query_timeout)

    def encode(self, changes, expect):
        """The unsigned UPDATE message (see encode_update)."""
        return encode_update(self.zone, changes, expect, random.SystemRandom().randrange(65536))

    def plan_batches(self, changes, expect, allow_split):
        for change in changes:
            if not in_zone(change["key"][0], self.zone):
                raise ValidationError("%s is not in zone %s" % (key_text(change["key"]), self.zone))
        wire = self.encode(changes, expect)
        if len(wire) + TSIG_ROOM > MAX_MESSAGE:
            raise ValidationError(
                "the change (%d records) needs an UPDATE message of %d bytes, over the %d-byte DNS limit: it cannot "
                "be applied atomically; send fewer records per call" % (len(changes), len(wire), MAX_MESSAGE))
        self._prepared = (id(changes), wire)
        return [changes]

    def apply(self, batch, expect):
        started = time.monotonic()
        prepared = self._prepared
        wire = prepared[1] if prepared is not None and prepared[0] == id(batch) else self.encode(batch, expect)
        response = self._send(wire)
        rcode = dns.rcode.to_text(response.rcode())
        if rcode == "NOERROR":
            self._prepared = None
            return {"rcode": rcode, "seconds": round(time.monotonic() - started, 4)}
        if rcode in _CONFLICT_RCODES and expect:
            raise ConflictError("compare-and-swap failed on the server (prerequisite not met, rcode %s): "
                                "the records changed since they were read; nothing changed" % rcode, rcode=rcode)
        if rcode == "SERVFAIL":
            raise TransientError("%s answered SERVFAIL to the update" % server_label(self.server), rcode=rcode)
        raise DnsError("update of zone %s rejected by %s: %s (%s)"
                       % (self.zone, server_label(self.server), rcode, _RCODE_HELP.get(rcode, "see the server log")),
                       rcode=rcode)

    def authoritative_servers(self, deadline):
        """The zone's NS targets (addresses from the primary for in-zone names), on `port`."""
        responses = query_many(self.server, [(self.zone, "NS")], timeout=self.query_timeout)
        targets = [rdata.target.to_text() for _dummy_name, rdtype, _dummy_ttl, rdata in responses[(self.zone, "NS")].rrs
                   if rdtype == dns.rdatatype.NS]
        servers = []
        for target in sorted(targets):
            addresses = []
            if in_zone(target.lower(), self.zone):
                answers = query_many(self.server, [(target, "A"), (target, "AAAA")], timeout=self.query_timeout)
                for response in answers.values():
                    addresses.extend(rdata for _dummy_name, rdtype, _dummy_ttl, rdata in response.rrs
                                     if rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA))
            else:
                try:
                    infos = socket.getaddrinfo(target.rstrip("."), self.port, proto=socket.IPPROTO_TCP)
                    addresses = sorted({info[4][0] for info in infos})
                except OSError:
                    addresses = [target.rstrip(".")]  # reported as unreachable while waiting
            servers.extend((address, self.port) for address in addresses)
        return list(dict.fromkeys(servers)) or [self.server]

    # -- transport
    def _send(self, wire):
        """Sign (fresh time for every attempt) and send one UPDATE over TCP; returns the verified answer."""
        request_mac = b""
        if self.keyring is not None:
            wire, request_mac = sign_update(wire, self.key_name, self.keyring[self.key_name])
        expiration = time.time() + self.query_timeout
        try:
            sock = socket.create_connection(self.server, timeout=self.query_timeout)
        except OSError as exc:
            raise TransientError("%s unreachable: %s" % (server_label(self.server), exc)) from exc
        try:
            dns.query.send_tcp(sock, wire, expiration)
            received = dns.query.receive_tcp(sock, expiration, keyring=self.keyring, request_mac=request_mac)
            return received[0]
        except dns.tsig.PeerError as exc:
            raise DnsError("update of zone %s rejected by %s: TSIG %s (wrong key name, secret or algorithm)"
                           % (self.zone, server_label(self.server), _tsig_error(exc)), rcode="NOTAUTH") from exc
        except (dns.exception.Timeout, socket.timeout, OSError, EOFError) as exc:
            raise TransientError("%s did not answer the update: %s"
                                 % (server_label(self.server), str(exc) or type(exc).__name__)) from exc
        except dns.exception.DNSException as exc:
            raise DnsError("update of zone %s failed at %s: %s" % (self.zone, server_label(self.server), exc)) from exc
        finally:
            sock.close()


_CLASS_IN, _CLASS_NONE, _CLASS_ANY = 1, 254, 255
_OPCODE_UPDATE = 5 << 11
TSIG_ROOM = 400  # bytes kept free for the TSIG record (key name + algorithm + a 64-byte MAC fit easily)


def _rdata_wire(rtype, value):
    if rtype == "A":
        return socket.inet_aton(value)
    if rtype == "AAAA":
        return socket.inet_pton(socket.AF_INET6, value)
    return dns.rdata.from_text(dns.rdataclass.IN, rtype, value, origin=dns.name.root, relativize=False).to_wire()


def encode_update(zone, changes, expect, msg_id):
    """An unsigned RFC 2136 UPDATE in wire form, built directly (dnspython's builder costs ~0.1 s per
    1000 records). Owner names are compressed against the zone name at offset 12 and against their
    first occurrence. `expect` becomes prerequisites: value-dependent "RRset exists" (class IN,
    TTL 0) or "RRset does not exist" (class NONE); each change deletes the RRset (class ANY) and,
    unless it is a deletion, adds the new RRs. The names were validated by _dns.absolute_name.
    """
    out = bytearray(struct.pack("!HHHHHH", msg_id, _OPCODE_UPDATE, 1, 0, 0, 0))
    out += name_wire(zone) + struct.pack("!HH", int(dns.rdatatype.SOA), _CLASS_IN)
    first = {}

    def put_owner(name):
        if name in first:
            out.extend(struct.pack("!H", 0xC000 | first[name]))
            return
        if len(out) < 0x3FFF:
            first[name] = len(out)
        relative = name[:-len(zone)].rstrip(".") if name != zone else ""
        for label in relative.split(".") if relative else []:
            out.extend(struct.pack("!B", len(label)) + label.encode("ascii"))
        out.extend(b"\xc0\x0c")  # the zone name in the zone section

    prerequisites = updates = 0
    for (name, rtype), wanted in expect.items():
        rdtype = int(dns.rdatatype.from_text(rtype))
        if wanted is None:
            put_owner(name)
            out += struct.pack("!HHIH", rdtype, _CLASS_NONE, 0, 0)
            prerequisites += 1
            continue
        for value in wanted["values"]:
            rdata = _rdata_wire(rtype, value)
            put_owner(name)
            out += struct.pack("!HHIH", rdtype, _CLASS_IN, 0, len(rdata)) + rdata
            prerequisites += 1
    for change in changes:
        (name, rtype), after = change["key"], change["after"]
        rdtype = int(dns.rdatatype.from_text(rtype))
        put_owner(name)
        out += struct.pack("!HHIH", rdtype, _CLASS_ANY, 0, 0)
        updates += 1
        for value in after["values"] if after is not None else []:
            rdata = _rdata_wire(rtype, value)
            put_owner(name)
            out += struct.pack("!HHIH", rdtype, _CLASS_IN, after["ttl"], len(rdata)) + rdata
            updates += 1
    struct.pack_into("!HH", out, 6, prerequisites, updates)
    return bytes(out)


def sign_update(wire, key_name, key):
    """Append a TSIG record (RFC 8945) to an unsigned message; returns (signed wire, request MAC)."""
    msg_id = struct.unpack("!H", wire[:2])[0]
    unsigned = dns.rdtypes.ANY.TSIG.TSIG(dns.rdataclass.ANY, dns.rdatatype.TSIG, key.algorithm, 0, 300, b"",
                                         msg_id, 0, b"")
    signed = dns.tsig.sign(wire, key, unsigned, int(time.time()), b"")[0]
    rdata = signed.to_wire()
    tsig_rr = key_name.to_wire() + struct.pack("!HHIH", int(dns.rdatatype.TSIG), _CLASS_ANY, 0, len(rdata)) + rdata
    out = bytearray(wire + tsig_rr)
    struct.pack_into("!H", out, 10, 1)  # ARCOUNT
    return bytes(out), signed.mac


def _tsig_error(exc):
    for name in ("PeerBadKey", "PeerBadSignature", "PeerBadTime", "PeerBadTruncation"):
        if isinstance(exc, getattr(dns.tsig, name, ())):
            return name.replace("Peer", "").upper()
    return type(exc).__name__
