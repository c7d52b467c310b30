"""Emulator bulk-seed time with real git against the emulator before it (synthetic commit hashes), same run.

The baseline is the emulator package as it was at BASELINE_REV (the last revision without git), extracted from
this repository's history into a temporary directory and imported beside today's. Both seed the same spec
(1,000 Cloud repositories x 3 branches, 1 tag, 20 pull requests, 2 issues, the README's bulk example) into a
fresh backend, alternately, ROUNDS times; the medians are compared. Seeding is in process (no HTTP), so the
figure is the seed itself. Prints figures, never fails.

    .venv/bin/python tests/bench/emulator_seed.py [--repos 1000] [--rounds 5] [--baseline REV]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path
from types import ModuleType

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

BASELINE_REV = "ab481f6"  # emulator with synthetic commits (issue 21's ref moves, before real git)


def spec(repos: int) -> dict:
    return {
        "users": [{"name": "alice", "admin": True}, {"name": "bob"}],
        "cloud": {
            "workspaces": [
                {
                    "slug": "bench",
                    "members": {"alice": "owner", "bob": "member"},
                    "repositories": [
                        {"slug": "repo", "count": repos, "branches": 3, "tags": 1, "pull_requests": 20, "issues": 2}
                    ],
                }
            ]
        },
    }


def load_baseline(rev: str, into: Path) -> ModuleType:
    """The emulator package at ``rev`` as the top-level package ``emulator_baseline``."""
    archive = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "archive", rev, "infra/emulator"], capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    package = into / "infra" / "emulator"
    found = importlib.util.spec_from_file_location(
        "emulator_baseline", package / "__init__.py", submodule_search_locations=[str(package)]
    )
    assert found is not None and found.loader is not None
    module = importlib.util.module_from_spec(found)
    sys.modules["emulator_baseline"] = module
    found.loader.exec_module(module)
    return module


def seed_seconds(backend_cls: type, apply_spec: object, body: dict) -> tuple[float, object]:
    backend = backend_cls()
    started = time.perf_counter()
    apply_spec(backend, body)  # type: ignore[operator]
    return time.perf_counter() - started, backend


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repos", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline", default=BASELINE_REV)
    args = parser.parse_args()

    from infra.emulator.models import Backend
    from infra.emulator.seed import apply_spec

    with tempfile.TemporaryDirectory() as tmp:
        load_baseline(args.baseline, Path(tmp))
        from emulator_baseline.models import Backend as BaselineBackend  # type: ignore[import-not-found]
        from emulator_baseline.seed import apply_spec as baseline_apply  # type: ignore[import-not-found]

        body = spec(args.repos)
        before, after = [], []
        for _ in range(args.rounds):
            seconds, _ = seed_seconds(BaselineBackend, baseline_apply, body)
            before.append(seconds)
            seconds, backend = seed_seconds(Backend, apply_spec, body)
            after.append(seconds)
        objects = sum(len(r.git) for r in backend.repos.values())  # type: ignore[attr-defined]
        commits = sum(
            1
            for r in backend.repos.values()
            for t, _ in r.git.store.raw.values()
            if t == 1  # type: ignore[attr-defined]
        )

    b, a = statistics.median(before), statistics.median(after)
    print(f"bulk seed: {args.repos} Cloud repositories x 3 branches, 1 tag, 20 pull requests, 2 issues")
    print(f"  before (synthetic hashes, {args.baseline}): median {b:.2f} s  ({', '.join(f'{x:.2f}' for x in before)})")
    print(f"  after  (real git):                  median {a:.2f} s  ({', '.join(f'{x:.2f}' for x in after)})")
    print(f"  git objects: {objects} ({commits} commits, {objects / args.repos:.1f} per repository)")
    print(f"  ratio after/before: {a / b:.2f}x")


if __name__ == "__main__":
    main()
