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
import socket
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
    import dns.rdataclass
    import dns.rdataset
    import dns.rdatatype
    import dns.rdtypes.IN.A
    import dns.rdtypes.IN.AAAA
    import dns.tsig
    import dns.update
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

    def build_update(self, changes, expect):
        update = dns.update.UpdateMessage(self.zone, keyring=self.keyring, keyname=self.key_name,
                                          keyalgorithm=self.key_algorithm or dns.tsig.default_algorithm)
        for (name, rtype), wanted in expect.items():
            if wanted is None:
                update.absent(name, rtype)
            else:
                update.present(name, _rdataset(rtype, 0, wanted["values"]))
        for change in changes:
            name, rtype = change["key"]
            after = change["after"]
            if after is None:
                update.delete(name, rtype)
            else:
                update.replace(name, _rdataset(rtype, after["ttl"], after["values"]))
        return update

    def plan_batches(self, changes, expect, allow_split):
        for change in changes:
            if not in_zone(change["key"][0], self.zone):
                raise ValidationError("%s is not in zone %s" % (key_text(change["key"]), self.zone))
        update = self.build_update(changes, expect)
        try:
            wire = update.to_wire()  # signed; reused by the first send (a retry signs afresh)
        except dns.exception.TooBig:
            raise ValidationError(
                "the change (%d records) needs an UPDATE message over the %d-byte DNS limit: it cannot be "
                "applied atomically; send fewer records per call" % (len(changes), MAX_MESSAGE)) from None
        self._prepared = (id(changes), update, wire)
        return [changes]

    def apply(self, batch, expect):
        started = time.monotonic()
        prepared, self._prepared = self._prepared, None
        if prepared is not None and prepared[0] == id(batch):
            update, wire = prepared[1], prepared[2]
        else:
            update = self.build_update(batch, expect)
            wire = None
        response = self._send(update, wire)
        rcode = dns.rcode.to_text(response.rcode())
        if rcode == "NOERROR":
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
    def _send(self, update, wire=None):
        expiration = time.time() + self.query_timeout
        try:
            sock = socket.create_connection(self.server, timeout=self.query_timeout)
        except OSError as exc:
            raise TransientError("%s unreachable: %s" % (server_label(self.server), exc)) from exc
        try:
            dns.query.send_tcp(sock, wire if wire is not None else update, expiration)
            received = dns.query.receive_tcp(sock, expiration, keyring=update.keyring, request_mac=update.mac)
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


def _rdataset(rtype, ttl, values):
    """An Rdataset from canonical values; A/AAAA built directly (the text parser is the slow part at 1000s)."""
    if rtype == "A":
        rdatas = [dns.rdtypes.IN.A.A(dns.rdataclass.IN, dns.rdatatype.A, v) for v in values]
    elif rtype == "AAAA":
        rdatas = [dns.rdtypes.IN.AAAA.AAAA(dns.rdataclass.IN, dns.rdatatype.AAAA, v) for v in values]
    else:
        return dns.rdataset.from_text_list("IN", rtype, ttl, values)
    return dns.rdataset.from_rdata_list(ttl, rdatas)


def _tsig_error(exc):
    for name in ("PeerBadKey", "PeerBadSignature", "PeerBadTime", "PeerBadTruncation"):
        if isinstance(exc, getattr(dns.tsig, name, ())):
            return name.replace("Peer", "").upper()
    return type(exc).__name__
