"""Import depth as options: `include` / `exclude` parsed in one place (`imports.options`), checked before anything
starts, the same answer from POST /api/imports and the service API (both call `kickoff.parse_request` and
`kickoff.parts`)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bitbridge.bitbucket import review
from bitbridge.imports import jobs, kickoff, options

BASE = {"provider": "p", "repositories": ["a/b"]}


def refused(body: dict) -> jobs.ImportRequestError:
    with pytest.raises(jobs.ImportRequestError) as caught:
        kickoff.parse_request(body)
    assert caught.value.code == "invalid_request"
    return caught.value


def test_without_include_an_import_copies_what_it_did_before():
    assert options.parts(BASE) == {"comments": False, "activity": False, "commits": False, "git": True}
    assert kickoff.parse_request(BASE) == ("p", ["a/b"], False)


def test_include_turns_parts_on_and_exclude_leaves_them_out():
    everything = {"comments": True, "activity": True, "commits": True, "git": True}
    assert kickoff.parts(BASE | {"include": ["comments", "activity", "commits"]}) == everything
    assert kickoff.parts(BASE | {"include": ["commits"]}) == {
        "comments": False,
        "activity": False,
        "commits": True,
        "git": True,
    }
    assert kickoff.parts(BASE | {"include": ["comments", "commits"], "exclude": ["activity"]}) == {
        "comments": True,
        "activity": False,
        "commits": True,
        "git": True,
    }
    assert kickoff.parts(BASE | {"include": []}) == options.defaults()


def test_an_unknown_include_value_is_refused_naming_it_and_what_is_known():
    error = refused(BASE | {"include": ["comments", "reactions", "attachments"]})
    assert error.details["unknown"] == ["attachments", "reactions"] and error.details["option"] == "include"
    assert "'attachments', 'reactions'" in error.message
    assert "'comments', 'activity', 'commits'" in error.message


@pytest.mark.parametrize("value", [True, False, "yes", None, 1])
def test_the_old_comments_flag_is_refused_saying_what_replaced_it(value):
    error = refused(BASE | {"comments": value})
    assert error.details == {"option": "comments", "replaced_by": "include"}
    assert '"include": ["comments"]' in error.message and "replaced" in error.message


@pytest.mark.parametrize("include", ["comments", {"comments": True}, [1], [None], [["comments"]]])
def test_include_must_be_a_list_of_names(include):
    error = refused(BASE | {"include": include})
    assert error.details == {"option": "include"} and "must be a list of names" in error.message


def test_a_part_both_included_and_excluded_is_refused():
    error = refused(BASE | {"include": ["commits"], "exclude": ["commits", "activity"]})
    assert "'commits' is both in `include` and in `exclude`" in error.message


def test_every_option_turns_on_a_nested_entity_and_every_nested_entity_has_an_option():
    # git data is a step of its own (bitbridge.imports.gitdata), not an entity nested under pull requests
    assert set(review.OPTION_OF.values()) == set(options.PARTS) - {"git"}
    assert review.wanted_entities({"comments": True}) == {review.PULL_REQUEST_COMMENTS, review.ISSUE_COMMENTS}
    assert review.wanted_entities(options.defaults()) == set()


NAMES = st.lists(st.sampled_from([*options.PARTS, "reactions", "", "COMMENTS", "tasks"]), max_size=6)


@given(include=st.one_of(st.none(), NAMES), exclude=st.one_of(st.none(), NAMES))
def test_generated_requests_are_parsed_or_refused_as_a_whole(include, exclude):
    body = dict(BASE)
    if include is not None:
        body["include"] = include
    if exclude is not None:
        body["exclude"] = exclude
    unknown = sorted({n for n in (include or []) + (exclude or []) if n not in options.PARTS})
    both = set(include or []) & set(exclude or [])
    if unknown or both:
        error = refused(body)
        if unknown:
            assert error.details["unknown"] == unknown and all(repr(n) in error.message for n in unknown)
        else:
            assert repr(sorted(both)[0]) in error.message
        return
    wanted = kickoff.parts(body)
    assert kickoff.parse_request(body) == ("p", ["a/b"], False)
    for name, default in options.PARTS.items():
        assert wanted[name] is (name in (include or []) or (default and name not in (exclude or [])))


def test_docs_name_every_part_every_nested_entity_and_people():
    from tests.conftest import REPO_ROOT

    text = (REPO_ROOT / "docs" / "imports.md").read_text()
    review_depth = text.split("## Review depth", 1)[1].split("\n## ", 1)[0]
    for entity, option in review.OPTION_OF.items():
        row = next((line for line in review_depth.splitlines() if f"`{entity}/`" in line), "")
        assert row.startswith(f"| `{option}` |"), f"docs/imports.md lists no {entity}/ row under `{option}`"
    assert "`people.jsonl`" in review_depth and "Mentions" in review_depth
