"""The one Bitbucket interface: what bitbridge asks of a flavor, implemented by `cloud` and `datacenter`.

Callers get an implementation with `for_flavor(provider.flavor)` and never compare flavors
themselves. Every method that reads Bitbucket takes a `Fetch` or `Get` from the caller
(`bitbridge.calls.Caller`), so tokens, retries and call counting stay outside this package.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from bitbridge.bitbucket import CLOUD, DATACENTER
from bitbridge.bitbucket.actions import Actions
from bitbridge.bitbucket.code import Code
from bitbridge.bitbucket.identity import Identity
from bitbridge.bitbucket.limits import Limits
from bitbridge.bitbucket.repos import Fetch, Get, HookState, Listed, ListQuery, Page, Repo
from bitbridge.bitbucket.review import Discussed, NestedPage, Read, Standing


class Bitbucket(Protocol):
    flavor: str
    display_name: str  # "Bitbucket Cloud" / "Data Center", in messages
    default_scopes: tuple[str, ...]  # what bitbridge needs: identity, repositories, PRs, issues, hooks
    permissions_to_tick: str  # the boxes to tick on the Bitbucket side, in its own words
    default_web_url: str | None  # None: the admin must give one
    web_url_name: str  # how messages call the web URL
    requires_https: bool  # OAuth only works over HTTPS (loopback excepted)
    uses_pkce: bool
    deletes_pull_requests: bool  # Data Center deletes pull requests (`pr:deleted`); Cloud only declines them
    probes_workspaces: bool  # `pull_request_marks` answers for a whole workspace (Cloud): reconcile it in one run

    # -- registry and OAuth ------------------------------------------------------------------------
    def default_api_url(self, web_url: str, web_url_given: bool) -> str: ...
    def default_label(self, web_url: str) -> str: ...
    def authorize_url(self, web_url: str) -> str: ...
    def token_url(self, web_url: str) -> str: ...
    def oauth_options(self, scopes: str) -> dict[str, Any]:
        """Authlib OAuth2Session options: client authentication, scope, PKCE."""
        ...

    def refresh_parameters(self, redirect_uri: str | None) -> dict[str, Any]: ...
    def missing_scopes(self, wanted: list[str], granted: set[str]) -> list[str]: ...
    def token_probe(self, client_id: str, client_secret: str, callback: str) -> dict[str, Any]:
        """requests.post keyword arguments for an invalid-code exchange (provider pre-flight)."""
        ...

    def revocation_note(self, web_url: str) -> str:
        """Where a user revokes bitbridge's grant by hand (neither flavor has a revocation API)."""
        ...

    # -- identity ----------------------------------------------------------------------------------
    def identify(self, get: Get, web_url: str, api_url: str) -> Identity: ...

    # -- repositories, refs, pull requests, issues -------------------------------------------------
    def to_repo(self, raw: dict[str, Any]) -> Repo: ...
    def repository(self, fetch: Fetch, api: str, full_name: str) -> tuple[Repo, dict[str, Any]]:
        """The repository (normalised and raw); a 404 or 403 means the user cannot import it."""
        ...

    def list_repositories(self, fetch: Fetch, api: str, query: ListQuery) -> Listed:
        """Up to `query.limit` repositories the user can read, resumable from `query.state`."""
        ...

    def scopes(self, fetch: Fetch, api: str, username: str) -> list[dict[str, Any]]:
        """Workspaces (Cloud) or projects and the personal one (Data Center), for a picker."""
        ...

    def entities(self, repo: Repo) -> list[str]:
        """What an import copies after the repository, in order."""
        ...

    def page(self, fetch: Fetch, api: str, full_name: str, entity: str, cursor: str | None) -> Page: ...
    def default_branch(self, branches: list[dict[str, Any]], known: str | None) -> tuple[str | None, str | None]:
        """(default branch name, its head commit) as far as one page of branches tells."""
        ...

    # -- review data (imports: `bitbucket.review`) ---------------------------------------------------
    def review_reads(self, repo: Repo, wanted: set[str]) -> list[Read]:
        """The nested reads an import makes per pull request (or issue) for the `wanted` nested entities."""
        ...

    def review_page(
        self, fetch: Fetch, api: str, full_name: str, read: Read, parent: dict[str, Any], cursor: str | None
    ) -> NestedPage:
        """One page of `read` for `parent` (a pull request or an issue as its own page holds it)."""
        ...

    def derived(self, entity: str, values: list[dict[str, Any]], wanted: set[str]) -> dict[str, list[dict[str, Any]]]:
        """Nested entities read off one of `entity`'s pages, no call (pull request review states)."""
        ...

    def people_in(self, value: Any) -> list[dict[str, Any]]:
        """Every person `value` (Bitbucket's JSON) names, as `people.jsonl` records, in document order."""
        ...

    # -- hooks -------------------------------------------------------------------------------------
    @property
    def webhook_events(self) -> tuple[str, ...]:
        """The X-Event-Key values a hook subscribes to."""
        ...

    def hooks_url(self, api: str, owner: str, slug: str) -> str: ...
    def hook_body(self, url: str, events: tuple[str, ...], secret: str) -> dict[str, Any]: ...
    def hooks_page(self, fetch: Fetch, hooks_url: str, cursor: str | None) -> Page: ...

    # -- reconciliation: the cheapest reads --------------------------------------------------------
    def hook(self, fetch: Fetch, api: str, full_name: str, hook_id: str) -> HookState | None:
        """The hook as Bitbucket has it now, or None when it was deleted."""
        ...

    def ref_heads(self, fetch: Fetch, api: str, full_name: str) -> dict[str, tuple[str, str]]:
        """Every branch (`b:name`) and tag (`t:name`) head as (ident, commit), at the largest pages, trimmed."""
        ...

    def ref_head(self, value: dict[str, Any]) -> tuple[str, str, str]:
        """A listed branch or tag as (name, ident, commit): the ident is what a push payload names (the
        commit; a Data Center tag's own object hash), the commit what events show."""
        ...

    def refs_marks(self, fetch: Fetch, api: str, owner: str, since: list[str]) -> dict[str, str] | None:
        """Change detection for many repositories at once: per repository id of `owner` (a workspace), a
        mark that moves whenever the repository's refs change, for those whose mark is past the oldest of
        `since` (all of them when `since` is empty), in as few calls as Bitbucket allows. None when the
        flavor has no such listing: ask `refs_mark` per repository."""
        ...

    def refs_mark(self, fetch: Fetch, api: str, full_name: str) -> str | None:
        """Change detection for one repository, one call: a mark that moves whenever its refs change; None
        when Bitbucket will not say (its refs are then read)."""
        ...

    def pull_request_marks(self, fetch: Fetch, api: str, owner: str, since: str, most: int) -> dict[str, str] | None:
        """Change detection for pull requests across `owner` (a workspace): per repository id, the newest update
        time of its pull requests updated after `since` (a repository left out had none), in at most `most`
        calls. None when the flavor has no such query, or it would cost more than `most`: read each
        repository's pull requests. What it cannot see (a pull request by someone outside the workspace) the
        per-repository read on the hook's cadence finds (reconcile.run)."""
        ...

    def pull_requests_newest_first(self, fetch: Fetch, api: str, full_name: str) -> Iterator[dict[str, Any]]:
        """Every pull request, most recently updated first, read lazily page by page (stop early)."""
        ...

    def pull_request_updated(self, pr: dict[str, Any]) -> str:
        """When it was last updated (`repos.iso_utc`)."""
        ...

    def open_pull_requests(self, fetch: Fetch, api: str, full_name: str) -> list[dict[str, Any]]:
        """Every open pull request, with what its event section needs and its reviewers' statuses."""
        ...

    def pull_request_gone(self, fetch: Fetch, api: str, full_name: str, pr_id: int) -> bool:
        """Whether Bitbucket no longer has this pull request (404), one call."""
        ...

    def pull_request_created(self, pr: dict[str, Any]) -> str:
        """When it was opened (`repos.iso_utc`)."""
        ...

    def review_standings(self, pr: dict[str, Any]) -> dict[str, Standing]:
        """Each person's review status on a listed pull request (reviewers, and participants who reviewed), by
        the id events give people (`actor.id`)."""
        ...

    def pull_request_discussion(self, fetch: Fetch, api: str, full_name: str, pr: dict[str, Any]) -> list[Discussed]:
        """Every comment of a pull request (replies and, where Bitbucket keeps them, deleted ones), all pages."""
        ...

    # -- git over HTTPS and deploy keys --------------------------------------------------------------
    def git_url(self, web_url: str, owner: str, slug: str) -> str:
        """The repository's clone URL for git over HTTPS (smart HTTP)."""
        ...

    def git_authorization(self, token: str) -> str:
        """The Authorization header git over HTTPS takes with a person's OAuth access token."""
        ...

    def deploy_keys_url(self, web_url: str, api: str, owner: str, slug: str) -> str:
        """Where a repository's read-only SSH keys are listed and added (Cloud deploy keys, DC access keys)."""
        ...

    def deploy_key_body(self, key_line: str, label: str) -> dict[str, Any]:
        """The body that adds `key_line` read-only."""
        ...

    def deploy_keys_page(self, fetch: Fetch, url: str, cursor: str | None) -> Page: ...
    def deploy_key_of(self, raw: dict[str, Any]) -> tuple[str, str]:
        """(Bitbucket's id of the key on this repository, the key line) of one listed or added key."""
        ...

    def deploy_key_settings_url(self, web_url: str, owner: str, slug: str) -> str:
        """The repository settings page where an admin adds the key by hand."""

    # -- rate limits (bitbridge.budget) ------------------------------------------------------------
    def default_limits(self) -> Limits:
        """Bitbucket's published limits for this flavor (a provider's settings go on top)."""
        ...

    def rate_limit_class(self, url: str | None, api_url: str, resource: str | None = None) -> str:
        """The resource class a call is counted in: judged from `url`, else named by `resource`
        (`limits.REPOSITORIES`, `limits.WEBHOOKS`, `limits.GIT`) where the caller knows it before the URL."""
        ...


def for_flavor(flavor: str) -> Bitbucket:
    from bitbridge.bitbucket import cloud, datacenter

    apis: dict[str, Bitbucket] = {CLOUD: cloud.CLOUD_API, DATACENTER: datacenter.DATACENTER_API}
    return _flavors(flavor, apis)


def actions_for(flavor: str) -> Actions:
    """What a product does back to Bitbucket (statuses, comments, reviews), one shape for both flavors."""
    from bitbridge.bitbucket import cloud_actions, datacenter_actions

    actions: dict[str, Actions] = {
        CLOUD: cloud_actions.CLOUD_ACTIONS,
        DATACENTER: datacenter_actions.DATACENTER_ACTIONS,
    }
    return _flavors(flavor, actions)


def code_for(flavor: str) -> Code:
    """A repository's code and history (files, diffs, commits), one shape for both flavors."""
    from bitbridge.bitbucket import cloud_code, datacenter_code

    code: dict[str, Code] = {CLOUD: cloud_code.CLOUD_CODE, DATACENTER: datacenter_code.DATACENTER_CODE}
    return _flavors(flavor, code)


def _flavors[T](flavor: str, implementations: dict[str, T]) -> T:
    """The flavor's implementation (each imported when first asked for: a function loads only its own)."""
    try:
        return implementations[flavor]
    except KeyError:
        raise ValueError(f"unknown Bitbucket flavor {flavor!r}") from None
