# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A client that writes orders through the public DNS name, for drills and benchmarks.

It resolves the name through the given DNS server and keeps the answer for its TTL (as a
well-behaved client does), POSTs one order after another with a unique Idempotency-Key, and
appends every attempt to a JSON-lines log: start, end, ok, status, address, order id. The
figures of a drill come from that log: the client-seen outage (first failed write after the
trigger to the first successful write after it) and the acknowledged writes that are missing on
the new primary.

Run as a process: ``python -m ...._failover_writer URL DNS_SERVER DNS_PORT LOG STOPFILE [INTERVAL]``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import sys
import time
import uuid

import socket

try:
    from http.client import HTTPConnection, HTTPException
    from urllib.parse import urlsplit
except ImportError:  # pragma: no cover
    pass


def resolve(name, server, port, timeout=1.0):
    """(address, ttl) of name's A record at server:port, via dnspython."""
    import dns.message
    import dns.query
    import dns.rdatatype

    query = dns.message.make_query(name, dns.rdatatype.A)
    answer = dns.query.udp(query, server, port=int(port), timeout=timeout)
    for rrset in answer.answer:
        if rrset.rdtype == dns.rdatatype.A:
            return rrset[0].address, rrset.ttl
    raise ValueError("no A record for %s" % name)


def write_loop(url, dns_server, dns_port, log_path, stop_file, interval=0.05, timeout=1.0):
    parts = urlsplit(url)
    host, port = parts.hostname, parts.port or 80
    cached = None  # (address, expires)
    body = json.dumps({"customer_id": "drill", "currency": "EUR",
                       "items": [{"sku": "DRILL-1", "quantity": 1, "unit_price_cents": 100}]}).encode()
    with open(log_path, "a") as log:
        while not os.path.exists(stop_file):
            started = time.time()
            entry = {"start": started, "ok": False}
            try:
                if cached is None or time.monotonic() >= cached[1]:
                    address, ttl = resolve(host, dns_server, dns_port, timeout)
                    cached = (address, time.monotonic() + ttl)
                entry["address"] = cached[0]
                connection = HTTPConnection(cached[0], port, timeout=timeout)
                try:
                    connection.request("POST", parts.path, body=body, headers={
                        "Content-Type": "application/json", "Host": "%s:%d" % (host, port),
                        "Idempotency-Key": "drill-%s" % uuid.uuid4()})
                    response = connection.getresponse()
                    payload = response.read()
                finally:
                    connection.close()
                entry["status"] = response.status
                entry["ok"] = response.status == 201
                if entry["ok"]:
                    entry["id"] = json.loads(payload.decode()).get("id")
            except (HTTPException, OSError, ValueError, socket.timeout) as exc:
                entry["error"] = type(exc).__name__
            except Exception as exc:  # noqa: BLE001 - dns exceptions and the like: a failed write
                entry["error"] = type(exc).__name__
            entry["end"] = time.time()
            log.write(json.dumps(entry) + "\n")
            log.flush()
            pause = interval - (entry["end"] - started)
            if pause > 0:
                time.sleep(pause)


def read_log(path):
    entries = []
    with open(path) as handle:
        for line in handle:
            line = line.strip()
            if line:
                try:
                    entries.append(json.loads(line))
                except ValueError:
                    continue  # a line cut by a kill
    return entries


def outage(entries, trigger):
    """Client-seen write outage after `trigger`: first failed write -> first successful write after it.

    Returns (seconds or None when no write failed, first_failure time, recovered time or None).
    """
    after = [entry for entry in entries if entry["start"] >= trigger or entry.get("end", 0) >= trigger]
    first_failure = next((entry for entry in after if not entry["ok"]), None)
    if first_failure is None:
        return None, None, None
    recovered = next((entry for entry in after if entry["ok"] and entry["start"] > first_failure["start"]), None)
    if recovered is None:
        return None, first_failure["start"], None
    return round(recovered["end"] - first_failure["start"], 3), first_failure["start"], recovered["end"]


def write_gap(entries, since):
    """Largest gap between two acknowledged writes after `since` (a switchover's client-seen gap)."""
    acked = [entry["end"] for entry in entries if entry["ok"] and entry["end"] >= since]
    gaps = [acked[index] - acked[index - 1] for index in range(1, len(acked))]
    return round(max(gaps), 3) if gaps else None


def acknowledged_ids(entries):
    return [entry["id"] for entry in entries if entry["ok"] and entry.get("id")]


if __name__ == "__main__":  # pragma: no cover
    args = sys.argv[1:]
    write_loop(args[0], args[1], int(args[2]), args[3], args[4], float(args[5]) if len(args) > 5 else 0.05)
