"""Text from outside (a Bitbucket error, a query parameter) made safe to store and print: one line,
no control characters - so no terminal escape sequence can reach an admin's terminal - and bounded."""

from __future__ import annotations

import re
import unicodedata

DETAIL_LIMIT = 300

# Whole ANSI sequences (CSI `ESC [ ... final`, OSC `ESC ] ... BEL|ST`, two-byte `ESC x`), so no
# parameter text is left behind once the ESC itself is gone.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]?")
# Control (Cc), format (Cf: bidi overrides, zero-width), surrogates (Cs) and line/paragraph separators.
_UNSAFE = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def one_line(text: object, limit: int = DETAIL_LIMIT) -> str:
    """`text` without escape sequences or control characters, whitespace runs as one space, at most
    `limit` characters (an ellipsis marks a cut)."""
    kept = (ch for ch in _ANSI.sub("", str(text)) if ch.isspace() or unicodedata.category(ch) not in _UNSAFE)
    cleaned = " ".join("".join(kept).split())  # every whitespace run (newlines, tabs) becomes one space
    if len(cleaned) <= limit:
        return cleaned
    return cleaned[: limit - 1].rstrip() + "…"
