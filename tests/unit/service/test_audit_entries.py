"""The audit writer's side of the log line: only well-formed records are stored, whatever else matched."""

from __future__ import annotations

import io
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from bitbridge.service import audit

CALL = {
    "client_id": "cli_1",
    "key_id": "key_1",
    "action": "proxy",
    "method": "GET",
    "path": "/service/v1/proxy/p/u/x",
    "query": "access_token=secret&page=2",
    "status": 200,
    "duration_ms": 3.25,
    "request_id": "req-1",
    "end_user_id": "u",
    "provider_id": "p",
}


def _line(**overrides) -> dict:
    """The entry `audit.record` writes for CALL, with fields of the written entry replaced."""
    return {**audit.record(**CALL, out=io.StringIO()), **overrides}


def test_the_line_is_one_json_object_with_query_secrets_redacted():
    out = io.StringIO()
    audit.record(**{**CALL, "path": "/t", "query": "code=abc&page=1"}, out=out)
    (line,) = out.getvalue().splitlines()
    entry = json.loads(line)
    assert entry["bitbridge_audit"] == 1 and entry["path"] == "/t?code=REDACTED&page=1"
    assert "abc" not in line


def test_valid_lines_become_entries_and_everything_else_is_counted_not_stored():
    good = _line()
    events = [
        {"message": json.dumps(good)},
        {"message": "not json"},
        {"message": json.dumps({**good, "status": "200"})},  # wrong type
        {"message": json.dumps({**good, "client_id": ""})},  # empty key part
        {"message": json.dumps({**good, "bitbridge_audit": True})},
        {"message": json.dumps({**good, "duration_ms": float("inf")})},  # DynamoDB would refuse the batch
        {"message": json.dumps({**good, "request_id": "r" * 2000})},
        {"message": json.dumps([good])},
        {"message": json.dumps({k: v for k, v in good.items() if k != "request_id"})},
    ]
    found, invalid = audit.entries(events)
    assert found == [good] and invalid == 8


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=6),
    max_leaves=20,
)
_mutated = st.builds(
    lambda key, value: _line(**{key: value}),
    st.sampled_from([*audit._FIELDS, *audit._OPTIONAL, audit.MARKER]),
    _json,
)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(_json.map(json.dumps), _mutated.map(json.dumps), st.text(max_size=60)), max_size=8))
def test_no_log_line_makes_the_parser_fail_or_pass_a_malformed_record(messages):
    found, invalid = audit.entries([{"message": m} for m in messages])
    assert len(found) + invalid == len(messages)
    for entry in found:  # what is stored has every field with its type
        assert entry[audit.MARKER] == 1
        assert all(isinstance(entry[f], str) and entry[f] for f in audit._FIELDS if f not in ("status", "duration_ms"))
        assert type(entry["status"]) is int and 100 <= entry["status"] <= 599
        assert 0 <= entry["duration_ms"] <= 15 * 60 * 1000
