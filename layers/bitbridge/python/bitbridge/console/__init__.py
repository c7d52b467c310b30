"""The web console: a few static files (package data in ``static/``) served by the API function.

The API function serves them because the console's next requests are its /api/* calls: one warm
container answers both, so a person meets at most one cold start. Assets are addressed by a content
hash (``/assets/console.3f9a0c1e.js``), so they can be cached for a year; the HTML shell is never
cached (it carries the signed-in user's boot data: who they are, their connections, the providers).
The policy below allows no inline script or style at all; the boot data is a JSON data block, which
browsers never execute.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from string import Template
from typing import Any

STATIC = Path(__file__).parent / "static"
_SERVED = {"console.js": "text/javascript; charset=utf-8", "console.css": "text/css; charset=utf-8"}

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# For every console answer (HTML and assets): no framing, no sniffing, no referrer leaking paths.
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
IMMUTABLE = "public, max-age=31536000, immutable"


@dataclass(frozen=True)
class Asset:
    name: str  # the hashed name it is served under
    body: str
    content_type: str
    etag: str


@cache
def _built() -> tuple[dict[str, Asset], dict[str, str]]:
    """(every served asset by its hashed name, hashed name by file name), read once per container."""
    by_name: dict[str, Asset] = {}
    names: dict[str, str] = {}
    for filename, content_type in _SERVED.items():
        body = (STATIC / filename).read_text(encoding="utf-8")
        digest = hashlib.sha256(body.encode()).hexdigest()
        stem, _, ext = filename.rpartition(".")
        name = f"{stem}.{digest[:12]}.{ext}"
        by_name[name] = Asset(name, body, content_type, f'"{digest[:32]}"')
        names[filename] = name
    return by_name, names


def hashed_name(filename: str) -> str:
    return _built()[1][filename]


def find_asset(name: str) -> Asset | None:
    return _built()[0].get(name)


@cache
def _template(name: str) -> Template:
    return Template((STATIC / name).read_text(encoding="utf-8"))


def _json_block(data: Any) -> str:
    """JSON safe inside <script type="application/json">: no `</script>` or `<!--` can close it."""
    text = json.dumps(data, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_console(boot: dict[str, Any]) -> str:
    return _template("console.html").substitute(
        css=hashed_name("console.css"), js=hashed_name("console.js"), boot=_json_block(boot)
    )


def render_sign_in(buttons: str) -> str:
    """The signed-out page around the sign-in buttons (`signin_page.sign_in_buttons`; no script needed)."""
    return _template("signin.html").substitute(css=hashed_name("console.css"), buttons=buttons)


@cache
def _page_style() -> tuple[str, str]:
    """(the bare pages' stylesheet, its CSP source): inline, so a page needs no second request and
    works from any function; allowed by its hash alone, never by 'unsafe-inline'."""
    style = (STATIC / "page.css").read_text(encoding="utf-8").strip()
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    return style, f"'sha256-{digest}'"


def page_policy(form_targets: tuple[str, ...] = ()) -> str:
    """The Content-Security-Policy of a bare page: its own stylesheet, nothing else, no framing. Forms only on
    a page that has some: to this API, redirecting on to `form_targets` (browsers check a form's redirects)."""
    style = _page_style()[1]
    forms = " ".join(("'self'", *form_targets)) if form_targets else "'none'"
    return f"default-src 'none'; style-src {style}; base-uri 'none'; form-action {forms}; frame-ancestors 'none'"


def render_page(title: str, body_html: str) -> str:
    """A bare page (sign-in, errors, verification result, the connect chooser) with the console's look,
    readable from 375 px up. `title` is escaped here; `body_html` is trusted markup."""
    return _template("page.html").substitute(title=html.escape(title), style=_page_style()[0], body=body_html)
