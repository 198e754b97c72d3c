"""The `inference-broker` command: one module per subcommand, each with `register(sub)`.

A module's `register` adds its parser and sets `func(args) -> int`; parsing stays apart
from the work, so every command is a plain function tests can call.
"""

from __future__ import annotations

import argparse
import sys

from broker import __version__
from broker.cli import (
    autostart_cmd,
    dashboard_cmd,
    docker_args_cmd,
    doctor_cmd,
    login_cmd,
    refresh_cmd,
    run_cmd,
    sandbox_cmd,
    status_cmd,
    usage_cmd,
)
from broker.core.errors import BrokerError

# Subcommand modules, in the order `--help` lists them.
COMMANDS = (run_cmd, status_cmd, refresh_cmd, doctor_cmd, login_cmd, sandbox_cmd, usage_cmd, dashboard_cmd,
            docker_args_cmd, autostart_cmd)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="inference-broker",
        description="Lend a Claude subscription to local sandboxes without showing them its token.",
    )
    parser.add_argument("--version", action="version", version=f"inference-broker {__version__}")
    parser.add_argument("--config", help="config file (default: $INFERENCE_BROKER_CONFIG or the user config dir)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS:
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
    except PermissionError as exc:  # another user's state dir, a 0600 file we do not own
        where = exc.filename or "a file the broker needs"
        print(f"Permission denied: cannot access {where}. It belongs to another user or is not readable "
              "by you; run the command as the user who runs the broker, or set `state_dir` in the config.",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `inference-broker status | head`: the reader left, nothing to say
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
