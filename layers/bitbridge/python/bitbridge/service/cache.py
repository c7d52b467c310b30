"""Per-container caches with a short lifetime, for what nearly every service call reads.

A warm proxied call would otherwise read the end-user link, the provider record and the connection, and
ask KMS to decrypt the token, before it even reaches Bitbucket. Each entry lives CACHE_SECONDS, so any
change made elsewhere (a revoked key, a link moved to another Bitbucket account, a deleted or re-authorised
connection, a provider turned off) reaches every running container within that time. Changes this
container makes, and a 401 from Bitbucket, drop the entry at once. Only found things are cached: a "not
linked yet" is read again on the next call, so a user who has just connected is seen at once.

Decrypted tokens live here in memory only: never logged, never written anywhere, gone with the container.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Hashable

CACHE_SECONDS = 5.0
MAX_ENTRIES = 1024  # a container serves a bounded set of end users; the oldest entry goes first


class TtlCache[V]:
    def __init__(self, seconds: float = CACHE_SECONDS, max_entries: int = MAX_ENTRIES) -> None:
        self.seconds = seconds
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, tuple[float, V]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> V | None:
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                return None
            if found[0] <= time.monotonic():
                del self._entries[key]
                return None
            return found[1]

    def put(self, key: Hashable, value: V) -> None:
        with self._lock:
            self._entries[key] = (time.monotonic() + self.seconds, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def drop(self, key: Hashable) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
