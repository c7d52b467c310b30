"""Git's smart HTTP protocol (dulwich's client) with every HTTP request sent by `calls.Caller.send`.

So a fetch is a person's Bitbucket traffic like any REST call: their token (Cloud as the password of
`x-token-auth`, Data Center as Bearer: `Bitbucket.git_authorization`), one refresh on a 401, Bitbucket's 429
and 5xx answered by the same rules, each request counted (`Caller.calls`, the job's `api_calls`) and, where a
rate-limit budget is kept, spent from the person's `git` class (Cloud counts git in its own 60,000 an hour).

A fetch asks for a self-contained pack (no `thin-pack`: every delta's base travels in the same pack) so the pack
is a bundle's pack as it arrives; it is streamed to a file, never held in memory.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from dulwich.client import AbstractHttpGitClient
from dulwich.errors import GitProtocolError, HangupException
from dulwich.objects import ObjectID
from dulwich.refs import Ref

from bitbridge import tokens
from bitbridge.bitbucket import http
from bitbridge.bitbucket.api import Bitbucket
from bitbridge.bitbucket.http import GIT_TIMEOUT, BitbucketError
from bitbridge.bitbucket.limits import GIT
from bitbridge.calls import Caller
from bitbridge.imports.bundles import Refs, pack_objects

WHAT = "fetching the repository over git"
WANTED = ("refs/heads/", "refs/tags/")  # every branch and tag (not Data Center's refs/pull-requests/*)


class TooLarge(Exception):
    """More than the limit arrived (the fetch stopped there)."""

    def __init__(self, received: int, limit: int) -> None:
        super().__init__(f"more than {limit} bytes")
        self.received = received
        self.limit = limit


class OutOfTime(Exception):
    """The fetch would not finish before the function's deadline."""


@dataclass
class Fetched:
    refs: Refs  # branches, tags and HEAD as Bitbucket advertised them
    peeled: Refs  # annotated tag -> the commit it names
    pack: Path | None  # None: nothing was fetched (the refs were as given: `unchanged`)
    bytes: int = 0
    objects: int = 0
    requests: int = 0  # HTTP requests to Bitbucket
    seconds: float = 0.0
    acknowledged: set[str] = field(default_factory=set)  # haves the server knew


class _Answer:
    """What dulwich reads of an HTTP answer (a urllib3 response's few fields)."""

    def __init__(self, response: requests.Response, url: str) -> None:
        self._response = response
        self.status = response.status_code
        self.headers = response.headers
        self.content_type = response.headers.get("Content-Type")
        self.redirect_location = response.url if response.url != url else ""

    def close(self) -> None:
        self._response.close()


class _Client(AbstractHttpGitClient):
    def __init__(self, url: str, caller: Caller, authorization: Callable[[str], str]) -> None:
        super().__init__(url, thin_packs=False, quiet=True)
        self._caller = caller
        self._authorization = authorization
        self.requests = 0
        self.peeled: dict[Ref, ObjectID] = {}

    def _discover_references(self, *args: Any, **kwargs: Any) -> Any:
        found = super()._discover_references(*args, **kwargs)
        self.peeled = dict(found[4] or {})  # annotated tags' commits, which fetch_pack does not hand on
        return found

    def _http_request(
        self,
        url: str,
        headers: dict[str, str] | None = None,
        data: bytes | Iterator[bytes] | None = None,
        raise_for_status: bool = True,
    ) -> tuple[Any, Callable[[int], bytes]]:
        body = data if data is None or isinstance(data, bytes) else b"".join(data)
        self.requests += 1
        response = self._caller.send(
            "GET" if body is None else "POST",
            url,
            what=WHAT,
            resource=GIT,
            data=body,
            headers={**(headers or {}), "Pragma": "no-cache"},
            stream=True,
            authorization=self._authorization,
            timeout=GIT_TIMEOUT,
        )
        if response.status_code >= 400:
            response.close()
            if response.status_code == 401 and self._caller.user_id is not None:
                raise tokens.ReauthRequired(self._caller.provider.provider_id)  # refused again after a refresh
            http.raise_for_status(response, WHAT)
        response.raw.decode_content = True
        return _Answer(response, url), response.raw.read


class _Haves:
    """dulwich's graph walker for a client without a local repository: the commits it says it has."""

    def __init__(self, haves: list[str]) -> None:
        self._todo = [ObjectID(h.encode()) for h in haves]
        self.acknowledged: set[str] = set()

    def __next__(self) -> ObjectID | None:
        return self._todo.pop(0) if self._todo else None

    def ack(self, sha: ObjectID, /) -> None:
        self.acknowledged.add(sha.decode())

    def nak(self) -> None:
        pass


def fetch(
    caller: Caller,
    bitbucket: Bitbucket,
    url: str,
    into: Path,
    *,
    haves: list[str],
    unchanged: Callable[[Refs], bool] = lambda _refs: False,
    limit: int,
    deadline: float,
) -> Fetched:
    """Every branch and tag of the repository at `url`, as one pack streamed to `into`.

    `haves`: commits the caller already has (earlier bundles): the server leaves out what they reach.
    `unchanged(refs)`: True when the caller needs nothing for these refs (then nothing is downloaded and
    `pack` is None: one request). More than `limit` bytes raises TooLarge; passing `deadline`
    (`time.monotonic()`) while the pack arrives raises OutOfTime. Bitbucket's refusals and failures raise as
    for any call (`bitbucket.http.raise_for_status`)."""
    client = _Client(url, caller, bitbucket.git_authorization)
    walker = _Haves(haves)
    found: Refs = {}
    peeled: Refs = {}
    started = time.monotonic()
    received = [0]

    def wants(refs: Mapping[Ref, ObjectID], depth: int | None = None) -> list[ObjectID]:
        for name, sha in refs.items():
            text = name.decode()
            if text == "HEAD" or text.startswith(WANTED):
                found[text] = sha.decode()
        peeled.update({n.decode(): s.decode() for n, s in client.peeled.items() if n.decode() in found})
        if unchanged(found):
            return []
        return sorted({ObjectID(sha.encode()) for sha in found.values() if sha not in haves})

    with into.open("wb") as out:

        def pack_data(chunk: bytes) -> int:
            received[0] += len(chunk)
            if received[0] > limit:
                raise TooLarge(received[0], limit)
            if time.monotonic() > deadline:
                raise OutOfTime()
            out.write(chunk)
            return len(chunk)

        try:
            # Protocol v0: the refs and their peeled tags in one advertisement, as every Bitbucket serves it.
            client.fetch_pack(b"", wants, walker, pack_data, protocol_version=0)
        except (GitProtocolError, HangupException) as exc:
            raise BitbucketError(f"{WHAT}: {exc}") from None  # a broken answer: transient, retried
    nothing = received[0] == 0
    return Fetched(
        found,
        peeled,
        None if nothing else into,
        received[0],
        0 if nothing else pack_objects(into),
        client.requests,
        time.monotonic() - started,
        walker.acknowledged,
    )
