"""The proxy's pure parts: which paths may reach Bitbucket, how pagination is rewritten (what is retried:
tests/unit/test_calls.py, with the proxy's patience)."""

from __future__ import annotations

from urllib.parse import unquote

import pytest

from bitbridge import edge
from bitbridge.service import proxy
from bitbridge.service.errors import ServiceRefused
from tests.service_paths import PATH_ESCAPES

CLOUD_API = "https://api.bitbucket.org/2.0"
DC_API = "https://bitbucket.acme.com/rest/api/1.0"


def test_there_are_at_least_thirty_escape_attempts():
    assert len(set(PATH_ESCAPES)) >= 30


@pytest.mark.parametrize("raw", PATH_ESCAPES)
def test_escape_attempts_are_refused_raw_and_decoded(raw):
    for form in {raw, unquote(raw)}:
        with pytest.raises(ServiceRefused) as refused:
            proxy.safe_path(form)
        assert edge.STATUS[refused.value.code] == 400
        assert refused.value.code == "path_not_allowed"


@pytest.mark.parametrize(
    "raw",
    [
        "repositories/acme/web-app/pullrequests",
        "repositories/acme/web-app/refs/branches/",
        "user",
        "projects/PLAT/repos/core/pull-requests",
        "repositories/%7B0b8a7c%7D/web-app",
        "repositories/acme/web-app/src/main/docs/site.md",
    ],
)
def test_ordinary_api_paths_pass_unchanged(raw):
    assert proxy.safe_path(raw) == raw
    assert proxy.target_url(CLOUD_API, raw) == f"{CLOUD_API}/{raw}"
    assert proxy.target_url(DC_API, raw).startswith(DC_API + "/")


@pytest.mark.parametrize("unsafe", ["../site/oauth2/access_token", "x/%2e%2e/%2e%2e/oauth", "..", "a/../../b"])
def test_target_url_refuses_what_resolves_outside_the_root_even_without_safe_path(unsafe):
    with pytest.raises(ServiceRefused):
        proxy.target_url(CLOUD_API, unsafe)
    # A host-looking segment stays a path below the root.
    assert proxy.target_url(CLOUD_API, "@evil.example").startswith(CLOUD_API + "/")


def test_pagination_links_come_back_through_the_proxy():
    body = b'{"values": [1], "next": "https://api.bitbucket.org/2.0/repositories/acme?page=2", "page": 1}'
    out = proxy.rewrite_pagination(body, "application/json", CLOUD_API, "https://bb.example/service/v1/proxy/c/u")
    assert b'"next": "https://bb.example/service/v1/proxy/c/u/repositories/acme?page=2"' in out
    foreign = b'{"next": "https://evil.example/2.0/x"}'
    assert proxy.rewrite_pagination(foreign, "application/json", CLOUD_API, "https://bb") == foreign
    assert proxy.rewrite_pagination(b"not json", "text/plain", CLOUD_API, "https://bb") == b"not json"
