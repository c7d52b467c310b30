"""Issue 23 (5): every API that takes a `cursor` - `GET /api/imports` and `GET /api/repos`, both flavors -
answers any cursor a client can send with its page (a cursor it was given) or one 400 `invalid_request`
saying what to do (anything else), never a 500 and never a call to DynamoDB or Bitbucket with what the
cursor says unchecked. The api function runs in-process on moto under its own IAM policy; Bitbucket is the
emulator, reached over HTTP with a token it granted."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from bitbridge import accounts, edge, providers, sessions
from bitbridge.bitbucket.identity import Identity
from bitbridge.store.imports import JobRecord, job_pk
from functions.api.app import handler as api_handler
from infra.emulator import Emulator
from infra.local.gateway import build_event
from infra.local.iam import acting_as
from infra.local.template import Route
from tests.integration.webhooks.support import Context

HOST = "127.0.0.1:3000"
USER = "cursor-user"
CALLBACK = f"http://{HOST}/auth/{{}}/callback"
INVALID = "Invalid cursor: send back the `next_cursor` of a previous answer, or none to start from the top."


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    emu = Emulator(cloud_port=0, dc_port=0, seed=True)
    emu.start()
    yield emu
    emu.stop()


def _granted(emu: Emulator, flavor: str, provider: str, user: str) -> dict[str, Any]:
    """A token the emulator granted `user` through its OAuth code flow (client registered first)."""
    base = emu.cloud_url if flavor == "cloud" else emu.dc_url
    control = f"{base}/_emulator"
    client = {
        "flavor": flavor,
        "client_id": f"id-{provider}",
        "client_secret": "s3cret",
        "redirect_uri": CALLBACK.format(provider),
    }
    requests.post(f"{control}/oauth/clients", json=client, timeout=10).raise_for_status()
    granted = requests.post(
        f"{control}/oauth/authorize",
        json={
            "flavor": flavor,
            "client_id": client["client_id"],
            "redirect_uri": client["redirect_uri"],
            "user": user,
            **({} if flavor == "cloud" else {"scope": "REPO_ADMIN"}),
            "state": "x",
        },
        timeout=10,
    ).json()
    path = "/site/oauth2/access_token" if flavor == "cloud" else "/rest/oauth2/latest/token"
    form = {"grant_type": "authorization_code", "code": granted["code"], "redirect_uri": client["redirect_uri"]}
    token = requests.post(f"{base}{path}", data=form, auth=(client["client_id"], "s3cret"), timeout=10)
    token.raise_for_status()
    return dict(token.json())


@pytest.fixture
def signed_in(aws, emulator) -> str:
    """A session cookie for a user connected to both emulated flavors, with imports to page through."""
    for flavor, provider in (("cloud", "cloud"), ("datacenter", "dc")):
        base = emulator.cloud_url if flavor == "cloud" else emulator.dc_url
        api = f"{base}/2.0" if flavor == "cloud" else f"{base}/rest/api/1.0"
        providers.add_provider(provider, flavor, f"id-{provider}", "s3cret", web_url=base, api_url=api)
        external = "{alice-uuid}" if flavor == "cloud" else "1"
        identity = Identity(external, "alice", "Alice", None)
        accounts.save_tokens_fresh(
            USER, provider, identity, _granted(emulator, flavor, provider, "alice"), CALLBACK.format(provider)
        )
    for n in range(7):
        JobRecord(
            job_pk(f"job-{n}"), job_id=f"job-{n}", owner_id=USER, created_at=f"2026-01-01T00:00:0{n}Z",
            provider_id="cloud", flavor="cloud", repository_id=f"{{r{n}}}", repository_full_name=f"acme/r{n}",
        ).save()  # fmt: skip
    return f"{edge.SESSION_COOKIE}={sessions.issue(USER)[0]}"


def get(cookie: str, path: str, **query: str) -> dict[str, Any]:
    request = Request(
        EnvironBuilder(
            method="GET",
            path=path,
            query_string=urlencode(query),
            base_url=f"http://{HOST}",
            headers={"Cookie": cookie},
        ).get_environ()
    )
    event = build_event(request, Route("GET", "/api/{proxy+}", "ApiFunction"), {"proxy": path[len("/api/") :]}, b"")
    with acting_as("ApiFunction"):
        answer = api_handler(event, Context())
    return {"status": answer["statusCode"], "body": json.loads(answer["body"])}


def _b64(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10,
)
_attr = st.one_of(_json, st.fixed_dictionaries({"S": _json}), st.fixed_dictionaries({"N": _json}))
# The shapes a crafted cursor takes: junk, JSON of any kind, and near misses of the real positions.
imports_cursors = st.one_of(
    st.text(max_size=60),
    st.builds(_b64, _json),
    st.builds(
        _b64,
        st.fixed_dictionaries(
            {"pk": _attr, "sk": _attr},
            optional={"owner_id": st.one_of(_attr, st.just({"S": "someone-else"})), "created_at": _attr, "x": _attr},
        ),
    ),
)
cloud_cursors = st.one_of(
    st.text(max_size=60),
    st.builds(_b64, _json),
    st.builds(_b64, st.fixed_dictionaries({}, optional={"ws": _json, "page": _json, "skip": _json})),
    st.builds(
        _b64, st.fixed_dictionaries({"ws": st.lists(st.text(max_size=5), max_size=2), "page": _json, "skip": _json})
    ),
)
dc_cursors = st.one_of(
    st.text(max_size=60),
    st.builds(_b64, _json),
    st.builds(
        _b64,
        st.fixed_dictionaries(
            {},
            optional={
                "phase": st.one_of(_json, st.sampled_from(["all", "personal"])),
                "start": _json,
                "skip": _json,
                "own": _json,
            },
        ),
    ),
)


def _answered_properly(answer: dict[str, Any]) -> None:
    assert answer["status"] != 500, answer
    if answer["status"] == 400:
        assert answer["body"]["error"] == {"code": "invalid_request", "message": INVALID}, answer


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cursor=imports_cursors)
def test_any_imports_cursor_is_a_page_or_a_400(signed_in, cursor):
    answer = get(signed_in, "/api/imports", cursor=cursor, limit="3")
    _answered_properly(answer)
    assert answer["status"] in (200, 400), answer


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cursor=cloud_cursors)
def test_any_cloud_repository_cursor_is_a_page_or_a_400(signed_in, cursor):
    _answered_properly(get(signed_in, "/api/repos", provider="cloud", cursor=cursor, limit="2"))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cursor=dc_cursors)
def test_any_datacenter_repository_cursor_is_a_page_or_a_400(signed_in, cursor):
    _answered_properly(get(signed_in, "/api/repos", provider="dc", cursor=cursor, limit="2"))


def test_the_cursors_it_gives_page_through_everything_once(signed_in):
    """What a broken check would refuse: every cursor bitbridge itself handed out works, to the end."""
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(10):
        page = get(signed_in, "/api/imports", limit="3", **({"cursor": cursor} if cursor else {}))
        assert page["status"] == 200, page
        seen += [job["id"] for job in page["body"]["imports"]]
        cursor = page["body"]["next_cursor"]
        if not cursor:
            break
    assert seen == [f"job-{n}" for n in reversed(range(7))]
    for provider in ("cloud", "dc"):
        names: list[str] = []
        cursor = None
        for _ in range(20):
            page = get(signed_in, "/api/repos", provider=provider, limit="2", **({"cursor": cursor} if cursor else {}))
            assert page["status"] == 200, page
            names += [r["full_name"] for r in page["body"]["repositories"]]
            cursor = page["body"]["next_cursor"]
            if not cursor:
                break
        assert len(names) == len(set(names)) >= 3, names


def test_a_cursor_for_someone_elses_imports_is_refused(signed_in):
    JobRecord(job_pk("other"), job_id="other", owner_id="other-user", provider_id="cloud", flavor="cloud",
              repository_id="{o}", repository_full_name="acme/o").save()  # fmt: skip
    theirs = {"pk": {"S": "JOB#other"}, "sk": {"S": "JOB"}, "owner_id": {"S": "other-user"}}
    theirs["created_at"] = {"S": "2026-01-01T00:00:00Z"}
    answer = get(signed_in, "/api/imports", cursor=_b64(theirs))
    assert answer["status"] == 400 and answer["body"]["error"]["message"] == INVALID
