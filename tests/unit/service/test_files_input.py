"""The files routes' input checks (bitbridge.service.files): generated paths, refs and repository names are
either refused with the documented 400 or passed on as something Bitbucket reads inside the repository."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bitbridge.edge import STATUS
from bitbridge.service.errors import ServiceRefused
from bitbridge.service.files import MAX_PATH, check_path, check_ref, check_repository

anything = st.text(max_size=300) | st.none() | st.integers()


@given(anything)
def test_a_path_is_refused_or_stays_inside_the_repository(value):
    try:
        path = check_path(value, required=False)
    except ServiceRefused as refused:
        assert refused.code == "path_not_allowed" and STATUS[refused.code] == 400
        return
    assert not path.startswith("/") and len(path) <= MAX_PATH
    assert all(segment not in ("", ".", "..") for segment in path.split("/")) or path == ""
    assert "\\" not in path and not any(ord(c) < 32 or ord(c) == 127 for c in path)


@pytest.mark.parametrize("bad", ["/etc/passwd", "../x", "a/../b", "a/./b", "a//b", "a\\b", "a\x00b", "a\nb"])
def test_escaping_or_odd_paths_are_refused(bad):
    with pytest.raises(ServiceRefused) as refused:
        check_path(bad, required=True)
    assert refused.value.code == "path_not_allowed"


def test_a_file_path_is_required_and_a_directory_may_be_the_root():
    with pytest.raises(ServiceRefused):
        check_path("", required=True)
    assert check_path("", required=False) == ""
    assert check_path("src/app/", required=False) == "src/app"
    assert check_path("dir with space/ünïcode.md", required=True) == "dir with space/ünïcode.md"


@given(anything)
def test_a_ref_is_refused_or_a_git_ref_name(value):
    try:
        ref = check_ref(value)
    except ServiceRefused as refused:
        assert refused.code == "invalid_request" and STATUS[refused.code] == 400
        return
    assert ".." not in ref and not ref.startswith(("-", "/")) and not any(c in ref for c in " ~^:?*[\\")


@pytest.mark.parametrize("good", ["main", "feature/x", "v1.0.1", "a" * 40, "release-2024.05"])
def test_branches_tags_and_commits_are_refs(good):
    assert check_ref(good) == good


@given(anything)
def test_a_repository_is_refused_or_owner_slash_slug(value):
    try:
        name = check_repository(value)
    except ServiceRefused as refused:
        assert refused.code == "invalid_request"
        return
    owner, slug = name.split("/")
    assert owner and slug and " " not in name
