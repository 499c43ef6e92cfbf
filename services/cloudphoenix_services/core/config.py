"""Settings from the environment, validated once at boot.

Every problem is collected and reported together, so a bad deployment fails before it binds a
port or opens a connection, with one message that names each variable and what is wrong.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

PREFIX = "CLOUDPHOENIX_"
_RATE_LIMIT = re.compile(r"^\d+\s*(/|per)\s*\d*\s*(second|minute|hour|day)s?$", re.IGNORECASE)
_REGION = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
_SECRET_FIELDS = frozenset({"db_password"})


class ConfigError(ValueError):
    """One or more settings are invalid; the message lists all of them."""


@dataclass(frozen=True)
class Settings:
    """Everything a service reads from its environment (``CLOUDPHOENIX_<NAME>``)."""

    service_name: str
    db_dsn: str
    db_password: str | None = field(default=None, repr=False)
    db_pool_max: int = 4
    db_connect_timeout_s: int = 3
    db_statement_timeout_ms: int = 5000
    db_retry_attempts: int = 4
    db_retry_max_wait_s: float = 1.0
    region: str = "local"
    max_request_bytes: int = 64 * 1024
    rate_limit_enabled: bool = True
    rate_limit: str = "50 per second"
    rate_limit_storage_uri: str = "memory://"
    fencing_enabled: bool = False
    fencing_record: str = "_active.phoenix.test"
    fencing_dns_server: str = "127.0.0.1"
    fencing_dns_port: int = 53
    fencing_lease_seconds: float = 10.0
    s3_bucket: str = ""
    s3_endpoint_url: str | None = None
    aws_region: str = "us-east-1"
    otel_exporter: str = "none"
    log_level: str = "INFO"
    hsts_max_age: int = 31536000

    def __repr__(self) -> str:  # the password never reaches a log line through repr()
        shown = ", ".join(
            f"{f.name}={'***' if f.name in _SECRET_FIELDS and getattr(self, f.name) else getattr(self, f.name)!r}"
            for f in fields(self)
        )
        return f"Settings({shown})"


class _Reader:
    """Reads typed values from a mapping and remembers every error instead of stopping at the first."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.errors: list[str] = []

    def raw(self, name: str) -> str | None:
        value = self.env.get(PREFIX + name)
        return value.strip() if value is not None and value.strip() != "" else None

    def text(self, name: str, default: str, check: Callable[[str], bool] | None = None, hint: str = "") -> str:
        value = self.raw(name)
        if value is None:
            return default
        if check is not None and not check(value):
            self.errors.append(f"{PREFIX}{name}: {hint}, got {value!r}")
            return default
        return value

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            number = low - 1
        if not low <= number <= high:
            self.errors.append(f"{PREFIX}{name}: must be an integer from {low} to {high}, got {value!r}")
            return default
        return number

    def number(self, name: str, default: float, low: float, high: float) -> float:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            number = low - 1
        if not low <= number <= high:
            self.errors.append(f"{PREFIX}{name}: must be a number from {low:g} to {high:g}, got {value!r}")
            return default
        return number

    def boolean(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        lowered = value.lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        self.errors.append(f"{PREFIX}{name}: must be true or false, got {value!r}")
        return default


def _read_password(reader: _Reader) -> str | None:
    """The DB password comes from a file (a mounted secret), never from the command line."""
    path = reader.raw("DB_PASSWORD_FILE")
    if path is None:
        return None
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        reader.errors.append(f"{PREFIX}DB_PASSWORD_FILE: cannot read {path!r} ({exc.strerror})")
        return None


def _normalise_dsn(reader: _Reader) -> str:
    """Require a libpq conninfo and make it pick only a writable host (the primary after a promotion)."""
    dsn = reader.raw("DB_DSN")
    if dsn is None:
        reader.errors.append(
            f"{PREFIX}DB_DSN: required (a libpq conninfo, e.g. 'host=a,b port=5432,5432 dbname=x user=y')"
        )
        return ""
    if "password=" in dsn:
        reader.errors.append(f"{PREFIX}DB_DSN: must not contain a password; use {PREFIX}DB_PASSWORD_FILE")
        return ""
    if "=" not in dsn or "host=" not in dsn:
        reader.errors.append(f"{PREFIX}DB_DSN: must be a key=value conninfo with host=..., got a value without it")
        return ""
    if "target_session_attrs=" not in dsn:
        dsn += " target_session_attrs=read-write"
    return dsn


def load_settings(
    service_name: str,
    env: Mapping[str, str] | None = None,
    *,
    needs_bucket: bool = False,
    default_max_request_bytes: int = 64 * 1024,
) -> Settings:
    """Build Settings from ``env`` (default: os.environ) or raise ConfigError listing every problem."""
    reader = _Reader(os.environ if env is None else env)
    settings: dict[str, Any] = {
        "service_name": service_name,
        "db_dsn": _normalise_dsn(reader),
        "db_password": _read_password(reader),
        "db_pool_max": reader.integer("DB_POOL_MAX", 4, 1, 100),
        "db_connect_timeout_s": reader.integer("DB_CONNECT_TIMEOUT", 3, 1, 60),
        "db_statement_timeout_ms": reader.integer("DB_STATEMENT_TIMEOUT_MS", 5000, 100, 600000),
        "db_retry_attempts": reader.integer("DB_RETRY_ATTEMPTS", 4, 1, 20),
        "db_retry_max_wait_s": reader.number("DB_RETRY_MAX_WAIT", 1.0, 0.01, 30),
        "region": reader.text("REGION", "local", _REGION.match, "must be a short lower-case name like 'east'"),
        "max_request_bytes": reader.integer("MAX_REQUEST_BYTES", default_max_request_bytes, 1024, 1024**3),
        "rate_limit_enabled": reader.boolean("RATE_LIMIT_ENABLED", True),
        "rate_limit": reader.text("RATE_LIMIT", "50 per second", _RATE_LIMIT.match, "must look like '50 per second'"),
        "rate_limit_storage_uri": reader.text(
            "RATE_LIMIT_STORAGE_URI", "memory://", lambda v: "://" in v, "must be a limits storage URI like memory://"
        ),
        "fencing_enabled": reader.boolean("FENCING_ENABLED", False),
        "fencing_record": reader.text(
            "FENCING_RECORD", "_active.phoenix.test", lambda v: "." in v, "must be a DNS name"
        ),
        "fencing_dns_server": reader.text("FENCING_DNS_SERVER", "127.0.0.1"),
        "fencing_dns_port": reader.integer("FENCING_DNS_PORT", 53, 1, 65535),
        "fencing_lease_seconds": reader.number("FENCING_LEASE_SECONDS", 10.0, 0.2, 3600),
        "s3_bucket": reader.text("S3_BUCKET", ""),
        "s3_endpoint_url": reader.text(
            "S3_ENDPOINT_URL", "", lambda v: v.startswith(("http://", "https://")), "must be an http(s) URL"
        )
        or None,
        "aws_region": reader.text("AWS_REGION", os.environ.get("AWS_DEFAULT_REGION", "us-east-1")),
        "otel_exporter": reader.text(
            "OTEL_EXPORTER", "none", lambda v: v in {"none", "console", "otlp"}, "must be none, console or otlp"
        ),
        "log_level": reader.text(
            "LOG_LEVEL", "INFO", lambda v: v.upper() in {"DEBUG", "INFO", "WARNING", "ERROR"}, "must be a log level"
        ).upper(),
        "hsts_max_age": reader.integer("HSTS_MAX_AGE", 31536000, 0, 63072000),
    }
    if needs_bucket and not settings["s3_bucket"]:
        reader.errors.append(f"{PREFIX}S3_BUCKET: required for {service_name}")
    if settings["fencing_enabled"] and settings["region"] == "local":
        reader.errors.append(f"{PREFIX}REGION: required when {PREFIX}FENCING_ENABLED is true")
    if reader.errors:
        raise ConfigError(f"invalid {service_name} settings:\n  - " + "\n  - ".join(reader.errors))
    return Settings(**settings)


def read_env_file(path: str | Path) -> dict[str, str]:
    """``KEY=VALUE`` lines (``#`` comments, blank lines ignored): the file the role writes per instance."""
    values: dict[str, str] = {}
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, sep, value = stripped.partition("=")
        if not sep or not key.strip().isidentifier():
            raise ConfigError(f"{path}:{number}: expected KEY=VALUE")
        values[key.strip()] = value.strip()
    return values
