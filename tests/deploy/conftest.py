"""The deploy rehearsal's one fixture: `sam build`, SAM's zips, extracted as on Lambda (once per session)."""

from __future__ import annotations

import pytest

from tests.deploy import artifacts


@pytest.fixture(scope="session")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> artifacts.Deployed:
    return artifacts.deployed(tmp_path_factory.mktemp("deployed"))
