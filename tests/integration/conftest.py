"""Handlers and core on moto in-process, with resources built from template.yaml."""

from __future__ import annotations

import os
from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from bitbridge.aws import reset_caches
from infra.local.resources import LocalResources, create_resources


@pytest.fixture
def aws() -> Iterator[LocalResources]:
    """Every template resource on moto, and the functions' environment applied to this process."""
    with mock_aws():
        resources = create_resources(lambda service: boto3.client(service, region_name="us-east-1"))
        saved = dict(os.environ)
        os.environ.update(resources.environment)
        reset_caches()
        try:
            yield resources
        finally:
            os.environ.clear()
            os.environ.update(saved)
            reset_caches()
