"""What `sam deploy` ships, as Lambda sees it: built by `sam build`, zipped by SAM CLI, extracted.

One place for the deploy rehearsal (tests/deploy) and the cold-start benchmark (tests/bench), so
both look at exactly the bytes that deploy:

- `sam_build()` runs `make build` (a cached `sam build`);
- `sam_zip()` zips a built directory with SAM CLI's own packaging code (run in `.venv-tools`, where
  SAM CLI lives), so entry names, dates and attributes are what `sam deploy` uploads;
- `extract()` unpacks a zip as Lambda does: entry dates become file mtimes;
- `deployed()` lays the functions and layers out like /var/task and /opt, and `import_handler()`
  imports a handler from there in a fresh interpreter, recording every module compiled from source.

The dependencies layer is built for arm64, whose compiled extensions (cryptography, cffi,
charset-normalizer) cannot load on an x86_64 machine. `host_dependencies_layer()` builds the same
layer with the same recipe (layers/deps/Makefile) for this machine's architecture; imports use it.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from bitbridge.config import PREFIX, REQUIRED  # noqa: E402
from infra.local.template import load_template  # noqa: E402

BUILD_DIR = REPO_ROOT / ".aws-sam" / "build"
BUILT_TEMPLATE = BUILD_DIR / "template.yaml"
CACHE_DIR = REPO_ROOT / ".aws-sam" / "rehearsal"  # zips and the host-architecture layer, by content
TOOLS_PYTHON = REPO_ROOT / ".venv-tools" / "bin" / "python"
DEPS_LAYER_SOURCE = REPO_ROOT / "layers" / "deps"
LAMBDA_ARCH = "aarch64"
HOST_ARCH = platform.machine()

# What Lambda sets before the runtime imports a handler; values are placeholders (nothing is called).
LAMBDA_ENV = {
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "rehearsal",
    "AWS_SECRET_ACCESS_KEY": "rehearsal",
    "AWS_LAMBDA_FUNCTION_NAME": "rehearsal",
    "POWERTOOLS_SERVICE_NAME": "bitbridge",
    "POWERTOOLS_METRICS_NAMESPACE": "bitbridge",
    "LANG": "en_US.UTF-8",
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    # What template.yaml's Globals give every function (each checks them at cold start; values stand in).
    **{f"{PREFIX}{name}": f"rehearsal-{name.lower()}" for name in REQUIRED},
}


def sam_build() -> Path:
    """`make build`: a cached `sam build` of template.yaml (installs .venv-tools when missing)."""
    subprocess.run(["make", "-s", "build"], cwd=REPO_ROOT, check=True)
    return BUILT_TEMPLATE


@dataclass(frozen=True)
class BuiltFunction:
    logical_id: str
    code_dir: Path  # what becomes /var/task
    handler: str  # e.g. app.handler
    layers: tuple[str, ...]  # logical ids, in the order Lambda extracts them into /opt

    @property
    def module(self) -> str:
        return self.handler.rsplit(".", 1)[0]


def built_template() -> dict[str, Any]:
    return load_template(BUILT_TEMPLATE)


def built_layers(template: dict[str, Any]) -> dict[str, Path]:
    return {
        lid: BUILD_DIR / r["Properties"]["ContentUri"]
        for lid, r in template["Resources"].items()
        if r["Type"] == "AWS::Serverless::LayerVersion"
    }


def built_functions(template: dict[str, Any]) -> dict[str, BuiltFunction]:
    defaults = template.get("Globals", {}).get("Function", {})
    out = {}
    for lid, r in template["Resources"].items():
        if r["Type"] != "AWS::Serverless::Function":
            continue
        props = {**defaults, **r["Properties"]}
        layers = tuple(layer["Ref"] for layer in props.get("Layers", []))
        out[lid] = BuiltFunction(lid, BUILD_DIR / props["CodeUri"], props["Handler"], layers)
    return out


def _digest(directory: Path) -> str:
    """Content hash of a directory (names and bytes), so an unchanged build reuses its zip."""
    h = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(directory)).encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()[:16]


# Run in .venv-tools: SAM CLI's own packaging function, the one `sam deploy` uses for functions and layers.
_SAM_ZIP = """
import json, sys
from samcli.lib.package.utils import make_zip_with_lambda_permissions
for source, target in json.loads(sys.argv[1]):
    make_zip_with_lambda_permissions(target, source)
"""


def sam_zip(directories: dict[str, Path]) -> dict[str, Path]:
    """Zip each directory exactly as `sam deploy` does; zips are cached by directory content."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    zips = {name: CACHE_DIR / f"{name}-{_digest(d)}.zip" for name, d in directories.items()}
    # Written under a partial name and renamed when whole: a run killed mid-zip leaves no truncated zip that a
    # later run would take for the cached one.
    partial = {name: z.with_name(".partial-" + z.name) for name, z in zips.items() if not z.exists()}
    if partial:
        todo = [(str(directories[name]), str(p.with_suffix(""))) for name, p in partial.items()]
        subprocess.run([str(TOOLS_PYTHON), "-c", _SAM_ZIP, json.dumps(todo)], check=True)
        for name, p in partial.items():
            p.replace(zips[name])
    for name, current in zips.items():  # zips of earlier builds
        for stale in CACHE_DIR.glob(f"{name}-*.zip"):
            if stale != current and stale.stem.rsplit("-", 1)[0] == name:
                stale.unlink()
    return zips


def extract(zip_path: Path, dest: Path) -> None:
    """Unpack as Lambda does: every file's mtime is its zip entry's date (1980-01-01 for SAM's zips)."""
    with zipfile.ZipFile(zip_path) as zf:
        for info in zf.infolist():
            target = Path(zf.extract(info, dest))
            stamp = datetime(*info.date_time).timestamp()
            os.utime(target, (stamp, stamp))


def host_dependencies_layer() -> Path:
    """The dependencies layer built by layers/deps/Makefile for this machine's architecture (cached)."""
    if HOST_ARCH == LAMBDA_ARCH:
        return built_layers(built_template())["DependenciesLayer"]
    h = hashlib.sha256()
    for name in ("Makefile", "requirements.txt"):
        h.update((DEPS_LAYER_SOURCE / name).read_bytes())
    target = CACHE_DIR / f"DependenciesLayer-{HOST_ARCH}-{h.hexdigest()[:16]}"
    done = target.with_name(target.name + ".complete")  # beside the layer: nothing extra in its zip
    if not done.exists():
        shutil.rmtree(target, ignore_errors=True)
        python313 = Path(sys.executable).resolve().parent  # the .venv's Python 3.13, as `make build` uses
        env = {**os.environ, "ARTIFACTS_DIR": str(target), "WHEEL_ARCH": HOST_ARCH}
        env["PATH"] = f"{python313}:{env['PATH']}"
        make = ["make", "-s", "-C", str(DEPS_LAYER_SOURCE), "build-DependenciesLayer"]
        out = subprocess.run(make, env=env, capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"building the {HOST_ARCH} dependencies layer failed:\n{out.stdout}{out.stderr}")
        done.touch()
    return target


@dataclass(frozen=True)
class Deployed:
    """Functions and layers extracted from SAM's zips into a fresh directory, laid out as on Lambda."""

    root: Path
    functions: dict[str, BuiltFunction]
    zips: dict[str, Path]  # logical id -> zip (functions and layers; DependenciesLayer is the arm64 one)

    def task_dir(self, logical_id: str) -> Path:  # /var/task
        return self.root / logical_id / "task"

    def opt_dir(self, logical_id: str) -> Path:  # /opt: the function's layers, merged in order
        return self.root / logical_id / "opt"


def deployed(root: Path) -> Deployed:
    """Build (cached), zip with SAM CLI and extract every function and its layers under `root`."""
    sam_build()
    template = built_template()
    functions = built_functions(template)
    layers = built_layers(template)
    host_deps = host_dependencies_layer()
    zips = sam_zip(
        {lid: fn.code_dir for lid, fn in functions.items()}
        | layers
        | ({"DependenciesLayer-host": host_deps} if host_deps != layers["DependenciesLayer"] else {})
    )
    result = Deployed(root, functions, zips)
    extracted_opt: dict[tuple[str, ...], Path] = {}
    for lid, fn in functions.items():
        extract(zips[lid], result.task_dir(lid))
        opt = result.opt_dir(lid)
        if fn.layers in extracted_opt:  # same layers as an earlier function: same /opt
            opt.parent.mkdir(parents=True, exist_ok=True)
            opt.symlink_to(extracted_opt[fn.layers], target_is_directory=True)
            continue
        for layer in fn.layers:
            name = (
                "DependenciesLayer-host" if layer == "DependenciesLayer" and "DependenciesLayer-host" in zips else layer
            )
            extract(zips[name], opt)
        extracted_opt[fn.layers] = opt
    return result


# Runs in a fresh interpreter (-I -S -B: no site-packages, no PYTHON* variables, no .pyc written).
# SourceFileLoader.source_to_code is what the import system calls when a module has no valid .pyc
# (missing, stale by mtime/size or by hash): counting its calls counts exactly the recompiled modules.
_IMPORT_PROBE = """
import importlib, importlib.machinery, json, sys, time
compiled = []
_compile = importlib.machinery.SourceFileLoader.source_to_code
def _counting(self, data, path, *args, **kwargs):
    compiled.append(str(path))
    return _compile(self, data, path, *args, **kwargs)
importlib.machinery.SourceFileLoader.source_to_code = _counting
task, opt, module, attr = sys.argv[1:5]
sys.path[:0] = [task, opt + "/python"]
start = time.perf_counter()
handler = getattr(importlib.import_module(module), attr)
elapsed = time.perf_counter() - start
origins = {name: getattr(sys.modules.get(name), "__file__", None) for name in ("bitbridge", "boto3", "botocore")}
print(json.dumps({"seconds": elapsed, "compiled": compiled, "callable": callable(handler), "origins": origins}))
"""


@dataclass(frozen=True)
class ImportResult:
    seconds: float
    compiled: list[str]  # source files compiled because no valid .pyc was found
    callable: bool
    origins: dict[str, str | None]  # where bitbridge, boto3 and botocore were imported from


def import_handler(deployment: Deployed, logical_id: str, python: str | None = None) -> ImportResult:
    """Import one handler as Lambda's runtime does, in a fresh Python 3.13, from the extracted artifacts."""
    fn = deployment.functions[logical_id]
    module, attr = fn.handler.rsplit(".", 1)
    args = [str(deployment.task_dir(logical_id)), str(deployment.opt_dir(logical_id)), module, attr]
    out = subprocess.run(
        [python or sys.executable, "-I", "-S", "-B", "-c", _IMPORT_PROBE, *args],
        cwd=deployment.task_dir(logical_id),
        env=LAMBDA_ENV,
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise RuntimeError(f"importing {fn.handler} of {logical_id} failed:\n{out.stderr}")
    return ImportResult(**json.loads(out.stdout.strip().splitlines()[-1]))


def fresh_root(prefix: str = "bitbridge-deployed-") -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))


# Run in .venv-tools: the SAM translator (what CloudFormation's AWS::Serverless transform runs),
# with each CodeUri/ContentUri pointing at the uploaded zip, as `sam package` rewrites them.
_TRANSLATE = """
import json, sys
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse
path, parameters, locations = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
with open(path) as fh:
    template = yaml_parse(fh.read())
for logical_id, uri in locations.items():
    props = template["Resources"][logical_id]["Properties"]
    props["CodeUri" if "CodeUri" in props else "ContentUri"] = uri
class AwsManagedPoliciesByArn:  # SAM names AWS managed policies by ARN; nothing to look up
    def load(self):
        return {}
print(json.dumps(transform(template, parameters, AwsManagedPoliciesByArn())))
"""


def sam_translate(parameters: dict[str, str], locations: dict[str, str]) -> dict[str, Any]:
    """The built template transformed to plain CloudFormation; `locations` maps logical id -> s3:// URI."""
    out = subprocess.run(
        [str(TOOLS_PYTHON), "-c", _TRANSLATE, str(BUILT_TEMPLATE), json.dumps(parameters), json.dumps(locations)],
        env={**os.environ, "AWS_DEFAULT_REGION": LAMBDA_ENV["AWS_REGION"]},
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise RuntimeError(f"SAM translator failed:\n{out.stderr}")
    return json.loads(out.stdout)
