"""The built artifacts as Lambda runs them: SAM's zips, extracted, every handler imported cold.

A cold start must not compile bytecode: SAM dates every zip entry 1980-01-01, so a .pyc validated
by source mtime is stale after extraction and Lambda (read-only /opt) recompiles it in memory at
every cold start. The layers therefore ship unchecked-hash .pyc files (layers/*/Makefile).

Each function's own directory holds only its handler module (`app.py`); SAM's python build copies
it without bytecode, so that one module is compiled per cold start - a few hundred lines, well
under a millisecond - and the import test allows exactly that file and nothing else.
"""

from __future__ import annotations

import importlib.util
import sys
import zipfile
from pathlib import PurePosixPath

import pytest

from tests.deploy import artifacts

SAM_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
UNCHECKED_HASH = 0b01  # PEP 552 flags: hash-based, do not check the source
CACHE_TAG = "cpython-313"  # Lambda's python3.13; the tests run on 3.13 too (same magic number)


def test_sam_zips_date_every_entry_1980(deployment: artifacts.Deployed) -> None:
    """The premise of the bytecode fix: SAM's Lambda zips carry no real file dates."""
    for name, zip_path in deployment.zips.items():
        with zipfile.ZipFile(zip_path) as zf:
            dates = {info.date_time for info in zf.infolist()}
        assert dates == {SAM_ZIP_DATE}, name


@pytest.mark.parametrize("layer", ["CoreLayer", "DependenciesLayer"])
def test_every_layer_module_ships_unchecked_hash_bytecode(deployment: artifacts.Deployed, layer: str) -> None:
    """Read from the zip that deploys (the arm64 dependencies layer, not the host twin)."""
    assert sys.implementation.cache_tag == CACHE_TAG  # so MAGIC_NUMBER below is Lambda's
    with zipfile.ZipFile(deployment.zips[layer]) as zf:
        names = set(zf.namelist())
        sources = [PurePosixPath(n) for n in names if n.endswith(".py")]
        assert len(sources) > (10 if layer == "CoreLayer" else 500)
        missing, wrong = [], []
        for source in sources:
            pyc = str(source.parent / "__pycache__" / f"{source.stem}.{CACHE_TAG}.pyc")
            if pyc not in names:
                missing.append(str(source))
                continue
            header = zf.read(pyc)[:8]
            if header[:4] != importlib.util.MAGIC_NUMBER or int.from_bytes(header[4:8], "little") != UNCHECKED_HASH:
                wrong.append(pyc)
    assert not missing, f"{len(missing)} modules without .pyc in {layer}, e.g. {missing[:5]}"
    assert not wrong, f"{len(wrong)} .pyc files not unchecked-hash for Python 3.13 in {layer}, e.g. {wrong[:5]}"


def test_host_dependencies_layer_is_the_same_layer(deployment: artifacts.Deployed) -> None:
    """The import test runs on the host-architecture twin; it must hold the same distributions."""
    if artifacts.HOST_ARCH == artifacts.LAMBDA_ARCH:
        assert "DependenciesLayer-host" not in deployment.zips  # the shipped layer itself is imported
        return

    def distributions(zip_path: object) -> set[str]:
        with zipfile.ZipFile(zip_path) as zf:  # type: ignore[arg-type]
            return {part for n in zf.namelist() for part in n.split("/")[1:2] if part.endswith(".dist-info")}

    shipped = distributions(deployment.zips["DependenciesLayer"])
    host = distributions(deployment.zips["DependenciesLayer-host"])
    assert shipped == host
    with zipfile.ZipFile(deployment.zips["DependenciesLayer"]) as zf:
        extensions = sorted(n for n in zf.namelist() if n.endswith(".so"))
    # Named, not silent: these arm64 extension modules are the reason the host twin exists.
    print(f"arm64-only extension modules (imported from the {artifacts.HOST_ARCH} twin): {extensions}")
    assert all("aarch64" in n or "abi3" in n for n in extensions)


def test_every_handler_imports_from_the_artifacts_compiling_nothing_but_itself(
    deployment: artifacts.Deployed,
) -> None:
    assert deployment.functions, "no functions in the built template"
    for logical_id, fn in deployment.functions.items():
        result = artifacts.import_handler(deployment, logical_id)
        task = deployment.task_dir(logical_id)
        assert result.callable, f"{logical_id}: {fn.handler} is not callable"
        # Imported from the extracted artifacts, not from the source tree or .venv.
        for name in ("bitbridge", "botocore"):
            origin = result.origins[name]
            assert origin and origin.startswith(str(deployment.root)), f"{logical_id}: {name} from {origin}"
        assert result.compiled == [str(task / f"{fn.module.replace('.', '/')}.py")], (
            f"{logical_id}: {len(result.compiled)} modules recompiled at cold start, e.g. {result.compiled[:5]}"
        )
