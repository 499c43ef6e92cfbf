"""service_b: the documents API (``gunicorn 'cloudphoenix_services.service_b:create_app()'``)."""

from __future__ import annotations

from flask import Flask

from ..core import ServiceSpec, Settings, create_service_app
from .api import MIGRATIONS, documents

SPEC = ServiceSpec(
    name="service_b",
    blueprint=documents,
    migrations=MIGRATIONS,
    openapi_package=__name__,
    needs_bucket=True,
    default_max_request_bytes=10 * 1024 * 1024,
)


def create_app(settings: Settings | None = None) -> Flask:
    return create_service_app(SPEC, settings)
