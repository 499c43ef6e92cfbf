"""JSON logs with the request id, Prometheus metrics that add up across gunicorn workers, tracing.

Multi-process metrics: gunicorn.conf.py sets PROMETHEUS_MULTIPROC_DIR before any worker imports
prometheus_client, so every worker writes its samples to shared files and /metrics sums them.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import sys
import time
from typing import Any

from flask import Flask, Response, g, has_request_context, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from .config import ConfigError, Settings

REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_ID_ENVIRON = "cloudphoenix.request_id"  # set by core.app.RequestEnvelope before Flask sees the request
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

REQUESTS = Counter("http_requests_total", "HTTP requests served", ["service", "method", "endpoint", "status"])
DURATION = Histogram(
    "http_request_duration_seconds",
    "Time spent serving a request",
    ["service", "method", "endpoint"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
DB_RETRIES = Counter("db_transient_retries_total", "Database operations retried after a transient error", ["service"])
WRITES_FENCED = Counter("writes_fenced_total", "Writes refused because the region lease is not held", ["service"])
LEASE_HELD = Gauge("fencing_lease_held", "1 while this worker may accept writes", ["service"], multiprocess_mode="max")
# Any other method a client sends is counted as "other": label values must stay a bounded set.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_MAX_CACHED_LABEL_SETS = 1024


class RequestMetrics:
    """Duration histogram and request counter per (method, endpoint, status), children cached.

    ``labels()`` takes a lock and validates its arguments on every call; the label sets a service
    sees are few (route templates, not raw paths), so each pair of children is looked up once.
    """

    def __init__(self, service: str) -> None:
        self.service = service
        self._children: dict[tuple[str, str, str], tuple[Any, Any]] = {}

    def observe(self, method: str, endpoint: str, status: str, seconds: float) -> None:
        key = (method, endpoint, status)
        children = self._children.get(key)
        if children is None:
            label = method if method in _METHODS else "other"
            children = (
                DURATION.labels(self.service, label, endpoint),
                REQUESTS.labels(self.service, label, endpoint, status),
            )
            if len(self._children) < _MAX_CACHED_LABEL_SETS:
                self._children[key] = children
        children[0].observe(seconds)
        children[1].inc()


def current_request_id() -> str | None:
    """The id of the request being served (None outside a request)."""
    return request.environ.get(REQUEST_ID_ENVIRON) if has_request_context() else None


class JsonFormatter(logging.Formatter):
    """One JSON object per line; the request id and service come from the request context."""

    def __init__(self, service: str, region: str) -> None:
        super().__init__()
        self.service = service
        self.region = region

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "service": self.service,
            "region": self.region,
        }
        if has_request_context():
            entry["request_id"] = request.environ.get(REQUEST_ID_ENVIRON)
            entry["method"] = request.method
            entry["path"] = request.path
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(settings.service_name, settings.region))
    root = logging.getLogger("cloudphoenix")
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    root.propagate = False


def request_id_from_header(value: str | None) -> str:
    """Keep a caller's id when it is safe to echo and log; otherwise make one."""
    if value and _SAFE_REQUEST_ID.match(value):
        return value
    return secrets.token_hex(16)


def metrics_response() -> Response:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        payload = generate_latest(registry)
    else:
        payload = generate_latest()
    return Response(payload, mimetype=CONTENT_TYPE_LATEST.split(";")[0], headers={"Cache-Control": "no-store"})


def configure_tracing(app: Flask, settings: Settings) -> Any:
    """OpenTelemetry spans per request, only when an exporter is configured (off by default)."""
    if settings.otel_exporter == "none":
        return None
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    if settings.otel_exporter == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as exc:
            raise ConfigError(
                "CLOUDPHOENIX_OTEL_EXPORTER=otlp needs the opentelemetry-exporter-otlp-proto-http package"
            ) from exc
        exporter = OTLPSpanExporter()  # endpoint from OTEL_EXPORTER_OTLP_ENDPOINT, the SDK's own setting
    else:
        exporter = ConsoleSpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": settings.service_name}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    tracer = provider.get_tracer("cloudphoenix.services")

    @app.before_request
    def _start_span() -> None:
        span = tracer.start_span(f"{request.method} {request.path}", kind=trace.SpanKind.SERVER)
        span.set_attribute("http.request.method", request.method)
        span.set_attribute("cloudphoenix.request_id", request.environ.get(REQUEST_ID_ENVIRON, ""))
        g.otel_span = span

    @app.teardown_request
    def _end_span(error: BaseException | None) -> None:
        span = g.pop("otel_span", None)
        if span is not None:
            if error is not None:
                span.record_exception(error)
            span.end()

    return provider
