"""Lambda event filtering (an event source's FilterCriteria), for the local pollers.

A record is delivered when any filter's pattern matches it. The pattern syntax implemented is the
subset Lambda documents for event filtering: nested keys; a list of accepted values per leaf (exact
strings, numbers, booleans, null); and the operators `prefix`, `suffix`, `equals-ignore-case`,
`exists`, `anything-but` (values, or a `prefix`), and `numeric` (`=`, `<`, `<=`, `>`, `>=` pairs).
An unsupported operator is refused when the stack starts, not silently ignored.
"""

from __future__ import annotations

import json
from typing import Any

_MISSING = object()
_OPERATORS = {"prefix", "suffix", "equals-ignore-case", "exists", "anything-but", "numeric"}
_COMPARE = {
    "=": lambda a, b: a == b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def patterns(filter_criteria: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The patterns of `FilterCriteria: {Filters: [{Pattern: "<json>"}]}`, checked."""
    out = []
    for entry in (filter_criteria or {}).get("Filters", []):
        pattern = entry["Pattern"]
        pattern = json.loads(pattern) if isinstance(pattern, str) else pattern
        _check(pattern)
        out.append(pattern)
    return out


def _check(pattern: Any) -> None:
    if not isinstance(pattern, dict):
        raise ValueError(f"a filter pattern is an object of keys, got {pattern!r}")
    for value in pattern.values():
        if isinstance(value, dict):
            _check(value)
        elif not isinstance(value, list):
            raise ValueError(f"a filter pattern's leaf is a list of accepted values, got {value!r}")
        else:
            for rule in value:
                if isinstance(rule, dict):
                    unknown = set(rule) - _OPERATORS
                    if unknown or len(rule) != 1:
                        raise ValueError(f"filter operator not supported locally: {rule!r}")


def delivered(filters: list[dict[str, Any]], record: dict[str, Any]) -> bool:
    """True when there are no filters or any of them matches `record`."""
    return not filters or any(matches(pattern, record) for pattern in filters)


def matches(pattern: dict[str, Any], event: Any) -> bool:
    for key, expected in pattern.items():
        value = event.get(key, _MISSING) if isinstance(event, dict) else _MISSING
        if isinstance(expected, dict):
            if not matches(expected, value if isinstance(value, dict) else {}):
                return False
        elif not _leaf_matches(expected, value):
            return False
    return True


def _leaf_matches(rules: list[Any], value: Any) -> bool:
    values = value if isinstance(value, list) else [value]  # a list matches when any element does
    return any(_rule_matches(rule, v) for rule in rules for v in values)


def _rule_matches(rule: Any, value: Any) -> bool:
    if not isinstance(rule, dict):
        if isinstance(rule, bool) or isinstance(value, bool) or rule is None:
            return value is rule  # true, false and null match only themselves
        return value is not _MISSING and value == rule
    ((operator, arg),) = rule.items()
    if operator == "exists":
        return (value is not _MISSING) == bool(arg)
    if value is _MISSING:
        return False
    if operator == "prefix":
        return isinstance(value, str) and value.startswith(arg)
    if operator == "suffix":
        return isinstance(value, str) and value.endswith(arg)
    if operator == "equals-ignore-case":
        return isinstance(value, str) and value.lower() == str(arg).lower()
    if operator == "anything-but":
        if isinstance(arg, dict):
            return not _rule_matches(arg, value)
        excluded = arg if isinstance(arg, list) else [arg]
        return value not in excluded
    # numeric: [">", 0, "<=", 5]
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    pairs = list(zip(arg[::2], arg[1::2], strict=True))
    return all(_COMPARE[op](value, bound) for op, bound in pairs)
