"""The plain-boto3 store modules (cold path) write the same item shapes the PynamoDB models describe."""

from __future__ import annotations

import inspect
import re

from bitbridge.store import webhook_state
from bitbridge.store.imports import PROJECT_SK, ProjectRecord, project_pk
from bitbridge.store.subscriptions import SubscriptionRecord


def test_project_key_is_the_models_key():
    assert webhook_state._project_key("p", "{r}") == {"pk": {"S": project_pk("p", "{r}")}, "sk": {"S": PROJECT_SK}}


def _written(function) -> set[str]:
    source = inspect.getsource(function)
    return set(re.findall(r"(?:SET|ADD|DELETE|,|\})\s+([a-z_]+)(?:\s*=\s*:|\s:[a-z])", source))


def test_attributes_written_exist_on_the_models():
    project = set(ProjectRecord.get_attributes())
    for function in (webhook_state.record_push, webhook_state.record_branch_head, webhook_state.record_pull_request):
        written = _written(function)
        assert written and written <= project, (function.__name__, written - project)
    subscription = set(SubscriptionRecord.get_attributes())
    written = _written(webhook_state.record_subscription_delivery)
    assert written and written <= subscription, written - subscription
