"""Poison bodies, correctly signed: the receiver answers 2xx or 4xx, stores nothing on 4xx, and whatever
it stores the publisher's normaliser can turn into an event (or settle as malformed) without crashing."""

from __future__ import annotations

import json
import uuid

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bitbridge.webhooks.normalise import HANDLED_EVENT_KEYS, MalformedPayload, UnhandledEvent, normalise
from bitbridge.webhooks.receipt import MAX_JSON_DEPTH
from functions.webhook_receiver.app import handler
from tests.integration.webhooks.support import PROVIDERS, Context, api_event, bitbucket_headers, hook_secret

SUB = "sub-fuzz"
FUZZ_CASES = 1000

_KEYS = st.text(max_size=6) | st.sampled_from(["repository", "push", "changes", "pullrequest", "actor", "id"])
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=4),
    max_leaves=20,
)


def _nested(depth: int, opener: str) -> bytes:
    closer = {"[": "]", '{"a":': "}"}[opener]
    inner = opener * depth + "1" + closer * depth
    return ('{"repository":' + inner + "}").encode()


_PATHOLOGICAL = [
    b"",
    b"   ",
    b"null",
    b"[]",
    b'"text"',
    b"\xef\xbb\xbf{}",  # BOM
    b'{"a": NaN}',
    b'{"a": Infinity}',
    b'{"a": -Infinity}',
    b'{"a": 1e999}',
    b'{"a": -1e400}',
    b'{"a": 1' + b"0" * 5000 + b"}",  # beyond int parsing's digit limit
    b'{"a": 1, "a": 2}',
    b'{"push": {"changes": []}, "push": {}}',
    b'{"a": "\\ud800"}',
    b'{"\\udfff": 1}',
    b'{"a": "\\ud83d\\ude00"}',  # a proper pair: fine
    b'{"a": "\xff"}',
    b'{"a": "\xed\xa0\x80"}',  # a surrogate encoded as UTF-8: invalid
    b'{"a": "\xc0\xaf"}',  # overlong encoding
    b'{"a": "x"} trailing',
    b'{"a": "\x00"}',
    b'{"a": "[[[[[[[["}',
    b"{" * 100_000,
]

BODIES = st.one_of(
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(_KEYS, JSON_VALUES, max_size=6).map(lambda v: json.dumps(v, ensure_ascii=False).encode()),
    st.builds(_nested, st.integers(1, 20_000), st.sampled_from(["[", '{"a":'])),
    st.builds(_nested, st.integers(MAX_JSON_DEPTH - 3, MAX_JSON_DEPTH + 3), st.sampled_from(["[", '{"a":'])),
    st.sampled_from(_PATHOLOGICAL),
    st.binary(max_size=64),
    st.builds(
        lambda prefix, tail: b'{"repository": ' + prefix + tail, st.sampled_from([b"[", b"{", b'"']), st.binary()
    ),
)

FLAVORS = st.sampled_from(sorted(PROVIDERS))


def _event_keys(flavor: str) -> st.SearchStrategy[str]:
    return st.sampled_from([*sorted(HANDLED_EVENT_KEYS[flavor]), "repo:unknown"])


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 10_000])
def test_a_signed_deeply_nested_body_is_400_and_stored_nowhere(aws, depth):
    body = _nested(depth, "[")
    status, stored = _deliver(aws, "cloud", "repo:push", body)
    assert (status, stored) == (400, False)


def test_a_body_at_the_depth_limit_is_accepted(aws):
    body = _nested(MAX_JSON_DEPTH - 1, "[")  # MAX_JSON_DEPTH levels with the outer object
    assert _deliver(aws, "cloud", "repo:push", body) == (202, True)


@pytest.mark.parametrize(
    "body",
    [b'{"a": NaN}', b'{"a": 1e999}', b'{"a": 1, "a": 2}', b'{"a": "\\ud800"}', b"\xef\xbb\xbf{}", b'{"a": "\xff"}'],
)
def test_poison_json_is_400_and_stored_nowhere(aws, body):
    assert _deliver(aws, "cloud", "repo:push", body) == (400, False)


def test_signed_random_and_pathological_bodies_get_2xx_or_4xx_and_4xx_stores_nothing(aws):
    secret = hook_secret(aws.environment, SUB)
    seen: list[int] = []

    @settings(max_examples=FUZZ_CASES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(flavor=FLAVORS, data=st.data(), body=BODIES)
    def prop(flavor: str, data: st.DataObject, body: bytes) -> None:
        event_key = data.draw(_event_keys(flavor))
        status, stored = _deliver(aws, flavor, event_key, body, secret)
        seen.append(status)
        assert 200 <= status < 500, (status, body[:80])
        assert stored == (status == 202), (status, body[:80])
        if stored:
            _publisher_can_settle(flavor, event_key, body)

    prop()
    print(f"receiver property: {len(seen)} signed deliveries, statuses {sorted(set(seen))}")
    assert len(seen) >= FUZZ_CASES * 0.9
    assert {202, 400} <= set(seen)


def _deliver(aws, flavor: str, event_key: str, body: bytes, secret: str | None = None) -> tuple[int, bool]:
    """POST one signed delivery; (status, whether anything was stored under its id)."""
    secret = secret or hook_secret(aws.environment, SUB)
    delivery = str(uuid.uuid4())
    headers = bitbucket_headers(flavor, event_key, body, secret, delivery_id=delivery)
    try:
        body.decode("utf-8")
        text = True
    except UnicodeDecodeError:
        text = False  # API Gateway base64-encodes a body that is not text
    response = handler(api_event(PROVIDERS[flavor], SUB, body, headers, base64_encoded=not text), Context())
    item = boto3.client("dynamodb", region_name="us-east-1").get_item(
        TableName=aws.ref("DeliveriesTable"), Key={"pk": {"S": f"{PROVIDERS[flavor]}#{delivery}"}}, ConsistentRead=True
    )
    return response["statusCode"], "Item" in item


def _publisher_can_settle(flavor: str, event_key: str, body: bytes) -> None:
    """What the publisher does with a stored body: an event it can send, or a clean 'malformed'."""
    try:
        event = normalise(
            flavor=flavor,
            provider_id=PROVIDERS[flavor],
            event_key=event_key,
            payload=json.loads(body),
            delivery_id="d-1",
            received_at="2024-05-01T12:00:00Z",
        )
    except (MalformedPayload, UnhandledEvent):
        return
    json.dumps(event, ensure_ascii=False, allow_nan=False).encode("utf-8")
