"""S3 through boto3's default credential chain (instance/IRSA role first; no keys in settings).

Only the endpoint is configurable, for the lab's moto server or an S3-compatible store.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import IO

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from .config import Settings
from .errors import NotFound, StorageError


class Storage:
    def __init__(self, settings: Settings) -> None:
        self.bucket = settings.s3_bucket
        self._settings = settings
        self._client = None

    @property
    def client(self):
        # Created per worker process on first use: boto3 clients must not cross a fork.
        if self._client is None:
            self._client = boto3.session.Session().client(
                "s3",
                region_name=self._settings.aws_region,
                endpoint_url=self._settings.s3_endpoint_url,
                config=Config(connect_timeout=3, read_timeout=10, retries={"mode": "standard", "max_attempts": 3}),
            )
        return self._client

    def put(self, key: str, body: IO[bytes] | bytes, content_type: str) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type)
        except (BotoCoreError, ClientError) as exc:
            raise StorageError("Could not store the document; retry later.") from exc

    def stream(self, key: str, chunk_size: int = 64 * 1024) -> Iterator[bytes]:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
                raise NotFound("The document content is missing.") from exc
            raise StorageError("Could not read the document; retry later.") from exc
        except BotoCoreError as exc:
            raise StorageError("Could not read the document; retry later.") from exc
        return body.iter_chunks(chunk_size)

    def delete(self, key: str) -> None:
        # Best effort cleanup of an orphan blob; a bucket lifecycle rule catches what this misses.
        with contextlib.suppress(BotoCoreError, ClientError):
            self.client.delete_object(Bucket=self.bucket, Key=key)

    def check(self) -> tuple[bool, float, str | None]:
        started = time.perf_counter()
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (BotoCoreError, ClientError) as exc:
            return False, round((time.perf_counter() - started) * 1000, 2), f"unreachable ({type(exc).__name__})"
        return True, round((time.perf_counter() - started) * 1000, 2), None
