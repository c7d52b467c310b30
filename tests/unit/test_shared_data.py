"""Without the shared reference data, the tests that need it are skipped with one clear reason and the
rest still run (pytest exits 0). Checked in a subprocess pointed at an empty folder."""

from __future__ import annotations

import os
import subprocess
import sys

from tests import shared_data

# Modules that read the shared data at import/collection time, plus one that needs none.
MODULES = [
    "tests/unit/webhooks/test_signatures.py",
    "tests/unit/webhooks/test_event_schema.py",
    "tests/unit/webhooks/test_normalise.py",
    "tests/emulator/test_webhooks.py::test_compare_helper_detects_differences",
    "tests/emulator/test_webhooks.py::test_dc_signature_vectors_verify",
    "tests/unit/test_gateway.py",
]


def test_without_shared_data_the_rest_still_runs_and_the_reason_is_said_once(tmp_path):
    env = {**os.environ, "BITBRIDGE_SHARED_DIR": str(tmp_path)}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *MODULES],
        cwd=shared_data.REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-3000:]
    assert "error" not in out.splitlines()[-1], out[-2000:]
    assert " passed" in out.splitlines()[-1] and " skipped" in out.splitlines()[-1]
    # The reason, with the folder it looked in, once in the summary (and once in the header).
    summary = [line for line in out.splitlines() if line.startswith("SKIPPED")]
    assert len(summary) == 1 and str(tmp_path) in summary[0] and "BITBRIDGE_SHARED_DIR" in summary[0], summary
    assert out.count("shared reference data: MISSING") == 1


def test_the_variable_overrides_the_default_folder(tmp_path):
    code = "from tests import shared_data; print(shared_data.SHARED_DIR, shared_data.available())"
    env = {**os.environ, "BITBRIDGE_SHARED_DIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=shared_data.REPO_ROOT, env=env, capture_output=True, text=True
    )
    assert out.stdout.split() == [str(tmp_path.resolve()), "False"]
    (tmp_path / "bitbucket").mkdir()
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=shared_data.REPO_ROOT, env=env, capture_output=True, text=True
    )
    assert out.stdout.split() == [str(tmp_path.resolve()), "True"]
