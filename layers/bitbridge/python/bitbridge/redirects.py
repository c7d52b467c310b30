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
    if value.startswith("/"):
        if value.startswith("//") or decoded.startswith("//"):
            raise UnsafeReturnTo("return_to must not be protocol-relative (//host)")
        return value
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
        raise UnsafeReturnTo("return_to must be a relative path or an absolute URL on an allowed origin")
    try:
        port = parts.port
    except ValueError:
        raise UnsafeReturnTo("return_to has an invalid port") from None
    origin = _origin(parts.scheme, parts.hostname.lower(), port)
    allowed = {o.lower().rstrip("/") for o in allowed_origins}
    if origin not in allowed:
        raise UnsafeReturnTo(f"return_to origin {origin} is not allowed")
    return value
