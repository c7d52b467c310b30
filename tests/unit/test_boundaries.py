"""The core's boundaries that imports cannot show, checked by reading the source (so they stay true as the
code grows). Who may import whom - the layers, the flavors behind one interface, sessions at the edge, thin
handlers - is import-linter's job: the contracts in pyproject.toml (tests/unit/test_contracts.py).

- only `bitbridge/bitbucket/` branches on a Bitbucket flavor or names one (the webhook normaliser keeps
  its own standard-library adapters, for the receiver's and publisher's cold start);
- only `bitbridge/store/` spells a DynamoDB item or key: typed attribute values (`{"S": ...}`), low-level
  item calls, key prefixes (`"JOB#..."`) and sort-key literals;
- only `bitbridge/edge.py` writes an HTTP status down or builds a cookie: everywhere else an error status
  is a code in `edge.STATUS` (a Problem's, a receipt's outcome, /health's readiness), never a number
  handed to an answer - a route's own success (200, 201, 202) excepted.
"""

from __future__ import annotations

import ast
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
    status = r"""statusCode|status_code=|Set-Cookie|SameSite"""
    assert _offenders(status, "edge.py") == []


# The edge's answer helpers: the status is their first argument.
ANSWERS = {"respond", "json_response", "api_json", "html_page", "page", "error_page", "Response"}


def _error_statuses_written_down(source: str) -> list[int]:
    """Lines where an error status (4xx/5xx) is a number handed to an answer (`edge.api_json(503, ...)`,
    `edge.page(400 if x else 200, ...)`, `Receipt(413, ...)`) or returned as a route's `(status, body)`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            chosen = node.args[:1] if name in ANSWERS or name == "Receipt" else []
        elif isinstance(node, ast.Return) and isinstance(node.value, ast.Tuple) and node.value.elts:
            chosen = node.value.elts[:1]
        else:
            continue
        for part in chosen:
            numbers = [n for n in ast.walk(part) if isinstance(n, ast.Constant) and type(n.value) is int]
            found += [n.lineno for n in numbers if 400 <= n.value <= 599]
    return found


def test_no_error_status_is_written_down_outside_the_edge():
    offenders = [
        f"{name}:{line}" for name, text in _sources("edge.py").items() for line in _error_statuses_written_down(text)
    ]
    assert offenders == []


def test_the_status_check_would_catch_what_it_says():
    assert _error_statuses_written_down("edge.api_json(200 if ready else 503, body)") == [1]
    assert _error_statuses_written_down("edge.json_response(503, {})") == [1]
    assert _error_statuses_written_down("edge.page(400, 'Bad link', message, back=None)") == [1]
    assert _error_statuses_written_down("Receipt(413, 'too_large', 'big')") == [1]
    assert _error_statuses_written_down("def f():\n    return 404, {}") == [2]
    # Bitbucket's statuses, compared, and a route's own success are not answers written down.
    assert _error_statuses_written_down("if exc.status in (401, 403): pass") == []
    assert _error_statuses_written_down("edge.api_json(202, body)") == []
