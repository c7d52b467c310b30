"""The sanitiser behind every stored diagnosis (provider `status_detail`, connection `status_detail`) and
what the CLI prints: never a control character, never over the bound, printable text kept."""

from __future__ import annotations

import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from bitbridge.safe_text import DETAIL_LIMIT, one_line

FUZZ_CASES = 2000
_UNSAFE = {"Cc", "Cf", "Cs", "Zl", "Zp"}

# Text weighted towards what attacks a terminal: ESC sequences, C0/C1 controls, bidi overrides.
HOSTILE = st.lists(
    st.one_of(
        st.text(),
        st.sampled_from(["\x1b", "\x1b[", "\x1b[31m", "\x1b]0;title\x07", "\x1b]8;;http://x\x1b\\", "\x9b2J"]),
        st.sampled_from(["\r", "\n", "\t", "\x00", "\x07", "\x08", "\x7f", "\x85", "\u2028", "\u202e", "\u200b"]),
    ),
    max_size=60,
).map("".join)


@settings(max_examples=FUZZ_CASES, deadline=None, database=None)
@given(HOSTILE, st.integers(min_value=1, max_value=400))
def test_never_a_control_character_and_never_over_the_bound(text, limit):
    cleaned = one_line(text, limit)
    assert len(cleaned) <= limit
    assert not any(unicodedata.category(ch) in _UNSAFE for ch in cleaned), repr(cleaned)
    assert cleaned == cleaned.strip() and "  " not in cleaned


@settings(max_examples=300, deadline=None, database=None)
@given(st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=DETAIL_LIMIT))
def test_plain_printable_text_is_kept_as_it_is(text):
    assert one_line(text) == text


def test_escape_sequences_go_whole_and_long_text_is_cut_with_an_ellipsis():
    assert one_line("\x1b[1;31mfailed\x1b[0m:\n\tbad \x1b]0;pwned\x07secret") == "failed: bad secret"
    cut = one_line("word " * 100)
    assert len(cut) == DETAIL_LIMIT and cut.endswith("…")
