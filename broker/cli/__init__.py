"""The `inference-broker` command: one module per subcommand, each with `register(sub)`.

A module's `register` adds its parser and sets `func(args) -> int`; parsing stays apart
from the work, so every command is a plain function tests can call.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from broker import __version__
from broker.core.errors import BrokerError

# Subcommand modules, in the order `--help` lists them.
COMMANDS = [
    "run",
    "status",
    "refresh",
    "doctor",
    "login",
    "sandbox",
    "usage",
    "dashboard",
    "docker_args",
    "autostart",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="inference-broker",
        description="Lend a Claude subscription to local sandboxes without showing them its token.",
    )
    parser.add_argument("--version", action="version", version=f"inference-broker {__version__}")
    parser.add_argument("--config", help="config file (default: $INFERENCE_BROKER_CONFIG or the user config dir)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"broker.cli.{name}_cmd")
        except ModuleNotFoundError as exc:
            if exc.name == f"broker.cli.{name}_cmd":
                continue  # not written yet
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except BrokerError as exc:
        print(f"{exc.title}: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `inference-broker status | head`: the reader left, nothing to say
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
