"""Git data is one of an import's optional parts (`imports.options`), on by default: `exclude` leaves it out,
`include` keeps it; a name that is no part is a 400 that names the parts there are."""

from __future__ import annotations

import pytest

from bitbridge.imports import kickoff
from bitbridge.imports.jobs import ImportRequestError

BODY = {"provider": "bitbucket-cloud", "repositories": ["acme/web-app"]}


def test_git_data_is_on_unless_left_out():
    assert kickoff.parts(BODY)["git"] is True
    assert kickoff.parts(BODY | {"exclude": ["git"]})["git"] is False
    assert kickoff.parts(BODY | {"exclude": []})["git"] is True
    assert kickoff.parts(BODY | {"include": ["git"]})["git"] is True
    assert kickoff.parts(BODY | {"include": ["comments"]})["git"] is True  # naming another part keeps the default


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ({"include": ["git"], "exclude": ["git"]}, "both in `include` and in `exclude`"),
        ({"exclude": "git"}, "must be a list"),
        ({"exclude": ["git", 3]}, "must be a list"),
        ({"include": ["wiki"]}, r"'git'.*\(not 'wiki'\)"),
    ],
)
def test_a_request_naming_parts_wrongly_is_refused_whole(extra, says):
    with pytest.raises(ImportRequestError, match=says):
        kickoff.parse_request(BODY | extra)
