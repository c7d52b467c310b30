"""The map stays whole: every function in template.yaml is in docs/architecture.md (by its logical id, with
its folder) and in the README's function list (its folder), and architecture.md's layers are the contract's."""

from __future__ import annotations

import re
import tomllib

import pytest

from infra.local.template import functions, load_template
from tests.conftest import REPO_ROOT

FUNCTIONS = functions(load_template())
ARCHITECTURE = (REPO_ROOT / "docs" / "architecture.md").read_text()
README = (REPO_ROOT / "README.md").read_text()


def _folder(logical_id: str) -> str:
    return FUNCTIONS[logical_id].module.split(".")[1]  # functions.<folder>.app


@pytest.mark.parametrize("logical_id", sorted(FUNCTIONS))
def test_every_function_is_in_the_architecture_table_with_its_folder(logical_id):
    rows = [line for line in ARCHITECTURE.splitlines() if line.startswith(f"| `{logical_id}` |")]
    assert rows, f"docs/architecture.md has no row for {logical_id}"
    assert f"`{_folder(logical_id)}/`" in rows[0]


@pytest.mark.parametrize("logical_id", sorted(FUNCTIONS))
def test_every_function_is_in_the_readme_function_list(logical_id):
    listing = README.split("## Architecture", 1)[1].split("```")[1]
    assert re.search(rf"^\s+{_folder(logical_id)}/\s", listing, re.M), f"README lists no {_folder(logical_id)}/"


def test_the_architecture_layers_are_the_contract_layers():
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    contract = next(c for c in config["contracts"] if c["id"] == "core-layers")
    documented = ARCHITECTURE.split("## The layers", 1)[1].split("\n## ", 1)[0]
    for layer in contract["layers"]:
        names = [n.strip(" ()") for n in layer.split("|")]
        row = next((line for line in documented.splitlines() if all(f"`{n}`" in line for n in names)), None)
        assert row is not None, f"docs/architecture.md does not draw the layer {layer!r}"
