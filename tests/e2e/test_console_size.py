"""Issue 23 (6), end to end: one repository's huge description (Bitbucket documents no limit on it, so the
emulator takes it) no longer takes the console down for everyone who can see it. `/` (which embeds the first
repository page) and `/api/repos` answer, small, with the text cut and marked; before, both were a 500 (an
answer over Lambda's 6 MB, which the local stack enforces as AWS does)."""

from __future__ import annotations

import json
import re
import secrets

import requests

from tests.e2e.support import SESSION, control, session_cookie, sign_in

HUGE = 7_000_000  # characters: the answer alone would be over 6 MB


def test_a_huge_description_is_cut_in_the_console_and_the_listing(stack):
    person = f"p{secrets.token_hex(4)}"
    repos = [{"slug": "huge", "description": "d" * HUGE}, {"slug": "small", "description": "short and sweet"}]
    spec = {
        "users": [{"name": person, "display_name": f"Person {person}"}],
        "cloud": {"workspaces": [{"slug": f"ws-{person}", "members": {person: "owner"}, "repositories": repos}]},
    }
    control(stack, "cloud", "POST", "seed", spec)
    session = requests.Session()
    session.cookies.set(SESSION, session_cookie(stack, sign_in(stack, "cloud", person)))

    console = session.get(f"{stack.api}/", timeout=60)
    assert console.status_code == 200, console.text[:300]
    assert len(console.content) < 200_000
    block = re.search(r'<script type="application/json" id="boot">(.*?)</script>', console.text, re.S)
    assert block, console.text[:500]
    boot = json.loads(block.group(1))
    shown = {r["slug"]: r for r in boot["repositories"]["repositories"]}
    assert shown["huge"]["description_truncated"] is True and len(shown["huge"]["description"]) <= 1000
    assert shown["huge"]["description"].endswith("…")
    assert shown["small"]["description"] == "short and sweet" and shown["small"]["description_truncated"] is False

    query = {"provider": "bitbucket-cloud", "workspace": f"ws-{person}"}
    listing = session.get(f"{stack.api}/api/repos", params=query, timeout=60)
    assert listing.status_code == 200, listing.text[:300]
    assert len(listing.content) < 100_000
    listed = {r["slug"]: r for r in listing.json()["repositories"]}
    assert set(listed) == {"huge", "small"} and listed["huge"]["description_truncated"] is True
