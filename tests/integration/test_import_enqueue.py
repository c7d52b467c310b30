"""Import jobs and their queue messages, on moto under the functions' IAM policies: one message per job
made (sent ten per SendMessageBatch), a job whose message was never sent is sent when its repository is
asked for again, a job already sent is not sent twice, and a duplicate message never runs a job twice."""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import pytest

from bitbridge.aws import client
from bitbridge.bitbucket.repos import Repo
from bitbridge.config import settings
from bitbridge.imports import changes, kickoff, worker
from bitbridge.metering import metered
from bitbridge.store.imports import (
    COMPLETED,
    FAILED,
    KICKOFF_SK,
    JobRecord,
    KickoffRecord,
    RepoJobRecord,
    job_pk,
    kickoff_pk,
    repojob_pk,
)
from infra.local.iam import acting_as

PROVIDER = SimpleNamespace(provider_id="bitbucket-cloud", flavor="cloud")


def _repo(n: int) -> tuple[Repo, dict[str, Any]]:
    repo = Repo(
        id=f"{{repo-{n}}}",
        full_name=f"team/repo-{n}",
        owner="team",
        slug=f"repo-{n}",
        name=f"repo-{n}",
        description="",
        is_private=True,
        default_branch="main",
        has_issues=False,
        html_url=None,
        updated_on=None,
    )
    return repo, {"uuid": repo.id, "full_name": repo.full_name}


def _messages() -> list[str]:
    """Job ids of every message on the import queue (received and deleted: the queue is drained)."""
    sqs, url, found = client("sqs"), settings().import_queue_url, []
    while True:
        batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        if not batch:
            return found
        for message in batch:
            found.append(json.loads(message["Body"])["job_id"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def _kickoff(*numbers: int, send: bool = True, user: str = "u-alice") -> list[kickoff.Settled]:
    """What POST /api/imports does after the access checks; `send=False` dies before the queue send."""
    kickoff_id = uuid.uuid4().hex
    with acting_as("ImportKickoffFunction"), ThreadPoolExecutor(8) as pool:
        wanted = [kickoff.Wanted(*_repo(n)) for n in numbers]
        settled = kickoff.settle(user, PROVIDER, wanted, kickoff_id=kickoff_id, pool=pool)
        if send:
            kickoff.enqueue_all([s.job for s in settled if s.send], kickoff_id=kickoff_id, pool=pool)
    return settled


def _stored(settled: kickoff.Settled) -> JobRecord:
    return JobRecord.get(job_pk(settled.job.job_id), "JOB", consistent_read=True)


def test_new_jobs_are_sent_in_batches_and_marked_once_sent(aws):
    settled = _kickoff(*range(23))
    assert all(s.created and s.send for s in settled)
    assert sorted(_messages()) == sorted(s.job.job_id for s in settled)  # 23 messages: three batches
    # One record for the request's sends, not one write per job.
    (kickoff_id,) = {_stored(s).kickoff_id for s in settled}
    assert abs(KickoffRecord.get(kickoff_pk(kickoff_id), KICKOFF_SK).sent_at - time.time()) < 60
    assert all(_stored(s).state == "queued" and _stored(s).enqueued_at is None for s in settled)
    # Asked again while queued and sent: the same jobs, and no second message.
    again = _kickoff(*range(23))
    assert [a.job.job_id for a in again] == [s.job.job_id for s in settled]
    assert not any(a.created or a.send for a in again)
    assert _messages() == []


def test_a_job_whose_send_never_happened_is_sent_when_asked_for_again(aws):
    lost = _kickoff(1, 2, send=False)  # written, then the invocation died before the send
    assert _messages() == []
    assert _stored(lost[0]).kickoff_id and _stored(lost[0]).enqueued_at is None
    healed = _kickoff(1, 2, 3)
    assert [h.job.job_id for h in healed[:2]] == [x.job.job_id for x in lost]  # not new jobs
    assert [h.created for h in healed] == [False, False, True]
    assert sorted(_messages()) == sorted(h.job.job_id for h in healed)
    assert _stored(healed[0]).enqueued_at is not None  # a job sent on its own records it on itself
    assert _kickoff(1, 2, 3) and _messages() == []  # now sent: asking again sends nothing


def test_a_job_sent_long_ago_and_still_queued_is_sent_again(aws):
    (made,) = _kickoff(7)
    _messages()  # the message is lost (e.g. parked in the dead-letter queue without the job failing)
    record = KickoffRecord.get(kickoff_pk(_stored(made).kickoff_id), KICKOFF_SK)
    record.update(actions=[KickoffRecord.sent_at.set(int(time.time()) - kickoff.RESEND_AFTER_SECONDS - 5)])
    (again,) = _kickoff(7)
    assert again.send and _messages() == [made.job.job_id]


def test_a_retried_job_is_sent_and_healed_like_a_new_one(aws):
    (made,) = _kickoff(9)
    _messages()
    made.job.update(actions=[JobRecord.state.set(FAILED)])
    with acting_as("ApiFunction"):
        changes.retry(made.job)
    assert _messages() == [made.job.job_id]
    stored = _stored(made)
    assert stored.state == "queued" and stored.enqueued_at is not None and stored.kickoff_id is None


def test_a_refused_batch_entry_fails_the_request_and_leaves_its_job_to_be_sent_again(aws, monkeypatch):
    settled = _kickoff(1, 2, send=False)
    kickoff_id = _stored(settled[0]).kickoff_id
    real = client("sqs")

    class HalfRefusing:
        """SQS answering the batch with one entry failed (as it does for a throttled entry)."""

        def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
            answer = real.send_message_batch(QueueUrl=QueueUrl, Entries=Entries[:1])
            failed = [
                {"Id": e["Id"], "Code": "InternalError", "Message": "try again", "SenderFault": False}
                for e in Entries[1:]
            ]
            return answer | {"Failed": failed}

    monkeypatch.setattr(kickoff, "client", lambda service: HalfRefusing())
    with acting_as("ImportKickoffFunction"), pytest.raises(RuntimeError, match="refused 1 of 2"):
        kickoff.enqueue_all([s.job for s in settled], kickoff_id=kickoff_id)
    monkeypatch.undo()
    assert _messages() == [settled[0].job.job_id]
    with pytest.raises(KickoffRecord.DoesNotExist):  # not all sent: the request's sends are not recorded
        KickoffRecord.get(kickoff_pk(kickoff_id), KICKOFF_SK)
    again = _kickoff(1, 2)  # both sent again: one a duplicate (harmless), the other the missing message
    assert [a.send for a in again] == [True, True]
    assert sorted(_messages()) == sorted(s.job.job_id for s in settled)


def test_concurrent_requests_for_the_same_repositories_make_one_job_each(aws):
    with ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(lambda user: _kickoff(*range(30), user=user), ["u-alice", "u-bob", "u-carol"]))
    ids = [[s.job.job_id for s in answer] for answer in answers]
    assert ids[0] == ids[1] == ids[2] and len(set(ids[0])) == 30
    assert [sum(a[i].created for a in answers) for i in range(30)] == [1] * 30  # each made by one request
    # Each sent; a job found before its maker recorded the send may be sent twice (the worker drops that).
    assert set(_messages()) == set(ids[0])
    pointers = [RepoJobRecord.get(repojob_pk("bitbucket-cloud", f"{{repo-{n}}}"), "REPOJOB") for n in range(30)]
    assert [p.job_id for p in pointers] == ids[0]
    all_jobs = [j for j in JobRecord.scan() if j.sk == "JOB"]
    assert len(all_jobs) == 30  # the losers deleted their drafts


class _Context:
    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 600_000


def test_a_duplicate_message_never_runs_a_job_twice(aws):
    (made,) = _kickoff(5)
    job_id = made.job.job_id
    with acting_as("ImportWorkerFunction"), metered():
        taken = worker._take_lease(job_id, "run-1", _Context())
        assert taken is not None and taken[2] is True  # the first message runs it
        with pytest.raises(worker.Busy):  # a duplicate while it runs: looked at again later
            worker._take_lease(job_id, "run-2", _Context())
        JobRecord.get(job_pk(job_id), "JOB").update(actions=[JobRecord.state.set(COMPLETED)])
        assert worker._take_lease(job_id, "run-3", _Context()) is None  # after it finished: dropped
    stored = JobRecord.get(job_pk(job_id), "JOB")
    assert stored.state == COMPLETED and stored.lease_owner == "run-1"
    assert RepoJobRecord.get(repojob_pk("bitbucket-cloud", "{repo-5}"), "REPOJOB").job_id == job_id
