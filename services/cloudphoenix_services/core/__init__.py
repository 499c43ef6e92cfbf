"""The hardened core both services share: config, errors, database, storage, fencing, observability."""

from .app import ServiceSpec, create_service_app, fenced_write, json_object, runtime
from .config import ConfigError, Settings, load_settings
from .errors import (
    BadRequest,
    Conflict,
    DatabaseError,
    IdempotencyKeyReused,
    NotFound,
    ServiceError,
    StorageError,
    ValidationError,
    WritesFenced,
)

__all__ = [
    "BadRequest",
    "ConfigError",
    "Conflict",
    "DatabaseError",
    "IdempotencyKeyReused",
    "NotFound",
    "ServiceError",
    "ServiceSpec",
    "Settings",
    "StorageError",
    "ValidationError",
    "WritesFenced",
    "create_service_app",
    "fenced_write",
    "json_object",
    "load_settings",
    "runtime",
]
