"""service_a: the orders API (``gunicorn 'cloudphoenix_services.service_a:create_app()'``)."""

from __future__ import annotations

from flask import Flask

from ..core import ServiceSpec, Settings, create_service_app
from ..core.app import EXTENSION
from .api import MIGRATIONS, orders

SPEC = ServiceSpec(name="service_a", blueprint=orders, migrations=MIGRATIONS, openapi_package=__name__)


# Every table this service writes: each gets the fence trigger (core/token.py) at migrate.
FENCED_TABLES = ("orders",)


def create_app(settings: Settings | None = None) -> Flask:
    app = create_service_app(SPEC, settings)
    state = app.extensions[EXTENSION]
    state.db.follow_lease(lambda: state.fence.state.epoch)  # the token; read only, no DNS refresh
    return app
