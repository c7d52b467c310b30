"""Sign in with Bitbucket, end to end: local stack + emulator over real HTTP, both flavors."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.e2e.browser import Browser, consent
from tests.e2e.support import (
    PROVIDERS,
    SESSION,
    begin,
    callback_url,
    control,
    emulator,
    expire_stored_token,
    host,
    sign_in,
    token_requests,
)


@pytest.mark.parametrize("flavor", ["cloud", "datacenter"])
def test_sign_in_lands_signed_in_with_stable_ids_and_no_tokens(stack, flavor):
    browser = sign_in(stack, flavor, "alice")
    me = browser.history[-1]
    assert urlsplit(me.url).path == "/api/me"
    body = me.json()
    connection = next(c for c in body["connections"] if c["provider"] == PROVIDERS[flavor])
    assert connection["status"] == "active"
    assert connection["email"] == "alice@example.com"
    if flavor == "cloud":
        assert connection["external_id"].startswith("{")  # Cloud account uuid
    else:
        assert connection["external_id"].isdigit()  # Data Center numeric user id
    assert "token" not in me.text.lower().replace("access_token_expires_at", "")
    # The session cookie is HttpOnly, Secure and Lax; the one-time state cookie is gone.
    set_cookies = [c for r in browser.history for c in r.raw.headers.getlist("Set-Cookie")]
    session_cookie = next(c for c in set_cookies if c.startswith(f"{SESSION}="))
    for flag in ("HttpOnly", "Secure", "SameSite=Lax"):
        assert flag in session_cookie
    assert not [k for k in browser.jar if k[1].startswith("bitbridge_oauth_")]
    # Signing in again keeps the same user (keyed by the stable id, not the username).
    again = sign_in(stack, flavor, "alice").history[-1].json()
    assert again["user"]["id"] == body["user"]["id"]


def test_tokens_are_stored_encrypted(stack):
    sign_in(stack, "cloud", "bob")
    items = stack.aws("dynamodb").scan(TableName="bitbridge-local-AccountsTable")["Items"]
    connections = [i for i in items if i["sk"]["S"].startswith("CONN#")]
    assert connections
    for item in connections:
        assert "B" in item["tokens"]  # a KMS ciphertext blob
        assert b"access_token" not in item["tokens"]["B"]


@pytest.mark.parametrize("flavor", ["cloud", "datacenter"])
def test_deny_shows_the_reason_and_signs_nobody_in(stack, flavor):
    browser = Browser()
    page = begin(stack, browser, PROVIDERS[flavor])
    callback = callback_url(consent(browser, page, "carol", decision="deny"))
    assert parse_qs(urlsplit(callback).query)["error"] == ["access_denied"]
    response = browser.get(callback)
    assert response.status_code == 403
    assert "denied" in response.text
    assert "href='/login'" in response.text  # a way back to sign in
    assert browser.cookie(host(stack), SESSION) is None


def test_replayed_state_is_refused_and_stores_nothing(stack):
    browser = Browser()
    page = begin(stack, browser, PROVIDERS["cloud"])
    callback = callback_url(consent(browser, page, "alice"))
    assert browser.get(callback).status_code == 200
    replay = Browser(jar=dict(browser.jar))
    replay.jar.pop((host(stack), SESSION), None)
    response = replay.get(callback, follow=False)
    assert response.status_code == 400
    assert "already used" in response.text or "Unknown, used or expired" in response.text
    assert replay.cookie(host(stack), SESSION) is None


def test_state_begun_in_another_browser_is_refused(stack):
    victim, attacker = Browser(), Browser()
    page = begin(stack, attacker, PROVIDERS["datacenter"])
    callback = callback_url(consent(attacker, page, "bob"))
    response = victim.get(callback, follow=False)
    assert response.status_code == 400
    assert "another browser" in response.text
    assert victim.cookie(host(stack), SESSION) is None
    # The attempt was not consumed by the refusal: the browser that began it can still finish.
    assert attacker.get(callback).status_code == 200


def test_missing_or_unknown_state_is_400(stack):
    assert requests.get(f"{stack.api}/auth/bitbucket-cloud/callback?code=x", timeout=5).status_code == 400
    response = requests.get(f"{stack.api}/auth/bitbucket-cloud/callback?code=x&state=forged", timeout=5)
    assert response.status_code == 400


@pytest.mark.parametrize(
    "return_to",
    [
        "https://evil.example/",
        "//evil.example/path",
        "/\\evil.example",
        "\\\\evil.example",
        "/%2F%2Fevil.example",
        "%2F%2Fevil.example",
        "/%5Cevil.example",
        "/%252F%252Fevil.example",
        "javascript:alert(1)",
        "http://127.0.0.1:1@evil.example/",
        "https:evil.example",
        "/ok\r\nLocation: https://evil.example",
    ],
)
def test_open_redirect_attempts_are_refused(stack, return_to):
    response = requests.get(
        f"{stack.api}/auth/bitbucket-cloud/authorize",
        params={"return_to": return_to},
        allow_redirects=False,
        timeout=5,
    )
    assert response.status_code == 400, return_to
    assert "Set-Cookie" not in response.headers


def test_allow_listed_absolute_return_to_is_followed(stack):
    browser = Browser()
    page = begin(stack, browser, PROVIDERS["cloud"], return_to=f"{stack.api}/api/me?from=absolute")
    landed = browser.get(callback_url(consent(browser, page, "alice")))
    assert landed.status_code == 200 and landed.url.endswith("/api/me?from=absolute")


@pytest.mark.parametrize("route", ["authorize", "callback?code=x&state=y"])
def test_unknown_provider_is_a_404_page_naming_it_with_a_way_back(stack, route):
    response = requests.get(f"{stack.api}/auth/nope/{route}", allow_redirects=False, timeout=5)
    assert response.status_code == 404
    assert response.headers["Content-Type"].startswith("text/html")
    assert "No provider &#x27;nope&#x27; is registered" in response.text
    assert "href='/login'" in response.text


def test_expired_datacenter_code_is_refused_and_nothing_stored(stack):
    dc = emulator(stack, "datacenter")
    requests.post(f"{dc}/_emulator/config", json={"dc_code_lifetime": 1}, timeout=5).raise_for_status()
    try:
        browser = Browser()
        page = begin(stack, browser, PROVIDERS["datacenter"])
        callback = callback_url(consent(browser, page, "carol"))
        time.sleep(1.5)
        response = browser.get(callback)
        assert response.status_code == 400
        assert "expired" in response.text
        assert browser.cookie(host(stack), SESSION) is None
    finally:
        requests.post(f"{dc}/_emulator/config", json={"dc_code_lifetime": 10}, timeout=5)


@pytest.mark.parametrize("flavor", ["cloud", "datacenter"])
def test_refresh_race_makes_exactly_one_refresh(stack, flavor):
    browser = sign_in(stack, flavor, "alice")
    session = browser.cookie(host(stack), SESSION)
    expire_stored_token(stack, PROVIDERS[flavor])
    before = token_requests(stack, flavor)

    def call(_: int) -> int:
        return requests.get(
            f"{stack.api}/api/connections/{PROVIDERS[flavor]}", cookies={SESSION: session}, timeout=60
        ).status_code

    with ThreadPoolExecutor(max_workers=12) as pool:
        statuses = list(pool.map(call, range(12)))
    assert statuses == [200] * 12
    assert token_requests(stack, flavor) - before == 1


def test_revoked_token_leads_to_reauth_required(stack):
    browser = sign_in(stack, "cloud", "carol")
    session = browser.cookie(host(stack), SESSION)
    cloud = emulator(stack, "cloud")
    requests.post(f"{cloud}/_emulator/tokens/revoke", json={"user": "carol", "flavor": "cloud"}, timeout=5)
    response = requests.get(f"{stack.api}/api/connections/bitbucket-cloud", cookies={SESSION: session}, timeout=30)
    # 409 since issue 10 (was 401): the session is fine, the connection must be made again.
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "reauth_required" and error["provider"] == "bitbucket-cloud"
    assert error["connect_url"].endswith("/auth/bitbucket-cloud/authorize?purpose=connect")
    me = requests.get(f"{stack.api}/api/me", cookies={SESSION: session}, timeout=10).json()
    conn = next(c for c in me["connections"] if c["provider"] == "bitbucket-cloud")
    assert conn["status"] == "reauth_required" and conn["connect_url"] == error["connect_url"]
    # Signing in again repairs the connection.
    again = sign_in(stack, "cloud", "carol").history[-1].json()
    assert next(c for c in again["connections"] if c["provider"] == "bitbucket-cloud")["status"] == "active"


def test_logout_ends_the_session(stack):
    browser = sign_in(stack, "datacenter", "bob")
    session = browser.cookie(host(stack), SESSION)
    assert requests.get(f"{stack.api}/api/me", cookies={SESSION: session}, timeout=10).status_code == 200
    out = requests.post(f"{stack.api}/api/logout", cookies={SESSION: session}, json={}, timeout=10)
    assert out.status_code == 200 and "Max-Age=0" in out.headers["Set-Cookie"]
    assert requests.get(f"{stack.api}/api/me", cookies={SESSION: session}, timeout=10).status_code == 401


def test_api_without_a_session_is_401(stack):
    assert requests.get(f"{stack.api}/api/me", timeout=10).status_code == 401
    forged = requests.get(f"{stack.api}/api/me", cookies={SESSION: "not.a.jwt"}, timeout=10)
    assert forged.status_code == 401


def test_short_lived_tokens_refresh_once_and_nobody_waits_for_a_slow_or_failing_refresh(stack):
    dc = emulator(stack, "datacenter")
    provider = PROVIDERS["datacenter"]
    requests.post(f"{dc}/_emulator/config", json={"dc_access_token_lifetime": 60}, timeout=5).raise_for_status()
    try:
        session = sign_in(stack, "datacenter", "carol").cookie(host(stack), SESSION)

        def calls(n: int) -> list[tuple[int, float]]:
            def call(_: int) -> tuple[int, float]:
                started = time.monotonic()
                response = requests.get(
                    f"{stack.api}/api/connections/{provider}", cookies={SESSION: session}, timeout=60
                )
                return response.status_code, time.monotonic() - started

            with ThreadPoolExecutor(max_workers=n) as pool:
                return list(pool.map(call, range(n)))

        # A 60 s token with 40 s left is outside its refresh window (20 s): no refresh at all.
        expire_stored_token(stack, provider, in_seconds=40)
        before = token_requests(stack, "datacenter")
        assert [s for s, _ in calls(10)] == [200] * 10
        assert token_requests(stack, "datacenter") == before

        # 15 s left, and the token endpoint takes 8 s: the refresh is handed to TokenRefreshFunction and
        # every caller gets the still-valid token at once. A caller that waited for the refresh would take
        # at least the endpoint's 8 s, whatever the machine's load.
        expire_stored_token(stack, provider, in_seconds=15)
        control(stack, "datacenter", "POST", "faults", {"latency_ms": 8000, "path_prefix": "/rest/oauth2/latest/token"})
        try:
            results = calls(10)
            assert [s for s, _ in results] == [200] * 10
            assert all(t < 8 for _, t in results), [round(t, 2) for _, t in results]
            deadline = time.monotonic() + 60  # the refresh runs in its own function, after the calls
            while token_requests(stack, "datacenter") == before and time.monotonic() < deadline:
                time.sleep(0.5)
            time.sleep(1)  # a second refresh, if any, would show by now
            assert token_requests(stack, "datacenter") - before == 1  # one refresh for the ten callers
        finally:
            control(stack, "datacenter", "DELETE", "faults")

        # A refresh that fails while the token is still good fails no call.
        expire_stored_token(stack, provider, in_seconds=15)
        control(stack, "datacenter", "POST", "faults", {"status": 503, "path_prefix": "/rest/oauth2/latest/token"})
        try:
            assert [s for s, _ in calls(3)] == [200] * 3
        finally:
            control(stack, "datacenter", "DELETE", "faults")
    finally:
        requests.post(f"{dc}/_emulator/config", json={"dc_access_token_lifetime": 3600}, timeout=5)
