"""A tiny WSGI app for service_check's integration tests, served by a real gunicorn.

Routes (all state is in this one worker process, keyed by a caller-chosen tag):
  /healthz                     200 "ok"
  /status/<code>               that status, body "status <code>"
  /json                        a fixed JSON document (nested fields, a list)
  /slow/<tag>?seconds=S        sleeps S seconds; start/end times recorded under <tag>
  /slow-log/<tag>              JSON list of [start, end] for every /slow/<tag> request
  /flaky/<tag>?fail=N          the first N requests for <tag> get 503, later ones 200
  /hits/<tag>                  JSON count of requests seen for <tag> (flaky and auth)
  /auth/<tag>                  200 when Authorization equals $SERVICE_CHECK_TEST_TOKEN, else 401
  /host                        JSON {"host": <Host header>}
  /readyz                      200 {"status": "ready", "checks": {"database": {"ok": true}}}
  POST /orders                 201 {"id": n, "total_cents": ..., ...the JSON body...}; GET /orders/<id> reads it
  /orders-count                JSON number of orders created
"""

from __future__ import annotations

import json
import os
import threading
import time
from urllib.parse import parse_qs

_LOCK = threading.Lock()
_SLOW: dict[str, list[list[float]]] = {}
_HITS: dict[str, int] = {}
_ORDERS: dict[int, dict] = {}


def _reply(start_response, status: int, body, content_type: str = "application/json"):
    data = json.dumps(body).encode() if content_type == "application/json" else str(body).encode()
    start_response(f"{status} X", [("Content-Type", content_type), ("Content-Length", str(len(data)))])
    return [data]


def _hit(tag: str) -> int:
    with _LOCK:
        _HITS[tag] = _HITS.get(tag, 0) + 1
        return _HITS[tag]


def app(environ, start_response):
    path = environ["PATH_INFO"]
    method = environ["REQUEST_METHOD"]
    query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    parts = path.strip("/").split("/")
    if path == "/healthz":
        return _reply(start_response, 200, "ok", "text/plain")
    if parts[0] == "status" and len(parts) == 2:
        return _reply(start_response, int(parts[1]), f"status {parts[1]}", "text/plain")
    if path == "/json":
        return _reply(start_response, 200, {
            "status": "ok", "checks": {"database": {"writable": True}, "storage": {"reachable": True}},
            "count": 1, "items": [{"sku": "A-1"}],
        })
    if parts[0] == "slow" and len(parts) == 2:
        started = time.time()
        time.sleep(float(query.get("seconds", "1")))
        with _LOCK:
            _SLOW.setdefault(parts[1], []).append([started, time.time()])
        return _reply(start_response, 200, "slow ok", "text/plain")
    if parts[0] == "slow-log" and len(parts) == 2:
        with _LOCK:
            return _reply(start_response, 200, _SLOW.get(parts[1], []))
    if parts[0] == "flaky" and len(parts) == 2:
        seen = _hit(parts[1])
        if seen <= int(query.get("fail", "0")):
            return _reply(start_response, 503, {"status": "starting"})
        return _reply(start_response, 200, {"status": "ok", "seen": seen})
    if parts[0] == "hits" and len(parts) == 2:
        with _LOCK:
            return _reply(start_response, 200, _HITS.get(parts[1], 0))
    if parts[0] == "auth" and len(parts) == 2:
        _hit(parts[1])
        if environ.get("HTTP_AUTHORIZATION") == os.environ["SERVICE_CHECK_TEST_TOKEN"]:
            return _reply(start_response, 200, {"authorized": True})
        return _reply(start_response, 401, {"authorized": False})
    if path == "/readyz":
        return _reply(start_response, 200, {"status": "ready", "checks": {"database": {"ok": True}}})
    if path == "/orders-count":
        with _LOCK:
            return _reply(start_response, 200, len(_ORDERS))
    if path == "/host":
        return _reply(start_response, 200, {"host": environ.get("HTTP_HOST")})
    if path == "/orders" and method == "POST":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        payload = json.loads(environ["wsgi.input"].read(length) or b"{}")
        with _LOCK:
            order_id = len(_ORDERS) + 1
            _ORDERS[order_id] = {
                "id": order_id, **payload,
                "total_cents": sum(i.get("quantity", 0) * i.get("unit_price_cents", 0)
                                   for i in payload.get("items", [])),
                "idempotency_key": environ.get("HTTP_IDEMPOTENCY_KEY"),
                "content_type": environ.get("CONTENT_TYPE"),
            }
        return _reply(start_response, 201, _ORDERS[order_id])
    if parts[0] == "orders" and len(parts) == 2 and method == "GET":
        with _LOCK:
            order = _ORDERS.get(int(parts[1])) if parts[1].isdigit() else None
        return _reply(start_response, 200 if order else 404, order or {"error": "not found"})
    return _reply(start_response, 404, {"error": "no route"})
