"""The service API end to end: local stack + emulator over real HTTP, both flavors, through the SDK."""

from __future__ import annotations

import http.client
import json
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest
import requests

from bitbridge.client import Client, Forbidden, NotConnected, ReauthRequired, ServiceAPIError, Unauthenticated
from bitbridge.service.cache import CACHE_SECONDS as TOKEN_CACHE_SECONDS
from bitbridge.service.credentials import CACHE_SECONDS
from infra.local.logs import BATCH_SECONDS
from tests.e2e.service_support import (
    ORIGIN,
    PROVIDERS,
    add_client,
    age_connection,
    connect,
    follow_connect_url,
    new_bitbucket_user,
    token_endpoint_calls,
    wait_for_event,
)
from tests.e2e.support import api_session, cli, control, emulator, user_id
from tests.service_paths import PATH_ESCAPES

FLAVORS = ["cloud", "datacenter"]
OVERLAP_SECONDS = 10  # a key rotation's overlap in these tests
PR_PATH = {"cloud": "repositories/acme/web-app/pullrequests", "datacenter": "projects/PLAT/repos/core/pull-requests"}


@pytest.fixture(scope="module")
def product(stack):
    client_id, key = add_client(stack)
    return client_id, Client(stack.api, key)


@pytest.fixture
def connected(stack, product, request):
    """(flavor, end user id, bitbucket user) connected through a connect session."""
    flavor = request.param
    _, bb = product
    user = new_bitbucket_user(stack)
    end_user = f"eu-{user}"
    connect(stack, bb, flavor, end_user, user)
    return flavor, end_user, user


# ------------------------------------------------------------------------------------------- connect


@pytest.mark.parametrize("connected", FLAVORS, indirect=True)
def test_connect_session_links_the_end_user_and_the_event_says_so(stack, product, connected):
    client_id, bb = product
    flavor, end_user, user = connected
    provider = PROVIDERS[flavor]
    conn = bb.connection(provider, end_user)
    assert conn["status"] == "active" and conn["username"] == user and conn["end_user_id"] == end_user
    assert '"access_token":' not in json.dumps(conn)
    event = wait_for_event(stack, "connection.created", {"client_id": client_id, "end_user_id": end_user})
    assert event["source"] == "bitbridge" and event["detail"]["provider"] == provider
    assert event["detail"]["username"] == user


def test_connect_url_is_one_time_and_return_to_must_be_registered(stack, product):
    _, bb = product
    user = new_bitbucket_user(stack)
    session = bb.connect_session("eu-once", return_to=f"{ORIGIN}/x", provider=PROVIDERS["cloud"])
    follow_connect_url(session.connect_url, user)
    again = requests.get(session.connect_url, allow_redirects=True, timeout=10)
    assert again.status_code == 400 and ("already used" in again.text or "unknown, used" in again.text)
    with pytest.raises(Exception) as refused:
        bb.connect_session("eu-x", return_to="https://evil.example/", provider=PROVIDERS["cloud"])
    assert getattr(refused.value, "code", None) == "invalid_return_to"


def test_one_bitbridge_user_can_be_two_clients_end_users(stack, product):
    _, bb_a = product
    _, key_b = add_client(stack)
    bb_b = Client(stack.api, key_b)
    user = new_bitbucket_user(stack)
    connect(stack, bb_a, "cloud", "alpha-1", user)
    connect(stack, bb_b, "cloud", "beta-7", user)
    assert bb_a.connection(PROVIDERS["cloud"], "alpha-1")["username"] == user
    assert bb_b.connection(PROVIDERS["cloud"], "beta-7")["username"] == user
    with pytest.raises(NotConnected) as missing:
        bb_b.token(PROVIDERS["cloud"], "alpha-1")  # end user ids belong to their client
    assert missing.value.connect_url and "/connect/" in missing.value.connect_url


# ------------------------------------------------------------------------------------------- tokens


@pytest.mark.parametrize("connected", FLAVORS, indirect=True)
def test_token_is_valid_and_refreshed_when_near_expiry(stack, product, connected):
    client_id, bb = product
    flavor, end_user, user = connected
    provider = PROVIDERS[flavor]
    first = bb.token(provider, end_user)
    assert first.username == user and first.expires_at - time.time() >= 300 and first.scopes
    # The token works at Bitbucket itself.
    probe = "2.0/user" if flavor == "cloud" else "plugins/servlet/applinks/whoami"
    assert requests.get(
        f"{emulator(stack, flavor)}/{probe}", headers={"Authorization": f"Bearer {first.access_token}"}, timeout=10
    ).ok
    assert bb.token(provider, end_user).access_token == first.access_token  # still fresh: no refresh
    age_connection(stack, client_id, end_user, provider, seconds_left=120)
    before = token_endpoint_calls(stack, flavor)
    # A running function trusts the token it vended for up to TOKEN_CACHE_SECONDS (service.cache) ...
    assert bb.token(provider, end_user).access_token == first.access_token
    time.sleep(TOKEN_CACHE_SECONDS)
    # ... then reads the connection again: near expiry, so refreshed.
    second = bb.token(provider, end_user)
    assert second.access_token != first.access_token
    assert second.expires_at - time.time() >= 300
    assert token_endpoint_calls(stack, flavor) == before + 1


@pytest.mark.parametrize("connected", FLAVORS, indirect=True)
def test_twenty_concurrent_token_requests_during_expiry_make_one_refresh(stack, product, connected):
    client_id, bb = product
    flavor, end_user, _ = connected
    provider = PROVIDERS[flavor]
    bb.token(provider, end_user)
    age_connection(stack, client_id, end_user, provider, seconds_left=30)
    time.sleep(TOKEN_CACHE_SECONDS)  # past the vended token's cache (service.cache)
    before = token_endpoint_calls(stack, flavor)
    with ThreadPoolExecutor(max_workers=20) as pool:
        tokens = list(pool.map(lambda _: bb.token(provider, end_user), range(20)))
    assert token_endpoint_calls(stack, flavor) == before + 1
    assert len({t.access_token for t in tokens}) == 1
    assert all(t.expires_at - time.time() >= 300 for t in tokens)


def test_reauth_required_answers_409_with_a_connect_url_and_an_event(stack, product):
    client_id, bb = product
    user = new_bitbucket_user(stack)
    connect(stack, bb, "cloud", "eu-reauth", user)
    control(stack, "cloud", "POST", "tokens/revoke", {"user": user})
    age_connection(stack, client_id, "eu-reauth", PROVIDERS["cloud"], seconds_left=10)
    with pytest.raises(ReauthRequired) as reauth:
        bb.token(PROVIDERS["cloud"], "eu-reauth")
    assert reauth.value.status == 409 and reauth.value.code == "reauth_required"
    assert reauth.value.connect_url.startswith(f"{stack.api}/connect/")
    wait_for_event(stack, "connection.reauth_required", {"client_id": client_id, "end_user_id": "eu-reauth"})
    # The connect URL mends it.
    landed = follow_connect_url(reauth.value.connect_url, user)
    assert landed.status_code == 302
    assert bb.token(PROVIDERS["cloud"], "eu-reauth").username == user


# ------------------------------------------------------------------------------------------- proxy


def _direct_pull_requests(stack, flavor: str, token: str) -> list[int]:
    base = emulator(stack, flavor)
    auth = {"Authorization": f"Bearer {token}"}
    if flavor == "cloud":
        page = requests.get(f"{base}/2.0/{PR_PATH[flavor]}", params={"pagelen": 50}, headers=auth, timeout=10).json()
        return sorted(pr["id"] for pr in page["values"])
    page = requests.get(
        f"{base}/rest/api/1.0/{PR_PATH[flavor]}", params={"limit": 1000}, headers=auth, timeout=10
    ).json()
    return sorted(pr["id"] for pr in page["values"])


@pytest.mark.parametrize("connected", FLAVORS, indirect=True)
def test_proxy_lists_pull_requests_across_pages_like_the_emulator(stack, product, connected):
    _, bb = product
    flavor, end_user, _ = connected
    provider = PROVIDERS[flavor]
    seen: list[int] = []
    if flavor == "cloud":
        first = bb.proxy.get(provider, end_user, PR_PATH[flavor], params={"pagelen": 10})
        assert first.status_code == 200
        assert first.json()["next"].startswith(f"{stack.api}/service/v1/proxy/{provider}/{end_user}/")
        seen = [pr["id"] for pr in bb.proxy.pages(provider, end_user, PR_PATH[flavor], params={"pagelen": 10})]
    else:
        start = 0
        while True:
            page = bb.proxy.get(provider, end_user, PR_PATH[flavor], params={"limit": 5, "start": start}).json()
            seen.extend(pr["id"] for pr in page["values"])
            if page["isLastPage"]:
                break
            start = page["nextPageStart"]
    assert len(seen) > 10  # more than one page
    assert sorted(seen) == _direct_pull_requests(stack, flavor, bb.token(provider, end_user).access_token)
    # Bitbucket's own errors pass through unchanged (status and body), not as bitbridge errors.
    missing = bb.proxy.get(provider, end_user, PR_PATH[flavor].replace("acme", "nobody").replace("PLAT", "NOPE"))
    assert missing.status_code == 404 and "X-Bitbridge-Error" not in missing.headers


def test_proxy_waits_out_a_429_window(stack, product):
    _, bb = product
    user = new_bitbucket_user(stack)
    connect(stack, bb, "cloud", "eu-429", user)
    rule = {"status": 429, "seconds": 2, "path_prefix": "/2.0/repositories/acme/infra", "flavor": "cloud"}
    control(stack, "cloud", "POST", "faults", rule)
    try:
        started = time.monotonic()
        answer = bb.proxy.get(PROVIDERS["cloud"], "eu-429", "repositories/acme/infra")
        assert answer.status_code == 200 and answer.json()["full_name"] == "acme/infra"
        assert time.monotonic() - started >= 1.5
    finally:
        control(stack, "cloud", "DELETE", "faults")


@pytest.mark.parametrize("connected", FLAVORS, indirect=True)
def test_proxy_refreshes_once_when_bitbucket_says_the_token_expired(stack, product, connected):
    _, bb = product
    flavor, end_user, _ = connected
    provider = PROVIDERS[flavor]
    old = bb.token(provider, end_user).access_token
    control(stack, flavor, "POST", "tokens/expire", {"token": old})
    before = token_endpoint_calls(stack, flavor)
    answer = bb.proxy.get(provider, end_user, PR_PATH[flavor])
    assert answer.status_code == 200
    assert token_endpoint_calls(stack, flavor) == before + 1
    assert bb.token(provider, end_user).access_token != old


def _raw_get(url: str, raw_path: str, key: str) -> tuple[int, dict]:
    """Send the path byte for byte (requests and urllib3 would normalise dot segments first)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=15)
    try:
        conn.putrequest("GET", raw_path, skip_accept_encoding=True)
        conn.putheader("Authorization", f"Bearer {key}")
        conn.endheaders()
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    try:
        return response.status, json.loads(body)
    except ValueError:
        return response.status, {}


def test_thirty_path_escape_attempts_are_refused_before_reaching_bitbucket(stack):
    _, key = add_client(stack)
    bb = Client(stack.api, key)
    user = new_bitbucket_user(stack)
    connect(stack, bb, "cloud", "eu-paths", user)
    bb.token(PROVIDERS["cloud"], "eu-paths")
    control(stack, "cloud", "DELETE", "requests")
    assert len(PATH_ESCAPES) >= 30
    for attempt in PATH_ESCAPES:
        raw = f"/service/v1/proxy/{PROVIDERS['cloud']}/eu-paths/{attempt.replace(chr(92), '%5C')}"
        status, body = _raw_get(stack.api, raw, key)
        # 400 from the proxy's check; a decoded CR/LF does not even match the route (the gateway's 404).
        refused = status == 400 and body["error"]["code"] == "path_not_allowed"
        assert refused or (status == 404 and "%0a" in attempt.lower()), (attempt, status, body)
    assert control(stack, "cloud", "GET", "requests")["total"] == 0  # nothing reached Bitbucket


def test_oversized_request_body_is_413(stack, product):
    _, bb = product
    user = new_bitbucket_user(stack)
    connect(stack, bb, "cloud", "eu-413", user)
    response = requests.post(
        f"{stack.api}/service/v1/proxy/{PROVIDERS['cloud']}/eu-413/repositories/acme/infra/hooks",
        data=b"x" * (1024 * 1024 + 1),
        headers={"Authorization": f"Bearer {bb._credentials}", "Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"


# ------------------------------------------------------------------------------------------- credentials


def test_no_bad_wrong_scope_revoked_credentials(stack):
    url = f"{stack.api}/service/v1/connections/{PROVIDERS['cloud']}/anyone/token"
    none = requests.post(url, timeout=10)
    assert none.status_code == 401 and none.json()["error"]["code"] == "unauthenticated"
    assert "Authorization" in none.json()["error"]["message"]
    _, key = add_client(stack, scopes="tokens:read")
    wrong = key[:-4] + ("aaaa" if not key.endswith("aaaa") else "bbbb")
    with pytest.raises(Unauthenticated):
        Client(stack.api, wrong).token(PROVIDERS["cloud"], "anyone")
    with pytest.raises(Forbidden) as scope:
        Client(stack.api, key).proxy.get(PROVIDERS["cloud"], "anyone", "user")
    assert scope.value.code == "insufficient_scope" and "proxy" in scope.value.message
    other_id, other_key = add_client(stack)
    assert cli(stack, "clients", "revoke", other_id).returncode == 0
    with pytest.raises(Forbidden) as revoked:
        Client(stack.api, other_key).token(PROVIDERS["cloud"], "anyone")
    assert revoked.value.code == "credentials_revoked"


def test_rotation_overlap_then_only_the_new_key(stack):
    client_id, old_key = add_client(stack)
    with pytest.raises(NotConnected):
        Client(stack.api, old_key).token(PROVIDERS["cloud"], "nobody-yet")
    # The overlap starts in the CLI: 10 s (not less) leaves a loaded machine time to end it and make two calls.
    rotated = cli(stack, "clients", "rotate", client_id, "--overlap", f"{OVERLAP_SECONDS}s", "--json")
    assert rotated.returncode == 0, rotated.stderr
    new_key = json.loads(rotated.stdout)["key"]
    for key in (old_key, new_key):  # both during the overlap
        with pytest.raises(NotConnected):
            Client(stack.api, key).token(PROVIDERS["cloud"], "nobody-yet")
    # After the overlap (plus the functions' key cache, CACHE_SECONDS) only the new key works.
    deadline = time.monotonic() + OVERLAP_SECONDS + CACHE_SECONDS + 2
    while True:
        try:
            Client(stack.api, old_key).token(PROVIDERS["cloud"], "nobody-yet")
        except Forbidden as expired:
            assert expired.code == "credentials_expired"
            break
        except NotConnected:
            assert time.monotonic() < deadline, "the old key still works after the overlap"
            time.sleep(0.5)
    with pytest.raises(NotConnected):
        Client(stack.api, new_key).token(PROVIDERS["cloud"], "nobody-yet")
    listed = json.loads(cli(stack, "clients", "list", "--json").stdout)
    keys = next(c for c in listed if c["client_id"] == client_id)["keys"]
    assert sorted(k["state"] for k in keys) == ["active", "expired"]
    assert old_key.split(".")[1] not in json.dumps(listed) and new_key.split(".")[1] not in json.dumps(listed)


# ------------------------------------------------------------------------------------------- audit, imports


def test_audit_has_one_record_per_call_and_no_token(stack):
    client_id, key = add_client(stack)
    bb = Client(stack.api, key)
    user = new_bitbucket_user(stack)
    connect(stack, bb, "cloud", "eu-audit", user)  # 1 call: the connect session
    token = bb.token(PROVIDERS["cloud"], "eu-audit")  # 2
    bb.proxy.get(
        PROVIDERS["cloud"], "eu-audit", "repositories/acme/infra", params={"access_token": token.access_token}
    )  # 3
    bb.proxy.get(PROVIDERS["cloud"], "eu-audit", "repositories/acme/does-not-exist")  # 4 (404 passed through)
    with pytest.raises(ServiceAPIError):
        bb.proxy.get(PROVIDERS["cloud"], "eu-audit", "site/oauth2/access_token")  # 5 (refused, still audited)

    # The records travel as log lines through the log subscription to AuditWriterFunction: seconds late.
    def audit_rows() -> tuple[subprocess.CompletedProcess, list[dict]]:
        done = cli(stack, "audit", "--client", client_id, "--since", "10m", "--json")
        assert done.returncode == 0, done.stderr
        return done, [json.loads(line) for line in done.stdout.splitlines()]

    deadline = time.monotonic() + 20
    while len(audit_rows()[1]) < 5 and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(2 * BATCH_SECONDS)  # one more batch would show a record written twice
    done, rows = audit_rows()
    assert [r["action"] for r in rows] == ["connect_session", "token", "proxy", "proxy", "proxy"]
    assert [r["status"] for r in rows] == [201, 200, 200, 404, 400]
    assert all(r["end_user_id"] in ("eu-audit", None) and r["duration_ms"] >= 0 for r in rows)
    assert rows[2]["path"].endswith("repositories/acme/infra?access_token=REDACTED")
    assert token.access_token not in done.stdout
    ddb = stack.aws("dynamodb")
    table = next(t for t in ddb.list_tables()["TableNames"] if "ServiceTable" in t)
    items = ddb.scan(TableName=table)["Items"]
    assert token.access_token not in json.dumps(items)
    assert all("expires_at" in i for i in items if i["pk"]["S"].startswith("AUDIT#"))
    human = cli(stack, "audit", "--client", client_id, "--since", "10m")
    assert len(human.stdout.splitlines()) == 5


def test_imports_for_an_end_user(stack, product):
    _, bb = product
    user = new_bitbucket_user(stack)
    connect(stack, bb, "cloud", "eu-import", user)
    started = bb.imports.start(PROVIDERS["cloud"], "eu-import", ["acme/infra"])
    assert len(started) == 1 and started[0]["repository"]["full_name"] == "acme/infra"
    job_id = started[0]["id"]
    deadline = time.monotonic() + 60
    while True:
        job = bb.imports.get(job_id, "eu-import")
        if job["state"] in ("completed", "failed", "cancelled") or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert job["state"] == "completed", job
    with pytest.raises(Exception) as hidden:
        bb.imports.get(job_id, "someone-else")
    assert getattr(hidden.value, "status", None) == 404


def test_a_plain_sign_in_announces_a_new_connection_once(stack):
    user = new_bitbucket_user(stack)
    session = api_session(stack, "cloud", user)
    me = user_id(stack, session)
    created = wait_for_event(stack, "connection.created", {"user_id": me})
    assert created["detail"]["provider"] == PROVIDERS["cloud"] and created["detail"]["client_id"] is None
    assert created["detail"]["username"] == user
    # Signing in again renews the tokens of a usable connection: nothing new to announce.
    api_session(stack, "cloud", user)
    time.sleep(2)  # the tap polls the bus
    mine = [e for e in stack.events(0)[0] if e["detail-type"] == "connection.created" and e["detail"]["user_id"] == me]
    assert len(mine) == 1
