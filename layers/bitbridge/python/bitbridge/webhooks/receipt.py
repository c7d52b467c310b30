"""Receive one Bitbucket webhook delivery: verify it, store it once, answer in milliseconds.

The only write is one conditional put of the delivery, keyed by provider + delivery id: it makes the
delivery durable and deduplicates redeliveries in the same step. Publishing happens later, from the
deliveries table's stream (``bitbridge.webhooks.publish``), so nothing here calls Bitbucket or EventBridge.

Answers, in the order they are decided:

=====  ==========================================================================================
413    body over 256 KB (Bitbucket's own payload limit)
200    ``X-Event-Key: diagnostics:ping`` - Data Center's unsigned "Test connection"; nothing stored
401    no ``X-Hub-Signature``; or a signature that does not verify with the subscription's derived
       secret - the same answer whether or not the subscription exists, because existence is never
       looked up (no database read on this path)
400    no ``X-Event-Key``, a body that is not UTF-8 JSON, or JSON that is not an object
202    an event key bitbridge does not handle: stored with status ``ignored``
200    a delivery id already stored (a redelivery): nothing written
202    stored with status ``received``; the publisher takes it from there
=====  ==========================================================================================

Cold path: standard library, ``signatures`` and ``normalise`` (both standard library only) and
``bitbridge.store.deliveries`` (the low-level DynamoDB client); no pynamodb, requests, authlib or jsonschema.
No signature, secret or Authorization value is stored, logged or echoed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re

from bitbridge.aws import secret_value
from bitbridge.config import settings
from bitbridge.store import deliveries
from bitbridge.store.deliveries import IGNORED, RECEIVED
from bitbridge.webhooks.normalise import HANDLED_EVENT_KEYS
from bitbridge.webhooks.signatures import derive_hook_secret, verify_signature

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover - annotations only
    from collections.abc import Mapping

__all__ = ["MAX_BODY_BYTES", "PING_EVENT_KEY", "STORED_HEADERS", "Receipt", "delivery_id", "receive"]

MAX_BODY_BYTES = 256 * 1024
PING_EVENT_KEY = "diagnostics:ping"

#: The request headers worth keeping with a delivery. Never X-Hub-Signature or Authorization.
STORED_HEADERS = (
    "x-event-key",
    "x-request-uuid",
    "x-request-id",
    "x-hook-uuid",
    "x-attempt-number",
    "user-agent",
    "content-type",
)
_HEADER_VALUE_LIMIT = 256

_ANY_FLAVOR_KEYS = frozenset().union(*HANDLED_EVENT_KEYS.values())
# Path segments: provider ids and subscription ids are URL-safe tokens.
_PATH_ID = re.compile(r"[A-Za-z0-9._~-]{1,128}")
# Header-supplied ids: visible ASCII, bounded, so an id can key an item and become an event id.
_HEADER_ID = re.compile(r"[\x21-\x7e]{1,128}")
# base64 of MAX_BODY_BYTES, so an oversized body is refused before it is decoded.
_MAX_BASE64_CHARS = 4 * -(-MAX_BODY_BYTES // 3)


class Receipt:
    """The answer to one delivery: HTTP status, a short message, and what happened (for the log)."""

    __slots__ = ("delivery_id", "event_key", "message", "outcome", "status")

    def __init__(
        self,
        status: int,
        outcome: str,
        message: str,
        *,
        delivery_id: str | None = None,
        event_key: str | None = None,
    ) -> None:
        self.status = status
        self.outcome = outcome
        self.message = message
        self.delivery_id = delivery_id
        self.event_key = event_key

    def body(self) -> dict[str, str]:
        body = {"message": self.message}
        if self.delivery_id is not None:
            body["id"] = self.delivery_id
        return body

    def __repr__(self) -> str:
        return f"Receipt({self.status}, {self.outcome!r}, id={self.delivery_id!r})"


# The one answer for every signature that does not verify, whatever the reason.
_UNAUTHORIZED = ("rejected", "signature does not match")


def receive(
    *,
    provider_id: str,
    subscription_id: str,
    headers: Mapping[str, str],
    body: str | bytes | None,
    base64_encoded: bool = False,
) -> Receipt:
    """Verify and store one delivery. ``headers`` must have lowercase names (as API Gateway v2 sends).

    Raises only when AWS fails (Secrets Manager or DynamoDB): the caller answers 5xx, and Bitbucket
    retries 5xx.
    """
    raw = _raw_body(body, base64_encoded)
    if raw is None:
        return Receipt(413, "too_large", f"payload larger than {MAX_BODY_BYTES // 1024} KB")
    if isinstance(raw, str):
        return Receipt(400, "bad_request", raw)
    event_key = (headers.get("x-event-key") or "").strip()[:_HEADER_VALUE_LIMIT]
    if event_key == PING_EVENT_KEY:
        return Receipt(200, "ping", "pong", event_key=event_key)
    signature = headers.get("x-hub-signature")
    if not signature:
        return Receipt(401, "unsigned", "X-Hub-Signature is required")
    if not _signature_valid(subscription_id, raw, signature):
        return Receipt(401, *_UNAUTHORIZED)
    if not _PATH_ID.fullmatch(provider_id):
        # Only reachable with a valid signature, so this says nothing about subscriptions.
        return Receipt(404, "unknown_provider", "unknown provider")
    if not event_key:
        return Receipt(400, "bad_request", "X-Event-Key is required")
    try:
        text = raw.decode("utf-8")
        payload = json.loads(text)
    except (UnicodeDecodeError, ValueError):
        return Receipt(400, "bad_request", "body is not valid UTF-8 JSON", event_key=event_key)
    if not isinstance(payload, dict):
        return Receipt(400, "bad_request", "body is not a JSON object", event_key=event_key)

    status = RECEIVED if event_key in _ANY_FLAVOR_KEYS else IGNORED
    identifier = delivery_id(headers, raw, subscription_id)
    stored = deliveries.put_new(
        provider_id=provider_id,
        subscription_id=subscription_id,
        delivery_id=identifier,
        event_key=event_key,
        status=status,
        attempt=_attempt(headers),
        headers={name: value[:_HEADER_VALUE_LIMIT] for name in STORED_HEADERS if (value := headers.get(name) or "")},
        body=text,
    )
    if not stored:
        return Receipt(200, "duplicate", "already received", delivery_id=identifier, event_key=event_key)
    if status == IGNORED:
        return Receipt(202, "ignored", "event not handled; recorded", delivery_id=identifier, event_key=event_key)
    return Receipt(202, "accepted", "accepted", delivery_id=identifier, event_key=event_key)


def _raw_body(body: str | bytes | None, base64_encoded: bool) -> bytes | str | None:
    """The bytes Bitbucket sent (what is verified); None when too large; a message when undecodable."""
    if body is None:
        return b""
    if base64_encoded:
        if len(body) > _MAX_BASE64_CHARS:
            return None
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            return "body is not valid base64"
    else:
        raw = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    return None if len(raw) > MAX_BODY_BYTES else raw


def _signature_valid(subscription_id: str, raw: bytes, signature: str) -> bool:
    # A malformed subscription id cannot have a secret; it still costs the same derivation and
    # comparison as any other, so its answer is identical in content and close in time.
    valid_id = bool(_PATH_ID.fullmatch(subscription_id))
    master_key = secret_value(settings().webhook_master_key_secret_arn).encode("utf-8")
    secret = derive_hook_secret(master_key, subscription_id if valid_id else "-")
    return verify_signature(secret, raw, signature) and valid_id


def delivery_id(headers: Mapping[str, str], raw: bytes, subscription_id: str) -> str:
    """The delivery's id: ``X-Request-UUID`` (Cloud), ``X-Request-Id`` (Data Center), else the hook id
    (or subscription id) + the body's SHA-256, which is stable across Bitbucket's redeliveries."""
    for name in ("x-request-uuid", "x-request-id"):
        value = (headers.get(name) or "").strip()
        if _HEADER_ID.fullmatch(value):
            return value
    hook = (headers.get("x-hook-uuid") or "").strip()
    owner = hook if _HEADER_ID.fullmatch(hook) else subscription_id
    return f"{owner}:{hashlib.sha256(raw).hexdigest()}"


def _attempt(headers: Mapping[str, str]) -> int:
    value = (headers.get("x-attempt-number") or "").strip()
    return int(value) if value.isdigit() and 0 < len(value) <= 4 else 1
