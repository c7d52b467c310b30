"""Snapshot objects in S3 under `imports/{provider}/{repository}/{import id}/`.

Serialisation is canonical (sorted keys, no spaces, UTF-8), and each page goes to its own object keyed by
the page number, so writing a page again after a crash replaces the object with identical bytes: a
resumed import's output is exactly a clean run's.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from bitbridge.aws import client
from bitbridge.config import settings


@dataclass(frozen=True)
class Written:
    key: str  # relative to the import's prefix
    count: int
    bytes: int
    sha256: str


def path_id(repository_id: str) -> str:
    """A repository id as a key segment: Cloud uuids lose their braces (awkward in S3 keys)."""
    return repository_id.strip("{}")


def prefix(provider_id: str, repository_id: str, import_id: str) -> str:
    return f"imports/{provider_id}/{path_id(repository_id)}/{import_id}/"


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def page_key(entity: str, page: int) -> str:
    return f"{entity}/page-{page:05d}.jsonl"


def _put(base: str, key: str, body: bytes, content_type: str, count: int) -> Written:
    digest = hashlib.sha256(body).hexdigest()
    client("s3").put_object(
        Bucket=settings().snapshots_bucket,
        Key=base + key,
        Body=body,
        ContentType=content_type,
    )
    return Written(key, count, len(body), digest)


def write_bytes(base: str, key: str, body: bytes, content_type: str, count: int) -> Written:
    return _put(base, key, body, content_type, count)


def write_page(base: str, entity: str, page: int, values: list[dict[str, Any]]) -> Written:
    body = "".join(canonical(v) + "\n" for v in values).encode()
    return _put(base, page_key(entity, page), body, "application/x-ndjson", len(values))


def write_lines(base: str, name: str, values: list[dict[str, Any]]) -> Written:
    """A JSON Lines object that is not a page (people.jsonl)."""
    body = "".join(canonical(v) + "\n" for v in values).encode()
    return _put(base, name, body, "application/x-ndjson", len(values))


def read_lines(base: str, key: str) -> list[dict[str, Any]]:
    """A page this import wrote, read back (the parents of a nested entity's reads)."""
    body = client("s3").get_object(Bucket=settings().snapshots_bucket, Key=base + key)["Body"].read()
    return [json.loads(line) for line in body.decode().splitlines() if line]


def write_json(base: str, name: str, value: Any) -> Written:
    body = (json.dumps(value, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()
    return _put(base, name, body, "application/json", 1)
