"""``python -m infra.emulator``: run the seeded emulator until Ctrl-C and print its URLs."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading

from .server import Emulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--cloud-port", type=int, default=int(os.environ.get("BITBRIDGE_EMULATOR_CLOUD_PORT", 8990)))
    parser.add_argument("--dc-port", type=int, default=int(os.environ.get("BITBRIDGE_EMULATOR_DC_PORT", 7990)))
    parser.add_argument("--dc-context-path", default="", help="e.g. /bitbucket")
    parser.add_argument("--no-seed", action="store_true", help="start empty (no demo data)")
    args = parser.parse_args(argv)

    emu = Emulator(
        host=args.host,
        cloud_port=args.cloud_port,
        dc_port=args.dc_port,
        seed=not args.no_seed,
        dc_context_path=args.dc_context_path,
    )
    emu.start()
    print(f"Bitbucket Cloud emulator:       {emu.cloud_url}  (REST {emu.cloud_url}/2.0)", flush=True)
    print(f"Bitbucket Data Center emulator: {emu.dc_url}", flush=True)
    print(
        f"Control API:                    {emu.cloud_url}/_emulator/  and  {emu.dc_url}/_emulator/",
        flush=True,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    emu.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
