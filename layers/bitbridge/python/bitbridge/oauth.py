"""The OAuth 2.0 authorization-code flow for both flavors: begin (authorize) and complete
(callback). Protocol work is Authlib's; this module adds one-time browser-bound state,
PKCE for Data Center, identity, storage and the admin's verification round trip."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

from authlib.integrations.base_client.errors import OAuthError

from bitbridge import accounts, providers
from bitbridge.bitbucket.http import TIMEOUT, BitbucketError
from bitbridge.config import settings
from bitbridge.errors import InvalidRequest, NotSignedIn, Problem
from bitbridge.redirects import UnsafeReturnTo, safe_return_to
from bitbridge.store.base import condition_failed, epoch
from bitbridge.store.ephemeral import OAuthStateRecord, state_key
from bitbridge.store.providers import ProviderRecord

STATE_TTL_SECONDS = 600
PURPOSES = ("sign_in", "connect", "verify")


class SignInRefused(Problem):
    """A sign-in (or connect, or verify) attempt that cannot go on; `code` says why."""

    title = "Sign-in failed"


@dataclass(frozen=True)
class Started:
    """Where to send the browser, and the cookie that binds the attempt to it."""

    url: str
    binding_cookie: str
    binding: str
    cookie_path: str
    max_age: int = STATE_TTL_SECONDS


@dataclass(frozen=True)
class SignedIn:
    """The user is signed in (or has connected another provider): start a session, go to `return_to`."""

    user_id: str
    return_to: str
    attempt_cookie: str  # the binding cookie to clear
    cookie_path: str


@dataclass(frozen=True)
class ProviderVerified:
    """The admin's verification round trip worked; nobody is signed in by it."""

    provider_id: str
    username: str | None
    attempt_cookie: str
    cookie_path: str


def callback_path(provider_id: str) -> str:
    return f"/auth/{provider_id}/callback"


_UNKNOWN_ATTEMPT = "Unknown, used or expired sign-in attempt; start again."


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _binding_cookie(state: str) -> str:
    # One cookie per attempt, so two tabs signing in at once do not overwrite each other.
    return f"bitbridge_oauth_{_digest(state)[:16]}"


def _usable_provider(provider: ProviderRecord, purpose: str) -> ProviderRecord:
    if purpose == "sign_in" and not provider.sign_in:
        raise SignInRefused(f"Sign-in with '{provider.provider_id}' is not enabled.", code="provider_disabled")
    if purpose == "connect" and not provider.imports:
        raise SignInRefused(f"Connecting '{provider.provider_id}' is not enabled.", code="provider_disabled")
    return provider


def begin(provider_id: str, *, purpose: str, return_to: str | None, base_url: str, session_user: str | None) -> Started:
    """Start an authorization: where to send the browser, and the cookie binding it to the attempt."""
    provider = providers.get_provider(provider_id)  # UnknownProvider names it
    if purpose not in PURPOSES:
        raise InvalidRequest(f"purpose must be one of {', '.join(PURPOSES)}.")
    _usable_provider(provider, purpose)
    try:
        target = safe_return_to(return_to, settings().allowed_return_to_origins)
    except UnsafeReturnTo as exc:
        raise SignInRefused(f"Refusing to redirect: {exc}.", code="unsafe_return_to") from None
    if purpose == "connect" and not session_user:
        raise NotSignedIn("Sign in first, then connect another Bitbucket.")
    state = secrets.token_urlsafe(32)  # 256 random bits
    binding = secrets.token_urlsafe(32)
    redirect_uri = providers.callback_url(base_url, provider_id)
    verifier = secrets.token_urlsafe(64) if providers.bitbucket(provider).uses_pkce else None
    oauth = providers.oauth_session(provider, providers.credentials(provider_id), redirect_uri)
    url, _ = oauth.create_authorization_url(
        providers.endpoints(provider).authorize_url, state=state, code_verifier=verifier
    )
    OAuthStateRecord(
        state_key(_digest(state)),
        provider_id=provider_id,
        browser_binding=_digest(binding),
        purpose=purpose,
        return_to=target,
        redirect_uri=redirect_uri,
        code_verifier=verifier,
        user_id=session_user if purpose == "connect" else None,
        expires_at=epoch(STATE_TTL_SECONDS),
    ).save()
    return Started(url, _binding_cookie(state), binding, callback_path(provider_id))


def _consume_state(provider_id: str, params: dict[str, str], cookies: dict[str, str]) -> OAuthStateRecord:
    state = params.get("state")
    if not state:
        raise SignInRefused("The sign-in response has no state; start again.", code="sign_in_attempt_invalid")
    try:
        record = OAuthStateRecord.get(state_key(_digest(state)), consistent_read=True)
    except OAuthStateRecord.DoesNotExist:
        raise SignInRefused(_UNKNOWN_ATTEMPT, code="sign_in_attempt_invalid") from None
    if record.expires_at < time.time() or record.provider_id != provider_id:
        raise SignInRefused(_UNKNOWN_ATTEMPT, code="sign_in_attempt_invalid")
    binding = cookies.get(_binding_cookie(state), "")
    if not hmac.compare_digest(_digest(binding), record.browser_binding):
        message = "This sign-in was started in another browser; start again here."
        raise SignInRefused(message, code="sign_in_attempt_invalid")
    try:  # one-time: only the first callback with this state gets past this line
        record.delete(condition=OAuthStateRecord.pk.exists())
    except Exception as exc:
        if condition_failed(exc):
            message = "This sign-in attempt was already used; start again."
            raise SignInRefused(message, code="sign_in_attempt_invalid") from None
        raise
    return record


def _provider_error(provider_id: str, purpose: str, params: dict[str, str]) -> SignInRefused:
    error = params.get("error", "")
    description = params.get("error_description", "")[:300]
    if error == "access_denied":
        message = "Access was denied on Bitbucket, so you are not signed in."
    elif error == "invalid_scope":
        message = f"Bitbucket refused the requested permissions (invalid_scope): {description}"
    else:
        message = f"Bitbucket answered with an error: {error} {description}".strip()
    if purpose == "verify":
        providers.mark_failed(provider_id, message)
    code = "access_denied" if error == "access_denied" else "authorization_refused"
    return SignInRefused(message, code=code, title="Not signed in")


def complete(provider_id: str, params: dict[str, str], cookies: dict[str, str]) -> SignedIn | ProviderVerified:
    """Finish an authorization: the user signed in (or connected), or the provider verified."""
    provider = providers.get_provider(provider_id)  # an unknown provider is named before any state
    record = _consume_state(provider_id, params, cookies)
    attempt = (_binding_cookie(params["state"]), callback_path(provider_id))
    if params.get("error"):
        raise _provider_error(provider_id, record.purpose, params)
    code = params.get("code")
    if not code:
        message = "The sign-in response has no authorization code; start again."
        raise SignInRefused(message, code="sign_in_attempt_invalid")
    _usable_provider(provider, record.purpose)
    oauth = providers.oauth_session(provider, providers.credentials(provider_id), record.redirect_uri)
    try:
        # Exchanged at once: Data Center codes live for 10 seconds.
        token: dict[str, Any] = dict(
            oauth.fetch_token(
                providers.endpoints(provider).token_url,
                code=code,
                code_verifier=record.code_verifier,
                timeout=TIMEOUT,
            )
        )
    except OAuthError as exc:
        raise _token_error(provider_id, record.purpose, exc.error, exc.description) from None
    except Exception as exc:
        message = f"Could not reach Bitbucket to finish signing in ({type(exc).__name__}); try again."
        raise SignInRefused(message, code="bitbucket_error") from None
    missing = providers.missing_scopes(provider, accounts.granted_scopes(token))
    if missing:
        message = f"The token lacks required permissions: {', '.join(missing)}. Tick them on the Bitbucket side."
        if record.purpose == "verify":
            providers.mark_failed(provider_id, message)
        raise SignInRefused(message, code="missing_permissions", title="Missing permissions")
    try:
        identity = providers.identify(provider, token["access_token"])
    except BitbucketError as exc:
        message = f"Signed in, but reading your Bitbucket profile failed: {exc}"
        raise SignInRefused(message, code="bitbucket_error") from None
    if provider.status != "verified":
        providers.mark_verified(provider_id)  # a completed round trip proves the configuration
    if record.purpose == "verify":
        return ProviderVerified(provider_id, identity.username, *attempt)
    user_id = accounts.upsert(provider_id, identity, token, record.redirect_uri, connect_to=record.user_id)
    return SignedIn(user_id, record.return_to, *attempt)


def _token_error(provider_id: str, purpose: str, error: str | None, description: str | None) -> SignInRefused:
    if error == "invalid_client" or error == "unauthorized_client":
        message = "Bitbucket rejected bitbridge's client credentials (unknown client or wrong secret)."
        providers.mark_failed(provider_id, message + " Run `bitbridge providers verify`.")
        return SignInRefused(message, code="provider_misconfigured", title="Provider misconfigured")
    if error == "invalid_grant":
        message = "Bitbucket refused the authorization code (expired or already used); start again."
    else:
        message = f"Bitbucket refused the code exchange: {error} {(description or '')[:200]}".strip()
    return SignInRefused(message, code="authorization_refused")
