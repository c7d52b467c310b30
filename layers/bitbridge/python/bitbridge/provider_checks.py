"""Pre-flight checks for a provider, diagnosed in words an admin can act on.

Bitbucket answers an unknown client and a wrong secret alike at the token endpoint
(`invalid_client`), but its authorize page tells an unknown client (or a redirect mismatch)
apart from a known one, so probing both endpoints separates the three mistakes.
"""

from __future__ import annotations

from urllib.parse import urlparse

import requests

from bitbridge.bitbucket.http import TIMEOUT, session
from bitbridge.providers import Credentials, bitbucket, endpoints
from bitbridge.store.providers import ProviderRecord

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def preflight(provider: ProviderRecord, creds: Credentials, callback: str) -> list[str]:
    urls = endpoints(provider)
    parsed = urlparse(urls.web_url)
    if bitbucket(provider).requires_https and parsed.scheme != "https" and parsed.hostname not in _LOOPBACK:
        return [f"the Data Center base URL must use HTTPS (Bitbucket requires it for OAuth): {urls.web_url}"]
    try:
        authorize = session().get(
            urls.authorize_url,
            params={"client_id": creds.client_id, "response_type": "code", "redirect_uri": callback, "state": "probe"},
            timeout=TIMEOUT,
            allow_redirects=False,
        )
        # An invalid code: a correct client gets invalid_grant, a wrong one invalid_client.
        probe = bitbucket(provider).token_probe(creds.client_id, creds.client_secret, callback)
        token = session().post(urls.token_url, timeout=TIMEOUT, **probe)
    except requests.RequestException as exc:
        return [f"{urls.web_url} is unreachable ({type(exc).__name__}); check the base URL and the network"]
    if authorize.status_code >= 500 or token.status_code >= 500:
        return [f"{urls.web_url} answered with a server error; is it a Bitbucket?"]
    authorize_rejected = authorize.status_code >= 400 or "Invalid redirect_uri" in authorize.text
    error = _oauth_error(token)
    if error == "invalid_client" or error == "unauthorized_client":
        if authorize_rejected:
            return ["Bitbucket does not know this client id (key): copy it again from Bitbucket"]
        return ["the client secret is wrong: run `bitbridge providers rotate-secret`"]
    if authorize_rejected:
        return [f"Bitbucket rejected the redirect URI: set the callback URL in Bitbucket to exactly {callback}"]
    if error is None and token.status_code == 404:
        return [f"no OAuth token endpoint at {urls.token_url}: check the base URL"]
    return []


def _oauth_error(response: requests.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("error") if isinstance(body, dict) and isinstance(body.get("error"), str) else None
