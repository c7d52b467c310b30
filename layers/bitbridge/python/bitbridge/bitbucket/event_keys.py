"""The X-Event-Key values bitbridge's hook subscribes to, per flavor: Bitbucket's own vocabulary, so here.

The normaliser (`bitbridge.webhooks.normalise`) handles every one of them (a unit test keeps it so), and
the flavors' `webhook_events` hand them to hook installs. Standard library only: the normaliser imports
this on the publisher's cold path.
"""

from __future__ import annotations

from bitbridge.bitbucket import CLOUD, DATACENTER

#: The events bitbridge asks for when it installs a hook. Cloud issue tracker events are handled when a
#: hand-configured hook sends them, but not subscribed by default. Commit statuses are subscribed since products
#: set them through bitbridge (issue 26); Data Center has no build-status event.
SUBSCRIBED_EVENTS: dict[str, tuple[str, ...]] = {
    CLOUD: (
        "repo:push",
        "repo:updated",
        "repo:fork",
        "repo:commit_comment_created",
        "repo:commit_status_created",
        "repo:commit_status_updated",
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
        # Not pr:reviewer:changes_requested, which Atlassian's event page names: a live instance refuses a hook
        # subscribed to it ("the event ... is unknown"), which fails the whole install (infra/emulator/README.md).
        "pr:reviewer:needs_work",
        "pr:comment:added",
        "pr:comment:edited",
        "pr:comment:deleted",
    ),
}
