"""The X-Event-Key values bitbridge's hook subscribes to, per flavor: Bitbucket's own vocabulary, so here.

The normaliser (`bitbridge.webhooks.normalise`) handles every one of them (a unit test keeps it so), and
the flavors' `webhook_events` hand them to hook installs. Standard library only: the normaliser imports
this on the publisher's cold path.
"""

from __future__ import annotations

from bitbridge.bitbucket import CLOUD, DATACENTER

#: The events bitbridge asks for when it installs a hook. Commit statuses (CI noise) and Cloud issue
#: tracker events are handled when a hand-configured hook sends them, but not subscribed by default.
SUBSCRIBED_EVENTS: dict[str, tuple[str, ...]] = {
    CLOUD: (
        "repo:push",
        "repo:updated",
        "repo:fork",
        "repo:commit_comment_created",
        "pullrequest:created",
        "pullrequest:updated",
        "pullrequest:fulfilled",
        "pullrequest:rejected",
        "pullrequest:approved",
        "pullrequest:unapproved",
        "pullrequest:changes_request_created",
        "pullrequest:changes_request_removed",
        "pullrequest:comment_created",
        "pullrequest:comment_updated",
        "pullrequest:comment_deleted",
    ),
    DATACENTER: (
        "repo:refs_changed",
        "repo:modified",
        "repo:forked",
        "repo:comment:added",
        "repo:comment:edited",
        "repo:comment:deleted",
        "pr:opened",
        "pr:from_ref_updated",
        "pr:modified",
        "pr:merged",
        "pr:declined",
        "pr:deleted",
        "pr:reviewer:updated",
        "pr:reviewer:approved",
        "pr:reviewer:unapproved",
        "pr:reviewer:changes_requested",
        "pr:comment:added",
        "pr:comment:edited",
        "pr:comment:deleted",
    ),
}
