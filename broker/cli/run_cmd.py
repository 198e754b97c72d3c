"""`inference-broker run`: start the broker (tray where a display exists, else headless)."""

from __future__ import annotations

import argparse
import logging
import sys

from broker.runtime import control_socket
from broker.cli.common import config_of

log = logging.getLogger("broker")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="start the broker (tray icon where a display exists)")
    p.add_argument("--no-tray", action="store_true", help="run headless, without a tray icon")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from broker.runtime import runner  # noqa: PLC0415 - the service and aiohttp load only for `run`

    config = config_of(args)
    runner.setup_logging("debug" if args.verbose else config.log_level, config.state_dir / "broker.log")
    if control_socket.is_running(config.control_socket):
        print(f"inference-broker is already running (control socket {config.control_socket}); "
              "use `inference-broker status`", file=sys.stderr)
        return 1
    if args.no_tray:
        return runner.run_headless(config)
    from broker.tray import display_available

    ok, why = display_available()
    if not ok:
        log.info("no tray: %s; running headless", why)
        return runner.run_headless(config)
    return runner.run_with_tray(config)
