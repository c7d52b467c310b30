"""The sign-in page: a "Sign in with ..." button for every provider that allows sign-in."""

from __future__ import annotations

import html
from collections.abc import Iterable
from urllib.parse import quote

from bitbridge.store.providers import ProviderRecord

_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Sign in - bitbridge</title>
<style>body{{font-family:sans-serif;max-width:28em;margin:4em auto}}
a.button{{display:block;margin:.6em 0;padding:.8em 1em;border-radius:6px;background:#0052cc;color:#fff;
text-decoration:none;text-align:center}}</style></head>
<body><h1>Sign in</h1>{buttons}</body></html>"""


def render(providers: Iterable[ProviderRecord], return_to: str | None) -> str:
    # return_to is only passed along; the authorize endpoint decides whether it is allowed.
    suffix = f"?return_to={quote(return_to, safe='')}" if return_to else ""
    buttons = "".join(
        f'<a class="button" href="/auth/{quote(p.provider_id)}/authorize{suffix}">'
        f"Sign in with {html.escape(p.label)}</a>"
        for p in providers
        if p.sign_in
    )
    return _PAGE.format(buttons=buttons or "<p>No sign-in provider is configured yet.</p>")
