"""The team's shared reference data: Atlassian's OpenAPI documents and real Bitbucket webhook payloads.

It lives in the ``shared/`` folder beside the repository (``../shared``), or wherever
``BITBRIDGE_SHARED_DIR`` points, and is never copied into the repository. Without it the tests that
compare against it are skipped - all with the one reason below - and every other test still runs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = Path(os.environ.get("BITBRIDGE_SHARED_DIR") or REPO_ROOT.parent / "shared").resolve()
MISSING_REASON = (
    f"needs the team's shared Bitbucket reference data (OpenAPI documents, real webhook payloads), "
    f"not found at {SHARED_DIR}: put the shared/ folder beside the repository or set BITBRIDGE_SHARED_DIR "
    f"(README, 'Reference data')"
)
#: Marks a test (or a parameter) that reads the shared data: it is skipped, with MISSING_REASON, without it.
needs_shared = pytest.mark.needs_shared


def available() -> bool:
    return (SHARED_DIR / "bitbucket").is_dir()


def require() -> Path:
    """The shared folder; skips the calling test when it is missing."""
    if not available():
        pytest.skip(MISSING_REASON)
    return SHARED_DIR


def require_module() -> None:
    """For modules that read the shared data while being collected: skip the whole module without it."""
    if not available():
        pytest.skip(MISSING_REASON, allow_module_level=True)


def path(*parts: str) -> Path:
    return require().joinpath(*parts)


def manifest_entries() -> list[dict[str, Any]]:
    """The webhook payloads' manifest, or [] without the shared data (safe at collection time)."""
    if not available():
        return []
    return json.loads((SHARED_DIR / "bitbucket" / "webhooks" / "manifest.json").read_text())


def params(entries: list[dict[str, Any]], id_key: str = "file") -> list[Any]:
    """Parameters for a test over shared entries: one skipped placeholder without the shared data, so the
    test reports the missing data rather than 'empty parameter set'."""
    if not available():
        return [pytest.param({}, marks=needs_shared, id="needs-shared-data")]
    return [pytest.param(entry, id=str(entry[id_key])) for entry in entries]
