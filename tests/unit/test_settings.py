"""Settings fail fast: every function reads its environment at cold start, and a missing or malformed
variable stops it there with one error that names the variable (not at the first call that needed it)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bitbridge.config import PREFIX, REQUIRED, ConfigurationError, Settings
from infra.local.template import functions, load_template
from tests.conftest import REPO_ROOT

FUNCTIONS = functions(load_template())
COMPLETE = {f"{PREFIX}{name}": f"test-{name.lower()}" for name in REQUIRED}


def _import_fresh(module: str, environ: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Import a handler module in a fresh interpreter, as Lambda's init does, with only `environ`."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(PREFIX)}
    return subprocess.run(
        [sys.executable, "-c", f"import {module}"],
        cwd=REPO_ROOT,
        env={**base, "PYTHONPATH": str(REPO_ROOT), **environ},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("n", range(len(FUNCTIONS)), ids=sorted(FUNCTIONS))
def test_each_function_refuses_to_start_without_a_variable_and_names_it(n):
    """Each function, a different required variable missing (every one is covered across them)."""
    logical_id = sorted(FUNCTIONS)[n]
    name = f"{PREFIX}{REQUIRED[n % len(REQUIRED)]}"
    environ = {k: v for k, v in COMPLETE.items() if k != name}
    result = _import_fresh(FUNCTIONS[logical_id].module, environ)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"bitbridge.config.ConfigurationError: {name} is not set"), result.stderr[-2000:]


def test_the_same_functions_start_with_the_whole_environment():
    for fn in FUNCTIONS.values():
        result = _import_fresh(fn.module, COMPLETE)
        assert result.returncode == 0, (fn.logical_id, result.stderr[-2000:])


def test_every_required_variable_is_one_template_yaml_gives_every_function():
    for fn in FUNCTIONS.values():
        assert {f"{PREFIX}{name}" for name in REQUIRED} <= set(fn.environment), fn.logical_id


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("RECONCILE_INTERVAL_MINUTES", "fifteen", "RECONCILE_INTERVAL_MINUTES='fifteen' is not a whole number"),
        ("RECONCILE_API_BUDGET", "0", "RECONCILE_API_BUDGET='0' is not a whole number of at least 1"),
        ("SERVICE_AUDIT_RETENTION_DAYS", "-3", "SERVICE_AUDIT_RETENTION_DAYS='-3'"),
        ("PUBLIC_BASE_URL", "bitbridge.example.com", "PUBLIC_BASE_URL='bitbridge.example.com' is not an http(s) URL"),
        ("ALLOWED_RETURN_TO_ORIGINS", "https://a.example, app.example/x", "'app.example/x' is not an origin"),
    ],
)
def test_a_malformed_variable_is_named_with_its_value_and_what_is_expected(variable, value, says):
    with pytest.raises(ConfigurationError) as refused:
        Settings.checked({**COMPLETE, f"{PREFIX}{variable}": value})
    assert says in str(refused.value)


def test_several_missing_are_named_together_and_optional_ones_may_be_empty():
    environ = {k: v for k, v in COMPLETE.items() if k not in (f"{PREFIX}IMPORTS_TABLE", f"{PREFIX}EVENT_BUS_NAME")}
    with pytest.raises(ConfigurationError) as refused:
        Settings.checked(environ)
    assert "BITBRIDGE_IMPORTS_TABLE is not set (nor BITBRIDGE_EVENT_BUS_NAME)" in str(refused.value)
    fine = Settings.checked({**COMPLETE, f"{PREFIX}PUBLIC_BASE_URL": "", f"{PREFIX}ALLOWED_RETURN_TO_ORIGINS": ""})
    assert fine.public_base_url == "" and fine.allowed_return_to_origins == ()
    assert fine.reconcile_interval_minutes == 15
