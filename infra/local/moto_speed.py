"""Three of moto's per-request costs cut: the local stack's CPU goes to the work, not to moto finding it.

Measured with a sampling profiler on an end-to-end test: moto's server lists its own package directory (a
listdir and ~150 isdir calls) to route every request, and EventBridge builds a JSONPath parser (ply's yacc
tables) for each of its 8 default input paths, on every event and target. Both answers never change while
the process runs, so each is computed once.

And measured on a reconcile run: moto's response serializer walks botocore's output shape for every DynamoDB
attribute value of every item it answers (a scan of 300 subscriptions, 400 KB: 0.6 s, 90 % of it there). moto
keeps items in DynamoDB's wire form already, so a value made only of strings, numbers, sets of them, booleans,
nulls, lists and maps is answered as it is (`_wire_form`); binary values still take moto's own path (base64).
tests/unit/local/test_moto_speed.py holds the two paths equal. Nothing moto answers changes.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

import jsonpath_ng.ext
from moto import backends
from moto.core import serialize


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
    structure = serialize.BaseJSONSerializer._serialize_type_structure
    if not getattr(structure, "_bitbridge_fast", False):

        def _serialize_type_structure(self: Any, serialized: Any, value: Any, shape: Any, key: str) -> None:
            if shape.name == "AttributeValue" and (wire := _wire_form(value)) is not None:
                if key:
                    self._default_serialize(serialized, wire, shape, key)
                else:
                    serialized.update(wire)
                return
            structure(self, serialized, value, shape, key)

        _serialize_type_structure._bitbridge_fast = True  # type: ignore[attr-defined]
        serialize.BaseJSONSerializer._serialize_type_structure = _serialize_type_structure  # type: ignore[method-assign]


def _wire_form(value: Any) -> dict[str, Any] | None:
    """A DynamoDB attribute value as the wire carries it, or None where moto's own path must answer (binary, or
    anything not already in wire form)."""
    if not isinstance(value, dict) or len(value) != 1:
        return None
    ((kind, inner),) = value.items()
    if kind in ("S", "N"):
        return {kind: inner} if isinstance(inner, str) else None
    if kind in ("SS", "NS"):
        return {kind: list(inner)} if isinstance(inner, list) and all(isinstance(x, str) for x in inner) else None
    if kind in ("NULL", "BOOL"):
        return {kind: inner} if isinstance(inner, bool) else None
    if kind == "M" and isinstance(inner, dict):
        members = {name: _wire_form(member) for name, member in inner.items()}
        return None if any(m is None for m in members.values()) else {"M": members}
    if kind == "L" and isinstance(inner, list):
        items = [_wire_form(item) for item in inner]
        return None if any(i is None for i in items) else {"L": items}
    return None
