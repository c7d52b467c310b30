"""The console's Activity line for write-back events: which build, review or comment, never a comment's text or
a build's description."""

from __future__ import annotations

from bitbridge.webhooks.project_state import summary
from tests.unit.webhooks.test_normalise import event_for


def test_a_status_line_names_its_key_state_and_commit() -> None:
    event = event_for("cloud/repo-commit-status-created.json")
    line = summary(event)
    assert line["type"] == "commit_status.created"
    assert line["summary"] == "mybuildtool: inprogress on 9fec847784ab"
    assert "Build started" not in line["summary"]


def test_a_review_line_says_the_verdict_and_a_comment_line_which_comment() -> None:
    needs_work = summary(event_for("datacenter/pr-reviewer-needs-work.json"))
    assert needs_work["type"] == "pull_request.review.changes_requested"
    assert needs_work["summary"].endswith("· changes requested")
    comment = event_for("cloud/pull-request-comment-created.json")
    line = summary(comment)
    assert line["summary"].endswith(f"· comment {comment['comment']['id']} on {comment['comment']['inline']['path']}")
    assert comment["comment"]["text"] not in line["summary"]
