"""HTTP plumbing shared by the API Gateway (HTTP API, payload 2.0) handlers: cookies,
redirects, small HTML pages and JSON errors. No business logic here."""

from __future__ import annotations

import html
import json
from http.cookies import SimpleCookie
from typing import Any


def cookies(event: dict[str, Any]) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    for raw in event.get("cookies") or []:
        try:
            jar.load(raw)
        except Exception:  # noqa: S112 - a malformed cookie is ignored, as browsers do
            continue
    return {name: morsel.value for name, morsel in jar.items()}


def query(event: dict[str, Any]) -> dict[str, str]:
    return dict(event.get("queryStringParameters") or {})


def set_cookie(name: str, value: str, *, max_age: int, path: str = "/") -> str:
    # Secure + HttpOnly always; Lax so the cookie survives the top-level redirect back from Bitbucket.
    return f"{name}={value}; Max-Age={max_age}; Path={path}; Secure; HttpOnly; SameSite=Lax"


def clear_cookie(name: str, path: str = "/") -> str:
    return f"{name}=; Max-Age=0; Path={path}; Secure; HttpOnly; SameSite=Lax"


_SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def redirect(location: str, cookies_out: list[str] | None = None) -> dict[str, Any]:
    return {"statusCode": 302, "headers": {"Location": location, **_SECURITY_HEADERS}, "cookies": cookies_out or []}


def json_response(status: int, body: Any, cookies_out: list[str] | None = None) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", **_SECURITY_HEADERS},
        "cookies": cookies_out or [],
        "body": json.dumps(body),
    }


def error(status: int, message: str) -> dict[str, Any]:
    return json_response(status, {"message": message})


def page(status: int, title: str, message: str, cookies_out: list[str] | None = None) -> dict[str, Any]:
    """A minimal HTML page for people who land on an endpoint with a browser."""
    body = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
        "<body style='font-family:sans-serif;max-width:40em;margin:3em auto'>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(message)}</p></body></html>"
    )
    return {
        "statusCode": status,
        "headers": {
            "Content-Type": "text/html; charset=utf-8",
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
            **_SECURITY_HEADERS,
        },
        "cookies": cookies_out or [],
        "body": body,
    }


def base_url(event: dict[str, Any], configured: str) -> str:
    """The API's public base URL: configured, else the domain this request came in on."""
    if configured:
        return configured.rstrip("/")
    domain = event.get("requestContext", {}).get("domainName", "")
    headers = event.get("headers") or {}
    scheme = headers.get("x-forwarded-proto", "https")
    return f"{scheme}://{domain}"


STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def cross_site_refusal(event: dict[str, Any], own_origin: str, allowed_origins: tuple[str, ...]) -> str | None:
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
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        return "send the request body as application/json"
    return None


def origin_of(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}".lower()
