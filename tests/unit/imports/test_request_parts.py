"""An import copies every optional part (git data) unless the request leaves it out: `exclude` names what to
leave out, `include` what to take; anything else is a 400 that names the parts there are."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bitbridge.imports import kickoff
from bitbridge.imports.jobs import ImportRequestError

BODY = {"provider": "bitbucket-cloud", "repositories": ["acme/web-app"]}


def test_git_data_is_on_unless_left_out():
    assert kickoff.parts(BODY) == {"git": True}
    assert kickoff.parts(BODY | {"exclude": ["git"]}) == {"git": False}
    assert kickoff.parts(BODY | {"exclude": []}) == {"git": True}
    assert kickoff.parts(BODY | {"include": ["git"]}) == {"git": True}
    assert kickoff.parts(BODY | {"include": []}) == {"git": False}


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ({"include": ["git"], "exclude": ["git"]}, "not both"),
        ({"exclude": "git"}, "must be a list"),
        ({"exclude": ["git", 3]}, "must be a list"),
        ({"include": ["wiki"]}, r"git \(not wiki\)"),
    ],
)
def test_a_request_naming_parts_wrongly_is_refused_whole(extra, says):
    with pytest.raises(ImportRequestError, match=says):
        kickoff.parse_request(BODY | extra)


@given(st.dictionaries(st.sampled_from(["include", "exclude"]), st.lists(st.text(max_size=8), max_size=3)))
def test_any_include_or_exclude_is_parts_or_a_refusal(extra):
    try:
        wanted = kickoff.parts(BODY | extra)
    except ImportRequestError as exc:
        assert exc.code == "invalid_request"
    else:
        assert set(wanted) == set(kickoff.OPTIONAL_PARTS)
