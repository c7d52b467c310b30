"""Shared test setup: no real AWS, ever; the shared Bitbucket material found beside the repo."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bitbridge.config import PREFIX, REQUIRED
from tests import shared_data

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = shared_data.SHARED_DIR  # ../shared, or BITBRIDGE_SHARED_DIR

# Tests never reach real AWS: fake credentials, a fixed region, and no endpoint override
# leaking in from a developer's shell (the local stack sets its own in its subprocess).
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        # botocore's account-based endpoints (e.g. for DynamoDB Streams) are unknown to mock_aws.
        "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
    }
)
os.environ.pop("AWS_ENDPOINT_URL", None)
os.environ.pop("AWS_PROFILE", None)
# Every function checks its environment at cold start (bitbridge.config): importing a handler needs the
# variables template.yaml gives each one. Placeholders here; the integration and end-to-end fixtures set
# the real names of the resources they create.
for _name in REQUIRED:
    os.environ.setdefault(f"{PREFIX}{_name}", f"test-{_name.lower().replace('_', '-')}")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return shared_data.require()


@pytest.fixture(autouse=True)
def _skip_without_shared_data(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("needs_shared"):
        shared_data.require()


def pytest_report_header() -> str:
    if shared_data.available():
        return f"shared reference data: {shared_data.SHARED_DIR}"
    return f"shared reference data: MISSING - the tests that need it are skipped: {shared_data.MISSING_REASON}"


def _one_place(report: pytest.TestReport | pytest.CollectReport) -> None:
    # Every skip for missing shared data reports the same place, so `-ra` folds them into one line.
    longrepr = report.longrepr
    if report.skipped and isinstance(longrepr, tuple) and shared_data.MISSING_REASON in str(longrepr[2]):
        report.longrepr = (str(Path(shared_data.__file__)), 0, f"Skipped: {shared_data.MISSING_REASON}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> pytest.TestReport:
    report = yield
    _one_place(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> pytest.CollectReport:
    report = yield
    _one_place(report)
    return report


# --------------------------------------------------------------------------------- distribution (make unit)

# `make unit` hands each test file to one xdist worker (--dist loadfile: module fixtures, some of which start a
# stack of their own, are set up once). The files below are the exception: their tests need nothing but the
# worker's session stack, and one of them on a single worker would set the suite's wall time, so their tests
# are spread over the workers, and go first.
SPREAD_FILES = frozenset({"tests/e2e/test_reconcile.py"})
# And these go last: they play Bitbucket's windows in seconds on stacks of their own, and their kickoffs and
# sign-ins must meet Lambda's 10 s limits while imports run in the same process. At the suite's start every
# worker starts its stacks at once and a 2-core machine starved them past 10 s (two runs in a row); at the end
# the other workers are running unit tests.
LAST_FILES = frozenset({"tests/e2e/test_budget.py", "tests/e2e/test_budget_scale.py"})


def _file_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def place(item: pytest.Item) -> int:
        file = _file_of(item.nodeid)
        return 0 if file in SPREAD_FILES else 2 if file in LAST_FILES else 1

    items.sort(key=place)  # stable: otherwise as collected


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class SpreadingLoadFile(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return nodeid if _file_of(nodeid) in SPREAD_FILES else _file_of(nodeid)

    # In collection order (the slow end-to-end files first), not xdist's default of the most tests first.
    config.option.loadscopereorder = False
    return SpreadingLoadFile(config, log)
