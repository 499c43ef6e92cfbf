"""service_a against a real PostgreSQL: every endpoint, validation, idempotency, headers, request ids."""

from __future__ import annotations

import uuid

ORDER = {"customer_id": "cust-1", "currency": "EUR", "items": [{"sku": "A-1", "quantity": 2, "unit_price_cents": 1250}]}


def test_create_get_and_list_orders_with_pagination(client_a):
    created = [
        client_a.post("/orders", json={**ORDER, "items": [{**ORDER["items"][0], "quantity": n}]}) for n in (1, 2, 3)
    ]
    assert [r.status_code for r in created] == [201, 201, 201]
    first = created[0].get_json()
    assert first["total_cents"] == 1250 and first["customer_id"] == "cust-1"
    assert created[0].headers["Location"] == f"/orders/{first['id']}"

    fetched = client_a.get(f"/orders/{first['id']}")
    assert fetched.status_code == 200 and fetched.get_json() == first

    page1 = client_a.get("/orders", query_string={"customer_id": "cust-1", "limit": 2}).get_json()
    assert [o["id"] for o in page1["items"]] == [r.get_json()["id"] for r in created[:2]]
    page2 = client_a.get(
        "/orders", query_string={"customer_id": "cust-1", "limit": 2, "cursor": page1["next_cursor"]}
    ).get_json()
    assert [o["id"] for o in page2["items"]] == [created[2].get_json()["id"]] and page2["next_cursor"] is None
    other = client_a.get("/orders", query_string={"customer_id": "someone-else"}).get_json()
    assert other == {"items": [], "next_cursor": None}


def test_unknown_order_is_a_404_problem(client_a):
    response = client_a.get(f"/orders/{uuid.uuid4()}")
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["type"].endswith("/not-found") and body["status"] == 404 and body["title"]
    assert client_a.get("/orders/not-a-uuid").status_code == 404


def test_validation_errors_name_every_bad_field(client_a):
    bad = {
        "customer_id": "",
        "currency": "euro",
        "items": [{"sku": "A 1", "quantity": 0, "unit_price_cents": -1}, "x"],
        "extra": 1,
    }
    response = client_a.post("/orders", json=bad)
    assert response.status_code == 422
    body = response.get_json()
    fields = {error["field"] for error in body["errors"]}
    assert fields == {
        "customer_id",
        "currency",
        "extra",
        "items[0].sku",
        "items[0].quantity",
        "items[0].unit_price_cents",
        "items[1]",
    }
    assert body["type"].endswith("/validation-error")

    assert client_a.post("/orders", data="{not json", content_type="application/json").status_code == 400
    assert client_a.post("/orders", data="customer=1", content_type="text/plain").status_code == 415
    assert client_a.post("/orders", json=[ORDER]).status_code == 400
    listing = client_a.get("/orders", query_string={"customer_id": "c", "limit": 1000})
    assert listing.status_code == 422 and listing.get_json()["errors"][0]["field"] == "limit"
    assert client_a.get("/orders", query_string={"customer_id": "c", "cursor": "!!"}).status_code == 422
    assert client_a.get("/orders").get_json()["errors"] == [{"field": "customer_id", "message": "is required"}]


def test_request_over_the_size_limit_is_413(client_a):
    huge = {**ORDER, "customer_id": "x" * (70 * 1024)}
    response = client_a.post("/orders", json=huge)
    assert response.status_code == 413
    assert response.mimetype == "application/problem+json"


def test_idempotency_key_replays_the_first_order_and_refuses_a_different_body(client_a, app_db):
    headers = {"Idempotency-Key": "order-attempt-42"}
    first = client_a.post("/orders", json=ORDER, headers=headers)
    replay = client_a.post("/orders", json=ORDER, headers=headers)
    assert first.status_code == replay.status_code == 201
    assert replay.get_json() == first.get_json()
    assert replay.headers["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first.headers
    assert app_db.cluster.query("SELECT count(*) FROM orders", dbname="phoenix") == [(1,)]

    changed = client_a.post("/orders", json={**ORDER, "currency": "USD"}, headers=headers)
    assert changed.status_code == 422
    assert changed.get_json()["type"].endswith("/idempotency-key-reused")
    assert client_a.post("/orders", json=ORDER, headers={"Idempotency-Key": "bad key"}).status_code == 422


def test_security_headers_on_every_response(client_a):
    for response in (
        client_a.get("/healthz"),
        client_a.get(f"/orders/{uuid.uuid4()}"),
        client_a.post("/orders", json={}),
    ):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["Strict-Transport-Security"].startswith("max-age=31536000")
        assert "default-src 'none'" in response.headers["Content-Security-Policy"]
        assert response.headers["Cache-Control"] == "no-store"


def test_request_id_round_trip_and_in_logs(client_a, capfd):
    echoed = client_a.get("/healthz", headers={"X-Request-ID": "trace-abc.123"})
    assert echoed.headers["X-Request-ID"] == "trace-abc.123"
    generated = client_a.get("/healthz", headers={"X-Request-ID": "evil\u2028id with spaces"})
    assert (
        generated.headers["X-Request-ID"] != "evil\u2028id with spaces" and len(generated.headers["X-Request-ID"]) == 32
    )

    # A problem carries the id, and the JSON log line of a logged error carries it too.
    problem = client_a.post("/orders", json=ORDER, headers={"X-Request-ID": "req-77", "Idempotency-Key": "k"})
    assert problem.status_code == 201
    response = client_a.get(f"/orders/{uuid.uuid4()}", headers={"X-Request-ID": "req-78"})
    assert response.get_json()["request_id"] == "req-78"


def test_rate_limit_returns_429_problem(clean_db, make_settings):
    from cloudphoenix_services import service_a
    from limits import parse_many

    app = service_a.create_app(make_settings("service_a", rate_limit="3 per minute"))
    client = app.test_client()
    try:
        statuses = [client.get(f"/orders/{uuid.uuid4()}").status_code for _attempt in range(4)]
        assert statuses == [404, 404, 404, 429]
        limited = client.get(f"/orders/{uuid.uuid4()}", headers={"X-Request-ID": "limited-1"})
        assert limited.mimetype == "application/problem+json" and int(limited.headers["Retry-After"]) >= 1
        assert limited.get_json()["request_id"] == "limited-1" and limited.headers["X-Frame-Options"] == "DENY"
        assert client.get("/healthz").status_code == 200  # probes are never rate limited
        # Per client address: another client still gets through.
        other = client.get(f"/orders/{uuid.uuid4()}", environ_base={"REMOTE_ADDR": "192.0.2.7"})
        assert other.status_code == 404
        # Counted in Flask-Limiter's storage under its own key layout for a default limit (a shared
        # redis:// storage counts alike), and Flask-Limiter's generic hooks are not on the app.
        limiter = app.extensions["cloudphoenix"].limiter
        item = parse_many("3 per minute")[0]
        assert limiter.limiter.get_window_stats(item, "127.0.0.1", "orders.get_order").remaining == 0
        assert app.before_request_funcs[None] == [app.before_request_funcs[None][0]]  # only ClientRateLimit.check
        assert not app.after_request_funcs.get(None) and not app.teardown_request_funcs.get(None)
    finally:
        app.extensions["cloudphoenix"].close()


def test_rate_limit_can_be_left_to_a_gateway(clean_db, make_settings):
    from cloudphoenix_services import service_a

    app = service_a.create_app(make_settings("service_a", rate_limit="1 per minute", rate_limit_enabled="false"))
    client = app.test_client()
    try:
        assert [client.get(f"/orders/{uuid.uuid4()}").status_code for _attempt in range(3)] == [404, 404, 404]
    finally:
        app.extensions["cloudphoenix"].close()
