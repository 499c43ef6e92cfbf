"""JSON on orjson (core.jsonio): what Flask's own provider produced stays what clients get."""

from __future__ import annotations

import datetime
import decimal
import hashlib
import json
import uuid

import pytest
from cloudphoenix_services.core.jsonio import OrjsonProvider
from flask import Flask

ORDER = {"customer_id": "cust-json", "currency": "EUR",
         "items": [{"sku": "A-1", "quantity": 3, "unit_price_cents": 99}]}


def test_values_are_written_as_flasks_provider_wrote_them() -> None:
    app = Flask("json-test")
    ours, flasks = OrjsonProvider(app), app.json
    flasks.sort_keys = False  # the services never sorted keys
    value = {"when": datetime.datetime(2026, 11, 26, 15, 4, 5, tzinfo=datetime.UTC),
             "day": datetime.date(2026, 11, 26), "id": uuid.UUID(int=7), "price": decimal.Decimal("12.50"),
             1: "int key", "nested": [None, True, 1.5]}
    assert json.loads(ours.dumps(value)) == json.loads(flasks.dumps(value))
    with app.app_context():
        body = ours.response(value).get_data()
    # compact, one trailing newline: what Flask's provider writes outside debug mode
    assert body.endswith(b"}\n") and b'"nested":[null,true,1.5]' in body
    assert json.loads(body)["when"] == "Thu, 26 Nov 2026 15:04:05 GMT"


def test_malformed_json_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        OrjsonProvider(Flask("json-test")).loads(b"{not json")


def test_stored_items_and_request_hash_are_unchanged(client_a, app_db) -> None:
    """The request hash keeps the standard library's bytes: an order stored before orjson replays after it."""
    created = client_a.post("/orders", json=ORDER, headers={"Idempotency-Key": "json-hash"})
    assert created.status_code == 201 and created.get_data().endswith(b"\n")
    [(items, request_hash)] = app_db.cluster.query(
        "SELECT items::text, request_hash FROM orders WHERE idempotency_key = 'json-hash'", dbname="phoenix")
    assert json.loads(items) == ORDER["items"]
    assert request_hash == hashlib.sha256(json.dumps(ORDER, sort_keys=True).encode()).hexdigest()
    assert client_a.get(f"/orders/{created.get_json()['id']}").get_json()["items"] == ORDER["items"]
