"""The sign-in page's content: a "Sign in with ..." button for every provider that allows sign-in."""

from __future__ import annotations

import html
from collections.abc import Iterable
from urllib.parse import quote

from bitbridge.store.providers import ProviderRecord


def buttons(providers: Iterable[ProviderRecord], return_to: str | None) -> str:
    """Trusted markup for `edge.html_page`: every value in it is escaped or quoted here."""
    # return_to is only passed along; the authorize endpoint decides whether it is allowed.
    suffix = f"?return_to={quote(return_to, safe='')}" if return_to else ""
    links = "".join(
        f'<a class="button" href="/auth/{quote(p.provider_id)}/authorize{suffix}">'
        f"Sign in with {html.escape(p.label)}</a>"
        for p in providers
        if p.sign_in
    )
    return links or "<p>No sign-in provider is configured yet.</p>"
