"""webhook_receiver on moto: verify, store once, answer - with the real Bitbucket payloads."""

from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC, datetime

import boto3
import pytest

from bitbridge.config import PREFIX, REQUIRED
from bitbridge.store import deliveries
from bitbridge.store.deliveries import DELIVERY_TTL_SECONDS
from bitbridge.webhooks.receipt import MAX_BODY_BYTES
from bitbridge.webhooks.signatures import derive_hook_secret, sign, verify_signature
from functions.webhook_receiver.app import handler
from infra.local.iam import acting_as
from tests.integration.webhooks.support import (
    PROVIDERS,
    Context,
    api_event,
    bitbucket_headers,
    hook_secret,
    manifest,
    master_key,
    payload_bytes,
)

SUB = "sub-0001"
PUSH = b'{"repository": {"full_name": "team/repo"}, "push": {"changes": []}}'


def _ddb():
    return boto3.client("dynamodb", region_name="us-east-1")


def _items(aws) -> list[dict]:
    return _ddb().scan(TableName=aws.ref("DeliveriesTable"), ConsistentRead=True)["Items"]


def _post(provider, subscription, body, headers, **kwargs) -> tuple[int, dict]:
    with acting_as("WebhookReceiverFunction"):
        response = handler(api_event(provider, subscription, body, headers, **kwargs), Context())
    assert response["headers"]["content-type"] == "application/json"
    return response["statusCode"], json.loads(response["body"])


@pytest.fixture
def secret(aws) -> str:
    return hook_secret(aws.environment, SUB)


def test_every_shared_payload_signed_as_bitbucket_signs_is_accepted_and_stored(aws, secret, shared_dir):
    entries = manifest(shared_dir)
    assert len(entries) >= 30
    for entry in entries:
        body = payload_bytes(shared_dir, entry["file"])
        flavor = entry["flavor"]
        headers = bitbucket_headers(flavor, entry["event_key"], body, secret, delivery_id=f"d-{entry['file']}")
        status, answer = _post(PROVIDERS[flavor], SUB, body, headers)
        assert (status, answer) == (202, {"message": "accepted", "id": f"d-{entry['file']}"}), entry["file"]

    items = {i["delivery_id"]["S"]: i for i in _items(aws)}
    assert len(items) == len(entries)
    for entry in entries:
        item = items[f"d-{entry['file']}"]
        # The raw body exactly as verified, and what the publisher and replay need.
        assert item["body"]["S"].encode("utf-8") == payload_bytes(shared_dir, entry["file"])
        assert item["status"]["S"] == "received"
        assert item["event_key"]["S"] == entry["event_key"]
        assert item["provider_id"]["S"] == PROVIDERS[entry["flavor"]]
        assert item["subscription_id"]["S"] == SUB
        assert item["pk"]["S"] == f"{PROVIDERS[entry['flavor']]}#d-{entry['file']}"


def test_stored_delivery_keeps_the_headers_that_matter_and_never_the_signature(aws, secret):
    headers = bitbucket_headers("cloud", "repo:push", PUSH, secret, delivery_id="d-1", attempt=3)
    headers["Authorization"] = "Bearer should-never-be-stored"
    before = time.time()
    assert _post("bitbucket-cloud", SUB, PUSH, headers)[0] == 202

    (item,) = _items(aws)
    kept = json.loads(item["headers"]["S"])
    assert kept == {
        "x-event-key": "repo:push",
        "x-request-uuid": "d-1",
        "x-hook-uuid": headers["X-Hook-UUID"],
        "x-attempt-number": "3",
        "user-agent": "Bitbucket-Webhooks/2.0",
        "content-type": "application/json",
    }
    assert item["attempt"]["N"] == "3"
    stored = json.dumps(item)
    assert headers["X-Hub-Signature"] not in stored and headers["X-Hub-Signature"][7:] not in stored
    assert "should-never-be-stored" not in stored and secret not in stored
    received = datetime.fromisoformat(item["received_at"]["S"])
    assert received.tzinfo is not None and item["received_at"]["S"].endswith("Z")
    assert abs(received.timestamp() - before) < 5
    assert abs(int(item["expires_at"]["N"]) - (before + DELIVERY_TTL_SECONDS)) < 5

    # The store reads back what the receiver wrote through it.
    record = deliveries.get("bitbucket-cloud", "d-1")
    assert record is not None
    assert (record.pk, record.delivery_id, record.status, record.attempt) == (
        "bitbucket-cloud#d-1",
        "d-1",
        "received",
        3,
    )
    assert json.loads(item["headers"]["S"]) == kept


def test_data_center_signature_vectors_verify_and_the_receiver_checks_the_raw_bytes(aws, shared_dir):
    vectors = [e for e in manifest(shared_dir) if e.get("x_hub_signature")]
    assert vectors, "the manifest has Data Center signature vectors"
    for vector in vectors:
        body = payload_bytes(shared_dir, vector["file"])
        # The verifier the receiver uses accepts Bitbucket's own signatures of these exact bytes...
        assert verify_signature(vector["hmac_key"], body, vector["x_hub_signature"]), vector["file"]
        # ...and rejects the same signature on the bytes once re-serialised (whitespace differs).
        reserialised = json.dumps(json.loads(body)).encode()
        assert reserialised != body
        assert not verify_signature(vector["hmac_key"], reserialised, vector["x_hub_signature"])
    # Through the receiver: signed with the subscription's derived secret, the vector's bytes pass.
    vector = vectors[0]
    body = payload_bytes(shared_dir, vector["file"])
    headers = bitbucket_headers("datacenter", vector["event_key"], body, hook_secret(aws.environment, SUB))
    assert _post("acme-dc", SUB, body, headers)[0] == 202
    # Bitbucket's signature with the upstream test secret is not ours: rejected.
    headers["X-Hub-Signature"] = vector["x_hub_signature"]
    headers["X-Request-Id"] = "another"
    assert _post("acme-dc", SUB, body, headers)[0] == 401


def test_bad_signatures_and_unknown_subscriptions_get_one_identical_401_and_store_nothing(aws, secret):
    headers = bitbucket_headers("cloud", "repo:push", PUSH, secret)
    flipped = bytearray(PUSH)
    flipped[10] ^= 0x01
    other_master = derive_hook_secret(b"another-master-key", SUB)
    answers = [
        _post("bitbucket-cloud", SUB, bytes(flipped), headers),  # one flipped byte
        _post("bitbucket-cloud", SUB, PUSH, {**headers, "X-Hub-Signature": sign("wrong", PUSH)}),
        _post("bitbucket-cloud", SUB, PUSH, {**headers, "X-Hub-Signature": sign(other_master, PUSH)}),
        _post("bitbucket-cloud", "sub-unknown", PUSH, headers),  # valid for another subscription
        _post("bitbucket-cloud", "bad id!", PUSH, headers),  # cannot exist
        _post("bitbucket-cloud", SUB, PUSH, {**headers, "X-Hub-Signature": "sha1=" + "0" * 40}),
    ]
    assert answers == [(401, {"message": "signature does not match"})] * len(answers)
    assert _items(aws) == []


def test_a_malformed_provider_id_is_404_only_after_the_signature_verified(aws, secret):
    headers = bitbucket_headers("cloud", "repo:push", PUSH, secret)
    assert _post("no provider!", SUB, PUSH, headers) == (404, {"message": "unknown provider"})
    assert _post("no provider!", SUB, PUSH, {**headers, "X-Hub-Signature": sign("wrong", PUSH)})[0] == 401
    assert _items(aws) == []


def test_missing_signature_is_401(aws):
    status, body = _post("bitbucket-cloud", SUB, PUSH, bitbucket_headers("cloud", "repo:push", PUSH, None))
    assert status == 401 and "X-Hub-Signature" in body["message"]
    assert _items(aws) == []


def test_base64_bodies_are_decoded_and_the_raw_bytes_verified(aws, secret):
    body = '{"repository": {"name": "caf\u00e9"}, "push": {"changes": []}}'.encode()
    headers = bitbucket_headers("cloud", "repo:push", body, secret, delivery_id="b64")
    assert _post("bitbucket-cloud", SUB, body, headers, base64_encoded=True) == (
        202,
        {"message": "accepted", "id": "b64"},
    )
    assert _items(aws)[0]["body"]["S"].encode("utf-8") == body


def test_oversized_payload_is_413_before_anything_else(aws, secret):
    body = b'{"x": "' + b"a" * MAX_BODY_BYTES + b'"}'
    headers = bitbucket_headers("cloud", "repo:push", body, secret)
    assert _post("bitbucket-cloud", SUB, body, headers)[0] == 413
    assert _post("bitbucket-cloud", SUB, body, headers, base64_encoded=True)[0] == 413
    # Exactly at the limit is fine.
    body = b'{"x": "' + b"a" * (MAX_BODY_BYTES - 9) + b'"}'
    assert len(body) == MAX_BODY_BYTES
    headers = bitbucket_headers("cloud", "repo:updated", body, secret)
    assert _post("bitbucket-cloud", SUB, body, headers)[0] == 202


def test_malformed_json_and_non_objects_are_400(aws, secret):
    for body in (b'{"repository": ', b"[1, 2]", b"\xff\xfe{}", b""):
        headers = bitbucket_headers("cloud", "repo:push", body, secret)
        status, answer = _post("bitbucket-cloud", SUB, body, headers, base64_encoded=True)
        assert status == 400, body
        assert answer["message"]
    headers = bitbucket_headers("cloud", "repo:push", PUSH, secret)
    del headers["X-Event-Key"]
    assert _post("bitbucket-cloud", SUB, PUSH, headers)[0] == 400
    assert _items(aws) == []


def test_data_center_test_connection_ping_is_200_unsigned_and_stores_nothing(aws):
    body = b'{"test": true}'
    headers = {"X-Event-Key": "diagnostics:ping", "X-Request-Id": "ping-1", "Content-Type": "application/json"}
    assert _post("acme-dc", SUB, body, headers) == (200, {"message": "pong"})
    assert _items(aws) == []


def test_event_keys_bitbridge_does_not_handle_are_recorded_as_ignored(aws, secret):
    body = b'{"repository": {}}'
    headers = bitbucket_headers("cloud", "repo:transfer", body, secret, delivery_id="ign-1")
    assert _post("bitbucket-cloud", SUB, body, headers) == (
        202,
        {"message": "event not handled; recorded", "id": "ign-1"},
    )
    (item,) = _items(aws)
    assert item["status"]["S"] == "ignored" and item["event_key"]["S"] == "repo:transfer"


def test_redelivery_is_200_and_stores_no_second_record(aws, secret):
    headers = bitbucket_headers("datacenter", "repo:refs_changed", PUSH, secret, delivery_id="dup-1")
    assert _post("acme-dc", SUB, PUSH, headers)[0] == 202
    first = _items(aws)
    for attempt in (2, 3):
        # Bitbucket's retry: same id, same body, a new attempt number.
        retry = {**headers, "X-Attempt-Number": str(attempt)}
        assert _post("acme-dc", SUB, PUSH, retry) == (200, {"message": "already received", "id": "dup-1"})
    assert _items(aws) == first


def test_without_a_request_id_the_delivery_id_is_hook_id_plus_body_hash(aws, secret):
    headers = bitbucket_headers("cloud", "repo:push", PUSH, secret)
    del headers["X-Request-UUID"]
    expected = f"{headers['X-Hook-UUID']}:{hashlib.sha256(PUSH).hexdigest()}"
    assert _post("bitbucket-cloud", SUB, PUSH, headers) == (202, {"message": "accepted", "id": expected})
    assert _post("bitbucket-cloud", SUB, PUSH, headers)[0] == 200  # the same body again is a redelivery


def test_dynamodb_unavailable_is_503_so_bitbucket_retries(aws, secret):
    _ddb().delete_table(TableName=aws.ref("DeliveriesTable"))
    headers = bitbucket_headers("cloud", "repo:push", PUSH, secret)
    assert _post("bitbucket-cloud", SUB, PUSH, headers) == (503, {"message": "temporarily unavailable, retry later"})


def test_logs_never_contain_signatures_or_secrets(aws, secret, caplog):
    key = master_key(aws.environment)
    headers = bitbucket_headers("cloud", "repo:push", PUSH, secret, delivery_id="log-1")
    _post("bitbucket-cloud", SUB, PUSH, headers)
    _post("bitbucket-cloud", SUB, PUSH, {**headers, "X-Hub-Signature": sign("wrong", PUSH)})
    _post("bitbucket-cloud", SUB, PUSH, headers)
    _ddb().delete_table(TableName=aws.ref("DeliveriesTable"))
    _post("bitbucket-cloud", SUB, PUSH, {**headers, "X-Request-UUID": "log-2"})
    # Every record with all its structured fields (Powertools puts extras on the record).
    text = "\n".join(repr(vars(record)) for record in caplog.records)
    assert "log-1" in text, "the receiver logs each outcome (so this check sees its logs)"
    for value in (headers["X-Hub-Signature"][7:], sign("wrong", PUSH)[7:], secret, key.decode()):
        assert value not in text


def test_receiver_module_stays_off_heavy_imports():
    import subprocess
    import sys

    code = (
        "import sys, functions.webhook_receiver.app\n"
        "print(sorted(m for m in ('pynamodb', 'requests', 'authlib', 'jsonschema') if m in sys.modules))"
    )
    env = {"AWS_REGION": "us-east-1", "PATH": "", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}
    env |= {f"{PREFIX}{name}": "x" for name in REQUIRED}  # what template.yaml gives it (checked at cold start)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "[]"


def test_handler_time_is_reported_in_utc():
    # received_at must sort as time: the receiver writes UTC with a fixed width.
    stamp, epoch = deliveries.now()
    assert len(stamp) == len("2024-05-01T12:00:00.000Z")
    assert datetime.fromisoformat(stamp).astimezone(UTC).timestamp() == pytest.approx(epoch, abs=1)
