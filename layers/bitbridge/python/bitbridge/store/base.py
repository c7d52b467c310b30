"""The shared pieces of every model: table binding, connections, SDK errors as our own."""

from __future__ import annotations

from typing import Any

from pynamodb.models import Model

from bitbridge.aws import client, forgotten_on_reset
from bitbridge.config import aws_region, settings


class _FromSettings:
    """A Meta attribute read from settings each time PynamoDB asks (table names, region)."""

    def __init__(self, field: str) -> None:
        self.field = field

    def __get__(self, instance: object, owner: type) -> str:
        return str(getattr(settings(), self.field))


class _Region:
    """PynamoDB asks a model's region when the class is made (at import): AWS's own variable, read then."""

    def __get__(self, instance: object, owner: type) -> str:
        return aws_region()


def table_meta(table_field: str) -> Any:
    """A PynamoDB Meta class whose table is the Settings field `table_field`."""

    class Meta:
        table_name = _FromSettings(table_field)
        region = _Region()
        connect_timeout_seconds = 3
        read_timeout_seconds = 10
        max_retry_attempts = 3

    return Meta


MODELS: list[type[Model]] = []


def register(model: type[Model]) -> type[Model]:
    """Class decorator: remember the model so tests can rebind every connection at once."""
    MODELS.append(model)
    return model


@forgotten_on_reset
def reset_connections() -> None:
    """Drop cached connections (tests switch between moto in-process and moto server)."""
    for model in MODELS:
        model._connection = None


def condition_failed(exc: Exception) -> bool:
    """True when a PynamoDB write failed only because its condition did not hold."""
    cause: Any = getattr(exc, "cause", None)
    code = getattr(cause, "response", {}).get("Error", {}).get("Code") if cause is not None else None
    return code == "ConditionalCheckFailedException" or "ConditionalCheckFailed" in str(exc)


def watch_models(watch: Any) -> None:
    """Apply `watch` (bitbridge.metering.watch) to the botocore client behind every model."""
    for model in MODELS:
        watch(model._get_connection().connection.client)


def ping_providers_table() -> None:
    """One cheap read (of an item that never exists): raises when DynamoDB is not reachable."""
    client("dynamodb").get_item(TableName=settings().providers_table, Key={"pk": {"S": "__health__"}})
