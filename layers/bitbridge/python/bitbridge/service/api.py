"""The service API's operations, one function per route, for an authenticated Caller.

They take plain values and return plain values (or raise a Problem); bitbridge.edge
shapes HTTP.
"""

from __future__ import annotations

import time
from typing import Any

from bitbridge import accounts, budget, calls, connection_events, providers, tokens
from bitbridge.imports import kickoff, queries
from bitbridge.service import links, proxy
from bitbridge.service.cache import TtlCache
from bitbridge.service.credentials import Caller, checked_return_to
from bitbridge.service.errors import ServiceRefused, bad_request, refuse
from bitbridge.store.accounts import ConnectionRecord, user_pk
from bitbridge.store.providers import ProviderRecord

# A vended token is good for at least this long after it is handed out, where the provider's tokens live
# long enough: capped at half their lifetime (`tokens.term`), e.g. 150 s for 300 s tokens.
TOKEN_MIN_VALIDITY_SECONDS = 300


def _text(body: dict[str, Any], name: str, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise bad_request(f"`{name}` is required (a string).")
    return value


_providers: TtlCache[ProviderRecord] = TtlCache()
# (user id, provider id) -> the token last vended: a warm call needs no DynamoDB read and no KMS decrypt.
_tokens: TtlCache[tokens.Fresh] = TtlCache()


def _provider(provider_id: str) -> ProviderRecord:
    found = _providers.get(provider_id)
    if found is None:
        found = providers.get_provider(provider_id)  # UnknownProvider (404) names it
        _providers.put(provider_id, found)
    return found


# ------------------------------------------------------------------------------------------- connections


def create_connect_session(caller: Caller, body: Any, base_url: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise bad_request("The body must be a JSON object: {end_user_id, return_to, provider?}.")
    end_user_id = links.check_end_user_id(body.get("end_user_id"))
    provider_id = _text(body, "provider", required=False)
    if provider_id is not None:
        _provider(provider_id)
    return_to = checked_return_to(caller, body.get("return_to"))
    return links.create_session(caller, end_user_id, provider_id, return_to, base_url)


def _reconnect(
    caller: Caller, provider_id: str, end_user_id: str, base_url: str, code: str, message: str
) -> ServiceRefused:
    """409 with a fresh connect URL the product can send its user to (back to its first origin)."""
    return_to = f"{caller.origins[0]}/" if caller.origins else "/api/me"
    session = links.create_session(caller, end_user_id, provider_id, return_to, base_url)
    return refuse(code, message, connect_url=session["connect_url"], connect_url_expires_at=session["expires_at"])


def _not_connected(caller: Caller, provider_id: str, end_user_id: str, base_url: str) -> ServiceRefused:
    message = f"End user {end_user_id} has not connected {provider_id}: send them to connect_url."
    return _reconnect(caller, provider_id, end_user_id, base_url, "not_connected", message)


def _reauth_required(
    caller: Caller, provider_id: str, end_user_id: str, base_url: str, why: tokens.ReauthRequired
) -> ServiceRefused:
    message = f"End user {end_user_id}'s connection to {provider_id} must be re-authorised: send them to connect_url."
    refused = _reconnect(caller, provider_id, end_user_id, base_url, "reauth_required", message)
    refused.details.update(reason=why.reason, detail=why.message)  # why, in words the end user can be shown
    return refused


def _linked_user(caller: Caller, provider_id: str, end_user_id: str, base_url: str) -> str:
    links.check_end_user_id(end_user_id)
    _provider(provider_id)
    user_id = links.user_for(caller.client_id, end_user_id)
    if user_id is None:
        raise _not_connected(caller, provider_id, end_user_id, base_url)
    return user_id


def _connection(user_id: str, provider_id: str) -> ConnectionRecord | None:
    try:
        return ConnectionRecord.get(user_pk(user_id), ConnectionRecord.sort_key(provider_id))
    except ConnectionRecord.DoesNotExist:
        return None


def connection(caller: Caller, provider_id: str, end_user_id: str, base_url: str) -> dict[str, Any]:
    user_id = _linked_user(caller, provider_id, end_user_id, base_url)
    conn = _connection(user_id, provider_id)
    if conn is None:
        raise _not_connected(caller, provider_id, end_user_id, base_url)
    return {"end_user_id": end_user_id, **accounts.public_connection(conn)}


def connection_budget(caller: Caller, provider_id: str, end_user_id: str, base_url: str) -> dict[str, Any]:
    """The end user's rate-limit budgets on the provider: each class's used and limit now, 429s met, work
    waiting (per_consumer: the OAuth consumer's, which every end user shares)."""
    user_id = _linked_user(caller, provider_id, end_user_id, base_url)
    provider = _provider(provider_id)
    return {"provider": provider_id, "end_user_id": end_user_id} | budget.for_connection(
        provider_id, user_id, providers.limits(provider)
    )


def delete_connection(caller: Caller, provider_id: str, end_user_id: str, base_url: str) -> dict[str, Any]:
    user_id = _linked_user(caller, provider_id, end_user_id, base_url)
    conn = _connection(user_id, provider_id)
    if conn is None:
        raise refuse("not_found", f"End user {end_user_id} has no connection to {provider_id}.")
    conn.delete()
    _tokens.drop((user_id, provider_id))
    connection_events.publish("connection.deleted", user_id, provider_id, username=conn.username or None)
    return {"deleted": True, "provider": provider_id, "end_user_id": end_user_id}


# ------------------------------------------------------------------------------------------- tokens


def _fresh(caller: Caller, provider_id: str, end_user_id: str, base_url: str, stale: str | None = None) -> tokens.Fresh:
    """A token good for TOKEN_MIN_VALIDITY_SECONDS more (capped by the provider's token lifetime);
    `stale` (refused by Bitbucket) forces a refresh."""
    user_id = _linked_user(caller, provider_id, end_user_id, base_url)
    key = (user_id, provider_id)
    cached = _tokens.get(key) if stale is None else None
    # Served from the cache only while tokens.fresh would hand out the same token (no refresh due yet).
    if cached is not None and time.time() < cached.refresh_due_at:
        return cached
    _tokens.drop(key)
    try:
        fresh = tokens.fresh(user_id, provider_id, stale=stale, min_validity=TOKEN_MIN_VALIDITY_SECONDS)
    except tokens.NotConnected:
        raise _not_connected(caller, provider_id, end_user_id, base_url) from None
    except tokens.ReauthRequired as why:
        raise _reauth_required(caller, provider_id, end_user_id, base_url, why) from None
    _tokens.put(key, fresh)
    return fresh


def token(caller: Caller, provider_id: str, end_user_id: str, base_url: str) -> dict[str, Any]:
    fresh = _fresh(caller, provider_id, end_user_id, base_url)
    return {
        "access_token": fresh.access_token,
        "token_type": "bearer",
        "expires_at": fresh.expires_at,
        "scopes": fresh.scopes.split() if fresh.scopes else [],
        "username": fresh.username,
        "provider": provider_id,
        "end_user_id": end_user_id,
    }


# ------------------------------------------------------------------------------------------- as the end user


def end_user_caller(
    caller: Caller, provider_id: str, end_user_id: str, base_url: str, *, patience: calls.Patience = proxy.PATIENCE
) -> calls.Caller:
    """A `calls.Caller` acting as the end user, interactive (their budget): their fresh token (the short cache
    over `tokens.fresh`), refreshed once when Bitbucket refuses it. 409 with `connect_url` when they have not
    connected or must reconnect. The proxy's, the files' and the typed actions' one way to Bitbucket."""
    provider = _provider(provider_id)
    first = _fresh(caller, provider_id, end_user_id, base_url)

    def token_for(stale: str | None) -> str:
        if stale is None:
            return first.access_token
        return _fresh(caller, provider_id, end_user_id, base_url, stale=stale).access_token

    person = _linked_user(caller, provider_id, end_user_id, base_url)  # cached: read by _fresh just now
    return calls.Caller(person, provider, priority=calls.INTERACTIVE, patience=patience, token_source=token_for)


def reauth_required(
    caller: Caller, provider_id: str, end_user_id: str, base_url: str, why: tokens.ReauthRequired
) -> ServiceRefused:
    """409 `reauth_required` with a connect URL and the reason: Bitbucket refused the end user's token even
    after a refresh, or the refresh itself was refused."""
    return _reauth_required(caller, provider_id, end_user_id, base_url, why)


# ------------------------------------------------------------------------------------------- proxy


def connection_of(user_id: str, provider_id: str) -> ConnectionRecord | None:
    return _connection(user_id, provider_id)


def not_connected(caller: Caller, provider_id: str, end_user_id: str, base_url: str) -> ServiceRefused:
    return _not_connected(caller, provider_id, end_user_id, base_url)


def refused_after_refresh(caller: Caller, provider_id: str, end_user_id: str, base_url: str) -> ServiceRefused:
    """409 `reauth_required`: Bitbucket refused even a freshly refreshed token (the grant is gone), reason
    unknown."""
    why = tokens.ReauthRequired(provider_id, f"Bitbucket refused a fresh token; connect {provider_id} again.")
    return _reauth_required(caller, provider_id, end_user_id, base_url, why)


def proxy_call(
    caller: Caller,
    provider_id: str,
    end_user_id: str,
    *,
    method: str,
    raw_path: str,
    query: str,
    body: bytes | None,
    content_type: str | None,
    base_url: str,
) -> proxy.Answer:
    path = proxy.safe_path(raw_path)  # refused before any lookup or token use
    provider = _provider(provider_id)
    url = proxy.target_url(provider.api_url, path)
    as_user = end_user_caller(caller, provider_id, end_user_id, base_url, patience=proxy.PATIENCE)
    answer = proxy.forward(as_user, method, url, query=query, body=body, content_type=content_type)
    proxy_base = f"{base_url.rstrip('/')}/service/v1/proxy/{provider_id}/{end_user_id}"
    answer.body = proxy.rewrite_pagination(
        answer.body, answer.headers.get("Content-Type", ""), provider.api_url, proxy_base
    )
    return answer


# ------------------------------------------------------------------------------------------- imports


def start_imports(caller: Caller, body: Any, base_url: str) -> list[dict[str, Any]]:
    if not isinstance(body, dict):
        raise bad_request("The body must be a JSON object: {end_user_id, provider, repositories}.")
    end_user_id = links.check_end_user_id(body.get("end_user_id"))
    provider_id, names, reimport = kickoff.parse_request(body)
    user_id = _linked_user(caller, provider_id, end_user_id, base_url)
    try:
        return kickoff.start(
            user_id, provider_id, names, reimport=reimport, hook_base_url=base_url, wanted_parts=kickoff.parts(body)
        )
    except tokens.NotConnected:
        raise _not_connected(caller, provider_id, end_user_id, base_url) from None
    except tokens.ReauthRequired as why:
        raise _reauth_required(caller, provider_id, end_user_id, base_url, why) from None


def get_import(caller: Caller, import_id: str, end_user_id: str | None) -> dict[str, Any]:
    end_user = links.check_end_user_id(end_user_id)
    user_id = links.user_for(caller.client_id, end_user)
    job = queries.get_for(user_id, import_id) if user_id else None
    if job is None:
        raise refuse("not_found", f"No import {import_id} for end user {end_user}.")
    return queries.public(job)
