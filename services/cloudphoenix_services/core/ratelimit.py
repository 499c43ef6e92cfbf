"""Flask-Limiter without its two per-request hot spots (found with bench/bench_services.py).

1. limits' MemoryStorage (5.8) starts a 10 ms ``threading.Timer`` on nearly every hit to sweep
   expired counters; under load that thread churn cost more than the rest of the hardening put
   together. Counters already expire lazily on read, so the sweep is only garbage collection:
   once a second is plenty. Selected for ``memory://``.
2. Flask-Limiter (4.1) re-parses the limit string ("50 per second") on every request; the parse
   is pure (same string, same immutable items), so it is cached. Measured: the limiter's cost per
   request fell from ~250-400 us to ~80-190 us on the lab machine.
Both touch library internals of the pinned versions (flask-limiter==4.1.1, limits==5.8.0); the
rate-limit tests prove limits are still enforced.
"""

from __future__ import annotations

import functools
import time

import flask_limiter._limits as flask_limiter_limits
from limits.storage import MemoryStorage

SCHEME = "cpmemory"
SWEEP_INTERVAL_S = 1.0


class LeanMemoryStorage(MemoryStorage):
    STORAGE_SCHEME = [SCHEME]  # noqa: RUF012 - limits' registry reads this class attribute

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options: str) -> None:
        super().__init__(uri, wrap_exceptions, **options)
        self._next_sweep = 0.0

    def _MemoryStorage__schedule_expiry(self) -> None:  # overrides the private hook, pinned limits==5.8.0
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + SWEEP_INTERVAL_S
            super()._MemoryStorage__schedule_expiry()  # type: ignore[misc]


def storage_uri(configured: str) -> str:
    """``memory://`` -> this storage; anything else (redis://, memcached://) is used as configured."""
    return f"{SCHEME}://" if configured == "memory://" else configured


def cache_limit_parsing() -> None:
    """Parse each limit string once per process instead of once per request (idempotent)."""
    parse_many = flask_limiter_limits.parse_many
    if not hasattr(parse_many, "cache_info"):
        flask_limiter_limits.parse_many = functools.lru_cache(maxsize=64)(parse_many)
