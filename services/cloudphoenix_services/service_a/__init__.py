"""service_a: the orders API (``gunicorn 'cloudphoenix_services.service_a:create_app()'``)."""

from __future__ import annotations

from flask import Flask

from ..core import ServiceSpec, Settings, create_service_app
from .api import MIGRATIONS, orders

SPEC = ServiceSpec(name="service_a", blueprint=orders, migrations=MIGRATIONS, openapi_package=__name__)


def create_app(settings: Settings | None = None) -> Flask:
    return create_service_app(SPEC, settings)
