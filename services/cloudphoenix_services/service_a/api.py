"""Orders: create (with Idempotency-Key), get one, list a customer's orders with a keyset cursor."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from typing import Any

from flask import Blueprint, request
from psycopg2.extras import Json

from ..core import IdempotencyKeyReused, NotFound, ValidationError, fenced_write, json_object, runtime
from ..core.db import Connection
from ..core.jsonio import dumps_text
from ..core.validation import Fields, decode_cursor, encode_cursor, query_int

orders = Blueprint("orders", __name__)

MIGRATIONS = [
    """
    CREATE TABLE IF NOT EXISTS orders (
        id uuid PRIMARY KEY,
        seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
        customer_id text NOT NULL,
        currency char(3) NOT NULL,
        items jsonb NOT NULL,
        total_cents bigint NOT NULL,
        idempotency_key text UNIQUE,
        request_hash text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX IF NOT EXISTS orders_customer_seq ON orders (customer_id, seq);
    """,
]

CUSTOMER_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
SKU = re.compile(r"[A-Za-z0-9._-]{1,64}")
CURRENCY = re.compile(r"[A-Z]{3}")
IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")  # visible ASCII, as the IETF draft suggests
MAX_ITEMS = 100
# Every query returns the same columns in the same order (_order_json and the row indexes rely on it).
INSERT_ORDER = (
    "INSERT INTO orders (id, customer_id, currency, items, total_cents, idempotency_key, request_hash)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
    " RETURNING id, customer_id, currency, items, total_cents, created_at, seq, request_hash"
)
SELECT_ORDER_BY_ID = (
    "SELECT id, customer_id, currency, items, total_cents, created_at, seq, request_hash FROM orders WHERE id = %s"
)
SELECT_ORDER_BY_KEY = (
    "SELECT id, customer_id, currency, items, total_cents, created_at, seq, request_hash FROM orders"
    " WHERE idempotency_key = %s"
)
SELECT_CUSTOMER_ORDERS = (
    "SELECT id, customer_id, currency, items, total_cents, created_at, seq, request_hash FROM orders"
    " WHERE customer_id = %s AND seq > %s ORDER BY seq LIMIT %s"
)


def _order_json(row: tuple[Any, ...]) -> dict[str, Any]:
    return {
        "id": str(row[0]),
        "customer_id": row[1],
        "currency": row[2],
        "items": row[3],
        "total_cents": row[4],
        "created_at": row[5].isoformat(),
    }


def _validated_order(body: dict[str, Any]) -> dict[str, Any]:
    check = Fields()
    check.unknown(body, {"customer_id", "currency", "items"})
    customer_id = check.text(body, "customer_id", max_length=64, pattern=CUSTOMER_ID)
    currency = check.text(body, "currency", max_length=3, pattern=CURRENCY)
    items = body.get("items")
    clean_items: list[dict[str, Any]] = []
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_ITEMS:
        check.fail("items", f"must be a list of 1 to {MAX_ITEMS} line items")
    else:
        for index, item in enumerate(items):
            prefix = f"items[{index}]."
            if not isinstance(item, dict):
                check.fail(f"items[{index}]", "must be an object")
                continue
            check.unknown(item, {"sku", "quantity", "unit_price_cents"}, prefix)
            sku = check.text(item, "sku", max_length=64, pattern=SKU, prefix=prefix)
            quantity = check.integer(item, "quantity", low=1, high=10_000, prefix=prefix)
            price = check.integer(item, "unit_price_cents", low=0, high=100_000_000, prefix=prefix)
            clean_items.append({"sku": sku, "quantity": quantity, "unit_price_cents": price})
    check.raise_if_any()
    return {"customer_id": customer_id, "currency": currency, "items": clean_items}


@orders.post("/orders")
@fenced_write
def create_order() -> tuple[dict[str, Any], int, dict[str, str]]:
    key = request.headers.get("Idempotency-Key")
    if key is not None and not IDEMPOTENCY_KEY.fullmatch(key):
        raise ValidationError([{"field": "Idempotency-Key", "message": "must be 1 to 255 visible ASCII characters"}])
    order = _validated_order(json_object())
    request_hash = hashlib.sha256(json.dumps(order, sort_keys=True).encode()).hexdigest()
    total = sum(item["quantity"] * item["unit_price_cents"] for item in order["items"])
    # The id is chosen before the first attempt, so a retry after an ambiguous commit finds its own row.
    order_id = uuid.uuid4()

    def insert(conn: Connection) -> tuple[tuple[Any, ...], bool]:
        with conn.cursor() as cur:
            cur.execute(
                INSERT_ORDER,
                (
                    str(order_id),
                    order["customer_id"],
                    order["currency"],
                    Json(order["items"], dumps=dumps_text),
                    total,
                    key,
                    request_hash,
                ),
            )
            row = cur.fetchone()
            if row is not None:
                return row, False
            if key is not None:
                cur.execute(
                    SELECT_ORDER_BY_KEY,
                    (key,),
                )
            else:
                cur.execute(
                    SELECT_ORDER_BY_ID,
                    (str(order_id),),
                )
            row = cur.fetchone()
            return row, row is not None and str(row[0]) != str(order_id)

    row, replayed = runtime().db.run(insert, autocommit=True)  # the INSERT is idempotent by itself
    if replayed and row[7] != request_hash:
        raise IdempotencyKeyReused("This Idempotency-Key was used for a different order.")
    headers = {"Location": f"/orders/{row[0]}"}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return _order_json(row), 201, headers


@orders.get("/orders/<uuid:order_id>")
def get_order(order_id: uuid.UUID) -> dict[str, Any]:
    def select(conn: Connection) -> tuple[Any, ...] | None:
        with conn.cursor() as cur:
            cur.execute(
                SELECT_ORDER_BY_ID,
                (str(order_id),),
            )
            return cur.fetchone()

    row = runtime().db.run(select, autocommit=True)
    if row is None:
        raise NotFound(f"No order {order_id}.")
    return _order_json(row)


@orders.get("/orders")
def list_orders() -> dict[str, Any]:
    args = request.args
    check = Fields()
    customer_id = check.text(args, "customer_id", max_length=64, pattern=CUSTOMER_ID)
    check.raise_if_any()
    limit = query_int(args, "limit", default=20, low=1, high=100)
    after = decode_cursor(args.get("cursor")) or 0

    def select(conn: Connection) -> list[tuple[Any, ...]]:
        with conn.cursor() as cur:
            cur.execute(
                SELECT_CUSTOMER_ORDERS,
                (customer_id, after, limit + 1),
            )
            return cur.fetchall()

    rows = runtime().db.run(select, autocommit=True)
    page = rows[:limit]
    next_cursor = encode_cursor(page[-1][6]) if len(rows) > limit else None
    return {"items": [_order_json(row) for row in page], "next_cursor": next_cursor}
