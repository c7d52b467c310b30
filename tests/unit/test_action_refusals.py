"""Each flavor's refusals in bitbridge's words (issue 26): the answers Bitbucket gives (as the emulator words them,
after Atlassian's) become one code per condition, the same for both flavors; anything else is left to
`raise_for_status` (None), so a token refused with a 401 still refreshes instead of reading as a permission."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from bitbridge.bitbucket import cloud_actions, datacenter_actions


def _answer(status: int, body: Any) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = json.dumps(body).encode()
    response.headers["Content-Type"] = "application/json"
    return response


def _cloud(message: str, **detail: Any) -> dict[str, Any]:
    return {"type": "error", "error": {"message": message, **({"detail": detail} if detail else {})}}


def _dc(message: str, exception: str = "com.atlassian.bitbucket.ServiceException", **extra: Any) -> dict[str, Any]:
    return {"errors": [{"context": None, "message": message, "exceptionName": exception, **extra}]}


VETOED = "com.atlassian.bitbucket.pull.PullRequestMergeVetoedException"
NO_SCOPE = _cloud("Your credentials lack one or more required privilege scopes.", required=["pullrequest:write"])
NOT_PERMITTED = _dc("You are not permitted to access this resource", "com.atlassian.bitbucket.AuthorisationException")
BAD_TOKEN = _dc("Authentication failed.", "com.atlassian.bitbucket.auth.IncorrectPasswordAuthenticationException")

CLOUD = [
    (_answer(403, NO_SCOPE), "missing_permission"),
    (_answer(403, _cloud("You do not have write access to this repository.")), "missing_permission"),
    (_answer(400, _cloud("You can't merge until you resolve all merge conflicts.")), "merge_conflict"),
    (_answer(400, _cloud("This pull request has already been merged.")), "pull_request_not_open"),
    (_answer(400, _cloud("Pull request 7 is already declined.")), "pull_request_not_open"),
    (_answer(400, _cloud("Pull request 7 is merged: only open pull requests are reviewed.")), "pull_request_not_open"),
    (_answer(404, _cloud("Repository not found")), "not_found"),
    (_answer(400, _cloud("key: Ensure this field has no more than 40 characters.")), "invalid_request"),
    (_answer(401, _cloud("Access token expired.")), None),
    (_answer(500, _cloud("Something went wrong")), None),
]

DATACENTER = [
    (
        _answer(409, _dc("The pull request has conflicts and cannot be merged.", VETOED, conflicted=True, vetoes=[])),
        "merge_conflict",
    ),
    (
        _answer(
            409,
            _dc("Merging requires 2 approvals.", VETOED, conflicted=False, vetoes=[{"summaryMessage": "2 approvals"}]),
        ),
        "merge_vetoed",
    ),
    (_answer(409, _dc("This comment has replies which must be deleted first.")), "comment_has_replies"),
    (_answer(409, _dc("The pull request is not open.")), "pull_request_not_open"),
    (_answer(401, NOT_PERMITTED), "missing_permission"),
    (_answer(404, _dc("Pull request 9 does not exist in PLAT/core.")), "not_found"),
    (_answer(400, _dc("Please enter a non-empty value less than 32768 characters")), "invalid_request"),
    (_answer(401, BAD_TOKEN), None),
    (_answer(503, _dc("Bitbucket is starting")), None),
]


@pytest.mark.parametrize(("answer", "code"), CLOUD)
def test_cloud_refusals_map_to_one_code_each(answer: requests.Response, code: str | None) -> None:
    mapped = cloud_actions.refusal(answer, "merging pull request 7")
    assert (mapped.code if mapped else None) == code
    if mapped is not None:
        assert mapped.message.startswith("merging pull request 7: ")


@pytest.mark.parametrize(("answer", "code"), DATACENTER)
def test_data_center_refusals_map_to_one_code_each(answer: requests.Response, code: str | None) -> None:
    mapped = datacenter_actions.refusal(answer, "merging pull request 7")
    assert (mapped.code if mapped else None) == code
    if mapped is not None:
        assert mapped.message.startswith("merging pull request 7: ")


def test_a_missing_scope_names_the_scope_and_what_to_do() -> None:
    answer = _answer(403, NO_SCOPE)
    mapped = cloud_actions.refusal(answer, "approving pull request 7")
    assert mapped is not None and mapped.details["required"] == ["pullrequest:write"]
    assert "pullrequest:write" in mapped.message and "connect again" in mapped.message


def test_a_vetoed_merge_says_why_in_bitbuckets_words() -> None:
    answer = _answer(409, _dc("Merging requires 2 approvals.", VETOED, conflicted=False, vetoes=[]))
    mapped = datacenter_actions.refusal(answer, "merging pull request 7")
    assert mapped is not None and "Merging requires 2 approvals." in mapped.message
