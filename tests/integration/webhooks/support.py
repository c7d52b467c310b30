"""Build deliveries as Bitbucket sends them and API Gateway (HTTP API, payload 2.0) passes them on."""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path
from typing import Any

import boto3

from bitbridge.store.subscriptions import repository_key
from bitbridge.webhooks.binding import subscription_id
from bitbridge.webhooks.normalise import UnhandledEvent, normalise
from bitbridge.webhooks.signatures import derive_hook_secret, sign
from tests.unit.webhooks.support import schema_errors, validator  # noqa: F401 - one schema validator

CLOUD_PROVIDER = "bitbucket-cloud"
DC_PROVIDER = "acme-dc"
PROVIDERS = {"cloud": CLOUD_PROVIDER, "datacenter": DC_PROVIDER}


def manifest(shared_dir: Path) -> list[dict[str, Any]]:
    return json.loads((shared_dir / "bitbucket" / "webhooks" / "manifest.json").read_text())


def payload_bytes(shared_dir: Path, file: str) -> bytes:
    return (shared_dir / "bitbucket" / "webhooks" / file).read_bytes()


def master_key(env: dict[str, str], client: Any = None) -> bytes:
    """The webhook master key as the receiver reads it: the secret string's UTF-8 bytes."""
    sm = client or boto3.client("secretsmanager", region_name="us-east-1")
    arn = env["BITBRIDGE_WEBHOOK_MASTER_KEY_SECRET_ARN"]
    return sm.get_secret_value(SecretId=arn)["SecretString"].encode("utf-8")


def hook_secret(env: dict[str, str], subscription: str, client: Any = None) -> str:
    return derive_hook_secret(master_key(env, client), subscription)


def register_subscription(
    table: str, flavor: str, event_key: str, body: bytes, provider: str, client: Any = None
) -> None:
    """The subscription record a hook install writes for the payload's repository (the publisher takes the
    repository's names from it, never from the payload: a delivery without one is unpublishable)."""
    event = _probed(flavor, event_key, body, provider)
    if event is None:
        return  # refused before its subscription matters
    repo = event["repository"]
    ddb = client or boto3.client("dynamodb", region_name="us-east-1")
    ddb.put_item(
        TableName=table,
        Item={
            "pk": {"S": subscription_id(provider, repo["id"])},
            "provider_id": {"S": provider},
            "repository_key": {"S": repository_key(provider, repo["id"])},
            "repository_full_name": {"S": repo["full_name"]},
            "repository_name": {"S": repo.get("name") or repo["full_name"].rpartition("/")[2]},
        },
    )


def subscription_for(flavor: str, event_key: str, body: bytes, provider: str | None = None) -> str:
    """The subscription id bitbridge derives for the payload's repository (what a real hook posts to).
    A payload without a usable repository gets a placeholder: it is refused before binding matters."""
    provider = provider or PROVIDERS[flavor]
    event = _probed(flavor, event_key, body, provider)
    return "sub-unbound" if event is None else subscription_id(provider, event["repository"]["id"])


def _probed(flavor: str, event_key: str, body: bytes, provider: str) -> dict[str, Any] | None:
    """The payload normalised as the receiver would (None: refused before its repository matters)."""
    try:
        return normalise(
            flavor=flavor,
            provider_id=provider,
            event_key=event_key,
            payload=json.loads(body),
            delivery_id="probe",
            received_at="2024-05-01T12:00:00.000Z",
        )
    except (UnhandledEvent, ValueError):
        return None


def bitbucket_headers(
    flavor: str,
    event_key: str,
    body: bytes,
    secret: str | None,
    *,
    delivery_id: str | None = None,
    attempt: int = 1,
) -> dict[str, str]:
    """The headers each flavor sends (names as Bitbucket writes them; API Gateway lowercases them)."""
    delivery_id = delivery_id or str(uuid.uuid4())
    if flavor == "cloud":
        headers = {
            "X-Event-Key": event_key,
            "X-Request-UUID": delivery_id,
            "X-Hook-UUID": "f1b6a3a0-0d5e-4c1b-9f4b-1c2d3e4f5a6b",
            "X-Attempt-Number": str(attempt),
            "User-Agent": "Bitbucket-Webhooks/2.0",
            "Content-Type": "application/json",
        }
    else:
        headers = {
            "X-Event-Key": event_key,
            "X-Request-Id": delivery_id,
            "User-Agent": "Atlassian HttpClient 4.2.0 / Bitbucket-8.19.1 (8019001) / Default",
            "Content-Type": "application/json; charset=utf-8",
        }
    if secret is not None:
        headers["X-Hub-Signature"] = sign(secret, body)
    return headers


def api_event(
    provider: str,
    subscription: str,
    body: bytes,
    headers: dict[str, str],
    *,
    base64_encoded: bool = False,
) -> dict[str, Any]:
    """The API Gateway HTTP API v2 event for POST /hooks/{provider}/{subscription}."""
    path = f"/hooks/{provider}/{subscription}"
    return {
        "version": "2.0",
        "routeKey": "POST /hooks/{provider}/{subscription}",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {name.lower(): value for name, value in headers.items()},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "test",
            "domainName": "test.execute-api.us-east-1.amazonaws.com",
            "http": {
                "method": "POST",
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "18.205.93.2",
                "userAgent": headers.get("User-Agent", ""),
            },
            "requestId": uuid.uuid4().hex[:16],
            "routeKey": "POST /hooks/{provider}/{subscription}",
            "stage": "$default",
            "timeEpoch": 1714564800000,
        },
        "pathParameters": {"provider": provider, "subscription": subscription},
        "isBase64Encoded": base64_encoded,
        "body": base64.b64encode(body).decode("ascii") if base64_encoded else body.decode("utf-8"),
    }


class Context:
    function_name = "WebhookReceiverFunction"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:WebhookReceiverFunction"
    aws_request_id = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 5000


def register_provider(table: str, provider_id: str, flavor: str, client: Any = None) -> None:
    """A provider item as the registry stores it (only pk and flavor matter to the publisher)."""
    ddb = client or boto3.client("dynamodb", region_name="us-east-1")
    ddb.put_item(
        TableName=table,
        Item={
            "pk": {"S": provider_id},
            "flavor": {"S": flavor},
            "label": {"S": f"test {flavor}"},
            "web_url": {"S": "https://bitbucket.example"},
            "api_url": {"S": "https://bitbucket.example/api"},
            "status": {"S": "verified"},
        },
    )
