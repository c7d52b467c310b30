"""Webhook secrets and ``X-Hub-Signature`` checks for Bitbucket Cloud and Data Center.

Both flavors sign a delivery the same way: ``X-Hub-Signature: sha256=<hex HMAC-SHA256(secret, raw body)>``.
Per-subscription secrets are *derived* from one master key, so verifying a delivery needs no database read
and no per-hook secret is stored anywhere.

The webhook receiver imports this module on its cold path: standard library only, nothing else.
Nothing here logs, and no error message ever contains a secret, a body or a signature.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["derive_hook_secret", "sign", "verify_signature"]

_DERIVATION_LABEL = b"bitbridge-webhook-v1:"
_PREFIX = "sha256="
_HEX_DIGITS = frozenset("0123456789abcdef")
_DIGEST_HEX_LEN = hashlib.sha256().digest_size * 2  # 64


def derive_hook_secret(master_key: bytes, subscription_id: str) -> str:
    """Return the webhook secret for one subscription: lowercase hex HMAC-SHA256, 64 characters.

    ``HMAC-SHA256(master_key, b"bitbridge-webhook-v1:" + subscription_id)``. Deterministic, so the receiver
    recomputes it per delivery; different for every subscription and every master key. 64 characters fit
    Bitbucket Cloud's 128-character limit on hook secrets.
    """
    if not isinstance(master_key, bytes | bytearray) or not master_key:
        raise ValueError("webhook master key must be non-empty bytes")
    if not isinstance(subscription_id, str) or not subscription_id:
        raise ValueError("subscription id must be a non-empty string")
    message = _DERIVATION_LABEL + subscription_id.encode("utf-8")
    return hmac.new(bytes(master_key), message, hashlib.sha256).hexdigest()


def _key(secret: str | bytes) -> bytes:
    return secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)


def sign(secret: str | bytes, body: bytes) -> str:
    """Return the ``X-Hub-Signature`` value Bitbucket sends for ``body``: ``"sha256=<lowercase hex>"``."""
    return _PREFIX + hmac.new(_key(secret), body, hashlib.sha256).hexdigest()


def verify_signature(secret: str | bytes, body: bytes, header: str | None) -> bool:
    """True when ``header`` is a valid ``sha256=<hex>`` signature of ``body`` under ``secret``.

    Only the ``sha256=`` form is accepted (hex digits in either case); ``None``, empty, ``sha1=``, a
    wrong length or non-hex digits give False. The comparison is constant-time. Never raises on bad input.
    """
    try:
        if not isinstance(header, str):
            return False
        value = header.strip()
        if len(value) != len(_PREFIX) + _DIGEST_HEX_LEN or not value.startswith(_PREFIX):
            return False
        received = value[len(_PREFIX) :].lower()
        if not _HEX_DIGITS.issuperset(received):
            return False
        if not isinstance(secret, str | bytes | bytearray) or not secret:
            return False
        if not isinstance(body, bytes | bytearray | memoryview):
            return False
        expected = hmac.new(_key(secret), bytes(body), hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected.encode("ascii"), received.encode("ascii"))
    except Exception:  # a verifier must answer, never raise
        return False
