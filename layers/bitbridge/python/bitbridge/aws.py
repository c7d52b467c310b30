"""boto3 clients, created once per container and only when first needed.

Lazy creation keeps cold starts short and lets moto's mock_aws intercept clients in tests.
The endpoint comes from the standard AWS_ENDPOINT_URL variable, which the local stack sets.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from bitbridge import metering
from bitbridge.config import settings


@cache
def client(service: str) -> Any:
    import boto3
    from botocore.config import Config

    # Short timeouts and standard retries: a Lambda must fail fast and let its source retry.
    config = Config(
        connect_timeout=3,
        read_timeout=10,
        retries={"max_attempts": 3, "mode": "standard"},
        max_pool_connections=50,  # the local stack runs many handlers on threads sharing one client
    )
    made = boto3.client(service, region_name=settings().region, config=config)  # type: ignore[call-overload]
    metering.watch(made)  # a no-op outside a meter (the import worker counts its calls)
    return made


SECRET_MAX_AGE_SECONDS = 300


def secret_value(secret_id: str) -> str:
    """A Secrets Manager secret's string, cached for five minutes so a rotated secret is picked up."""
    return str(_secrets_provider().get(secret_id, max_age=SECRET_MAX_AGE_SECONDS))


@cache
def _secrets_provider() -> Any:
    from aws_lambda_powertools.utilities.parameters import SecretsProvider

    # Built on our client, so it shares the region, endpoint and timeouts of every other call.
    return SecretsProvider(boto3_client=client("secretsmanager"))


_ALSO_FORGOTTEN: list[Callable[[], None]] = []


def forgotten_on_reset(forget: Callable[[], None]) -> Callable[[], None]:
    """Decorator: `reset_caches` also calls `forget` (the store's model connections). The layers above
    register their own caches here, so this module never imports them."""
    _ALSO_FORGOTTEN.append(forget)
    return forget


def reset_caches() -> None:
    """Forget clients, secrets and settings, and what registered with `forgotten_on_reset` (tests and the
    local stack switch endpoints and environments)."""
    client.cache_clear()
    _secrets_provider.cache_clear()
    settings.cache_clear()
    for forget in _ALSO_FORGOTTEN:
        forget()
