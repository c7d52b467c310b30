"""Rate limits as Bitbucket enforces them: Cloud per user (or OAuth consumer) per rolling window per resource class,
answered with Cloud's bare 429; Data Center a token bucket per user, answered with Retry-After."""

from __future__ import annotations

import base64
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from infra.emulator import Emulator
from infra.emulator.ratelimit import CLOUD_CLASSES, cloud_class

from .conftest import (
    bearer,
    cloud_code,
    cloud_login,
    cloud_token,
    control,
    dc_login,
    register_cloud_client,
)


def configure(emu: Emulator, **settings: object) -> None:
    resp = control(emu, "POST", "config", json=settings)
    assert resp.status_code == 200, resp.text


def limits(emu: Emulator, **query: str) -> list[dict]:
    resp = control(emu, "GET", "rate-limits", params=query)
    assert resp.status_code == 200, resp.text
    return resp.json()["limits"]


def row(emu: Emulator, flavor: str, who: str, klass: str) -> dict:
    (found,) = [r for r in limits(emu, flavor=flavor, user=who) if r["class"] == klass]
    return found


def other_app_token(emu: Emulator, user: str = "alice") -> str:
    """A second OAuth consumer ("another app") that the same person authorised."""
    register_cloud_client(emu, client_id="other-app", secret="other-secret")
    resp = cloud_token(emu, cloud_code(emu, user, client_id="other-app"), client_id="other-app", secret="other-secret")
    assert resp.status_code == 200, resp.text
    return resp.json()["access_token"]


def get(url: str, token: str) -> requests.Response:
    return requests.get(url, headers=bearer(token), timeout=10)


# ---------------------------------------- defaults
def test_limits_are_on_by_default_with_bitbucket_numbers(emu):
    cfg = control(emu, "GET", "config").json()
    assert cfg["rate_limits_enabled"] is True
    assert cfg["rate_limit_window_seconds"] == 3600
    assert cfg["rate_limit_counting"] == "per_user"
    assert cfg["cloud_rate_limits"] == {
        "repositories": 1000,
        "webhooks": 1000,
        "raw": 5000,
        "git": 60000,
        "other": 1000,
    }
    assert cfg["dc_rate_limit"] == {"capacity": 60, "refill_per_second": 5}


def test_data_center_default_bucket_rejects_a_burst(emu):
    """A burst (eight callers at once) meets the default bucket: 60 at once, then only what 5 tokens a second
    have refilled."""
    token = dc_login(emu)
    url = f"{emu.dc_url}/rest/api/1.0/projects/PLAT/repos/core"
    statuses: list[int] = []
    retry_after: list[str] = []

    def caller() -> None:
        with requests.Session() as session:
            session.trust_env = False
            while not retry_after and len(statuses) < 3000:
                resp = session.get(url, headers=bearer(token), timeout=10)
                statuses.append(resp.status_code)
                if resp.status_code == 429:
                    retry_after.append(resp.headers["Retry-After"])

    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        for _ in range(8):
            pool.submit(caller)
    elapsed = time.monotonic() - started
    admitted = statuses.count(200)
    assert retry_after and retry_after[0] == "1" and set(statuses) == {200, 429}
    assert 60 <= admitted <= 60 + 5 * elapsed + 1
    (bucket,) = limits(emu, flavor="datacenter")
    assert bucket["rejected"] == statuses.count(429) and bucket["admitted"] == admitted


# ---------------------------------------- Cloud
def test_cloud_429_is_the_bare_sentence_without_rate_limit_headers(emu):
    token = cloud_login(emu)
    configure(emu, cloud_rate_limits={"repositories": 3})
    url = f"{emu.cloud_url}/2.0/repositories/acme"
    answers = [get(url, token) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    limited = answers[3]
    assert limited.text == "Rate limit for this resource has been exceeded"
    assert limited.headers["Content-Type"].startswith("text/plain")
    assert "Retry-After" not in limited.headers
    assert not [h for h in limited.headers if h.lower().startswith("x-ratelimit")]
    assert row(emu, "cloud", "alice", "repositories") == {
        "flavor": "cloud",
        "user": "alice",
        "consumer": None,
        "class": "repositories",
        "limit": 3,
        "used": 3,
        "window_seconds": 3600,
        "rejected": 1,
        "admitted": 3,
    }


def test_cloud_counts_per_user_and_per_class(emu):
    alice = cloud_login(emu)
    bob_code = cloud_code(emu, "bob")
    bob = cloud_token(emu, bob_code).json()["access_token"]
    configure(emu, cloud_rate_limits={"repositories": 2, "webhooks": 1, "other": 1})
    repo = f"{emu.cloud_url}/2.0/repositories/acme/web-app"
    assert [get(repo, alice).status_code for _ in range(3)] == [200, 200, 429]
    # The other classes have their own allowance...
    assert get(f"{repo}/hooks", alice).status_code == 200
    assert get(f"{repo}/hooks", alice).status_code == 429
    assert get(f"{emu.cloud_url}/2.0/user", alice).status_code == 200
    assert get(f"{emu.cloud_url}/2.0/user/workspaces", alice).status_code == 429
    # ...and another person has their own.
    assert get(repo, bob).status_code == 200
    used = {(r["user"], r["class"]): (r["used"], r["rejected"]) for r in limits(emu, flavor="cloud")}
    assert used == {
        ("alice", "repositories"): (2, 1),
        ("alice", "webhooks"): (1, 1),
        ("alice", "other"): (1, 1),
        ("bob", "repositories"): (1, 0),
    }


def test_cloud_window_rolls(emu):
    """The hour is rolling: a call leaves the window one window after it was made, not at a fixed reset."""
    token = cloud_login(emu)
    configure(emu, cloud_rate_limits={"repositories": 2}, rate_limit_window_seconds=3600)
    url = f"{emu.cloud_url}/2.0/repositories/acme"
    assert [get(url, token).status_code for _ in range(3)] == [200, 200, 429]
    # Age the first call past the hour (the counters are plain data): exactly one call is free again.
    (window,) = emu.limits.data["windows"].values()
    window["hits"][0] -= 3600
    assert [get(url, token).status_code for _ in range(2)] == [200, 429]


def test_cloud_window_in_real_time(emu):
    token = cloud_login(emu)
    configure(emu, cloud_rate_limits={"repositories": 1}, rate_limit_window_seconds=1)
    url = f"{emu.cloud_url}/2.0/repositories/acme"
    assert [get(url, token).status_code for _ in range(2)] == [200, 429]
    time.sleep(1.2)
    assert get(url, token).status_code == 200


def test_another_app_spends_the_same_persons_allowance(emu):
    ours = cloud_login(emu)
    theirs = other_app_token(emu)
    configure(emu, cloud_rate_limits={"repositories": 5})
    url = f"{emu.cloud_url}/2.0/repositories/acme/web-app"
    assert [get(url, theirs).status_code for _ in range(4)] == [200] * 4  # another app spends 80 %
    assert [get(url, ours).status_code for _ in range(2)] == [200, 429]
    assert row(emu, "cloud", "alice", "repositories")["used"] == 5


def test_per_consumer_counting_gives_each_app_its_own_allowance(emu):
    ours = cloud_login(emu)
    theirs = other_app_token(emu)
    configure(emu, cloud_rate_limits={"repositories": 2}, rate_limit_counting="per_consumer")
    bob = cloud_token(emu, cloud_code(emu, "bob")).json()["access_token"]
    url = f"{emu.cloud_url}/2.0/repositories/acme/web-app"
    assert [get(url, theirs).status_code for _ in range(3)] == [200, 200, 429]
    assert get(url, ours).status_code == 200
    # Per consumer, everyone signed in through our app shares our app's allowance.
    assert get(url, bob).status_code == 200
    assert get(url, ours).status_code == 429
    rows = {(r["consumer"], r["user"]): r["used"] for r in limits(emu, flavor="cloud")}
    assert rows == {("cloud-client", None): 2, ("other-app", None): 2}


def test_git_and_raw_reads_are_classes_of_their_own(emu):
    token = cloud_login(emu)
    configure(emu, cloud_rate_limits={"git": 1, "raw": 1, "repositories": 1})
    basic = {"Authorization": "Basic " + base64.b64encode(f"x-token-auth:{token}".encode()).decode()}
    git = f"{emu.cloud_url}/acme/web-app.git/info/refs?service=git-upload-pack"
    assert requests.get(git, headers=basic, timeout=10).status_code != 429
    second = requests.get(git, headers=basic, timeout=10)
    assert second.status_code == 429 and second.text == "Rate limit for this resource has been exceeded"
    raw = f"{emu.cloud_url}/2.0/repositories/acme/web-app/src/main/README.md"
    assert get(raw, token).status_code != 429
    assert get(raw, token).status_code == 429
    assert get(f"{emu.cloud_url}/2.0/repositories/acme/web-app", token).status_code == 200
    classes = {r["class"]: r["used"] for r in limits(emu, user="alice")}
    assert classes == {"git": 1, "raw": 1, "repositories": 1}


def test_uncounted_requests(emu):
    """Control calls, OAuth endpoints, web pages and requests without a valid token spend no allowance."""
    token = cloud_login(emu)
    configure(emu, cloud_rate_limits={"repositories": 1, "other": 1})
    for _ in range(3):
        assert control(emu, "GET", "state").status_code == 200
        assert requests.get(f"{emu.cloud_url}/2.0/repositories/acme", timeout=10).status_code == 401
        assert get(f"{emu.cloud_url}/2.0/repositories/acme", "not-a-token").status_code == 401
        assert requests.get(f"{emu.cloud_url}/acme/web-app", timeout=10).status_code == 200
    assert limits(emu) == []
    assert get(f"{emu.cloud_url}/2.0/repositories/acme", token).status_code == 200


def test_injected_faults_still_answer_and_spend_nothing(emu):
    token = cloud_login(emu)
    configure(emu, cloud_rate_limits={"repositories": 2})
    control(emu, "POST", "faults", json={"status": 429, "count": 2, "retry_after": 7})
    url = f"{emu.cloud_url}/2.0/repositories/acme"
    faulted = [get(url, token) for _ in range(2)]
    assert [f.status_code for f in faulted] == [429, 429] and faulted[0].headers["Retry-After"] == "7"
    assert [get(url, token).status_code for _ in range(3)] == [200, 200, 429]


def test_disabled_limits_count_nothing(emu):
    token = cloud_login(emu)
    configure(emu, rate_limits_enabled=False, cloud_rate_limits={"repositories": 1})
    assert [get(f"{emu.cloud_url}/2.0/repositories/acme", token).status_code for _ in range(3)] == [200] * 3
    assert limits(emu) == []


def test_reset_and_delete_clear_the_counters(emu):
    token = cloud_login(emu)
    configure(emu, cloud_rate_limits={"repositories": 1})
    url = f"{emu.cloud_url}/2.0/repositories/acme"
    assert [get(url, token).status_code for _ in range(2)] == [200, 429]
    assert control(emu, "DELETE", "rate-limits").status_code == 204
    assert limits(emu) == [] and get(url, token).status_code == 200
    emu.reset(seed=True)
    assert limits(emu) == [] and control(emu, "GET", "config").json()["cloud_rate_limits"]["repositories"] == 1000


# ---------------------------------------- Data Center
def test_data_center_bucket_answers_retry_after(emu):
    token = dc_login(emu)
    configure(emu, dc_rate_limit={"capacity": 2, "refill_per_second": 0.25})
    url = f"{emu.dc_url}/rest/api/1.0/projects/PLAT/repos/core/branches"
    answers = [get(url, token) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    limited = answers[2]
    # One token takes 4 s at 0.25 a second; a little has refilled since the bucket emptied.
    assert limited.headers["Retry-After"] == "4"
    assert limited.json()["errors"][0]["message"]
    bucket = row(emu, "datacenter", "alice", "http")
    assert bucket["limit"] == 2 and bucket["rejected"] == 1 and bucket["admitted"] == 2
    assert bucket["refill_per_second"] == 0.25 and 0 <= bucket["tokens"] < 1


def test_data_center_bucket_refills(emu):
    token = dc_login(emu)
    configure(emu, dc_rate_limit={"capacity": 1, "refill_per_second": 4})
    url = f"{emu.dc_url}/rest/api/1.0/repos"
    assert [get(url, token).status_code for _ in range(2)] == [200, 429]
    time.sleep(0.5)  # two tokens' worth of time; the bucket holds one
    assert [get(url, token).status_code for _ in range(2)] == [200, 429]


def test_data_center_git_and_rest_share_the_bucket(emu):
    token = dc_login(emu)
    configure(emu, dc_rate_limit={"capacity": 2, "refill_per_second": 0.01})
    git = f"{emu.dc_url}/scm/plat/core.git/info/refs?service=git-upload-pack"
    assert get(git, token).status_code != 429
    assert requests.get(f"{emu.dc_url}/plugins/servlet/applinks/whoami", headers=bearer(token), timeout=10).ok
    limited = get(f"{emu.dc_url}/rest/api/1.0/repos", token)
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 99
    # DC limits per user whatever the counting setting says (it is Cloud's question).
    configure(emu, rate_limit_counting="per_consumer")
    assert get(f"{emu.dc_url}/rest/api/1.0/repos", token).status_code == 429


# ---------------------------------------- configuration
@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"rate_limits_enabled": "no"}, "rate_limits_enabled must be true or false"),
        ({"rate_limit_window_seconds": 0}, "rate_limit_window_seconds must be a number above 0"),
        ({"rate_limit_counting": "per_app"}, "rate_limit_counting must be per_user or per_consumer"),
        ({"cloud_rate_limits": {"pipelines": 5}}, "Unknown rate-limit class 'pipelines'"),
        ({"cloud_rate_limits": {"raw": -1}}, "cloud_rate_limits.raw must be a whole number"),
        ({"cloud_rate_limits": [1]}, "cloud_rate_limits must be an object"),
        ({"dc_rate_limit": {"capacity": 0}}, "dc_rate_limit.capacity must be a number of at least 1"),
        ({"dc_rate_limit": {"refill": 1}}, "dc_rate_limit must be an object with capacity"),
    ],
)
def test_bad_settings_are_refused(emu, settings, message):
    before = control(emu, "GET", "config").json()
    resp = control(emu, "POST", "config", json=settings)
    assert resp.status_code == 400 and message in resp.json()["error"]
    assert control(emu, "GET", "config").json() == before


def test_class_maps_merge_and_null_is_unlimited(emu):
    token = cloud_login(emu)
    configure(emu, cloud_rate_limits={"repositories": None, "raw": 7})
    cfg = control(emu, "GET", "config").json()
    assert cfg["cloud_rate_limits"] == {"repositories": None, "webhooks": 1000, "raw": 7, "git": 60000, "other": 1000}
    assert all(get(f"{emu.cloud_url}/2.0/repositories/acme", token).ok for _ in range(5))
    assert row(emu, "cloud", "alice", "repositories")["limit"] is None


@given(st.text(max_size=80))
def test_every_path_has_one_class_or_none(suffix):
    assert cloud_class("/" + suffix) in (*CLOUD_CLASSES, None)
    assert cloud_class("/2.0/" + suffix) in CLOUD_CLASSES


@pytest.mark.parametrize(
    ("path", "klass"),
    [
        ("/2.0/repositories/acme", "repositories"),
        ("/2.0/repositories/acme/web-app/pullrequests", "repositories"),
        ("/2.0/repositories/acme/web-app/hooks/{abc}", "webhooks"),
        ("/2.0/workspaces/acme/hooks", "webhooks"),
        ("/2.0/repositories/acme/web-app/src/main/a/b.txt", "raw"),
        ("/2.0/user", "other"),
        ("/2.0/workspaces/acme", "other"),
        ("/acme/web-app.git/info/refs", "git"),
        ("/acme/web-app.git/git-upload-pack", "git"),
        ("/acme/web-app", None),
        ("/site/oauth2/access_token", None),
    ],
)
def test_cloud_classes(path, klass):
    assert cloud_class(path) == klass
