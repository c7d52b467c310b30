"""The provider buttons, one component: "Sign in with ..." on `/login` and the signed-out console, and
"Connect ..." on a service connect link's page. Each is a link to `/auth/{provider}/authorize`, which
decides everything (the buttons only pass `return_to` or the connect session along)."""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable
from urllib.parse import quote, urlencode

from bitbridge.store.providers import ProviderRecord

NO_SIGN_IN = "No sign-in provider is configured yet: an admin adds one with <code>bitbridge providers add</code>."
NO_CONNECT = "No Bitbucket provider is configured yet."


def sign_in_buttons(providers: Iterable[ProviderRecord], return_to: str | None) -> str:
    """A button per provider with sign-in on; trusted markup (every value in it is escaped or quoted here)."""
    query = {"return_to": return_to} if return_to else {}
    return _buttons(providers, lambda p: bool(p.sign_in), "Sign in with {label}", query, NO_SIGN_IN)


def connect_buttons(providers: Iterable[ProviderRecord], connect_session: str) -> str:
    """A button per provider that allows connecting (imports on), carrying the connect session."""
    query = {"connect_session": connect_session}
    return _buttons(providers, lambda p: bool(p.imports), "Connect {label}", query, NO_CONNECT)


def connect_buttons_target(provider_id: str, connect_session: str) -> str:
    """Where a connect link that names its provider goes straight on to (the one button's link)."""
    return f"{authorize_path(provider_id)}?{urlencode({'connect_session': connect_session}, quote_via=quote)}"


def _buttons(
    providers: Iterable[ProviderRecord],
    offered: Callable[[ProviderRecord], bool],
    text: str,
    query: dict[str, str],
    none: str,
) -> str:
    suffix = f"?{urlencode(query, quote_via=quote)}" if query else ""
    links = "".join(
        f'<a class="button" href="{html.escape(authorize_path(p.provider_id) + suffix)}">'
        f"{html.escape(text.format(label=p.label))}</a>"
        for p in providers
        if offered(p)
    )
    return links or f"<p>{none}</p>"


def authorize_path(provider_id: str) -> str:
    return f"/auth/{quote(provider_id)}/authorize"
