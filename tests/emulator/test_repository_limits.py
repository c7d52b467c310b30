"""Issue 23 (6): the emulator takes the repositories Bitbucket takes and no others. Documented (support.atlassian
.com, "What is a repository slug?"): slugs of ASCII letters, digits, `_`, `-`, `.`; Cloud's at most 62
characters, no `--`, no `-` first or last unless all dashes; Data Center's starting with a letter or digit,
with no documented length. No limit is documented for a name or a description on either flavor, so those are
taken at any length - which bitbridge must cope with (its listing cuts them)."""

from __future__ import annotations

import requests

from .conftest import bearer, cloud_login, control


def _add(emu, flavor: str, owner: str, slug: str, **more) -> requests.Response:
    return control(emu, "POST", f"{flavor}/repos", json={"owner": owner, "slug": slug, **more})


def test_cloud_slugs_are_at_most_62_documented_characters(emu):
    assert _add(emu, "cloud", "acme", "a" * 62).status_code == 201
    too_long = _add(emu, "cloud", "acme", "b" * 63)
    assert too_long.status_code == 400 and "62" in too_long.text
    for slug in ("has space", "ünïcode", "semi;colon", ""):
        assert _add(emu, "cloud", "acme", slug).status_code == 400, slug
    assert _add(emu, "cloud", "acme", "_dot.ted-name").status_code == 201


def test_cloud_slugs_keep_dashes_single_and_inside_unless_they_are_all_dashes(emu):
    for slug in ("a--b", "ends-", "-starts", "x" * 61 + "-"):
        refused = _add(emu, "cloud", "acme", slug)
        assert refused.status_code == 400 and "'--'" in refused.text, slug
    for slug in ("---", "a-b-c", ".dot", "a", "c" * 62):
        assert _add(emu, "cloud", "acme", slug).status_code == 201, slug


def test_datacenter_slugs_have_no_documented_length_but_start_with_a_letter_or_digit(emu):
    assert _add(emu, "datacenter", "PLAT", "c" * 300).status_code == 201
    assert _add(emu, "datacenter", "PLAT", "-dash-first").status_code == 400
    assert _add(emu, "datacenter", "PLAT", "a--b").status_code == 201


def test_a_description_of_any_length_is_taken_and_served_whole(emu):
    huge = "x" * 2_000_000
    assert _add(emu, "cloud", "acme", "huge", description=huge, permissions={"alice": "read"}).status_code == 201
    token = cloud_login(emu)
    got = requests.get(f"{emu.cloud_url}/2.0/repositories/acme/huge", headers=bearer(token), timeout=30)
    assert got.status_code == 200 and got.json()["description"] == huge
