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

from bitbridge import accounts, connection_events, providers, verification
from bitbridge.bitbucket.http import TIMEOUT, BitbucketError
from bitbridge.calls import Caller
from bitbridge.config import settings
from bitbridge.errors import InvalidRequest, NotSignedIn, Problem
from bitbridge.redirects import UnsafeReturnTo, safe_return_to
from bitbridge.safe_text import one_line
from bitbridge.store.base import condition_failed
from bitbridge.store.ephemeral import OAuthStateRecord, state_key
from bitbridge.store.providers import ProviderRecord
from bitbridge.timestamps import epoch

STATE_TTL_SECONDS = 600
PURPOSES = ("sign_in", "connect", "verify", "service_connect")


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
    return_to: str = "/"  # where the result page links back to (the console's Admin page, when started there)


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
    if purpose in ("connect", "service_connect") and not provider.imports:
        raise SignInRefused(f"Connecting '{provider.provider_id}' is not enabled.", code="provider_disabled")
    return provider


def begin(
    provider_id: str,
    *,
    purpose: str,
    return_to: str | None,
    base_url: str,
    session_user: str | None,
    connect_session: str | None = None,
    verify_ticket: str | None = None,
) -> Started:
    """Start an authorization: where to send the browser, and the cookie binding it to the attempt.

    With `connect_session` (a service client's one-time connect link) the purpose is `service_connect`:
    the link is used up here and names the end user and the return_to its client registered.
    `purpose=verify` needs an admin's session or `verify_ticket` (bitbridge.verification)."""
    provider = providers.get_provider(provider_id)  # UnknownProvider names it
    if connect_session:
        purpose = "service_connect"
    if purpose not in PURPOSES:
        raise InvalidRequest(f"purpose must be one of {', '.join(PURPOSES)}.")
    _usable_provider(provider, purpose)
    ticket_digest = None
    if purpose == "verify":  # before anything is stored: a refused verification leaves no trace
        ticket_digest = verification.authorise(provider_id, session_user=session_user, ticket=verify_ticket)
    service = _service_connect(provider_id, connect_session) if purpose == "service_connect" else None
    try:
        # A service connect's return_to was checked against its client's origins when the link was made.
        target = service.return_to if service else safe_return_to(return_to, settings().allowed_return_to_origins)
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
        service_client_id=service.client_id if service else None,
        end_user_id=service.end_user_id if service else None,
        verify_ticket=ticket_digest,
        expires_at=epoch(STATE_TTL_SECONDS),
    ).save()
    return Started(url, _binding_cookie(state), binding, callback_path(provider_id))


def _service_connect(provider_id: str, token: str | None) -> Any:
    from bitbridge.service import links

    title = "Connect link not valid"
    if not token:
        message = "A service connect needs its connect link; ask the app for a new one."
        raise SignInRefused(message, code="connect_session_invalid", title=title)
    try:
        session = links.consume_session(token)
    except links.ConnectSessionInvalid as exc:
        raise SignInRefused(str(exc), code="connect_session_invalid", title=title) from None
    if session.provider_id and session.provider_id != provider_id:
        message = f"This connect link is for {session.provider_id}, not {provider_id}."
        raise SignInRefused(message, code="connect_session_invalid", title=title)
    return session


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


# What a refused authorization means, by purpose: (the page's title, what did not happen).
_NOT_DONE = {
    "sign_in": ("Not signed in", "you are not signed in"),
    "verify": ("Not verified", "the provider is not verified"),
}
_NOT_CONNECTED = ("Not connected", "nothing was connected")


def _provider_error(params: dict[str, str], purpose: str) -> SignInRefused:
    error = params.get("error", "")
    description = params.get("error_description", "")[:300]
    title, outcome = _NOT_DONE.get(purpose, _NOT_CONNECTED)
    if error == "access_denied":
        message = f"Access was denied on Bitbucket, so {outcome}."
    elif error == "invalid_scope":
        message = f"Bitbucket refused the requested permissions (invalid_scope): {description}"
    else:
        message = f"Bitbucket answered with an error: {error} {description}".strip()
    code = "access_denied" if error == "access_denied" else "authorization_refused"
    return SignInRefused(message, code=code, title=title)


def _check_issuer(provider: ProviderRecord, params: dict[str, str], purpose: str) -> None:
    """RFC 9207: a server that names itself in the authorization response (`iss`) must name this provider;
    one whose metadata says it does must not leave it out. Checked before the code is exchanged, so a
    response meant for another server (a mix-up) leaves nothing stored."""
    named, expected = params.get("iss"), providers.issuer(provider)
    if named is None and not provider.sends_iss:
        return  # Bitbucket documents no `iss`; the provider-bound state already blocks a mix-up
    if named is not None and hmac.compare_digest(named.encode(), expected.encode()):
        return
    title, outcome = _NOT_DONE.get(purpose, _NOT_CONNECTED)
    said = f"named {one_line(named)[:200]!r}" if named is not None else "did not name its issuer"
    message = (
        f"The authorization response {said}, not {expected}, so {outcome}: it may come from another server. "
        "Start again; if this keeps happening, tell your administrator."
    )
    raise SignInRefused(message, code="issuer_mismatch", title=title)


def complete(provider_id: str, params: dict[str, str], cookies: dict[str, str]) -> SignedIn | ProviderVerified:
    """Finish an authorization: the user signed in (or connected), or the provider verified."""
    provider = providers.get_provider(provider_id)  # an unknown provider is named before any state
    record = _consume_state(provider_id, params, cookies)
    try:
        result = _complete(provider, record, params)
    except Problem as exc:
        if record.purpose != "sign_in":  # still signed in (or someone else's product): back where it began
            exc.return_to = record.return_to
        if record.purpose == "verify" and isinstance(exc, SignInRefused):  # what stopped it is the diagnosis
            providers.mark_failed(provider_id, exc.message)
            verification.record_outcome(record.verify_ticket, "failed")
        raise
    if record.purpose == "verify":
        verification.record_outcome(record.verify_ticket, "verified")
    return result


def _complete(
    provider: ProviderRecord, record: OAuthStateRecord, params: dict[str, str]
) -> SignedIn | ProviderVerified:
    provider_id = provider.provider_id
    attempt = (_binding_cookie(params["state"]), callback_path(provider_id))
    _check_issuer(provider, params, record.purpose)
    if params.get("error"):
        raise _provider_error(params, record.purpose)
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
        raise SignInRefused(message, code="missing_permissions", title="Missing permissions")
    try:
        identity = providers.identify(provider, Caller.with_token(provider, token["access_token"]).get)
    except BitbucketError as exc:
        message = f"Signed in, but reading your Bitbucket profile failed: {exc}"
        raise SignInRefused(message, code="bitbucket_error") from None
    if record.purpose == "verify" or provider.status != "verified":
        providers.mark_verified(provider_id)  # a completed round trip proves the configuration (again)
    if record.purpose == "verify":
        return ProviderVerified(provider_id, identity.username, *attempt, return_to=record.return_to)
    user_id, created = accounts.upsert(provider_id, identity, token, record.redirect_uri, connect_to=record.user_id)
    if record.service_client_id and record.end_user_id:
        from bitbridge.service import links

        links.link(record.service_client_id, record.end_user_id, user_id)
        created = True  # new to this end user, whatever bitbridge knew before
    if created:
        # Carries every service end user linked to this user (none for a plain sign-in of an unlinked user).
        connection_events.publish("connection.created", user_id, provider_id, username=identity.username)
    return SignedIn(user_id, record.return_to, *attempt)


def _token_error(provider_id: str, purpose: str, error: str | None, description: str | None) -> SignInRefused:
    if error == "invalid_client" or error == "unauthorized_client":
        message = "Bitbucket rejected bitbridge's client credentials (unknown client or wrong secret)."
        if purpose != "verify":  # a verification records its own failure (complete)
            providers.mark_failed(provider_id, message + " Run `bitbridge providers verify`.")
        return SignInRefused(message, code="provider_misconfigured", title="Provider misconfigured")
    if error == "invalid_grant":
        message = "Bitbucket refused the authorization code (expired or already used); start again."
    else:
        message = f"Bitbucket refused the code exchange: {error} {(description or '')[:200]}".strip()
    return SignInRefused(message, code="authorization_refused")
