"""The HTTP edge: the one place that knows about HTTP (API Gateway HTTP API, payload 2.0).

It owns the wire: reading cookies, the query and the public base URL from a request; the session
cookie (issuing and ending sessions); response helpers (JSON, redirects, small HTML pages, all with
the same security headers); and the one mapping from `bitbridge.errors.Problem` (and Bitbucket's
failures) to an HTTP status and body. JSON errors are always

    {"error": {"code": "<stable machine-readable code>", "message": "...", ...details}}

with `login_url` when the caller must sign in, and `provider` + `connect_url` when a provider must be
connected (or connected again). Browser routes (`/auth/...`) answer the same conditions with an
HTML page that links back to where a connect or verification began, else to `/login`.

The status for "no usable connection" (none yet, or `reauth_required`) is 409 Conflict: the session
is valid (401 would send a client back to sign in, in a loop), and the user's state conflicts with
the request in a way they can resolve themselves - by following `connect_url` - and then resubmit,
which is what RFC 9110 says 409 is for.

Standard library at import; the session and Powertools modules are imported when first used, so the
webhook receiver can share the response helpers without paying for them.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from bitbridge.config import settings
from bitbridge.errors import ConnectionNeeded, CrossSiteRequest, NotSignedIn, Problem
from bitbridge.redirects import DEFAULT_RETURN_TO, UnsafeReturnTo, safe_return_to

if TYPE_CHECKING:  # pragma: no cover
    from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response

    from bitbridge import oauth
    from bitbridge.console import Asset

Event = dict[str, Any]

SESSION_COOKIE = "bitbridge_session"
LOGIN_PATH = "/login"

#: Every code a Problem (or a Bitbucket failure) can carry, and the status it answers with; also the webhook
#: receiver's outcomes and /health's readiness. No other module writes a status down.
STATUS: dict[str, int] = {
    "invalid_request": 400,
    "unsafe_return_to": 400,
    "sign_in_attempt_invalid": 400,
    "authorization_refused": 400,
    "missing_permissions": 400,
    "issuer_mismatch": 400,
    "not_signed_in": 401,
    "access_denied": 403,
    "cross_site_request": 403,
    "imports_disabled": 403,
    "repositories_forbidden": 403,
    "not_import_owner": 403,
    "not_found": 404,
    "no_such_route": 404,
    "unknown_provider": 404,
    "provider_disabled": 404,
    "repositories_not_found": 404,
    "not_connected": 409,
    "reauth_required": 409,
    "invalid_state": 409,
    "identity_linked_elsewhere": 409,
    "rate_limited": 429,
    "internal_error": 500,
    "bitbucket_error": 502,
    "provider_misconfigured": 502,
    "bitbucket_unavailable": 503,
    "not_ready": 503,  # /health: a dependency does not answer
    # the service API (/service/v1/..., products' backends with service keys)
    "unauthenticated": 401,
    "credentials_revoked": 403,
    "credentials_expired": 403,
    "insufficient_scope": 403,
    "invalid_end_user_id": 400,
    "invalid_return_to": 400,
    "path_not_allowed": 400,
    "connect_session_invalid": 400,
    "request_too_large": 413,
    "response_too_large": 413,
    "file_too_large": 413,
    "provider_unreachable": 502,
    # the service API's typed actions (service/actions.py, service/idempotency.py)
    "invalid_idempotency_key": 400,
    "missing_permission": 403,
    "merge_conflict": 409,
    "merge_vetoed": 409,
    "pull_request_not_open": 409,
    "comment_has_replies": 409,
    "idempotency_in_progress": 409,
    "idempotency_key_reused": 422,
    # /health (the other codes' answers are errors; this is the one success a code names)
    "ready": 200,
    # the webhook receiver's answers to Bitbucket, by the delivery's outcome (webhooks/receipt.py): Bitbucket
    # retries 5xx only, so a delivery refused for good is 4xx and only an AWS failure is 5xx
    "accepted": 202,
    "ignored": 202,
    "duplicate": 200,
    "ping": 200,
    "bad_request": 400,
    "unsigned": 401,
    "rejected": 401,
    "too_large": 413,
    "delivery_not_stored": 503,
}

#: Marks bitbridge's own refusals on the service API, so an SDK tells them from Bitbucket's answers
#: passed through the proxy (a 404 from Bitbucket is not a 404 from bitbridge).
SERVICE_ERROR_HEADER = "X-Bitbridge-Error"

_SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_HTML = "text/html; charset=utf-8"

# ------------------------------------------------------------------------------------------------ requests


def cookies(event: Event) -> dict[str, str]:
    from http.cookies import SimpleCookie  # here, not at import: the webhook receiver never reads cookies

    jar: SimpleCookie = SimpleCookie()
    for raw in event.get("cookies") or []:
        try:
            jar.load(raw)
        except Exception:  # noqa: S112 - a malformed cookie is ignored, as browsers do
            continue
    return {name: morsel.value for name, morsel in jar.items()}


def query(event: Event) -> dict[str, str]:
    return dict(event.get("queryStringParameters") or {})


def path_parameter(event: Event, name: str) -> str:
    return str((event.get("pathParameters") or {}).get(name, ""))


def base_url(event: Event) -> str:
    """The API's public base URL: configured, else the domain this request came in on."""
    configured = settings().public_base_url
    if configured:
        return configured.rstrip("/")
    domain = event.get("requestContext", {}).get("domainName", "")
    headers = event.get("headers") or {}
    scheme = headers.get("x-forwarded-proto", "https")
    return f"{scheme}://{domain}"


def login_url(event: Event) -> str:
    return f"{base_url(event)}{LOGIN_PATH}"


def connect_url(event: Event, provider_id: str) -> str:
    """Where a signed-in user (re)connects a provider; it comes back to their profile."""
    return f"{base_url(event)}/auth/{quote(provider_id, safe='')}/authorize?purpose=connect"


# ------------------------------------------------------------------------------------------------ sessions


def session_user(event: Event) -> str | None:
    """The signed-in user, or None (no cookie, bad signature, expired, logged out). A state-changing
    request carrying the cookie passes the cross-site check first: the CSRF defence of every function."""
    from bitbridge import sessions

    user_id = sessions.user_for(cookies(event).get(SESSION_COOKIE))
    if user_id is not None:  # without a valid session the request has no authority to abuse: plain 401
        refusal = cross_site_refusal(event, origin_of(base_url(event)), settings().allowed_return_to_origins)
        if refusal:
            raise CrossSiteRequest(f"Refused: {refusal}.")
    return user_id


STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def cross_site_refusal(event: Event, own_origin: str, allowed_origins: tuple[str, ...]) -> str | None:
    """Why a state-changing request carrying the session cookie must be refused, or None if it may run.

    SameSite=Lax does not stop a sibling subdomain (same site, other origin) from posting with the
    cookie, so: a browser's Origin must be this API's own origin or an allowed one (Sec-Fetch-Site
    where a browser sends no Origin), and the body must be declared JSON - which a cross-origin page
    can only send after a CORS preflight this API never grants.
    """
    method = str(event.get("requestContext", {}).get("http", {}).get("method", "")).upper()
    if method not in STATE_CHANGING:
        return None
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    origin = headers.get("origin")
    trusted = {own_origin.lower().rstrip("/"), *(o.lower().rstrip("/") for o in allowed_origins)}
    if origin is not None:
        if origin.lower().rstrip("/") not in trusted:
            return f"requests from {origin} may not use this session"
    elif headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return "cross-site requests may not use this session"
    if headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        return "send the request body as application/json"
    return None


def origin_of(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}".lower()


def require_user(event: Event) -> str:
    user_id = session_user(event)
    if user_id is None:
        raise NotSignedIn()
    return user_id


def start_session(user_id: str) -> str:
    """The one place a session starts: the Set-Cookie value that carries it."""
    from bitbridge import sessions

    token, lifetime = sessions.issue(user_id)
    return set_cookie(SESSION_COOKIE, token, max_age=lifetime)


def end_session(event: Event) -> str:
    """End the request's session server-side; the Set-Cookie value that clears it."""
    from bitbridge import sessions

    sessions.end(cookies(event).get(SESSION_COOKIE))
    return clear_cookie(SESSION_COOKIE)


def set_cookie(name: str, value: str, *, max_age: int, path: str = "/") -> str:
    # Secure + HttpOnly always; Lax so the cookie survives the top-level redirect back from Bitbucket.
    return f"{name}={value}; Max-Age={max_age}; Path={path}; Secure; HttpOnly; SameSite=Lax"


def clear_cookie(name: str, path: str = "/") -> str:
    return f"{name}=; Max-Age=0; Path={path}; Secure; HttpOnly; SameSite=Lax"


# ------------------------------------------------------------------------------------------------ responses


def respond(
    status: int, body: str, content_type: str, cookies_out: list[str] | None = None, headers: dict | None = None
) -> Event:
    return {
        "statusCode": status,
        # Lowercase, as HTTP/2 and API Gateway's own headers are (the webhook receiver's table says so too).
        "headers": {"content-type": content_type, **_SECURITY_HEADERS, **(headers or {})},
        "cookies": cookies_out or [],
        "body": body,
    }


def json_response(
    status: int, body: Any, cookies_out: list[str] | None = None, headers: dict[str, str] | None = None
) -> Event:
    return respond(status, json.dumps(body), "application/json", cookies_out, headers)


def redirect(location: str, cookies_out: list[str] | None = None) -> Event:
    return {"statusCode": 302, "headers": {"Location": location, **_SECURITY_HEADERS}, "cookies": cookies_out or []}


def html_page(status: int, title: str, body_html: str, cookies_out: list[str] | None = None) -> Event:
    """A minimal page for people who land on an endpoint with a browser; `body_html` is trusted markup.
    Styled like the console, with a mobile viewport (bitbridge.console.render_page)."""
    from bitbridge.console import page_policy, render_page

    policy = {"Content-Security-Policy": page_policy()}
    return respond(status, render_page(title, body_html), _HTML, cookies_out, policy)


def page(
    status: int,
    title: str,
    message: str,
    cookies_out: list[str] | None = None,
    back: tuple[str, str] | None = (LOGIN_PATH, "Back to sign-in"),
) -> Event:
    """A short message for a person, with a way back (sign-in, unless told otherwise)."""
    from html import escape

    link = f"<p class='back'><a href='{escape(back[0])}'>{escape(back[1])}</a></p>" if back else ""
    return html_page(status, title, f"<p>{escape(message)}</p>{link}", cookies_out)


def way_back(return_to: str) -> tuple[str, str]:
    """A link back to where a browser flow began (`return_to`, already checked safe): bitbridge's own
    pages, or the product that sent the person here."""
    from urllib.parse import urlsplit

    host = urlsplit(return_to).netloc
    return return_to, f"Back to {host}" if host else "Back to bitbridge"


def console_page(document: str) -> Event:
    """The console's HTML (never cached: it carries the user's boot data) under its strict policy."""
    from bitbridge.console import SECURITY_HEADERS

    return respond(200, document, "text/html; charset=utf-8", headers=SECURITY_HEADERS)


def console_asset(asset: Asset | None, request_headers: dict[str, str]) -> Event:
    """A hashed console asset: cached for a year (its name changes with its content), 304 on its ETag."""
    from bitbridge.console import IMMUTABLE, SECURITY_HEADERS

    if asset is None:
        return respond(404, "Not found.", "text/plain; charset=utf-8")
    headers = {**SECURITY_HEADERS, "Cache-Control": IMMUTABLE, "ETag": asset.etag}
    if {k.lower(): v for k, v in request_headers.items()}.get("if-none-match") == asset.etag:
        return respond(304, "", asset.content_type, headers=headers)
    return respond(200, asset.body, asset.content_type, headers=headers)


# ------------------------------------------------------------------------------------------------ errors


def describe(exc: Exception, event: Event) -> tuple[int, dict[str, Any], dict[str, str]]:
    """(status, the `error` object, extra headers) for any exception: the one mapping to HTTP."""
    from bitbridge.bitbucket.http import BitbucketError, RateLimited

    headers: dict[str, str] = {}
    if isinstance(exc, Problem):
        error: dict[str, Any] = {"code": exc.code, "message": exc.message, **exc.details}
        if isinstance(exc, NotSignedIn):
            error["login_url"] = login_url(event)
        if isinstance(exc, ConnectionNeeded):
            error["connect_url"] = connect_url(event, exc.provider_id)
        if "retry_after" in exc.details:  # rate_limited: the person's budget has no room (seconds)
            headers["Retry-After"] = str(int(exc.details["retry_after"]))
        return STATUS.get(exc.code, 500), error, headers
    if isinstance(exc, RateLimited):
        wait = int(exc.retry_after) if exc.retry_after else 60
        headers["Retry-After"] = str(wait)
        message = "Bitbucket is rate limiting; try again later."
        return STATUS["rate_limited"], {"code": "rate_limited", "message": message, "retry_after": wait}, headers
    if isinstance(exc, BitbucketError) and exc.permanent:
        return 502, {"code": "bitbucket_error", "message": f"Bitbucket did not answer as expected: {exc}"}, headers
    if isinstance(exc, BitbucketError):
        message = "Bitbucket is not answering right now; try again shortly."
        return 503, {"code": "bitbucket_unavailable", "message": message}, headers
    return 500, {"code": "internal_error", "message": "Something went wrong on our side; try again."}, headers


def error_json(exc: Exception, event: Event) -> Event:
    status, error, headers = describe(exc, event)
    return json_response(status, {"error": error}, headers=headers)


_FROM_THE_ATTEMPT: Any = object()


def error_page(exc: Exception, event: Event, back: tuple[str, str] | None = _FROM_THE_ATTEMPT) -> Event:
    """The same condition as `error_json`, for a browser: an HTML page with a way back - to where a
    connect or verification began when that is known (and safe), else to sign-in (unless told otherwise)."""
    status, error, _ = describe(exc, event)
    title = exc.title if isinstance(exc, Problem) else "Something went wrong"
    if back is _FROM_THE_ATTEMPT:
        back = _way_back_from(exc, event)
    return page(status, title, str(error["message"]), back=back)


def _way_back_from(exc: Exception, event: Event) -> tuple[str, str]:
    """The attempt's own `return_to` (set by bitbridge.oauth once it knows the attempt), else the request's
    when it is safe and not a sign-in, else sign-in (keeping a safe return_to for after it). Not signed in
    is always answered with sign-in: that is what to do next, whatever the person came for."""
    if isinstance(exc, Problem) and exc.return_to and not isinstance(exc, NotSignedIn):
        return way_back(exc.return_to)
    params = query(event)
    try:
        target = safe_return_to(params.get("return_to"), settings().allowed_return_to_origins)
    except UnsafeReturnTo:
        target = DEFAULT_RETURN_TO
    if (
        params.get("purpose", "sign_in") != "sign_in"
        and not params.get("connect_session")
        and not isinstance(exc, NotSignedIn)
    ):
        return way_back(target)
    suffix = "" if target == DEFAULT_RETURN_TO else f"?return_to={quote(target, safe='')}"
    return f"{LOGIN_PATH}{suffix}", "Back to sign-in"


def service_error(exc: Exception, event: Event) -> Event:
    """`error_json` for the service API, marked as bitbridge's own answer."""
    status, error, headers = describe(exc, event)
    return json_response(status, {"error": error}, headers={**headers, SERVICE_ERROR_HEADER: "1"})


def passthrough(status: int, headers: dict[str, str], body: bytes) -> Event:
    """Bitbucket's answer through the service proxy: its status, the headers passed on, its body
    (as text when it is text, else base64 as API Gateway expects binary)."""
    content_type = headers.get("Content-Type", "")
    answer: Event = {"statusCode": status, "headers": {**_SECURITY_HEADERS, **headers}, "cookies": []}
    if content_type.startswith("text/") or "json" in content_type or "xml" in content_type:
        try:
            return {**answer, "body": body.decode()}
        except UnicodeDecodeError:
            pass
    import base64

    return {**answer, "body": base64.b64encode(body).decode(), "isBase64Encoded": True}


def status_of(answer: Event) -> int:
    return int(answer["statusCode"])


def problem_from_status(status: int, message: str) -> Problem:
    """Powertools' own HTTP exceptions (raised by the resolver or a route) as a Problem."""
    code = {400: "invalid_request", 401: "not_signed_in", 404: "not_found"}.get(status, "internal_error")
    return NotSignedIn(message) if code == "not_signed_in" else Problem(message, code=code)


# ------------------------------------------------------------------------------------------------ Powertools


def as_response(answer: Event) -> Response:
    """One of the dicts above as a Powertools Response (for routes on an APIGatewayHttpResolver)."""
    from aws_lambda_powertools.event_handler import Response

    return Response(
        status_code=answer["statusCode"],
        headers=answer["headers"],
        body=answer.get("body"),
        cookies=answer.get("cookies") or None,  # plain Set-Cookie strings serialise too
    )


def api_json(status: int, body: Any, cookies_out: list[str] | None = None) -> Response:
    return as_response(json_response(status, body, cookies_out))


def install(app: APIGatewayHttpResolver) -> None:
    """Answer bitbridge's exceptions, Powertools' own and unknown routes the edge's way on a resolver."""
    from aws_lambda_powertools.event_handler.exceptions import NotFoundError, ServiceError

    from bitbridge.bitbucket.http import BitbucketError

    @app.exception_handler([Problem, BitbucketError])
    def known(exc: Exception) -> Response:
        return as_response(error_json(exc, app.current_event.raw_event))

    @app.exception_handler(ServiceError)
    def powertools_error(exc: ServiceError) -> Response:
        return as_response(error_json(problem_from_status(exc.status_code, str(exc.msg)), app.current_event.raw_event))

    @app.not_found
    def no_such_route(exc: NotFoundError) -> Response:
        problem = Problem("No such API route; the README lists them.", code="no_such_route")
        return as_response(error_json(problem, app.current_event.raw_event))


# ------------------------------------------------------------------------------------------------ sign-in


def authorization_redirect(started: oauth.Started) -> Event:
    """To Bitbucket, with the cookie that binds the attempt to this browser (only sent to the callback)."""
    binding = set_cookie(started.binding_cookie, started.binding, max_age=started.max_age, path=started.cookie_path)
    return redirect(started.url, [binding])


def callback_answer(result: oauth.SignedIn | oauth.ProviderVerified) -> Event:
    """The attempt's cookie cleared; a session and a redirect for a user, a page for the admin."""
    from bitbridge.oauth import SignedIn

    done = clear_cookie(result.attempt_cookie, path=result.cookie_path)
    if isinstance(result, SignedIn):
        return redirect(result.return_to, [done, start_session(result.user_id)])
    message = f"{result.provider_id}: the OAuth round trip worked (signed in as {result.username})."
    return page(200, "Provider verified", message, [done], back=way_back(result.return_to))
