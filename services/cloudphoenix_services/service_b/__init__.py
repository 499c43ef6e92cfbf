"""service_b: the documents API (``gunicorn 'cloudphoenix_services.service_b:create_app()'``)."""

from __future__ import annotations

from flask import Flask

from ..core import ServiceSpec, Settings, create_service_app
from ..core.app import EXTENSION
from .api import MIGRATIONS, documents

SPEC = ServiceSpec(
    name="service_b",
    blueprint=documents,
    migrations=MIGRATIONS,
    openapi_package=__name__,
    needs_bucket=True,
    default_max_request_bytes=10 * 1024 * 1024,
)


# Every table this service writes: each gets the fence trigger (core/token.py) at migrate.
FENCED_TABLES = ("documents",)


def create_app(settings: Settings | None = None) -> Flask:
    app = create_service_app(SPEC, settings)
    state = app.extensions[EXTENSION]
    state.db.follow_lease(lambda: state.fence.state.epoch)  # the token; read only, no DNS refresh
    return app
