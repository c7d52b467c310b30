"""Browser sessions: a short-lived JWT (HS256, key from Secrets Manager) naming a server-side
session record, so logout really ends it."""

from __future__ import annotations

import secrets
import time

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OctKey

from bitbridge.aws import secret_value
from bitbridge.config import settings
from bitbridge.store.ephemeral import SessionRecord, session_key
from bitbridge.timestamps import epoch

LIFETIME_SECONDS = 8 * 3600
_ISSUER = "bitbridge"


def _key() -> OctKey:
    return OctKey.import_key(secret_value(settings().session_key_secret_arn).encode())


def issue(user_id: str) -> tuple[str, int]:
    """Start a session; returns the token for the cookie and its lifetime in seconds."""
    session_id = secrets.token_urlsafe(24)
    SessionRecord(session_key(session_id), user_id=user_id, expires_at=epoch(LIFETIME_SECONDS)).save()
    now = int(time.time())
    claims = {"iss": _ISSUER, "sub": user_id, "sid": session_id, "iat": now, "exp": now + LIFETIME_SECONDS}
    return jwt.encode({"alg": "HS256"}, claims, _key(), algorithms=["HS256"]), LIFETIME_SECONDS


def user_for(token: str | None) -> str | None:
    """The signed-in user for a session token, or None (bad signature, expired, logged out)."""
    if not token:
        return None
    try:
        decoded = jwt.decode(token, _key(), algorithms=["HS256"])
        jwt.JWTClaimsRegistry(
            iss={"essential": True, "value": _ISSUER}, exp={"essential": True}, sid={"essential": True}
        ).validate(decoded.claims)
    except (JoseError, ValueError):
        return None
    claims = decoded.claims
    try:
        record = SessionRecord.get(session_key(claims["sid"]))
    except SessionRecord.DoesNotExist:
        return None
    if record.expires_at < time.time() or record.user_id != claims["sub"]:
        return None
    return str(claims["sub"])


def end(token: str | None) -> None:
    if not token:
        return
    try:
        claims = jwt.decode(token, _key(), algorithms=["HS256"]).claims
    except (JoseError, ValueError):
        return
    SessionRecord(session_key(str(claims.get("sid")))).delete()
