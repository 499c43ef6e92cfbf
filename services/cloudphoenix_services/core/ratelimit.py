"""In-process rate-limit storage for Flask-Limiter that does not start a thread per request.

limits' MemoryStorage (5.8) starts a 10 ms ``threading.Timer`` on nearly every hit to sweep
expired counters; under load that thread churn cost more than the rest of the hardening put
together (measured with bench/bench_services.py). Counters already expire lazily on read, so
the sweep is only garbage collection: once a second is plenty. Selected for ``memory://``.
"""

from __future__ import annotations

import time

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
