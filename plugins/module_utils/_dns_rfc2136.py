# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""RFC 2136 dynamic updates (BIND and friends) with TSIG, over TCP, via dnspython.

One UPDATE message carries the whole change (atomic on the server); `expect` becomes
update prerequisites (RFC 2136 section 2.4: value-dependent "RRset exists" / "RRset does
not exist"), so the server itself refuses a stale compare-and-swap. `require` (records the
change does not touch) becomes value-dependent "RRset exists" prerequisites in the same message.
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
    _rdtype,
    _read_name,
    _recv_exact,
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
        self.transfer = ZoneTransfer(self.zone, self.key_name, self.keyring[self.key_name] if self.keyring else None)

    # -- interface
    def resolve_zone(self):
        soa_serial(self.server, self.zone, timeout=self.query_timeout)

    def read(self, keys):
        if self.transfer.wanted(self.server, keys):
            got = self.transfer.read(self.server, keys, self.query_timeout)
            if got is not None:
                return got[1]
        return read_from_server(self.server, keys, timeout=self.query_timeout)

    def encode(self, changes, expect, require=None):
        """The unsigned UPDATE message (see encode_update)."""
        return encode_update(self.zone, changes, expect, random.SystemRandom().randrange(65536), require=require)

    def plan_batches(self, changes, expect, allow_split, require=None):
        for change in changes:
            if not in_zone(change["key"][0], self.zone):
                raise ValidationError("%s is not in zone %s" % (key_text(change["key"]), self.zone))
        wire = self.encode(changes, expect, require)
        if len(wire) + TSIG_ROOM > MAX_MESSAGE:
            raise ValidationError(
                "the change (%d records) needs an UPDATE message of %d bytes, over the %d-byte DNS limit: it cannot "
                "be applied atomically; send fewer records per call" % (len(changes), len(wire), MAX_MESSAGE))
        self._prepared = (id(changes), wire)
        return [changes]

    def apply(self, batch, expect, require=None):
        started = time.monotonic()
        prepared = self._prepared
        wire = prepared[1] if prepared is not None and prepared[0] == id(batch) else self.encode(batch, expect, require)
        response = self._send(wire)
        rcode = dns.rcode.to_text(response.rcode())
        if rcode == "NOERROR":
            self._prepared = None
            return {"rcode": rcode, "seconds": round(time.monotonic() - started, 4)}
        if rcode in _CONFLICT_RCODES and expect:
            raise ConflictError("compare-and-swap failed on the server (prerequisite not met, rcode %s): "
                                "the records changed since they were read; nothing changed" % rcode, rcode=rcode)
        if rcode in _CONFLICT_RCODES and require:
            raise ConflictError("prerequisite not met on the server (rcode %s): a required record changed since "
                                "it was read; nothing changed" % rcode, rcode=rcode)
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


def encode_update(zone, changes, expect, msg_id, require=None):
    """An unsigned RFC 2136 UPDATE in wire form, built directly (dnspython's builder costs ~0.1 s per
    1000 records). Owner names are compressed against the zone name at offset 12 and against their
    first occurrence. `expect` becomes prerequisites: value-dependent "RRset exists" (class IN,
    TTL 0) or "RRset does not exist" (class NONE); so does `require` (records not changed; always
    "RRset exists" with every required value: the server compares the whole RRset, RFC 2136 3.2.5).
    Each change deletes the RRset (class ANY) and, unless it is a deletion, adds the new RRs. The
    names were validated by _dns.absolute_name.
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
    for (name, rtype), wanted in list(expect.items()) + list((require or {}).items()):
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


# --------------------------------------------------------------------------- zone transfer (many records at once)

AXFR_MIN_KEYS = 25  # fewer records: one pipelined query each is as fast and needs no transfer permission
# A transfer costs ~4 us per RR in the zone (+ ~10 us per record decoded), a pipelined query ~25 us per record:
# a zone with more RRs than AXFR_RRS_BASE + AXFR_RRS_PER_KEY per record asked is read per name instead.
AXFR_RRS_BASE = 50
AXFR_RRS_PER_KEY = 4
_TYPE_SOA, _TYPE_TSIG, _TYPE_AXFR = 6, 250, 252


class TransferRefused(DnsError):
    """The server will not transfer the zone to us (or the zone is too large to be worth it): ask per name."""


class ZoneTransfer:
    """Reads many records of one server at once with a zone transfer (AXFR over TCP).

    Used for reading and waiting when at least `min_keys` records are asked and the zone is not much larger
    than the set asked: one transfer of a 1,100-record zone takes ~5-15 ms where 1,000 pipelined queries take
    ~25-50 ms. The request is TSIG-signed when the provider has a key (servers commonly allow transfers to
    key holders only) and then every signed answer message is verified (RFC 8945). A server that refuses
    (REFUSED, NOTAUTH, TSIG error, closed connection) or a zone far larger than the records asked is
    remembered and asked per name from then on (`refused`). Records are read as stored in the zone, so a
    wildcard does not count as the record (a per-name query would answer with it).
    """

    def __init__(self, zone, key_name=None, key=None, min_keys=AXFR_MIN_KEYS):
        self.zone = zone
        self.key_name = key_name
        self.key = key
        self.min_keys = min_keys
        self.rrs_base = AXFR_RRS_BASE
        self.rrs_per_key = AXFR_RRS_PER_KEY
        self.refused = {}  # server -> why it is asked per name
        self.transfers = {}  # server -> transfers done

    def wanted(self, server, keys):
        return len(keys) >= self.min_keys and server not in self.refused

    def read(self, server, keys, timeout):
        """(SOA serial, {key: rrset or None}), or None when the server will not transfer the zone (remembered)."""
        try:
            got = transfer_zone(server, self.zone, keys, key_name=self.key_name, key=self.key, timeout=timeout,
                                max_rrs=self.rrs_base + self.rrs_per_key * len(keys))
        except TransferRefused as exc:
            self.refused[server] = exc.msg
            return None
        self.transfers[server] = self.transfers.get(server, 0) + 1
        return got


def axfr_request(zone, msg_id, key_name=None, key=None):
    """(wire, request MAC): an AXFR query for `zone`, TSIG-signed when a key is given."""
    wire = struct.pack("!HHHHHH", msg_id, 0, 1, 0, 0, 0) + name_wire(zone) + struct.pack("!HH", _TYPE_AXFR, _CLASS_IN)
    if key is None:
        return wire, b""
    return sign_update(wire, key_name, key)


def transfer_zone(server, zone, keys, key_name=None, key=None, timeout=QUERY_TIMEOUT, max_rrs=None):
    """AXFR `zone` from `server`: (SOA serial, {key: rrset or None}) for `keys`.

    Raises TransferRefused (ask per name instead), TransientError (connection trouble: worth a retry) or
    DnsError (a signed answer that does not verify).
    """
    msg_id = random.SystemRandom().randrange(65536)
    wire, request_mac = axfr_request(zone, msg_id, key_name, key)
    reader = TransferReader(zone, keys, msg_id, key=key, request_mac=request_mac, max_rrs=max_rrs,
                            label=server_label(server))
    try:
        sock = socket.create_connection(server, timeout=timeout)
    except OSError as exc:
        raise TransientError("%s unreachable: %s" % (server_label(server), exc)) from exc
    try:
        sock.settimeout(timeout)
        sock.sendall(struct.pack("!H", len(wire)) + wire)
        while not reader.done:
            try:
                (length,) = struct.unpack("!H", _recv_exact(sock, 2))
            except EOFError:
                if reader.messages == 0:  # some servers just hang up on a transfer they do not allow
                    raise TransferRefused("%s closed the connection instead of transferring zone %s"
                                          % (server_label(server), zone)) from None
                raise
            reader.feed(_recv_exact(sock, length))
    except (OSError, EOFError, socket.timeout) as exc:
        raise TransientError("%s stopped answering the zone transfer: %s"
                             % (server_label(server), str(exc) or type(exc).__name__)) from exc
    finally:
        sock.close()
    return reader.serial, reader.result()


class TransferReader:
    """Parses the answer messages of one AXFR (RFC 5936) and verifies their TSIG (RFC 8945 section 5.3.1).

    Only the records asked for are decoded; the rest is skipped by length.
    """

    def __init__(self, zone, keys, msg_id, key=None, request_mac=b"", max_rrs=None, label="server"):
        self.zone = zone
        self.keys = list(keys)
        self.wanted = {(name, _rdtype(rtype)): (name, rtype) for name, rtype in self.keys}
        self.msg_id = msg_id
        self.key = key
        self.request_mac = request_mac
        self.max_rrs = max_rrs
        self.label = label
        self.messages = 0
        self.rrs = 0
        self.soas = 0
        self.serial = None
        self.done = False
        self.found = {}
        self._ctx = None
        self._last_signed = False

    def result(self):
        return {key: self.found.get(key) for key in self.keys}

    def _refused(self, why):
        raise TransferRefused("%s did not transfer zone %s: %s" % (self.label, self.zone, why))

    def feed(self, wire):
        qid, flags, qdcount, ancount, nscount, arcount = struct.unpack("!HHHHHH", wire[:12])
        first = self.messages == 0
        self.messages += 1
        if qid != self.msg_id:
            raise DnsError("%s answered the zone transfer with a foreign message id" % self.label)
        rcode = flags & 0xF
        if rcode:
            self._refused("rcode %s" % dns.rcode.to_text(rcode))
        if first and not ancount:
            self._refused("an empty answer")
        pos = 12
        for _dummy in range(qdcount):
            pos = _read_name(wire, pos)[1] + 4
        for _dummy in range(ancount):
            name, pos = _read_name(wire, pos)
            rdtype, rdclass, ttl, rdlen = struct.unpack("!HHIH", wire[pos:pos + 10])
            pos += 10
            self.rrs += 1
            if self.max_rrs is not None and self.rrs > self.max_rrs:
                self._refused("the zone holds more than %d records, too many for the %d asked (asking per name)"
                              % (self.max_rrs, len(self.keys)))
            if rdtype == _TYPE_SOA:
                if self.soas == 0:
                    if not first or name != self.zone:
                        raise DnsError("%s sent a zone transfer that does not start with the SOA of %s"
                                       % (self.label, self.zone))
                    self.serial = struct.unpack("!I", wire[pos + rdlen - 20:pos + rdlen - 16])[0]
                self.soas += 1
            elif self.soas == 0:
                raise DnsError("%s sent a zone transfer that does not start with the SOA of %s"
                               % (self.label, self.zone))
            key = self.wanted.get((name, rdtype))
            if key is not None:
                if rdtype == 1 and rdlen == 4:
                    value = socket.inet_ntop(socket.AF_INET, wire[pos:pos + 4])
                elif rdtype == 28 and rdlen == 16:
                    value = socket.inet_ntop(socket.AF_INET6, wire[pos:pos + 16])
                else:
                    value = dns.rdata.from_wire(rdclass, rdtype, wire, pos, rdlen, origin=None).to_text(
                        origin=dns.name.root, relativize=False)
                rrset = self.found.get(key)
                if rrset is None:
                    self.found[key] = {"name": key[0], "type": key[1], "ttl": ttl, "values": [value]}
                else:
                    rrset["ttl"] = min(rrset["ttl"], ttl)
                    if value not in rrset["values"]:
                        rrset["values"].append(value)
                        rrset["values"].sort()
            pos += rdlen
        self._verify(wire, pos, nscount, arcount, first)
        if self.soas >= 2:
            self.done = True
            if self.key is not None and not self._last_signed:
                raise DnsError("%s: the last message of the zone transfer is not signed" % self.label)

    def _verify(self, wire, pos, nscount, arcount, first):
        tsig = None
        for index in range(nscount + arcount):
            start = pos
            owner, pos = _read_name(wire, pos)
            rdtype, rdclass, _dummy_ttl, rdlen = struct.unpack("!HHIH", wire[pos:pos + 10])
            pos += 10
            if rdtype == _TYPE_TSIG and index == nscount + arcount - 1:
                tsig = (start, owner, dns.rdata.from_wire(rdclass, rdtype, wire, pos, rdlen, origin=None))
            pos += rdlen
        if self.key is None:
            return
        if tsig is None:
            if first:
                raise DnsError("%s answered a signed zone transfer request without a signature" % self.label)
            self._ctx.update(wire)  # RFC 8945 5.3.1: unsigned messages in between count towards the next MAC
            self._last_signed = False
            return
        start, owner, rdata = tsig
        try:
            self._ctx = dns.tsig.validate(wire, self.key, dns.name.from_text(owner), rdata, int(time.time()),
                                          self.request_mac, start, self._ctx, True)
        except dns.tsig.PeerError as exc:
            self._refused("TSIG %s" % _tsig_error(exc))
        except (dns.tsig.BadSignature, dns.tsig.BadKey, dns.tsig.BadAlgorithm, dns.tsig.BadTime,
                dns.exception.FormError) as exc:
            raise DnsError("%s: the zone transfer's TSIG signature does not verify (%s)"
                           % (self.label, type(exc).__name__)) from exc
        self._last_signed = True
