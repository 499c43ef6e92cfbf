"""Small, explicit request validation with field-level errors (one 422 lists them all)."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from .errors import ValidationError


class Fields:
    """Collects errors while reading fields, then raises one ValidationError."""

    def __init__(self) -> None:
        self.errors: list[dict[str, str]] = []

    def fail(self, field: str, message: str) -> None:
        self.errors.append({"field": field, "message": message})

    def text(
        self,
        data: dict[str, Any],
        name: str,
        *,
        max_length: int,
        pattern: re.Pattern[str] | None = None,
        required: bool = True,
        prefix: str = "",
    ) -> str | None:
        value = data.get(name)
        path = prefix + name
        if value is None:
            if required:
                self.fail(path, "is required")
            return None
        if not isinstance(value, str) or not value.strip():
            self.fail(path, "must be a non-empty string")
            return None
        if len(value) > max_length:
            self.fail(path, f"must be at most {max_length} characters")
            return None
        if pattern is not None and not pattern.fullmatch(value):
            self.fail(path, f"must match {pattern.pattern}")
            return None
        return value

    def integer(self, data: dict[str, Any], name: str, *, low: int, high: int, prefix: str = "") -> int | None:
        value = data.get(name)
        path = prefix + name
        if value is None:
            self.fail(path, "is required")
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.fail(path, f"must be an integer from {low} to {high}")
            return None
        return value

    def unknown(self, data: dict[str, Any], allowed: set[str], prefix: str = "") -> None:
        for name in sorted(set(data) - allowed):
            self.fail(prefix + name, "is not a known field")

    def raise_if_any(self) -> None:
        if self.errors:
            raise ValidationError(self.errors)


def query_int(args: dict[str, str], name: str, *, default: int, low: int, high: int) -> int:
    raw = args.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise ValidationError([{"field": name, "message": f"must be an integer from {low} to {high}"}])
    return int(raw)


def encode_cursor(position: int) -> str:
    return base64.urlsafe_b64encode(str(position).encode()).decode().rstrip("=")


def decode_cursor(raw: str | None) -> int | None:
    """Opaque keyset cursor -> position; a malformed one is a field error, not a 500."""
    if raw is None or raw == "":
        return None
    try:
        decoded = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        decoded = ""
    if not decoded.isdigit() or len(decoded) > 18:
        raise ValidationError([{"field": "cursor", "message": "is not a cursor this API returned"}])
    return int(decoded)
