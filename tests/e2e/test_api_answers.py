"""One condition, one answer, on every /api route and for both flavors: not signed in (401 + login_url),
no connection or a connection that must be re-authorised (409 + connect_url), an unknown provider (404
naming it); browser routes answer the same conditions with an HTML page that leads back to /login."""

from __future__ import annotations

import pytest
import requests

from tests.e2e.support import PROVIDERS, SESSION, api_session, set_on_stored_connections, sign_in

pytestmark = pytest.mark.e2e

OTHER = {"cloud": "datacenter", "datacenter": "cloud"}


def provider_routes(provider: str) -> list[tuple[str, str, dict]]:
    """Every /api route that works on one provider's connection: (method, path, request kwargs)."""
    return [
        ("GET", f"/api/connections/{provider}", {}),
        ("GET", "/api/repos", {"params": {"provider": provider}}),
        ("GET", "/api/repos/scopes", {"params": {"provider": provider}}),
        ("POST", "/api/imports", {"json": {"provider": provider, "repositories": ["acme/web-app"]}}),
        ("DELETE", f"/api/connections/{provider}", {"json": {}}),
    ]


# Changes are JSON: with the session cookie, anything else is refused as a possible cross-site request.
OTHER_ROUTES = [
    ("GET", "/api/me", {}),
    ("GET", "/api/imports", {}),
    ("GET", "/api/imports/0123abcd", {}),
    ("POST", "/api/imports/0123abcd/cancel", {"json": {}}),
    ("POST", "/api/imports/0123abcd/retry", {"json": {}}),
    ("GET", "/api/imports/0123abcd/webhook-secret", {}),
    ("GET", "/api/activity", {}),
    ("GET", "/api/admin/providers", {}),
    ("POST", "/api/logout", {"json": {}}),
]


def call(stack, http, method: str, path: str, kwargs: dict) -> requests.Response:
    return http.request(method, f"{stack.api}{path}", timeout=30, allow_redirects=False, **kwargs)


def error_of(response: requests.Response) -> dict:
    assert response.headers["Content-Type"].startswith("application/json"), response.text[:300]
    body = response.json()
    assert set(body) == {"error"}, body
    assert isinstance(body["error"]["code"], str) and body["error"]["message"], body
    return dict(body["error"])


@pytest.mark.parametrize("flavor", ["cloud", "datacenter"])
def test_no_session_is_401_with_a_login_url_on_every_api_route(stack, flavor):
    for cookies in ({}, {SESSION: "not.a.jwt"}):
        http = requests.Session()
        http.cookies.update(cookies)
        for method, path, kwargs in provider_routes(PROVIDERS[flavor]) + OTHER_ROUTES:
            response = call(stack, http, method, path, kwargs)
            assert response.status_code == 401, (method, path, response.text[:300])
            error = error_of(response)
            assert error["code"] == "not_signed_in", (method, path)
            assert error["login_url"] == f"{stack.api}/login"


@pytest.mark.parametrize("flavor", ["cloud", "datacenter"])
def test_no_connection_is_409_with_a_connect_url_on_every_provider_route(stack, flavor):
    # Signed in through the other flavor only: no connection to this one.
    http = api_session(stack, OTHER[flavor], "bob")
    provider = PROVIDERS[flavor]
    for method, path, kwargs in provider_routes(provider):
        response = call(stack, http, method, path, kwargs)
        assert response.status_code == 409, (method, path, response.text[:300])
        error = error_of(response)
        assert error["code"] == "not_connected" and error["provider"] == provider, (method, path)
        assert error["connect_url"] == f"{stack.api}/auth/{provider}/authorize?purpose=connect"
    # Routes that need no connection answer as usual (logout last: it ends the session).
    assert error_of(call(stack, http, "GET", "/api/imports/0123abcd", {}))["code"] == "not_found"
    statuses = [call(stack, http, m, p, k).status_code for m, p, k in OTHER_ROUTES]
    assert statuses == [200, 200, 404, 404, 404, 404, 200, 403, 200]


@pytest.mark.parametrize("flavor", ["cloud", "datacenter"])
def test_reauth_required_is_the_same_409_with_a_connect_url(stack, flavor):
    provider = PROVIDERS[flavor]
    http = api_session(stack, flavor, "bob")
    set_on_stored_connections(stack, provider, status={"S": "reauth_required"})
    try:
        # Disconnect is left out: it works whatever the connection's state (tests/e2e/test_console.py).
        for method, path, kwargs in [r for r in provider_routes(provider) if r[0] != "DELETE"]:
            response = call(stack, http, method, path, kwargs)
            assert response.status_code == 409, (method, path, response.text[:300])
            error = error_of(response)
            assert error["code"] == "reauth_required" and error["provider"] == provider, (method, path)
            assert error["connect_url"] == f"{stack.api}/auth/{provider}/authorize?purpose=connect"
        me = call(stack, http, "GET", "/api/me", {}).json()
        conn = next(c for c in me["connections"] if c["provider"] == provider)
        assert conn["status"] == "reauth_required" and conn["connect_url"].endswith("purpose=connect")
    finally:
        sign_in(stack, flavor, "bob")  # signing in again repairs the connection for later tests


@pytest.mark.parametrize("flavor", ["cloud", "datacenter"])
def test_unknown_provider_is_404_naming_it_on_every_provider_route(stack, flavor):
    http = api_session(stack, flavor, "bob")
    for method, path, kwargs in provider_routes("nope"):
        response = call(stack, http, method, path, kwargs)
        assert response.status_code == 404, (method, path, response.text[:300])
        error = error_of(response)
        assert error["code"] == "unknown_provider" and error["provider"] == "nope"
        assert "nope" in error["message"]


def test_unknown_api_route_and_bad_input_have_codes_too(stack):
    http = api_session(stack, "cloud", "bob")
    missing = call(stack, http, "GET", "/api/nothing-here", {})
    assert missing.status_code == 404 and error_of(missing)["code"] == "no_such_route"
    bad = call(stack, http, "GET", "/api/repos", {"params": {"provider": PROVIDERS["cloud"], "limit": "0"}})
    assert bad.status_code == 400 and error_of(bad)["code"] == "invalid_request"


@pytest.mark.parametrize("path", ["/auth/nope/authorize", "/auth/nope/callback?code=x&state=y"])
def test_browser_routes_answer_html_with_a_way_back(stack, path):
    response = requests.get(f"{stack.api}{path}", allow_redirects=False, timeout=10)
    assert response.status_code == 404
    assert response.headers["Content-Type"].startswith("text/html")
    assert "nope" in response.text and "href='/login'" in response.text


def test_bad_state_page_leads_back_to_sign_in(stack):
    response = requests.get(f"{stack.api}/auth/{PROVIDERS['cloud']}/callback?code=x&state=forged", timeout=10)
    assert response.status_code == 400
    assert response.headers["Content-Type"].startswith("text/html") and "href='/login'" in response.text


def test_connect_without_a_session_is_a_401_page_with_a_way_back(stack):
    url = f"{stack.api}/auth/{PROVIDERS['cloud']}/authorize?purpose=connect"
    response = requests.get(url, allow_redirects=False, timeout=10)
    assert response.status_code == 401
    assert response.headers["Content-Type"].startswith("text/html") and "href='/login'" in response.text


def test_home_is_the_sign_in_page_then_the_console(stack):
    signed_out = requests.get(f"{stack.api}/", timeout=10)
    assert signed_out.status_code == 200 and signed_out.headers["Content-Type"].startswith("text/html")
    assert f"/auth/{PROVIDERS['cloud']}/authorize" in signed_out.text and "Sign in with" in signed_out.text
    http = api_session(stack, "datacenter", "carol")
    signed_in = http.get(f"{stack.api}/", timeout=10)
    assert signed_in.status_code == 200 and 'id="boot"' in signed_in.text
    assert '"user":{"id":' in signed_in.text and "Sign in with" not in signed_in.text
