"""Issue 23, end to end on the local stack over real HTTP: connect links bound to the person they were made
for (1), scopes that hold on every 409 (2), connect tokens kept out of the access log (8), and one client
deleting its end user without removing a connection others use (11)."""

from __future__ import annotations

import json
import uuid

import pytest
import requests

from bitbridge.client import Client, Forbidden, NotConnected, ServiceAPIError
from tests.e2e.browser import Browser, Cookie, forms, submit
from tests.e2e.service_support import (
    ORIGIN,
    PROVIDERS,
    add_client,
    connect,
    connect_code,
    follow_connect_url,
    new_bitbucket_user,
    wait_for_event,
)
from tests.e2e.support import SESSION, api_session, cli, host

CLOUD = PROVIDERS["cloud"]
RETURN_TO = f"{ORIGIN}/connected"


@pytest.fixture(scope="module")
def product(stack):
    """A product registered with a label, with every scope."""
    client_id = f"prod-{uuid.uuid4().hex[:8]}"
    scopes = "connections:read,connections:write,tokens:read,proxy,imports:write,imports:read"
    args = ["--label", "Acme <CI>", "--origin", ORIGIN, "--scopes", scopes, "--json"]
    done = cli(stack, "clients", "add", client_id, *args)
    assert done.returncode == 0, done.stderr
    return client_id, Client(stack.api, json.loads(done.stdout)["key"])


def _service_items(stack, prefix: str) -> int:
    items = stack.aws("dynamodb").scan(TableName="bitbridge-local-ServiceTable", ConsistentRead=True)["Items"]
    return sum(1 for i in items if i["pk"]["S"].startswith(prefix))


# ------------------------------------------------------------------------------------------- (1) connect links


def test_a_forwarded_connect_link_links_nobody(stack, product):
    """A product makes a link for its end user mallory; carol completes it in her own browser. carol's browser
    comes back to the product, where carol (not mallory) is signed in: the product confirms the code for the
    user signed in there, bitbridge refuses, and mallory's end user id gets no connection and no token."""
    _, bb = product
    mallory, carol = f"mallory-{uuid.uuid4().hex[:6]}", new_bitbucket_user(stack)
    session = bb.connect_session(mallory, return_to=RETURN_TO, provider=CLOUD)
    landed = follow_connect_url(session.connect_url, carol)  # carol's browser, carol's Bitbucket account
    code = connect_code(landed, RETURN_TO)
    with pytest.raises(Forbidden) as refused:
        bb.confirm_connection(f"product-user-{carol}", code)  # who the product knows in carol's browser
    assert refused.value.code == "end_user_mismatch" and mallory in refused.value.message
    with pytest.raises(NotConnected):
        bb.connection(CLOUD, mallory)
    with pytest.raises(NotConnected):
        bb.token(CLOUD, mallory)
    # The code is used up: a product that now tries the end user the link was for gets nothing either.
    with pytest.raises(ServiceAPIError) as used:
        bb.confirm_connection(mallory, code)
    assert used.value.status == 400 and used.value.code == "connect_code_invalid"
    with pytest.raises(NotConnected):
        bb.token(CLOUD, mallory)


def test_the_intended_end_user_is_linked_once_confirmed_and_only_then(stack, product):
    client_id, bb = product
    end_user, person = f"eu-{uuid.uuid4().hex[:6]}", new_bitbucket_user(stack)
    session = bb.connect_session(end_user, return_to=f"{RETURN_TO}?tab=settings", provider=CLOUD)
    landed = follow_connect_url(session.connect_url, person)
    code = connect_code(landed, f"{RETURN_TO}?tab=settings")  # the product's own query is kept
    with pytest.raises(NotConnected):  # nothing is linked before the product confirms
        bb.connection(CLOUD, end_user)
    _, other_key = add_client(stack)
    with pytest.raises(ServiceAPIError) as theirs:  # another client's code is an unknown code
        Client(stack.api, other_key).confirm_connection(end_user, code)
    assert theirs.value.code == "connect_code_invalid"
    confirmed = bb.confirm_connection(end_user, code)
    assert confirmed["username"] == person and confirmed["end_user_id"] == end_user
    assert bb.token(CLOUD, end_user).username == person
    event = wait_for_event(stack, "connection.created", {"client_id": client_id, "end_user_id": end_user})
    assert event["detail"]["username"] == person


def test_the_connect_page_names_the_product_and_the_end_user_and_only_its_own_form_leaves_for_bitbucket(stack, product):
    _, bb = product
    end_user = f"eu-{uuid.uuid4().hex[:6]}"
    session = bb.connect_session(end_user, return_to=RETURN_TO, provider=CLOUD)
    browser = Browser()
    page = browser.get(session.connect_url)
    assert page.status_code == 200
    assert "<strong>Acme &lt;CI&gt;</strong> asks to connect your Bitbucket account to its user" in page.text
    assert f"<strong>{end_user}</strong>" in page.text and "Acme <CI>" not in page.text
    (form,) = forms(page)
    assert form["method"] == "POST" and form["action"] == f"/auth/{CLOUD}/authorize"
    token = form["fields"]["connect_session"]
    # A link straight to the authorize step (skipping the page) is refused and does not use the session up.
    skipped = requests.get(f"{stack.api}/auth/{CLOUD}/authorize", params={"connect_session": token}, timeout=10)
    assert skipped.status_code == 400 and "press Continue" in skipped.text
    # So is a post from another site's page (its Origin), or with no Origin at all.
    for headers in ({"Origin": "https://evil.example"}, {}, {"Origin": "null", "Sec-Fetch-Site": "cross-site"}):
        posted = requests.post(f"{stack.api}/auth/{CLOUD}/authorize", data={"connect_session": token},
                               headers=headers, allow_redirects=False, timeout=10)  # fmt: skip
        assert posted.status_code == 403, posted.text[:300]
    # The page's own form goes on to Bitbucket's consent page.
    grant = submit(browser, page)
    assert grant.status_code == 200 and "Grant access" in grant.text
    # Its policy lets the form's answer redirect to the provider, and no further.
    policy = page.headers["Content-Security-Policy"]
    assert f"form-action 'self' {stack.urls['bitbucket_cloud']}" in policy and "frame-ancestors 'none'" in policy


def test_a_connect_never_sets_the_console_session_cookie(stack, product):
    _, bb = product
    browser = Browser()
    session = bb.connect_session(f"eu-{uuid.uuid4().hex[:6]}", return_to=RETURN_TO, provider=CLOUD)
    landed = follow_connect_url(session.connect_url, new_bitbucket_user(stack), browser)
    assert landed.status_code == 302
    set_cookies = [c for r in browser.history for c in r.raw.headers.getlist("Set-Cookie")]
    assert not [c for c in set_cookies if "bitbridge_session" in c], set_cookies
    assert browser.cookie(host(stack), SESSION) is None
    # That browser is not signed in to bitbridge.
    assert browser.get(f"{stack.api}/api/me").status_code == 401


def test_a_person_signed_in_to_the_console_stays_who_they_were(stack, product):
    """Completing a product's connect link in a browser signed in to the console neither signs it out nor in
    as someone else: the console session is untouched."""
    _, bb = product
    me = api_session(stack, "cloud", "alice")
    before = me.get(f"{stack.api}/api/me", timeout=10).json()["user"]["id"]
    browser = Browser()
    browser.jar[(host(stack), SESSION)] = Cookie(me.cookies[SESSION], "/")
    session = bb.connect_session(f"eu-{uuid.uuid4().hex[:6]}", return_to=RETURN_TO, provider=CLOUD)
    follow_connect_url(session.connect_url, new_bitbucket_user(stack), browser)
    assert browser.cookie(host(stack), SESSION) == me.cookies[SESSION]
    assert browser.get(f"{stack.api}/api/me").json()["user"]["id"] == before


# ------------------------------------------------------------------------------------------- (8) access log


def test_a_connect_links_token_never_reaches_the_access_log(stack, product):
    _, bb = product
    session = bb.connect_session(f"eu-{uuid.uuid4().hex[:6]}", return_to=RETURN_TO, provider=CLOUD)
    token = session.connect_url.rsplit("/", 1)[1]
    follow_connect_url(session.connect_url, new_bitbucket_user(stack))
    log = stack.log()
    assert "GET /connect/{session} -> 200" in log  # the gateway logged the request, by its route
    assert token not in log


# ------------------------------------------------------------------------------------------- (2) scopes


def test_a_client_without_connections_write_gets_no_connect_url_on_any_route(stack):
    """Creating connect sessions needs connections:write; a 409 is no way around it."""
    _, key = add_client(stack, scopes="connections:read,tokens:read,proxy,imports:write,imports:read")
    reader = Client(stack.api, key)
    sessions_before = _service_items(stack, "CONNECT#")
    end_user = f"nobody-{uuid.uuid4().hex[:6]}"
    calls = {
        "connection": lambda: reader.connection(CLOUD, end_user),
        "token": lambda: reader.token(CLOUD, end_user),
        "proxy": lambda: reader.proxy.get(CLOUD, end_user, "repositories/acme/web-app"),
        "imports": lambda: reader.imports.start(CLOUD, end_user, ["acme/web-app"]),
    }
    for route, call in calls.items():
        with pytest.raises(NotConnected) as refused:
            call()
        assert refused.value.connect_url is None and "connect_url" not in refused.value.details, route
        assert "connections:write" in refused.value.message, route
    assert _service_items(stack, "CONNECT#") == sessions_before  # no connect session was made for it
    # A client that may make connect sessions still gets one in the same answer.
    _, writer_key = add_client(stack)
    with pytest.raises(NotConnected) as offered:
        Client(stack.api, writer_key).token(CLOUD, end_user)
    assert offered.value.connect_url and offered.value.connect_url.startswith(f"{stack.api}/connect/")


# ------------------------------------------------------------------------------------------- (11) deletion


def test_deleting_one_clients_end_user_keeps_the_connection_another_client_uses(stack, product):
    client_a, bb_a = product
    client_b, key_b = add_client(stack)
    bb_b = Client(stack.api, key_b)
    person = new_bitbucket_user(stack)
    connect(stack, bb_a, "cloud", "alpha", person)
    connect(stack, bb_b, "cloud", "beta", person)
    answer = bb_b.delete_connection(CLOUD, "beta")
    assert answer["unlinked"] is True and answer["connection_deleted"] is False
    assert "another product's user or bitbridge's console" in answer["message"]
    with pytest.raises(NotConnected):
        bb_b.token(CLOUD, "beta")
    assert bb_a.token(CLOUD, "alpha").username == person  # client A's end user is untouched
    event = wait_for_event(stack, "connection.deleted", {"client_id": client_b, "end_user_id": "beta"})
    assert event["detail"]["username"] == person
    deleted = [e["detail"] for e in stack.events(0)[0] if e.get("detail-type") == "connection.deleted"]
    assert not [d for d in deleted if (d.get("client_id"), d.get("end_user_id")) == (client_a, "alpha")]
    # When nothing else uses it, the last client's delete removes the connection itself.
    last = bb_a.delete_connection(CLOUD, "alpha")
    assert last["connection_deleted"] is True
    with pytest.raises(NotConnected):
        bb_a.token(CLOUD, "alpha")


def test_a_clients_delete_keeps_a_connection_the_console_uses(stack, product):
    _, bb = product
    person = new_bitbucket_user(stack)
    console = api_session(stack, "cloud", person)  # the person signs in to bitbridge's console
    connect(stack, bb, "cloud", f"eu-{person}", person)
    answer = bb.delete_connection(CLOUD, f"eu-{person}")
    assert answer["connection_deleted"] is False
    connections = console.get(f"{stack.api}/api/me", timeout=10).json()["connections"]
    assert [c["status"] for c in connections if c["provider"] == CLOUD] == ["active"]
