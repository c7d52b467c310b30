"""Generated histories (Hypothesis state machines, one per flavor): random pushes, force-pushes back to
earlier commits, branch and tag create / delete / restore (Data Center annotated tags with and without
`toCommit`), pull requests opened / retitled / retargeted / merged (with the push the merge fires) /
declined, each delivery lost or kept, deliveries reaching the receiver late, the publisher lagging behind
the stream, and reconciliations in between. bitbridge runs through the pure functions the Lambdas use
(tests/unit/histories.py).

Invariants, after every step: no change id reaches the bus twice. At the end, with every delivery
still in flight received and published, and one more reconciliation:

- bitbridge's observed state equals Bitbucket's (every ref head, every pull request's state);
- another reconciliation finds nothing;
- every delivery that arrived was published once, or absorbed into a reconciler change that read
  Bitbucket after it happened; every reconciler change showed what Bitbucket had when it read;
- no two changes share a change id.

On the code before the ledger (change ids hashed from the state reached, observed state written after
publishing), this machine fails within 3 to 7 examples per flavor (10 runs each, 40 steps): first on
issue 20's race (a reconciliation while deliveries wait in the stream). With deliveries published at once
(no race), what it finds and shrinks to is the rollback - push main, force-push it back, force-push it
forward: the redeploy got the first move's id - or a branch deleted and restored, within 3 to 5 examples.
`EXAMPLES` is 150 per flavor (about 15 s each on an idle machine).
"""

from __future__ import annotations

from collections import Counter

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from bitbridge.change_ids import section_value
from tests.unit.histories import Bitbridge, Truth, change_ids_of, object_of, sha

EXAMPLES = 150
STEPS = 40
BRANCHES = ["main", "develop", "f1", "f2"]
TAGS = ["v1", "v2"]
lost = st.booleans()


class History(RuleBasedStateMachine):
    flavor = "cloud"

    def __init__(self) -> None:
        super().__init__()
        self.truth = Truth(self.flavor)
        # Before the import: a few refs and an open pull request (no hook yet: nothing delivered).
        for name in ("develop", "f1"):
            self.truth.branches[name] = sha(name, 0)
            self.truth.history[f"b:{name}"] = [self.truth.branches[name]]
        self.truth.open_pr(1, "A", "f1", dropped=True)
        self.truth.sent.clear()
        self.bitbridge = Bitbridge(self.truth)
        self.bitbridge.import_repository()
        self.next_pr = 2
        self.commits = 0

    # -- Bitbucket ---------------------------------------------------------------------------------------
    @rule(name=st.sampled_from(BRANCHES), dropped=lost)
    def push(self, name: str, dropped: bool) -> None:
        self.commits += 1
        self.truth.move_branch(name, sha("commit", self.commits), dropped)

    @precondition(lambda self: any(len(set(self.truth.history.get(f"b:{n}", []))) > 1 for n in self.truth.branches))
    @rule(data=st.data(), dropped=lost)
    def force_push_to_an_earlier_commit(self, data: st.DataObject, dropped: bool) -> None:
        names = sorted(n for n in self.truth.branches if len(set(self.truth.history[f"b:{n}"])) > 1)
        name = data.draw(st.sampled_from(names))
        earlier = sorted(set(self.truth.history[f"b:{name}"]) - {self.truth.branches[name]})
        self.truth.move_branch(name, data.draw(st.sampled_from(earlier)), dropped)

    @precondition(lambda self: any(n != "main" for n in self.truth.branches))
    @rule(data=st.data(), dropped=lost)
    def delete_branch(self, data: st.DataObject, dropped: bool) -> None:
        name = data.draw(st.sampled_from(sorted(n for n in self.truth.branches if n != "main")))
        self.truth.move_branch(name, None, dropped)

    @precondition(lambda self: any(f"b:{n}" in self.truth.history and n not in self.truth.branches for n in BRANCHES))
    @rule(data=st.data(), dropped=lost)
    def restore_branch_at_its_last_commit(self, data: st.DataObject, dropped: bool) -> None:
        gone = sorted(n for n in BRANCHES if f"b:{n}" in self.truth.history and n not in self.truth.branches)
        name = data.draw(st.sampled_from(gone))
        self.truth.move_branch(name, self.truth.history[f"b:{name}"][-1], dropped)

    @rule(name=st.sampled_from(TAGS), annotated=st.booleans(), with_commit=st.booleans(), dropped=lost)
    def tag_or_untag(self, name: str, annotated: bool, with_commit: bool, dropped: bool) -> None:
        if name in self.truth.tags:
            self.truth.move_tag(name, None, annotated, dropped, with_commit)
        else:
            commit = self.truth.branches["main"]
            self.truth.move_tag(name, commit, annotated and self.flavor == "datacenter", dropped, with_commit)

    @precondition(lambda self: any(n in self.truth.branches for n in ("f1", "f2")))
    @rule(data=st.data(), title=st.sampled_from(["A", "B"]), dropped=lost)
    def open_pull_request(self, data: st.DataObject, title: str, dropped: bool) -> None:
        source = data.draw(st.sampled_from(sorted(n for n in ("f1", "f2") if n in self.truth.branches)))
        self.truth.open_pr(self.next_pr, title, source, dropped)
        self.next_pr += 1

    def _open(self) -> list[int]:
        return sorted(p.id for p in self.truth.pull_requests.values() if p.state == "OPEN")

    @precondition(lambda self: bool(self._open()))
    @rule(data=st.data(), dropped=lost)
    def flip_title(self, data: st.DataObject, dropped: bool) -> None:
        pr = self.truth.pull_requests[data.draw(st.sampled_from(self._open()))]
        pr.title = "B" if pr.title == "A" else "A"
        self.truth.update_pr(pr, dropped)

    @precondition(lambda self: bool(self._open()) and "develop" in self.truth.branches)
    @rule(data=st.data(), dropped=lost)
    def retarget(self, data: st.DataObject, dropped: bool) -> None:
        pr = self.truth.pull_requests[data.draw(st.sampled_from(self._open()))]
        pr.target = "develop" if pr.target == "main" else "main"
        self.truth.update_pr(pr, dropped)

    @precondition(lambda self: bool(self._open()))
    @rule(data=st.data(), merge=st.booleans(), dropped=lost, push_dropped=lost)
    def close(self, data: st.DataObject, merge: bool, dropped: bool, push_dropped: bool) -> None:
        pr = self.truth.pull_requests[data.draw(st.sampled_from(self._open()))]
        if merge and pr.target not in self.truth.branches:
            merge = False
        self.truth.close_pr(pr, "MERGED" if merge else "DECLINED", dropped, push_dropped)

    # -- bitbridge ---------------------------------------------------------------------------------------
    @rule()
    def deliveries_arrive(self) -> None:
        self.bitbridge.receive_new()

    @rule(count=st.integers(1, 4))
    def publisher_works(self, count: int) -> None:
        for _ in range(count):
            self.bitbridge.publish_next()

    @rule()
    def reconcile(self) -> None:
        self.bitbridge.reconcile()

    @invariant()
    def no_change_id_twice(self) -> None:
        ids = change_ids_of(self.bitbridge.published)
        assert [i for i, n in Counter(ids).items() if n > 1] == [], "a change id reached the bus twice"

    def teardown(self) -> None:
        bb = self.bitbridge
        bb.receive_new()
        bb.drain()
        bb.reconcile()
        bb.drain()
        self.no_change_id_twice()
        # bitbridge's observed state equals Bitbucket's.
        assert bb.heads() == self.truth.idents()
        assert bb.observed is not None
        for pr in self.truth.pull_requests.values():
            entry = bb.observed.ledger.prs.get(pr.id)
            truth = bb.truth_now()[f"p:{pr.id}"]
            if pr.state == "OPEN" or entry is not None:
                assert entry is not None and entry.value == truth, f"pull request {pr.id} diverged"
        assert bb.reconcile() == 0, "a second reconciliation found more"
        # Every delivery that arrived: published once, or absorbed into a reconciler change read after it.
        by_source = Counter(p.source for p in bb.published)
        read_of = {cid: p.read_step for p in bb.published if p.read_step is not None for cid in change_ids_of([p])}
        for sent in self.truth.sent:
            if sent.dropped:
                continue
            if sent.id in bb.absorbed:
                told = [t for t in bb.absorbed[sent.id] if t]
                assert told and all(read_of.get(t, -1) >= sent.step for t in told), f"{sent.id} absorbed wrongly"
            else:
                assert by_source[sent.id] == 1, f"delivery {sent.id} published {by_source[sent.id]} times"
        # A reconciler change shows what Bitbucket had when it read.
        for p in bb.published:
            if p.read_step is None:
                continue
            _, seen = bb.reads[p.event["id"]]
            key = object_of(p.event)
            if p.event["type"] == "repository.push":
                assert p.event["ref_changes"][0]["new"] == seen.get(key[2:]), "a reconciler change that did not happen"
            else:
                assert section_value(p.event["pull_request"]) == seen[key], "a reconciler change that did not happen"


class CloudHistory(History):
    flavor = "cloud"


class DataCenterHistory(History):
    flavor = "datacenter"


_settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=STEPS,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestCloudHistory = _settings(CloudHistory).TestCase
TestDataCenterHistory = _settings(DataCenterHistory).TestCase
