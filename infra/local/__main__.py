"""`python -m infra.local` (what `make dev` runs): the whole system on this machine.

python -m infra.local                 run until Ctrl-C
python -m infra.local tail            print events published on the bus of a running stack
python -m infra.local --override ImportWorkerFunction.Timeout=4   (tests only: change a template property)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
import urllib.request
from pathlib import Path

from bitbridge.cli import local
from infra.local.stack import LocalStack, StackConfig


def run(args: argparse.Namespace) -> int:
    config = StackConfig()
    for name in ("api_port", "console_port", "aws_port", "cloud_port", "dc_port"):
        value = getattr(args, name)
        if value is not None:
            setattr(config, name, value)
    if args.no_emulator:
        config.emulator = False
    if args.no_schedules:
        config.schedules = False
    if args.template:
        config.template_path = Path(args.template).resolve()
    for item in args.override or []:
        target, _, value = item.partition("=")
        logical_id, _, prop = target.partition(".")
        if not (logical_id and prop and value):
            raise SystemExit(f"--override wants LOGICAL_ID.Property=value, got {item!r}")
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = value
        config.overrides.setdefault(logical_id, {})[prop] = parsed
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    stack = LocalStack(config).start()
    urls = stack.urls()
    if args.ready_file:
        # Written whole, then renamed into place: whoever waits for the file never reads it half-written.
        partial = f"{args.ready_file}.partial"
        with open(partial, "w", encoding="utf-8") as fh:
            json.dump(urls, fh)
        os.replace(partial, args.ready_file)
    # Announce the stack where the CLI and `tail` look for running stacks (removed when it stops).
    announced = local.ready_file(int(urls["console"].rsplit(":", 1)[1]))
    announced.parent.mkdir(parents=True, exist_ok=True)
    announced.write_text(json.dumps({**urls, "pid": os.getpid()}), encoding="utf-8")
    width = max(map(len, urls))
    print("\nbitbridge local stack is ready\n", flush=True)
    for name, url in urls.items():
        print(f"  {name:<{width}}  {url}", flush=True)
    print("\nPress Ctrl-C to stop.\n", flush=True)
    stopping.wait()
    print("stopping...", flush=True)
    announced.unlink(missing_ok=True)
    stack.stop()
    print("stopped.", flush=True)
    return 0


def tail(args: argparse.Namespace) -> int:
    try:
        console, urls = local.find(args.console, destructive=False)
    except (local.NoLocalStack, local.AmbiguousLocalStack) as exc:
        print(f"tail: {exc}", file=sys.stderr)
        return 2
    print(f"tail: {local.describe(urls, local.stage(console))}", file=sys.stderr, flush=True)
    args.console = console
    cursor = 0
    while True:
        with urllib.request.urlopen(f"{args.console}/events?since={cursor}", timeout=10) as response:  # noqa: S310
            page = json.load(response)
        for envelope in page["events"]:
            print(json.dumps(envelope["detail"] if args.detail else envelope), flush=True)
        cursor = page["next"]
        time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.local", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    parser.add_argument("--api-port", type=int)
    parser.add_argument("--console-port", type=int)
    parser.add_argument("--aws-port", type=int)
    parser.add_argument("--cloud-port", type=int)
    parser.add_argument("--dc-port", type=int)
    parser.add_argument("--no-emulator", action="store_true", help="run without the Bitbucket emulator")
    parser.add_argument(
        "--no-schedules", action="store_true", help="don't run Schedule events (the reconciler); tests run them by hand"
    )
    parser.add_argument("--ready-file", help="write the URLs as JSON here once ready (for tests)")
    parser.add_argument("--template", help="TEST ONLY: run this copy of template.yaml (e.g. with a permission removed)")
    parser.add_argument(
        "--override",
        action="append",
        metavar="LOGICAL_ID.Property=value",
        help="TEST ONLY: replace a template property, e.g. ImportWorkerFunction.Timeout=4 or "
        "ImportQueue.VisibilityTimeout=2 (value parsed as JSON when it is JSON); repeatable",
    )
    tail_parser = sub.add_parser("tail", help="print events published on a running stack's bus")
    tail_parser.add_argument(
        "--console", help="console URL (default: BITBRIDGE_LOCAL_* variables, the one running stack, :3001)"
    )
    tail_parser.add_argument("--detail", action="store_true", help="print only each event's detail")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S", stream=sys.stdout
    )
    for noisy in ("werkzeug", "botocore", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.command == "tail":
        try:
            return tail(args)
        except KeyboardInterrupt:
            return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
