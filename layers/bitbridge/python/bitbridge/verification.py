"""Who may start a provider's verification round trip (`purpose=verify`): a signed-in admin, or whoever
holds the one-time ticket `bitbridge providers verify` mints - the CLI's admin, who has AWS access.

A verification can mark a provider failed, so an anonymous one would let anybody mark any provider
failed. A ticket is 256 random bits, stored only as its SHA-256, valid for 15 minutes and consumed by
the first authorize that presents it; the callback writes the round trip's outcome onto it, so the
CLI waits for its own attempt rather than reading a provider's status that may be stale."""

from __future__ import annotations

import hashlib
import secrets
import time

from bitbridge import accounts
from bitbridge.errors import AccessDenied, NotSignedIn
from bitbridge.store.base import condition_failed
from bitbridge.store.ephemeral import VerificationTicketRecord, ticket_key
from bitbridge.timestamps import epoch, iso

TICKET_TTL_SECONDS = 900
OUTCOMES = ("verified", "failed")


def _digest(ticket: str) -> str:
    return hashlib.sha256(ticket.encode()).hexdigest()


def mint(provider_id: str) -> str:
    """A new one-time ticket for one verification of `provider_id` (the CLI puts it in the URL)."""
    ticket = secrets.token_urlsafe(32)
    VerificationTicketRecord(
        ticket_key(_digest(ticket)), provider_id=provider_id, expires_at=epoch(TICKET_TTL_SECONDS)
    ).save()
    return ticket


def authorise(provider_id: str, *, session_user: str | None, ticket: str | None) -> str | None:
    """Allow a verification or refuse it (401 signed out, 403 otherwise). Returns the consumed ticket's
    digest, or None when an admin's session allowed it."""
    if ticket:
        return _consume(provider_id, ticket)
    if session_user is None:
        raise NotSignedIn(
            "Verifying a provider needs an admin: sign in as one, or open the link `bitbridge providers verify` prints."
        )
    if not accounts.is_admin(session_user):
        raise AccessDenied("Only an admin may verify a provider.", title="Not allowed")
    return None


def _consume(provider_id: str, ticket: str) -> str:
    digest = _digest(ticket)
    record = VerificationTicketRecord(ticket_key(digest))
    try:  # one-time: only the first authorize with this ticket gets past this line
        record.update(
            actions=[VerificationTicketRecord.used_at.set(iso())],
            condition=VerificationTicketRecord.pk.exists()
            & VerificationTicketRecord.used_at.does_not_exist()
            & (VerificationTicketRecord.provider_id == provider_id)
            & (VerificationTicketRecord.expires_at > int(time.time())),
        )
    except Exception as exc:
        if condition_failed(exc):
            message = (
                f"This verification link was already used, has expired or is for another provider; "
                f"run `bitbridge providers verify {provider_id}` for a new one."
            )
            raise AccessDenied(message, title="Verification link not valid") from None
        raise
    return digest


def record_outcome(ticket_digest: str | None, outcome: str) -> None:
    """Tell the waiting CLI how its round trip ended (nothing to do for an admin's browser session)."""
    assert outcome in OUTCOMES
    if not ticket_digest:
        return
    try:
        VerificationTicketRecord(ticket_key(ticket_digest)).update(
            actions=[VerificationTicketRecord.outcome.set(outcome)], condition=VerificationTicketRecord.pk.exists()
        )
    except Exception as exc:
        if not condition_failed(exc):  # gone (expired and deleted): nobody is waiting any more
            raise


def outcome(ticket: str) -> str | None:
    """How the round trip begun with `ticket` ended: verified, failed, or None while it has not."""
    try:
        return VerificationTicketRecord.get(ticket_key(_digest(ticket)), consistent_read=True).outcome
    except VerificationTicketRecord.DoesNotExist:
        return None
