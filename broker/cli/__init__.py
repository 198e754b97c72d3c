"""The `inference-broker` command: one module per subcommand, each with `register(sub)`.

A module's `register` adds its parser and sets `func(args) -> int`; parsing stays apart
from the work, so every command is a plain function tests can call.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from broker import __version__
from broker.common.errors import BrokerError

# Subcommand modules (in broker.cli), in the order `--help` lists them, with the commands each
# registers. Only the module of the command given is imported: a running broker does not keep
# every other command's code in memory.
COMMANDS = (("run_cmd", ("run",)), ("status_cmd", ("status",)), ("refresh_cmd", ("refresh",)),
            ("doctor_cmd", ("doctor",)), ("login_cmd", ("login",)),
            ("sandbox_cmd", ("sandbox", "revoke", "pause", "resume")), ("usage_cmd", ("usage",)),
            ("dashboard_cmd", ("dashboard",)), ("docker_args_cmd", ("docker-args",)), ("exec_cmd", ("exec",)),
            ("autostart_cmd", ("autostart",)))


class _Unparsed(Exception):
    pass


class _FirstPass(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override] - never prints or exits
        raise _Unparsed(message)


def chosen_command(argv: Sequence[str]) -> str | None:
    """The command named in `argv` (after the global options), or None (none, unknown, a bad option)."""
    first = _FirstPass(add_help=False, allow_abbrev=True)
    first.add_argument("--version", action="store_true")
    first.add_argument("--config")
    first.add_argument("-v", "--verbose", action="store_true")
    first.add_argument("command", nargs="?")
    first.add_argument("rest", nargs=argparse.REMAINDER)
    try:
        ns, _ = first.parse_known_args(list(argv))
    except _Unparsed:
        return None
    return ns.command if any(ns.command in names for _, names in COMMANDS) else None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole parser, or with `command` only that command's (the same for parsing it)."""
    parser = argparse.ArgumentParser(
        prog="inference-broker",
        description="Lend a Claude subscription to local sandboxes without showing them its token.",
    )
    parser.add_argument("--version", action="version", version=f"inference-broker {__version__}")
    parser.add_argument("--config", help="config file (default: $INFERENCE_BROKER_CONFIG or the user config dir)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module, names in COMMANDS:
        if command is None or command in names:
            importlib.import_module(f"broker.cli.{module}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(chosen_command(argv))
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
