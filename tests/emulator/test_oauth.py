"""One test per OAuth behaviour of Bitbucket Cloud and Data Center."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import requests

from .conftest import (
    CALLBACK,
    bearer,
    cloud_code,
    cloud_token,
    control,
    dc_code,
    dc_token,
    pkce_pair,
    register_cloud_client,
    register_dc_client,
)


def _query(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


# ---------------------------------------- Cloud
def test_cloud_consent_page_grant_redirects_with_code_and_state(emu):
    register_cloud_client(emu)
    url = f"{emu.cloud_url}/site/oauth2/authorize"
    params = {
        "client_id": "cloud-client",
        "response_type": "code",
        "state": "xyz",
        "code_challenge": "ignored",
    }
    page = requests.get(url, params=params, timeout=10)
    assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]
    assert 'value="grant"' in page.text and 'value="deny"' in page.text and "alice" in page.text
    form = {**params, "user": "bob", "decision": "grant"}
    resp = requests.post(url, data=form, allow_redirects=False, timeout=10)
    assert resp.status_code == 302
    location = resp.headers["Location"]
    assert location.startswith(CALLBACK.format("bitbucket"))
    assert _query(location)["state"] == "xyz"
    token = cloud_token(emu, _query(location)["code"])
    assert token.status_code == 200
    body = token.json()
    assert body["expires_in"] == 7200 and body["token_type"] == "bearer" and body["refresh_token"]
    me = requests.get(f"{emu.cloud_url}/2.0/user", headers=bearer(body["access_token"]), timeout=10).json()
    assert me["nickname"] == "bob"


def test_cloud_deny_redirects_with_access_denied(emu):
    register_cloud_client(emu)
    resp = requests.post(
        f"{emu.cloud_url}/site/oauth2/authorize",
        allow_redirects=False,
        timeout=10,
        data={
            "client_id": "cloud-client",
            "response_type": "code",
            "state": "s",
            "user": "alice",
            "decision": "deny",
        },
    )
    assert resp.status_code == 302
    query = _query(resp.headers["Location"])
    assert query["error"] == "access_denied" and query["state"] == "s" and "code" not in query


def test_cloud_redirect_mismatch_shows_error_page_without_redirect(emu):
    register_cloud_client(emu)
    url = f"{emu.cloud_url}/site/oauth2/authorize"
    for params in (
        {"client_id": "cloud-client", "response_type": "code", "redirect_uri": "http://evil.test/cb"},
        {"client_id": "unknown", "response_type": "code"},
    ):
        resp = requests.get(url, params=params, allow_redirects=False, timeout=10)
        assert resp.status_code == 400 and "Location" not in resp.headers
        assert "Invalid redirect_uri" in resp.text
    # A redirect_uri that extends the consumer's callback URL is accepted (prefix match).
    ok = requests.get(
        url,
        params={
            "client_id": "cloud-client",
            "response_type": "code",
            "redirect_uri": CALLBACK.format("bitbucket") + "/extra",
        },
        timeout=10,
    )
    assert ok.status_code == 200


def test_cloud_code_reuse_is_invalid_grant(emu):
    register_cloud_client(emu)
    code = cloud_code(emu)
    first = cloud_token(emu, code)
    assert first.status_code == 200
    second = cloud_token(emu, code)
    assert second.status_code == 400
    assert second.json() == {
        "error_description": "The specified code is not valid.",
        "error": "invalid_grant",
    }


def test_cloud_rejects_client_credentials_in_body(emu):
    register_cloud_client(emu)
    code = cloud_code(emu)
    resp = requests.post(
        f"{emu.cloud_url}/site/oauth2/access_token",
        timeout=10,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "client_id": "cloud-client",
            "client_secret": "cloud-secret",
        },
    )
    assert resp.status_code == 400
    assert resp.json()["error"] == "unauthorized_client"
    wrong = requests.post(
        f"{emu.cloud_url}/site/oauth2/access_token",
        auth=("cloud-client", "nope"),
        timeout=10,
        data={"grant_type": "authorization_code", "code": code},
    )
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    # The code was not consumed by the failed attempts: Basic auth still works.
    assert cloud_token(emu, code).status_code == 200


def _cloud_refresh(emu, refresh_token: str) -> requests.Response:
    return requests.post(
        f"{emu.cloud_url}/site/oauth2/access_token",
        auth=("cloud-client", "cloud-secret"),
        data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        timeout=10,
    )


def test_cloud_rotated_refresh_token_works_within_grace_then_fails(emu):
    register_cloud_client(emu)
    control(emu, "POST", "config", json={"cloud_refresh_grace_seconds": 0.5})
    tokens = cloud_token(emu, cloud_code(emu)).json()
    rotated = _cloud_refresh(emu, tokens["refresh_token"])
    assert rotated.status_code == 200
    assert rotated.json()["refresh_token"] != tokens["refresh_token"]
    assert rotated.json()["state"] == "refresh_token"
    # Within the grace period the old refresh token still works (a concurrent refresh must not break) ...
    assert _cloud_refresh(emu, tokens["refresh_token"]).status_code == 200
    time.sleep(0.6)
    # ... after it, it is invalid_grant, while the newest one keeps working.
    late = _cloud_refresh(emu, tokens["refresh_token"])
    assert late.status_code == 400
    assert late.json() == {"error_description": "Invalid refresh_token", "error": "invalid_grant"}
    assert _cloud_refresh(emu, rotated.json()["refresh_token"]).status_code == 200


def test_cloud_rest_accepts_bearer_only(emu):
    register_cloud_client(emu)
    token = cloud_token(emu, cloud_code(emu)).json()["access_token"]
    as_query = requests.get(f"{emu.cloud_url}/2.0/user", params={"access_token": token}, timeout=10)
    assert as_query.status_code == 401
    assert requests.get(f"{emu.cloud_url}/2.0/user", headers=bearer(token), timeout=10).status_code == 200


def test_cloud_scopes_enforced_with_bitbucket_error_body(emu):
    register_cloud_client(emu, scopes=["account"])
    token = cloud_token(emu, cloud_code(emu)).json()["access_token"]
    resp = requests.get(f"{emu.cloud_url}/2.0/repositories/acme", headers=bearer(token), timeout=10)
    assert resp.status_code == 403
    assert resp.json()["error"]["message"] == "Your credentials lack one or more required privilege scopes."
    assert resp.json()["error"]["detail"] == {"required": ["repository"], "granted": ["account"]}


# ---------------------------------------- Data Center
def test_dc_consent_page_and_pkce_s256(emu):
    register_dc_client(emu)
    verifier, challenge = pkce_pair()
    url = f"{emu.dc_url}/rest/oauth2/latest/authorize"
    params = {
        "client_id": "dc-client",
        "response_type": "code",
        "redirect_uri": CALLBACK.format("bitbucket-dc"),
        "scope": "REPO_READ",
        "state": "st",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    page = requests.get(url, params=params, timeout=10)
    assert page.status_code == 200 and "REPO_READ" in page.text
    resp = requests.post(url, data={**params, "user": "carol", "decision": "grant"}, allow_redirects=False, timeout=10)
    query = _query(resp.headers["Location"])
    assert query["state"] == "st"
    token = dc_token(emu, query["code"], code_verifier=verifier)
    assert token.status_code == 200, token.text
    assert token.json()["expires_in"] == 3600 and token.json()["scope"] == "REPO_READ"
    who = requests.get(
        f"{emu.dc_url}/plugins/servlet/applinks/whoami",
        headers=bearer(token.json()["access_token"]),
        timeout=10,
    )
    assert who.text == "carol" and who.headers["Content-Type"].startswith("text/plain")


def test_dc_pkce_plain_and_mismatch(emu):
    register_dc_client(emu)
    ok = dc_token(
        emu,
        dc_code(emu, code_challenge="plain-verifier-123", code_challenge_method="plain"),
        code_verifier="plain-verifier-123",
    )
    assert ok.status_code == 200
    _, challenge = pkce_pair("the-right-verifier-0000000000000000000000000000")
    bad = dc_token(
        emu,
        dc_code(emu, code_challenge=challenge, code_challenge_method="S256"),
        code_verifier="a-wrong-verifier-000000000000000000000000000000",
    )
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_grant"


def test_dc_code_expires(emu):
    register_dc_client(emu)
    control(emu, "POST", "config", json={"dc_code_lifetime": 0.2})
    code = dc_code(emu)
    time.sleep(0.3)
    resp = dc_token(emu, code)
    assert resp.status_code == 400
    assert resp.json()["error"] == "invalid_grant" and "expired" in resp.json()["error_description"]


def test_dc_code_reuse_is_invalid_grant(emu):
    register_dc_client(emu)
    code = dc_code(emu)
    assert dc_token(emu, code).status_code == 200
    again = dc_token(emu, code)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def test_dc_accepts_client_credentials_in_body_and_rejects_wrong_secret(emu):
    register_dc_client(emu)
    assert dc_token(emu, dc_code(emu)).status_code == 200  # dc_token sends client_id/secret in the form body
    wrong = dc_token(emu, dc_code(emu), client_secret="nope")
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"


def test_dc_refresh_requires_redirect_uri(emu):
    register_dc_client(emu)
    tokens = dc_token(emu, dc_code(emu)).json()
    url = f"{emu.dc_url}/rest/oauth2/latest/token"
    base = {
        "grant_type": "refresh_token",
        "refresh_token": tokens["refresh_token"],
        "client_id": "dc-client",
        "client_secret": "dc-secret",
    }
    missing = requests.post(url, data=base, timeout=10)
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_request"
    ok = requests.post(url, data={**base, "redirect_uri": CALLBACK.format("bitbucket-dc")}, timeout=10)
    assert ok.status_code == 200 and ok.json()["access_token"] != tokens["access_token"]


def test_dc_invalid_scope_redirects_with_error(emu):
    register_dc_client(emu)
    resp = requests.get(
        f"{emu.dc_url}/rest/oauth2/latest/authorize",
        allow_redirects=False,
        timeout=10,
        params={
            "client_id": "dc-client",
            "response_type": "code",
            "redirect_uri": CALLBACK.format("bitbucket-dc"),
            "scope": "REPO_READ DELETE_EVERYTHING",
            "state": "q",
        },
    )
    assert resp.status_code == 302
    query = _query(resp.headers["Location"])
    assert query["error"] == "invalid_scope" and query["state"] == "q"


def test_dc_redirect_mismatch_and_deny(emu):
    register_dc_client(emu)
    url = f"{emu.dc_url}/rest/oauth2/latest/authorize"
    bad = requests.get(
        url,
        params={"client_id": "dc-client", "response_type": "code", "redirect_uri": "http://evil.test/cb"},
        allow_redirects=False,
        timeout=10,
    )
    assert bad.status_code == 400 and "Location" not in bad.headers and "Invalid redirect_uri" in bad.text
    deny = requests.post(
        url,
        allow_redirects=False,
        timeout=10,
        data={
            "client_id": "dc-client",
            "response_type": "code",
            "redirect_uri": CALLBACK.format("bitbucket-dc"),
            "scope": "REPO_READ",
            "state": "d",
            "user": "alice",
            "decision": "deny",
        },
    )
    assert _query(deny.headers["Location"])["error"] == "access_denied"


def test_dc_context_path(emu):
    from infra.emulator import Emulator

    with Emulator(cloud_port=0, dc_port=0, dc_context_path="/bitbucket") as other:
        assert other.dc_url.endswith("/bitbucket")
        register_dc_client(other)
        code = control(
            other,
            "POST",
            "oauth/authorize",
            json={"flavor": "datacenter", "client_id": "dc-client", "user": "alice", "scope": "REPO_READ"},
        ).json()["code"]
        token = dc_token(other, code).json()["access_token"]
        resp = requests.get(f"{other.dc_url}/rest/api/1.0/projects/PLAT/repos/core", headers=bearer(token), timeout=10)
        assert resp.status_code == 200
        assert resp.json()["links"]["clone"][1]["href"] == f"{other.dc_url}/scm/plat/core.git"
        outside = requests.get(other.dc_url.removesuffix("/bitbucket") + "/rest/api/1.0/repos", timeout=10)
        assert outside.status_code == 404


# ---------------------------------------- iss (RFC 9207)
def test_authorization_responses_carry_no_iss_unless_told(emu):
    """Atlassian's OAuth documentation shows neither flavour naming its issuer in the authorization response;
    `*_authorization_response_iss` makes it do so ("self": its web root), or name another server (a mix-up)."""
    register_cloud_client(emu)
    register_dc_client(emu)
    dc = {
        "flavor": "datacenter",
        "client_id": "dc-client",
        "user": "alice",
        "scope": "REPO_ADMIN",
        "redirect_uri": CALLBACK.format("bitbucket-dc"),
        "state": "s",
    }
    cloud = {"client_id": "cloud-client", "user": "alice", "state": "s"}

    def iss(body: dict, **change: object) -> str | None:
        answer = control(emu, "POST", "oauth/authorize", json={**body, **change})
        return _query(answer.json()["location"]).get("iss")

    assert iss(dc) is None and iss(cloud) is None
    assert control(emu, "POST", "config", json={"dc_authorization_response_iss": "self"}).status_code == 200
    assert iss(dc) == emu.dc_url and iss(cloud) is None
    assert iss(dc, decision="deny") == emu.dc_url  # error responses name it too
    config = {"cloud_authorization_response_iss": "https://other.example"}
    assert control(emu, "POST", "config", json=config).status_code == 200
    assert iss(cloud) == "https://other.example"
    refused = control(emu, "POST", "config", json={"dc_authorization_response_iss": 7})
    assert refused.status_code == 400 and "self" in refused.json()["error"]
    assert control(emu, "POST", "config", json={"dc_authorization_response_iss": None}).status_code == 200
    assert iss(dc) is None
