"""The command line loads only the command it runs, and parses it as the whole parser does."""

from __future__ import annotations

import subprocess
import sys

import pytest

from broker.cli import COMMANDS, build_parser, chosen_command

ARGVS = [
    ["run", "--no-tray"],
    ["--config", "run", "status", "--json"],  # a config file named like a command
    ["--config=x.yaml", "-v", "usage", "--since", "7d", "--by", "model"],
    ["--conf", "x.yaml", "sandbox", "add", "box", "--budget", "2M/5h"],  # an abbreviated option
    ["revoke", "--all"],
    ["pause"],
    ["docker-args", "box", "--new", "--format", "compose"],
    ["autostart", "status"],
]


@pytest.mark.parametrize("argv", ARGVS, ids=" ".join)
def test_one_command_parses_as_the_whole_parser_does(argv: list[str]) -> None:
    command = chosen_command(argv)
    assert command is not None
    assert vars(build_parser(command).parse_args(argv)) == vars(build_parser().parse_args(argv))


@pytest.mark.parametrize("argv", [[], ["--help"], ["-vh", "run"], ["bogus"], ["--config"], ["--version"]],
                         ids=lambda a: " ".join(a) or "nothing")
def test_no_clear_command_gets_the_whole_parser(argv: list[str]) -> None:
    assert chosen_command(argv) is None


def test_every_command_is_listed() -> None:
    names = {n for _, ns in COMMANDS for n in ns}
    registered = set(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    assert names == registered


def test_run_imports_no_other_command() -> None:
    code = ("import sys; from broker.cli import build_parser; build_parser('run').parse_args(['run']); "
            "print(sorted(m for m in sys.modules if m.startswith('broker.cli.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['broker.cli.common', 'broker.cli.run_cmd']"
