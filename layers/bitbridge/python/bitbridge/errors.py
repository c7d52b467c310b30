"""What went wrong, in words and a stable code: the exceptions the core raises for a caller to see.

A `Problem` carries meaning only - a machine-readable `code`, a message that says what to do next,
and details (a provider id, a list of repositories). Which HTTP status and body it becomes is decided
in one place, `bitbridge.edge`. Standard library only: the webhook receiver's cold path may import it.
"""

from __future__ import annotations

from typing import Any


class Problem(Exception):
    """A failure to show the caller (never a token, secret or signature in it)."""

    code = "error"
    title = "Something went wrong"  # the heading of the HTML page a browser route shows
    return_to: str | None = None  # where that page links back to: where the browser flow began, checked safe

    def __init__(self, message: str, *, code: str | None = None, title: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if title is not None:
            self.title = title
        self.details = details


class InvalidRequest(Problem):
    """The request itself is wrong (a missing or malformed parameter or body)."""

    code = "invalid_request"


class NotSignedIn(Problem):
    """No valid session: the caller signs in at the login URL and tries again."""

    code = "not_signed_in"

    def __init__(self, message: str = "Sign in first.") -> None:
        super().__init__(message)


class NotFound(Problem):
    """The thing asked for does not exist, or the caller may not see it (the same answer for both)."""

    code = "not_found"


class AccessDenied(Problem):
    """Signed in, but this user may not do or see this (e.g. the admin pages)."""

    code = "access_denied"


class CrossSiteRequest(Problem):
    """A state-changing request carried the session cookie but did not come from the console's origin
    (or was not JSON): refused, whatever the session."""

    code = "cross_site_request"


class InvalidState(Problem):
    """The thing exists but its current state refuses the change (e.g. cancelling a finished import)."""

    code = "invalid_state"


class ProviderProblem(Problem):
    """A problem tied to one registered provider: `provider_id` names it in every answer."""

    def __init__(self, provider_id: str, message: str, **details: Any) -> None:
        super().__init__(message, provider=provider_id, **details)
        self.provider_id = provider_id


class ConnectionNeeded(ProviderProblem):
    """The user must (re)connect this provider before the request can work: the answer gives the URL."""
