"""Cold-start benchmark: each handler module's import time in a fresh interpreter.

Two columns per handler: imported from the source tree (the .venv), and imported as deployed -
from SAM's zips of the built functions and layers, extracted as Lambda does (tests/deploy/artifacts.py,
the same code as the deploy rehearsal). The floor is measured in the same run: `import boto3` and
creating one client, which every handler needs anyway. Each median is printed as a ratio of the
floor's median. Targets: webhook_receiver <= 1.3x, every other handler <= 2x.

    make bench                      # or: .venv/bin/python tests/bench/cold_start.py --runs 15
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from infra.local.template import functions, load_template  # noqa: E402
from tests.deploy import artifacts  # noqa: E402

FLOOR = "import boto3; boto3.client('dynamodb', region_name='us-east-1')"
TARGETS = {"WebhookReceiverFunction": 1.3}
DEFAULT_TARGET = 2.0

# What Lambda would set; values are placeholders because nothing is called at import.
ENV = {
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "POWERTOOLS_SERVICE_NAME": "bitbridge",
    "POWERTOOLS_METRICS_NAMESPACE": "bitbridge",
    "PYTHONPATH": str(REPO_ROOT),
}


def time_once(statement: str) -> float:
    code = f"import time\nt = time.perf_counter()\n{statement}\nprint(time.perf_counter() - t)"
    # Bytecode is cached as on Lambda, whose layers are byte-compiled at build time.
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BITBRIDGE_", "PYTHONDONTWRITE"))}
    env = {**inherited, **ENV}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{statement!r} failed:\n{out.stderr}")
    return float(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=11, help="fresh interpreters per module (median)")
    args = parser.parse_args()

    fns = functions(load_template())
    deployed = artifacts.deployed(artifacts.fresh_root("bitbridge-bench-"))  # sam build (cached), zip, extract
    statements = {"floor": FLOOR} | {name: f"import {fn.module}" for name, fn in fns.items()}
    for statement in statements.values():  # warm the bytecode caches so every run compiles nothing
        time_once(statement)
    samples: dict[str, list[float]] = {name: [] for name in statements}
    shipped: dict[str, list[float]] = {name: [] for name in fns}
    recompiled: dict[str, int] = {}
    for _ in range(args.runs):  # interleaved, so machine noise hits every module alike
        for name, statement in statements.items():
            samples[name].append(time_once(statement))
        for name in fns:
            result = artifacts.import_handler(deployed, name)
            shipped[name].append(result.seconds)
            recompiled[name] = len(result.compiled)

    floor = statistics.median(samples["floor"])
    print(f"cold start: median of {args.runs} fresh interpreters; floor = {FLOOR!r}")
    print("source: imported from the source tree; deployed: from SAM's zips, extracted as on Lambda")
    print(
        f"{'module':<20} {'source ms':>10} {'ratio':>6} {'deployed ms':>12} {'ratio':>6} {'compiled':>9}"
        f" {'target':>7}  verdict (deployed)"
    )
    print(f"{'floor':<20} {floor * 1000:>10.1f} {1.0:>6.2f}")
    over = 0
    for name, fn in fns.items():
        source, as_deployed = statistics.median(samples[name]), statistics.median(shipped[name])
        ratio = as_deployed / floor
        target = TARGETS.get(name, DEFAULT_TARGET)
        over += ratio > target
        print(
            f"{fn.module.split('.')[1]:<20} {source * 1000:>10.1f} {source / floor:>6.2f} {as_deployed * 1000:>12.1f}"
            f" {ratio:>6.2f} {recompiled[name]:>9} {target:>6.1f}x  {'ok' if ratio <= target else 'OVER TARGET'}"
        )
    print(f"{over} handler(s) over target as deployed; 'compiled' = modules compiled from source at import")
    return 0  # a benchmark reports; it does not fail a slow shared machine


if __name__ == "__main__":
    sys.exit(main())
