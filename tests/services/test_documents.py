"""service_b against real PostgreSQL and moto S3 (server mode): upload, metadata, content, list, 413."""

from __future__ import annotations

import hashlib
import uuid

from tests.services.conftest import BUCKET


def test_upload_get_stream_and_list(client_b, moto, app_db):
    content = b"%PDF-1.4 quarterly report\n" * 10
    created = client_b.post("/documents?name=report.pdf", data=content, content_type="application/pdf")
    assert created.status_code == 201, created.get_json()
    doc = created.get_json()
    assert doc["size_bytes"] == len(content) and doc["sha256"] == hashlib.sha256(content).hexdigest()
    assert doc["content_type"] == "application/pdf" and doc["name"] == "report.pdf"

    # The blob is in S3, the metadata in PostgreSQL.
    stored = moto.client("s3").get_object(Bucket=BUCKET, Key=f"documents/{doc['id']}")["Body"].read()
    assert stored == content
    assert app_db.cluster.query("SELECT name FROM documents WHERE id = %s", (doc["id"],), dbname="phoenix") == [
        ("report.pdf",)
    ]

    assert client_b.get(f"/documents/{doc['id']}").get_json() == doc
    streamed = client_b.get(doc["content_url"])
    assert streamed.status_code == 200 and streamed.data == content
    assert streamed.mimetype == "application/pdf" and streamed.headers["Content-Disposition"] == "attachment"
    assert streamed.headers["X-Content-Type-Options"] == "nosniff"

    second = client_b.post("/documents?name=notes.txt", data=b"hello", content_type="text/plain").get_json()
    page = client_b.get("/documents?limit=1").get_json()
    assert [d["id"] for d in page["items"]] == [doc["id"]]
    rest = client_b.get(f"/documents?limit=1&cursor={page['next_cursor']}").get_json()
    assert [d["id"] for d in rest["items"]] == [second["id"]] and rest["next_cursor"] is None


def test_upload_over_limit_is_413_and_stores_nothing(client_b, moto, app_db):
    response = client_b.post("/documents?name=big.bin", data=b"x" * 5000, content_type="application/octet-stream")
    assert response.status_code == 413
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["status"] == 413
    assert moto.client("s3").list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 0
    assert app_db.cluster.query("SELECT count(*) FROM documents", dbname="phoenix") == [(0,)]


def test_upload_validation_errors(client_b):
    missing_name = client_b.post("/documents", data=b"x", content_type="text/plain")
    assert missing_name.status_code == 422 and missing_name.get_json()["errors"][0]["field"] == "name"
    bad_name = client_b.post("/documents?name=../../etc/passwd", data=b"x", content_type="text/plain")
    assert bad_name.status_code == 422
    empty = client_b.post("/documents?name=a.txt", data=b"", content_type="text/plain")
    assert empty.status_code == 422 and empty.get_json()["errors"] == [
        {"field": "body", "message": "must not be empty"}
    ]
    assert client_b.get(f"/documents/{uuid.uuid4()}").status_code == 404
    assert client_b.get(f"/documents/{uuid.uuid4()}/content").status_code == 404


def test_storage_down_is_a_503_problem_and_not_ready(app_db, make_settings, moto):
    from cloudphoenix_services import service_b

    from tests.support.net import free_port

    app = service_b.create_app(make_settings("service_b", s3_endpoint_url=f"http://127.0.0.1:{free_port()}"))
    client = app.test_client()
    try:
        response = client.post("/documents?name=a.txt", data=b"abc", content_type="text/plain")
        assert response.status_code == 503 and response.headers["Retry-After"]
        assert response.get_json()["type"].endswith("/storage-unavailable")
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert (
            ready.get_json()["checks"]["storage"]["ok"] is False
            and ready.get_json()["checks"]["database"]["ok"] is True
        )
    finally:
        app.extensions["cloudphoenix"].close()
