"""The app factory every service uses: settings, errors, logs, metrics, limits, fencing, ops endpoints.

A service contributes a blueprint, its migrations and its OpenAPI document (``ServiceSpec``);
everything that makes it production-worthy lives here once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import wraps
from importlib import resources
from typing import Any, TypeVar

from flask import Blueprint, Flask, Response, current_app, g, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from .config import Settings, load_settings
from .db import Database
from .errors import BadRequest, ServiceError, WritesFenced, problem, register_error_handlers
from .fencing import Fence
from .observability import (
    DB_RETRIES,
    DURATION,
    LEASE_HELD,
    REQUEST_ID_HEADER,
    REQUESTS,
    WRITES_FENCED,
    configure_logging,
    configure_tracing,
    metrics_response,
    request_id_from_header,
)
from .ratelimit import cache_limit_parsing, storage_uri
from .storage import Storage

F = TypeVar("F", bound=Callable[..., Any])
EXTENSION = "cloudphoenix"


@dataclass(frozen=True)
class ServiceSpec:
    """What a thin service adds to the core."""

    name: str
    blueprint: Blueprint
    migrations: list[str]
    openapi_package: str  # package holding openapi.yaml
    needs_bucket: bool = False
    default_max_request_bytes: int = 64 * 1024


@dataclass
class Runtime:
    """Per-process handles, reachable from views via ``runtime()``."""

    spec: ServiceSpec
    settings: Settings
    db: Database
    fence: Fence
    storage: Storage | None
    limiter: Limiter
    openapi: bytes = field(repr=False, default=b"")
    tracer_provider: Any = None

    def close(self) -> None:
        """Stop background work, close the pool, flush spans (gunicorn's worker_exit calls this)."""
        self.fence.stop()
        self.db.close()
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()


def runtime() -> Runtime:
    return current_app.extensions[EXTENSION]


def create_service_app(spec: ServiceSpec, settings: Settings | None = None) -> Flask:
    """Build the Flask app; a bad setting raises ConfigError here, before any request."""
    settings = settings or load_settings(
        spec.name, needs_bucket=spec.needs_bucket, default_max_request_bytes=spec.default_max_request_bytes
    )
    configure_logging(settings)
    app = Flask(spec.name)
    app.config.update(MAX_CONTENT_LENGTH=settings.max_request_bytes, JSON_SORT_KEYS=False)
    app.json.sort_keys = False

    cache_limit_parsing()
    limiter = Limiter(
        get_remote_address,
        app=app,
        default_limits=[settings.rate_limit],
        storage_uri=storage_uri(settings.rate_limit_storage_uri),
        headers_enabled=False,
        enabled=settings.rate_limit_enabled,  # off only where a gateway in front already limits
    )
    state = Runtime(
        spec=spec,
        settings=settings,
        db=Database(settings, on_retry=DB_RETRIES.labels(spec.name).inc),
        fence=Fence(settings),
        storage=Storage(settings) if spec.needs_bucket else None,
        limiter=limiter,
        openapi=resources.files(spec.openapi_package).joinpath("openapi.yaml").read_bytes(),
    )
    app.extensions[EXTENSION] = state

    register_error_handlers(app)

    @app.errorhandler(429)
    def _rate_limited(error: Exception) -> Response:
        # Limiter's own headers would also stamp Retry-After on 503s; set it only where it is meant.
        current = limiter.current_limit
        wait = max(1, math.ceil(current.reset_at - time.time())) if current is not None else 1
        return problem(
            429,
            "too-many-requests",
            "Too many requests",
            f"Rate limit {settings.rate_limit} exceeded.",
            {"Retry-After": str(wait)},
        )

    _install_request_hooks(app, settings)
    state.tracer_provider = configure_tracing(app, settings)
    ops = _ops_blueprint()
    limiter.exempt(ops)  # probes and scrapes are never rate limited
    app.register_blueprint(ops)
    app.register_blueprint(spec.blueprint)
    return app


def _install_request_hooks(app: Flask, settings: Settings) -> None:
    service = settings.service_name
    security_headers = {
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'; base-uri 'none'",
        "Referrer-Policy": "no-referrer",
        "Cross-Origin-Resource-Policy": "same-origin",
    }
    if settings.hsts_max_age:
        security_headers["Strict-Transport-Security"] = f"max-age={settings.hsts_max_age}; includeSubDomains"

    @app.before_request
    def _begin() -> None:
        g.started = time.perf_counter()
        g.request_id = request_id_from_header(request.headers.get(REQUEST_ID_HEADER))

    @app.after_request
    def _finish(response: Response) -> Response:
        response.headers[REQUEST_ID_HEADER] = g.get("request_id", "")
        for name, value in security_headers.items():
            response.headers.setdefault(name, value)
        response.headers.setdefault("Cache-Control", "no-store")
        endpoint = request.url_rule.rule if request.url_rule is not None else "unmatched"
        if endpoint != "/metrics":
            elapsed = time.perf_counter() - g.get("started", time.perf_counter())
            DURATION.labels(service, request.method, endpoint).observe(elapsed)
            REQUESTS.labels(service, request.method, endpoint, str(response.status_code)).inc()
        return response


def _ops_blueprint() -> Blueprint:
    ops = Blueprint("ops", __name__)

    @ops.get("/healthz")
    def healthz() -> tuple[dict[str, str], int]:
        """Liveness: the process serves requests; dependencies are /readyz's business."""
        return {"status": "ok", "service": runtime().spec.name}, 200

    @ops.get("/readyz")
    def readyz() -> tuple[dict[str, Any], int]:
        """Readiness: a writable database (and storage for documents), each with its latency."""
        state = runtime()
        checks: dict[str, Any] = {}
        ok, latency, error = state.db.check_writable()
        checks["database"] = {"ok": ok, "latency_ms": latency, **({"error": error} if error else {})}
        if state.storage is not None:
            ok, latency, error = state.storage.check()
            checks["storage"] = {"ok": ok, "latency_ms": latency, **({"error": error} if error else {})}
        ready = all(check["ok"] for check in checks.values())
        fencing = state.fence.describe()  # reported, not required: a passive region still serves reads
        return {
            "status": "ready" if ready else "not ready",
            "checks": checks,
            "fencing": fencing,
        }, 200 if ready else 503

    @ops.get("/metrics")
    def metrics() -> Response:
        return metrics_response()

    @ops.get("/openapi.yaml")
    def openapi() -> Response:
        return Response(runtime().openapi, mimetype="application/yaml")

    return ops


def fenced_write(view: F) -> F:
    """Refuse a write with 503 + Retry-After unless this region holds the fencing lease."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        state = runtime()
        allowed, reason, retry_after = state.fence.writes_allowed()
        if state.fence.enabled:
            LEASE_HELD.labels(state.spec.name).set(1 if allowed else 0)
        if not allowed:
            WRITES_FENCED.labels(state.spec.name).inc()
            raise WritesFenced(f"Writes are not accepted here now: {reason}.", retry_after)
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def json_object() -> dict[str, Any]:
    """The request body as a JSON object, or a 400/415 problem."""
    if not request.is_json:
        raise UnsupportedMediaType("Send the body as application/json.")
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object.")
    return body


class UnsupportedMediaType(ServiceError):
    status, slug, title = 415, "unsupported-media-type", "Unsupported media type"
