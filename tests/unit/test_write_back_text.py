"""What the typed actions share across flavors, proved on generated input: a long text split into ordered parts
within a flavor's limit, a status key mapped stably under a limit, the hidden marker found again."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bitbridge.bitbucket.actions import (
    ActionRefused,
    check_marker,
    mapped_key,
    part_header,
    part_of,
    split_text,
    utf16_length,
)
from bitbridge.service.actions import AUDIT_TEXT_PREFIX, audit_detail

texts = st.text(alphabet=st.characters(codec="utf-8"), max_size=3000)


@given(texts, st.integers(min_value=2, max_value=400))
def test_split_keeps_every_character_in_order_within_the_budget(text: str, budget: int) -> None:
    parts = split_text(text, budget)
    assert "".join(parts) == text
    assert all(utf16_length(p) <= budget for p in parts)
    assert all(parts[:-1])  # no empty part, except a whole text that is empty


def test_split_cuts_after_a_line_when_one_is_in_the_second_half() -> None:
    text = "a" * 60 + "\n" + "b" * 60
    assert split_text(text, 100) == ["a" * 60 + "\n", "b" * 60]
    assert split_text("c" * 250, 100) == ["c" * 100, "c" * 100, "c" * 50]  # no line: at the budget


def test_split_counts_an_emoji_as_two_as_data_center_does() -> None:
    assert split_text("\U0001f600" * 3, 4) == ["\U0001f600" * 2, "\U0001f600"]


@given(st.text(min_size=1, max_size=400), st.sampled_from([40, 255]))
def test_mapped_keys_fit_are_stable_and_keep_short_keys(key: str, limit: int) -> None:
    mapped = mapped_key(key, limit)
    assert utf16_length(mapped) <= limit
    assert mapped == mapped_key(key, limit)
    if utf16_length(key) <= limit:
        assert mapped == key


def test_keys_sharing_a_long_prefix_map_apart() -> None:
    one, two = "ci/" + "x" * 60 + "/linux", "ci/" + "x" * 60 + "/macos"
    assert mapped_key(one, 40) != mapped_key(two, 40)
    assert mapped_key(one, 40).startswith("ci/" + "x" * 24 + "-") and len(mapped_key(one, 40)) == 40


@given(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}", fullmatch=True), st.integers(1, 10), st.text(max_size=50))
def test_a_part_is_found_by_its_marker_and_only_by_it(marker: str, count: int, body: str) -> None:
    text = part_header(marker, count, count) + body
    assert part_of(text, marker) == (count, count)
    assert part_of(text, marker + "x") is None
    assert part_of(body, marker) is None or body.startswith("[//]")


@pytest.mark.parametrize("bad", ["", "-leading", "with space", "a" * 65, "paren)", None, 3])
def test_markers_are_refused_clearly(bad: object) -> None:
    with pytest.raises(ActionRefused) as refused:
        check_marker(bad)
    assert refused.value.code == "invalid_request" and "marker" in refused.value.message


@given(st.text(max_size=500))
def test_an_audit_detail_keeps_at_most_a_prefix_of_the_text(text: str) -> None:
    detail = audit_detail(
        {"workspace": "acme", "repo_slug": "web-app", "pull_request": "7"}, {"text": text, "marker": "ci"}
    )
    assert detail["text_prefix"] == text[:AUDIT_TEXT_PREFIX] and detail["text_length"] == len(text)
    assert detail["repository"] == "acme/web-app" and detail["pull_request"] == "7"
    assert all(len(str(v)) <= AUDIT_TEXT_PREFIX for k, v in detail.items() if k == "text_prefix")
