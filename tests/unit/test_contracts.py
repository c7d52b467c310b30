"""The layer contracts in pyproject.toml hold, and they have teeth: an upward import in a scratch copy of
the code fails `lint-imports`, naming the arrow."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports on the code under `root` (its own pyproject.toml), importing the packages from there."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root / "layers/bitbridge/python"), str(root)])}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-logo", "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "static", "schemas")
    shutil.copytree(
        REPO_ROOT / "layers/bitbridge/python/bitbridge", tmp_path / "layers/bitbridge/python/bitbridge", ignore=ignore
    )
    shutil.copytree(REPO_ROOT / "functions", tmp_path / "functions", ignore=ignore)
    shutil.copy(REPO_ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _add_import(root: Path, module: str, line: str) -> None:
    path = root / "layers/bitbridge/python" / (module.replace(".", "/") + ".py")
    path.write_text(path.read_text() + f"\n{line}\n")


def test_the_contracts_hold_on_the_code_as_it_is(scratch):
    result = _lint(scratch)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "arrow"),
    [
        # the bottom layer reaching for the HTTP edge
        ("bitbridge.config", "from bitbridge import edge  # noqa", "bitbridge.config -> bitbridge.edge"),
        # the store reaching for a feature (an item shape that needs a webhook word)
        (
            "bitbridge.store.imports",
            "from bitbridge.webhooks import normalise  # noqa",
            "bitbridge.store.imports -> bitbridge.webhooks.normalise",
        ),
        # two independent siblings: imports and reconciliation
        (
            "bitbridge.imports.worker",
            "from bitbridge.reconcile import diff  # noqa",
            "bitbridge.imports.worker -> bitbridge.reconcile.diff",
        ),
    ],
)
def test_an_upward_or_sideways_import_breaks_the_layers(scratch, module, line, arrow):
    _add_import(scratch, module, line)
    result = _lint(scratch)
    assert result.returncode != 0
    assert "The core's layers BROKEN" in result.stdout
    assert arrow in result.stdout


def test_a_function_local_import_is_no_way_around_them(scratch):
    path = scratch / "layers/bitbridge/python/bitbridge/aws.py"
    path.write_text(path.read_text() + "\n\ndef _sneaky() -> None:\n    from bitbridge.store import base  # noqa\n")
    result = _lint(scratch)
    assert result.returncode != 0
    assert "bitbridge.aws -> bitbridge.store.base" in result.stdout
