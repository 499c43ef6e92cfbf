"""Documents: upload (blob to S3, metadata to PostgreSQL), metadata, streamed content, list."""

from __future__ import annotations

import hashlib
import re
import uuid
from typing import Any

from flask import Blueprint, Response, request, stream_with_context

from ..core import NotFound, ValidationError, fenced_write, runtime
from ..core.db import Connection
from ..core.validation import Fields, decode_cursor, encode_cursor, query_int

documents = Blueprint("documents", __name__)

MIGRATIONS = [
    """
    CREATE TABLE IF NOT EXISTS documents (
        id uuid PRIMARY KEY,
        seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
        name text NOT NULL,
        content_type text NOT NULL,
        size_bytes bigint NOT NULL,
        sha256 text NOT NULL,
        object_key text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
    );
    """,
]

NAME = re.compile(r"[^\x00-\x1f\x7f/\\]{1,255}")  # a file name: no control characters or path separators
CONTENT_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")
# Every query returns the same columns in the same order (_document_json and the row indexes rely on it).
INSERT_DOCUMENT = (
    "INSERT INTO documents (id, name, content_type, size_bytes, sha256, object_key)"
    " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING"
    " RETURNING id, name, content_type, size_bytes, sha256, created_at, seq, object_key"
)
SELECT_DOCUMENT = (
    "SELECT id, name, content_type, size_bytes, sha256, created_at, seq, object_key FROM documents WHERE id = %s"
)
SELECT_DOCUMENTS = (
    "SELECT id, name, content_type, size_bytes, sha256, created_at, seq, object_key FROM documents"
    " WHERE seq > %s ORDER BY seq LIMIT %s"
)


def _document_json(row: tuple[Any, ...]) -> dict[str, Any]:
    return {
        "id": str(row[0]),
        "name": row[1],
        "content_type": row[2],
        "size_bytes": row[3],
        "sha256": row[4],
        "created_at": row[5].isoformat(),
        "content_url": f"/documents/{row[0]}/content",
    }


def _find(document_id: uuid.UUID) -> tuple[Any, ...]:
    def select(conn: Connection) -> tuple[Any, ...] | None:
        with conn.cursor() as cur:
            cur.execute(
                SELECT_DOCUMENT,
                (str(document_id),),
            )
            return cur.fetchone()

    row = runtime().db.run(select, autocommit=True)
    if row is None:
        raise NotFound(f"No document {document_id}.")
    return row


@documents.post("/documents")
@fenced_write
def upload_document() -> tuple[dict[str, Any], int, dict[str, str]]:
    check = Fields()
    name = check.text(request.args, "name", max_length=255, pattern=NAME)
    content_type = (request.mimetype or "application/octet-stream").lower()
    if not CONTENT_TYPE.fullmatch(content_type):
        check.fail("Content-Type", "must be a media type like application/pdf")
    check.raise_if_any()
    body = request.get_data(cache=False)  # over MAX_CONTENT_LENGTH -> 413 before anything is stored
    if not body:
        raise ValidationError([{"field": "body", "message": "must not be empty"}])
    state = runtime()
    document_id = uuid.uuid4()
    object_key = f"documents/{document_id}"
    digest = hashlib.sha256(body).hexdigest()
    assert state.storage is not None
    state.storage.put(object_key, body, content_type)  # blob first: metadata never points at nothing

    def insert(conn: Connection) -> tuple[Any, ...]:
        with conn.cursor() as cur:
            cur.execute(
                INSERT_DOCUMENT,
                (str(document_id), name, content_type, len(body), digest, object_key),
            )
            row = cur.fetchone()
            if row is None:  # a retry after an ambiguous commit: our row is there already
                cur.execute(
                    SELECT_DOCUMENT,
                    (str(document_id),),
                )
                row = cur.fetchone()
            return row

    try:
        row = state.db.run(insert, autocommit=True)  # the INSERT is idempotent by itself
    except Exception:
        state.storage.delete(object_key)
        raise
    return _document_json(row), 201, {"Location": f"/documents/{document_id}"}


@documents.get("/documents/<uuid:document_id>")
def get_document(document_id: uuid.UUID) -> dict[str, Any]:
    return _document_json(_find(document_id))


@documents.get("/documents/<uuid:document_id>/content")
def get_document_content(document_id: uuid.UUID) -> Response:
    row = _find(document_id)
    state = runtime()
    assert state.storage is not None
    chunks = state.storage.stream(row[7])
    headers = {
        "Content-Length": str(row[3]),
        "Content-Disposition": "attachment",  # never rendered inline: user content is not ours to trust
        "ETag": f'"{row[4]}"',
    }
    return Response(stream_with_context(chunks), mimetype=row[2], headers=headers)


@documents.get("/documents")
def list_documents() -> dict[str, Any]:
    limit = query_int(request.args, "limit", default=20, low=1, high=100)
    after = decode_cursor(request.args.get("cursor")) or 0

    def select(conn: Connection) -> list[tuple[Any, ...]]:
        with conn.cursor() as cur:
            cur.execute(
                SELECT_DOCUMENTS,
                (after, limit + 1),
            )
            return cur.fetchall()

    rows = runtime().db.run(select, autocommit=True)
    page = rows[:limit]
    return {
        "items": [_document_json(r) for r in page],
        "next_cursor": encode_cursor(page[-1][6]) if len(rows) > limit else None,
    }
