"""Issue 23 in a real browser (headless Chromium, Playwright) on the local stack's plain-HTTP loopback, which
Chromium treats as a secure origin (it keeps Secure and `__Host-` cookies from http://127.0.0.1):

- (9) the session cookie is `__Host-bitbridge_session`: Secure, HttpOnly, Path=/, host-only; a page on the
  same host at another port planting `bitbridge_session=<bob's session>` (what made alice's console show
  Bob) changes nothing any more;
- (10) no page of bitbridge's renders inside another site's frame: `/login`, a connect link's page, an
  error page and the console, each with `frame-ancestors 'none'` and `X-Frame-Options: DENY`;
- (1) a connect link in a real browser: the page names the product and the end user, Continue (a form)
  leads to Bitbucket, and the browser comes back to the product with a `connect_code` and no session.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from bitbridge.client import Client
from tests.e2e.browser import CHROMIUM_FLAGS, chromium
from tests.e2e.service_support import add_client, new_bitbucket_user
from tests.e2e.support import SESSION, session_cookie, sign_in

pytestmark = pytest.mark.browser

CLOUD_LABEL = "Bitbucket Cloud (emulator)"


class OtherSite:
    """Another site on 127.0.0.1 (another port: same host, other origin): answers each path with the page
    and Set-Cookie headers a test gives it, and records what it was asked for."""

    def __init__(self) -> None:
        self.pages: dict[str, tuple[str, list[str]]] = {}
        self.asked: list[str] = []
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                site.asked.append(self.path)
                body, cookies = site.pages.get(urlsplit(self.path).path, ("<p>product page</p>", []))
                self.send_response(200)
                for cookie in cookies:
                    self.send_header("Set-Cookie", cookie)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def browser() -> Iterator:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


@pytest.fixture
def other_site() -> Iterator[OtherSite]:
    site = OtherSite()
    yield site
    site.server.shutdown()


def _sign_in(page, stack, person: str) -> None:
    page.goto(f"{stack.api}/login")
    page.get_by_role("link", name=f"Sign in with {CLOUD_LABEL}").click()
    page.wait_for_selector("text=Grant access")
    page.select_option("select[name=user]", person)
    page.get_by_role("button", name="Grant access").click()
    page.wait_for_url(f"{stack.api}/")


def _who(page, stack) -> str:
    return str(page.request.get(f"{stack.api}/api/me").json()["user"]["display_name"])


def test_a_session_planted_from_another_port_does_not_change_who_is_signed_in(stack, browser, other_site):
    bobs_session = session_cookie(stack, sign_in(stack, "cloud", "bob"))
    context = browser.new_context()
    page = context.new_page()
    try:
        _sign_in(page, stack, "alice")
        assert _who(page, stack) == "Alice Admin"
        # The attack that made alice's console show Bob: a page on the same host, another port.
        other_site.pages["/plant"] = ("<p>hi</p>", [f"bitbridge_session={bobs_session}; Path=/"])
        page.goto(f"{other_site.origin}/plant")
        assert any(c["name"] == "bitbridge_session" for c in context.cookies())  # the browser took it...
        page.goto(f"{stack.api}/")
        assert _who(page, stack) == "Alice Admin"  # ...and bitbridge does not read it
        (cookie,) = [c for c in context.cookies() if c["name"] == SESSION]
        assert SESSION == "__Host-bitbridge_session"
        assert cookie["secure"] and cookie["httpOnly"] and cookie["path"] == "/" and cookie["sameSite"] == "Lax"
        assert cookie["domain"] == "127.0.0.1"  # host-only: no Domain attribute
        # The prefixed name only goes in Secure, with Path=/ and no Domain; the browser refuses it otherwise.
        other_site.pages["/plant2"] = (
            "<p>hi</p>",
            [f"{SESSION}={bobs_session}; Path=/", f"{SESSION}={bobs_session}; Path=/api; Secure"],
        )
        page.goto(f"{other_site.origin}/plant2")
        assert [c["value"] for c in context.cookies() if c["name"] == SESSION] == [cookie["value"]]
        assert _who(page, stack) == "Alice Admin"
    finally:
        context.close()


def test_no_bitbridge_page_renders_inside_another_sites_frame(stack, browser, other_site):
    _, key = add_client(stack, origin=other_site.origin)
    connect_url = (
        Client(stack.api, key).connect_session("framed-user", return_to=f"{other_site.origin}/back").connect_url
    )
    targets = {
        "login": f"{stack.api}/login",
        "connect page": connect_url,
        "error page": f"{stack.api}/auth/no-such-provider/authorize",
        "console": f"{stack.api}/",
    }
    frames = "".join(
        f'<iframe name="{name}" src="{url}" width="400" height="300"></iframe>' for name, url in targets.items()
    )
    other_site.pages["/frames"] = (f"<h1>other site</h1>{frames}", [])
    context = browser.new_context()
    page = context.new_page()
    answers: dict[str, dict[str, str]] = {}
    page.on("response", lambda r: answers.__setitem__(r.url, r.headers) if r.url in targets.values() else None)
    try:
        page.goto(f"{other_site.origin}/frames")
        page.wait_for_timeout(1500)
        for name, url in targets.items():
            frame = page.frame(name=name)
            assert frame is not None, name
            text = frame.evaluate("() => document.body ? document.body.innerText : ''") if frame.url == url else ""
            assert "bitbridge" not in text and "Sign in" not in text and "asks to connect" not in text, (name, text)
            headers = answers[url]
            assert "frame-ancestors 'none'" in headers["content-security-policy"], name
            assert headers["x-frame-options"] == "DENY", name
    finally:
        context.close()


def test_a_connect_link_in_a_browser_names_who_asks_and_comes_back_with_a_code_and_no_session(
    stack, browser, other_site
):
    _, key = add_client(stack, origin=other_site.origin)
    person = new_bitbucket_user(stack)
    session = Client(stack.api, key).connect_session(
        "user-7", return_to=f"{other_site.origin}/connected", provider="bitbucket-cloud"
    )
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(session.connect_url)
        assert "asks to connect your Bitbucket account to its user user-7" in page.inner_text("main")
        page.get_by_role("button", name=f"Continue to {CLOUD_LABEL}").click()
        page.wait_for_selector("text=Grant access")
        page.select_option("select[name=user]", person)
        page.get_by_role("button", name="Grant access").click()
        page.wait_for_url(f"{other_site.origin}/connected?*")
        assert parse_qs(urlsplit(page.url).query)["connect_code"][0]
        assert not [c for c in context.cookies() if "bitbridge_session" in c["name"]]
    finally:
        context.close()
