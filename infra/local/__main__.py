"""`python -m infra.local` (what `make dev` runs): the whole system on this machine.

python -m infra.local                          run until Ctrl-C; the state lives in memory only
python -m infra.local --state .local/state     keep the state across restarts (`make dev`)
python -m infra.local --state DIR --fresh      delete the saved state and start clean (`make dev-reset`)
python -m infra.local tail                     print events published on the bus of a running stack
python -m infra.local --override ImportWorkerFunction.Timeout=4   (tests only: change a template property)

Every port is checked before anything starts: a taken one ends the start at once with a sentence naming the
service, the port and the variable to set. Ctrl-C or SIGTERM stop it within seconds (STOP_SECONDS at most),
whatever it is doing.
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
from typing import TYPE_CHECKING, Any

from bitbridge.cli import local
from infra.local import ports
from infra.local.config import LABELS, PortsTaken, StackConfig

if TYPE_CHECKING:
    from infra.local.stack import LocalStack

# Stopping (servers, pollers, the emulator) plus saving the state never takes longer than this; past it the
# process exits anyway (the saved state is replaced only once a new one is complete).
STOP_SECONDS = 10.0


def _config(args: argparse.Namespace) -> StackConfig:
    config = StackConfig()
    for setting in ports.PORTS:
        value = getattr(args, setting.attribute)
        if value is not None:
            setattr(config, setting.attribute, value)
    if args.no_emulator:
        config.emulator = False
    if args.no_schedules:
        config.schedules = False
    if args.template:
        config.template_path = Path(args.template).resolve()
    if args.state:
        config.state_dir = Path(args.state).resolve()
    config.fresh = args.fresh
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
    return config


def _shown(path: Path | None) -> str:
    if path is None:
        return ""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _interrupt(signum: int, _frame: Any) -> None:
    """While starting, SIGTERM interrupts like Ctrl-C: whatever is under way gives up."""
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _exit_after(seconds: float) -> threading.Timer:
    def give_up() -> None:
        print(f"still stopping after {seconds:.0f} s: exiting now (any state saved before is kept)", file=sys.stderr)
        os._exit(1)

    timer = threading.Timer(seconds, give_up)
    timer.daemon = True
    timer.start()
    return timer


def run(args: argparse.Namespace) -> int:
    try:
        config = _config(args)
    except ports.PortError as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        return 2
    # Every port, before anything heavy is even imported: a taken one ends `make dev` in a second.
    problems = ports.check(config.host, config.port_settings())
    if problems:
        for problem in problems:
            print(f"cannot start: {problem}", file=sys.stderr, flush=True)
        return 1
    received: list[int] = []

    def starting(signum: int, frame: Any) -> None:
        received.append(signum)
        _interrupt(signum, frame)

    signal.signal(signal.SIGINT, starting)
    signal.signal(signal.SIGTERM, starting)
    print("starting the local stack ... (Ctrl-C stops it)", flush=True)
    stack = None
    try:
        from infra.local.stack import LocalStack

        stack = LocalStack(config)
        stack.start()
    except (PortsTaken, KeyboardInterrupt) as exc:
        _exit_after(STOP_SECONDS)
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # a second Ctrl-C ends it at once
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if isinstance(exc, PortsTaken):
            for problem in exc.problems:
                print(f"cannot start: {problem}", file=sys.stderr, flush=True)
        else:
            print("interrupted while starting; stopping ...", file=sys.stderr, flush=True)
        if stack is not None:
            stack.stop(timeout=2)  # nothing is saved: a half-started stack's state is not worth keeping
        if isinstance(exc, PortsTaken):
            return 1
        return 128 + (received[-1] if received else signal.SIGINT)

    stopping = threading.Event()

    def running(signum: int, _frame: Any) -> None:
        if stopping.is_set():  # asked twice: stop now, without saving
            os._exit(128 + signum)
        stopping.set()

    signal.signal(signal.SIGINT, running)
    signal.signal(signal.SIGTERM, running)
    stop_when_orphaned(stopping)
    if received:  # a signal that arrived as the start completed
        stopping.set()
    urls = stack.urls()
    # Announce the stack where the CLI and `tail` look for running stacks (removed when it stops).
    announced = local.ready_file(config.helper_port)
    announced.parent.mkdir(parents=True, exist_ok=True)
    _write_whole(announced, {**urls, "pid": os.getpid()})
    print(banner(stack, urls), flush=True)
    if args.ready_file:  # last: whoever waits for it finds the banner printed
        _write_whole(Path(args.ready_file), {**urls, "state": stack.state_kind})
    # Never an untimed wait: Python runs a signal handler only when the main thread next wakes, and the
    # kernel may deliver the signal to any thread - an untimed wait could sleep through it (Ctrl-C "ignored").
    while not stopping.wait(0.2):
        pass
    _exit_after(STOP_SECONDS)
    print("stopping ...", flush=True)
    announced.unlink(missing_ok=True)
    stack.stop()
    try:
        seconds = stack.save_state()
    except Exception as exc:  # the previous state stays in place; say so rather than end in a traceback
        print(f"the state was not saved ({type(exc).__name__}: {exc}); the previous one is kept", flush=True)
    else:
        if seconds is not None:
            print(f"state saved in {_shown(config.state_dir)} ({seconds:.2f} s)", flush=True)
    print("stopped.", flush=True)
    return 0


def stop_when_orphaned(stopping: threading.Event) -> None:
    """Stop when whoever started the stack is gone (a killed test run, a closed terminal's make): an
    orphaned stack would keep its ports and a share of the machine for nobody."""
    parent = os.getppid()

    def watch() -> None:
        while not stopping.wait(1.0):
            if os.getppid() != parent:
                print("the process that started the local stack is gone: stopping", flush=True)
                stopping.set()

    threading.Thread(target=watch, name="orphan-watch", daemon=True).start()


def _write_whole(path: Path, body: dict[str, Any]) -> None:
    """Write JSON that a reader polling for the file never sees half-written (a rename is atomic)."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(body), encoding="utf-8")
    os.replace(partial, path)


def banner(stack: LocalStack, urls: dict[str, str]) -> str:
    state_line = stack.state_line().replace(str(stack.config.state_dir), _shown(stack.config.state_dir))
    width = max(len(LABELS[name]) for name in urls) + 1
    rows = [f"  {LABELS[name] + ':':<{width}}  {url}" for name, url in urls.items()]
    return "\n".join(["", "bitbridge local stack is ready", "", *rows, "", state_line, "", "Press Ctrl-C to stop.", ""])


def tail(args: argparse.Namespace) -> int:
    try:
        console, urls = local.find(args.console)
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
    parser = argparse.ArgumentParser(
        prog="python -m infra.local", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command")
    for setting in ports.PORTS:
        names = [setting.flag] + (["--console-port"] if setting.attribute == "helper_port" else [])
        parser.add_argument(
            *names,
            dest=setting.attribute,
            type=int,
            help=f"{setting.service} (default: {setting.variable} or {setting.default}; 0 picks a free port)",
        )
    parser.add_argument("--state", metavar="DIR", help="keep the state in DIR across restarts (make dev: .local/state)")
    parser.add_argument("--fresh", action="store_true", help="delete the saved state and start clean")
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
        "--console",
        "--local",
        dest="console",
        help="the stack's local helper URL (default: the BITBRIDGE_LOCAL_* variables, else the one running stack)",
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
    code = main()
    # Stopped and saved: end here. Interpreter shutdown would wait for threads of invocations the stop cut
    # short; on a loaded machine one such exit hung after "stopped." past the stop timer, until killed.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
