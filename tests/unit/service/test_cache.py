"""The service's short-lived per-container caches: an entry lives its TTL, then is read again."""

from __future__ import annotations

import time

from bitbridge.service.cache import TtlCache


def test_an_entry_is_served_until_its_lifetime_ends():
    cache: TtlCache[str] = TtlCache(seconds=0.2)
    cache.put("k", "v")
    assert cache.get("k") == "v"
    time.sleep(0.25)
    assert cache.get("k") is None


def test_dropped_entries_are_gone_at_once():
    cache: TtlCache[str] = TtlCache()
    cache.put(("user", "provider"), "token")
    cache.drop(("user", "provider"))
    assert cache.get(("user", "provider")) is None
    cache.drop("never-there")  # no error


def test_the_oldest_entry_goes_when_full():
    cache: TtlCache[int] = TtlCache(max_entries=2)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.put("a", 3)  # refreshed: now the newest
    cache.put("c", 4)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (3, None, 4)


def test_serving_an_entry_does_not_extend_its_lifetime():
    # A revoked key or a moved link must reach a busy container too: an entry read often still lapses.
    cache: TtlCache[str] = TtlCache(seconds=0.3)
    cache.put("k", "v")
    for _ in range(4):
        time.sleep(0.1)
        cache.get("k")
    assert cache.get("k") is None
