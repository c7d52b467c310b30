"""Lambda event filtering as the local stream poller applies it (FilterCriteria patterns)."""

from __future__ import annotations

import json

import pytest

from infra.local.filters import delivered, matches, patterns


def _record(event_name: str = "MODIFY", **image: str) -> dict:
    return {
        "eventName": event_name,
        "dynamodb": {"NewImage": {k: {"S": v} for k, v in image.items()}, "SizeBytes": 120},
    }


STATUS_RECEIVED = {"dynamodb": {"NewImage": {"status": {"S": ["received"]}}}}


def test_exact_values_on_a_new_image_attribute():
    assert matches(STATUS_RECEIVED, _record(status="received"))
    assert not matches(STATUS_RECEIVED, _record(status="published"))
    assert not matches(STATUS_RECEIVED, _record())  # absent attribute
    assert matches({"eventName": ["INSERT", "MODIFY"]}, _record("MODIFY"))
    assert not matches({"eventName": ["INSERT"]}, _record("REMOVE"))


def test_prefix_suffix_and_ignore_case():
    assert matches({"dynamodb": {"NewImage": {"pk": {"S": [{"prefix": "cloud#"}]}}}}, _record(pk="cloud#1"))
    assert not matches({"dynamodb": {"NewImage": {"pk": {"S": [{"prefix": "cloud#"}]}}}}, _record(pk="dc#1"))
    assert matches({"dynamodb": {"NewImage": {"pk": {"S": [{"suffix": "#1"}]}}}}, _record(pk="dc#1"))
    assert matches({"eventName": [{"equals-ignore-case": "modify"}]}, _record("MODIFY"))


def test_exists_and_anything_but():
    has_error = {"dynamodb": {"NewImage": {"error": [{"exists": True}]}}}
    no_error = {"dynamodb": {"NewImage": {"error": [{"exists": False}]}}}
    assert matches(has_error, _record(error="boom")) and not matches(has_error, _record())
    assert matches(no_error, _record()) and not matches(no_error, _record(error="boom"))
    not_published = {"dynamodb": {"NewImage": {"status": {"S": [{"anything-but": ["published", "ignored"]}]}}}}
    assert matches(not_published, _record(status="received"))
    assert not matches(not_published, _record(status="ignored"))
    assert not matches(not_published, _record())  # anything-but needs the field
    assert matches({"eventName": [{"anything-but": {"prefix": "REM"}}]}, _record("INSERT"))
    assert not matches({"eventName": [{"anything-but": {"prefix": "REM"}}]}, _record("REMOVE"))


def test_numeric_ranges_match_numbers_only():
    small = {"dynamodb": {"SizeBytes": [{"numeric": [">", 0, "<=", 200]}]}}
    assert matches(small, _record())
    assert not matches({"dynamodb": {"SizeBytes": [{"numeric": [">=", 500]}]}}, _record())
    assert not matches({"dynamodb": {"NewImage": {"n": {"S": [{"numeric": ["=", 5]}]}}}}, _record(n="5"))


def test_filters_are_ored_and_none_means_everything():
    filters = patterns(
        {"Filters": [{"Pattern": json.dumps(STATUS_RECEIVED)}, {"Pattern": json.dumps({"eventName": ["INSERT"]})}]}
    )
    assert delivered(filters, _record(status="received"))
    assert delivered(filters, _record("INSERT", status="published"))
    assert not delivered(filters, _record(status="published"))
    assert delivered(patterns(None), _record())


def test_unsupported_operators_are_refused():
    with pytest.raises(ValueError, match="not supported"):
        patterns({"Filters": [{"Pattern": json.dumps({"a": [{"cidr": "10.0.0.0/24"}]})}]})
    with pytest.raises(ValueError, match="list of accepted values"):
        patterns({"Filters": [{"Pattern": json.dumps({"a": "x"})}]})
