"""Resource names derive from the stack name: two stacks with the same (default) stage coexist."""

from __future__ import annotations

import boto3
from moto import mock_aws

from infra.local.resources import REGION, create_resources, local_parameters


def test_two_stacks_with_the_same_stage_coexist():
    with mock_aws():
        make = lambda service: boto3.client(service, region_name=REGION)  # noqa: E731
        first = create_resources(make, stage="dev", parameters=local_parameters("dev"), stack_name="bitbridge-a")
        # Before names were scoped by the stack, this raised (secret, bus, alias already exist).
        second = create_resources(make, stage="dev", parameters=local_parameters("dev"), stack_name="bitbridge-b")
    for name in ("BITBRIDGE_PROVIDER_SECRET_PREFIX", "BITBRIDGE_EVENT_BUS_NAME", "BITBRIDGE_PROVIDERS_TABLE"):
        assert first.environment[name] != second.environment[name], name
    assert first.environment["BITBRIDGE_PROVIDER_SECRET_PREFIX"] == "bitbridge/bitbridge-a/providers/"
    assert first.environment["BITBRIDGE_STAGE"] == second.environment["BITBRIDGE_STAGE"] == "dev"
