"""Receive one Bitbucket webhook delivery: verify it, store it once, answer in milliseconds.

The only write is one conditional put of the delivery, keyed by provider + delivery id: it makes the
delivery durable and deduplicates redeliveries in the same step. Publishing happens later, from the
deliveries table's stream (``bitbridge.webhooks.publish``), so nothing here calls Bitbucket or EventBridge.

Outcomes, in the order they are decided, with the status `bitbridge.edge.STATUS` answers each with
(Bitbucket retries 5xx only, so a refused delivery is 4xx and only an AWS failure is 5xx):

=================  =====  ==============================================================================
too_large          413    body over 256 KB (Bitbucket's own payload limit)
ping               200    ``X-Event-Key: diagnostics:ping`` - Data Center's unsigned "Test connection";
                          nothing stored
unsigned,          401    no ``X-Hub-Signature``; or a signature that does not verify with the
rejected                  subscription's derived secret - the same answer whether or not the subscription
                          exists, because existence is never looked up (no database read on this path)
unknown_provider   404    a provider id that cannot be one (only after a valid signature)
bad_request        400    no ``X-Event-Key``, or a body that is not one strict JSON object
                          (:func:`parse_json_body`: UTF-8, nesting, numbers, duplicate keys, surrogates) -
                          a poison body is answered, never stored or retried
ignored            202    an event key bitbridge does not handle: stored with status ``ignored``
duplicate          200    a delivery id already stored (a redelivery): nothing written
accepted           202    stored with status ``received``; the publisher takes it from there
(not stored)       503    AWS failed (the receiver's handler answers ``delivery_not_stored``): Bitbucket
                          retries later
=================  =====  ==============================================================================

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
from itertools import accumulate

from bitbridge.aws import secret_value
from bitbridge.config import settings
from bitbridge.store import deliveries
from bitbridge.store.deliveries import IGNORED, RECEIVED
from bitbridge.webhooks.normalise import HANDLED_EVENT_KEYS
from bitbridge.webhooks.signatures import derive_hook_secret, verify_signature

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover - annotations only
    from collections.abc import Mapping
    from typing import Any

__all__ = ["MAX_BODY_BYTES", "PING_EVENT_KEY", "STORED_HEADERS", "Receipt", "delivery_id", "parse_json_body", "receive"]

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
    """The answer to one delivery: what happened (`outcome`, which `bitbridge.edge.STATUS` turns into the
    HTTP status Bitbucket acts on) and a short message."""

    __slots__ = ("delivery_id", "event_key", "message", "outcome")

    def __init__(
        self,
        outcome: str,
        message: str,
        *,
        delivery_id: str | None = None,
        event_key: str | None = None,
    ) -> None:
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
        return f"Receipt({self.outcome!r}, id={self.delivery_id!r})"


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
        return Receipt("too_large", f"payload larger than {MAX_BODY_BYTES // 1024} KB")
    if isinstance(raw, str):
        return Receipt("bad_request", raw)
    event_key = (headers.get("x-event-key") or "").strip()[:_HEADER_VALUE_LIMIT]
    if event_key == PING_EVENT_KEY:
        return Receipt("ping", "pong", event_key=event_key)
    signature = headers.get("x-hub-signature")
    if not signature:
        return Receipt("unsigned", "X-Hub-Signature is required")
    if not _signature_valid(subscription_id, raw, signature):
        return Receipt(*_UNAUTHORIZED)
    if not _PATH_ID.fullmatch(provider_id):
        # Only reachable with a valid signature, so this says nothing about subscriptions.
        return Receipt("unknown_provider", "unknown provider")
    if not event_key:
        return Receipt("bad_request", "X-Event-Key is required")
    parsed = parse_json_body(raw)
    if isinstance(parsed, str):
        return Receipt("bad_request", parsed, event_key=event_key)
    text, _payload = parsed

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
        return Receipt("duplicate", "already received", delivery_id=identifier, event_key=event_key)
    if status == IGNORED:
        return Receipt("ignored", "event not handled; recorded", delivery_id=identifier, event_key=event_key)
    return Receipt("accepted", "accepted", delivery_id=identifier, event_key=event_key)


#: Bitbucket's payloads nest about 8 deep; far more is an attack on whoever parses the body next.
MAX_JSON_DEPTH = 64
# JSON strings (so brackets inside them do not count), and the surrogate escapes worth a closer look.
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_DEPTH_STEP = [1 if b in b"[{" else -1 for b in range(256)]


class _PoisonJSON(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _PoisonJSON("body has duplicate keys in an object")
    return obj


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise _PoisonJSON("body has a number out of range")
    return value


def _non_standard(name: str) -> Any:
    raise _PoisonJSON(f"body has {name}, which is not JSON")


def parse_json_body(raw: bytes) -> tuple[str, dict[str, Any]] | str:
    """``(text, object)`` for a body that is one strict JSON object, else a short reason (the caller's 400).

    Strict means what every later reader (the publisher, EventBridge, consumers) can take without failing:
    UTF-8 without BOM; nesting at most ``MAX_JSON_DEPTH`` - checked before parsing, as the parser
    recurses; no NaN/Infinity or numbers beyond a double; no duplicate keys (readers would disagree on
    which one counts); no unpaired surrogate escapes (they cannot be encoded as UTF-8 again).
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "body is not valid UTF-8"
    if _depth(raw) > MAX_JSON_DEPTH and _depth(_JSON_STRING.sub(b"", raw)) > MAX_JSON_DEPTH:
        # (the first count includes brackets inside strings: an upper bound, cheap enough for every body)
        return f"body nests deeper than {MAX_JSON_DEPTH} levels"
    try:
        payload = json.loads(text, object_pairs_hook=_unique_keys, parse_float=_finite, parse_constant=_non_standard)
        if _SURROGATE_ESCAPE.search(text):  # rare: only then look for an unpaired one
            json.dumps(payload, ensure_ascii=False).encode("utf-8")
    except _PoisonJSON as exc:
        return str(exc)
    except UnicodeEncodeError:
        return "body has an unpaired surrogate escape"
    except (ValueError, RecursionError):  # RecursionError: brackets hidden from the count by bad strings
        return "body is not valid JSON"
    if not isinstance(payload, dict):
        return "body is not a JSON object"
    return text, payload


def _depth(raw: bytes) -> int:
    """The deepest bracket nesting in ``raw`` (C-speed: delete all but brackets, then a running sum)."""
    brackets = raw.translate(None, _NOT_BRACKETS)
    if len(brackets) <= MAX_JSON_DEPTH:
        return len(brackets)
    return max(accumulate(map(_DEPTH_STEP.__getitem__, brackets)))


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
