"""A repository's generated history for the change-id tests: Bitbucket's truth, the deliveries it sends
(each lost or kept, in order), and bitbridge's publisher and reconciler run on it through the same pure
functions the Lambdas use (bitbridge.webhooks.normalise / publish / baseline, bitbridge.reconcile.diff /
events, bitbridge.change_ids), with the ledger held in memory instead of DynamoDB.

Payloads and REST objects are built per flavor in the shapes Bitbucket sends them (Cloud `repo:push`,
`pullrequest:*`, `/refs/*`, `/pullrequests`; Data Center `repo:refs_changed`, `pr:*`, `/branches`, `/tags`,
`/pull-requests`), Data Center annotated tags included (the payload names the tag object, with or without
the tagged commit).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bitbridge.bitbucket.cloud import CLOUD_API
from bitbridge.bitbucket.datacenter import DATACENTER_API
from bitbridge.change_ids import Ledger, PrEntry, RefEntry, observation_from_dict, section_value, split_ref_key
from bitbridge.reconcile import diff, events
from bitbridge.store.deliveries import Delivery
from bitbridge.store.observed import Observed
from bitbridge.webhooks import baseline
from bitbridge.webhooks.normalise import ledger_reports, normalise, pull_request_section, repository_section
from bitbridge.webhooks.publish import Normalised, apply_to_ledger, event_to_publish

PROVIDER = "prov"
BASE_TIME = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ZERO = "0" * 40


def sha(*parts: object) -> str:
    return hashlib.sha1(":".join(map(str, parts)).encode(), usedforsecurity=False).hexdigest()


# ------------------------------------------------------------------------------------------ Bitbucket


@dataclass
class Tag:
    commit: str
    obj: str  # the tag object (Data Center annotated), else the commit


@dataclass
class PullRequest:
    id: int
    title: str
    source: str
    target: str
    source_commit: str
    state: str = "OPEN"
    updated: int = 0  # milliseconds after BASE_TIME


@dataclass
class Sent:
    """One delivery Bitbucket attempted, and the truth transition it reports."""

    id: str
    key: str  # X-Event-Key
    payload: dict[str, Any]
    object: str  # "r:b:main" / "p:3"
    step: int  # when it happened (the truth's clock)
    dropped: bool


@dataclass
class Truth:
    """Bitbucket's side: refs, tags, pull requests, and every delivery it tried to send."""

    flavor: str
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, Tag] = field(default_factory=dict)
    pull_requests: dict[int, PullRequest] = field(default_factory=dict)
    history: dict[str, list[str]] = field(default_factory=dict)  # each ref's commits, oldest first
    sent: list[Sent] = field(default_factory=list)
    step: int = 0
    repo_id: str = ""

    def __post_init__(self) -> None:
        self.repo_id = "{11111111-2222-4333-8444-555555555555}" if self.flavor == "cloud" else "42"
        self.branches = {"main": sha("main", 0)}
        self.history = {"b:main": [self.branches["main"]]}

    def tick(self) -> int:
        self.step += 1
        return self.step

    # -- changes ------------------------------------------------------------------------------------
    def move_branch(self, name: str, commit: str | None, dropped: bool) -> None:
        old = self.branches.get(name)
        if commit is None:
            self.branches.pop(name, None)
        else:
            self.branches[name] = commit
            self.history.setdefault(f"b:{name}", []).append(commit)
        self._send(self.payloads().push("branch", name, old, commit), f"r:b:{name}", dropped)
        for pr in self.pull_requests.values():  # new commits on a pull request's source update it
            if pr.state == "OPEN" and pr.source == name and commit is not None and commit != pr.source_commit:
                pr.source_commit = commit
                self.update_pr(pr, dropped)

    def move_tag(self, name: str, commit: str | None, annotated: bool, dropped: bool, with_commit: bool) -> None:
        old = self.tags.get(name)
        if commit is None:
            self.tags.pop(name, None)
            new = None
        else:
            new = Tag(commit, sha("tag", name, commit, self.step) if annotated else commit)
            self.tags[name] = new
            self.history.setdefault(f"t:{name}", []).append(new.obj)
        payload = self.payloads().push("tag", name, old, new, with_commit=with_commit)
        self._send(payload, f"r:t:{name}", dropped)

    def open_pr(self, pr_id: int, title: str, source: str, dropped: bool) -> None:
        pr = PullRequest(pr_id, title, source, "main", self.branches[source])
        self.pull_requests[pr_id] = pr
        self.update_pr(pr, dropped, key="opened")

    def update_pr(self, pr: PullRequest, dropped: bool, key: str = "updated") -> None:
        pr.updated = self.tick() * 1000 + 7  # milliseconds, strictly later each change
        self._send(self.payloads().pull_request(pr, key), f"p:{pr.id}", dropped)

    def close_pr(self, pr: PullRequest, state: str, dropped: bool, push_dropped: bool) -> None:
        pr.state = state
        if state == "MERGED":  # a merge moves the target branch, and Bitbucket sends that push
            self.move_branch(pr.target, sha("merge", pr.id, self.step), push_dropped)
        self.update_pr(pr, dropped, key="merged" if state == "MERGED" else "declined")

    def _send(self, payload: tuple[str, dict[str, Any]], obj: str, dropped: bool) -> None:
        key, body = payload
        self.sent.append(Sent(f"d-{len(self.sent)}", key, body, obj, self.tick(), dropped))

    def payloads(self) -> Payloads:
        return CloudPayloads(self) if self.flavor == "cloud" else DataCenterPayloads(self)

    # -- what the REST API lists -----------------------------------------------------------------------
    def ref_values(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        return self.payloads().rest_refs()

    def pull_requests_newest_first(self) -> list[dict[str, Any]]:
        prs = sorted(self.pull_requests.values(), key=lambda p: p.updated, reverse=True)
        return [self.payloads().rest_pull_request(pr) for pr in prs]

    def idents(self) -> dict[str, str]:
        out = {f"b:{n}": c for n, c in self.branches.items()}
        out.update({f"t:{n}": t.obj for n, t in self.tags.items()})
        return out


def _stamp(ms: int) -> datetime:
    return BASE_TIME + timedelta(milliseconds=ms)


class Payloads:
    def __init__(self, truth: Truth) -> None:
        self.truth = truth

    def push(self, kind: str, name: str, old: Any, new: Any, *, with_commit: bool = True) -> tuple[str, dict[str, Any]]:
        raise NotImplementedError

    def pull_request(self, pr: PullRequest, key: str) -> tuple[str, dict[str, Any]]:
        raise NotImplementedError

    def rest_refs(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        raise NotImplementedError

    def rest_pull_request(self, pr: PullRequest) -> dict[str, Any]:
        raise NotImplementedError


class CloudPayloads(Payloads):
    KEYS = {
        "opened": "pullrequest:created",
        "updated": "pullrequest:updated",
        "merged": "pullrequest:fulfilled",
        "declined": "pullrequest:rejected",
    }

    def repository(self) -> dict[str, Any]:
        return {
            "type": "repository",
            "uuid": self.truth.repo_id,
            "full_name": "acme/hist",
            "name": "hist",
            "workspace": {"slug": "acme"},
            "is_private": True,
        }

    def push(self, kind, name, old, new, *, with_commit=True):
        def side(value: Any) -> dict[str, Any] | None:
            if value is None:
                return None
            commit = value.commit if isinstance(value, Tag) else value
            return {"name": name, "type": kind, "target": {"type": "commit", "hash": commit}}

        change = {"old": side(old), "new": side(new), "forced": False, "truncated": False}
        return "repo:push", {"repository": self.repository(), "push": {"changes": [change]}}

    def _pr(self, pr: PullRequest) -> dict[str, Any]:
        return {
            "id": pr.id,
            "title": pr.title,
            "state": pr.state,
            "updated_on": _stamp(pr.updated).isoformat(),
            "source": {"branch": {"name": pr.source}, "commit": {"hash": pr.source_commit[:12]}},
            "destination": {"branch": {"name": pr.target}, "commit": {"hash": "0123456789ab"}},
        }

    def pull_request(self, pr, key):
        return self.KEYS[key], {"repository": self.repository(), "pullrequest": self._pr(pr)}

    def rest_refs(self):
        branches = [{"name": n, "target": {"hash": c}} for n, c in self.truth.branches.items()]
        tags = [{"name": n, "target": {"hash": t.commit}} for n, t in self.truth.tags.items()]
        return branches, tags

    def rest_pull_request(self, pr):
        return self._pr(pr)


class DataCenterPayloads(Payloads):
    KEYS = {"opened": "pr:opened", "updated": "pr:modified", "merged": "pr:merged", "declined": "pr:declined"}

    def repository(self) -> dict[str, Any]:
        return {"slug": "hist", "id": 42, "name": "hist", "project": {"key": "ENG"}, "public": False}

    def push(self, kind, name, old, new, *, with_commit=True):
        ref_id = f"refs/{'heads' if kind == 'branch' else 'tags'}/{name}"
        from_hash = (old.obj if isinstance(old, Tag) else old) or ZERO
        to_hash = (new.obj if isinstance(new, Tag) else new) or ZERO
        change: dict[str, Any] = {
            "ref": {"id": ref_id, "displayId": name, "type": kind.upper()},
            "refId": ref_id,
            "fromHash": from_hash,
            "toHash": to_hash,
            "type": "ADD" if old is None else "DELETE" if new is None else "UPDATE",
        }
        body: dict[str, Any] = {
            "eventKey": "repo:refs_changed",
            "date": "2026-03-01T12:00:00+0000",
            "repository": self.repository(),
            "changes": [change],
        }
        if isinstance(new, Tag) and new.obj != new.commit and with_commit:
            body["toCommit"] = {"id": new.commit, "displayId": new.commit[:11]}  # Data Center 10
        return "repo:refs_changed", body

    def _ref(self, name: str, commit: str) -> dict[str, Any]:
        return {"id": f"refs/heads/{name}", "displayId": name, "latestCommit": commit, "repository": self.repository()}

    def _pr(self, pr: PullRequest) -> dict[str, Any]:
        return {
            "id": pr.id,
            "version": 0,
            "title": pr.title,
            "state": pr.state,
            "updatedDate": int(_stamp(pr.updated).timestamp() * 1000),
            "fromRef": self._ref(pr.source, pr.source_commit),
            "toRef": self._ref(pr.target, self.truth.branches.get(pr.target, ZERO)),
        }

    def pull_request(self, pr, key):
        return self.KEYS[key], {
            "eventKey": self.KEYS[key],
            "date": "2026-03-01T12:00:00+0000",
            "pullRequest": self._pr(pr),
        }

    def rest_refs(self):
        branches = [
            {"id": f"refs/heads/{n}", "displayId": n, "latestCommit": c} for n, c in self.truth.branches.items()
        ]
        tags = [
            {"id": f"refs/tags/{n}", "displayId": n, "type": "TAG", "hash": t.obj, "latestCommit": t.commit}
            for n, t in self.truth.tags.items()
        ]
        return branches, tags

    def rest_pull_request(self, pr):
        return self._pr(pr)


# ------------------------------------------------------------------------------------------ bitbridge


@dataclass
class Published:
    event: dict[str, Any]
    source: str  # a delivery id, or an observation's id
    read_step: int | None = None  # observations: when the reconciler read Bitbucket


@dataclass
class Bitbridge:
    """The publisher and the reconciler over one repository, the ledger in memory, the deliveries
    stream a FIFO (as the deliveries table's stream gives records, in the order they were written)."""

    truth: Truth
    observed: Observed | None = None
    stream: list[tuple[str, Any]] = field(default_factory=list)  # ("delivery", Sent) / ("observation", body)
    outbox_ids: set[str] = field(default_factory=set)
    published: list[Published] = field(default_factory=list)
    absorbed: dict[str, list[str | None]] = field(default_factory=dict)  # delivery id -> told as
    superseded: list[str] = field(default_factory=list)
    reads: dict[str, tuple[int, dict[str, str]]] = field(default_factory=dict)  # observation id -> step, truth
    clock: int = 0
    received: int = 0  # how many of Bitbucket's deliveries reached the receiver (in order)

    @property
    def api(self) -> Any:
        return CLOUD_API if self.truth.flavor == "cloud" else DATACENTER_API

    def now(self) -> str:
        self.clock += 1
        return (BASE_TIME + timedelta(seconds=self.clock)).isoformat(timespec="microseconds").replace("+00:00", "Z")

    # -- the import -------------------------------------------------------------------------------------
    def import_repository(self) -> None:
        """What an import records: every ref, the open pull requests, the newest update as watermark."""
        branches, tags = self.truth.ref_values()
        refs = baseline.refs_of(self.api, "branch", branches) | baseline.refs_of(self.api, "tag", tags)
        opened, newest = baseline.pull_requests_of(self.api, self.truth.pull_requests_newest_first())
        if newest is not None:
            opened.setdefault(newest[0], (newest[1], newest[2]))
        ledger = Ledger("epoch-1")
        ledger.refs = {k: RefEntry(ident, 0, self.now(), commit) for k, (ident, commit) in refs.items()}
        ledger.prs = {p: PrEntry(value, when, 0, self.now()) for p, (value, when) in opened.items()}
        section = repository_section(self.truth.flavor, self._raw_repository())
        watermark = newest[2] if newest else None
        self.observed = Observed(ledger, baseline_at=self.now(), pr_watermark=watermark, repository=section)

    def _raw_repository(self) -> dict[str, Any]:
        payloads = self.truth.payloads()
        return payloads.repository()  # type: ignore[attr-defined,no-any-return]

    # -- deliveries ---------------------------------------------------------------------------------------
    def receive_new(self) -> None:
        """Every delivery Bitbucket sent since the last call that was not lost goes into the stream."""
        for sent in self.truth.sent[self.received :]:
            if not sent.dropped:
                self.stream.append(("delivery", (sent, self.now())))
        self.received = len(self.truth.sent)

    def publish_next(self) -> bool:
        if not self.stream:
            return False
        kind, item = self.stream.pop(0)
        if kind == "delivery":
            item, received_at = item
        assert self.observed is not None
        if kind == "delivery":
            normalised = self._normalised_delivery(item, received_at)
        else:
            normalised = self._normalised_observation(item)
        if normalised.moves is not None or normalised.pull_request is not None or normalised.observation is not None:
            self.observed.ledger.watermark = self.observed.pr_watermark  # read with the ledger, as the store does
            apply_to_ledger(self.observed, [normalised], self.now())
            self.observed.ledger.touched.clear()
        event = event_to_publish(normalised)
        if event is None:
            if kind == "delivery":
                self.absorbed[item.id] = list(normalised.told_as or [])
            else:
                self.superseded.append(normalised.delivery.delivery_id)
            return True
        read = self.reads.get(event["id"], (None, {}))[0]
        self.published.append(Published(event, normalised.delivery.delivery_id, read))
        return True

    def drain(self) -> None:
        while self.publish_next():
            pass

    def _normalised_delivery(self, sent: Sent, received_at: str) -> Normalised:
        event = normalise(
            flavor=self.truth.flavor,
            provider_id=PROVIDER,
            event_key=sent.key,
            payload=sent.payload,
            delivery_id=sent.id,
            received_at=received_at,
        )
        item = Normalised(_delivery(sent.id, "webhook", received_at), event)
        reports = ledger_reports(self.truth.flavor, sent.payload, event)
        if reports is not None:
            item.moves, item.pull_request, item.item = reports
        return item

    def _normalised_observation(self, body: str) -> Normalised:
        data = json.loads(body)
        return Normalised(
            _delivery(data["event"]["id"], "reconciliation"),
            data["event"],
            observation=observation_from_dict(data["observation"]),
        )

    # -- the reconciler -------------------------------------------------------------------------------------
    def reconcile(self) -> int:
        """One reconciliation: the ledger read first, then Bitbucket; each difference into the outbox."""
        assert self.observed is not None
        seen = _copy(self.observed)
        branches, tags = self.truth.ref_values()
        read_at = self.now()
        truth = {}
        for kind, values in (("b", branches), ("t", tags)):
            for name, ident, commit in map(self.api.ref_head, values):
                truth[f"{kind}:{name}"] = (ident, commit)
        section = lambda raw: pull_request_section(self.truth.flavor, raw, "pull_request.updated")  # noqa: E731
        scan = diff.scan_pull_requests(
            seen, self.truth.pull_requests_newest_first(), self.api.pull_request_updated, section
        )
        repository, at = seen.repository or {}, self.now()
        found = [
            (events.push_event(PROVIDER, self.truth.flavor, repository, seen.ledger.epoch, c, at), c.observation)
            for c in diff.ref_changes(seen.ledger, truth, read_at)
        ] + [
            (
                events.pull_request_event(PROVIDER, self.truth.flavor, repository, seen.ledger.epoch, c, at),
                c.observation,
            )
            for c in scan.changes
        ]
        written = 0
        for event, observation in found:
            if event["id"] in self.outbox_ids:
                continue  # the outbox's conditional put: this observation is queued already
            self.outbox_ids.add(event["id"])
            self.reads[event["id"]] = (self.truth.step, self.truth_now())
            self.stream.append(("observation", events.outbox_body(event, observation)))
            written += 1
        watermark, settled = diff.upkeep(scan, seen.pr_watermark, lambda stamps: self._confirm(seen, stamps))
        if watermark and (self.observed.pr_watermark or "") < watermark:
            self.observed.pr_watermark = watermark
        for pr_id in settled:  # forgotten only if unchanged since read
            if self._unchanged(seen, pr_id):
                del self.observed.ledger.prs[pr_id]
        return written

    def _unchanged(self, seen: Observed, pr_id: int) -> bool:
        assert self.observed is not None
        now, then = self.observed.ledger.prs.get(pr_id), seen.ledger.prs.get(pr_id)
        return (
            now is not None
            and then is not None
            and (now.value, now.stamp, now.number) == (then.value, then.stamp, then.number)
        )

    def _confirm(self, seen: Observed, stamps: dict[int, str]) -> list[int]:
        """observed.confirm_pull_requests in memory: only entries unchanged since the read."""
        assert self.observed is not None
        failed = []
        for pr_id, when in stamps.items():
            if self._unchanged(seen, pr_id):
                self.observed.ledger.prs[pr_id].stamp = when
            else:
                failed.append(pr_id)
        return failed

    def truth_now(self) -> dict[str, str]:
        """Bitbucket's state as events show it: ref commits (`b:main`), pull request values (`p:3`)."""
        out = {f"b:{n}": c for n, c in self.truth.branches.items()}
        out.update({f"t:{n}": t.commit for n, t in self.truth.tags.items()})
        for raw in self.truth.pull_requests_newest_first():
            section = pull_request_section(self.truth.flavor, raw, "pull_request.updated")
            out[f"p:{section['id']}"] = section_value(section)
        return out

    # -- what bitbridge believes ------------------------------------------------------------------------------
    def heads(self) -> dict[str, str]:
        assert self.observed is not None
        return {k: e.head for k, e in self.observed.ledger.refs.items() if e.head is not None}


def _delivery(delivery_id: str, origin: str, received_at: str = "2026-03-01T12:00:00.000Z") -> Delivery:
    return Delivery(
        pk=f"{PROVIDER}#{delivery_id}",
        delivery_id=delivery_id,
        provider_id=PROVIDER,
        subscription_id="sub",
        event_key="",
        status="received",
        received_at=received_at,
        body="",
        origin=origin,
    )


def _copy(observed: Observed) -> Observed:
    """The reconciler's read: a snapshot the publisher's later claims do not change."""
    ledger = observed.ledger
    refs = {k: RefEntry(e.head, e.number, e.at, e.commit, list(e.jumps)) for k, e in ledger.refs.items()}
    prs = {p: PrEntry(e.value, e.stamp, e.number, e.at, list(e.spans), e.told) for p, e in ledger.prs.items()}
    return Observed(
        Ledger(ledger.epoch, ledger.clock, refs, prs), observed.baseline_at, observed.pr_watermark, observed.repository
    )


def change_ids_of(published: list[Published]) -> list[str]:
    """One id per change: each ref change of a push, the event's for everything else."""
    out: list[str] = []
    for p in published:
        if p.event["type"] == "repository.push":
            out.extend(c["change_id"] for c in p.event["ref_changes"])
        else:
            out.append(p.event["change_id"])
    return out


def object_of(event: dict[str, Any]) -> str:
    if event["type"] == "repository.push":
        (change,) = event["ref_changes"]
        return f"r:{'t' if change['kind'] == 'tag' else 'b'}:{change['name']}"
    return f"p:{event['pull_request']['id']}"


__all__ = ["Bitbridge", "Published", "Truth", "change_ids_of", "object_of", "sha", "split_ref_key"]
