"""OAuth 2.0 web flows: consent pages and token endpoints for Cloud and Data Center.

Cloud: /site/oauth2/authorize + /site/oauth2/access_token (HTTP Basic client auth only, no PKCE,
prefix-matched redirect_uri, rotating refresh tokens).
Data Center: /rest/oauth2/latest/authorize + /rest/oauth2/latest/token (client credentials in the form body,
exact redirect_uri, PKCE S256/plain, 10 s codes, refresh needs redirect_uri).
"""

from __future__ import annotations

import base64
import binascii
from urllib.parse import urlencode, urlsplit, urlunsplit

from werkzeug.datastructures import MultiDict
from werkzeug.utils import redirect
from werkzeug.wrappers import Response

from . import pages
from .datacenter import SCOPES as DC_SCOPES
from .models import CLOUD, DC, Backend, OAuthClient, OAuthError, Token
from .web import Ctx, Routes, json_response

cloud_routes = Routes()
dc_routes = Routes()


def error_page(ctx: Ctx, title: str, message: str, status: int = 400) -> Response:
    return pages.error_page(title, message, status, flavor=ctx.flavor, request=ctx.request)


def consent_page(ctx: Ctx, client: OAuthClient, action: str, params: MultiDict, scopes: list[str]) -> Response:
    e = pages.e
    hidden = "".join(
        f'<input type="hidden" name="{e(k)}" value="{e(v)}">'
        for k, v in params.items(multi=True)
        if k not in ("user", "decision")
    )
    users = sorted(ctx.backend.users.values(), key=lambda u: u.name)
    options = "".join(f'<option value="{e(u.name)}">{e(u.display_name)} ({e(u.name)})</option>' for u in users)
    scope_list = "".join(f"<li><code>{e(s)}</code></li>" for s in scopes)
    body = (
        f"<h1>Authorize {e(client.name)}</h1>"
        f"<p><strong>{e(client.name)}</strong> is requesting access to your Bitbucket account. "
        "It will be able to:</p>"
        f'<ul class="scopes">{scope_list}</ul>'
        f'<form method="post" action="{e(action)}">{hidden}'
        '<label for="user">Sign in as (demo user)</label>'
        f'<select id="user" name="user">{options}</select>'
        '<div class="actions"><button class="primary" type="submit" name="decision" value="grant">Grant access'
        '</button><button type="submit" name="decision" value="deny">Deny</button></div></form>'
        f'<p class="muted">Deny takes you back to {e(client.name)} without access.</p>'
    )
    return pages.layout("Authorize " + client.name, body, ctx.flavor)


def _with_query(url: str, **params: str | None) -> str:
    parts = urlsplit(url)
    extra = urlencode({k: v for k, v in params.items() if v is not None})
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def _issuer(ctx: Ctx) -> str | None:
    """The `iss` of this server's authorization responses (RFC 9207), as configured (`*_authorization_response_iss`):
    none by default - Atlassian's OAuth documentation shows neither flavour sending it."""
    cfg = ctx.backend.config
    setting = cfg.cloud_authorization_response_iss if ctx.flavor == CLOUD else cfg.dc_authorization_response_iss
    return ctx.root if setting == "self" else setting


def _error_redirect(
    redirect_uri: str, error: str, description: str, state: str | None, iss: str | None = None
) -> Response:
    """RFC 6749 §4.1.2.1: send the error back to the client's redirect_uri (302)."""
    query = _with_query(redirect_uri, error=error, error_description=description, state=state, iss=iss)
    return redirect(query, 302)


def _params(ctx: Ctx) -> MultiDict:
    return ctx.request.form if ctx.request.method == "POST" else ctx.request.args


def _token_response(token: Token, flavor: str, grant: str, backend: Backend) -> Response:
    if flavor == CLOUD:
        body = {
            "access_token": token.access_token,
            "scope": " ".join(token.scopes),
            "expires_in": backend.config.cloud_access_token_lifetime,
            "refresh_token": token.refresh_token,
            "token_type": "bearer",
            "state": grant,
        }
    else:
        body = {
            "access_token": token.access_token,
            "token_type": "bearer",
            "expires_in": backend.config.dc_access_token_lifetime,
            "refresh_token": token.refresh_token,
            "scope": " ".join(token.scopes),
        }
    return json_response(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


def _oauth_error(err: OAuthError) -> Response:
    return json_response({"error_description": err.description, "error": err.error}, err.status)


def authorize_decision(
    ctx: Ctx, flavor: str, client: OAuthClient, params: MultiDict, redirect_uri: str, scopes: list[str]
) -> Response:
    """Grant or deny: the consent form's POST and the control API's non-interactive authorize share this."""
    state = params.get("state")
    iss = _issuer(ctx)
    if params.get("decision", "grant") != "grant":
        return _error_redirect(redirect_uri, "access_denied", "The resource owner denied the request.", state, iss)
    try:
        ctx.backend.get_user(params.get("user") or "")
    except Exception:
        return error_page(ctx, "Unknown user", "Choose one of the demo users.")
    code = ctx.backend.issue_code(
        flavor,
        client.client_id,
        params["user"],
        redirect_uri if flavor == CLOUD else params.get("redirect_uri"),
        scopes,
        # Cloud ignores PKCE entirely; DC enforces it when a challenge was sent.
        code_challenge=params.get("code_challenge") if flavor == DC else None,
        code_challenge_method=(params.get("code_challenge_method") or "plain") if flavor == DC else None,
    )
    return redirect(_with_query(redirect_uri, code=code.code, state=state, iss=iss), 302)


# ---------------------------------------- Cloud
def cloud_check(ctx: Ctx, params: MultiDict) -> tuple[OAuthClient, str] | Response:
    client = ctx.backend.get_client(CLOUD, params.get("client_id"))
    requested = params.get("redirect_uri")
    # Unknown consumer or a redirect_uri outside the consumer's callback URL: error page, never a redirect.
    if client is None or (requested and not requested.startswith(client.redirect_uri)):
        return error_page(
            ctx,
            "Invalid redirect_uri",
            "Invalid redirect_uri — This integration is misconfigured. Contact the vendor for assistance.",
        )
    return client, requested or client.redirect_uri


@cloud_routes.route("/site/oauth2/authorize", methods=("GET", "POST"))
def cloud_authorize(ctx: Ctx) -> Response:
    params = _params(ctx)
    checked = cloud_check(ctx, params)
    if isinstance(checked, Response):
        return checked
    client, redirect_uri = checked
    if params.get("response_type") != "code":
        return _error_redirect(
            redirect_uri, "unsupported_response_type", "Unsupported response type", params.get("state"), _issuer(ctx)
        )
    if ctx.request.method == "GET":
        return consent_page(ctx, client, ctx.request.path, params, client.scopes)
    return authorize_decision(ctx, CLOUD, client, params, redirect_uri, client.scopes)


def _basic_client(ctx: Ctx) -> tuple[str, str] | None:
    header = ctx.request.headers.get("Authorization", "")
    if not header.lower().startswith("basic "):
        return None
    try:
        client_id, _, secret = base64.b64decode(header[6:].strip()).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return client_id, secret


@cloud_routes.route("/site/oauth2/access_token", methods=("POST",))
def cloud_access_token(ctx: Ctx) -> Response:
    creds = _basic_client(ctx)
    if creds is None:
        # Cloud only accepts HTTP Basic client authentication; client_id/secret in the body are not enough.
        return _oauth_error(
            OAuthError("unauthorized_client", "Requests must be authenticated using OAuth client credentials", 400)
        )
    client = ctx.backend.get_client(CLOUD, creds[0])
    if client is None or client.client_secret != creds[1]:
        return _oauth_error(OAuthError("invalid_client", "Invalid OAuth client credentials", 401))
    form = ctx.request.form
    grant = form.get("grant_type")
    try:
        if grant == "authorization_code":
            token = ctx.backend.exchange_code(CLOUD, client, form.get("code"), form.get("redirect_uri"), None)
        elif grant == "refresh_token":
            token = ctx.backend.refresh(CLOUD, client, form.get("refresh_token"))
        else:
            raise OAuthError("unsupported_grant_type", f"Unsupported grant type: {grant}")
    except OAuthError as err:
        return _oauth_error(err)
    return _token_response(token, CLOUD, grant, ctx.backend)


# ---------------------------------------- Data Center
def dc_check(ctx: Ctx, params: MultiDict) -> tuple[OAuthClient, str] | Response:
    client = ctx.backend.get_client(DC, params.get("client_id"))
    if client is None:
        return error_page(ctx, "Invalid client", "The client_id does not match any registered application.")
    redirect_uri = params.get("redirect_uri")
    if redirect_uri != client.redirect_uri:
        return error_page(
            ctx,
            "Invalid redirect_uri",
            "Invalid redirect_uri: the redirect URI does not match the one registered for this application.",
        )
    return client, redirect_uri


def dc_scopes(client: OAuthClient, raw: str | None) -> list[str] | OAuthError:
    requested = (raw or "").replace(",", " ").split() or ["PUBLIC_REPOS"]
    unknown = [s for s in requested if s not in DC_SCOPES]
    if unknown or not set(requested) <= set(client.scopes):
        return OAuthError(
            "invalid_scope",
            f"The requested scope is invalid, unknown, or malformed: "
            f"{' '.join(unknown or sorted(set(requested) - set(client.scopes)))}",
        )
    return requested


@dc_routes.route("/rest/oauth2/latest/authorize", methods=("GET", "POST"))
def dc_authorize(ctx: Ctx) -> Response:
    params = _params(ctx)
    checked = dc_check(ctx, params)
    if isinstance(checked, Response):
        return checked
    client, redirect_uri = checked
    state, iss = params.get("state"), _issuer(ctx)
    if params.get("response_type") != "code":
        return _error_redirect(
            redirect_uri, "unsupported_response_type", "Only the 'code' response type is supported.", state, iss
        )
    scopes = dc_scopes(client, params.get("scope"))
    if isinstance(scopes, OAuthError):
        return _error_redirect(redirect_uri, scopes.error, scopes.description, state, iss)
    method = params.get("code_challenge_method")
    if params.get("code_challenge") and method not in (None, "S256", "plain"):
        return _error_redirect(
            redirect_uri, "invalid_request", "Unsupported code_challenge_method; use S256 or plain.", state, iss
        )
    if ctx.request.method == "GET":
        return consent_page(ctx, client, ctx.root + "/rest/oauth2/latest/authorize", params, scopes)
    return authorize_decision(ctx, DC, client, params, redirect_uri, scopes)


@dc_routes.route("/rest/oauth2/latest/token", methods=("POST",))
def dc_token(ctx: Ctx) -> Response:
    form = ctx.request.form
    creds = _basic_client(ctx) or (form.get("client_id"), form.get("client_secret"))
    client = ctx.backend.get_client(DC, creds[0])
    if client is None or client.client_secret != creds[1]:
        return _oauth_error(OAuthError("invalid_client", "Client authentication failed.", 401))
    grant = form.get("grant_type")
    try:
        if grant == "authorization_code":
            token = ctx.backend.exchange_code(
                DC, client, form.get("code"), form.get("redirect_uri"), form.get("code_verifier")
            )
        elif grant == "refresh_token":
            token = ctx.backend.refresh(
                DC, client, form.get("refresh_token"), form.get("redirect_uri"), form.get("scope")
            )
        else:
            raise OAuthError("unsupported_grant_type", f"The grant type '{grant}' is not supported.")
    except OAuthError as err:
        return _oauth_error(err)
    return _token_response(token, DC, grant or "", ctx.backend)
