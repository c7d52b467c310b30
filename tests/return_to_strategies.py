"""Hostile `return_to` values for the property tests, and the independent check of an accepted one.

The strategies build URLs the way an attacker would: odd schemes, userinfo, IPv6 brackets, backslashes,
layers of percent-encoding, fullwidth/IDNA look-alikes, control characters, protocol-relative `//host`.
The oracle does not reuse bitbridge's parser: it asks what a browser would do with the accepted value.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote, urljoin

from hypothesis import strategies as st

OWN_ORIGIN = "https://api.bitbridge.example"
ALLOWED_ORIGINS = ("https://app.example", "http://localhost:3000")
_ALLOWED_AUTHORITIES = {
    ("https", "app.example"),
    ("https", "app.example:443"),
    ("http", "localhost:3000"),
}

SCHEMES = [
    "",
    "http://",
    "https://",
    "HTTPS://",
    "http:",
    "https:/",
    "javascript:",
    "data:text/html,",
    "ftp://",
    "//",
    "///",
    "\\\\",
    "/\\",
    "\\/",
    "%2F%2F",
    "%252F%252F",
    "\uff0f\uff0f",
    "http:\\\\",
    " https://",
    "\thttps://",
]
USERINFO = ["", "user@", "app.example@", "a:b@", "%40", "@", "app.example%40", "app.example:443@", "\uff20"]
HOSTS = [
    "app.example",
    "APP.example",
    "localhost",
    "evil.example",
    "app.example.evil.example",
    "evil.example.",
    "[evil.example",
    "[::1]",
    "[::1",
    "::1]",
    "[v1.evil]",
    "127.0.0.1",
    "0x7f.1",
    "",
    "evil.example\uff0fapp.example",
    "evil\uff03.example",
    "app.example\uff03@evil",
    "\uff41pp.example",
    "app\uff0eexample",
    "xn--pp-6ka.example",
    "\u212aey.example",
    "app.example\u3002evil",
    "app.example%2F@evil.example",
    "app.example%00.evil",
    "evil.example\\@app.example",
    "app.example\\.evil.example",
]
PORTS = ["", ":443", ":80", ":3000", ":99999", ":-1", ":abc", ":", ":0443", ":\uff18\uff10"]
TAILS = [
    "",
    "/",
    "/x",
    "/api/me?next=//evil.example",
    "?a=b",
    "#frag",
    "\\evil",
    "%5Cevil",
    "/%2F%2Fevil.example",
    "/%252F%252Fevil",
    "/\\evil",
    "/\x00",
    "/\r\nSet-Cookie:x",
    "/\u2028",
    "@evil.example",
    "/../..//evil",
]
HOSTILE_PIECES = st.sampled_from(
    [*"/\\@:#?%[]. \t\r\n\x00\x7f\uff0f\uff03\uff20\uff0e\u3002\uff41\uff21\u212a\u0130\ufeff\u200b", "%2F", "%5C"]
)


# Any character a URL can carry: lone surrogates (Cs) have no UTF-8 form, so no request holds one.
CHARACTERS = st.characters(exclude_categories=("Cs",))


def _hostile(max_size: int) -> st.SearchStrategy[str]:
    return st.lists(HOSTILE_PIECES | CHARACTERS, max_size=max_size).map("".join)


def _encode_layers(value: str, layers: int) -> str:
    for _ in range(layers):
        value = quote(value, safe="")
    return value


@st.composite
def _assembled(draw: st.DrawFn) -> str:
    url = (
        draw(st.sampled_from(SCHEMES))
        + draw(st.sampled_from(USERINFO))
        + draw(st.one_of(st.sampled_from(HOSTS), _hostile(6)))
        + draw(st.sampled_from(PORTS))
        + draw(st.one_of(st.sampled_from(TAILS), st.text(max_size=8)))
    )
    return _encode_layers(url, draw(st.integers(0, 2)))


#: Anything a query string can carry, biased towards the hostile.
RETURN_TO = st.one_of(
    _assembled(),
    st.text(max_size=40),
    _hostile(20),
    st.builds(lambda s: "/" + s, _hostile(12)),
)


def _layers(value: str) -> list[str]:
    found = [value]
    for _ in range(6):
        peeled = unquote(found[-1])
        if peeled == found[-1]:
            break
        found.append(peeled)
    return found


def stays_on_allowed_origin(accepted: str) -> bool:
    """Would a browser following `Location: accepted` (sent from OWN_ORIGIN) stay on an allowed origin?"""
    layers = _layers(accepted)
    if any("\\" in layer or re.search(r"[\x00-\x1f\x7f]", layer) for layer in layers):
        return False  # browsers read "\\" as "/" and drop tabs/newlines: never safe to pass on
    if accepted.startswith("/"):
        return all(
            not layer.startswith("//") and urljoin(OWN_ORIGIN + "/", layer).startswith(OWN_ORIGIN + "/")
            for layer in layers
        )
    match = re.fullmatch(r"(https?)://([^/?#]*)([/?#].*)?", accepted, re.IGNORECASE | re.DOTALL)
    if not match or not accepted.isascii():
        return False
    return (match.group(1).lower(), match.group(2).lower()) in _ALLOWED_AUTHORITIES
