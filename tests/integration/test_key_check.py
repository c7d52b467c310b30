"""Issue 23 (3): a known key id with a wrong secret and an unknown key id take the same steps - the same
cache, the same one read of the table on a miss, the same hash and compare - so timing cannot tell which
key ids exist (`tests/bench/key_check.py` prints both medians and their ratio). Counted on the wire: the
DynamoDB requests PynamoDB sends, and the key cache's entries."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator

import pytest

from bitbridge.service import credentials
from bitbridge.service.errors import ServiceRefused
from bitbridge.store.service import ServiceClientRecord, ServiceKeyRecord
from infra.local.iam import acting_as


@pytest.fixture
def sent(aws) -> Iterator[Counter]:
    """DynamoDB operations sent from now on, by name (a botocore hook on PynamoDB's own client)."""
    counted: Counter = Counter()
    clients = {
        id(c): c for c in (m._get_connection().connection.client for m in (ServiceKeyRecord, ServiceClientRecord))
    }

    def count(model, params, **_) -> None:
        counted[model.name] += 1

    for client in clients.values():
        client.meta.events.register("before-call.dynamodb", count)
    credentials.forget_cache()
    yield counted
    for client in clients.values():
        client.meta.events.unregister("before-call.dynamodb", count)


def _refused(key: str) -> str:
    with acting_as("ServiceApiFunction"), pytest.raises(ServiceRefused) as refused:
        credentials.authenticate(f"Bearer {key}")
    return refused.value.message


def _hashes(monkeypatch) -> list[str]:
    """The secrets' hashes computed, by recording what the one hash function is asked for."""
    made: list[str] = []
    real = credentials._hash

    def recording(salt: str, secret: str) -> str:
        made.append(hashlib.sha256(secret.encode()).hexdigest()[:8])
        return real(salt, secret)

    monkeypatch.setattr(credentials, "_hash", recording)
    return made


def test_a_known_id_with_a_wrong_secret_and_an_unknown_id_take_the_same_steps(sent, monkeypatch):
    _, key = credentials.add_client("timing", ["proxy"], [])
    known_id = key.split(".")[0]
    wrong = "W" * 43
    unknown_id = "bbk_" + "0" * 16
    hashes = _hashes(monkeypatch)

    steps = {}
    for name, key_id in (("known", known_id), ("unknown", unknown_id)):
        before = sent.copy()
        first = _refused(f"{key_id}.{wrong}")
        first_reads = sent - before
        before = sent.copy()
        assert _refused(f"{key_id}.{wrong}") == first
        steps[name] = (first, dict(first_reads), dict(sent - before), credentials._cache.get(key_id) is not None)
    # The same answer; on first sight the table is read twice for both (the key, then its client: a real one,
    # or for an unknown key one that does not exist), later neither reads it; both are then in the cache.
    assert steps["known"][0] == steps["unknown"][0] == "Unknown service key or wrong secret."
    assert steps["known"][1] == steps["unknown"][1] == {"GetItem": 2}
    assert steps["known"][2] == steps["unknown"][2] == {}
    assert steps["known"][3] and steps["unknown"][3]
    assert len(hashes) == 4  # one hash for each of the four attempts, known or not


def test_the_right_secret_still_works_and_made_up_ids_cannot_grow_the_cache(sent):
    _, key = credentials.add_client("timing-ok", ["proxy"], [])
    with acting_as("ServiceApiFunction"):
        assert credentials.authenticate(f"Bearer {key}").client_id == "timing-ok"
    for n in range(credentials.MAX_CACHED + 50):
        credentials._cache.put(f"bbk_{n:016x}", credentials._unknown())
    assert len(credentials._cache._entries) == credentials.MAX_CACHED
