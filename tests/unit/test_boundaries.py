"""The core's boundaries, checked by reading the source (so they stay true as the code grows):

- only `bitbridge/bitbucket/` branches on a Bitbucket flavor (the webhook normaliser keeps its own
  standard-library adapters, for the receiver's and publisher's cold start);
- only `bitbridge/store/` spells a DynamoDB item or key: typed attribute values (`{"S": ...}`), low-level
  item calls, key prefixes (`"JOB#..."`) and sort-key literals;
- only `bitbridge/edge.py` decides HTTP statuses and builds cookies.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import REPO_ROOT

CORE = REPO_ROOT / "layers" / "bitbridge" / "python" / "bitbridge"
FUNCTIONS = REPO_ROOT / "functions"


def _sources(*excluded: str) -> dict[str, str]:
    files = [*CORE.rglob("*.py"), *FUNCTIONS.rglob("*.py")]
    out = {}
    for path in files:
        name = str(path.relative_to(REPO_ROOT))
        if not any(name.startswith(str(Path("layers/bitbridge/python/bitbridge") / e)) for e in excluded):
            out[name] = path.read_text()
    return out


def _offenders(pattern: str, *excluded: str) -> list[str]:
    regex = re.compile(pattern)
    return [
        f"{name}:{number}: {line.strip()}"
        for name, text in _sources(*excluded).items()
        for number, line in enumerate(text.splitlines(), 1)
        if regex.search(line) and not line.lstrip().startswith("#")
    ]


def test_no_flavor_branch_outside_the_bitbucket_package_and_the_normaliser():
    pattern = r"""flavor\s*(==|!=)|(==|!=)\s*\w*flavor\b|\b(CLOUD|DATACENTER)\b|["'](cloud|datacenter)["']"""
    assert _offenders(pattern, "bitbucket/", "webhooks/normalise.py") == []


def test_the_pattern_would_catch_a_flavor_branch(tmp_path):
    pattern = re.compile(r"""flavor\s*(==|!=)|\b(CLOUD|DATACENTER)\b|["'](cloud|datacenter)["']""")
    assert pattern.search('if provider.flavor == "cloud":')
    assert pattern.search("if kind is providers.DATACENTER:")


def test_no_dynamodb_item_or_key_outside_the_store():
    typed_value = r"""\{\s*["'](S|N|B|SS|NS|BS|M|L|BOOL|NULL)["']\s*:"""
    item_calls = r"""\.(put_item|update_item|get_item|delete_item|batch_write_item|transact_write_items)\("""
    key_prefix = r"""["'][A-Z_]{2,}#"""
    sort_key_literal = r"""["'](JOB|REPOJOB|PROJECT|PROFILE|IDENTITY)["']"""
    pattern = "|".join(f"(?:{p})" for p in (typed_value, item_calls, key_prefix, sort_key_literal))
    assert _offenders(pattern, "store/") == []


def test_http_statuses_and_cookies_are_decided_at_the_edge_only():
    # Status tables live in edge.py; the webhook receiver keeps its documented table with Bitbucket.
    status = r"""statusCode|status_code=|Set-Cookie|SameSite"""
    assert _offenders(status, "edge.py", "webhooks/receipt.py") == []
