"""`inference-broker autostart enable|disable|status`: launch the broker at login."""

from __future__ import annotations

import argparse

from broker.autostart.writers import Autostart
from broker.cli.common import config_of


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("autostart", help="launch the broker when you log in (enable, disable, status)")
    parser.add_argument("what", choices=["enable", "disable", "status"])
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    autostart = Autostart.for_config(config_of(args))  # the same login item the tray writes
    if args.what == "enable":
        autostart.enable()
        print(f"Launch at login: on ({autostart.location()})")
    elif args.what == "disable":
        autostart.disable()
        print(f"Launch at login: off (removed {autostart.location()})")
    else:
        state = "on" if autostart.is_enabled() else "off"
        print(f"Launch at login: {state} ({autostart.location()})")
    return 0
