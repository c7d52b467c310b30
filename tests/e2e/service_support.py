"""Helpers for the service API end-to-end tests: clients made with the CLI, end users connected through a
connect session in a scripted browser, the emulator's control API."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

from bitbridge.client import Client
from tests.e2e.browser import Browser, consent, submit
from tests.e2e.support import cli, control

PROVIDERS = {"cloud": "bitbucket-cloud", "datacenter": "acme-datacenter"}
ORIGIN = "http://127.0.0.1:9"  # the product's site; nothing needs to answer there
ALL_SCOPES = "connections:read,connections:write,tokens:read,proxy,imports:write,imports:read"


def add_client(stack, scopes: str = ALL_SCOPES, origin: str = ORIGIN) -> tuple[str, str]:
    """(client id, key) of a new service client, registered with `bitbridge clients add`."""
    client_id = f"prod-{uuid.uuid4().hex[:8]}"
    done = cli(stack, "clients", "add", client_id, "--scopes", scopes, "--origin", origin, "--json")
    assert done.returncode == 0, done.stderr
    return client_id, json.loads(done.stdout)["key"]


def new_bitbucket_user(stack) -> str:
    """A Bitbucket user of its own (so tests that expire or revoke tokens touch nobody else's), with read
    access to the repositories the tests list."""
    name = f"u{uuid.uuid4().hex[:8]}"
    control(
        stack, "cloud", "POST", "users", {"name": name, "display_name": name.title(), "email": f"{name}@example.com"}
    )
    control(stack, "cloud", "PUT", "cloud/repos/acme/web-app/permissions", {name: "read"})
    control(stack, "cloud", "PUT", "cloud/repos/acme/infra/permissions", {name: "read"})
    control(stack, "datacenter", "PUT", "datacenter/repos/PLAT/core/permissions", {name: "read"})
    return name


def follow_connect_url(url: str, bitbucket_user: str, browser: Browser | None = None) -> requests.Response:
    """What the end user does: open the connect URL, read who asks, press Continue, grant on Bitbucket, land
    back (not followed: the product's own site). Returns bitbridge's final redirect."""
    browser = browser or Browser()
    page = browser.get(url)
    assert page.status_code == 200 and "asks to connect your Bitbucket account" in page.text, page.text[:300]
    grant = submit(browser, page)
    assert grant.status_code == 200 and "Grant access" in grant.text, grant.text[:300]
    callback = consent(browser, grant, bitbucket_user)
    assert callback.status_code == 302, callback.text[:300]
    return browser.get(callback.headers["Location"], follow=False)


def connect_code(landed: requests.Response, return_to: str) -> str:
    """The one-time code bitbridge sent the browser back to `return_to` with (its own query kept)."""
    location = landed.headers.get("Location", "")
    assert landed.status_code == 302, landed.text[:300]
    sent, came = urlsplit(return_to), urlsplit(location)
    assert (came.scheme, came.netloc, came.path) == (sent.scheme, sent.netloc, sent.path), location
    query = parse_qs(came.query)
    assert {k: v for k, v in query.items() if k != "connect_code"} == parse_qs(sent.query), location
    (code,) = query["connect_code"]
    return code


def connect(stack, bb: Client, flavor: str, end_user_id: str, bitbucket_user: str) -> dict:
    """An end user connects through a connect session, and the product confirms it for that end user (what its
    return_to page does for the user signed in there). Returns the connection."""
    session = bb.connect_session(end_user_id, return_to=f"{ORIGIN}/connected", provider=PROVIDERS[flavor])
    landed = follow_connect_url(session.connect_url, bitbucket_user)
    return bb.confirm_connection(end_user_id, connect_code(landed, f"{ORIGIN}/connected"))


def token_endpoint_calls(stack, flavor: str) -> int:
    stats = control(stack, flavor, "GET", "requests")
    endpoints = stats["flavors"].get(flavor, {}).get("endpoints", {})
    return sum(n for name, n in endpoints.items() if "oauth2" in name and ("token" in name))


def age_connection(stack, client_id: str, end_user_id: str, provider: str, seconds_left: int) -> None:
    """Make bitbridge's record say the access token expires in `seconds_left` (as time passing would)."""
    ddb = stack.aws("dynamodb")
    tables = ddb.list_tables()["TableNames"]
    service = next(t for t in tables if "ServiceTable" in t)
    accounts = next(t for t in tables if "AccountsTable" in t)
    link = ddb.get_item(
        TableName=service, Key={"pk": {"S": f"CLIENT#{client_id}"}, "sk": {"S": f"ENDUSER#{end_user_id}"}}
    )["Item"]
    ddb.update_item(
        TableName=accounts,
        Key={"pk": {"S": f"USER#{link['user_id']['S']}"}, "sk": {"S": f"CONN#{provider}"}},
        UpdateExpression="SET expires_at = :e",
        ExpressionAttributeValues={":e": {"N": str(int(time.time()) + seconds_left)}},
    )


def wait_for_event(stack, detail_type: str, match: dict[str, Any], timeout: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        for event in stack.events(0)[0]:
            detail = event.get("detail", {})
            if event.get("detail-type") == detail_type and all(detail.get(k) == v for k, v in match.items()):
                return dict(event)
        if time.monotonic() > deadline:
            raise AssertionError(f"no {detail_type} event matching {match}")
        time.sleep(0.2)
