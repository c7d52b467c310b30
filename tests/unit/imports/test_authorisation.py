"""Who may change an import: the user who started it, or an admin (accounts.is_admin: a user with a
connection to an account named in BITBRIDGE_ADMIN_USERS; here stood in for by user id)."""

from __future__ import annotations

import pytest

from bitbridge.config import Settings
from bitbridge.errors import NotFound
from bitbridge.imports import jobs, queries
from bitbridge.store.imports import JobRecord


@pytest.fixture
def admins(monkeypatch):
    def configure(*user_ids: str) -> None:
        monkeypatch.setattr(queries, "is_admin", lambda user_id: user_id in user_ids)

    return configure


def _job(state: str = "running") -> JobRecord:
    return JobRecord("JOB#j1", "JOB", job_id="j1", owner_id="u-alice", requested_by={"u-bob"}, state=state)


def test_admin_users_is_a_comma_separated_list_of_provider_accounts():
    parsed = Settings.from_environ({"BITBRIDGE_ADMIN_USERS": " bitbucket-cloud:{u-1}, ,acme-datacenter:7 ,"})
    assert parsed.admin_users == frozenset({"bitbucket-cloud:{u-1}", "acme-datacenter:7"})
    assert Settings.from_environ({}).admin_users == frozenset()


def test_only_the_starter_or_an_admin_may_change_a_shared_job(admins, monkeypatch):
    admins("u-root")
    job = _job()
    monkeypatch.setattr(queries, "load", lambda job_id: job if job_id == "j1" else None)
    assert queries.for_change("u-alice", "j1", "cancel") is job
    assert queries.for_change("u-root", "j1", "cancel") is job  # an admin who never requested it
    with pytest.raises(jobs.ImportRequestError) as refused:
        queries.for_change("u-bob", "j1", "cancel")
    assert refused.value.code == "not_import_owner" and "can cancel it" in refused.value.message
    with pytest.raises(NotFound):
        queries.for_change("u-carol", "j1", "retry")  # not even visible: the same answer as a missing job


def test_each_requester_sees_what_they_may_do(admins):
    admins("u-root")
    running, failed = _job(), _job("failed")
    assert queries.view_for(running, "u-bob")["you"] == {
        "started_it": False,
        "admin": False,
        "can_cancel": False,
        "can_retry": False,
    }
    assert queries.view_for(running, "u-alice")["you"]["can_cancel"] is True
    assert queries.view_for(failed, "u-root")["you"] == {
        "started_it": False,
        "admin": True,
        "can_cancel": False,
        "can_retry": True,
    }
