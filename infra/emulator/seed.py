"""Seed specs: the default demo data and bulk data for tests and benchmarks.

A spec is plain JSON (also accepted by ``POST /_emulator/seed``)::

    {
      "users": [{"name": "alice", "display_name": "Alice Admin", "email": "...", "admin": true}],
      "cloud": {"workspaces": [{"slug": "acme", "name": "Acme", "members": {"alice": "owner"},
                                "repositories": [{"slug": "web-app", "branches": 120, "tags": 30, "issues": 5,
                                                  "pull_requests": {"OPEN": 10, "MERGED": 20}}]}]},
      "datacenter": {"projects": [{"key": "PLAT", "name": "Platform", "permissions": {"alice": "admin"},
                                   "repositories": [...]}],
                     "personal": [{"user": "alice", "repositories": [{"slug": "dotfiles"}]}]}
    }

A repository entry may carry ``"count": N`` to create N repositories named ``{slug}-0001`` ...; an integer
``pull_requests`` is split deterministically into OPEN (40 %), MERGED (50 %) and DECLINED (10 %).
Seeding never fires webhooks and uses no randomness, so counts and ids are stable.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from .models import CLOUD, DC, SEED_EPOCH, Backend, Ref, Repository, epoch

DEMO_USERS = [
    {"name": "alice", "display_name": "Alice Admin", "email": "alice@example.com", "admin": True},
    {"name": "bob", "display_name": "Bob Builder", "email": "bob@example.com"},
    {"name": "carol", "display_name": "Carol Reviewer", "email": "carol@example.com"},
]

DEFAULT_SPEC: dict = {
    "users": DEMO_USERS,
    "cloud": {
        "workspaces": [
            {
                "slug": "acme",
                "name": "Acme Corp",
                "members": {"alice": "owner", "bob": "collaborator", "carol": "member"},
                "repositories": [
                    # >100 branches: more than one page even at pagelen=100.
                    {
                        "slug": "web-app",
                        "branches": 120,
                        "tags": 30,
                        "language": "python",
                        "issues": 12,
                        "pull_requests": {"OPEN": 15, "MERGED": 30, "DECLINED": 5},
                    },
                    {
                        "slug": "api-service",
                        "branches": 12,
                        "tags": 6,
                        "language": "go",
                        "issues": 3,
                        "pull_requests": {"OPEN": 3, "MERGED": 5},
                    },
                    {
                        "slug": "infra",
                        "branches": 4,
                        "tags": 2,
                        "is_private": False,
                        "language": "hcl",
                        "pull_requests": {"OPEN": 1},
                    },
                ],
            },
            {
                "slug": "globex",
                "name": "Globex",
                "members": {"bob": "owner", "alice": "member"},
                "repositories": [
                    {
                        "slug": "mobile",
                        "branches": 8,
                        "tags": 4,
                        "language": "kotlin",
                        "pull_requests": {"OPEN": 2, "MERGED": 2, "DECLINED": 1},
                        "permissions": {"alice": "write"},
                    },
                    {"slug": "docs", "branches": 3, "permissions": {"alice": "read"}},
                ],
            },
        ]
    },
    "datacenter": {
        "projects": [
            {
                "key": "PLAT",
                "name": "Platform",
                "permissions": {"alice": "admin", "bob": "write", "carol": "read"},
                "repositories": [
                    {
                        "slug": "core",
                        "branches": 60,
                        "tags": 40,
                        "pull_requests": {"OPEN": 12, "MERGED": 20, "DECLINED": 6},
                    },
                    {"slug": "tools", "branches": 6, "tags": 3, "pull_requests": {"OPEN": 2}},
                ],
            },
            {
                "key": "WEB",
                "name": "Web",
                "permissions": {"bob": "admin", "alice": "read"},
                "repositories": [
                    {"slug": "site", "branches": 10, "tags": 5, "pull_requests": {"OPEN": 4, "MERGED": 3}},
                    {"slug": "cms", "branches": 2},
                ],
            },
        ],
        "personal": [
            {"user": "alice", "repositories": [{"slug": "dotfiles", "branches": 3, "tags": 1}]},
            {
                "user": "bob",
                "repositories": [{"slug": "scratch", "branches": 2, "pull_requests": {"OPEN": 1}}],
            },
        ],
    },
}

_ROLE_TO_LEVEL = {"owner": "admin", "collaborator": "write", "member": "read"}


def apply_spec(backend: Backend, spec: dict) -> dict:
    """Create everything in ``spec``; returns counts of what was created."""
    created = {
        "users": 0,
        "repositories": 0,
        "branches": 0,
        "tags": 0,
        "pull_requests": 0,
        "comments": 0,
        "issues": 0,
        "issue_comments": 0,
    }
    with backend.lock:
        for u in spec.get("users", []):
            backend.add_user(u["name"], u.get("display_name"), u.get("email"), bool(u.get("admin")))
            created["users"] += 1
        for ws_spec in spec.get("cloud", {}).get("workspaces", []):
            members = {k.lower(): v for k, v in ws_spec.get("members", {}).items()}
            ws = backend.add_workspace(ws_spec["slug"], ws_spec.get("name"), members)
            defaults = {user: _ROLE_TO_LEVEL.get(role, "read") for user, role in ws.members.items()}
            for repo_spec in ws_spec.get("repositories", []):
                _add_repos(backend, CLOUD, ws.slug, repo_spec, defaults, created)
        dc = spec.get("datacenter", {})
        for p_spec in dc.get("projects", []):
            project = backend.add_project(
                p_spec["key"],
                p_spec.get("name"),
                {k.lower(): v for k, v in p_spec.get("permissions", {}).items()},
                p_spec.get("description", ""),
                bool(p_spec.get("public")),
            )
            for repo_spec in p_spec.get("repositories", []):
                _add_repos(backend, DC, project.key, repo_spec, {}, created)
        for personal in dc.get("personal", []):
            project = backend.personal_project(personal["user"])
            for repo_spec in personal.get("repositories", []):
                _add_repos(backend, DC, project.key, repo_spec, {}, created)
    return created


def _add_repos(
    backend: Backend, flavor: str, owner: str, spec: dict, default_perms: dict[str, str], created: dict
) -> None:
    count = spec.get("count")
    slugs = [spec["slug"]] if count is None else [f"{spec['slug']}-{i:04d}" for i in range(1, int(count) + 1)]
    for slug in slugs:
        _add_repo(backend, flavor, owner, slug, spec, default_perms, created)


def _add_repo(
    backend: Backend,
    flavor: str,
    owner: str,
    slug: str,
    spec: dict,
    default_perms: dict[str, str],
    created: dict,
) -> Repository:
    users = list(backend.users)
    author = spec.get("author") or (users[0] if users else "")
    base_time = SEED_EPOCH + timedelta(days=backend._ids["repo"])
    # Commit dates (so commit ids) depend on the repository's name only, never on what was seeded before it:
    # the same spec gives the same commits on any emulator.
    full_name = f"{owner}/{slug}".lower()
    git_time = SEED_EPOCH + timedelta(
        days=int(hashlib.sha1(full_name.encode(), usedforsecurity=False).hexdigest()[:6], 16) % 365
    )
    perms = {**default_perms, **{k.lower(): v for k, v in spec.get("permissions", {}).items()}}
    repo = backend.add_repository(
        flavor,
        owner,
        slug,
        name=spec.get("name"),
        description=spec.get("description", f"The {slug} repository"),
        is_private=spec.get("is_private", True),
        language=spec.get("language", ""),
        default_branch=spec.get("default_branch", "main"),
        permissions=perms,
        created_on=base_time,
        author=author,
        first_commit_at=git_time,
    )
    git, initial = repo.git, repo.branches[repo.default_branch].target

    def commit_on(parent: str, path: str, text: str, who: str, when: datetime) -> str:
        """A seeded commit: ``parent`` plus one file (the same content in every repository: shared objects)."""
        tree = git.with_file(parent, path, text.encode() + b"\n")
        return git.write_commit(tree, [parent.encode()], text, backend.signature(who), epoch(when))

    n_branches = int(spec.get("branches", 1))
    branch_names = [repo.default_branch] + [f"feature/{i:04d}" for i in range(1, n_branches)]
    for i, name in enumerate(branch_names[1:], start=1):
        when = base_time + timedelta(minutes=i)
        who = users[i % len(users)] if users else author
        sha = commit_on(
            initial, f"notes/{name.replace('/', '-')}.md", f"Work on {name}", who, git_time + (when - base_time)
        )
        repo.branches[name] = Ref(name, sha, when, f"Work on {name}", who)
    for i in range(1, int(spec.get("tags", 0)) + 1):
        name = f"v1.{i // 10}.{i % 10}"
        when = base_time + timedelta(hours=i)
        sha = commit_on(initial, f"releases/{name}.md", f"Release {name}", author, git_time + (when - base_time))
        repo.tags[name] = Ref(name, sha, when, f"Release {name}", author)
    created["branches"] += len(repo.branches)
    created["tags"] += len(repo.tags)

    prs = spec.get("pull_requests", {})
    if isinstance(prs, int):
        prs = {"OPEN": prs * 4 // 10, "DECLINED": prs // 10}
        prs["MERGED"] = int(spec["pull_requests"]) - prs["OPEN"] - prs["DECLINED"]
    review = bool(spec.get("review", True))
    n = 0
    for state in ("MERGED", "DECLINED", "OPEN"):  # closed ones first, so open PRs get the newest ids
        for _ in range(int(prs.get(state, 0))):
            n += 1
            # Open PRs come from existing feature branches when there are enough of them.
            source = branch_names[n] if state == "OPEN" and n < len(branch_names) else f"feature/pr-{n}"
            actor = users[n % len(users)] if users else author
            reviewers = [u for u in users if u != actor][:1]
            opened = base_time + timedelta(hours=n)
            source_hash = None
            path = f"notes/{source.replace('/', '-')}.md"
            if source not in repo.branches:  # a branch deleted since: only its commit remains
                main = repo.branches[repo.default_branch].target
                path = f"changes/{n // 100:03d}/change-{n}.md"
                source_hash = commit_on(main, path, f"Change #{n}", actor, git_time + (opened - base_time))
            pr = backend.open_pull_request(
                repo,
                actor,
                f"{slug}: change #{n}",
                source,
                repo.default_branch,
                f"Pull request {n} in {slug}",
                reviewers,
                created_on=opened,
                emit=False,
                source_hash=source_hash,
            )
            if review and reviewers:
                created["comments"] += _review(backend, repo, pr.id, n, actor, reviewers[0], path, opened)
            if state != "OPEN":  # reviewed while open, then closed
                backend._close(
                    repo, pr, actor, state, emit=False, when=opened, commit_time=git_time + (opened - base_time)
                )
    created["pull_requests"] += n
    for i in range(1, int(spec.get("issues", 0)) + 1):
        state = ("new", "open", "resolved", "closed")[i % 4]
        opened = base_time + timedelta(hours=i)
        reporter = users[i % len(users)] if users else author
        issue = backend.add_issue(
            repo, reporter, f"Issue {i} in {slug}", f"Details of issue {i}", state=state, created_on=opened
        )
        # Issue i has i % 3 comments, by the users after its reporter in turn (README "Seeded review data").
        for k in range(i % 3 if review and users else 0):
            who = users[(i + k + 1) % len(users)]
            when = opened + timedelta(minutes=k + 1)
            backend.comment_issue(repo, issue.id, who, f"Comment {k + 1} on issue {i}.", created_on=when)
            created["issue_comments"] += 1
    created["issues"] += int(spec.get("issues", 0))
    created["repositories"] += 1
    return repo


def _review(
    backend: Backend, repo: Repository, pr_id: int, n: int, author: str, reviewer: str, path: str, opened: datetime
) -> int:
    """Review data for the n-th seeded pull request (README "Seeded review data"), dated after it was opened;
    returns how many comments were made. By ``n % 4``: 1 approved, with a general comment; 2 changes requested
    (NEEDS_WORK), an inline comment on line 1 of the pull request's file, the author's reply, and a general
    comment edited once; 3 a general comment by the author and one by the reviewer, deleted; 0 nothing."""
    kind = n % 4
    if kind == 0:
        return 0
    at = [opened + timedelta(minutes=m) for m in range(1, 6)]
    if kind == 1:
        backend.comment_pull_request(repo, pr_id, reviewer, "Looks good to me.", created_on=at[0], emit=False)
        backend.review(repo, pr_id, reviewer, "APPROVED", emit=False, when=at[1])
        return 1
    if kind == 2:
        inline = backend.comment_pull_request(
            repo,
            pr_id,
            reviewer,
            "Please explain this line.",
            inline={"path": path, "to": 1},
            created_on=at[0],
            emit=False,
        )
        backend.comment_pull_request(
            repo, pr_id, author, "Explained in the next commit.", inline.id, created_on=at[1], emit=False
        )
        note = backend.comment_pull_request(repo, pr_id, reviewer, "Needs a test.", created_on=at[2], emit=False)
        backend.edit_comment(repo, pr_id, note.id, reviewer, "Needs a test, please.", emit=False, when=at[3])
        backend.review(repo, pr_id, reviewer, "NEEDS_WORK", emit=False, when=at[4])
        return 3
    backend.comment_pull_request(repo, pr_id, author, "Ready for review.", created_on=at[0], emit=False)
    gone = backend.comment_pull_request(repo, pr_id, reviewer, "Ignore this.", created_on=at[1], emit=False)
    backend.delete_comment(repo, pr_id, gone.id, reviewer, emit=False)
    return 2


def seed_default(backend: Backend) -> dict:
    return apply_spec(backend, DEFAULT_SPEC)
