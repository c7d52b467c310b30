"""The provider buttons, one component: "Sign in with ..." on `/login` and the signed-out console, and
"Continue to ..." on a service connect link's page. Each goes to `/auth/{provider}/authorize`, which decides
everything: a sign-in button is a link passing `return_to` along; a connect button is a form that posts the
connect session from that page (edge.confirmed_connect_session), so pressing it is the person's confirmation."""

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
    """A form per provider that allows connecting (imports on), posting the connect session."""
    forms = "".join(
        f'<form method="post" action="{html.escape(authorize_path(p.provider_id))}">'
        f'<input type="hidden" name="connect_session" value="{html.escape(connect_session)}">'
        f'<button class="button" type="submit">{html.escape(f"Continue to {p.label}")}</button></form>'
        for p in providers
        if p.imports
    )
    return forms or f"<p>{NO_CONNECT}</p>"


def connect_confirmation(
    product: str, end_user_id: str, providers: Iterable[ProviderRecord], connect_session: str
) -> str:
    """A connect link's page: who asks (the client's label), for which of its users (the end user id it gave),
    what Continue does, and the buttons. Trusted markup: every value in it is escaped here."""
    who, user = html.escape(product), html.escape(end_user_id)
    return (
        f"<p class='asks'><strong>{who}</strong> asks to connect your Bitbucket account to its user "
        f"<strong>{user}</strong>.</p>"
        f"<p>Continue only if you are {user} on {who} and started this there yourself. If someone sent you this "
        f"link, close this page: whoever made it would be able to use Bitbucket as you.</p>"
        + connect_buttons(providers, connect_session)
    )


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
