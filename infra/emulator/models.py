"""In-memory state of the emulated Bitbucket (Cloud and Data Center share one backend).

Behaviour lives here; wire formats live in ``cloud.py`` / ``datacenter.py`` (moto's models/responses split).
Every public method takes ``self.lock`` so the threaded HTTP servers, the control API and tests calling the
backend directly all see consistent state.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .git import DIR_MODE, GitError, GitRepo, MergeConflict, Signature

CLOUD = "cloud"
DC = "datacenter"

# Repository slugs as Bitbucket documents them ("What is a repository slug?", support.atlassian.com): ASCII
# letters, digits, `_`, `-` and `.`; Cloud's at most 62 characters, with no `--` and neither starting nor
# ending with `-` (unless the slug is all dashes); Data Center's starting with a letter or digit, with no
# documented length. No limit is documented for a repository's name or description on either flavor (nor in
# either OpenAPI document), so the emulator takes any length there, as Bitbucket may.
CLOUD_SLUG_MAX = 62
_SLUG = {
    CLOUD: re.compile(r"-{1,62}|(?!.*--)[A-Za-z0-9_.](?:[A-Za-z0-9_.-]{0,60}[A-Za-z0-9_.])?"),
    DC: re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*"),
}


def check_repository_slug(flavor: str, slug: str) -> None:
    if not _SLUG[flavor].fullmatch(slug):
        limit = (
            f"at most {CLOUD_SLUG_MAX} characters, no '--', not starting or ending with '-'"
            if flavor == CLOUD
            else "starting with a letter or digit"
        )
        raise BadRequest(f"Invalid repository slug {slug!r}: letters, digits, '_', '-' and '.', {limit}.")


FLAVORS = (CLOUD, DC)

# Repository permission levels, ordered. Cloud roles and DC REPO_* permissions both map onto these.
LEVELS = {"read": 1, "write": 2, "admin": 3}
ZERO_HASH = "0" * 40

# Review statuses (Data Center's words; Cloud calls NEEDS_WORK "changes requested"), merge strategies the backend
# knows (each front-end maps its flavour's names onto these), Data Center's anchor line types.
REVIEW_STATUSES = ("APPROVED", "NEEDS_WORK", "UNAPPROVED")
MERGE_STRATEGIES = ("merge_commit", "squash", "fast_forward")
LINE_TYPES = ("ADDED", "REMOVED", "CONTEXT")

# Fixed epoch for seeded data so every seed produces identical timestamps.
SEED_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)


def now() -> datetime:
    return datetime.now(UTC)


def epoch(dt: datetime) -> int:
    """A git timestamp (whole seconds)."""
    return int(dt.timestamp())


# What a new repository's first commit holds; the `commits` form of a push appends to CHANGES_FILE.
INITIAL_FILES = {"README.md": b"# Repository\n\nCreated by the Bitbucket emulator.\n"}
CHANGES_FILE = "CHANGES.md"


def stable_uuid(*parts: object) -> str:
    """Deterministic UUID (for seeded objects) so seeds are reproducible."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "bitbridge-emulator:" + ":".join(map(str, parts))))


# ---------------------------------------- errors
class EmulatorError(Exception):
    """Domain error; each front-end renders it in its own flavour (see cloud.py / datacenter.py)."""

    status = 400
    kind = "bad_request"

    def __init__(self, message: str, **detail: object) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class BadRequest(EmulatorError):
    status, kind = 400, "bad_request"


class Unauthorized(EmulatorError):
    status, kind = 401, "unauthorized"


class Forbidden(EmulatorError):
    status, kind = 403, "forbidden"


class NotFound(EmulatorError):
    status, kind = 404, "not_found"


class Conflict(EmulatorError):
    status, kind = 409, "conflict"


class PullRequestClosed(Conflict):
    """The pull request is merged or declined: it cannot be merged, declined or reviewed again."""


class MergeConflicted(Conflict):
    """A pull request whose source and destination changed the same lines: it stays open (each front-end words
    it as its flavour does)."""


class OAuthError(Exception):
    """RFC 6749 error for the token endpoints: rendered as {"error", "error_description"}."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(f"{error}: {description}")
        self.error, self.description, self.status = error, description, status


# ---------------------------------------- entities
@dataclass(slots=True)
class User:
    name: str  # username == DC slug == Cloud nickname
    display_name: str
    email: str
    id: int
    uuid: str
    account_id: str
    created_on: datetime
    is_admin: bool = False


@dataclass(slots=True)
class Workspace:  # Cloud
    slug: str
    name: str
    uuid: str
    members: dict[str, str]  # user -> "owner" | "collaborator" | "member"
    project_key: str
    project_name: str
    project_uuid: str
    created_on: datetime


@dataclass(slots=True)
class Project:  # Data Center (personal projects have key "~USER" and an owner)
    key: str
    name: str
    id: int
    description: str
    permissions: dict[str, str]  # user -> read | write | admin (PROJECT_READ/WRITE/ADMIN)
    owner: str | None = None
    public: bool = False

    @property
    def personal(self) -> bool:
        return self.owner is not None


@dataclass(slots=True)
class Commit:
    hash: str
    message: str
    author: str
    date: datetime
    parents: list[str]


@dataclass(slots=True)
class Ref:
    name: str
    target: str
    date: datetime
    message: str
    author: str


@dataclass(slots=True)
class Reviewer:
    user: str
    approved: bool = False
    status: str = "UNAPPROVED"  # DC: UNAPPROVED | NEEDS_WORK | APPROVED (Cloud: approved / changes_requested)
    last_reviewed: str | None = None
    participated_on: datetime | None = None
    # REVIEWER: asked to review. PARTICIPANT: reviewed (approved, requested changes) without being asked.
    role: str = "REVIEWER"


@dataclass(slots=True)
class Comment:
    id: int
    author: str
    text: str
    created_on: datetime
    updated_on: datetime
    parent: int | None = None
    inline: dict | None = None  # {"path", "from", "to"}: the old-side and new-side line (one of them set)
    version: int = 0  # bumped by each edit (Data Center's optimistic locking)
    deleted: bool = False  # Cloud keeps a deleted comment, marked; Data Center removes it
    commit: str | None = None  # the pull request's source commit when the comment was written
    line_type: str | None = None  # Data Center's lineType (ADDED | REMOVED | CONTEXT) when given


@dataclass(slots=True)
class CommitStatus:
    """A build status on a commit, one per (commit, key): setting the same key again updates it."""

    commit: str
    key: str
    state: str  # Cloud INPROGRESS | SUCCESSFUL | FAILED | STOPPED; Data Center also CANCELLED | UNKNOWN
    url: str
    name: str
    description: str
    author: str
    created_on: datetime
    updated_on: datetime
    refname: str | None = None  # Cloud `refname`, Data Center `ref` (refs/heads/...)
    extra: dict = field(default_factory=dict)  # Data Center: buildNumber, duration, parent, testResults


@dataclass(slots=True)
class Activity:
    """One entry of a pull request's activity (Cloud `/activity`, Data Center `/activities`), oldest first.
    ``kind``: opened | updated | rescoped | approved | unapproved | changes_requested | commented | merged |
    declined; ``data`` what each flavour renders (the comment id, the previous source commit, ...)."""

    id: int
    kind: str
    user: str
    at: datetime
    data: dict = field(default_factory=dict)


@dataclass(slots=True)
class PullRequest:
    id: int
    title: str
    description: str
    state: str  # OPEN | MERGED | DECLINED | SUPERSEDED
    author: str
    source_branch: str
    source_hash: str
    dest_branch: str
    dest_hash: str
    created_on: datetime
    updated_on: datetime
    reviewers: list[Reviewer] = field(default_factory=list)
    participants: list[str] = field(default_factory=list)
    comments: list[Comment] = field(default_factory=list)
    closed_on: datetime | None = None
    closed_by: str | None = None
    merge_hash: str | None = None
    reason: str = ""
    version: int = 0
    close_source_branch: bool = False
    draft: bool = False
    activity: list[Activity] = field(default_factory=list)


@dataclass(slots=True)
class Issue:
    id: int
    title: str
    content: str
    state: str
    kind: str
    priority: str
    reporter: str
    assignee: str | None
    created_on: datetime
    updated_on: datetime
    comments: list[Comment] = field(default_factory=list)  # Cloud issue comments, oldest first


@dataclass(slots=True)
class Hook:
    id: str  # Cloud: "{uuid}"; DC: numeric string
    url: str
    events: list[str]
    description: str = ""
    active: bool = True
    secret: str | None = None
    created_at: datetime = field(default_factory=now)
    updated_at: datetime = field(default_factory=now)
    ssl_verification_required: bool = True
    # Delivery health (Data Center's circuit breaker; see webhooks.py). Never rendered by the REST API.
    consecutive_failures: int = 0
    skip_until: float | None = None  # time.monotonic() until which DC skips this hook
    disabled_reason: str | None = None  # set when the emulator turned `active` off after failures


@dataclass(slots=True)
class Repository:
    flavor: str
    owner: str  # Cloud workspace slug, or DC project key (personal: "~ALICE")
    slug: str
    name: str
    id: int
    uuid: str
    description: str
    is_private: bool
    created_on: datetime
    updated_on: datetime
    language: str = ""
    default_branch: str = "main"
    branches: dict[str, Ref] = field(default_factory=dict)
    tags: dict[str, Ref] = field(default_factory=dict)
    git: GitRepo = field(default_factory=GitRepo)  # every commit, tree and blob (refs are above)
    pull_requests: dict[int, PullRequest] = field(default_factory=dict)
    issues: dict[int, Issue] = field(default_factory=dict)
    hooks: dict[str, Hook] = field(default_factory=dict)
    deploy_keys: dict[int, Any] = field(default_factory=dict)  # SSH keys with access (keys.py): id -> DeployKey
    permissions: dict[str, str] = field(default_factory=dict)  # user -> read | write | admin
    next_comment_id: int = 1
    next_activity_id: int = 1
    # Build statuses by (commit, key). Data Center's older commit-wide API reads them across repositories.
    statuses: dict[tuple[str, str], CommitStatus] = field(default_factory=dict)
    next_pr_id: int = 1  # ids are never reused, even after a DC pull request is deleted
    next_issue_id: int = 1
    # Every ref created, moved or deleted, oldest first (DC's ref change activity): plain dicts.
    ref_changes: list[dict] = field(default_factory=list)
    pushes: int = 0  # pushes of the `commits` form so far (each writes a line naming it: distinct commits)

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.slug}"

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.flavor, self.owner.lower(), self.slug.lower())


@dataclass(slots=True)
class OAuthClient:
    flavor: str
    client_id: str
    client_secret: str
    redirect_uri: str
    scopes: list[str]
    name: str = "bitbridge"


@dataclass(slots=True)
class AuthCode:
    code: str
    flavor: str
    client_id: str
    user: str
    redirect_uri: str | None
    scopes: list[str]
    expires_at: float
    code_challenge: str | None = None
    code_challenge_method: str | None = None
    used: bool = False


@dataclass(slots=True)
class Token:
    flavor: str
    client_id: str
    user: str
    scopes: list[str]
    access_token: str
    refresh_token: str
    access_expires_at: float
    refresh_expires_at: float
    redirect_uri: str | None = None
    revoked: bool = False
    superseded_at: float | None = None  # when this refresh token was rotated away
    code: str | None = None  # the authorization code it was issued for (reuse revokes it)


@dataclass
class Config:
    """Tunable behaviour; change at runtime via ``POST /_emulator/config`` or ``backend.config``."""

    cloud_access_token_lifetime: int = 7200
    cloud_code_lifetime: float = 300.0
    cloud_refresh_grace_seconds: float = 600.0  # rotated refresh token keeps working this long
    cloud_refresh_token_lifetime: float = 90 * 86400.0
    dc_access_token_lifetime: int = 3600
    dc_code_lifetime: float = 10.0
    dc_refresh_token_lifetime: float = 30 * 86400.0
    # `iss` in authorization responses (RFC 9207): None = not sent, as Atlassian documents neither flavour
    # sending it; "self" = this server's issuer identifier (its web root), as a server implementing RFC 9207
    # sends; any other text is sent as given (a mix-up: another server's name).
    cloud_authorization_response_iss: str | None = None
    dc_authorization_response_iss: str | None = None
    delivery_timeout: float = 10.0  # Bitbucket gives a receiver 10 s to answer
    delivery_retry_delay: float = 0.5
    cloud_max_pagelen: int = 100
    cloud_max_pagelen_pullrequests: int = 50  # bitbucket.org caps the pull-request list lower
    dc_max_limit: int = 1000
    # DC circuit breaker (plugin.webhooks.http.backoff.*): after this many consecutive failed deliveries a
    # hook is skipped for dc_hook_skip_seconds, growing by dc_hook_skip_exponent per further failure up to
    # dc_hook_skip_max_seconds. 0 turns it off. dc_hook_on_failures = "skip" (what DC documents) or
    # "disable" (the emulator sets the hook's `active` to false until a PUT re-enables it).
    dc_hook_failure_threshold: int = 5
    dc_hook_on_failures: str = "skip"
    dc_hook_skip_seconds: float = 10.0
    dc_hook_skip_exponent: float = 2.0
    dc_hook_skip_max_seconds: float = 36000.0
    # Rate limits (ratelimit.py): Cloud's rolling window per resource class, Data Center's token bucket per user.
    rate_limits_enabled: bool = True
    rate_limit_window_seconds: float = 3600.0
    rate_limit_counting: str = "per_user"  # Cloud only: "per_user" | "per_consumer" (the OAuth client)
    cloud_rate_limits: dict[str, int | None] = field(
        default_factory=lambda: {"repositories": 1000, "webhooks": 1000, "raw": 5000, "git": 60000, "other": 1000}
    )
    dc_rate_limit: dict[str, float] = field(default_factory=lambda: {"capacity": 60, "refill_per_second": 5})


@dataclass(slots=True)
class Event:
    """A state change that may fire webhooks. ``data`` holds what the payload renderers need."""

    flavor: str
    key: str
    repo: Repository
    actor: str
    data: dict


# ---------------------------------------- backend
class Backend:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.config = Config()
        self.listeners: list[Callable[[Event], None]] = []
        self.public_urls: dict[str, str] = {CLOUD: "http://127.0.0.1:8990", DC: "http://127.0.0.1:7990"}
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.config = Config()
            self.users: dict[str, User] = {}
            self.workspaces: dict[str, Workspace] = {}
            self.projects: dict[str, Project] = {}
            self.repos: dict[tuple[str, str, str], Repository] = {}
            self.clients: dict[tuple[str, str], OAuthClient] = {}
            self.codes: dict[str, AuthCode] = {}
            self.access_tokens: dict[str, Token] = {}
            self.refresh_tokens: dict[str, Token] = {}
            self._ids = {"user": 0, "project": 0, "repo": 0, "hook": 0, "ref_change": 0}

    def _next_id(self, kind: str) -> int:
        self._ids[kind] += 1
        return self._ids[kind]

    def emit(self, event: Event) -> None:
        for listener in list(self.listeners):
            listener(event)

    # ---------------------------------------- users
    def add_user(
        self, name: str, display_name: str | None = None, email: str | None = None, is_admin: bool = False
    ) -> User:
        with self.lock:
            if name.lower() in self.users:
                return self.users[name.lower()]
            user = User(
                name=name.lower(),
                display_name=display_name or name.title(),
                email=email or f"{name.lower()}@example.com",
                id=self._next_id("user"),
                uuid="{" + stable_uuid("user", name.lower()) + "}",
                account_id="5f" + stable_uuid("account", name.lower()).replace("-", "")[:22],
                created_on=SEED_EPOCH,
                is_admin=is_admin,
            )
            self.users[user.name] = user
            return user

    def get_user(self, name: str) -> User:
        with self.lock:
            user = self.users.get(name.lower().lstrip("~"))
            if user is None:
                for candidate in self.users.values():  # Cloud also addresses users by {uuid}
                    if name in (candidate.uuid, candidate.account_id):
                        return candidate
                raise NotFound(f"User {name} does not exist.", entity="user", ident=name)
            return user

    # ---------------------------------------- containers
    def add_workspace(self, slug: str, name: str | None = None, members: dict[str, str] | None = None) -> Workspace:
        with self.lock:
            key = slug.lower()
            if key in self.workspaces:
                ws = self.workspaces[key]
                ws.members.update(members or {})
                return ws
            ws = Workspace(
                slug=key,
                name=name or slug.title(),
                uuid="{" + stable_uuid("workspace", key) + "}",
                members=dict(members or {}),
                project_key="PROJ",
                project_name="Untitled project",
                project_uuid="{" + stable_uuid("wsproject", key) + "}",
                created_on=SEED_EPOCH,
            )
            self.workspaces[key] = ws
            return ws

    def get_workspace(self, slug: str) -> Workspace:
        with self.lock:
            ws = self.workspaces.get(slug.lower())
            if ws is None:
                for candidate in self.workspaces.values():
                    if candidate.uuid == slug:
                        return candidate
                raise NotFound(f"No workspace with identifier '{slug}'.", entity="workspace", ident=slug)
            return ws

    def add_project(
        self,
        key: str,
        name: str | None = None,
        permissions: dict[str, str] | None = None,
        description: str = "",
        public: bool = False,
    ) -> Project:
        with self.lock:
            if key.upper() in self.projects:
                project = self.projects[key.upper()]
                project.permissions.update(permissions or {})
                return project
            project = Project(
                key=key.upper(),
                name=name or key.title(),
                id=self._next_id("project"),
                description=description,
                permissions=dict(permissions or {}),
                public=public,
            )
            self.projects[project.key] = project
            return project

    def personal_project(self, username: str) -> Project:
        with self.lock:
            user = self.get_user(username)
            key = "~" + user.name.upper()
            if key not in self.projects:
                self.projects[key] = Project(
                    key=key,
                    name=user.display_name,
                    id=self._next_id("project"),
                    description="",
                    permissions={user.name: "admin"},
                    owner=user.name,
                )
            return self.projects[key]

    def get_project(self, key: str) -> Project:
        with self.lock:
            if key.startswith("~"):
                return self.personal_project(key[1:])
            project = self.projects.get(key.upper())
            if project is None:
                raise NotFound(f"Project {key} does not exist.", entity="project", ident=key)
            return project

    # ---------------------------------------- repositories
    def add_repository(
        self,
        flavor: str,
        owner: str,
        slug: str,
        *,
        name: str | None = None,
        description: str = "",
        is_private: bool = True,
        language: str = "",
        default_branch: str = "main",
        permissions: dict[str, str] | None = None,
        created_on: datetime | None = None,
        author: str | None = None,
        first_commit_at: datetime | None = None,
    ) -> Repository:
        check_repository_slug(flavor, slug)
        with self.lock:
            owner = self.get_workspace(owner).slug if flavor == CLOUD else self.get_project(owner).key
            key = (flavor, owner.lower(), slug.lower())
            if key in self.repos:
                raise Conflict(f"Repository {owner}/{slug} already exists.")
            created = created_on or now()
            repo = Repository(
                flavor=flavor,
                owner=owner,
                slug=slug.lower(),
                name=name or slug,
                id=self._next_id("repo"),
                uuid="{" + stable_uuid("repo", flavor, owner.lower(), slug.lower()) + "}",
                description=description,
                is_private=is_private,
                created_on=created,
                updated_on=created,
                language=language,
                default_branch=default_branch,
                permissions=dict(permissions or {}),
            )
            first_author = author or next(iter(self.users), "")
            files = repo.git.apply(None, write=INITIAL_FILES)
            when = epoch(first_commit_at or created)
            head = repo.git.commit_files([], files, "Initial commit", self.signature(first_author), when)
            repo.branches[default_branch] = Ref(default_branch, head, created, "Initial commit", first_author)
            self.repos[key] = repo
            return repo

    def get_repo(self, flavor: str, owner: str, slug: str) -> Repository:
        with self.lock:
            repo = self.repos.get((flavor, owner.lower(), slug.lower()))
            if repo is None:
                for candidate in self.repos.values():  # Cloud accepts {uuid} in place of the slug
                    if candidate.flavor == flavor and candidate.uuid == slug:
                        return candidate
                raise NotFound(
                    f"Repository {owner}/{slug} does not exist.", entity="repository", ident=f"{owner}/{slug}"
                )
            return repo

    def list_repos(self, flavor: str, owner: str | None = None) -> list[Repository]:
        with self.lock:
            repos = [r for r in self.repos.values() if r.flavor == flavor]
            if owner is not None:
                repos = [r for r in repos if r.owner.lower() == owner.lower()]
            return repos

    def permission(self, user: str | None, repo: Repository) -> int:
        """Effective permission level (0 = none) of ``user`` on ``repo``."""
        with self.lock:
            if user is None:
                return 0 if repo.is_private else LEVELS["read"]
            level = LEVELS.get(repo.permissions.get(user, ""), 0)
            if repo.flavor == CLOUD:
                ws = self.workspaces.get(repo.owner.lower())
                role = ws.members.get(user) if ws else None
                if role == "owner":
                    level = max(level, LEVELS["admin"])
                elif role and not repo.is_private:
                    level = max(level, LEVELS["read"])
            else:
                project = self.projects.get(repo.owner.upper())
                if project:
                    level = max(level, LEVELS.get(project.permissions.get(user, ""), 0))
                    if project.public:
                        level = max(level, LEVELS["read"])
            u = self.users.get(user)
            if u and u.is_admin and repo.flavor == DC:
                level = LEVELS["admin"]  # DC system admins see everything
            if not repo.is_private:
                level = max(level, LEVELS["read"])
            return level

    def require(self, user: str | None, repo: Repository, level: str) -> None:
        have = self.permission(user, repo)
        if have == 0:
            # Both services hide private repositories from users without access.
            raise NotFound(f"Repository {repo.full_name} does not exist.", entity="repository", ident=repo.full_name)
        if have < LEVELS[level]:
            raise Forbidden(
                f"You are not permitted to access this resource ({level} permission required).",
                required=level,
            )

    def update_repository(
        self, repo: Repository, actor: str, *, name: str | None = None, description: str | None = None
    ) -> Repository:
        with self.lock:
            old = {"name": repo.name, "description": repo.description, "slug": repo.slug}
            if name is not None:
                repo.name = name
            if description is not None:
                repo.description = description
            repo.updated_on = now()
            self.emit(Event(repo.flavor, "repo:updated", repo, actor, {"old": old}))
            return repo

    # ---------------------------------------- refs / commits
    def signature(self, author: str) -> Signature:
        """A git author for a user name (display name and e-mail), or for a raw "Name <email>" string."""
        user = self.users.get(author)
        if user is not None:
            return Signature(user.display_name, user.email)
        name, _, email = author.partition(" <")
        return Signature(name or "Unknown", email.rstrip(">") or "unknown@example.com")

    def commit_info(self, repo: Repository, sha: str) -> Commit:
        """A commit of ``repo``, read from its git objects (author as a user name when the e-mail is a user's)."""
        try:
            c = repo.git.commit(sha)
        except GitError as exc:
            raise NotFound(f"Commit {sha} does not exist in {repo.full_name}.", entity="commit", ident=sha) from exc
        raw = c.author.decode(errors="replace")
        email = raw.rpartition("<")[2].rstrip(">")
        author = next((u.name for u in self.users.values() if u.email == email), raw)
        message = c.message.decode(errors="replace")
        return Commit(
            c.id.decode(),
            message[:-1] if message.endswith("\n") else message,
            author,
            datetime.fromtimestamp(c.author_time, UTC),
            [p.decode() for p in c.parents],
        )

    def known_commit(self, repo: Repository, sha: str) -> bool:
        return repo.git.has_commit(sha)

    def resolve(self, repo: Repository, revision: str) -> str:
        """A commit id for a branch, a tag, a full or abbreviated commit id; NotFound otherwise."""
        for refs in (repo.branches, repo.tags):
            if revision in refs:
                return refs[revision].target
        for prefix, refs in (("refs/heads/", repo.branches), ("refs/tags/", repo.tags)):
            if revision.startswith(prefix) and revision[len(prefix) :] in refs:
                return refs[revision[len(prefix) :]].target
        sha = repo.git.resolve_prefix(revision)
        if sha is None:
            raise NotFound(f"Commit {revision} does not exist in {repo.full_name}.", entity="commit", ident=revision)
        return sha

    def push(
        self,
        repo: Repository,
        branch: str,
        actor: str,
        commits: int | list[str] | None = None,
        *,
        author: str | None = None,
        force: bool = False,
        to: str | None = None,
        files: dict[str, bytes] | None = None,
        delete: list[str] | None = None,
        rename: dict[str, str] | None = None,
        message: str | None = None,
    ) -> list[Commit]:
        """A push to ``branch`` (created from the default branch if new); fires push events. Three forms:

        - ``files`` / ``delete`` / ``rename``: one commit with exactly that content change (``message``);
        - ``commits`` (the default, 1): that many commits (or one per message), each appending a line to
          ``CHANGES.md``;
        - ``to`` alone: the branch moves to that existing commit.

        With content, ``to`` is the commit the new commits are made on (default: the branch's head). A move that is
        not a fast-forward (a rollback, a rewrite) needs ``force``, as ``git push`` does."""
        with self.lock:
            self.get_user(actor)
            old_ref = repo.branches.get(branch)
            when = now()
            content = files is not None or delete is not None or rename is not None
            if to is not None:
                if not repo.git.has_commit(to):
                    raise BadRequest(f"Commit {to} does not exist in {repo.full_name}; give a full commit hash.")
                base = to
            else:
                base = old_ref.target if old_ref else repo.branches[repo.default_branch].target
            who = author or actor
            sig = self.signature(who)
            new: list[Commit] = []
            head = base
            try:
                if content:
                    changed = repo.git.apply(base, write=files, delete=delete or (), rename=rename)
                    text = message or "Update files"
                    head = repo.git.commit_files([base], changed, text, sig, epoch(when))
                    new.append(self.commit_info(repo, head))
                elif commits is not None or to is None:
                    commits = 1 if commits is None else commits
                    messages = [f"Commit {i + 1}" for i in range(commits)] if isinstance(commits, int) else commits
                    if not messages:
                        raise BadRequest("A push needs at least one commit.")
                    for text in messages:
                        repo.pushes += 1
                        log = repo.git.lookup(head, CHANGES_FILE)
                        lines = repo.git.read(log[1]) if log and log[0] != DIR_MODE else b""
                        entry = f"- {text} (push {repo.pushes} to {branch})\n".encode()
                        changed = repo.git.apply(head, write={CHANGES_FILE: lines + entry})
                        head = repo.git.commit_files([head], changed, text, sig, epoch(when))
                        new.append(self.commit_info(repo, head))
            except GitError as exc:
                raise BadRequest(str(exc)) from exc
            if old_ref is not None and head == old_ref.target:
                return new  # nothing moves: git reports "Everything up-to-date" and Bitbucket fires nothing
            if old_ref is not None and not force and not repo.git.is_ancestor(old_ref.target, head):
                raise BadRequest(
                    f'Moving {branch} to {head[:12]} is not a fast-forward; pass "force": true to move it anyway.'
                )
            tip = self.commit_info(repo, head)
            self._move_branch(repo, branch, Ref(branch, head, when, tip.message, tip.author), actor, new, force)
            return new

    def _move_branch(
        self,
        repo: Repository,
        branch: str,
        head: Ref,
        actor: str,
        commits: list[Commit],
        forced: bool,
        trigger: str | None = None,
    ) -> None:
        """Point ``branch`` at ``head``: a push event for the ref, and a pull-request push for each open pull
        request from that branch (pullrequest:push / pr:from_ref_updated)."""
        old_ref = repo.branches.get(branch)
        repo.branches[branch] = head
        change = {"kind": "branch", "name": branch, "old": old_ref, "new": head, "commits": commits, "forced": forced}
        self._emit_ref_change(repo, actor, change, trigger)
        for pr in repo.pull_requests.values():
            if pr.state == "OPEN" and pr.source_branch == branch and pr.source_hash != head.target:
                previous = pr.source_hash
                pr.source_hash = head.target
                pr.updated_on = head.date
                pr.version += 1
                self._record(repo, pr, "rescoped", actor, head.date, previous=previous, current=head.target)
                data = {"pr": pr, "previous_from_hash": previous}
                self.emit(Event(repo.flavor, "pullrequest:push", repo, actor, data))

    def create_ref(
        self, repo: Repository, kind: str, name: str, actor: str, target: str | None = None, message: str = ""
    ) -> Ref:
        with self.lock:
            refs = repo.branches if kind == "branch" else repo.tags
            if name in refs:
                raise Conflict(f"{kind.title()} {name} already exists.")
            if target is None:
                target = repo.branches[repo.default_branch].target
            else:
                try:
                    target = self.resolve(repo, target)
                except NotFound as exc:
                    raise BadRequest(f"{exc.message} Give a branch, a tag or a commit.") from exc
            ref = Ref(name, target, now(), message or f"{kind} {name}", actor)
            refs[name] = ref
            self._emit_ref_change(repo, actor, {"kind": kind, "name": name, "old": None, "new": ref, "commits": []})
            return ref

    def delete_ref(self, repo: Repository, kind: str, name: str, actor: str) -> None:
        with self.lock:
            refs = repo.branches if kind == "branch" else repo.tags
            if name not in refs:
                raise NotFound(f"{kind.title()} {name} does not exist.", entity=kind, ident=name)
            if kind == "branch" and name == repo.default_branch:
                raise BadRequest("The default branch cannot be deleted.")
            old = refs.pop(name)
            self._emit_ref_change(repo, actor, {"kind": kind, "name": name, "old": old, "new": None, "commits": []})

    def _log_ref_change(
        self,
        repo: Repository,
        actor: str,
        kind: str,
        name: str,
        old: str | None,
        new: str | None,
        *,
        forced: bool = False,
        trigger: str = "push",
    ) -> None:
        repo.ref_changes.append(
            {
                "id": self._next_id("ref_change"),
                "created": now().timestamp(),
                "ref_id": ("refs/heads/" if kind == "branch" else "refs/tags/") + name,
                "display_id": name,
                "kind": kind,
                "from_hash": old or ZERO_HASH,
                "to_hash": new or ZERO_HASH,
                "type": "ADD" if old is None else "DELETE" if new is None else "UPDATE",
                "forced": forced,
                "trigger": trigger,
                "user": actor,
            }
        )

    def _emit_ref_change(self, repo: Repository, actor: str, change: dict, trigger: str | None = None) -> None:
        """One ref created, moved or deleted: a ``repo:push`` event carrying that single change."""
        touch(repo)  # Cloud's repository updated_on follows pushes (README: "updated_on")
        old, new = change.get("old"), change.get("new")
        kind = change["kind"]
        verb = "create" if old is None else "delete" if new is None else "update"
        self._log_ref_change(
            repo,
            actor,
            kind,
            change["name"],
            old.target if old else None,
            new.target if new else None,
            forced=bool(change.get("forced")),
            trigger=trigger or ("push" if change.get("commits") else f"{kind}-{verb}"),  # as hook triggers name them
        )
        self.emit(Event(repo.flavor, "repo:push", repo, actor, {"changes": [change]}))

    # ---------------------------------------- pull requests
    def get_pr(self, repo: Repository, pr_id: int) -> PullRequest:
        pr = repo.pull_requests.get(int(pr_id))
        if pr is None:
            raise NotFound(f"Pull request {pr_id} does not exist in {repo.full_name}.", entity="pullrequest")
        return pr

    def _record(
        self, repo: Repository, pr: PullRequest, kind: str, user: str, at: datetime | None = None, **data: object
    ) -> None:
        """One entry in the pull request's activity (both flavours render it: `/activity`, `/activities`)."""
        pr.activity.append(Activity(repo.next_activity_id, kind, user, at or now(), dict(data)))
        repo.next_activity_id += 1

    def open_pull_request(
        self,
        repo: Repository,
        actor: str,
        title: str,
        source: str,
        destination: str | None = None,
        description: str = "",
        reviewers: Iterable[str] = (),
        *,
        state: str = "OPEN",
        created_on: datetime | None = None,
        emit: bool = True,
        source_hash: str | None = None,
        merged_at: datetime | None = None,
    ) -> PullRequest:
        """Open a pull request (pushing a commit to ``source`` first if the branch is missing); ``state`` closes
        it at once. Seeds pass ``emit=False`` and the ``source_hash`` of a branch that no longer exists."""
        with self.lock:
            destination = destination or repo.default_branch
            if source not in repo.branches and emit:
                self.push(repo, source, actor, [f"Work on {title}"])
            src = repo.branches.get(source)
            dst = repo.branches.get(destination)
            if dst is None:
                raise BadRequest(f"Branch {destination} does not exist.")
            source_hash = src.target if src else source_hash
            if source_hash is None or not repo.git.has_commit(source_hash):
                raise BadRequest(f"Branch {source} does not exist.")
            pr_id = repo.next_pr_id
            repo.next_pr_id += 1
            created = created_on or now()
            pr = PullRequest(
                id=pr_id,
                title=title,
                description=description,
                state="OPEN",
                author=actor,
                source_branch=source,
                source_hash=source_hash,
                dest_branch=destination,
                dest_hash=dst.target,
                created_on=created,
                updated_on=created,
                reviewers=[Reviewer(r) for r in reviewers if r != actor],
            )
            repo.pull_requests[pr_id] = pr
            self._record(repo, pr, "opened", actor, created)
            if emit:
                self.emit(Event(repo.flavor, "pullrequest:created", repo, actor, {"pr": pr}))
            if state != "OPEN":
                self._close(repo, pr, actor, state, emit=emit, when=created, commit_time=merged_at)
            return pr

    def update_pull_request(
        self,
        repo: Repository,
        pr_id: int,
        actor: str,
        *,
        title: str | None = None,
        description: str | None = None,
        destination: str | None = None,
    ) -> PullRequest:
        with self.lock:
            pr = self.get_pr(repo, pr_id)
            if pr.state != "OPEN":
                raise Conflict("Only open pull requests can be updated.")
            previous = {
                "title": pr.title,
                "description": pr.description,
                "dest_branch": pr.dest_branch,
                "dest_hash": pr.dest_hash,
            }
            if title is not None:
                pr.title = title
            if description is not None:
                pr.description = description
            if destination is not None:
                if destination not in repo.branches:
                    raise BadRequest(f"Branch {destination} does not exist.")
                pr.dest_branch, pr.dest_hash = destination, repo.branches[destination].target
            pr.updated_on = now()
            pr.version += 1
            self._record(repo, pr, "updated", actor, pr.updated_on, previous=previous)
            self.emit(Event(repo.flavor, "pullrequest:updated", repo, actor, {"pr": pr, "previous": previous}))
            return pr

    def _close(
        self,
        repo: Repository,
        pr: PullRequest,
        actor: str,
        state: str,
        *,
        emit: bool = True,
        when: datetime | None = None,
        reason: str = "",
        commit_time: datetime | None = None,
        strategy: str = "merge_commit",
        message: str | None = None,
    ) -> None:
        if pr.state != "OPEN":
            raise PullRequestClosed(f"Pull request {pr.id} is already {pr.state.lower()}.")
        dst = repo.branches.get(pr.dest_branch)
        merged_tree = None
        if state == "MERGED" and dst:
            if strategy == "fast_forward" and not repo.git.is_ancestor(dst.target, pr.source_hash):
                raise BadRequest(
                    f"Pull request {pr.id} cannot be fast-forwarded: {pr.dest_branch} has commits its source lacks."
                )
            if strategy != "fast_forward":
                try:
                    merged_tree = repo.git.merge(dst.target, pr.source_hash)
                except MergeConflict as exc:
                    raise MergeConflicted(f"Pull request {pr.id} has conflicts ({exc}).", paths=exc.paths) from exc
                except GitError as exc:  # e.g. a file on one side where the other has a directory
                    raise MergeConflicted(f"Pull request {pr.id} cannot be merged: {exc}") from exc
        pr.state = state
        pr.closed_on = pr.updated_on = when or now()
        pr.closed_by = actor
        pr.reason = reason
        pr.version += 1
        merge: Commit | None = None
        if state == "MERGED" and dst:
            dated = commit_time or pr.closed_on
            if strategy == "fast_forward":
                merge = self.commit_info(repo, pr.source_hash)
            else:
                # Bitbucket's default strategy is a merge commit on the destination branch (both parents); a
                # squash is one commit on the destination with the merged content.
                default = (
                    f"Merged in {pr.source_branch} (pull request #{pr.id})"
                    if strategy == "merge_commit"
                    else f"{pr.title} (pull request #{pr.id})"
                )
                text = message or default
                parents = [dst.target] if strategy == "squash" else [dst.target, pr.source_hash]
                assert merged_tree is not None
                sha = repo.git.write_commit(
                    merged_tree, [p.encode() for p in parents], text, self.signature(actor), epoch(dated)
                )
                merge = Commit(sha, text, actor, dated, parents)
            pr.merge_hash = merge.hash
        self._record(repo, pr, "merged" if state == "MERGED" else "declined", actor, pr.closed_on, reason=reason)
        if emit:
            key = {"MERGED": "pullrequest:fulfilled", "DECLINED": "pullrequest:rejected"}[state]
            self.emit(Event(repo.flavor, key, repo, actor, {"pr": pr}))
        if merge is not None:
            head = Ref(pr.dest_branch, merge.hash, pr.closed_on, merge.message, actor)  # moved when it merged
            if emit:
                # The merge moves the destination branch, and Bitbucket reports that as a push of the merge
                # commit: Cloud fires repo:push, Data Center repo:refs_changed (its ref-change hooks run for every
                # ref update Bitbucket itself makes, pull-request merges included), after the pull-request event.
                self._move_branch(repo, pr.dest_branch, head, actor, [merge], False, trigger="pull-request-merge")
            else:  # seeded history
                repo.branches[pr.dest_branch] = head

    def merge_pull_request(
        self, repo: Repository, pr_id: int, actor: str, strategy: str = "merge_commit", message: str | None = None
    ) -> PullRequest:
        """Merge: ``strategy`` merge_commit (Bitbucket's default), squash or fast_forward; ``message`` for the
        new commit. Conflicting changes raise MergeConflicted and the pull request stays open."""
        if strategy not in MERGE_STRATEGIES:
            raise BadRequest(f"Unsupported merge strategy {strategy!r}: use one of {', '.join(MERGE_STRATEGIES)}.")
        with self.lock:
            pr = self.get_pr(repo, pr_id)
            self._close(repo, pr, actor, "MERGED", strategy=strategy, message=message)
            return pr

    def decline_pull_request(self, repo: Repository, pr_id: int, actor: str, reason: str = "") -> PullRequest:
        with self.lock:
            pr = self.get_pr(repo, pr_id)
            self._close(repo, pr, actor, "DECLINED", reason=reason)
            return pr

    def delete_pull_request(self, repo: Repository, pr_id: int, actor: str) -> None:
        with self.lock:
            pr = self.get_pr(repo, pr_id)
            del repo.pull_requests[pr.id]
            self.emit(Event(repo.flavor, "pullrequest:deleted", repo, actor, {"pr": pr}))

    # ---------------------------------------- reviews
    def review(
        self, repo: Repository, pr_id: int, actor: str, status: str, *, emit: bool = True, when: datetime | None = None
    ) -> tuple[PullRequest, Reviewer]:
        """Set ``actor``'s review of an open pull request: APPROVED, NEEDS_WORK (Cloud: changes requested) or
        UNAPPROVED. Someone not asked to review takes part as a PARTICIPANT. A change fires the flavour's event
        (approved, unapproved, changes requested / removed); setting the status it already has changes nothing."""
        if status not in REVIEW_STATUSES:
            raise BadRequest(f"Invalid status {status!r}: use one of {', '.join(REVIEW_STATUSES)}.")
        with self.lock:
            pr = self.get_pr(repo, pr_id)
            self.get_user(actor)
            if pr.state != "OPEN":
                raise PullRequestClosed(
                    f"Pull request {pr.id} is {pr.state.lower()}: only open pull requests are reviewed."
                )
            if actor == pr.author:
                raise BadRequest("The author of a pull request cannot review it (approve or request changes).")
            reviewer = next((r for r in pr.reviewers if r.user == actor), None)
            if reviewer is None:
                reviewer = Reviewer(actor, role="PARTICIPANT")
                pr.reviewers.append(reviewer)
                if actor in pr.participants:
                    pr.participants.remove(actor)
            previous = reviewer.status
            if previous == status:
                return pr, reviewer
            reviewer.status, reviewer.approved = status, status == "APPROVED"
            reviewer.participated_on = when or now()
            if status != "UNAPPROVED":
                reviewer.last_reviewed = pr.source_hash
            if status == "APPROVED":
                kind, key = "approved", "pullrequest:approved"
            elif status == "NEEDS_WORK":
                kind, key = "changes_requested", "pullrequest:changes_request_created"
            elif previous == "NEEDS_WORK":
                kind, key = "changes_request_removed", "pullrequest:changes_request_removed"
            else:
                kind, key = "unapproved", "pullrequest:unapproved"
            self._record(repo, pr, kind, actor, reviewer.participated_on, previous=previous)
            if emit:
                data = {"pr": pr, "reviewer": reviewer, "previous_status": previous}
                self.emit(Event(repo.flavor, key, repo, actor, data))
            return pr, reviewer

    def approve_pull_request(self, repo: Repository, pr_id: int, actor: str) -> PullRequest:
        return self.review(repo, pr_id, actor, "APPROVED")[0]

    # ---------------------------------------- comments
    def get_comment(self, repo: Repository, pr_id: int, comment_id: int) -> tuple[PullRequest, Comment]:
        pr = self.get_pr(repo, pr_id)
        comment = next((c for c in pr.comments if c.id == int(comment_id)), None)
        if comment is None:
            raise NotFound(f"Comment {comment_id} does not exist on pull request {pr.id}.", entity="comment")
        return pr, comment

    def comment_pull_request(
        self,
        repo: Repository,
        pr_id: int,
        actor: str,
        text: str,
        parent: int | None = None,
        inline: dict | None = None,
        *,
        line_type: str | None = None,
        created_on: datetime | None = None,
        emit: bool = True,
    ) -> Comment:
        """A comment: general, a reply (``parent``), or on a line of a file (``inline``: ``{"path", "from", "to"}``,
        the old-side or new-side line). It remembers the source commit it was written on."""
        with self.lock:
            pr = self.get_pr(repo, pr_id)
            self.get_user(actor)
            if not isinstance(text, str) or not text.strip():
                raise BadRequest("A comment needs some text.", field="text")
            if parent is not None:
                found = next((c for c in pr.comments if c.id == parent), None)
                if found is None or found.deleted:
                    raise BadRequest(f"Comment {parent} does not exist on pull request {pr.id}.", field="parent")
                if inline is None and found.inline:
                    inline, line_type = dict(found.inline), found.line_type  # a reply sits where its parent does
            inline = _checked_inline(inline)
            if line_type is not None and line_type not in LINE_TYPES:
                raise BadRequest(f"Invalid lineType {line_type!r}: use one of {', '.join(LINE_TYPES)}.")
            created = created_on or now()
            comment = Comment(
                repo.next_comment_id,
                actor,
                text,
                created,
                created,
                parent,
                inline,
                commit=pr.source_hash,
                line_type=line_type,
            )
            repo.next_comment_id += 1
            pr.comments.append(comment)
            if actor != pr.author and actor not in pr.participants and all(r.user != actor for r in pr.reviewers):
                pr.participants.append(actor)
            self._record(repo, pr, "commented", actor, created, comment=comment.id)
            if emit:
                data = {"pr": pr, "comment": comment}
                self.emit(Event(repo.flavor, "pullrequest:comment_created", repo, actor, data))
            return comment

    def edit_comment(
        self,
        repo: Repository,
        pr_id: int,
        comment_id: int,
        actor: str,
        text: str,
        version: int | None = None,
        *,
        emit: bool = True,
        when: datetime | None = None,
    ) -> Comment:
        """Only the author edits a comment's text; ``version`` (Data Center) must be the comment's current one."""
        with self.lock:
            pr, comment = self.get_comment(repo, pr_id, comment_id)
            if comment.deleted:
                raise NotFound(f"Comment {comment_id} does not exist on pull request {pr.id}.", entity="comment")
            if actor != comment.author:
                raise Forbidden("You are not permitted to edit this comment: only its author can change its text.")
            if version is not None and version != comment.version:
                raise Conflict(
                    f"You are attempting to modify a comment based on out-of-date information (version {version}, "
                    f"the comment is at version {comment.version}).",
                )
            if not isinstance(text, str) or not text.strip():
                raise BadRequest("A comment needs some text.", field="text")
            previous = comment.text
            if text != previous:
                comment.text, comment.version, comment.updated_on = text, comment.version + 1, when or now()
                if emit:
                    data = {"pr": pr, "comment": comment, "previous_text": previous}
                    self.emit(Event(repo.flavor, "pullrequest:comment_updated", repo, actor, data))
            return comment

    def delete_comment(
        self,
        repo: Repository,
        pr_id: int,
        comment_id: int,
        actor: str,
        version: int | None = None,
        *,
        emit: bool = True,
    ) -> Comment:
        """The author, or a repository admin, deletes a comment. Cloud keeps it marked ``deleted``; Data Center
        removes it, and refuses while it has replies or when ``version`` is out of date."""
        with self.lock:
            pr, comment = self.get_comment(repo, pr_id, comment_id)
            if comment.deleted:
                raise NotFound(f"Comment {comment_id} does not exist on pull request {pr.id}.", entity="comment")
            if actor != comment.author and self.permission(actor, repo) < LEVELS["admin"]:
                raise Forbidden("You are not permitted to delete this comment: only its author or an admin can.")
            if repo.flavor == DC:
                if any(c.parent == comment.id for c in pr.comments):
                    raise Conflict("This comment has replies which must be deleted first.")
                if version is not None and version != comment.version:
                    raise Conflict(
                        f"You are attempting to modify a comment based on out-of-date information (version {version}, "
                        f"the comment is at version {comment.version}).",
                    )
                pr.comments.remove(comment)
                pr.activity = [a for a in pr.activity if a.data.get("comment") != comment.id]
            else:
                comment.deleted = True
            if emit:
                data = {"pr": pr, "comment": comment}
                self.emit(Event(repo.flavor, "pullrequest:comment_deleted", repo, actor, data))
            return comment

    def pull_request_commits(self, repo: Repository, pr: PullRequest) -> list[str]:
        """What a pull request brings, newest first: its source's commits that its destination lacks (an open one's
        destination as it is now and as it was when last recorded; a closed one's as it was)."""
        with self.lock:
            exclude = [pr.dest_hash]
            if pr.state == "OPEN" and pr.dest_branch in repo.branches:
                exclude.append(repo.branches[pr.dest_branch].target)
            return [c.id.decode() for c in repo.git.log([pr.source_hash], exclude)]

    # ---------------------------------------- commit statuses
    def set_commit_status(
        self,
        repo: Repository,
        commit: str,
        actor: str,
        key: str,
        state: str,
        url: str,
        *,
        name: str = "",
        description: str = "",
        refname: str | None = None,
        extra: dict | None = None,
        emit: bool = True,
        when: datetime | None = None,
    ) -> tuple[CommitStatus, bool]:
        """Set the build status ``key`` of a commit: a new key creates it, the same key updates it. Returns (status,
        created). Cloud fires repo:commit_status_created / _updated; Data Center fires no webhook for it."""
        with self.lock:
            self.get_user(actor)
            if not repo.git.has_commit(commit):
                raise NotFound(f"Commit {commit} does not exist in {repo.full_name}.", entity="commit", ident=commit)
            moment = when or now()
            existing = repo.statuses.get((commit, key))
            if existing is None:
                status = CommitStatus(commit, key, state, url, name, description, actor, moment, moment, refname)
                repo.statuses[(commit, key)] = status
            else:
                status = existing
                status.state, status.url, status.author, status.updated_on = state, url, actor, moment
                status.name, status.description = name or status.name, description or status.description
                status.refname = refname or status.refname
            status.extra.update(extra or {})
            if emit:
                event_key = "repo:commit_status_created" if existing is None else "repo:commit_status_updated"
                self.emit(Event(repo.flavor, event_key, repo, actor, {"status": status}))
            return status, existing is None

    def statuses_of(self, repo: Repository, commit: str) -> list[CommitStatus]:
        with self.lock:
            return sorted(
                (s for (sha, _), s in repo.statuses.items() if sha == commit), key=lambda s: (s.created_on, s.key)
            )

    # ---------------------------------------- issues
    def add_issue(
        self,
        repo: Repository,
        actor: str,
        title: str,
        content: str = "",
        state: str = "new",
        kind: str = "bug",
        priority: str = "major",
        created_on: datetime | None = None,
    ) -> Issue:
        with self.lock:
            issue_id = repo.next_issue_id
            repo.next_issue_id += 1
            created = created_on or now()
            issue = Issue(issue_id, title, content, state, kind, priority, actor, None, created, created)
            repo.issues[issue_id] = issue
            return issue

    def get_issue(self, repo: Repository, issue_id: int) -> Issue:
        issue = repo.issues.get(int(issue_id))
        if issue is None:
            raise NotFound(f"Issue {issue_id} does not exist in {repo.full_name}.", entity="issue")
        return issue

    def comment_issue(
        self, repo: Repository, issue_id: int, actor: str, text: str, *, created_on: datetime | None = None
    ) -> Comment:
        """A comment on a Cloud issue (no webhook: the emulator sends no `issue:*` events)."""
        with self.lock:
            issue = self.get_issue(repo, issue_id)
            self.get_user(actor)
            if not isinstance(text, str) or not text.strip():
                raise BadRequest("A comment needs some text.", field="content")
            created = created_on or now()
            comment = Comment(repo.next_comment_id, actor, text, created, created)
            repo.next_comment_id += 1
            issue.comments.append(comment)
            issue.updated_on = max(issue.updated_on, created)
            return comment

    # ---------------------------------------- hooks
    def add_hook(
        self,
        repo: Repository,
        url: str,
        events: list[str],
        *,
        description: str = "",
        active: bool = True,
        secret: str | None = None,
        ssl_verification_required: bool = True,
    ) -> Hook:
        with self.lock:
            if not events:
                raise BadRequest("At least one event is required.", field="events")
            # Cloud hooks are identified by a {uuid}, DC hooks by a number.
            hook_id = "{" + str(uuid.uuid4()) + "}" if repo.flavor == CLOUD else str(self._next_id("hook"))
            hook = Hook(
                hook_id,
                url,
                list(dict.fromkeys(events)),
                description,
                active,
                secret or None,
                ssl_verification_required=ssl_verification_required,
            )
            repo.hooks[hook_id] = hook
            return hook

    def get_hook(self, repo: Repository, hook_id: str) -> Hook:
        hook = repo.hooks.get(hook_id) or repo.hooks.get("{" + hook_id.strip("{}") + "}")
        if hook is None:
            raise NotFound(f"Webhook {hook_id} does not exist.", entity="webhook", ident=hook_id)
        return hook

    def update_hook(self, hook: Hook, changes: dict) -> Hook:
        """Apply already-validated field changes (keys are Hook attributes) and bump ``updated_at``.

        An update also closes the hook's circuit breaker and clears an automatic disable (how a PUT with
        ``active: true`` brings a failing hook back)."""
        with self.lock:
            for key, value in changes.items():
                setattr(hook, key, value)
            hook.updated_at = now()
            hook.consecutive_failures, hook.skip_until, hook.disabled_reason = 0, None, None
            return hook

    def delete_hook(self, repo: Repository, hook: Hook) -> None:
        with self.lock:
            del repo.hooks[hook.id]

    # ---------------------------------------- OAuth
    def register_client(
        self,
        flavor: str,
        client_id: str,
        client_secret: str,
        redirect_uri: str,
        scopes: list[str] | None = None,
        name: str = "bitbridge",
    ) -> OAuthClient:
        if flavor not in FLAVORS:
            raise BadRequest(f"flavor must be one of {FLAVORS}")
        default = (
            ["account", "email", "repository", "pullrequest", "issue", "webhook"]
            if flavor == CLOUD
            else ["PUBLIC_REPOS", "REPO_READ", "REPO_WRITE", "REPO_ADMIN", "PROJECT_ADMIN"]
        )
        with self.lock:
            client = OAuthClient(flavor, client_id, client_secret, redirect_uri, list(scopes or default), name)
            self.clients[(flavor, client_id)] = client
            return client

    def get_client(self, flavor: str, client_id: str | None) -> OAuthClient | None:
        with self.lock:
            return self.clients.get((flavor, client_id or ""))

    def issue_code(
        self,
        flavor: str,
        client_id: str,
        user: str,
        redirect_uri: str | None,
        scopes: list[str],
        code_challenge: str | None = None,
        code_challenge_method: str | None = None,
    ) -> AuthCode:
        with self.lock:
            self.get_user(user)
            lifetime = self.config.cloud_code_lifetime if flavor == CLOUD else self.config.dc_code_lifetime
            code = AuthCode(
                secrets.token_urlsafe(24),
                flavor,
                client_id,
                user.lower(),
                redirect_uri,
                scopes,
                time.time() + lifetime,
                code_challenge,
                code_challenge_method,
            )
            self.codes[code.code] = code
            return code

    def _new_token(self, flavor: str, client_id: str, user: str, scopes: list[str], redirect_uri: str | None) -> Token:
        cfg = self.config
        t = time.time()
        access_life = cfg.cloud_access_token_lifetime if flavor == CLOUD else cfg.dc_access_token_lifetime
        refresh_life = cfg.cloud_refresh_token_lifetime if flavor == CLOUD else cfg.dc_refresh_token_lifetime
        prefix = "bbc" if flavor == CLOUD else "bbdc"
        token = Token(
            flavor,
            client_id,
            user,
            list(scopes),
            f"{prefix}_at_{secrets.token_urlsafe(32)}",
            f"{prefix}_rt_{secrets.token_urlsafe(32)}",
            t + access_life,
            t + refresh_life,
            redirect_uri,
        )
        self.access_tokens[token.access_token] = token
        self.refresh_tokens[token.refresh_token] = token
        return token

    def exchange_code(
        self,
        flavor: str,
        client: OAuthClient,
        code: str | None,
        redirect_uri: str | None,
        code_verifier: str | None,
    ) -> Token:
        with self.lock:
            record = self.codes.get(code or "")
            if record is None or record.flavor != flavor or record.client_id != client.client_id:
                raise OAuthError("invalid_grant", _msg(flavor, "code_invalid"))
            if record.used:
                # Reuse of a code is an attack signal: revoke what it issued (RFC 6749 §4.1.2).
                for token in self.access_tokens.values():
                    if token.code == record.code:
                        token.revoked = True
                raise OAuthError("invalid_grant", _msg(flavor, "code_invalid"))
            if time.time() > record.expires_at:
                raise OAuthError("invalid_grant", _msg(flavor, "code_expired"))
            if flavor == DC:
                _check_redirect_uri(record.redirect_uri, redirect_uri)
                if record.code_challenge:
                    if not code_verifier:
                        raise OAuthError("invalid_request", "Missing code_verifier parameter.")
                    if not _pkce_ok(record.code_challenge, record.code_challenge_method or "plain", code_verifier):
                        raise OAuthError(
                            "invalid_grant",
                            "PKCE verification failed: the code verifier does not match the code challenge.",
                        )
            record.used = True
            token = self._new_token(flavor, client.client_id, record.user, record.scopes, record.redirect_uri)
            token.code = record.code
            return token

    def refresh(
        self,
        flavor: str,
        client: OAuthClient,
        refresh_token: str | None,
        redirect_uri: str | None = None,
        scope: str | None = None,
    ) -> Token:
        with self.lock:
            old = self.refresh_tokens.get(refresh_token or "")
            t = time.time()
            if old is None or old.flavor != flavor or old.client_id != client.client_id or old.revoked:
                raise OAuthError("invalid_grant", _msg(flavor, "refresh_invalid"))
            if t > old.refresh_expires_at:
                raise OAuthError("invalid_grant", _msg(flavor, "refresh_invalid"))
            grace = self.config.cloud_refresh_grace_seconds
            if flavor == CLOUD and old.superseded_at is not None and t - old.superseded_at > grace:
                # A rotated Cloud refresh token keeps working for a grace period, then it is dead.
                raise OAuthError("invalid_grant", _msg(flavor, "refresh_invalid"))
            if flavor == DC:
                if not redirect_uri:
                    raise OAuthError("invalid_request", "Missing redirect_uri parameter.")
                _check_redirect_uri(old.redirect_uri, redirect_uri)
                if old.superseded_at is not None:  # DC refresh tokens are single use
                    raise OAuthError("invalid_grant", _msg(flavor, "refresh_invalid"))
            scopes = old.scopes
            if scope:
                requested = scope.replace(",", " ").split()
                if not set(requested) <= set(old.scopes):
                    raise OAuthError("invalid_scope", _msg(flavor, "scope"))
                scopes = requested
            if old.superseded_at is None:
                old.superseded_at = t
            return self._new_token(flavor, client.client_id, old.user, scopes, old.redirect_uri)

    def authenticate(self, flavor: str, access_token: str | None) -> Token:
        """Resolve a Bearer token; raises Unauthorized with a reason the front-ends word per flavour."""
        with self.lock:
            token = self.access_tokens.get(access_token or "")
            if token is None or token.flavor != flavor:
                raise Unauthorized("invalid", reason="invalid")
            if token.revoked:
                raise Unauthorized("revoked", reason="revoked")
            if time.time() >= token.access_expires_at:
                raise Unauthorized("expired", reason="expired")
            return token

    def expire_tokens(
        self,
        *,
        token: str | None = None,
        user: str | None = None,
        flavor: str | None = None,
        all_tokens: bool = False,
        refresh: bool = False,
    ) -> int:
        """Make matching access tokens (and optionally their refresh tokens) expired. Returns the count."""
        return self._mark_tokens(token, user, flavor, all_tokens, expire=True, refresh=refresh)

    def revoke_tokens(
        self,
        *,
        token: str | None = None,
        user: str | None = None,
        flavor: str | None = None,
        all_tokens: bool = False,
    ) -> int:
        return self._mark_tokens(token, user, flavor, all_tokens, expire=False, refresh=True)

    def _mark_tokens(
        self,
        token: str | None,
        user: str | None,
        flavor: str | None,
        all_tokens: bool,
        *,
        expire: bool,
        refresh: bool,
    ) -> int:
        with self.lock:
            if not (token or user or all_tokens):
                raise BadRequest("Give token, user or all.")
            count = 0
            for record in {id(t): t for t in self.access_tokens.values()}.values():
                if token and token not in (record.access_token, record.refresh_token):
                    continue
                if user and record.user != user.lower():
                    continue
                if flavor and record.flavor != flavor:
                    continue
                past = time.time() - 1
                if expire:
                    record.access_expires_at = min(record.access_expires_at, past)
                    if refresh:
                        record.refresh_expires_at = min(record.refresh_expires_at, past)
                else:
                    record.revoked = True
                count += 1
            return count

    # ---------------------------------------- summary
    def state(self) -> dict:
        with self.lock:
            repos = []
            for repo in sorted(self.repos.values(), key=lambda r: (r.flavor, r.owner.lower(), r.slug)):
                states: dict[str, int] = {}
                for pr in repo.pull_requests.values():
                    states[pr.state] = states.get(pr.state, 0) + 1
                repos.append(
                    {
                        "flavor": repo.flavor,
                        "owner": repo.owner,
                        "slug": repo.slug,
                        "full_name": repo.full_name,
                        "personal": repo.flavor == DC and repo.owner.startswith("~"),
                        "is_private": repo.is_private,
                        "default_branch": repo.default_branch,
                        "branches": len(repo.branches),
                        "tags": len(repo.tags),
                        "pull_requests": {"total": len(repo.pull_requests), **states},
                        "issues": len(repo.issues),
                        "issue_comments": sum(len(i.comments) for i in repo.issues.values()),
                        # What each flavor lists: Cloud keeps a deleted comment (marked), Data Center removes it.
                        "pull_request_comments": sum(len(pr.comments) for pr in repo.pull_requests.values()),
                        # Review states: every reviewer asked, and whoever else approved or requested changes.
                        "pull_request_reviews": sum(
                            1
                            for pr in repo.pull_requests.values()
                            for r in pr.reviewers
                            if r.role == "REVIEWER" or r.status != "UNAPPROVED"
                        ),
                        "hooks": len(repo.hooks),
                        "deploy_keys": len(repo.deploy_keys),
                    }
                )
            return {
                "users": sorted(self.users),
                "workspaces": sorted(self.workspaces),
                "projects": sorted(self.projects),
                "oauth_clients": [{"flavor": f, "client_id": c} for (f, c) in sorted(self.clients)],
                "repositories": repos,
                "totals": {
                    "repositories": len(repos),
                    "branches": sum(r["branches"] for r in repos),
                    "tags": sum(r["tags"] for r in repos),
                    "pull_requests": sum(r["pull_requests"]["total"] for r in repos),
                    "issues": sum(r["issues"] for r in repos),
                    "active_tokens": sum(
                        1 for t in self.access_tokens.values() if not t.revoked and t.access_expires_at > time.time()
                    ),
                },
            }


def _check_redirect_uri(recorded: str | None, given: str | None) -> None:
    """DC: a redirect_uri sent with the authorization request must be repeated exactly at the token endpoint."""
    if recorded and given != recorded:
        raise OAuthError("invalid_grant", "The redirect URI does not match the one used in the authorization request.")


def _pkce_ok(challenge: str, method: str, verifier: str) -> bool:
    if method.upper() == "S256":
        digest = hashlib.sha256(verifier.encode()).digest()
        return secrets.compare_digest(base64.urlsafe_b64encode(digest).rstrip(b"=").decode(), challenge)
    return secrets.compare_digest(verifier, challenge)


# Error wording per flavour (Cloud: as bitbucket.org returns them; DC: modelled on its OAuth 2 provider).
_MESSAGES = {
    CLOUD: {
        "code_invalid": "The specified code is not valid.",
        "code_expired": "The specified code is not valid.",
        "refresh_invalid": "Invalid refresh_token",
        "scope": "The requested scope is invalid.",
    },
    DC: {
        "code_invalid": "The authorization code is invalid or has already been used.",
        "code_expired": "The authorization code has expired.",
        "refresh_invalid": "The refresh token is invalid or has expired.",
        "scope": "The requested scope is invalid, unknown, malformed, or exceeds the scope granted by the "
        "resource owner.",
    },
}


def _msg(flavor: str, key: str) -> str:
    return _MESSAGES[flavor][key]


def _checked_inline(inline: object) -> dict | None:
    """``{"path", "from", "to"}`` with a path and at least one line (1 or more), or None for a general comment."""
    if inline is None:
        return None
    if not isinstance(inline, dict) or not isinstance(inline.get("path"), str) or not inline["path"].strip("/"):
        raise BadRequest("inline.path is required: the file the comment is on.", field="inline")
    lines = {side: inline.get(side) for side in ("from", "to")}
    for side, line in lines.items():
        if line is not None and (isinstance(line, bool) or not isinstance(line, int) or line < 1):
            raise BadRequest(f"inline.{side} must be a line number (1 or more).", field="inline")
    if lines["from"] is None and lines["to"] is None:
        raise BadRequest("inline needs a line: `to` (new side) or `from` (old side).", field="inline")
    return {"path": inline["path"].strip("/"), **lines}


def touch(repo: Repository, when: datetime | None = None) -> None:
    """Mark a repository updated (Cloud's ``updated_on``): its refs or its own metadata changed. Pull request,
    comment and issue activity leave it alone (README: "updated_on")."""
    repo.updated_on = max(repo.updated_on, when or now())


def iso(dt: datetime | None) -> str | None:
    return None if dt is None else dt.astimezone(UTC).isoformat()


def millis(dt: datetime | None) -> int | None:
    return None if dt is None else int(dt.timestamp() * 1000)


__all__ = [
    "CLOUD",
    "DC",
    "LEVELS",
    "SEED_EPOCH",
    "ZERO_HASH",
    "Activity",
    "AuthCode",
    "Backend",
    "BadRequest",
    "Comment",
    "Commit",
    "CommitStatus",
    "Config",
    "Conflict",
    "EmulatorError",
    "Event",
    "Forbidden",
    "Hook",
    "Issue",
    "MergeConflicted",
    "NotFound",
    "OAuthClient",
    "OAuthError",
    "Project",
    "PullRequest",
    "PullRequestClosed",
    "Ref",
    "Repository",
    "Reviewer",
    "Token",
    "Unauthorized",
    "User",
    "Workspace",
    "iso",
    "millis",
    "now",
    "stable_uuid",
]
