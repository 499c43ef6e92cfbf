"""Service errors and their RFC 9457 problem+json form.

Handlers turn every failure into a problem document: a stable ``type``, a human ``title``, the
status, and for validation a list of field errors. Stack traces and SQL stay in the logs.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, json, request
from werkzeug.exceptions import HTTPException

from .observability import current_request_id

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://problems.cloudphoenix.dev/"
log = logging.getLogger("cloudphoenix.errors")


class ServiceError(Exception):
    """Base of every error a service reports on purpose."""

    status = 500
    slug = "internal-error"
    title = "Internal error"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail
        self.extra = extra

    def headers(self) -> dict[str, str]:
        return {}


class BadRequest(ServiceError):
    status, slug, title = 400, "bad-request", "Bad request"


class ValidationError(ServiceError):
    status, slug, title = 422, "validation-error", "Request validation failed"

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("One or more fields are invalid.", errors=errors)


class NotFound(ServiceError):
    status, slug, title = 404, "not-found", "Resource not found"


class Conflict(ServiceError):
    status, slug, title = 409, "conflict", "Conflict"


class IdempotencyKeyReused(ServiceError):
    status, slug, title = 422, "idempotency-key-reused", "Idempotency-Key reused with a different request"


class DatabaseError(ServiceError):
    """The database could not serve the request after the retries for transient errors."""

    status, slug, title = 503, "database-unavailable", "Database unavailable"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "2"}


class StorageError(ServiceError):
    status, slug, title = 503, "storage-unavailable", "Object storage unavailable"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "2"}


class _RetryAfter(ServiceError):
    """An error the client should retry after ``retry_after`` seconds (the Retry-After header)."""

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class WritesFenced(_RetryAfter):
    """This region has not confirmed, within its lease, that it is the active one."""

    status, slug, title = 503, "writes-fenced", "Writes are fenced in this region"


class RateLimited(_RetryAfter):
    status, slug, title = 429, "too-many-requests", "Too many requests"


def problem(
    status: int, slug: str, title: str, detail: str | None = None, headers: dict[str, str] | None = None, **extra: Any
) -> Response:
    body: dict[str, Any] = {"type": PROBLEM_BASE + slug, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body["instance"] = request.path
    request_id = current_request_id()
    if request_id:
        body["request_id"] = request_id
    body.update(extra)
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM_JSON)
    response.headers.update(headers or {})
    return response


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ServiceError)
    def _service_error(error: ServiceError) -> Response:
        if error.status >= 500 and not isinstance(
            error, WritesFenced
        ):  # fenced writes are expected in a passive region
            log.warning("request failed: %s: %s", error.slug, error)
        return problem(error.status, error.slug, error.title, error.detail, error.headers(), **error.extra)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        status = error.code or 500
        slug = (error.name or "error").lower().replace(" ", "-")
        headers = {k: v for k, v in error.get_headers() if k.lower() in {"allow", "retry-after"}}
        if status == 429:
            headers.setdefault("Retry-After", "1")
        return problem(status, slug, error.name, error.description, headers)

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        # The traceback goes to the log (with the request id); the client gets no internals.
        log.exception("unhandled error")
        return problem(500, ServiceError.slug, ServiceError.title, "An unexpected error occurred.")
