"""Two of moto's per-request costs, made once: the local stack's CPU goes to the work, not to moto finding it.

Measured with a sampling profiler on an end-to-end test: moto's server lists its own package directory (a
listdir and ~150 isdir calls) to route every request, and EventBridge builds a JSONPath parser (ply's yacc
tables) for each of its 8 default input paths, on every event and target. Both answers never change while
the process runs, so each is computed once. Nothing moto answers changes.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import jsonpath_ng.ext
from moto import backends


def install() -> None:
    """Idempotent."""
    if not getattr(backends.list_of_moto_modules, "_bitbridge_cached", False):
        modules = tuple(backends.list_of_moto_modules())

        def list_of_moto_modules() -> Iterable[str]:
            return modules

        list_of_moto_modules._bitbridge_cached = True  # type: ignore[attr-defined]
        backends.list_of_moto_modules = list_of_moto_modules  # type: ignore[assignment]
    if not getattr(jsonpath_ng.ext.parse, "_bitbridge_cached", False):
        parse = functools.lru_cache(maxsize=256)(jsonpath_ng.ext.parse)  # a parsed path is immutable
        parse._bitbridge_cached = True  # type: ignore[attr-defined]
        jsonpath_ng.ext.parse = parse
