"""Rate limiting with Flask-Limiter's storage and strategy, checked by one lean hook per request.

Found with bench/bench_services.py (per-request CPU, pinned flask-limiter==4.1.1, limits==5.8.0):

1. limits' MemoryStorage starts a 10 ms ``threading.Timer`` on nearly every hit to sweep expired
   counters (a thread per request under load). Counters already expire lazily on read, so the
   sweep is only garbage collection: once a second is plenty. Selected for ``memory://``.
2. Flask-Limiter's own before/after/teardown hooks cost 50-100 us per request even when they have
   nothing to check (generic resolution of default, application, blueprint and meta limits,
   exemption scopes, a per-request context), about a third of the whole hardening budget. The
   service has one limit: per client address and endpoint, the same for every route. So
   Flask-Limiter still builds the storage and the strategy from the settings (and
   ``@limiter.limit`` would still work on a route), but its generic hooks are detached and
   ``ClientRateLimit.check`` hits the strategy directly: ~5 us. The storage keys are the ones
   Flask-Limiter uses for a default limit, so a shared ``redis://`` storage counts alike.
"""

from __future__ import annotations

import functools
import math
import time

from flask import Flask, request
from flask_limiter import Limiter
from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage

from .errors import RateLimited

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


class ClientRateLimit:
    """``limit`` (e.g. "50 per second") per client address and endpoint; exempt blueprints skip it."""

    def __init__(self, limiter: Limiter, limit: str, exempt_blueprints: frozenset[str]) -> None:
        self.limit = limit
        self.items: list[RateLimitItem] = parse_many(limit)  # parsed once, not per request
        self.enabled = limiter.enabled  # false: RATE_LIMIT_ENABLED=false, a gateway in front limits
        # Flask-Limiter's strategy (fixed window) over its storage; a disabled Limiter builds neither.
        self.strategy = limiter.limiter if self.enabled else None
        self.exempt_prefixes = tuple(f"{name}." for name in exempt_blueprints)

    def check(self) -> None:
        """Count this request; raise a 429 problem (with Retry-After) when a limit is exhausted."""
        endpoint = request.endpoint
        if self.strategy is None or endpoint is None or endpoint.startswith(self.exempt_prefixes):
            return  # unrouted requests (404/405) and probes are not counted, as with Flask-Limiter
        client = request.environ.get("REMOTE_ADDR") or "127.0.0.1"
        for item in self.items:
            if not self.strategy.hit(item, client, endpoint):
                reset_at = self.strategy.get_window_stats(item, client, endpoint).reset_time
                raise RateLimited(f"Rate limit {self.limit} exceeded.", max(1, math.ceil(reset_at - time.time())))


def detach_generic_hooks(app: Flask, limiter: Limiter) -> None:
    """Remove the three hooks Flask-Limiter 4.1 registers on ``app`` (see the module docstring).

    Fails at boot, not silently at run time, if a Flask-Limiter upgrade registers them differently.
    """

    def owned(hook: object) -> bool:
        if isinstance(hook, functools.partial):
            return bool(hook.args) and hook.args[0] is limiter
        return getattr(hook, "__self__", None) is limiter

    expected = 3 if limiter.enabled else 0  # a disabled Limiter registers nothing
    removed = 0
    for registry in (app.before_request_funcs, app.after_request_funcs, app.teardown_request_funcs):
        hooks = registry.get(None, [])
        kept = [hook for hook in hooks if not owned(hook)]
        removed += len(hooks) - len(kept)
        registry[None] = kept
    if removed != expected:
        raise RuntimeError(f"expected {expected} Flask-Limiter hooks on the app, found {removed} (see ratelimit.py)")
