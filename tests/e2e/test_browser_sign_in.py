"""A person signs in with a real browser: headless Chromium (Debian's), driven by Playwright.

The test installs Chromium itself when the machine lacks it (Debian package `chromium`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.browser import CHROMIUM_FLAGS, chromium


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Iterator:
    from playwright.sync_api import sync_playwright

    executable = chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        context = browser.new_context()
        yield context.new_page()
        context.close()
        browser.close()


@pytest.mark.browser
@pytest.mark.parametrize(
    ("button", "provider"),
    [("Bitbucket Cloud (emulator)", "bitbucket-cloud"), ("Acme Data Center (emulator)", "acme-datacenter")],
)
def test_person_signs_in_through_the_consent_page(stack, page, button, provider):
    page.goto(f"{stack.api}/login")
    page.get_by_role("link", name=f"Sign in with {button}").click()
    # Now on the emulator's consent page, as on bitbucket.org or a Data Center.
    page.wait_for_selector("text=Grant access")
    page.select_option("select[name=user]", "alice")
    page.get_by_role("button", name="Grant access").click()
    page.wait_for_url(f"{stack.api}/")  # the console, not JSON
    page.wait_for_selector("#who")
    me = page.request.get(f"{stack.api}/api/me").json()
    assert me["user"]["display_name"] and provider in {c["provider"] for c in me["connections"]}
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies["__Host-bitbridge_session"]["httpOnly"] is True
    assert cookies["__Host-bitbridge_session"]["secure"] is True
