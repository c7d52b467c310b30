"""The emulator's HTML: repository pages at every repository's links.html address, consent and error pages.
Each is a whole page (viewport, inline CSS, no external assets), has a way back, and escapes every Bitbucket
string."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infra.emulator import Emulator
from infra.emulator.models import CLOUD, DC

from .conftest import CALLBACK, bearer, cloud_login, control, dc_login

# Every tag the emulator's pages use; anything else in a page came from data that was not escaped.
PAGE_TAGS = {
    "html", "head", "meta", "title", "style", "body", "header", "span", "main", "div", "p", "h1", "h2", "dl",
    "dt", "dd", "pre", "table", "thead", "tbody", "tr", "th", "td", "code", "a", "ul", "li", "strong", "form",
    "input", "label", "select", "option", "button",
}  # fmt: skip


class Page(HTMLParser):
    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.chunks: list[str] = []
        self.feed(html)

    @property
    def text(self) -> str:
        return "".join(self.chunks)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.chunks.append(data)

    def links(self) -> list[str]:
        return [a.get("href") or "" for tag, a in self.tags if tag == "a"]


def assert_whole_page(resp: requests.Response) -> Page:
    assert resp.headers["Content-Type"].startswith("text/html")
    page = Page(resp.text)
    tags = {tag for tag, _ in page.tags}
    assert tags <= PAGE_TAGS, tags - PAGE_TAGS
    assert ("meta", {"name": "viewport", "content": "width=device-width, initial-scale=1"}) in page.tags
    assert "style" in tags and "link" not in tags and "script" not in tags and "img" not in tags
    assert "url(" not in resp.text  # no stylesheet or font fetched from anywhere
    assert any(a.get("class") == "back" for tag, a in page.tags if tag == "a"), "no way back"
    return page


def html_links(emu: Emulator, flavor: str) -> list[tuple[str, str]]:
    """(repository, links.html) for every repository, as the REST API renders it for alice (DC: links.self)."""
    if flavor == CLOUD:
        token = cloud_login(emu)
        out = []
        for ws in ("acme", "globex"):
            body = requests.get(
                f"{emu.cloud_url}/2.0/repositories/{ws}", params={"pagelen": 100}, headers=bearer(token), timeout=10
            ).json()
            out += [(r["full_name"], r["links"]["html"]["href"]) for r in body["values"]]
        return out
    token = dc_login(emu)
    body = requests.get(
        f"{emu.dc_url}/rest/api/1.0/repos", params={"limit": 100}, headers=bearer(token), timeout=10
    ).json()
    return [(f"{r['project']['key']}/{r['slug']}", r["links"]["self"][0]["href"]) for r in body["values"]]


@pytest.mark.parametrize("flavor", [CLOUD, DC])
def test_every_open_link_reaches_its_repository_page(emu, flavor):
    links = html_links(emu, flavor)
    assert len(links) == (5 if flavor == CLOUD else 6)  # personal DC repositories included
    for full_name, url in links:
        resp = requests.get(url, timeout=10)
        assert resp.status_code == 200, (url, resp.text[:200])
        page = assert_whole_page(resp)
        owner, slug = full_name.split("/")
        repo = emu.backend.get_repo(flavor, owner, slug)
        assert repo.name in page.text and repo.default_branch in page.text
        clone = f"{emu.cloud_url}/{repo.full_name}.git" if flavor == CLOUD else f"/scm/{owner.lower()}/{slug}.git"
        assert clone in resp.text


def test_repository_page_shows_what_the_repository_holds(emu):
    resp = requests.get(f"{emu.cloud_url}/acme/web-app", timeout=10)
    text = Page(resp.text).text
    assert "Acme" in text and "Private" in text
    assert "120" in text and "30" in text and "15" in text  # branches, tags, open pull requests
    assert "and 110 more" in text  # ten most recent branches listed


def test_unknown_repositories_answer_a_404_page_and_unknown_api_paths_stay_json(emu):
    for url in (f"{emu.cloud_url}/acme/nope", f"{emu.dc_url}/projects/NOPE/repos/x/browse"):
        resp = requests.get(url, timeout=10)
        assert resp.status_code == 404
        assert "Repository not found" in assert_whole_page(resp).text
    api = requests.get(f"{emu.cloud_url}/2.0/nothing-here", timeout=10)
    assert api.status_code == 404 and api.json()["type"] == "error"


def test_a_way_back_to_the_page_that_linked_here(emu):
    console = "http://127.0.0.1:3000/console#repos"
    page = Page(requests.get(f"{emu.cloud_url}/acme/web-app", headers={"Referer": console}, timeout=10).text)
    assert console in page.links()
    # A Referer that is no web address is never turned into a link.
    page = Page(requests.get(f"{emu.cloud_url}/acme/web-app", headers={"Referer": "javascript:x()"}, timeout=10).text)
    assert page.links() == ["javascript:history.back()"]


MARKUP = st.text(alphabet=st.sampled_from(list("<>&\"'/=ab ;x")), min_size=1, max_size=30)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=MARKUP, description=MARKUP, branch=MARKUP)
def test_repository_strings_are_escaped(emu, name, description, branch):
    for flavor, owner in ((CLOUD, "acme"), (DC, "PLAT")):
        slug = "marked"
        try:
            repo = emu.backend.get_repo(flavor, owner, slug)
        except Exception:
            repo = emu.backend.add_repository(flavor, owner, slug)
        repo.name, repo.description = name, description
        emu.backend.push(repo, "x" + branch, "alice")
        url = f"{emu.cloud_url}/acme/marked" if flavor == CLOUD else f"{emu.dc_url}/projects/PLAT/repos/marked/browse"
        resp = requests.get(url, timeout=10)
        page = assert_whole_page(resp)
        text = page.text
        assert name in text and description in text and "x" + branch in text


def test_consent_page_is_styled_and_escapes_the_client_name(emu):
    body = {
        "flavor": "cloud",
        "client_id": "markup-app",
        "client_secret": "s",
        "redirect_uri": CALLBACK.format("bitbucket"),
        "name": '<img src=x onerror="alert(1)"> App',
    }
    assert control(emu, "POST", "oauth/clients", json=body).status_code == 201
    resp = requests.get(
        f"{emu.cloud_url}/site/oauth2/authorize",
        params={"client_id": "markup-app", "response_type": "code", "state": '"><b>'},
        timeout=10,
    )
    assert resp.status_code == 200
    page = Page(resp.text)
    tags = {tag for tag, _ in page.tags}
    assert tags <= PAGE_TAGS and "img" not in tags
    assert '<img src=x onerror="alert(1)"> App is requesting access' in page.text
    hidden = {a["name"]: a["value"] for tag, a in page.tags if tag == "input" and a.get("type") == "hidden"}
    assert hidden["state"] == '"><b>'
    assert ("meta", {"name": "viewport", "content": "width=device-width, initial-scale=1"}) in page.tags


@pytest.mark.parametrize("flavor", [CLOUD, DC])
def test_error_pages_are_whole_pages_with_a_way_back(emu, flavor):
    referer = "http://127.0.0.1:3000/?q=<script>"
    if flavor == CLOUD:
        url, params = f"{emu.cloud_url}/site/oauth2/authorize", {"client_id": "nobody", "response_type": "code"}
    else:
        url, params = f"{emu.dc_url}/rest/oauth2/latest/authorize", {"client_id": "nobody", "response_type": "code"}
    resp = requests.get(url, params=params, headers={"Referer": referer}, timeout=10)
    assert resp.status_code == 400 and "Location" not in resp.headers
    page = assert_whole_page(resp)
    assert referer in page.links()
    assert "<script>" not in resp.text
