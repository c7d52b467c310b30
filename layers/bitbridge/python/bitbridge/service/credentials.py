"""Service clients and their keys: scoped, revocable, rotatable with an overlap, never stored in plaintext.

A key is `<key_id>.<secret>`, sent as `Authorization: Bearer <key_id>.<secret>`. The table holds only a
random salt and SHA-256(salt + secret): the secret is 256 random bits, so a fast hash is enough (no
password-style stretching needed) and verification stays in the microseconds. The comparison is
constant-time, and an unknown key id costs the same hash as a wrong secret.

Checked here, in the function, rather than by an API Gateway authorizer, so the local stack (which runs
the same handler) checks exactly what AWS checks, with the same answers (see docs/service-api.md).

Keys are cached per container for CACHE_SECONDS (a DynamoDB read saved on nearly every call): a
revocation, or a rotation's end of overlap, reaches every running container within that time. The
secret itself is checked against the hash on every call, cached or not.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from bitbridge.redirects import UnsafeReturnTo, safe_return_to
from bitbridge.service.errors import ServiceRefused, refuse
from bitbridge.store.base import condition_failed
from bitbridge.store.service import CLIENT_PROFILE, KEY_SK, ServiceClientRecord, ServiceKeyRecord, client_pk, key_pk
from bitbridge.timestamps import iso

SCOPES = (
    "connections:read",
    "connections:write",
    "tokens:read",
    "proxy",
    "imports:write",
    "imports:read",
    "files:read",
    "statuses:write",
    "statuses:read",
    "comments:write",
    "pullrequests:write",
)
CACHE_SECONDS = 5.0
DEFAULT_OVERLAP_SECONDS = 24 * 3600
KEY_PREFIX = "bbk_"

_CLIENT_ID = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$")
_KEY = re.compile(r"^(bbk_[0-9a-f]{16})\.([A-Za-z0-9_-]{20,128})$")


class ClientError(Exception):
    """A management problem the admin can fix (bad id, duplicate, unknown client, ...)."""


@dataclass(frozen=True)
class Caller:
    """The authenticated product backend behind a request."""

    client_id: str
    key_id: str
    scopes: frozenset[str]
    origins: tuple[str, ...]


@dataclass(frozen=True)
class _Verified:
    client_id: str
    salt: str
    secret_hash: str
    key_revoked: bool
    key_expires_at: float | None
    client_revoked: bool
    scopes: frozenset[str]
    origins: tuple[str, ...]
    cached_until: float


_cache: dict[str, _Verified] = {}
_cache_lock = threading.Lock()


def _hash(salt: str, secret: str) -> str:
    return hashlib.sha256(f"{salt}{secret}".encode()).hexdigest()


def _new_key(client_id: str, expires_at: int | None = None) -> tuple[ServiceKeyRecord, str]:
    key_id = f"{KEY_PREFIX}{secrets.token_hex(8)}"
    secret = secrets.token_urlsafe(32)
    salt = secrets.token_hex(16)
    record = ServiceKeyRecord(
        key_pk(key_id), key_id=key_id, client_id=client_id, salt=salt, secret_hash=_hash(salt, secret)
    )
    return record, f"{key_id}.{secret}"


# ------------------------------------------------------------------------------------------- verification


def unauthenticated(message: str) -> ServiceRefused:
    return refuse("unauthenticated", message)


def _load(key_id: str) -> _Verified | None:
    now = time.monotonic()
    cached = _cache.get(key_id)
    if cached is not None and cached.cached_until > now:
        return cached
    try:
        key = ServiceKeyRecord.get(key_pk(key_id), KEY_SK)
        client = ServiceClientRecord.get(client_pk(key.client_id), CLIENT_PROFILE)
    except (ServiceKeyRecord.DoesNotExist, ServiceClientRecord.DoesNotExist):
        return None
    verified = _Verified(
        client_id=key.client_id,
        salt=key.salt,
        secret_hash=key.secret_hash,
        key_revoked=bool(key.revoked),
        key_expires_at=float(key.expires_at) if key.expires_at is not None else None,
        client_revoked=client.status != "active",
        scopes=frozenset(client.scopes or ()),
        origins=tuple(sorted(client.origins or ())),
        cached_until=now + CACHE_SECONDS,
    )
    with _cache_lock:
        _cache[key_id] = verified
    return verified


_DUMMY_SALT = secrets.token_hex(16)
_DUMMY_HASH = _hash(_DUMMY_SALT, secrets.token_urlsafe(32))


def authenticate(authorization: str | None) -> Caller:
    """The caller for an `Authorization` header, or a 401/403 ServiceError saying what to fix."""
    if not authorization:
        raise unauthenticated("Send `Authorization: Bearer <key_id>.<secret>` (create one: `bitbridge clients add`).")
    scheme, _, credential = authorization.strip().partition(" ")
    match = _KEY.match(credential.strip()) if scheme.lower() == "bearer" else None
    if match is None:
        raise unauthenticated("The Authorization header must be `Bearer <key_id>.<secret>` (a bitbridge service key).")
    key_id, secret = match.groups()
    found = _load(key_id)
    # Hash and compare even for an unknown key id, so timing does not tell which ids exist.
    salt, expected = (found.salt, found.secret_hash) if found else (_DUMMY_SALT, _DUMMY_HASH)
    if not hmac.compare_digest(_hash(salt, secret), expected) or found is None:
        raise unauthenticated("Unknown service key or wrong secret.")
    # Only a caller who proved the secret learns why a real key is refused.
    if found.client_revoked or found.key_revoked:
        raise refuse("credentials_revoked", f"This key of client {found.client_id} has been revoked.")
    if found.key_expires_at is not None and found.key_expires_at <= time.time():
        ended = datetime.fromtimestamp(found.key_expires_at, UTC).isoformat(timespec="seconds")
        raise refuse("credentials_expired", f"This key was rotated; its overlap ended at {ended}. Use the new key.")
    return Caller(found.client_id, key_id, found.scopes, found.origins)


def require(caller: Caller, scope: str) -> None:
    if scope not in caller.scopes:
        raise refuse(
            "insufficient_scope",
            f"Client {caller.client_id} lacks the `{scope}` scope "
            f"(it has: {', '.join(sorted(caller.scopes)) or 'none'}); an admin can add it.",
            required_scope=scope,
        )


def checked_return_to(caller: Caller, return_to: object) -> str:
    """`return_to` if it is an absolute URL on one of the client's registered origins."""
    if not isinstance(return_to, str) or not return_to.startswith(("https://", "http://")):
        raise refuse("invalid_return_to", "`return_to` must be an absolute URL on a registered origin.")
    try:
        return safe_return_to(return_to, caller.origins)
    except UnsafeReturnTo as exc:
        raise refuse(
            "invalid_return_to",
            f"Refusing return_to: {exc}. Registered origins: {', '.join(caller.origins) or 'none'}.",
        ) from None


def forget_cache() -> None:
    with _cache_lock:
        _cache.clear()


# ------------------------------------------------------------------------------------------- management


def _check_scopes(scopes: list[str]) -> set[str]:
    unknown = set(scopes) - set(SCOPES)
    if unknown or not scopes:
        raise ClientError(f"scopes must be some of {', '.join(SCOPES)} (got {', '.join(sorted(unknown)) or 'none'})")
    return set(scopes)


def _check_origin(origin: str) -> str:
    cleaned = origin.strip().rstrip("/").lower()
    if not re.match(r"^https?://[a-z0-9.-]+(:\d{1,5})?$", cleaned):
        raise ClientError(f"an origin is scheme://host[:port] with no path, got {origin!r}")
    if cleaned.startswith("http://") and not re.match(r"^http://(127\.0\.0\.1|localhost)(:\d+)?$", cleaned):
        raise ClientError(f"plain-HTTP origins are only accepted on loopback: {origin}")
    return cleaned


def get_client(client_id: str) -> ServiceClientRecord:
    try:
        return ServiceClientRecord.get(client_pk(client_id), CLIENT_PROFILE)
    except ServiceClientRecord.DoesNotExist:
        raise ClientError(f"no service client {client_id!r}") from None


def add_client(
    client_id: str, scopes: list[str], origins: list[str], label: str | None = None
) -> tuple[ServiceClientRecord, str]:
    """Register a client and its first key; the key is returned once and never stored."""
    if not _CLIENT_ID.match(client_id):
        raise ClientError("client id: 1-40 lowercase letters, digits and dashes")
    key, credential = _new_key(client_id)
    record = ServiceClientRecord(
        client_pk(client_id),
        CLIENT_PROFILE,
        client_id=client_id,
        label=label,
        scopes=_check_scopes(scopes),
        origins={_check_origin(o) for o in origins} or None,
        key_ids={key.key_id},
    )
    try:
        record.save(condition=ServiceClientRecord.pk.does_not_exist())
    except Exception as exc:
        if condition_failed(exc):
            raise ClientError(f"service client {client_id!r} already exists (rotate its key instead)") from None
        raise
    key.save()
    return record, credential


def rotate(client_id: str, overlap_seconds: int = DEFAULT_OVERLAP_SECONDS) -> tuple[str, list[str]]:
    """A new key; the current keys keep working for `overlap_seconds`, then only the new one does.
    Returns the new credential and the ids of the keys being phased out."""
    client = get_client(client_id)
    if client.status != "active":
        raise ClientError(f"service client {client_id!r} is revoked")
    if overlap_seconds < 0:
        raise ClientError("the overlap cannot be negative")
    key, credential = _new_key(client_id)
    key.save()
    ends = int(time.time() + overlap_seconds)
    phased: list[str] = []
    for old_id in sorted(client.key_ids or ()):
        try:
            old = ServiceKeyRecord.get(key_pk(old_id), KEY_SK)
        except ServiceKeyRecord.DoesNotExist:
            continue
        if old.revoked or (old.expires_at is not None and old.expires_at <= ends):
            continue  # already ending sooner
        old.update(actions=[ServiceKeyRecord.expires_at.set(ends)])
        phased.append(old_id)
    client.update(actions=[ServiceClientRecord.key_ids.add({key.key_id})])
    return credential, phased


def revoke(client_id: str, key_id: str | None = None) -> None:
    """Revoke one key, or (no key id) the whole client and every key it has."""
    client = get_client(client_id)
    if key_id is not None:
        if key_id not in (client.key_ids or set()):
            raise ClientError(f"client {client_id!r} has no key {key_id!r}")
        ServiceKeyRecord(key_pk(key_id), KEY_SK).update(actions=[ServiceKeyRecord.revoked.set(True)])
        return
    client.update(actions=[ServiceClientRecord.status.set("revoked"), ServiceClientRecord.revoked_at.set(iso())])
    for kid in client.key_ids or ():
        ServiceKeyRecord(key_pk(kid), KEY_SK).update(actions=[ServiceKeyRecord.revoked.set(True)])


def list_clients() -> list[ServiceClientRecord]:
    records = ServiceClientRecord.scan(ServiceClientRecord.sk == CLIENT_PROFILE)
    return sorted(records, key=lambda c: c.client_id)


def keys_of(client: ServiceClientRecord) -> list[ServiceKeyRecord]:
    if not client.key_ids:
        return []
    found = ServiceKeyRecord.batch_get([(key_pk(k), KEY_SK) for k in client.key_ids])
    return sorted(found, key=lambda k: k.created_at)


def key_state(key: ServiceKeyRecord) -> str:
    if key.revoked:
        return "revoked"
    if key.expires_at is not None:
        return "expired" if key.expires_at <= time.time() else "overlap"
    return "active"
