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
