"""The console's pure pieces: the cross-site check every session-authenticated change passes, the
embedded boot data that must never close its <script> block, and the hashed asset names."""

from __future__ import annotations

import json

import pytest

from bitbridge import console, signin_page
from bitbridge.edge import cross_site_refusal
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
