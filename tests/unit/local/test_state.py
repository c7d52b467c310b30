"""The local stack's saved state: moto's backends come back exactly (a KMS ciphertext still decrypts, a queued
message is still there), a state saved by other code is refused with the reason, and a stream poller reads on
from where it stopped instead of from the start."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.core.base_backend import BackendDict

from infra.local import state
from infra.local.lambda_runtime import FunctionRunner
from infra.local.pollers import StreamPoller
from infra.local.resources import create_resources
from infra.local.template import Function, load_template

REGION = "us-east-1"
CALLS: list[dict[str, Any]] = []


def records_stream(event: dict[str, Any], context: Any) -> dict[str, Any]:
    CALLS.append(event)
    return {"batchItemFailures": []}


def _client(service: str) -> Any:
    return boto3.client(service, region_name=REGION)


def _save(folder, resources, template, positions=None) -> None:
    state.save(
        folder,
        template=template,
        emulator_backend=None,
        urls={"api": "http://127.0.0.1:3000"},
        refs=resources.refs,
        attributes=resources.attributes,
        stream_positions=positions or {},
    )


def _put(table: str, *keys: str) -> None:
    for key in keys:
        _client("dynamodb").put_item(TableName=table, Item={"pk": {"S": key}, "status": {"S": "received"}})


def test_moto_comes_back_exactly_and_what_was_encrypted_still_decrypts(tmp_path):
    template = load_template()
    with mock_aws():
        resources = create_resources(_client, template=template)
        key = resources.ref("TokenKey")
        ciphertext = _client("kms").encrypt(KeyId=key, Plaintext=b"refresh-token")["CiphertextBlob"]
        _put(resources.ref("DeliveriesTable"), "d-1")
        _client("sqs").send_message(QueueUrl=resources.ref("ImportQueue"), MessageBody="job-1")
        _client("s3").put_object(Bucket=resources.ref("SnapshotsBucket"), Key="imports/a/manifest.json", Body=b"{}")
        _save(tmp_path / "state", resources, template)
        BackendDict.reset()  # a new process: moto is empty
        assert _client("dynamodb").list_tables()["TableNames"] == []

        saved, why = state.open_saved(tmp_path / "state", template, emulator=False)
        assert saved is not None, why
        state.restore_moto(saved)
        again = create_resources(_client, template=template, existing=(saved.refs, saved.attributes))
        assert again.refs == resources.refs and again.environment == resources.environment
        assert _client("kms").decrypt(CiphertextBlob=ciphertext)["Plaintext"] == b"refresh-token"
        item = _client("dynamodb").get_item(TableName=again.ref("DeliveriesTable"), Key={"pk": {"S": "d-1"}})
        assert item["Item"]["status"] == {"S": "received"}
        messages = _client("sqs").receive_message(QueueUrl=again.ref("ImportQueue"))["Messages"]
        assert [m["Body"] for m in messages] == ["job-1"]
        body = _client("s3").get_object(Bucket=again.ref("SnapshotsBucket"), Key="imports/a/manifest.json")["Body"]
        assert body.read() == b"{}"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda manifest, template: template["Resources"].pop("ImportQueue"), "template.yaml changed"),
        (lambda manifest, template: manifest["fingerprint"].update(moto="0.0.1"), "moto was upgraded"),
    ],
    ids=["template", "moto"],
)
def test_a_state_saved_by_other_code_is_refused_with_the_reason(tmp_path, change, reason):
    template = load_template()
    with mock_aws():
        _save(tmp_path / "state", create_resources(_client, template=template), template)
    manifest_file = tmp_path / "state" / state.MANIFEST
    manifest = json.loads(manifest_file.read_text())
    template = json.loads(json.dumps(template, default=str))
    change(manifest, template)
    manifest_file.write_text(json.dumps(manifest))
    saved, why = state.open_saved(tmp_path / "state", template, emulator=False)
    assert saved is None and reason in why


def test_no_saved_state_and_a_cleared_one_say_so(tmp_path):
    saved, why = state.open_saved(tmp_path / "state", load_template(), emulator=True)
    assert saved is None and why == f"no saved state in {tmp_path / 'state'}"
    (tmp_path / "state").mkdir()
    assert state.clear(tmp_path / "state") is True and not (tmp_path / "state").exists()
    assert state.clear(tmp_path / "state") is False


def test_one_stack_at_a_time_keeps_its_state_in_a_folder(tmp_path):
    first = state.lock(tmp_path / "state")
    assert first is not None
    assert state.lock(tmp_path / "state") is None  # a second `make dev` in the same checkout
    first.close()  # the first one stopped
    assert state.lock(tmp_path / "state") is not None


def _poller(stream_arn: str) -> StreamPoller:
    runner = FunctionRunner({"records_stream": Function("records_stream", __name__, "records_stream", 30, 128)})
    source = {"StartingPosition": "TRIM_HORIZON", "BatchSize": 10, "FunctionResponseTypes": ["ReportBatchItemFailures"]}
    return StreamPoller(runner, "records_stream", source, stream_arn, None, _client)


def _delivered() -> list[str]:
    return [r["dynamodb"]["NewImage"]["pk"]["S"] for call in CALLS for r in call["Records"]]


def test_a_stream_is_read_on_from_where_its_poller_stopped(tmp_path):
    CALLS.clear()
    template = load_template()
    with mock_aws():
        resources = create_resources(_client, template=template)
        table, stream = resources.ref("DeliveriesTable"), resources.attributes[("DeliveriesTable", "StreamArn")]
        _put(table, "d-1", "d-2")
        before = _poller(stream)
        while before.poll_once():
            pass
        assert _delivered() == ["d-1", "d-2"]
        _put(table, "d-3")  # written while the stack is down, never delivered yet
        _save(tmp_path / "state", resources, template, {before.key: before.positions()})
        BackendDict.reset()

        saved, why = state.open_saved(tmp_path / "state", template, emulator=False)
        assert saved is not None, why
        state.restore_moto(saved)
        CALLS.clear()
        after = _poller(stream)
        after.resume(saved.stream_positions[after.key])
        while after.poll_once():
            pass
        assert _delivered() == ["d-3"]  # not d-1 and d-2 again, and d-3 not lost
