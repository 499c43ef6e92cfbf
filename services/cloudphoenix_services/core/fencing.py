"""Write fencing: accept writes only while this region is confirmed active within the lease.

The fencing record (``_active.<zone>`` TXT ``"region=east epoch=1"``) is what the failover
runbook compare-and-swaps. Each worker re-reads it in the background every lease/3 seconds.
A positive answer renews the lease; an answer naming another region revokes it at once; no
answer (DNS down, partition) lets the lease run out, so an isolated old primary region stops
taking writes within ``lease_seconds`` even though nobody can reach it.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass

from .config import Settings

log = logging.getLogger("cloudphoenix.fencing")


@dataclass(frozen=True)
class FencingState:
    active_region: str | None  # the region the record named at the last answer
    epoch: int | None
    confirmed_at: float | None  # monotonic time of the last answer naming our region
    last_error: str | None


def parse_record(text: str) -> tuple[str | None, int | None]:
    """``region=east epoch=1`` -> ("east", 1); unknown words are ignored, missing ones are None."""
    fields = dict(part.split("=", 1) for part in text.split() if "=" in part)
    epoch = fields.get("epoch")
    return fields.get("region"), int(epoch) if epoch and epoch.isdigit() else None


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
            region, epoch = parse_record(texts[0])
        except (dns.exception.DNSException, OSError, ValueError, UnicodeDecodeError) as exc:
            with self._lock:
                self._state = FencingState(
                    self._state.active_region,
                    self._state.epoch,
                    self._state.confirmed_at,
                    f"{type(exc).__name__}: {exc}",
                )
            return self._state
        with self._lock:
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
            return False, f"lease not renewed for {age:.1f}s (lease {self.lease_seconds:g}s)", retry_after
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
