"""The OAuth 2.0 authorization-code flow for both flavors: begin (authorize) and complete
(callback). Protocol work is Authlib's; this module adds one-time browser-bound state,
PKCE for Data Center, identity, storage and the admin's verification round trip."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from authlib.integrations.base_client.errors import OAuthError

from bitbridge import accounts, connection_events, providers
from bitbridge.bitbucket.http import TIMEOUT, BitbucketError
from bitbridge.bitbucket.identity import identify
from bitbridge.config import settings
from bitbridge.redirects import UnsafeReturnTo, safe_return_to
from bitbridge.store.base import condition_failed, epoch
from bitbridge.store.ephemeral import OAuthStateRecord
from bitbridge.store.providers import ProviderRecord
from bitbridge.web import clear_cookie, set_cookie

STATE_TTL_SECONDS = 600
PURPOSES = ("sign_in", "connect", "verify", "service_connect")


class SignInError(Exception):
    """A failure to show the user: HTTP status and a short message (never a secret)."""

    def __init__(self, status: int, message: str, title: str = "Sign-in failed") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.title = title


@dataclass
class Outcome:
    """What the callback handler should answer."""

    kind: str  # "redirect" | "page"
    location: str = ""
    title: str = ""
    message: str = ""
    cookies: list[str] = field(default_factory=list)
    user_id: str | None = None


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _binding_cookie(state: str) -> str:
    # One cookie per attempt, so two tabs signing in at once do not overwrite each other.
    return f"bitbridge_oauth_{_digest(state)[:16]}"


def _usable_provider(provider_id: str, purpose: str) -> ProviderRecord:
    try:
        provider = providers.get_provider(provider_id)
    except providers.UnknownProvider:
        raise SignInError(404, f"Unknown provider '{provider_id}'.") from None
    if purpose == "sign_in" and not provider.sign_in:
        raise SignInError(404, f"Sign-in with '{provider_id}' is not enabled.")
    if purpose in ("connect", "service_connect") and not provider.imports:
        raise SignInError(404, f"Connecting '{provider_id}' is not enabled.")
    return provider


def begin(
    provider_id: str,
    *,
    purpose: str,
    return_to: str | None,
    base_url: str,
    session_user: str | None,
    connect_session: str | None = None,
) -> tuple[str, str]:
    """Start an authorization: returns (URL to redirect the browser to, binding cookie).

    With `connect_session` (a service client's one-time connect link) the purpose is `service_connect`:
    the link is used up here and names the end user and the return_to its client registered."""
    if connect_session:
        purpose = "service_connect"
    if purpose not in PURPOSES:
        raise SignInError(400, f"purpose must be one of {', '.join(PURPOSES)}.")
    provider = _usable_provider(provider_id, purpose)
    service = _service_connect(provider_id, connect_session) if purpose == "service_connect" else None
    try:
        # A service connect's return_to was checked against its client's origins when the link was made.
        target = service.return_to if service else safe_return_to(return_to, settings().allowed_return_to_origins)
    except UnsafeReturnTo as exc:
        raise SignInError(400, f"Refusing to redirect: {exc}.") from None
    if purpose == "connect" and not session_user:
        raise SignInError(401, "Sign in first, then connect another Bitbucket.")
    state = secrets.token_urlsafe(32)  # 256 random bits
    binding = secrets.token_urlsafe(32)
    redirect_uri = providers.callback_url(base_url, provider_id)
    verifier = secrets.token_urlsafe(64) if provider.flavor == providers.DATACENTER else None
    oauth = providers.oauth_session(provider, providers.credentials(provider_id), redirect_uri)
    url, _ = oauth.create_authorization_url(
        providers.endpoints(provider).authorize_url, state=state, code_verifier=verifier
    )
    OAuthStateRecord(
        f"STATE#{_digest(state)}",
        provider_id=provider_id,
        browser_binding=_digest(binding),
        purpose=purpose,
        return_to=target,
        redirect_uri=redirect_uri,
        code_verifier=verifier,
        user_id=session_user if purpose == "connect" else None,
        service_client_id=service.client_id if service else None,
        end_user_id=service.end_user_id if service else None,
        expires_at=epoch(STATE_TTL_SECONDS),
    ).save()
    cookie = set_cookie(
        _binding_cookie(state), binding, max_age=STATE_TTL_SECONDS, path=f"/auth/{provider_id}/callback"
    )
    return url, cookie


def _service_connect(provider_id: str, token: str | None) -> Any:
    from bitbridge.service import links

    if not token:
        raise SignInError(400, "A service connect needs its connect link; ask the app for a new one.")
    try:
        session = links.consume_session(token)
    except links.ConnectSessionInvalid as exc:
        raise SignInError(400, str(exc), "Connect link not valid") from None
    if session.provider_id and session.provider_id != provider_id:
        raise SignInError(400, f"This connect link is for {session.provider_id}, not {provider_id}.")
    return session


def _consume_state(provider_id: str, params: dict[str, str], cookies: dict[str, str]) -> OAuthStateRecord:
    state = params.get("state")
    if not state:
        raise SignInError(400, "The sign-in response has no state; start again.")
    try:
        record = OAuthStateRecord.get(f"STATE#{_digest(state)}", consistent_read=True)
    except OAuthStateRecord.DoesNotExist:
        raise SignInError(400, "Unknown, used or expired sign-in attempt; start again.") from None
    if record.expires_at < time.time() or record.provider_id != provider_id:
        raise SignInError(400, "Unknown, used or expired sign-in attempt; start again.")
    binding = cookies.get(_binding_cookie(state), "")
    if not hmac.compare_digest(_digest(binding), record.browser_binding):
        raise SignInError(400, "This sign-in was started in another browser; start again here.")
    try:  # one-time: only the first callback with this state gets past this line
        record.delete(condition=OAuthStateRecord.pk.exists())
    except Exception as exc:
        if condition_failed(exc):
            raise SignInError(400, "This sign-in attempt was already used; start again.") from None
        raise
    return record


def _provider_error(provider_id: str, purpose: str, params: dict[str, str]) -> SignInError:
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
    return SignInError(400 if error != "access_denied" else 403, message, "Not signed in")


def complete(provider_id: str, params: dict[str, str], cookies: dict[str, str]) -> Outcome:
    record = _consume_state(provider_id, params, cookies)
    done_cookie = clear_cookie(_binding_cookie(params["state"]), path=f"/auth/{provider_id}/callback")
    if params.get("error"):
        raise _provider_error(provider_id, record.purpose, params)
    code = params.get("code")
    if not code:
        raise SignInError(400, "The sign-in response has no authorization code; start again.")
    provider = _usable_provider(provider_id, record.purpose)
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
        raise SignInError(502, f"Could not reach Bitbucket to finish signing in ({type(exc).__name__}).") from None
    missing = providers.missing_scopes(provider, accounts.granted_scopes(token))
    if missing:
        message = f"The token lacks required permissions: {', '.join(missing)}. Tick them on the Bitbucket side."
        if record.purpose == "verify":
            providers.mark_failed(provider_id, message)
        raise SignInError(400, message, "Missing permissions")
    try:
        identity = identify(provider, token["access_token"])
    except BitbucketError as exc:
        raise SignInError(502, f"Signed in, but reading your Bitbucket profile failed: {exc}") from None
    if provider.status != "verified":
        providers.mark_verified(provider_id)  # a completed round trip proves the configuration
    if record.purpose == "verify":
        return Outcome(
            "page",
            title="Provider verified",
            message=f"{provider_id}: the OAuth round trip worked (signed in as {identity.username}).",
            cookies=[done_cookie],
        )
    try:
        user_id = accounts.upsert(provider_id, identity, token, record.redirect_uri, connect_to=record.user_id)
    except accounts.IdentityLinkedElsewhere as exc:
        raise SignInError(409, str(exc)) from None
    if record.service_client_id and record.end_user_id:
        from bitbridge.service import links

        links.link(record.service_client_id, record.end_user_id, user_id)
        connection_events.publish("connection.created", user_id, provider_id, username=identity.username)
    return Outcome("redirect", location=record.return_to, cookies=[done_cookie], user_id=user_id)


def _token_error(provider_id: str, purpose: str, error: str | None, description: str | None) -> SignInError:
    if error == "invalid_client" or error == "unauthorized_client":
        message = "Bitbucket rejected bitbridge's client credentials (unknown client or wrong secret)."
        providers.mark_failed(provider_id, message + " Run `bitbridge providers verify`.")
        return SignInError(502, message, "Provider misconfigured")
    if error == "invalid_grant":
        return SignInError(400, "Bitbucket refused the authorization code (expired or already used); start again.")
    return SignInError(400, f"Bitbucket refused the code exchange: {error} {(description or '')[:200]}".strip())
