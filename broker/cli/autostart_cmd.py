"""`inference-broker autostart enable|disable|status`: launch the broker at login."""

from __future__ import annotations

import argparse
import os

from broker.adapters.autostart import Autostart, broker_argv


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("autostart", help="launch the broker when you log in (enable, disable, status)")
    parser.add_argument("what", choices=["enable", "disable", "status"])
    parser.set_defaults(func=run)


def autostart_for(config: str | None) -> Autostart:
    """The login item starts the broker with the config this command was given, if any."""
    config = config or os.environ.get("INFERENCE_BROKER_CONFIG") or None
    return Autostart.here(argv=broker_argv(config))


def run(args: argparse.Namespace) -> int:
    autostart = autostart_for(getattr(args, "config", None))
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
