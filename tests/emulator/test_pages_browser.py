"""The emulator's pages in headless Chromium (Debian's) at 1440 and 375 px: nothing wider than the screen, the
way back visible, the consent form usable. Screenshots are written under the pytest temp directory (printed)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.browser import CHROMIUM_FLAGS, chromium

from .conftest import CALLBACK, control, register_cloud_client, register_dc_client

pytestmark = pytest.mark.browser

WIDTHS = (1440, 375)
LONG = "a-rather-long-repository-name-without-any-spaces-" * 3


@pytest.fixture(scope="module")
def browser() -> Iterator:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


def _pages(emu) -> dict[str, str]:
    register_cloud_client(emu)
    register_dc_client(emu)
    repo = emu.backend.add_repository("cloud", "acme", "long", description="Described " * 30)
    repo.name = LONG
    emu.backend.push(repo, "feature/" + LONG, "alice")
    return {
        "cloud-repository": f"{emu.cloud_url}/acme/web-app",
        "cloud-repository-long": f"{emu.cloud_url}/acme/long",
        "dc-repository": f"{emu.dc_url}/projects/PLAT/repos/core/browse",
        "dc-personal-repository": f"{emu.dc_url}/users/alice/repos/dotfiles/browse",
        "cloud-consent": f"{emu.cloud_url}/site/oauth2/authorize?client_id=cloud-client&response_type=code&state=s",
        "dc-consent": f"{emu.dc_url}/rest/oauth2/latest/authorize?client_id=dc-client&response_type=code"
        f"&redirect_uri={CALLBACK.format('bitbucket-dc')}&scope=REPO_READ&state=s",
        "cloud-error": f"{emu.cloud_url}/site/oauth2/authorize?client_id=unknown&response_type=code",
        "repository-not-found": f"{emu.cloud_url}/acme/missing",
    }


def test_pages_fit_both_widths_and_lead_back(emu, browser, tmp_path_factory):
    screens: Path = tmp_path_factory.mktemp("emulator-pages")
    context = browser.new_context(extra_http_headers={"Referer": "http://127.0.0.1:9/console"})
    page = context.new_page()
    for name, url in _pages(emu).items():
        page.goto(url)
        for width in WIDTHS:
            page.set_viewport_size({"width": width, "height": 900})
            page.wait_for_timeout(100)
            overflow = page.evaluate("document.documentElement.scrollWidth")
            assert overflow <= width, f"{name} is {overflow} px wide at {width}"
            if "consent" in name:
                assert page.get_by_role("button", name="Grant access").is_visible()
                assert page.get_by_role("button", name="Deny").is_visible()
            else:
                back = page.locator("a.back")
                assert back.is_visible() and back.get_attribute("href") == "http://127.0.0.1:9/console"
            page.screenshot(path=str(screens / f"{name}-{width}.png"), full_page=True)
    # The consent form still works in a browser: Grant sends the person back to the app with a code (the "app"
    # here is a page the emulator serves, so the browser lands somewhere real).
    app = f"{emu.cloud_url}/acme/web-app"
    client = {"flavor": "cloud", "client_id": "browser-app", "client_secret": "s", "redirect_uri": app}
    assert control(emu, "POST", "oauth/clients", json=client).status_code == 201
    context.close()
    context = browser.new_context()  # a plain one: the Referer set above is for GETs only
    page = context.new_page()
    page.goto(f"{emu.cloud_url}/site/oauth2/authorize?client_id=browser-app&response_type=code&state=s1")
    page.select_option("select[name=user]", "bob")
    page.get_by_role("button", name="Grant access").click()
    page.wait_for_url(app + "?code=*")
    context.close()
    assert control(emu, "GET", "rate-limits").json()["limits"] == []  # pages spend no allowance
    print(f"\nemulator page screenshots: {screens}")
