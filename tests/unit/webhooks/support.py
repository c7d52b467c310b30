"""Shared helpers for the webhook unit tests: the real payloads in ../shared and the event v1 schema."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

import bitbridge
from tests.shared_data import SHARED_DIR, manifest_entries, require

REPO_ROOT = Path(__file__).resolve().parents[3]
WEBHOOKS_DIR = SHARED_DIR / "bitbucket" / "webhooks"
SCHEMA_PATH = Path(bitbridge.__file__).resolve().parent / "schemas" / "event-v1.json"
RECEIVED_AT = "2024-05-01T12:00:00Z"


def manifest() -> list[dict[str, Any]]:
    require()
    return manifest_entries()


def payload_bytes(file: str) -> bytes:
    require()
    return (WEBHOOKS_DIR / file).read_bytes()


def payload(file: str) -> dict[str, Any]:
    return json.loads(payload_bytes(file))


@cache
def validator() -> Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def schema_errors(event: dict[str, Any]) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator().iter_errors(event)]
