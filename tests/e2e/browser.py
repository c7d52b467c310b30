"""Browsers for end-to-end tests: a small scripted one for sign-in (real HTTP, manual redirects, a cookie
jar that honours Path and treats loopback as a secure origin, as browsers do), and the headless Chromium
(Debian's package, installed with apt-get when missing) that Playwright drives."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from html.parser import HTMLParser
from http.cookies import SimpleCookie
from urllib.parse import urljoin, urlsplit

import pytest
import requests


@dataclass
class Cookie:
    value: str
    path: str


@dataclass
class Browser:
    jar: dict[tuple[str, str], Cookie] = field(default_factory=dict)  # (host, name) -> cookie
    history: list[requests.Response] = field(default_factory=list)

    def _cookie_header(self, url: str) -> str:
        parts = urlsplit(url)
        return "; ".join(
            f"{name}={c.value}"
            for (host, name), c in self.jar.items()
            if host == parts.hostname and parts.path.startswith(c.path)
        )

    def _store(self, url: str, response: requests.Response) -> None:
        host = urlsplit(url).hostname or ""
        for header in response.raw.headers.getlist("Set-Cookie"):
            parsed: SimpleCookie = SimpleCookie()
            parsed.load(header)
            for name, morsel in parsed.items():
                if morsel["max-age"] == "0" or morsel.value == "":
                    self.jar.pop((host, name), None)
                else:
                    self.jar[(host, name)] = Cookie(morsel.value, morsel["path"] or "/")

    def request(self, method: str, url: str, follow: bool = True, max_hops: int = 10, **kwargs) -> requests.Response:
        for _ in range(max_hops):
            headers = dict(kwargs.pop("headers", {}) or {})
            cookie = self._cookie_header(url)
            if cookie:
                headers["Cookie"] = cookie
            response = requests.request(method, url, headers=headers, allow_redirects=False, timeout=15, **kwargs)
            self._store(url, response)
            self.history.append(response)
            if not (follow and response.is_redirect):
                return response
            url, method, kwargs = urljoin(url, response.headers["Location"]), "GET", {}
        raise AssertionError("too many redirects")

    def get(self, url: str, **kwargs) -> requests.Response:
        return self.request("GET", url, **kwargs)

    def cookie(self, host: str, name: str) -> str | None:
        found = self.jar.get((host, name))
        return found.value if found else None


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.action = ""
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form":
            self.action = a.get("action") or ""
        elif tag == "input" and a.get("type") == "hidden" and a.get("name"):
            self.fields[a["name"]] = a.get("value") or ""


class _FormsParser(HTMLParser):
    """Every form on a page: its method, action, hidden fields and button text."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict] = []
        self._in_button = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form":
            self.forms.append({"method": (a.get("method") or "get").upper(), "action": a.get("action") or "",
                               "fields": {}, "button": ""})  # fmt: skip
        elif tag == "input" and self.forms and a.get("name"):
            self.forms[-1]["fields"][a["name"]] = a.get("value") or ""
        elif tag == "button" and self.forms:
            self._in_button = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "button":
            self._in_button = False

    def handle_data(self, data: str) -> None:
        if self._in_button:
            self.forms[-1]["button"] += data


def forms(page: requests.Response) -> list[dict]:
    parser = _FormsParser()
    parser.feed(page.text)
    return parser.forms


def submit(browser: Browser, page: requests.Response, button: str | None = None, **kwargs) -> requests.Response:
    """Press a form's button (the first form, or the one whose button reads `button`) as a browser does: the
    page's origin as `Origin`, the fields form-encoded, redirects followed."""
    found = [f for f in forms(page) if button is None or f["button"].strip() == button]
    assert found, f"no form{' with ' + repr(button) if button else ''} on {page.url}: {page.text[:300]}"
    form = found[0]
    parts = urlsplit(page.url)
    headers = {"Origin": f"{parts.scheme}://{parts.netloc}"}
    return browser.request(
        form["method"], urljoin(page.url, form["action"]), data=form["fields"], headers=headers, **kwargs
    )


def consent(browser: Browser, page: requests.Response, user: str, decision: str = "grant") -> requests.Response:
    """Answer an emulator consent page as a person would: pick the user, press Grant or Deny."""
    parser = _FormParser()
    parser.feed(page.text)
    assert parser.action, f"no consent form on {page.url}: {page.text[:300]}"
    data = {**parser.fields, "user": user, "decision": decision}
    return browser.request("POST", urljoin(page.url, parser.action), data=data, follow=False)


# ------------------------------------------------------------------ headless Chromium (Playwright)

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


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.fail("Chromium is missing and cannot be installed here: apt-get install chromium")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True, env=env, capture_output=True)
    return shutil.which("chromium") or pytest.fail("installing chromium did not provide a chromium binary")
