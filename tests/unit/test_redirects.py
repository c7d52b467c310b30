"""`return_to`: every value is either accepted and lands on an allowed origin, or refused as UnsafeReturnTo."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from bitbridge.redirects import DEFAULT_RETURN_TO, UnsafeReturnTo, safe_return_to
from tests.return_to_strategies import ALLOWED_ORIGINS, RETURN_TO, stays_on_allowed_origin

FUZZ_CASES = 3000


@pytest.mark.parametrize(
    "value",
    [
        "http://[evil.example",  # unclosed IPv6 bracket: urlsplit raises ValueError
        "https://evil.example\uff0fapp.example",  # fullwidth solidus NFKC-normalises to "/"
        "https://evil\uff03.example",  # fullwidth number sign NFKC-normalises to "#"
        "https://app.example\uff03@evil.example",
        "https://[::1",
        "https://app.example:99999/",
        "https://\u212aey.example/",  # Kelvin sign lowercases to "k"
        " https://app.example",  # found by the property: urlsplit strips the space, the check saw another URL
    ],
)
def test_values_urllib_cannot_parse_are_refused_not_raised(value):
    with pytest.raises(UnsafeReturnTo):
        safe_return_to(value, ALLOWED_ORIGINS)


@pytest.mark.parametrize(
    "value", ["/api/me", "/x?y=1#z", "https://app.example/", "https://APP.example:443/p", "http://localhost:3000"]
)
def test_relative_paths_and_allowed_origins_are_accepted_unchanged(value):
    assert safe_return_to(value, ALLOWED_ORIGINS) == value
    assert stays_on_allowed_origin(value)


def test_no_value_means_the_default():
    assert safe_return_to(None, ALLOWED_ORIGINS) == safe_return_to("", ALLOWED_ORIGINS) == DEFAULT_RETURN_TO


def test_any_value_is_accepted_on_an_allowed_origin_or_refused():
    seen: list[str] = []

    @settings(max_examples=FUZZ_CASES, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
    @given(RETURN_TO)
    def prop(value: str) -> None:
        seen.append(value)
        try:
            accepted = safe_return_to(value, ALLOWED_ORIGINS)
        except UnsafeReturnTo:
            return
        assert accepted == (value or DEFAULT_RETURN_TO)
        assert stays_on_allowed_origin(accepted), f"accepted an off-allow-list redirect: {accepted!r}"

    prop()
    print(f"return_to property: {len(seen)} generated values")
    assert len(seen) >= FUZZ_CASES * 0.9  # the fuzz really ran thousands of cases
