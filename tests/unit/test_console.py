"""The console's pure pieces: the cross-site check every session-authenticated change passes, the
embedded boot data that must never close its <script> block, the hashed asset names, and the bare pages
(errors, verification result) with their viewport, hashed style and way back."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator

import pytest

from bitbridge import console, edge, signin_page
from bitbridge.config import settings
from bitbridge.edge import cross_site_refusal
from bitbridge.errors import NotSignedIn, Problem
from bitbridge.store.providers import ProviderRecord

OWN = "https://api.example.com"


def event(method: str, **headers: str) -> dict:
    return {"requestContext": {"http": {"method": method}}, "headers": headers}


@pytest.mark.parametrize(
    ("method", "headers", "refused"),
    [
        ("GET", {"origin": "https://evil.example"}, False),  # reads change nothing
        ("POST", {"origin": OWN, "content-type": "application/json"}, False),
        ("POST", {"origin": "https://app.example.com", "content-type": "application/json; charset=utf-8"}, False),
        ("DELETE", {"origin": "https://evil.example", "content-type": "application/json"}, True),
        ("POST", {"origin": "https://sub.api.example.com", "content-type": "application/json"}, True),  # same site
        ("POST", {"origin": "null", "content-type": "application/json"}, True),
        ("POST", {"origin": OWN, "content-type": "text/plain"}, True),  # a form or no-cors fetch
        ("POST", {"origin": OWN}, True),
        ("POST", {"sec-fetch-site": "same-site", "content-type": "application/json"}, True),
        ("POST", {"sec-fetch-site": "same-origin", "content-type": "application/json"}, False),
        ("POST", {"content-type": "application/json"}, False),  # not a browser (curl, the CLI)
    ],
)
def test_cross_site_refusal(method, headers, refused):
    reason = cross_site_refusal(event(method, **headers), OWN, ("https://app.example.com",))
    assert (reason is not None) == refused, reason


def test_boot_data_cannot_close_its_script_block():
    name = "</script><script>alert(1)</script><!--"
    page = console.render_console({"user": {"display_name": name}, "repositories": [name]})
    block = page.split('<script type="application/json" id="boot">')[1].split("</script>")[0]
    assert "<" not in block and json.loads(block)["user"]["display_name"] == name
    assert page.count("</script>") == 2  # the module's and the data block's own, nothing injected


def test_assets_have_content_hashed_names_and_the_sign_in_page_escapes_labels():
    js = console.hashed_name("console.js")
    asset = console.find_asset(js)
    assert asset is not None and asset.content_type.startswith("text/javascript")
    assert js.split(".")[1] in asset.etag
    assert console.find_asset("console.js") is None  # only hashed names are served
    acme = ProviderRecord("x", label="<b>Acme</b>", sign_in=True, imports=True)
    page = console.render_sign_in(signin_page.sign_in_buttons([acme], "/"))
    assert "&lt;b&gt;Acme&lt;/b&gt;" in page and "return_to=%2F" in page
    assert "<script" not in page and "style=" not in page


def test_one_buttons_component_for_sign_in_and_connect_pages():
    on = ProviderRecord("acme dc", label="Acme & Co", sign_in=True, imports=True)
    off = ProviderRecord("cloud", label="Cloud", sign_in=False, imports=False)
    sign_in = signin_page.sign_in_buttons([on, off], "https://app.example/after?x=1&y=2")
    target = "/auth/acme%20dc/authorize?return_to=https%3A%2F%2Fapp.example%2Fafter%3Fx%3D1%26y%3D2"
    assert sign_in == f'<a class="button" href="{target}">Sign in with Acme &amp; Co</a>'
    connect = signin_page.connect_buttons([on, off], "tok/en")
    assert (
        connect
        == '<a class="button" href="/auth/acme%20dc/authorize?connect_session=tok%2Fen">Connect Acme &amp; Co</a>'
    )
    assert "bitbridge providers add" in signin_page.sign_in_buttons([off], None)
    assert signin_page.connect_buttons([off], "t") == "<p>No Bitbucket provider is configured yet.</p>"


def test_a_bare_page_has_a_viewport_its_style_allowed_by_hash_and_escapes_what_it_shows():
    answer = edge.page(400, "<Oops>", "a <b>message</b>", back=("https://app.example.com/b?x=1&y='", "Back"))
    body = answer["body"]
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in body
    style = body.split("<style>")[1].split("</style>")[0]
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    policy = answer["headers"]["Content-Security-Policy"]
    assert f"style-src 'sha256-{digest}';" in policy  # the page's own style, and no other
    assert "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy and "script-src" not in policy
    assert "&lt;Oops&gt;" in body and "<b>" not in body and "a &lt;b&gt;message&lt;/b&gt;" in body
    assert "<a href='https://app.example.com/b?x=1&amp;y=&#x27;'>Back</a>" in body


@pytest.fixture
def allowed_app(monkeypatch) -> Iterator[None]:
    monkeypatch.setenv("BITBRIDGE_ALLOWED_RETURN_TO_ORIGINS", "https://app.example.com")
    settings.cache_clear()
    yield
    settings.cache_clear()


def _back_link(answer: dict) -> str:
    return str(answer["body"].split("class='back'>")[1].split("</p>")[0])


@pytest.mark.parametrize(
    ("params", "attempt_return_to", "link"),
    [
        # The attempt is known (a connect, a verification, a product's connect link): back where it began.
        ({}, "/#connections", "<a href='/#connections'>Back to bitbridge</a>"),
        ({}, "https://app.example.com/done", "<a href='https://app.example.com/done'>Back to app.example.com</a>"),
        # Refused at authorize: a safe return_to of a connect or verification, else sign-in.
        ({"purpose": "verify", "return_to": "/#admin"}, None, "<a href='/#admin'>Back to bitbridge</a>"),
        ({"purpose": "connect", "return_to": "https://evil.example/"}, None, "<a href='/'>Back to bitbridge</a>"),
        ({"return_to": "/#imports"}, None, "<a href='/login?return_to=%2F%23imports'>Back to sign-in</a>"),
        ({"return_to": "//evil.example"}, None, "<a href='/login'>Back to sign-in</a>"),
        ({}, None, "<a href='/login'>Back to sign-in</a>"),
    ],
)
def test_an_error_page_links_back_to_where_the_flow_began(allowed_app, params, attempt_return_to, link):
    problem = Problem("Access was denied.", code="access_denied", title="Not connected")
    problem.return_to = attempt_return_to
    answer = edge.error_page(problem, {"queryStringParameters": params})
    assert answer["statusCode"] == 403 and "<h1>Not connected</h1>" in answer["body"]
    assert _back_link(answer) == link


def test_not_signed_in_always_links_to_sign_in_whatever_the_person_came_for(allowed_app):
    # A connect or a verification without a session: signing in is what to do next, not going "back".
    for params in ({"purpose": "connect"}, {"purpose": "verify", "return_to": "/#admin"}):
        answer = edge.error_page(NotSignedIn(), {"queryStringParameters": params})
        assert answer["statusCode"] == 401 and "/login" in _back_link(answer) and "Back to sign-in" in answer["body"]
