"""Where sign-in may send the browser afterwards: relative paths, or allow-listed origins only."""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

DEFAULT_RETURN_TO = "/"  # the console
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class UnsafeReturnTo(ValueError):
    pass


def _origin(scheme: str, host: str, port: int | None) -> str:
    default = {"http": 80, "https": 443}.get(scheme)
    return f"{scheme}://{host}" + ("" if port in (None, default) else f":{port}")


def safe_return_to(value: str | None, allowed_origins: tuple[str, ...]) -> str:
    """`value` if it is safe to redirect to, else UnsafeReturnTo.

    Every layer of percent-encoding is peeled before checking, so `%2F%2Fevil` or
    `/%5Cevil` cannot turn into a protocol-relative or backslash URL in some browser.
    """
    if not value:
        return DEFAULT_RETURN_TO
    if len(value) > 2048:
        raise UnsafeReturnTo("return_to is too long")
    decoded = value
    for _ in range(4):
        peeled = unquote(decoded)
        if peeled == decoded:
            break
        decoded = peeled
    for candidate in (value, decoded):
        if "\\" in candidate or _CONTROL.search(candidate):
            raise UnsafeReturnTo("return_to contains a backslash or control character")
    if value != value.strip(" "):
        # urlsplit (and browsers) drop surrounding spaces, so what is checked would not be what is sent.
        raise UnsafeReturnTo("return_to must not start or end with a space")
    if value.startswith("/"):
        if value.startswith("//") or decoded.startswith("//"):
            raise UnsafeReturnTo("return_to must not be protocol-relative (//host)")
        return value
    try:
        # urlsplit and .port raise ValueError on what no browser should be sent to either: an unclosed
        # IPv6 bracket, a host that NFKC-normalises into a delimiter (fullwidth solidus U+FF0F or number
        # sign U+FF03), a bad port.
        parts = urlsplit(value)
        hostname, port = parts.hostname, parts.port
    except ValueError:
        raise UnsafeReturnTo("return_to is not a valid URL") from None
    # Allowed origins are ASCII; a non-ASCII host (fullwidth, Kelvin sign...) is only ever a disguise.
    if parts.scheme not in ("http", "https") or not hostname or not hostname.isascii() or "@" in parts.netloc:
        raise UnsafeReturnTo("return_to must be a relative path or an absolute URL on an allowed origin")
    origin = _origin(parts.scheme, hostname.lower(), port)
    allowed = {o.lower().rstrip("/") for o in allowed_origins}
    if origin not in allowed:
        raise UnsafeReturnTo(f"return_to origin {origin} is not allowed")
    return value
