"""A person signs in with a real browser: headless Chromium (Debian's), driven by Playwright.

The test installs Chromium itself when the machine lacks it (Debian package `chromium`)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest

CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.fail("Chromium is missing and cannot be installed here: apt-get install chromium")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True, env=env, capture_output=True)
    return shutil.which("chromium") or pytest.fail("installing chromium did not provide a chromium binary")


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Iterator:
    from playwright.sync_api import sync_playwright

    executable = _chromium()
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
    page.wait_for_url(f"{stack.api}/api/me")
    body = page.locator("body").inner_text()
    assert '"display_name"' in body and provider in body
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies["bitbridge_session"]["httpOnly"] is True
    assert cookies["bitbridge_session"]["secure"] is True
