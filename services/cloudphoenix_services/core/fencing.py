"""Write fencing: accept writes only while this region is confirmed active within the lease.

The fencing record (``_active.<zone>`` TXT ``"region=east epoch=1"``) is what the failover
runbook compare-and-swaps; every claim raises the epoch. Each worker re-reads it in the
background every lease/3 seconds. A positive answer renews the lease; an answer naming another
region revokes it at once; no answer (DNS down, partition) or a malformed record lets the lease
run out, so an isolated old primary region stops taking writes within ``lease_seconds`` even
though nobody can reach it. An answer with a lower epoch than the highest this worker has seen
is stale (a lagging secondary DNS server, a late response) and is ignored.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from dataclasses import dataclass, replace

from .config import Settings

log = logging.getLogger("cloudphoenix.fencing")


@dataclass(frozen=True)
class FencingState:
    active_region: str | None  # the region the record named at the last answer
    epoch: int | None  # its epoch: the highest this worker has seen (a lower one is never accepted)
    confirmed_at: float | None  # monotonic time of the last answer naming our region
    last_error: str | None


class MalformedRecord(ValueError):
    """The fencing record is not one TXT record ``region=<name> epoch=<n> [run=<owner>]``."""


_EPOCH = re.compile(r"[0-9]+")  # ASCII digits only: str.isdigit() also takes "²", which int() refuses


def parse_record(text: str) -> tuple[str, int]:
    """``region=east epoch=1 run=h/1/2`` -> ("east", 1), else MalformedRecord.

    The same rules as the runbook's parse_active (plugins/module_utils/_failover.py; service code
    never imports Ansible, a test holds the two together): every word is key=value with a value,
    no key twice, region and a non-negative decimal epoch present. Unknown keys are ignored, so a
    later runbook can add words without fencing the services that run now.
    """
    fields: dict[str, str] = {}
    for word in text.split():
        key, sep, value = word.partition("=")
        if not (sep and key and value):
            raise MalformedRecord(f"{word!r} is not a key=value word")
        if key in fields:
            raise MalformedRecord(f"{key!r} appears twice")
        fields[key] = value
    if "region" not in fields:
        raise MalformedRecord("no region= word")
    epoch = fields.get("epoch")
    if epoch is None:
        raise MalformedRecord("no epoch= word")
    if not _EPOCH.fullmatch(epoch):
        raise MalformedRecord(f"epoch {epoch!r} is not a whole number >= 0")
    return fields["region"], int(epoch)


def parse_answer(texts: list[str]) -> tuple[str, int]:
    """The TXT records of the answer -> (region, epoch); several records are malformed (which one counts?)."""
    if len(texts) > 1:
        raise MalformedRecord(f"{len(texts)} TXT records, not one: {texts!r}")
    return parse_record(texts[0])


class Fence:
    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.fencing_enabled
        self.region = settings.region
        self.record = settings.fencing_record.rstrip(".") + "."
        self.server = settings.fencing_dns_server
        self.port = settings.fencing_dns_port
        self.lease_seconds = settings.fencing_lease_seconds
        self._state = FencingState(None, None, None, None)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def state(self) -> FencingState:
        return self._state

    def refresh(self) -> FencingState:
        """Ask the DNS server once; update the lease from the answer."""
        # Imported here: dnspython is ~15% of a worker's import time and only fencing uses it.
        import dns.exception
        import dns.message
        import dns.query
        import dns.rdatatype

        timeout = max(0.2, min(2.0, self.lease_seconds / 4))
        try:
            query = dns.message.make_query(self.record, dns.rdatatype.TXT)
            answer = dns.query.udp(query, self.server, port=self.port, timeout=timeout)
            texts = [
                b"".join(rdata.strings).decode()
                for rrset in answer.answer
                for rdata in rrset
                if rrset.rdtype == dns.rdatatype.TXT
            ]
            if not texts:
                raise ValueError(f"no TXT record at {self.record}")
            region, epoch = parse_answer(texts)
        except MalformedRecord as exc:
            return self._failed(f"malformed fencing record {self.record}: {exc}", loud=True)
        except (dns.exception.DNSException, OSError, ValueError, UnicodeDecodeError) as exc:
            return self._failed(f"{type(exc).__name__}: {exc}")
        return self._answered(region, epoch)

    def _failed(self, why: str, loud: bool = False) -> FencingState:
        """No usable answer: keep the state, so the lease runs out unless a good answer comes in time."""
        with self._lock:
            if loud and why != self._state.last_error:  # once per change, not every lease/3 s
                log.error("%s; the write lease is not renewed", why)
            self._state = replace(self._state, last_error=why)
            return self._state

    def _answered(self, region: str, epoch: int) -> FencingState:
        with self._lock:
            highest = self._state.epoch
            if highest is not None and epoch < highest:
                # older than a claim already seen: neither a renewal nor a revocation
                why = f"stale answer ignored: region {region} at epoch {epoch} < epoch {highest} already seen"
                if why != self._state.last_error:
                    log.warning("fencing record %s: %s", self.record, why)
                self._state = replace(self._state, last_error=why)
                return self._state
            confirmed = time.monotonic() if region == self.region else None
            if self._state.active_region != region:
                log.warning("fencing record names region %s (epoch %s); this is %s", region, epoch, self.region)
            self._state = FencingState(region, epoch, confirmed, None)
            return self._state

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.refresh()
            self._stop.wait(self.lease_seconds / 3)

    def start(self) -> None:
        """Start the background refresher in this process (called lazily, after gunicorn forks)."""
        if not self.enabled or (self._thread and self._thread.is_alive()):
            return
        with self._lock:
            if self._thread and self._thread.is_alive():
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="fencing-lease", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def writes_allowed(self) -> tuple[bool, str, int]:
        """(allowed, reason, retry_after_seconds) for a write arriving now."""
        if not self.enabled:
            return True, "fencing disabled", 0
        self.start()
        state = self._state
        if state.confirmed_at is None and state.active_region is None and state.last_error is None:
            state = self.refresh()  # first request in a fresh worker: ask now instead of refusing
        retry_after = max(1, math.ceil(self.lease_seconds))
        if state.confirmed_at is None:
            if state.active_region and state.active_region != self.region:
                return (
                    False,
                    f"region {state.active_region} is active (epoch {state.epoch}), not {self.region}",
                    retry_after,
                )
            return False, f"region {self.region} has not confirmed it is active", retry_after
        age = time.monotonic() - state.confirmed_at
        if age > self.lease_seconds:
            why = f": {state.last_error}" if state.last_error else ""
            return False, f"lease not renewed for {age:.1f}s (lease {self.lease_seconds:g}s){why}", retry_after
        return True, "lease held", 0

    def describe(self) -> dict[str, object]:
        allowed, reason, _retry_after = self.writes_allowed()
        state = self._state
        return {
            "enabled": self.enabled,
            "region": self.region,
            "writes_allowed": allowed,
            "reason": reason,
            "active_region": state.active_region,
            "epoch": state.epoch,
            "lease_age_s": None if state.confirmed_at is None else round(time.monotonic() - state.confirmed_at, 2),
            "last_error": state.last_error,
        }
