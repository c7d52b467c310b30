"""What repositories and their pages look like to bitbridge, the same for both flavors.

Nothing here knows about tokens: the flavors' listing functions take a `Fetch` (url, params) -> JSON,
which the caller builds around its token (and its retry policy). A page cursor is a string: Cloud's
`next` URL, Data Center's `start`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from bitbridge.timestamps import iso

Fetch = Callable[[str, dict[str, Any] | None], Any]
#: GET (url, what, params) -> Bitbucket's answer (a `requests.Response`), errors raised: `calls.Caller.get`.
Get = Callable[[str, str, dict[str, Any] | None], Any]

#: What an import can copy after the repository itself, in order (a flavor may leave some out).
ENTITIES = ("branches", "tags", "pull_requests", "issues")


@dataclass(frozen=True)
class Page:
    values: list[dict[str, Any]]
    next: str | None  # cursor of the following page, None on the last


@dataclass(frozen=True)
class HookState:
    """A hook as the reconciler checks it; `secret_set` is None where Bitbucket does not say (DC)."""

    url: str
    active: bool
    events: list[str]
    secret_set: bool | None


def iso_utc(moment: datetime) -> str:
    """A timestamp as the reconciler compares them: UTC, microseconds, `Z`."""
    return iso(moment, timespec="microseconds")


def hook_or_none(fetch: Fetch, url: str) -> dict[str, Any] | None:
    """The hook at `url`, or None when Bitbucket has none there (deleted)."""
    return found_or_none(fetch, url)


def found_or_none(fetch: Fetch, url: str) -> dict[str, Any] | None:
    """The object at `url`, or None when Bitbucket answers 404 (it is gone)."""
    from bitbridge.bitbucket.http import BitbucketError

    try:
        return dict(fetch(url, None))
    except BitbucketError as exc:
        if exc.status == 404:
            return None
        raise


@dataclass(frozen=True)
class Repo:
    """What bitbridge needs to know about a repository, the same for both flavors."""

    id: str  # Cloud uuid with braces, Data Center numeric id as a string (as in events)
    full_name: str  # workspace/slug or PROJECT_KEY/slug (personal: ~USER/slug)
    owner: str  # workspace slug or project key
    slug: str
    name: str
    description: str
    is_private: bool
    default_branch: str | None
    has_issues: bool
    html_url: str | None
    updated_on: str | None
    size: int | None = None  # bytes of git data, where Bitbucket says (Cloud)

    def public(self) -> dict[str, Any]:
        """What a listing shows. Bitbucket documents no limit on a name or a description, so both are cut to
        what a picker shows (a cut one ends with an ellipsis and says so): one repository must not make an
        answer too big to send (Lambda's 6 MB) for everyone who can see it."""
        description = clipped(self.description, MAX_DESCRIPTION)
        return {
            "id": self.id,
            "full_name": self.full_name,
            "owner": self.owner,
            "slug": self.slug,
            "name": clipped(self.name, MAX_NAME),
            "description": description,
            "description_truncated": description != self.description,
            "is_private": self.is_private,
            "default_branch": self.default_branch,
            "html_url": self.html_url,
            "updated_on": self.updated_on,
        }


MAX_NAME = 200
MAX_DESCRIPTION = 1000
#: A listing answer's repositories, as JSON: far under Lambda's 6 MB response limit, whatever they hold.
MAX_LISTING_BYTES = 1_000_000


def clipped(text: str, limit: int) -> str:
    """`text`, or its first `limit` - 1 characters and an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class ByteBudget:
    """What is left of a listing answer's size, so a page stops early (its cursor goes on from there) rather
    than grow past what can be sent: the count limit alone bounds items, not bytes."""

    left: int = MAX_LISTING_BYTES
    taken: int = 0

    def take(self, repos: list[Repo], room: int) -> list[Repo]:
        """The first of `repos` (at most `room`) that still fit; never none at all, so a listing moves on."""
        out: list[Repo] = []
        for repo in repos[: max(room, 0)]:
            size = len(json.dumps(repo.public()))
            if size > self.left and self.taken:
                break
            self.left -= size
            self.taken += 1
            out.append(repo)
        return out


@dataclass(frozen=True)
class ListQuery:
    """What a repository listing asks for: whose, which, from where (a previous `Listed.state`), how many."""

    username: str  # the user's Bitbucket username (Data Center lists their personal project by it)
    search: str | None
    scope: str | None  # a workspace (Cloud) or project key (Data Center)
    state: dict[str, Any] | None
    limit: int


class BadListState(ValueError):
    """A listing state (from a client's cursor) that the flavor never hands out."""


def counter(state: dict[str, Any], name: str, low: int, high: int) -> int:
    """An integer field of a listing state within [low, high] (BadListState otherwise; booleans are not numbers)."""
    value = state.get(name, low)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadListState(f"{name} is not a position")
    return value


@dataclass(frozen=True)
class Listed:
    """One answer of a repository listing: the repositories, and where the next answer starts (None: done)."""

    repositories: list[Repo]
    state: dict[str, Any] | None


def split_full_name(full_name: str) -> tuple[str, str]:
    owner, sep, slug = full_name.strip().strip("/").partition("/")
    if not sep or not owner or not slug or "/" in slug:
        raise ValueError(f"not a repository full name (owner/slug): {full_name!r}")
    return owner, slug


def q(part: str) -> str:
    """A URL path segment (`~` kept: Data Center's personal project keys start with it)."""
    return quote(part, safe="~")


def pull_request_open(pr: dict[str, Any]) -> bool:
    return str(pr.get("state", "")).upper() == "OPEN"


def hook_id(hook: dict[str, Any]) -> str:
    """Bitbucket's id of a hook: Cloud's `uuid`, Data Center's numeric `id`."""
    return str(hook.get("uuid") or hook.get("id"))
