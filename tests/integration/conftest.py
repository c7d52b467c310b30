"""Handlers and core on moto in-process, with resources built from template.yaml.

IAM is enforced as on the local stack: code run under `acting_as("SomeFunction")` (or through a
FunctionRunner) may make only the AWS calls that function's policy allows; test setup is not enforced.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from bitbridge.aws import reset_caches
from infra.local import atomic, iam
from infra.local.resources import LocalResources, create_resources
from infra.local.template import load_template


@pytest.fixture
def template() -> dict[str, Any]:
    """The template the `aws` fixture builds and enforces (a test module may override it with a copy)."""
    return load_template()


@pytest.fixture
def aws(template) -> Iterator[LocalResources]:
    """Every template resource on moto, the functions' environment applied to this process, and each
    function's policy enforced on the calls made as that function."""
    atomic.install()  # conditional writes atomic, as on DynamoDB
    with mock_aws():
        resources = create_resources(lambda service: boto3.client(service, region_name="us-east-1"), template=template)
        saved = dict(os.environ)
        os.environ.update(resources.environment)
        iam.install(iam.enforcer_for(template, resources))
        reset_caches()
        try:
            yield resources
        finally:
            iam.install(None)
            os.environ.clear()
            os.environ.update(saved)
            reset_caches()
